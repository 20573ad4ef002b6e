//! Partition time in the metadata of committed offsets.
//!
//! Why: stream time drives TTLs (`dedupe`), window closing and stream-time
//! punctuation. If it restarted from nothing after a crash or a move, a
//! record processed again could be judged differently than the first time
//! (an order id whose TTL had passed would count as a duplicate again).
//! So each input partition's time goes into the transaction with its
//! offset, in the offset's metadata string, and a task that starts reads
//! it back with the committed offsets.
//!
//! The format is Kafka Streams' own (`TopicPartitionMetadata`): base64 of a
//! version byte and the time as a big-endian i64. kstreams writes version
//! 1 (the time alone); it reads version 1 and version 2, which Kafka
//! Streams writes (the time, then processor metadata, ignored here). So
//! an application moved from Kafka Streams keeps its stream time, and back.

use rdkafka::{Offset, TopicPartitionList};

use crate::task::StreamTask;

/// Adds `task`'s offsets to commit to `tpl`, each with its partition's time.
pub(crate) fn add_offsets(task: &StreamTask, tpl: &mut TopicPartitionList) -> Result<(), String> {
    let times = task.partition_times_to_commit();
    for (topic, p, o) in task.offsets_to_commit() {
        let mut e = tpl.add_partition(&topic, p);
        e.set_offset(Offset::Offset(o))
            .map_err(|e| format!("offset {o} of {topic} [{p}]: {e}"))?;
        if let Some((_, _, time)) = times.iter().find(|(t, q, _)| *q == p && *t == topic) {
            e.set_metadata(encode(*time));
        }
    }
    Ok(())
}

/// The metadata of a committed offset as text (a client may have written
/// bytes that are not UTF-8, which rdkafka would panic on: then none).
pub(crate) fn text_of(e: &rdkafka::topic_partition_list::TopicPartitionListElem<'_>) -> String {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| e.metadata().to_string()))
        .unwrap_or_default()
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The metadata string for a partition whose time is `partition_time`.
pub(crate) fn encode(partition_time: i64) -> String {
    let mut bytes = vec![1u8];
    bytes.extend_from_slice(&partition_time.to_be_bytes());
    base64_encode(&bytes)
}

/// The partition time in a committed offset's metadata; `None` if there is
/// none (empty, another client's text, an unknown version).
pub(crate) fn decode(metadata: &str) -> Option<i64> {
    let bytes = base64_decode(metadata.trim())?;
    match bytes.first()? {
        1 | 2 => Some(i64::from_be_bytes(bytes.get(1..9)?.try_into().ok()?)),
        _ => None,
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_time_round_trips() {
        for t in [0, 1, 1_700_000_000_123, i64::MAX, -5] {
            assert_eq!(decode(&encode(t)), Some(t), "{t}");
        }
    }

    #[test]
    fn the_format_is_kafka_streams_version_1() {
        // Base64 of [0x01, 0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00]:
        // version 1, 1_700_000_000_000 ms.
        assert_eq!(encode(1_700_000_000_000), "AQAAAYvP5WgA");
    }

    #[test]
    fn kafka_streams_version_2_is_read_and_other_text_is_ignored() {
        // Version 2: the time, then processor metadata (here 4 bytes).
        let mut v2 = vec![2u8];
        v2.extend_from_slice(&42i64.to_be_bytes());
        v2.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(decode(&base64_encode(&v2)), Some(42));
        assert_eq!(decode(""), None);
        assert_eq!(decode("not base64!"), None);
        assert_eq!(decode(&base64_encode(&[9, 0, 0, 0, 0, 0, 0, 0, 1])), None);
        assert_eq!(decode(&base64_encode(&[1, 2])), None);
    }
}
