//! The Kafka wire format's primitives, as far as the group protocol needs
//! them: big-endian integers, unsigned varints, compact (flexible-version)
//! strings and arrays, and tagged-field sections.
//!
//! Why by hand: librdkafka does not speak the Streams rebalance protocol, and
//! the `kafka-protocol` crate has no `StreamsGroupHeartbeat` messages, so the
//! few messages the member needs are encoded here (`messages.rs`). Decoding
//! never panics: a short or malformed frame is a [`WireError`].

/// A frame that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed response from the broker: {0}")]
pub struct WireError(pub String);

pub(crate) type WireResult<T> = std::result::Result<T, WireError>;

/// Appends Kafka primitives to a byte buffer.
#[derive(Default)]
pub(crate) struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn i8(&mut self, v: i8) {
        self.buf.push(v as u8);
    }
    pub fn i16(&mut self, v: i16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }
    pub fn uvarint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }
    /// A classic nullable STRING (i16 length), as in request header v1/v2.
    pub fn legacy_nullable_string(&mut self, s: Option<&str>) {
        match s {
            None => self.i16(-1),
            Some(s) => {
                let b = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
                self.i16(b.len() as i16);
                self.buf.extend_from_slice(b);
            }
        }
    }
    pub fn compact_string(&mut self, s: &str) {
        self.uvarint(s.len() as u32 + 1);
        self.buf.extend_from_slice(s.as_bytes());
    }
    pub fn compact_nullable_string(&mut self, s: Option<&str>) {
        match s {
            None => self.uvarint(0),
            Some(s) => self.compact_string(s),
        }
    }
    /// The length prefix of a compact array (`None`: a null array).
    pub fn compact_array_len(&mut self, n: Option<usize>) {
        match n {
            None => self.uvarint(0),
            Some(n) => self.uvarint(n as u32 + 1),
        }
    }
    /// Compact BYTES: unsigned varint length + 1, then the bytes.
    pub fn compact_bytes(&mut self, b: &[u8]) {
        self.uvarint(u32::try_from(b.len() + 1).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(b);
    }
    /// An empty tagged-field section.
    pub fn no_tags(&mut self) {
        self.uvarint(0);
    }
}

/// Reads Kafka primitives from a response frame.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    fn take(&mut self, n: usize, what: &str) -> WireResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(WireError(format!(
                "{what}: needs {n} bytes at offset {}, the frame has {}",
                self.pos,
                self.buf.len()
            ))),
        }
    }
    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn i8(&mut self) -> WireResult<i8> {
        Ok(self.take(1, "int8")?[0] as i8)
    }
    pub fn i16(&mut self) -> WireResult<i16> {
        let b = self.take(2, "int16")?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    pub fn u16(&mut self) -> WireResult<u16> {
        let b = self.take(2, "uint16")?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub fn i32(&mut self) -> WireResult<i32> {
        let b = self.take(4, "int32")?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn i64(&mut self) -> WireResult<i64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, "int64")?);
        Ok(i64::from_be_bytes(a))
    }
    fn utf8(b: &[u8]) -> WireResult<String> {
        String::from_utf8(b.to_vec()).map_err(|_| WireError("string is not UTF-8".into()))
    }
    /// A classic STRING (int16 length).
    pub fn string(&mut self) -> WireResult<String> {
        let n = self.i16()?;
        let n =
            usize::try_from(n).map_err(|_| WireError("null where a string is required".into()))?;
        Self::utf8(self.take(n, "string")?)
    }
    /// Compact BYTES (null read as empty).
    pub fn compact_bytes(&mut self) -> WireResult<Vec<u8>> {
        match self.uvarint()? {
            0 => Ok(Vec::new()),
            n => Ok(self.take(n as usize - 1, "bytes")?.to_vec()),
        }
    }
    pub fn uvarint(&mut self) -> WireResult<u32> {
        let mut v: u32 = 0;
        for shift in (0..35).step_by(7) {
            let b = self.take(1, "varint")?[0];
            v |= u32::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(WireError("varint longer than 5 bytes".into()))
    }
    pub fn compact_nullable_string(&mut self) -> WireResult<Option<String>> {
        let n = self.uvarint()?;
        if n == 0 {
            return Ok(None);
        }
        Self::utf8(self.take(n as usize - 1, "string")?).map(Some)
    }
    pub fn compact_string(&mut self) -> WireResult<String> {
        self.compact_nullable_string()?
            .ok_or_else(|| WireError("null where a string is required".into()))
    }
    /// A compact array's length (`None`: null).
    pub fn compact_array_len(&mut self) -> WireResult<Option<usize>> {
        let n = self.uvarint()?;
        if n == 0 {
            return Ok(None);
        }
        let n = n as usize - 1;
        // Every element takes at least a byte: a larger count is garbage.
        if n > self.buf.len() - self.pos {
            return Err(WireError(format!("array of {n} elements in a short frame")));
        }
        Ok(Some(n))
    }
    /// A compact array of int32.
    pub fn compact_i32s(&mut self) -> WireResult<Vec<i32>> {
        let n = self.compact_array_len()?.unwrap_or(0);
        (0..n).map(|_| self.i32()).collect()
    }
    /// Skips a tagged-field section (no tagged field is read).
    pub fn skip_tags(&mut self) -> WireResult<()> {
        let n = self.uvarint()?;
        for _ in 0..n {
            let _tag = self.uvarint()?;
            let size = self.uvarint()?;
            self.take(size as usize, "tagged field")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_their_byte_boundaries() {
        for v in [0u32, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut w = Writer::default();
            w.uvarint(v);
            let mut r = Reader::new(&w.buf);
            assert_eq!(r.uvarint().unwrap(), v);
        }
        let mut w = Writer::default();
        w.uvarint(300);
        assert_eq!(w.buf, [0xac, 0x02]);
    }

    #[test]
    fn compact_strings_and_nulls_round_trip() {
        let mut w = Writer::default();
        w.compact_string("ab");
        w.compact_nullable_string(None);
        w.compact_array_len(None);
        assert_eq!(w.buf, [3, b'a', b'b', 0, 0]);
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.compact_string().unwrap(), "ab");
        assert_eq!(r.compact_nullable_string().unwrap(), None);
        assert_eq!(r.compact_array_len().unwrap(), None);
    }

    #[test]
    fn short_and_garbage_frames_are_errors_not_panics() {
        assert!(Reader::new(&[0, 1]).i32().is_err());
        assert!(Reader::new(&[5, b'a']).compact_string().is_err());
        assert!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
                .uvarint()
                .is_err()
        );
        // An array claiming a million elements in a 3-byte frame.
        assert!(
            Reader::new(&[0xc1, 0x84, 0x3d])
                .compact_array_len()
                .is_err()
        );
        // A tagged field longer than the frame.
        assert!(Reader::new(&[1, 0, 9, 1]).skip_tags().is_err());
        assert!(Reader::new(&[0x80, 0xff, 0x01]).compact_string().is_err());
    }
}
