//! Client error logging without floods.
//!
//! When the broker goes away librdkafka reports the same error (e.g.
//! `AllBrokersDown`) from every client, often hundreds of times a second.
//! Logging each one buries the useful lines, so a client context logs an
//! error the first time, then at most once per interval while it repeats,
//! with the number of repeats it held back.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;

const INTERVAL: Duration = Duration::from_secs(10);

/// One client's error log (see the module docs).
#[derive(Default)]
pub(crate) struct ClientErrorLog {
    last: Mutex<Option<(String, Instant, u64)>>,
}

impl ClientErrorLog {
    /// Logs `error` from `client` unless the same error was logged less than
    /// an interval ago.
    pub fn log(&self, client: &'static str, error: &KafkaError, reason: &str) {
        let text = format!("{error}: {reason}");
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((prev, at, held)) = last.as_mut()
            && *prev == text
            && at.elapsed() < INTERVAL
        {
            *held += 1;
            return;
        }
        let repeated = last.as_ref().map(|(_, _, h)| *h).unwrap_or(0);
        tracing::warn!(client, %error, reason, repeated, "Kafka client error");
        *last = Some((text, Instant::now(), 0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode;

    #[test]
    fn repeats_are_held_back() {
        let log = ClientErrorLog::default();
        let e = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        for _ in 0..100 {
            log.log("test", &e, "2/2 brokers are down");
        }
        let held = log.last.lock().unwrap().as_ref().unwrap().2;
        assert_eq!(held, 99);
        log.log("test", &e, "another reason");
        let (text, _, held) = log.last.lock().unwrap().clone().unwrap();
        assert_eq!(held, 0);
        assert!(text.ends_with("another reason"), "{text}");
    }
}
