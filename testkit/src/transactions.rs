//! `ListTransactions` (KIP-664), spoken directly over the Kafka protocol.
//!
//! Why by hand: librdkafka's admin API has no call for it, and running
//! `kafka-transactions.sh` would need the kafka-tools jars and a JVM per
//! look. A test that must know whether a job's transactions are still open
//! on the broker (before it kills that broker, say) asks each broker here:
//! one small flexible-version request (API key 66, version 0) on a
//! plaintext connection, and its response.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::error::{Error, Result};

const LIST_TRANSACTIONS: i16 = 66;

/// One transaction as a broker's transaction coordinator lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionListing {
    /// The producer's `transactional.id`.
    pub transactional_id: String,
    /// Its current producer id.
    pub producer_id: i64,
    /// Its state: `Empty`, `Ongoing`, `PrepareCommit`, `PrepareAbort`,
    /// `CompleteCommit`, `CompleteAbort`, `Dead` or `PrepareEpochFence`.
    pub state: String,
}

impl TransactionListing {
    /// Whether the transaction is open: begun (`Ongoing`) or between its
    /// end and its markers (`Prepare*`).
    pub fn is_open(&self) -> bool {
        self.state == "Ongoing" || self.state.starts_with("Prepare")
    }
}

/// Every transaction the coordinators on the brokers of `bootstrap` (a
/// comma-separated list of plaintext `host:port`s; list every broker of a
/// cluster, each lists only the transactions it coordinates) know about.
///
/// ```no_run
/// let open: Vec<_> = kstreams_testkit::list_transactions("127.0.0.1:9092")?
///     .into_iter()
///     .filter(|t| t.is_open())
///     .collect();
/// # Ok::<(), kstreams_testkit::Error>(())
/// ```
pub fn list_transactions(bootstrap: &str) -> Result<Vec<TransactionListing>> {
    let mut all = Vec::new();
    for addr in bootstrap
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        all.extend(list_on(addr)?);
    }
    Ok(all)
}

fn list_on(addr: &str) -> Result<Vec<TransactionListing>> {
    let context = format!("ListTransactions on {addr}");
    let io = |e| Error::io(context.clone(), e);
    let mut stream = TcpStream::connect(addr).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    // Request header v2, then the v0 body: no state filters, no producer
    // id filters, no tagged fields.
    let correlation = 7i32;
    let client_id = b"kstreams-testkit";
    let mut body = Vec::new();
    body.extend_from_slice(&LIST_TRANSACTIONS.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&correlation.to_be_bytes());
    body.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    body.extend_from_slice(client_id);
    body.extend_from_slice(&[0, 1, 1, 0]);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    stream.write_all(&frame).map_err(io)?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).map_err(io)?;
    let len = i32::from_be_bytes(len);
    if !(0..=16 << 20).contains(&len) {
        return Err(protocol(&context, format!("response size {len}")));
    }
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).map_err(io)?;
    parse_response(&buf, correlation).map_err(|d| protocol(&context, d))
}

fn protocol(context: &str, detail: String) -> Error {
    Error::Protocol {
        context: context.to_string(),
        detail,
    }
}

/// Response header v1 and a v0 `ListTransactionsResponse`.
fn parse_response(
    buf: &[u8],
    correlation: i32,
) -> std::result::Result<Vec<TransactionListing>, String> {
    let mut r = Reader { buf, at: 0 };
    let got = r.i32()?;
    if got != correlation {
        return Err(format!("correlation id {got}, expected {correlation}"));
    }
    r.tagged_fields()?;
    let _throttle_ms = r.i32()?;
    let error = r.i16()?;
    if error != 0 {
        return Err(format!("error code {error}"));
    }
    let unknown_filters = r.compact_len()?;
    for _ in 0..unknown_filters {
        r.compact_string()?;
    }
    let n = r.compact_len()?;
    let mut out = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let transactional_id = r.compact_string()?;
        let producer_id = r.i64()?;
        let state = r.compact_string()?;
        r.tagged_fields()?;
        out.push(TransactionListing {
            transactional_id,
            producer_id,
            state,
        });
    }
    r.tagged_fields()?;
    Ok(out)
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or_else(|| format!("truncated at byte {} (wanted {n})", self.at))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn i16(&mut self) -> std::result::Result<i16, String> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().unwrap_or_default(),
        ))
    }
    fn i32(&mut self) -> std::result::Result<i32, String> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }
    fn i64(&mut self) -> std::result::Result<i64, String> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
    fn uvarint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }
    /// A compact array's or string's length (stored plus one; 0 is null,
    /// read as empty).
    fn compact_len(&mut self) -> std::result::Result<usize, String> {
        let n = self.uvarint()?.saturating_sub(1);
        if n as usize > self.buf.len() {
            return Err(format!("length {n} beyond the response"));
        }
        Ok(n as usize)
    }
    fn compact_string(&mut self) -> std::result::Result<String, String> {
        let n = self.compact_len()?;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    fn tagged_fields(&mut self) -> std::result::Result<(), String> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_listing_and_rejects_a_truncated_one() {
        let mut b = Vec::new();
        b.extend_from_slice(&7i32.to_be_bytes());
        b.push(0); // header tags
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.push(1); // no unknown filters
        b.push(2); // one transaction
        b.push(6);
        b.extend_from_slice(b"app-0");
        b.extend_from_slice(&42i64.to_be_bytes());
        b.push(8);
        b.extend_from_slice(b"Ongoing");
        b.push(0);
        b.push(0);
        let got = parse_response(&b, 7).unwrap();
        assert_eq!(
            got,
            vec![TransactionListing {
                transactional_id: "app-0".into(),
                producer_id: 42,
                state: "Ongoing".into()
            }]
        );
        assert!(got[0].is_open());
        assert!(parse_response(&b[..b.len() - 3], 7).is_err());
        assert!(parse_response(&b, 8).unwrap_err().contains("correlation"));
    }
}
