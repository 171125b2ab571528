//! The pending half messages: what the check loop works through, what END_TRANSACTION
//! resolves, what `wasmq txn list` shows. In memory, rebuilt at start from the half and op
//! topics; check counts, kept entries and the scan start are persisted in
//! `config/transaction.json` (write-temp + fsync + rename) after each check round.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::protocol::properties::{
    CHECK_IMMUNITY_TIME_IN_SECONDS, PGROUP, REAL_QID, REAL_TOPIC, UNIQ_KEY,
};
use crate::store::record::{self, Check, Entry, RecordView};
use crate::store::MessageStore;

/// Where half messages wait (queue 0), invisible to consumers.
pub const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// Where the resolution of each half message is recorded (queue 0; body = its offset).
pub const OP_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
/// Property of an op entry naming the decision (`commit`, `rollback`, `discard`).
pub const OP_PROPERTY: &str = "TRAN_OP";

pub use crate::config::FinalAction;

/// One half message not yet committed or rolled back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// Commit log offset of the half message: its identity.
    pub offset: u64,
    /// Its offset in the half topic's queue (END_TRANSACTION's `tranStateTableOffset`).
    pub queue_offset: u64,
    pub store_timestamp: i64,
    /// Where a commit writes it.
    pub topic: String,
    pub queue_id: i32,
    /// The producer group (`PGROUP`) asked by check-backs and required of END_TRANSACTION.
    pub group: String,
    pub uniq_key: String,
    /// Checks made so far.
    pub checks: u32,
    /// When the next check is due (ms since the epoch).
    pub next_check_ms: i64,
    /// Rebuilt after a restart: a commit may have been written before the crash without its
    /// op entry, so resolving it first looks for the committed copy.
    pub in_doubt: bool,
    /// The maximum number of checks was reached and the final action is to keep it for an
    /// operator: no longer checked.
    pub kept: bool,
    #[serde(skip)]
    resolving: bool,
}

impl Pending {
    /// A pending entry from a stored half message; `None` when it lacks its real topic,
    /// queue or group (then it cannot be resolved and is logged by the caller).
    pub fn from_record(r: &RecordView<'_>, timeout_ms: u64) -> Option<Pending> {
        let topic = r.property(REAL_TOPIC)?;
        let queue_id = r.property(REAL_QID)?.parse().ok()?;
        let group = r.property(PGROUP)?;
        // CHECK_IMMUNITY_TIME_IN_SECONDS lengthens the wait before the first check.
        let immunity_ms = r
            .property(CHECK_IMMUNITY_TIME_IN_SECONDS)
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(|s| s.saturating_mul(1000))
            .unwrap_or(0);
        Some(Pending {
            offset: r.physical_offset() as u64,
            queue_offset: r.queue_offset() as u64,
            store_timestamp: r.store_timestamp(),
            topic: topic.to_string(),
            queue_id,
            group: group.to_string(),
            uniq_key: r.property(UNIQ_KEY).unwrap_or("").to_string(),
            checks: 0,
            next_check_ms: r
                .store_timestamp()
                .saturating_add(timeout_ms.max(immunity_ms) as i64),
            in_doubt: false,
            kept: false,
            resolving: false,
        })
    }
}

/// Why a half message cannot be resolved now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotResolvable {
    /// No pending half message at that offset (resolved already, or never one).
    NotPending,
    /// Another resolution of it is under way.
    Busy,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Persisted {
    /// Every half message below this queue offset is resolved: the start scan begins here.
    half_low_water: u64,
    /// Checks made, by half offset (only entries with checks).
    checks: BTreeMap<u64, u32>,
    /// Entries kept for an operator after the last check.
    kept: BTreeSet<u64>,
}

#[derive(Default)]
struct Inner {
    pending: BTreeMap<u64, Pending>,
    dirty: bool,
    low_water: u64,
    /// Half-message puts between their start and their insertion here: while any is in
    /// flight the low-water mark stays where it is (one of them may be below every pending).
    puts_in_flight: usize,
}

/// A half-message put in flight (see [`TxnTable::start_put`]).
pub struct PutInFlight<'a>(&'a TxnTable);

impl Drop for PutInFlight<'_> {
    fn drop(&mut self) {
        self.0.inner.lock().puts_in_flight -= 1;
    }
}

pub struct TxnTable {
    path: PathBuf,
    inner: Mutex<Inner>,
    restored: Mutex<Persisted>,
}

impl TxnTable {
    /// Opens the persisted state in `dir`; [`recover`](Self::recover) rebuilds the entries.
    pub fn open(dir: &Path) -> TxnTable {
        let path = dir.join("transaction.json");
        let restored = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::error!(path = %path.display(), error = %e,
                    "transaction state unreadable: check counts start again from 0");
                Persisted::default()
            }),
            Err(_) => Persisted::default(),
        };
        TxnTable {
            path,
            inner: Mutex::new(Inner::default()),
            restored: Mutex::new(restored),
        }
    }

    /// Rebuilds the pending entries from the store (after its dispatch caught up): every half
    /// message from the persisted low-water mark on without an op entry is pending, in doubt.
    /// Returns how many are pending.
    pub fn recover(&self, store: &MessageStore, timeout_ms: u64) -> usize {
        let restored = std::mem::take(&mut *self.restored.lock());
        let mut resolved = HashSet::new();
        for_each_in_queue(store, OP_TOPIC, 0, 0, |r| {
            if let Some(off) = std::str::from_utf8(r.body())
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
            {
                resolved.insert(off);
            }
        });
        let mut pending = BTreeMap::new();
        for_each_in_queue(store, HALF_TOPIC, 0, restored.half_low_water, |r| {
            let off = r.physical_offset() as u64;
            if resolved.contains(&off) {
                return;
            }
            match Pending::from_record(r, timeout_ms) {
                Some(mut p) => {
                    p.in_doubt = true;
                    p.checks = restored.checks.get(&off).copied().unwrap_or(0);
                    p.kept = restored.kept.contains(&off);
                    pending.insert(off, p);
                }
                None => tracing::error!(
                    offset = off,
                    "half message lacks REAL_TOPIC, REAL_QID or PGROUP; it cannot be resolved"
                ),
            }
        });
        let n = pending.len();
        let mut g = self.inner.lock();
        g.low_water = restored.half_low_water;
        // Entries added while recovering (new half messages) stay as they are.
        for (k, v) in pending {
            g.pending.entry(k).or_insert(v);
        }
        g.dirty = true;
        n
    }

    /// Call before appending a half message; drop after inserting it (or failing).
    pub fn start_put(&self) -> PutInFlight<'_> {
        self.inner.lock().puts_in_flight += 1;
        PutInFlight(self)
    }

    pub fn insert(&self, p: Pending) {
        let mut g = self.inner.lock();
        g.pending.insert(p.offset, p);
        g.dirty = true;
    }

    /// Claims a pending entry for resolution.
    pub fn begin(&self, offset: u64) -> Result<Pending, NotResolvable> {
        let mut g = self.inner.lock();
        match g.pending.get_mut(&offset) {
            None => Err(NotResolvable::NotPending),
            Some(p) if p.resolving => Err(NotResolvable::Busy),
            Some(p) => {
                p.resolving = true;
                Ok(p.clone())
            }
        }
    }

    /// Ends a resolution: `done` removes the entry; otherwise it stays pending (in doubt
    /// when a commit may have been written).
    pub fn finish(&self, offset: u64, done: bool, in_doubt: bool) {
        let mut g = self.inner.lock();
        if done {
            g.pending.remove(&offset);
        } else if let Some(p) = g.pending.get_mut(&offset) {
            p.resolving = false;
            p.in_doubt |= in_doubt;
        }
        g.dirty = true;
    }

    /// Up to `max` entries due for a check at `now`, oldest first.
    pub fn due(&self, now: i64, max: usize) -> Vec<Pending> {
        self.inner
            .lock()
            .pending
            .values()
            .filter(|p| !p.resolving && !p.kept && p.next_check_ms <= now)
            .take(max)
            .cloned()
            .collect()
    }

    /// When the next check is due, if any entry will be.
    pub fn next_due(&self) -> Option<i64> {
        self.inner
            .lock()
            .pending
            .values()
            .filter(|p| !p.resolving && !p.kept)
            .map(|p| p.next_check_ms)
            .min()
    }

    /// Records a check made (or skipped for lack of a producer) and when the next is due.
    pub fn checked(&self, offset: u64, checks: u32, next_check_ms: i64) {
        let mut g = self.inner.lock();
        if let Some(p) = g.pending.get_mut(&offset) {
            p.checks = checks;
            p.next_check_ms = next_check_ms;
            g.dirty = true;
        }
    }

    /// Keeps an entry for an operator: no more checks.
    pub fn keep(&self, offset: u64) {
        let mut g = self.inner.lock();
        if let Some(p) = g.pending.get_mut(&offset) {
            p.kept = true;
            g.dirty = true;
        }
    }

    pub fn get(&self, offset: u64) -> Option<Pending> {
        self.inner.lock().pending.get(&offset).cloned()
    }

    pub fn list(&self) -> Vec<Pending> {
        self.inner.lock().pending.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes check counts, kept entries and the low-water mark when they changed.
    /// `half_queue_end` is the half queue's max offset, read before the call: every half
    /// message below it was appended before, so it is pending here, in flight, or resolved.
    pub fn persist_if_dirty(&self, half_queue_end: u64) -> Result<(), crate::store::StoreError> {
        let snapshot = {
            let mut g = self.inner.lock();
            if !g.dirty {
                return Ok(());
            }
            g.dirty = false;
            // The low-water mark moves up to the oldest pending half message (or the end of
            // the queue read before), never past a put still in flight.
            if g.puts_in_flight == 0 {
                let oldest = g
                    .pending
                    .values()
                    .map(|p| p.queue_offset)
                    .min()
                    .unwrap_or(half_queue_end)
                    .min(half_queue_end);
                g.low_water = g.low_water.max(oldest);
            }
            Persisted {
                half_low_water: g.low_water,
                checks: g
                    .pending
                    .values()
                    .filter(|p| p.checks > 0)
                    .map(|p| (p.offset, p.checks))
                    .collect(),
                kept: g
                    .pending
                    .values()
                    .filter(|p| p.kept)
                    .map(|p| p.offset)
                    .collect(),
            }
        };
        let bytes = serde_json::to_vec(&snapshot).unwrap_or_default();
        crate::store::checkpoint::write_atomically(&self.path, &bytes)
    }
}

/// Calls `f` with every readable record of a queue from queue offset `from` on.
fn for_each_in_queue(
    store: &MessageStore,
    topic: &str,
    queue_id: i32,
    from: u64,
    mut f: impl FnMut(&RecordView<'_>),
) {
    let Some(cq) = store.consume_queue(topic, queue_id) else {
        return;
    };
    let end = cq.max_offset();
    let mut off = from.max(cq.min_offset());
    while off < end {
        if let Some(e) = cq.get(off) {
            if let Some(bytes) = store.view(e.physical_offset) {
                if let Ok(Entry::Record(r)) = record::decode(
                    &bytes,
                    Check {
                        crc: false,
                        position: Some(e.physical_offset as i64),
                    },
                ) {
                    f(&r);
                }
            }
        }
        off += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(offset: u64, queue_offset: u64, next: i64) -> Pending {
        Pending {
            offset,
            queue_offset,
            store_timestamp: 0,
            topic: "T".into(),
            queue_id: 0,
            group: "G".into(),
            uniq_key: format!("u{offset}"),
            checks: 0,
            next_check_ms: next,
            in_doubt: false,
            kept: false,
            resolving: false,
        }
    }

    fn low_water(dir: &Path) -> u64 {
        let b = std::fs::read(dir.join("transaction.json")).unwrap();
        serde_json::from_slice::<Persisted>(&b)
            .unwrap()
            .half_low_water
    }

    #[test]
    fn claims_are_exclusive_and_due_skips_claimed_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let t = TxnTable::open(dir.path());
        t.insert(pending(100, 0, 10));
        t.insert(pending(200, 1, 10));
        t.insert(pending(300, 2, 50));
        assert_eq!(t.due(20, 10).len(), 2);
        let p = t.begin(100).unwrap();
        assert_eq!(p.offset, 100);
        assert_eq!(t.begin(100), Err(NotResolvable::Busy));
        assert_eq!(t.begin(999), Err(NotResolvable::NotPending));
        assert_eq!(t.due(20, 10).len(), 1, "a claimed entry is not checked");
        // A failed resolution leaves it pending (in doubt if a commit may be written).
        t.finish(100, false, true);
        assert!(t.get(100).unwrap().in_doubt);
        t.begin(100).unwrap();
        t.finish(100, true, false);
        assert_eq!(t.begin(100), Err(NotResolvable::NotPending));
        t.keep(200);
        t.checked(300, 2, 70);
        assert!(t.due(60, 10).is_empty());
        assert_eq!(t.next_due(), Some(70));
        assert_eq!(t.get(300).unwrap().checks, 2);
    }

    #[test]
    fn low_water_never_passes_a_pending_entry_or_a_put_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let t = TxnTable::open(dir.path());
        t.insert(pending(100, 5, 0));
        t.insert(pending(200, 9, 0));
        t.persist_if_dirty(12).unwrap();
        assert_eq!(low_water(dir.path()), 5);
        // A put in flight holds the mark even when everything pending is resolved.
        let put = t.start_put();
        for o in [100, 200] {
            t.begin(o).unwrap();
            t.finish(o, true, false);
        }
        t.persist_if_dirty(12).unwrap();
        assert_eq!(low_water(dir.path()), 5);
        drop(put);
        t.finish(0, true, false); // marks dirty
        t.persist_if_dirty(12).unwrap();
        assert_eq!(low_water(dir.path()), 12);
        // Check counts and kept entries are persisted.
        let mut p = pending(300, 12, 0);
        p.checks = 3;
        t.insert(p);
        t.keep(300);
        t.persist_if_dirty(13).unwrap();
        let b = std::fs::read(dir.path().join("transaction.json")).unwrap();
        let s: Persisted = serde_json::from_slice(&b).unwrap();
        assert_eq!(s.checks.get(&300), Some(&3));
        assert!(s.kept.contains(&300));
        assert_eq!(s.half_low_water, 12);
    }
}
