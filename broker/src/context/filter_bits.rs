//! Match bits beside the consume queues (RocketMQ's bitmap filter, for plugin expressions):
//! a background thread follows dispatch and evaluates each new batch of a queue once per
//! distinct subscribed expression (across groups), keeping one bit per queue offset. A pull
//! then skips non-matching entries without reading the commit log, and evaluates only what
//! the bits do not cover (backlog from before the subscription appeared, or what the thread
//! has not reached yet). Bits start at the queue's end when a subscription first appears and
//! keep at most [`MAX_BITS`] offsets per queue and expression (older ones are dropped).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::wake::Signal;

use crate::plugin::batch::bit;
use crate::store::{ArrivalListener, MessageFilter};

/// Offsets kept per queue and expression (512 KiB of bits).
pub const MAX_BITS: u64 = 1 << 22;

/// One table: a queue under an expression of a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub topic: String,
    pub queue_id: i32,
    pub ty: String,
    pub expression: String,
}

/// A [`Key`] seen as borrowed parts, so a pull can look its table up without building a
/// `Key` (four `String`s) per chunk: the map is searched by `&dyn KeyView`.
trait KeyView {
    fn view(&self) -> (&str, i32, &str, &str);
}

impl KeyView for Key {
    fn view(&self) -> (&str, i32, &str, &str) {
        (&self.topic, self.queue_id, &self.ty, &self.expression)
    }
}

impl KeyView for (&str, i32, &str, &str) {
    fn view(&self) -> (&str, i32, &str, &str) {
        *self
    }
}

impl<'a> std::borrow::Borrow<dyn KeyView + 'a> for Key {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

// `Key` and its view hash alike (the map's lookups by view depend on it).
impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.view().hash(h)
    }
}

impl std::hash::Hash for dyn KeyView + '_ {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.view().hash(h)
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}

impl Eq for dyn KeyView + '_ {}

/// Bits for offsets `start..end` of one queue under one expression (stored from `base`, the
/// multiple of 8 at or below `start`).
#[derive(Debug)]
pub struct Bits {
    base: u64,
    start: u64,
    end: u64,
    bytes: Vec<u8>,
}

impl Bits {
    pub fn new(at: u64) -> Bits {
        // Keep `base` a multiple of 8 so bytes never shift by bits.
        let base = at - at % 8;
        Bits {
            base,
            start: at,
            end: at,
            bytes: vec![0; ((at - base) as usize).div_ceil(8)],
        }
    }

    /// Records whether offset [`end`](Bits::end) matched.
    pub fn push(&mut self, matched: bool) {
        let i = (self.end - self.base) as usize;
        if i / 8 >= self.bytes.len() {
            self.bytes.push(0);
        }
        if matched {
            self.bytes[i / 8] |= 1 << (i % 8);
        }
        self.end += 1;
        if self.end - self.base > MAX_BITS {
            let drop = (MAX_BITS / 2) as usize / 8;
            self.bytes.drain(..drop);
            self.base += (drop * 8) as u64;
            self.start = self.start.max(self.base);
        }
    }

    /// The next offset to evaluate.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The bits from `from` on (up to `max` offsets) as a filter; `None` when `from` is not
    /// covered.
    pub fn snapshot(&self, from: u64, max: u64) -> Option<Covered> {
        if from < self.start || from >= self.end {
            return None;
        }
        let start = (from - self.base) as usize;
        let end = (self.end.min(from.saturating_add(max)) - self.base) as usize;
        // Whole bytes: `base` is a multiple of 8, so byte k holds offsets base + 8k...
        let first = start / 8;
        Some(Covered {
            from,
            end: self.base + end as u64,
            bit_base: self.base + (first * 8) as u64,
            bytes: self.bytes[first..end.div_ceil(8)].to_vec(),
        })
    }
}

/// A copy of covered bits: decides offsets `from..end`; later offsets pass (to be evaluated).
#[derive(Debug)]
pub struct Covered {
    pub from: u64,
    pub end: u64,
    /// Offset of bit 0 of `bytes`.
    bit_base: u64,
    bytes: Vec<u8>,
}

impl Covered {
    pub fn covers(&self, off: u64) -> bool {
        off >= self.from && off < self.end
    }
}

impl MessageFilter for Covered {
    fn by_offset(&self, off: u64) -> bool {
        !self.covers(off) || bit(&self.bytes, (off - self.bit_base) as usize)
    }
}

#[derive(Default)]
pub struct FilterBits {
    tables: RwLock<HashMap<Key, Arc<Mutex<Bits>>>>,
    wake: Signal,
    /// Some plugin-expression subscription has a table: arrivals wake the thread. Without one
    /// an arrival is a load of this flag (the thread still learns of new subscriptions from
    /// [`notify`](FilterBits::notify) and its periodic pass).
    armed: AtomicBool,
}

impl FilterBits {
    /// The covered bits of a queue under an expression, from `from`.
    pub fn covered(
        &self,
        topic: &str,
        queue_id: i32,
        ty: &str,
        expression: &str,
        from: u64,
    ) -> Option<Covered> {
        let key = (topic, queue_id, ty, expression);
        let t = self.tables.read().get(&key as &dyn KeyView).cloned()?;
        let b = t.lock();
        b.snapshot(from, 4096)
    }

    /// The table of a queue under an expression, created (starting at `start()`) if new.
    pub fn table(&self, key: &Key, start: impl FnOnce() -> u64) -> Arc<Mutex<Bits>> {
        if let Some(t) = self.tables.read().get(key) {
            return t.clone();
        }
        let mut tables = self.tables.write();
        self.armed.store(true, Ordering::Release);
        tables
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Mutex::new(Bits::new(start()))))
            .clone()
    }

    /// Whether arrivals wake the thread (some table exists).
    pub fn is_armed(&self) -> bool {
        self.armed.load(Ordering::Acquire)
    }

    /// Drops the tables of expressions nobody subscribes to any more.
    pub fn retain(&self, active: &[Key]) {
        let mut t = self.tables.write();
        t.retain(|k, _| active.contains(k));
        self.armed.store(!t.is_empty(), Ordering::Release);
    }

    pub fn stop(&self) {
        self.wake.shutdown();
    }

    /// Wakes the thread (new messages, or a subscription that may be new).
    pub fn notify(&self) {
        self.wake.notify();
    }

    /// Waits for [`notify`](Self::notify) or the timeout; false once stopped.
    pub fn wait(&self, timeout: std::time::Duration) -> bool {
        self.wake.wait(timeout)
    }

    pub fn is_stopped(&self) -> bool {
        self.wake.is_shut_down()
    }

    /// Number of (queue, expression) tables (for tests and metrics).
    pub fn tables(&self) -> usize {
        self.tables.read().len()
    }
}

impl ArrivalListener for FilterBits {
    fn on_arrival(&self, _topic: &str, _queue_id: i32, _max_offset: u64) {
        if self.is_armed() {
            self.notify();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_cover_what_was_pushed_and_stay_bounded() {
        let mut b = Bits::new(13);
        assert!(b.snapshot(13, 100).is_none(), "nothing evaluated yet");
        for i in 0..20u64 {
            b.push(i % 3 == 0);
        }
        assert!(
            b.snapshot(12, 100).is_none(),
            "before the first evaluated offset"
        );
        let c = b.snapshot(13, 100).unwrap();
        assert_eq!((c.from, c.end), (13, 33));
        for off in 13..33 {
            assert_eq!(c.by_offset(off), (off - 13) % 3 == 0, "{off}");
        }
        assert!(c.by_offset(33) && !c.covers(33), "beyond: to be evaluated");
        let c = b.snapshot(20, 5).unwrap();
        assert_eq!((c.from, c.end), (20, 25));
        assert_eq!(c.by_offset(22), (22 - 13) % 3 == 0);
        // The window slides: at most MAX_BITS offsets are kept.
        let mut b = Bits::new(0);
        for i in 0..MAX_BITS + 10 {
            b.push(i % 2 == 0);
        }
        assert!(b.end - b.base <= MAX_BITS);
        assert!(b.snapshot(0, 10).is_none());
        let c = b.snapshot(MAX_BITS, 4).unwrap();
        assert!(c.by_offset(MAX_BITS) && !c.by_offset(MAX_BITS + 1));
    }

    #[test]
    fn arrivals_wake_the_thread_only_while_a_table_exists() {
        let fb = FilterBits::default();
        let key = Key {
            topic: "T".into(),
            queue_id: 0,
            ty: "SQL92".into(),
            expression: "a > 1".into(),
        };
        fb.on_arrival("T", 0, 1);
        assert!(!fb.wake.is_pending(), "no subscription: no wake-up");
        fb.table(&key, || 0);
        fb.on_arrival("T", 0, 2);
        assert!(fb.wake.is_pending(), "a table: arrivals wake the thread");
        assert!(fb.wait(std::time::Duration::ZERO) && !fb.wake.is_pending());
        fb.retain(&[]);
        fb.on_arrival("T", 0, 3);
        assert!(!fb.wake.is_pending(), "subscription gone: no wake-up");
        fb.table(&key, || 0);
        fb.retain(std::slice::from_ref(&key));
        fb.on_arrival("T", 0, 4);
        assert!(fb.wake.is_pending(), "still subscribed: armed");
    }

    #[test]
    fn tables_are_found_by_borrowed_parts() {
        let key = |q: i32, e: &str| Key {
            topic: "T".into(),
            queue_id: q,
            ty: "SQL92".into(),
            expression: e.into(),
        };
        let mut map: HashMap<Key, u32> = HashMap::new();
        map.insert(key(0, "a > 1"), 1);
        map.insert(key(1, "a > 1"), 2);
        map.insert(key(0, "a > 2"), 3);
        let get =
            |t: &str, q: i32, ty: &str, e: &str| map.get(&(t, q, ty, e) as &dyn KeyView).copied();
        assert_eq!(get("T", 0, "SQL92", "a > 1"), Some(1));
        assert_eq!(get("T", 1, "SQL92", "a > 1"), Some(2));
        assert_eq!(get("T", 0, "SQL92", "a > 2"), Some(3));
        assert_eq!(get("T", 2, "SQL92", "a > 1"), None);
        assert_eq!(get("T", 0, "TAG", "a > 1"), None);
        // Part boundaries matter: ("Ta", "b") is not ("T", "ab").
        assert_eq!(get("T", 0, "SQL9", "2a > 1"), None);
    }
}
