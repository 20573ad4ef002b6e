//! Metadata, admin and hashing helpers of [`KafkaCluster`](super::KafkaCluster).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::BaseConsumer;
use rdkafka::metadata::MetadataTopic;

use crate::error::{Error, Result};

/// A description of the first partition of `t` without a leader or a full ISR.
pub(crate) fn under_replicated(t: &MetadataTopic) -> Option<String> {
    if let Some(e) = t.error() {
        return Some(format!("{}: {e:?}", t.name()));
    }
    t.partitions().iter().find_map(|p| {
        let replicas: BTreeSet<i32> = p.replicas().iter().copied().collect();
        let isr: BTreeSet<i32> = p.isr().iter().copied().collect();
        (p.leader() < 0 || p.error().is_some() || replicas != isr || replicas.is_empty()).then(
            || {
                format!(
                    "{}/{} leader {} replicas {:?} isr {:?}",
                    t.name(),
                    p.id(),
                    p.leader(),
                    p.replicas(),
                    p.isr()
                )
            },
        )
    })
}

/// The `__transaction_state` partition holding `transactional_id`, as Kafka computes it:
/// `Utils.abs(transactionalId.hashCode()) % partitions` (Java's `String.hashCode` over
/// UTF-16 code units; `Utils.abs(Integer.MIN_VALUE)` is 0).
///
/// ```
/// assert_eq!(kstreams_testkit::transaction_state_partition("hello", 4), 2);
/// ```
pub fn transaction_state_partition(transactional_id: &str, partitions: i32) -> i32 {
    let h = java_string_hashcode(transactional_id);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

pub(crate) fn java_string_hashcode(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)))
}

pub(crate) fn client_config(bootstrap: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500")
        .set("socket.connection.setup.timeout.ms", "2000")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set_log_level(RDKafkaLogLevel::Emerg);
    cfg
}

pub(crate) fn metadata_client(bootstrap: &str) -> Result<BaseConsumer> {
    client_config(bootstrap)
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(|e| Error::kafka("creating a metadata client", e))
}

/// Minimal executor for rdkafka's admin futures (completed by librdkafka's threads).
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{java_string_hashcode, transaction_state_partition};

    #[test]
    fn java_string_hashcode_matches_java() {
        // Values printed by Java 17's String.hashCode().
        assert_eq!(java_string_hashcode(""), 0);
        assert_eq!(java_string_hashcode("a"), 97);
        assert_eq!(java_string_hashcode("hello"), 99162322);
        assert_eq!(java_string_hashcode("kstreams-app-0_0"), 1498502032);
        assert_eq!(java_string_hashcode("orders-app-1_2"), 1539590928);
        assert_eq!(java_string_hashcode("Ünïcode-東京"), -672318850);
        // A supplementary character counts as two UTF-16 code units.
        assert_eq!(java_string_hashcode("\u{1F600}x"), 54959989);
        assert_eq!(java_string_hashcode("polygenelubricants"), i32::MIN);
    }

    #[test]
    fn transaction_partition_uses_kafkas_abs() {
        assert_eq!(transaction_state_partition("kstreams-app-0_0", 4), 0);
        assert_eq!(transaction_state_partition("Ünïcode-東京", 4), 2);
        assert_eq!(transaction_state_partition("Ünïcode-東京", 50), 0);
        assert_eq!(transaction_state_partition("a", 50), 47);
        // Utils.abs(Integer.MIN_VALUE) == 0, not a negative partition.
        assert_eq!(transaction_state_partition("polygenelubricants", 50), 0);
    }
}
