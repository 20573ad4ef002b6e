//! The record type that flows between nodes, and the metadata of the input
//! record currently being processed.

/// Record headers: an ordered list of (name, bytes) pairs, as in Kafka.
///
/// ```
/// let mut h = kstreams_runtime::Headers::default();
/// h.add("trace", b"abc".to_vec());
/// assert_eq!(h.get("trace"), Some(&b"abc"[..]));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, Vec<u8>)>);

impl Headers {
    /// Appends a header.
    ///
    /// ```
    /// let mut h = kstreams_runtime::Headers::default();
    /// h.add("a", vec![1]);
    /// assert_eq!(h.0.len(), 1);
    /// ```
    pub fn add(&mut self, name: impl Into<String>, value: Vec<u8>) {
        self.0.push((name.into(), value));
    }
    /// The last value of header `name`, if any.
    ///
    /// ```
    /// let h = kstreams_runtime::Headers::default();
    /// assert!(h.get("x").is_none());
    /// ```
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
    /// Whether there are no headers.
    ///
    /// ```
    /// assert!(kstreams_runtime::Headers::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A typed record: key, value, timestamp (epoch millis) and headers.
///
/// ```
/// use kstreams_runtime::Record;
/// let r = Record::new("k".to_string(), 1u64, 1000);
/// let r2 = r.clone().with_value(2u64);
/// assert_eq!((r2.key.as_str(), r2.value, r2.timestamp), ("k", 2, 1000));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Record<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// Event time in milliseconds since the epoch.
    pub timestamp: i64,
    /// Headers, carried through operators unchanged unless an operator sets them.
    pub headers: Headers,
}

impl<K, V> Record<K, V> {
    /// A record without headers.
    ///
    /// ```
    /// let r = kstreams_runtime::Record::new(1, "v", 5);
    /// assert!(r.headers.is_empty());
    /// ```
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Record {
            key,
            value,
            timestamp,
            headers: Headers::default(),
        }
    }
    /// The same record with another key.
    ///
    /// ```
    /// let r = kstreams_runtime::Record::new(1, "v", 5).with_key("one");
    /// assert_eq!(r.key, "one");
    /// ```
    pub fn with_key<K2>(self, key: K2) -> Record<K2, V> {
        Record {
            key,
            value: self.value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }
    /// The same record with another value.
    ///
    /// ```
    /// let r = kstreams_runtime::Record::new(1, "v", 5).with_value(7);
    /// assert_eq!(r.value, 7);
    /// ```
    pub fn with_value<V2>(self, value: V2) -> Record<K, V2> {
        Record {
            key: self.key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }
    /// The same record with another timestamp.
    ///
    /// ```
    /// let r = kstreams_runtime::Record::new(1, 2, 5).with_timestamp(9);
    /// assert_eq!(r.timestamp, 9);
    /// ```
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }
}

/// Where the input record being processed came from.
///
/// ```
/// let m = kstreams_runtime::RecordMetadata { topic: "in".into(), partition: 0, offset: 7 };
/// assert_eq!(m.offset, 7);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Offset in the source partition.
    pub offset: i64,
}

/// A record as bytes, as read from or written to a topic.
///
/// ```
/// let r = kstreams_runtime::RawRecord { key: None, value: Some(b"hi".to_vec()), timestamp: 0, headers: Default::default() };
/// assert_eq!(r.value.as_deref(), Some(&b"hi"[..]));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRecord {
    /// Key bytes, or null.
    pub key: Option<Vec<u8>>,
    /// Value bytes, or null (a tombstone).
    pub value: Option<Vec<u8>>,
    /// Timestamp in epoch millis.
    pub timestamp: i64,
    /// Headers.
    pub headers: Headers,
}
