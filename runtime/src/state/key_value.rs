//! The typed key-value store handle processors use.

use std::cell::RefCell;
use std::rc::Rc;

use crate::error::{Result, StreamsError};
use crate::serde::SerdeRef;

use super::TxnStore;

/// A typed view of a key-value store. Cheap to clone; all clones see the
/// same data. Reads see this commit interval's own writes.
///
/// ```
/// use kstreams_runtime::{KeyValueStore, Serdes};
/// let store = KeyValueStore::<String, u64>::in_memory_for_tests("counts", Serdes::string(), Serdes::u64_be());
/// store.put(&"a".into(), &1).unwrap();
/// store.put(&"b".into(), &2).unwrap();
/// assert_eq!(store.get(&"a".into()).unwrap(), Some(1));
/// assert_eq!(store.all().unwrap().len(), 2);
/// store.delete(&"a".into()).unwrap();
/// assert_eq!(store.get(&"a".into()).unwrap(), None);
/// ```
pub struct KeyValueStore<K, V> {
    inner: Rc<RefCell<TxnStore>>,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    key_buf: RefCell<Vec<u8>>,
    value_buf: RefCell<Vec<u8>>,
}

impl<K, V> Clone for KeyValueStore<K, V> {
    fn clone(&self) -> Self {
        KeyValueStore {
            inner: self.inner.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            key_buf: RefCell::new(Vec::new()),
            value_buf: RefCell::new(Vec::new()),
        }
    }
}

impl<K: 'static, V: 'static> KeyValueStore<K, V> {
    pub(crate) fn new(
        inner: Rc<RefCell<TxnStore>>,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
    ) -> Self {
        KeyValueStore {
            inner,
            key_serde,
            value_serde,
            key_buf: RefCell::new(Vec::new()),
            value_buf: RefCell::new(Vec::new()),
        }
    }

    /// A standalone in-memory store without changelog, for unit tests and examples.
    ///
    /// ```
    /// let s = kstreams_runtime::KeyValueStore::<String, String>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string());
    /// assert_eq!(s.name(), "s");
    /// ```
    pub fn in_memory_for_tests(
        name: &str,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
    ) -> Self {
        let store = TxnStore::new(
            name.to_string(),
            None,
            super::Backend::Memory(Default::default()),
        );
        Self::new(Rc::new(RefCell::new(store)), key_serde, value_serde)
    }

    /// The store's name.
    ///
    /// ```
    /// # let s = kstreams_runtime::KeyValueStore::<String, String>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string());
    /// assert_eq!(s.name(), "s");
    /// ```
    pub fn name(&self) -> String {
        self.inner.borrow().name.clone()
    }

    fn serde_err(&self, e: crate::SerdeError) -> StreamsError {
        StreamsError::store(self.inner.borrow().name.clone(), e.to_string())
    }

    fn with_key<R>(&self, key: &K, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
        let mut kb = self.key_buf.borrow_mut();
        kb.clear();
        self.key_serde
            .serialize(key, &mut kb)
            .map_err(|e| self.serde_err(e))?;
        f(&kb)
    }

    /// The value of `key`, if any.
    ///
    /// ```
    /// # let s = kstreams_runtime::KeyValueStore::<String, String>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string());
    /// assert_eq!(s.get(&"missing".into()).unwrap(), None);
    /// ```
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        self.with_key(key, |kb| {
            let store = self.inner.borrow();
            store
                .get_with(kb, |v| {
                    v.map(|b| self.value_serde.deserialize(b)).transpose()
                })?
                .map_err(|e| self.serde_err(e))
        })
    }

    /// Writes `value` under `key`.
    ///
    /// ```
    /// # let s = kstreams_runtime::KeyValueStore::<String, String>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string());
    /// s.put(&"k".into(), &"v".into()).unwrap();
    /// ```
    pub fn put(&self, key: &K, value: &V) -> Result<()> {
        self.with_key(key, |kb| {
            let mut vb = self.value_buf.borrow_mut();
            vb.clear();
            self.value_serde
                .serialize(value, &mut vb)
                .map_err(|e| self.serde_err(e))?;
            if self.value_serde.is_null(value) {
                self.inner.borrow_mut().delete(kb);
            } else {
                self.inner.borrow_mut().put(kb, &vb);
            }
            Ok(())
        })
    }

    /// Deletes `key` (a tombstone in the changelog).
    ///
    /// ```
    /// # let s = kstreams_runtime::KeyValueStore::<String, String>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string());
    /// s.delete(&"k".into()).unwrap();
    /// ```
    pub fn delete(&self, key: &K) -> Result<()> {
        self.with_key(key, |kb| {
            self.inner.borrow_mut().delete(kb);
            Ok(())
        })
    }

    fn decode(&self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<(K, V)>> {
        entries
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    self.key_serde
                        .deserialize(&k)
                        .map_err(|e| self.serde_err(e))?,
                    self.value_serde
                        .deserialize(&v)
                        .map_err(|e| self.serde_err(e))?,
                ))
            })
            .collect()
    }

    /// Entries with `from <= key <= to`, in key byte order.
    ///
    /// ```
    /// # let s = kstreams_runtime::KeyValueStore::<String, String>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string());
    /// for k in ["a", "b", "c"] { s.put(&k.into(), &k.into()).unwrap(); }
    /// let keys: Vec<String> = s.range(&"a".into(), &"b".into()).unwrap().into_iter().map(|(k, _)| k).collect();
    /// assert_eq!(keys, ["a", "b"]);
    /// ```
    pub fn range(&self, from: &K, to: &K) -> Result<Vec<(K, V)>> {
        let mut fb = Vec::new();
        self.key_serde
            .serialize(from, &mut fb)
            .map_err(|e| self.serde_err(e))?;
        let mut tb = Vec::new();
        self.key_serde
            .serialize(to, &mut tb)
            .map_err(|e| self.serde_err(e))?;
        let entries = self
            .inner
            .borrow()
            .scan(Some(&fb), &|k| k <= tb.as_slice())?;
        self.decode(entries)
    }

    /// Entries whose serialized key starts with the serialized `prefix`.
    ///
    /// ```
    /// # let s = kstreams_runtime::KeyValueStore::<String, String>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string());
    /// for k in ["ab", "ac", "b"] { s.put(&k.into(), &k.into()).unwrap(); }
    /// assert_eq!(s.prefix_scan(&"a".into()).unwrap().len(), 2);
    /// ```
    pub fn prefix_scan(&self, prefix: &K) -> Result<Vec<(K, V)>> {
        let mut pb = Vec::new();
        self.key_serde
            .serialize(prefix, &mut pb)
            .map_err(|e| self.serde_err(e))?;
        let entries = self
            .inner
            .borrow()
            .scan(Some(&pb), &|k| k.starts_with(&pb))?;
        self.decode(entries)
    }

    /// Every entry, in key byte order.
    ///
    /// ```
    /// # let s = kstreams_runtime::KeyValueStore::<String, String>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string());
    /// assert!(s.all().unwrap().is_empty());
    /// ```
    pub fn all(&self) -> Result<Vec<(K, V)>> {
        let entries = self.inner.borrow().scan(None, &|_| true)?;
        self.decode(entries)
    }

    /// An estimate of the number of entries.
    ///
    /// ```
    /// # let s = kstreams_runtime::KeyValueStore::<String, String>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string());
    /// assert_eq!(s.approximate_num_entries(), 0);
    /// ```
    pub fn approximate_num_entries(&self) -> u64 {
        self.inner.borrow().approximate_len()
    }
}
