//! The in-memory backend: a sorted map. Rebuilt from the changelog whenever
//! its task starts, since nothing of it survives the process.

use std::collections::BTreeMap;
use std::ops::Bound;

#[derive(Default)]
pub(crate) struct MemoryBackend {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemoryBackend {
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(|v| v.as_slice())
    }
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.map.insert(key, value);
    }
    pub fn delete(&mut self, key: &[u8]) {
        self.map.remove(key);
    }
    /// Removes every key in `[from, to)`.
    pub fn delete_range(&mut self, from: &[u8], to: &[u8]) {
        let doomed: Vec<Vec<u8>> = self
            .map
            .range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.map.remove(&k);
        }
    }
    pub fn clear(&mut self) {
        self.map.clear();
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn scan(
        &self,
        from: Option<&[u8]>,
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let lower = match from {
            Some(f) => Bound::Included(f),
            None => Bound::Unbounded,
        };
        self.map
            .range::<[u8], _>((lower, Bound::Unbounded))
            .take_while(|(k, _)| keep(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
