//! Client errors that no retry can fix, and the slot that stops the
//! application when one happens.
//!
//! librdkafka treats almost every error as transient: a failed SASL
//! handshake, a certificate it cannot verify or a fetch it cannot decompress
//! is reported through the error callback (or as a consumer error) and then
//! tried again, for ever. For a broker that is down that is right. For a
//! wrong password, an untrusted CA, a missing ACL or a codec the build lacks
//! it is a silent stall: the same warning every few seconds, nothing
//! processed, nothing committed, and a process that looks healthy.
//!
//! So every client the runtime makes (stream consumers, task producers, the
//! restore consumer, the start-up metadata client) reports its errors here
//! through [`ClientErrorLog`](super::client_log::ClientErrorLog). An error
//! of one of those kinds is turned into a [`StreamsError::ClusterAccess`]
//! that names the cause and the setting to fix, and put in the
//! application's [`FaultSlot`]. Start-up fails with it at once, and a
//! stream thread that finds it stops; the application then exits with it.
//! Nothing is committed after the fault, so nothing is lost: the input is
//! read again, from the last committed offsets, once the cause is fixed.

use std::sync::{Arc, Mutex};

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::client_log::ClientErrorLog;
use crate::error::StreamsError;

/// The context of the runtime's short-lived clients (the start-up metadata
/// client, the admin client): their errors are logged and checked for
/// faults. Its errors arrive while the client is polled.
pub(crate) struct ReportingContext {
    client: &'static str,
    log: ClientErrorLog,
}

impl ReportingContext {
    pub fn new(client: &'static str, faults: Arc<FaultSlot>) -> Self {
        ReportingContext {
            client,
            log: ClientErrorLog::reporting_to(faults),
        }
    }
}

impl rdkafka::ClientContext for ReportingContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.log.log(self.client, &error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for ReportingContext {}

/// The first unrecoverable client error of an application.
#[derive(Default, Debug)]
pub(crate) struct FaultSlot(Mutex<Option<String>>);

impl FaultSlot {
    /// Keeps `message` unless a fault is already recorded (the first one is
    /// the cause; later ones are usually its consequences).
    pub fn record(&self, message: String) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            tracing::error!(error = %message, "unrecoverable Kafka client error; stopping");
            *slot = Some(message);
        }
    }

    /// The recorded fault as an error, if there is one.
    pub fn error(&self) -> Option<StreamsError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map(StreamsError::ClusterAccess)
    }

    /// Checks `error` (with librdkafka's reason text) and records it if it
    /// is unrecoverable. Returns whether it was.
    pub fn check(&self, client: &str, error: &KafkaError, reason: &str) -> bool {
        match unrecoverable(client, error, reason) {
            Some(message) => {
                self.record(message);
                true
            }
            None => false,
        }
    }
}

/// librdkafka's (OpenSSL's) words for a broker certificate this client
/// does not trust. Other TLS errors, e.g. a connection that a restarting
/// broker drops during the handshake, are transient.
const TLS_VERIFY_FAILURES: &[&str] = &[
    "certificate verify failed",
    "self-signed certificate",
    "self signed certificate",
    "unable to get local issuer certificate",
];

/// TLS errors that come from the configuration: TLS spoken to a plaintext
/// listener, or a broker that refuses this client's certificate.
const TLS_CONFIG_FAILURES: &[&str] = &[
    "wrong version number",
    "packet length too long",
    "alert unknown ca",
    "alert bad certificate",
    "alert certificate required",
    "alert handshake failure",
    "no protocols available",
];

/// The message for an error no retry can fix, or `None` for one that a
/// retry may (a broker that is down, a leader that moved, a timeout).
pub(crate) fn unrecoverable(client: &str, error: &KafkaError, reason: &str) -> Option<String> {
    let code = error.rdkafka_error_code()?;
    let detail = if reason.is_empty() || error.to_string().contains(reason) {
        error.to_string()
    } else {
        format!("{error}: {reason}")
    };
    let fix = match code {
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => {
            "SASL authentication failed. Check sasl.username and sasl.password (and \
             sasl.mechanism, which must be one the broker enables for this listener, e.g. \
             SCRAM-SHA-512 or PLAIN), and that the user exists on the cluster"
        }
        RDKafkaErrorCode::SSL if TLS_VERIFY_FAILURES.iter().any(|m| reason.contains(m)) => {
            "the TLS handshake failed: the broker's certificate could not be verified. Set \
             ssl.ca.location to the CA file (PEM) that signed the broker certificates, and \
             check that the certificate names the host in bootstrap.servers \
             (ssl.endpoint.identification.algorithm)"
        }
        RDKafkaErrorCode::SSL if TLS_CONFIG_FAILURES.iter().any(|m| reason.contains(m)) => {
            "the TLS handshake failed. Check security.protocol (SSL or SASL_SSL for a TLS \
             listener, PLAINTEXT or SASL_PLAINTEXT otherwise), ssl.ca.location, and \
             ssl.certificate.location / ssl.key.location if the broker requires client \
             certificates"
        }
        RDKafkaErrorCode::NotImplemented
            if matches!(error, KafkaError::MessageConsumption(_)) || reason.contains("ompress") =>
        {
            "a record batch uses a compression codec or feature this build of librdkafka \
             lacks. kstreams builds with gzip, snappy, lz4 and zstd; a custom build must \
             enable the rdkafka features libz and zstd"
        }
        RDKafkaErrorCode::TopicAuthorizationFailed => {
            "the principal may not use a topic. Grant it Read on the input topics, Write on \
             the output and dead-letter topics, and All on the topics prefixed with \
             application.id (internal topics), or connect as a principal that has them"
        }
        RDKafkaErrorCode::GroupAuthorizationFailed => {
            "the principal may not use the consumer group named application.id. Grant it Read \
             on that group"
        }
        RDKafkaErrorCode::TransactionalIdAuthorizationFailed => {
            "the principal may not use the transactional ids prefixed with application.id \
             (exactly_once). Grant it Write and Describe on them, or use \
             processing.guarantee=at_least_once"
        }
        RDKafkaErrorCode::ClusterAuthorizationFailed => {
            "the principal lacks a cluster permission it needs (IdempotentWrite for the \
             producers, Create for internal topics). Grant it, or create the internal topics \
             beforehand"
        }
        RDKafkaErrorCode::UnsupportedSASLMechanism | RDKafkaErrorCode::IllegalSASLState => {
            "the broker does not accept this SASL mechanism on this listener. Set \
             sasl.mechanism to one it enables (sasl.enabled.mechanisms on the broker)"
        }
        RDKafkaErrorCode::UnsupportedFeature
            if reason.contains("SASL") || reason.contains("ssl") =>
        {
            "this build lacks the security feature the configuration asks for"
        }
        _ => return None,
    };
    Some(format!("{client}: {detail}. Fix: {fix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(code: RDKafkaErrorCode) -> KafkaError {
        KafkaError::Global(code)
    }

    #[test]
    fn a_failed_sasl_handshake_names_the_credentials() {
        let m = unrecoverable(
            "consumer",
            &global(RDKafkaErrorCode::Authentication),
            "sasl_ssl://127.0.0.1:9093/bootstrap: SASL authentication error: Authentication \
             failed during authentication due to invalid credentials with SASL mechanism \
             SCRAM-SHA-512",
        )
        .unwrap();
        assert!(m.contains("authentication failed"), "{m}");
        assert!(
            m.contains("sasl.username") && m.contains("sasl.password"),
            "{m}"
        );
        assert!(m.contains("invalid credentials"), "{m}");
    }

    #[test]
    fn an_unverifiable_certificate_names_the_ca_setting() {
        let m = unrecoverable(
            "producer",
            &global(RDKafkaErrorCode::SSL),
            "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL \
             routines::certificate verify failed: broker certificate could not be verified",
        )
        .unwrap();
        assert!(
            m.contains("TLS handshake failed") && m.contains("ssl.ca.location"),
            "{m}"
        );
    }

    #[test]
    fn a_tls_connection_dropped_by_a_restarting_broker_is_transient() {
        for reason in [
            "ssl://127.0.0.1:9093/1: SSL handshake failed: Disconnected: connection reset by peer",
            "ssl://127.0.0.1:9093/1: SSL transport error: unexpected eof while reading",
        ] {
            assert_eq!(
                unrecoverable("consumer", &global(RDKafkaErrorCode::SSL), reason),
                None,
                "{reason}"
            );
        }
        let m = unrecoverable(
            "consumer",
            &global(RDKafkaErrorCode::SSL),
            "SSL handshake failed: error:0A00010B:SSL routines::wrong version number",
        )
        .unwrap();
        assert!(m.contains("security.protocol"), "{m}");
    }

    #[test]
    fn a_codec_the_build_lacks_stops_the_consumer() {
        let e = KafkaError::MessageConsumption(RDKafkaErrorCode::NotImplemented);
        let m = unrecoverable("consumer", &e, "").unwrap();
        assert!(m.contains("compression codec") && m.contains("zstd"), "{m}");
    }

    #[test]
    fn transient_errors_are_left_to_librdkafka() {
        for code in [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::NotCoordinator,
            RDKafkaErrorCode::RequestTimedOut,
            RDKafkaErrorCode::MessageTimedOut,
        ] {
            assert_eq!(
                unrecoverable("consumer", &global(code), "x"),
                None,
                "{code:?}"
            );
        }
        assert_eq!(
            unrecoverable("consumer", &KafkaError::PartitionEOF(0), ""),
            None
        );
    }

    #[test]
    fn the_slot_keeps_the_first_fault() {
        let slot = FaultSlot::default();
        assert!(slot.error().is_none());
        assert!(!slot.check("consumer", &global(RDKafkaErrorCode::AllBrokersDown), ""));
        assert!(slot.check(
            "consumer",
            &global(RDKafkaErrorCode::Authentication),
            "first"
        ));
        assert!(slot.check(
            "producer",
            &global(RDKafkaErrorCode::SSL),
            "second: certificate verify failed"
        ));
        let e = slot.error().unwrap();
        assert!(matches!(e, StreamsError::ClusterAccess(_)));
        assert!(e.to_string().contains("first"), "{e}");
    }
}
