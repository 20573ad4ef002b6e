//! Declaring a store: its name, serdes, kind, persistence and logging.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use crate::serde::SerdeRef;

/// The kind of a store.
///
/// ```
/// assert_eq!(kstreams_runtime::StoreKind::KeyValue, kstreams_runtime::StoreKind::KeyValue);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// A plain key-value store.
    KeyValue,
    /// Entries expire `ttl_ms` after they were written, in stream time.
    Ttl {
        /// Time to live in milliseconds.
        ttl_ms: i64,
    },
}

/// Declares a state store; attach it with `Topology::add_state_store`.
///
/// Stores are persistent (RocksDB) and changelogged by default.
///
/// ```
/// use kstreams_runtime::{StoreBuilder, Serdes};
/// let b = StoreBuilder::key_value("counts", Serdes::string(), Serdes::u64_text());
/// assert_eq!(b.name(), "counts");
/// assert!(b.is_persistent() && b.is_logged());
/// let m = StoreBuilder::key_value("tmp", Serdes::string(), Serdes::string()).in_memory().with_logging_disabled();
/// assert!(!m.is_persistent() && !m.is_logged());
/// ```
pub struct StoreBuilder<K, V> {
    name: String,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    kind: StoreKind,
    persistent: bool,
    logged: bool,
    window: Option<super::window_store::WindowSpec>,
}

impl<K: 'static, V: 'static> StoreBuilder<K, V> {
    /// A window store (see [`crate::WindowStore`]): values per key and
    /// window start, kept for `retention` of stream time and dropped a whole
    /// time segment at a time. Open it with
    /// [`crate::ProcessorContext::window_store`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams_runtime::{Serdes, StoreBuilder};
    /// let b = StoreBuilder::window("clicks-per-minute", Serdes::string(), Serdes::u64_be(), Duration::from_secs(70));
    /// assert_eq!(b.window_retention_ms(), Some(70_000));
    /// assert!(b.is_persistent() && b.is_logged());
    /// ```
    pub fn window(
        name: impl Into<String>,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
        retention: Duration,
    ) -> Self {
        let retention_ms = retention.as_millis().clamp(1, i64::MAX as u128) as i64;
        StoreBuilder {
            window: Some(super::window_store::WindowSpec::new(retention_ms)),
            ..Self::key_value(name, key_serde, value_serde)
        }
    }
    /// The retention of a window store, in milliseconds (`None` for other stores).
    ///
    /// ```
    /// let b = kstreams_runtime::StoreBuilder::key_value("x", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string());
    /// assert_eq!(b.window_retention_ms(), None);
    /// ```
    pub fn window_retention_ms(&self) -> Option<i64> {
        self.window.map(|w| w.retention_ms)
    }

    /// A key-value store.
    ///
    /// ```
    /// let _ = kstreams_runtime::StoreBuilder::key_value("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::i64_be());
    /// ```
    pub fn key_value(
        name: impl Into<String>,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
    ) -> Self {
        StoreBuilder {
            name: name.into(),
            key_serde,
            value_serde,
            kind: StoreKind::KeyValue,
            persistent: true,
            logged: true,
            window: None,
        }
    }
    /// A store whose entries expire `ttl` after their write, in stream time.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = kstreams_runtime::StoreBuilder::ttl("seen", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::unit(), Duration::from_secs(3600));
    /// assert_eq!(b.kind(), kstreams_runtime::StoreKind::Ttl { ttl_ms: 3_600_000 });
    /// ```
    pub fn ttl(
        name: impl Into<String>,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
        ttl: Duration,
    ) -> Self {
        let ttl_ms = ttl.as_millis().min(i64::MAX as u128) as i64;
        StoreBuilder {
            kind: StoreKind::Ttl { ttl_ms },
            ..Self::key_value(name, key_serde, value_serde)
        }
    }
    /// Keeps the store in memory; it is rebuilt from its changelog when the task starts.
    ///
    /// ```
    /// let b = kstreams_runtime::StoreBuilder::key_value("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string()).in_memory();
    /// assert!(!b.is_persistent());
    /// ```
    pub fn in_memory(mut self) -> Self {
        self.persistent = false;
        self
    }
    /// Keeps the store in RocksDB (the default).
    ///
    /// ```
    /// let b = kstreams_runtime::StoreBuilder::key_value("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string()).persistent();
    /// assert!(b.is_persistent());
    /// ```
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }
    /// Turns off the changelog. The store is then not fault-tolerant.
    ///
    /// ```
    /// let b = kstreams_runtime::StoreBuilder::key_value("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string()).with_logging_disabled();
    /// assert!(!b.is_logged());
    /// ```
    pub fn with_logging_disabled(mut self) -> Self {
        self.logged = false;
        self
    }
    /// The store's name.
    ///
    /// ```
    /// assert_eq!(kstreams_runtime::StoreBuilder::key_value("x", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string()).name(), "x");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The store's kind.
    ///
    /// ```
    /// let b = kstreams_runtime::StoreBuilder::key_value("x", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string());
    /// assert_eq!(b.kind(), kstreams_runtime::StoreKind::KeyValue);
    /// ```
    pub fn kind(&self) -> StoreKind {
        self.kind
    }
    /// Whether the store lives in RocksDB.
    ///
    /// ```
    /// assert!(kstreams_runtime::StoreBuilder::key_value("x", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string()).is_persistent());
    /// ```
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }
    /// Whether writes go to a changelog topic.
    ///
    /// ```
    /// assert!(kstreams_runtime::StoreBuilder::key_value("x", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string()).is_logged());
    /// ```
    pub fn is_logged(&self) -> bool {
        self.logged
    }

    pub(crate) fn into_def(self) -> StoreDef {
        StoreDef {
            name: self.name,
            kind: self.kind,
            persistent: self.persistent,
            logged: self.logged,
            // A window store's key slot carries its retention with the key
            // serde, so `ProcessorContext::window_store` can open it.
            key_serde: match self.window {
                Some(spec) => Arc::new(super::window_store::WindowKeySlot {
                    key_serde: self.key_serde,
                    spec,
                }),
                None => Arc::new(self.key_serde),
            },
            value_serde: Arc::new(self.value_serde),
            key_serde_name: "",
            value_serde_name: "",
        }
    }
}

/// A store declaration with its types erased, as held by the topology.
#[derive(Clone)]
pub(crate) struct StoreDef {
    pub name: String,
    pub kind: StoreKind,
    pub persistent: bool,
    pub logged: bool,
    pub key_serde: Arc<dyn Any + Send + Sync>,
    pub value_serde: Arc<dyn Any + Send + Sync>,
    #[allow(dead_code)]
    pub key_serde_name: &'static str,
    #[allow(dead_code)]
    pub value_serde_name: &'static str,
}

impl StoreDef {
    pub fn changelog_topic(&self, application_id: &str) -> Option<String> {
        self.logged
            .then(|| format!("{application_id}-{}-changelog", self.name))
    }
}
