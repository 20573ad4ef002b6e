//! The hasher of the per-record hash maps: a store's write set, an
//! aggregation's record cache.
//!
//! Why: these maps are hashed once or more for every record, and std's
//! SipHash was ~3.5% of the orders benchmark's stream thread (run 63 in
//! `benches/RESULTS.md`). FxHash (the `rustc-hash` crate) is several times
//! cheaper on short keys. Keys come from input data, so the hasher is seeded
//! at random once per process: colliding keys cannot be prepared ahead of
//! time.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::OnceLock;

/// A `HashMap` with [`FastHash`].
///
/// ```
/// let mut m: kstreams_runtime::FastHashMap<String, u32> = Default::default();
/// m.insert("a".into(), 1);
/// assert_eq!(m.get("a"), Some(&1));
/// ```
pub type FastHashMap<K, V> = HashMap<K, V, FastHash>;

/// Builds FxHash hashers with a seed drawn once per process.
///
/// ```
/// use std::hash::BuildHasher;
/// let (a, b) = (kstreams_runtime::FastHash::default(), kstreams_runtime::FastHash::default());
/// assert_eq!(a.hash_one("order-1"), b.hash_one("order-1"));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct FastHash(usize);

impl Default for FastHash {
    fn default() -> Self {
        static SEED: OnceLock<usize> = OnceLock::new();
        FastHash(*SEED.get_or_init(|| {
            std::collections::hash_map::RandomState::new().hash_one(0x6b73_u16) as usize
        }))
    }
}

impl BuildHasher for FastHash {
    type Hasher = rustc_hash::FxHasher;

    fn build_hasher(&self) -> rustc_hash::FxHasher {
        rustc_hash::FxHasher::with_seed(self.0)
    }
}
