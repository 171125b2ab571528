//! A bounded cache keyed by (expression type, expression), least recently used entry evicted
//! first, looked up with borrowed `&str`s (no allocation on a hit).
//!
//! The `lru` crate looks keys up through `Borrow`, and a `(String, String)` cannot lend a
//! `(&str, &str)`. So both are seen as a `dyn Key` (a pair of `&str`), which hashes and compares
//! exactly as the owned pair does: a lookup borrows, an insert (after a miss, which costs a
//! plugin call anyway) allocates the key once.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;

use lru::LruCache;

/// An (expression type, expression) pair, owned or borrowed.
trait Key {
    fn parts(&self) -> (&str, &str);
}

impl Key for (String, String) {
    fn parts(&self) -> (&str, &str) {
        (&self.0, &self.1)
    }
}

impl Key for (&str, &str) {
    fn parts(&self) -> (&str, &str) {
        (self.0, self.1)
    }
}

impl<'a> Borrow<dyn Key + 'a> for (String, String) {
    fn borrow(&self) -> &(dyn Key + 'a) {
        self
    }
}

// Hashes as `(String, String)` does (a tuple hashes its fields in order, a `String` as its
// `str`), as `Borrow` requires.
impl Hash for dyn Key + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for dyn Key + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn Key + '_ {}

/// Values by expression type and expression, at most `capacity` of them.
pub(super) struct ExprCache<V> {
    lru: LruCache<(String, String), V>,
}

impl<V: Clone> ExprCache<V> {
    pub(super) fn new(capacity: usize) -> Self {
        ExprCache {
            lru: LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    /// The value cached for `ty` and `expression`, marked as most recently used.
    pub(super) fn get(&mut self, ty: &str, expression: &str) -> Option<V> {
        self.lru.get(&(ty, expression) as &dyn Key).cloned()
    }

    /// Caches a value, evicting the least recently used one when full.
    pub(super) fn put(&mut self, ty: &str, expression: &str, v: V) {
        self.lru.put((ty.to_string(), expression.to_string()), v);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lru.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowed_lookups_find_owned_keys_and_the_oldest_goes_first() {
        let mut c = ExprCache::new(2);
        c.put("SQL92", "a > 1", 1);
        c.put("SQL92", "b > 1", 2);
        assert_eq!(c.get("SQL92", "a > 1"), Some(1));
        assert_eq!(c.get("TAG", "a > 1"), None);
        // "b > 1" is now the least recently used.
        c.put("TAG", "x", 3);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("SQL92", "b > 1"), None);
        assert_eq!(c.get("SQL92", "a > 1"), Some(1));
        assert_eq!(c.get("TAG", "x"), Some(3));
        // The split between type and expression is part of the key.
        c.put("AB", "C", 4);
        assert_eq!(c.get("A", "BC"), None);
    }
}
