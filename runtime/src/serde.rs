//! Serdes: how keys and values become bytes on a topic or in a store, and back.
//!
//! Operators work on typed records; bytes exist only at the edges (sources,
//! sinks, stores and changelogs). A [`Serde`] serializes into a caller-owned
//! buffer so the hot path reuses one allocation per node instead of one per
//! record. Every failure is a [`SerdeError`], never a panic: a malformed
//! record is the data's fault, and the task decides (by its error policy)
//! whether to skip it or stop.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::SerdeError;

/// Converts values of type `T` to and from bytes.
///
/// Kafka keys and values may be null; a serde decides what null means for its
/// type through [`Serde::deserialize_null`] and [`Serde::is_null`].
///
/// ```
/// use kstreams_runtime::{Serde, Serdes};
/// let s = Serdes::string();
/// let mut buf = Vec::new();
/// s.serialize(&"héllo".to_string(), &mut buf).unwrap();
/// assert_eq!(s.deserialize(&buf).unwrap(), "héllo");
/// assert!(s.deserialize(&[0xff]).is_err());
/// ```
pub trait Serde<T>: Send + Sync + 'static {
    /// Appends the bytes of `value` to `out`.
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError>;
    /// Reads a value from `bytes`.
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError>;
    /// The value a null key or value stands for. By default null is an error.
    fn deserialize_null(&self) -> Result<T, SerdeError> {
        Err(SerdeError::new(self.name(), "null is not allowed here"))
    }
    /// Whether `value` should be written as a Kafka null.
    fn is_null(&self, _value: &T) -> bool {
        false
    }
    /// A short name used in error messages and in `describe()`.
    fn name(&self) -> &'static str;
}

/// A shared, type-erased serde.
pub type SerdeRef<T> = Arc<dyn Serde<T>>;

/// Deserializes optional bytes (a Kafka key or value) with `serde`.
///
/// ```
/// use kstreams_runtime::{serde::deserialize_opt, Serdes};
/// assert_eq!(deserialize_opt(&*Serdes::unit(), None).unwrap(), ());
/// assert!(deserialize_opt(&*Serdes::string(), None).is_err());
/// ```
pub fn deserialize_opt<T: 'static>(
    serde: &dyn Serde<T>,
    bytes: Option<&[u8]>,
) -> Result<T, SerdeError> {
    match bytes {
        Some(b) => serde.deserialize(b),
        None => serde.deserialize_null(),
    }
}

/// Factory functions for the built-in serdes.
///
/// ```
/// use kstreams_runtime::{Serde, Serdes};
/// let n = Serdes::u64_text();
/// let mut buf = Vec::new();
/// n.serialize(&42, &mut buf).unwrap();
/// assert_eq!(buf, b"42");
/// ```
pub struct Serdes;

impl Serdes {
    /// UTF-8 strings. Invalid UTF-8 is an error.
    ///
    /// ```
    /// let s = kstreams_runtime::Serdes::string();
    /// assert_eq!(s.name(), "string");
    /// ```
    pub fn string() -> SerdeRef<String> {
        Arc::new(StringSerde)
    }
    /// Raw bytes, unchanged.
    ///
    /// ```
    /// use kstreams_runtime::Serde;
    /// let s = kstreams_runtime::Serdes::bytes();
    /// assert_eq!(s.deserialize(&[1, 2]).unwrap(), vec![1, 2]);
    /// ```
    pub fn bytes() -> SerdeRef<Vec<u8>> {
        Arc::new(BytesSerde)
    }
    /// The unit type, always written as null: for records without a key.
    ///
    /// ```
    /// use kstreams_runtime::Serde;
    /// assert!(kstreams_runtime::Serdes::unit().is_null(&()));
    /// ```
    pub fn unit() -> SerdeRef<()> {
        Arc::new(UnitSerde)
    }
    /// `i64`, 8 bytes big-endian (Kafka's `LongSerializer`).
    ///
    /// ```
    /// use kstreams_runtime::Serde;
    /// assert_eq!(kstreams_runtime::Serdes::i64_be().deserialize(&[0,0,0,0,0,0,1,0]).unwrap(), 256);
    /// ```
    pub fn i64_be() -> SerdeRef<i64> {
        Arc::new(BigEndian::<i64>(PhantomData))
    }
    /// `u64`, 8 bytes big-endian.
    ///
    /// ```
    /// use kstreams_runtime::Serde;
    /// assert!(kstreams_runtime::Serdes::u64_be().deserialize(&[1]).is_err());
    /// ```
    pub fn u64_be() -> SerdeRef<u64> {
        Arc::new(BigEndian::<u64>(PhantomData))
    }
    /// `i32`, 4 bytes big-endian (Kafka's `IntegerSerializer`).
    ///
    /// ```
    /// use kstreams_runtime::Serde;
    /// assert_eq!(kstreams_runtime::Serdes::i32_be().deserialize(&[0,0,0,7]).unwrap(), 7);
    /// ```
    pub fn i32_be() -> SerdeRef<i32> {
        Arc::new(BigEndian::<i32>(PhantomData))
    }
    /// `i64` as decimal UTF-8 text, e.g. `b"-12"`.
    ///
    /// ```
    /// use kstreams_runtime::Serde;
    /// assert_eq!(kstreams_runtime::Serdes::i64_text().deserialize(b"-12").unwrap(), -12);
    /// ```
    pub fn i64_text() -> SerdeRef<i64> {
        Arc::new(DecimalText::<i64>(PhantomData))
    }
    /// `u64` as decimal UTF-8 text, e.g. `b"12"`.
    ///
    /// ```
    /// use kstreams_runtime::Serde;
    /// assert!(kstreams_runtime::Serdes::u64_text().deserialize(b"x").is_err());
    /// ```
    pub fn u64_text() -> SerdeRef<u64> {
        Arc::new(DecimalText::<u64>(PhantomData))
    }
    /// Any `serde` type as JSON (serde_json).
    ///
    /// ```
    /// use kstreams_runtime::Serde;
    /// let s = kstreams_runtime::Serdes::json::<Vec<u32>>();
    /// assert_eq!(s.deserialize(b"[1,2]").unwrap(), vec![1, 2]);
    /// assert!(s.deserialize(b"{").is_err());
    /// ```
    pub fn json<T: Serialize + DeserializeOwned + Send + Sync + 'static>() -> SerdeRef<T> {
        Arc::new(JsonSerde::<T>(PhantomData))
    }
    /// Any `serde` type as bincode (standard configuration).
    ///
    /// ```
    /// use kstreams_runtime::Serde;
    /// let s = kstreams_runtime::Serdes::bincode::<(u32, String)>();
    /// let mut buf = Vec::new();
    /// s.serialize(&(1, "a".into()), &mut buf).unwrap();
    /// assert_eq!(s.deserialize(&buf).unwrap(), (1, "a".to_string()));
    /// ```
    pub fn bincode<T: Serialize + DeserializeOwned + Send + Sync + 'static>() -> SerdeRef<T> {
        Arc::new(BincodeSerde::<T>(PhantomData))
    }
    /// Wraps a serde so that Kafka null maps to `None`.
    ///
    /// ```
    /// use kstreams_runtime::Serde;
    /// let s = kstreams_runtime::Serdes::optional(kstreams_runtime::Serdes::string());
    /// assert_eq!(s.deserialize_null().unwrap(), None);
    /// assert!(s.is_null(&None));
    /// ```
    pub fn optional<T: Send + Sync + 'static>(inner: SerdeRef<T>) -> SerdeRef<Option<T>> {
        Arc::new(OptionalSerde(inner))
    }
}

struct StringSerde;
impl Serde<String> for StringSerde {
    fn serialize(&self, value: &String, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<String, SerdeError> {
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(SerdeError::new("string", format!("invalid UTF-8: {e}"))),
        }
    }
    fn name(&self) -> &'static str {
        "string"
    }
}

struct BytesSerde;
impl Serde<Vec<u8>> for BytesSerde {
    fn serialize(&self, value: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(value);
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<Vec<u8>, SerdeError> {
        Ok(bytes.to_vec())
    }
    fn name(&self) -> &'static str {
        "bytes"
    }
}

struct UnitSerde;
impl Serde<()> for UnitSerde {
    fn serialize(&self, _: &(), _: &mut Vec<u8>) -> Result<(), SerdeError> {
        Ok(())
    }
    fn deserialize(&self, _: &[u8]) -> Result<(), SerdeError> {
        Ok(())
    }
    fn deserialize_null(&self) -> Result<(), SerdeError> {
        Ok(())
    }
    fn is_null(&self, _: &()) -> bool {
        true
    }
    fn name(&self) -> &'static str {
        "unit"
    }
}

struct OptionalSerde<T>(SerdeRef<T>);
impl<T: Send + Sync + 'static> Serde<Option<T>> for OptionalSerde<T> {
    fn serialize(&self, value: &Option<T>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        match value {
            Some(v) => self.0.serialize(v, out),
            None => Ok(()),
        }
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<Option<T>, SerdeError> {
        self.0.deserialize(bytes).map(Some)
    }
    fn deserialize_null(&self) -> Result<Option<T>, SerdeError> {
        Ok(None)
    }
    fn is_null(&self, value: &Option<T>) -> bool {
        value.is_none()
    }
    fn name(&self) -> &'static str {
        self.0.name()
    }
}

macro_rules! fixed_width {
    ($($t:ty => $name:literal),*) => {$(
        impl Serde<$t> for BigEndian<$t> {
            fn serialize(&self, value: &$t, out: &mut Vec<u8>) -> Result<(), SerdeError> {
                out.extend_from_slice(&value.to_be_bytes());
                Ok(())
            }
            fn deserialize(&self, bytes: &[u8]) -> Result<$t, SerdeError> {
                let arr: [u8; std::mem::size_of::<$t>()] = bytes.try_into().map_err(|_| {
                    SerdeError::new($name, format!("expected {} bytes, got {}", std::mem::size_of::<$t>(), bytes.len()))
                })?;
                Ok(<$t>::from_be_bytes(arr))
            }
            fn name(&self) -> &'static str { $name }
        }
        impl Serde<$t> for DecimalText<$t> {
            fn serialize(&self, value: &$t, out: &mut Vec<u8>) -> Result<(), SerdeError> {
                use std::io::Write;
                write!(out, "{}", value).map_err(|e| SerdeError::new("decimal", e.to_string()))
            }
            fn deserialize(&self, bytes: &[u8]) -> Result<$t, SerdeError> {
                let s = std::str::from_utf8(bytes)
                    .map_err(|e| SerdeError::new("decimal", format!("invalid UTF-8: {e}")))?;
                s.trim().parse::<$t>().map_err(|e| {
                    SerdeError::new("decimal", format!("'{}' is not a valid {}: {e}", s, stringify!($t)))
                })
            }
            fn name(&self) -> &'static str { "decimal" }
        }
    )*};
}

struct BigEndian<T>(PhantomData<fn() -> T>);
struct DecimalText<T>(PhantomData<fn() -> T>);
fixed_width!(i64 => "i64", u64 => "u64", i32 => "i32");

struct JsonSerde<T>(PhantomData<fn() -> T>);
impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Serde<T> for JsonSerde<T> {
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        serde_json::to_writer(out, value).map_err(|e| SerdeError::new("json", e.to_string()))
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        serde_json::from_slice(bytes).map_err(|e| SerdeError::new("json", e.to_string()))
    }
    fn name(&self) -> &'static str {
        "json"
    }
}

struct BincodeSerde<T>(PhantomData<fn() -> T>);
impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Serde<T> for BincodeSerde<T> {
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
            .map(|_| ())
            .map_err(|e| SerdeError::new("bincode", e.to_string()))
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        let (v, used) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map_err(|e| SerdeError::new("bincode", e.to_string()))?;
        if used != bytes.len() {
            return Err(SerdeError::new(
                "bincode",
                format!("{} trailing bytes", bytes.len() - used),
            ));
        }
        Ok(v)
    }
    fn name(&self) -> &'static str {
        "bincode"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T: PartialEq + std::fmt::Debug + 'static>(s: &SerdeRef<T>, v: T) {
        let mut buf = Vec::new();
        s.serialize(&v, &mut buf).unwrap();
        assert_eq!(s.deserialize(&buf).unwrap(), v);
    }

    #[test]
    fn roundtrips() {
        roundtrip(&Serdes::string(), "ünïcode".to_string());
        roundtrip(&Serdes::bytes(), vec![0u8, 255]);
        roundtrip(&Serdes::i64_be(), -5);
        roundtrip(&Serdes::u64_be(), u64::MAX);
        roundtrip(&Serdes::i32_be(), i32::MIN);
        roundtrip(&Serdes::i64_text(), -1234);
        roundtrip(&Serdes::u64_text(), 99);
        roundtrip(
            &Serdes::json::<std::collections::BTreeMap<String, i64>>(),
            [("a".to_string(), 1)].into(),
        );
        roundtrip(
            &Serdes::bincode::<Vec<(i64, String)>>(),
            vec![(1, "x".into())],
        );
        roundtrip(&Serdes::optional(Serdes::string()), Some("x".into()));
    }

    #[test]
    fn errors_are_typed_not_panics() {
        let e = Serdes::string().deserialize(&[0xc3, 0x28]).unwrap_err();
        assert_eq!(e.format, "string");
        assert!(e.message.contains("invalid UTF-8"));
        let e = Serdes::i64_be().deserialize(&[1, 2, 3]).unwrap_err();
        assert_eq!(e.message, "expected 8 bytes, got 3");
        let e = Serdes::u64_text().deserialize(b"-1").unwrap_err();
        assert!(
            e.message.contains("'-1' is not a valid u64"),
            "{}",
            e.message
        );
        let e = Serdes::json::<u32>().deserialize(b"\"x\"").unwrap_err();
        assert_eq!(e.format, "json");
        assert!(Serdes::bincode::<u64>().deserialize(&[]).is_err());
        let e = deserialize_opt(&*Serdes::string(), None).unwrap_err();
        assert_eq!(e.message, "null is not allowed here");
    }

    #[test]
    fn unit_and_optional_map_null() {
        assert!(Serdes::unit().is_null(&()));
        let o = Serdes::optional(Serdes::i64_be());
        assert_eq!(deserialize_opt(&*o, None).unwrap(), None);
        assert!(!o.is_null(&Some(1)));
    }
}
