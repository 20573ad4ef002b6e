//! Reading a broker's log segments: which compression codec each stored
//! record batch uses.
//!
//! Why: a test that claims "input compressed with zstd is processed" must
//! show the broker really stored zstd batches (a producer that silently fell
//! back to no compression would make it pass on a build that cannot
//! decompress). The broker keeps batches as the producer compressed them
//! (topic `compression.type=producer`, the default), so the codec bits of
//! the stored batches are the proof.
//!
//! The format (record batch v2, Kafka's `DefaultRecordBatch`): baseOffset
//! i64, batchLength i32 (bytes after this field), partitionLeaderEpoch i32,
//! magic i8, crc u32, attributes i16 whose low three bits are the codec.

use std::path::Path;

use crate::error::{Error, Result};

/// The codec names by attribute value, as Kafka names them.
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// The codec of every complete record batch in partition `partition` of
/// `topic`, in offset order, read from the segment files under a broker's
/// data directory (`<data_dir>/kafka-logs/<topic>-<partition>/*.log`).
///
/// ```no_run
/// let broker = kstreams_testkit::shared_broker();
/// let codecs = kstreams_testkit::stored_batch_codecs(broker.data_dir(), "orders", 0)?;
/// assert!(codecs.iter().all(|c| *c == "zstd"));
/// # Ok::<(), kstreams_testkit::Error>(())
/// ```
pub fn stored_batch_codecs(
    data_dir: &Path,
    topic: &str,
    partition: i32,
) -> Result<Vec<&'static str>> {
    let dir = data_dir
        .join("kafka-logs")
        .join(format!("{topic}-{partition}"));
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    let mut out = Vec::new();
    for seg in segments {
        let bytes =
            std::fs::read(&seg).map_err(|e| Error::io(format!("reading {}", seg.display()), e))?;
        out.extend(batch_codecs(&bytes));
    }
    Ok(out)
}

/// The codecs of the complete batches in one segment's bytes.
fn batch_codecs(bytes: &[u8]) -> Vec<&'static str> {
    const ATTRIBUTES_AT: usize = 8 + 4 + 4 + 1 + 4;
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + ATTRIBUTES_AT + 2 <= bytes.len() {
        let len = i32::from_be_bytes([
            bytes[pos + 8],
            bytes[pos + 9],
            bytes[pos + 10],
            bytes[pos + 11],
        ]);
        let Ok(len) = usize::try_from(len) else {
            break;
        };
        let end = pos + 12 + len;
        // A zero length is the unwritten (preallocated) tail of a segment.
        if len == 0 || end > bytes.len() {
            break;
        }
        let attributes =
            u16::from_be_bytes([bytes[pos + ATTRIBUTES_AT], bytes[pos + ATTRIBUTES_AT + 1]]);
        out.push(
            CODECS
                .get(usize::from(attributes & 7))
                .copied()
                .unwrap_or("unknown"),
        );
        pos = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(codec: u16, body: usize) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(0i64.to_be_bytes());
        b.extend(((4 + 1 + 4 + 2 + body) as i32).to_be_bytes());
        b.extend(0i32.to_be_bytes()); // leader epoch
        b.push(2); // magic
        b.extend(0u32.to_be_bytes()); // crc
        b.extend((codec | 0x10).to_be_bytes()); // codec + transactional bit
        b.extend(std::iter::repeat_n(0xAB, body));
        b
    }

    #[test]
    fn reads_the_codec_bits_of_each_batch_and_stops_at_a_torn_tail() {
        let mut seg = batch(4, 30);
        seg.extend(batch(1, 7));
        seg.extend(batch(0, 0));
        let torn = batch(3, 50);
        seg.extend(&torn[..20]);
        assert_eq!(batch_codecs(&seg), vec!["zstd", "gzip", "none"]);
        assert_eq!(batch_codecs(&[0u8; 64]), Vec::<&str>::new());
    }
}
