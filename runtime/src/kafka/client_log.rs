//! Client error logging without floods.
//!
//! When the broker goes away librdkafka reports the same few errors (e.g.
//! `AllBrokersDown`, `BrokerTransportFailure`) from every client, often
//! hundreds of times a second, alternating, each with a slightly different
//! reason text. Logging each one buries the useful lines, so every kind of
//! error is logged the first time, then at most once per interval while it
//! repeats, with the number of repeats held back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;

use super::client_fault::FaultSlot;

const INTERVAL: Duration = Duration::from_secs(10);
/// Kinds remembered before the ones not seen for an interval are dropped.
const MAX_KINDS: usize = 64;

/// Decides which errors to log: each kind (a key chosen by the caller) at
/// most once per interval.
#[derive(Default)]
pub(crate) struct ErrorThrottle {
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl ErrorThrottle {
    /// `Some(repeats held back since it was last logged)` if an error of
    /// kind `key` should be logged now, `None` if it was logged less than
    /// an interval ago.
    pub fn admit(&self, key: &str) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get_mut(key) {
            Some((at, held)) if at.elapsed() < INTERVAL => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                let repeated = *held;
                *at = Instant::now();
                *held = 0;
                Some(repeated)
            }
            None => {
                if seen.len() >= MAX_KINDS {
                    seen.retain(|_, (at, _)| at.elapsed() < INTERVAL);
                }
                seen.insert(key.to_string(), (Instant::now(), 0));
                Some(0)
            }
        }
    }
}

/// One client's error log (see the module docs): the kind of an error is
/// its code, so the varying reason texts of one failure count as repeats.
/// Errors no retry can fix also go to the application's fault slot (see
/// `client_fault.rs`), which stops it.
#[derive(Default)]
pub(crate) struct ClientErrorLog {
    throttle: ErrorThrottle,
    faults: Option<Arc<FaultSlot>>,
}

impl ClientErrorLog {
    /// A log that reports unrecoverable errors to `faults`.
    pub fn reporting_to(faults: Arc<FaultSlot>) -> Self {
        ClientErrorLog {
            throttle: ErrorThrottle::default(),
            faults: Some(faults),
        }
    }

    /// Logs `error` from `client` unless an error of the same kind was
    /// logged less than an interval ago.
    pub fn log(&self, client: &'static str, error: &KafkaError, reason: &str) {
        if let Some(faults) = &self.faults {
            faults.check(client, error, reason);
        }
        if let Some(repeated) = self.throttle.admit(&error.to_string()) {
            tracing::warn!(client, %error, reason, repeated, "Kafka client error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode;

    #[test]
    fn repeats_of_a_kind_are_held_back_even_when_kinds_alternate() {
        let t = ErrorThrottle::default();
        assert_eq!(t.admit("down"), Some(0));
        assert_eq!(t.admit("transport"), Some(0));
        for _ in 0..50 {
            assert_eq!(t.admit("down"), None);
            assert_eq!(t.admit("transport"), None);
        }
        assert_eq!(t.seen.lock().unwrap()["down"].1, 50);
        // Once the interval has passed, the next one is logged with the
        // count of what was held back.
        t.seen.lock().unwrap().get_mut("down").unwrap().0 -= INTERVAL;
        assert_eq!(t.admit("down"), Some(50));
        assert_eq!(t.admit("down"), None);
    }

    #[test]
    fn a_client_error_kind_is_its_code_not_its_reason() {
        let log = ClientErrorLog::default();
        let e = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        for i in 0..100 {
            log.log("test", &e, &format!("{i}/2 brokers are down"));
        }
        let seen = log.throttle.seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen.values().next().unwrap().1, 99);
    }
}
