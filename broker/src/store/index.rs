//! Index of messages by key: `KEYS` tokens and `UNIQ_KEY`, each as `topic#key`, in hash-index
//! files laid out like RocketMQ's:
//!
//! ```text
//! header 40 B: begin_ts i64 | end_ts i64 | begin_phys i64 | indexed_upto i64 | slots_synced i32 | count i32
//! slots  4 B each: number of the newest entry in the slot (0 = none)
//! entries 20 B each: key_hash i32 | phys i64 | seconds since begin_ts i32 | previous entry i32
//! ```
//! Files are named by their first store timestamp. The index is a hint: lookups return
//! candidate offsets that the caller verifies against the record (hash collisions, and entries
//! left pointing past a truncated log tail after a crash, are filtered there).
//!
//! Flushing costs what changed. Entries are appended in order and the slots follow from them
//! (a slot holds the newest entry of its hash), so the periodic [`flush`](IndexService::flush)
//! makes durable only the entries written since the last one and the header (`msync` of those
//! ranges). The slots, written at random places (a page per key at worst), are made durable by
//! one `fdatasync` of the file once `slots` entries were added since the last one (so at most
//! about 4 B of slot writes per key), when a file is full, and on close
//! ([`sync_slots`](IndexService::sync_slots), off the dispatch path); `slots_synced` records
//! up to which entry they were. Opening a file replays the slot updates of the entries after
//! it (after a crash: at most `slots` entries).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};
use parking_lot::Mutex;

use super::error::{IoContext, Result};
use super::mapped_file::{list_files, MappedFile};
use super::record::tag_hash;

const HEADER: u64 = 40;

fn key_hash(key: &str) -> i32 {
    (tag_hash(key) as i32).wrapping_abs().max(0)
}

const ENTRY: u64 = 20;

struct IndexFile {
    file: Arc<MappedFile>,
    /// A second mapping of the file, for `msync` of ranges (the page cache is shared: syncing
    /// a range through it writes what the first mapping dirtied there).
    sync_map: MmapRaw,
    slots: u32,
    entries: u32,
    /// Entries below this number are durable.
    synced: AtomicU32,
    /// Written since the last flush.
    dirty: AtomicBool,
}

impl IndexFile {
    fn new(file: MappedFile, slots: u32, entries: u32) -> Result<IndexFile> {
        let path = file.path().to_path_buf();
        let fd = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .at(&path)?;
        let sync_map = MmapOptions::new()
            .len(file.size() as usize)
            .map_raw(&fd)
            .at(&path)?;
        let f = IndexFile {
            file: Arc::new(file),
            sync_map,
            slots,
            entries,
            synced: AtomicU32::new(0),
            dirty: AtomicBool::new(false),
        };
        f.synced.store(f.count(), Ordering::Release);
        Ok(f)
    }

    /// `msync` of bytes `[off, off + len)`: durable (`fdatasync` of that range only).
    fn sync_range(&self, off: u64, len: u64) -> std::io::Result<()> {
        self.sync_map.flush_range(off as usize, len as usize)
    }
    fn raw_i64(&self, off: u64) -> i64 {
        let b = &self.file.raw()[off as usize..off as usize + 8];
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        i64::from_be_bytes(a)
    }
    fn raw_i32(&self, off: u64) -> i32 {
        let b = &self.file.raw()[off as usize..off as usize + 4];
        i32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    fn put_i64(&self, off: u64, v: i64) {
        self.file
            .write_slice(off, 8)
            .copy_from_slice(&v.to_be_bytes());
    }
    fn put_i32(&self, off: u64, v: i32) {
        self.file
            .write_slice(off, 4)
            .copy_from_slice(&v.to_be_bytes());
    }
    fn begin_ts(&self) -> i64 {
        self.raw_i64(0)
    }
    fn end_ts(&self) -> i64 {
        self.raw_i64(8)
    }
    fn indexed_upto(&self) -> u64 {
        self.raw_i64(24) as u64
    }
    fn count(&self) -> u32 {
        self.raw_i32(36).max(1) as u32
    }
    /// Entries below this number have their slot updates durable.
    fn slots_synced(&self) -> u32 {
        self.raw_i32(32).max(1) as u32
    }

    /// Redoes the slot updates of the entries after `slots_synced` (those slots may not have
    /// reached the disk before a crash). Zeroed entries (never written out) are skipped.
    fn replay_slots(&self) -> u32 {
        let count = self.count().min(self.entries);
        let mut n = self.slots_synced();
        let from = n;
        while n < count {
            let e = self.entry_off(n);
            let hash = self.raw_i32(e);
            let written = hash != 0 || self.raw_i64(e + 4) != 0 || self.raw_i32(e + 16) != 0;
            let slot = self.slot_off(hash);
            // Unchanged slots are not rewritten (no page dirtied for nothing).
            if written && self.raw_i32(slot) != n as i32 {
                self.put_i32(slot, n as i32);
            }
            n += 1;
        }
        count.saturating_sub(from)
    }
    fn is_full(&self) -> bool {
        self.count() >= self.entries
    }
    fn slot_off(&self, hash: i32) -> u64 {
        HEADER + (hash as u32 % self.slots) as u64 * 4
    }
    fn entry_off(&self, n: u32) -> u64 {
        HEADER + self.slots as u64 * 4 + n as u64 * ENTRY
    }

    fn put(&self, key: &str, phys: u64, store_ts: i64) {
        let hash = key_hash(key);
        let n = self.count();
        let slot = self.slot_off(hash);
        let prev = self.raw_i32(slot);
        let prev = if prev <= 0 || prev as u32 >= n {
            0
        } else {
            prev
        };
        let diff = ((store_ts - self.begin_ts()) / 1000).clamp(0, i32::MAX as i64) as i32;
        let e = self.entry_off(n);
        self.put_i32(e, hash);
        self.put_i64(e + 4, phys as i64);
        self.put_i32(e + 12, diff);
        self.put_i32(e + 16, prev);
        self.put_i32(slot, n as i32);
        if self.raw_i64(16) == 0 && n == 1 {
            self.put_i64(16, phys as i64);
        }
        self.put_i64(8, store_ts.max(self.end_ts()));
        self.put_i32(36, n as i32 + 1);
    }

    fn lookup(&self, key: &str, begin: i64, end: i64, max: usize, out: &mut Vec<u64>) {
        let hash = key_hash(key);
        let count = self.count();
        let mut n = self.raw_i32(self.slot_off(hash));
        let begin_ts = self.begin_ts();
        let mut steps = 0;
        while n > 0 && (n as u32) < count && out.len() < max && steps < count {
            let e = self.entry_off(n as u32);
            let h = self.raw_i32(e);
            let phys = self.raw_i64(e + 4);
            let t = begin_ts + self.raw_i32(e + 12) as i64 * 1000;
            let prev = self.raw_i32(e + 16);
            // Entry times are rounded down to the second: widen the window by one.
            if h == hash && t >= begin - 1000 && t <= end && phys >= 0 {
                out.push(phys as u64);
            }
            if prev >= n {
                break;
            }
            n = prev;
            steps += 1;
        }
    }
}

pub struct IndexService {
    dir: PathBuf,
    slots: u32,
    entries: u32,
    files: Mutex<Vec<Arc<IndexFile>>>,
    /// Files whose slots are due for an `fdatasync`, with the entry count it will cover.
    slots_due: Mutex<Vec<(Arc<IndexFile>, u32)>>,
}

impl IndexService {
    /// Opens the index files in `dir`. Entries at or past `log_end` are stale (the log was
    /// truncated) and will be rewritten by re-dispatch.
    pub fn open(dir: &Path, slots: u32, entries: u32, log_end: u64) -> Result<IndexService> {
        std::fs::create_dir_all(dir).at(dir)?;
        let size = HEADER + slots as u64 * 4 + entries as u64 * ENTRY;
        let mut files = Vec::new();
        for (base, path) in list_files(dir)? {
            let f = IndexFile::new(MappedFile::open(&path, base, size)?, slots, entries)?;
            if f.indexed_upto() > log_end {
                f.put_i64(24, log_end as i64);
            }
            let replayed = f.replay_slots();
            if replayed > 0 {
                tracing::info!(file = %path.display(), entries = replayed, "index slots replayed");
            }
            files.push(Arc::new(f));
        }
        Ok(IndexService {
            dir: dir.to_path_buf(),
            slots,
            entries,
            files: Mutex::new(files),
            slots_due: Mutex::new(Vec::new()),
        })
    }

    /// Commit log offset up to which records are indexed.
    pub fn indexed_upto(&self) -> u64 {
        self.files
            .lock()
            .last()
            .map(|f| f.indexed_upto())
            .unwrap_or(0)
    }

    /// Indexes one record's keys. Records below `indexed_upto` are skipped (re-dispatch).
    pub fn put<'k>(
        &self,
        phys: u64,
        size: u32,
        store_ts: i64,
        keys: impl Iterator<Item = &'k str> + Clone,
        topics: &[&str],
    ) -> Result<()> {
        let mut files = self.files.lock();
        if files.last().is_some_and(|f| phys < f.indexed_upto()) {
            return Ok(());
        }
        let mut key = String::with_capacity(64);
        // Every key under every topic the record is dispatched to (its own and extra targets).
        for (topic, k) in topics
            .iter()
            .flat_map(|t| keys.clone().map(move |k| (*t, k)))
        {
            if k.is_empty() {
                continue;
            }
            if files.last().is_none_or(|f| f.is_full()) {
                let upto = files.last().map(|f| f.indexed_upto()).unwrap_or(0);
                let base = files
                    .last()
                    .map(|f| (f.file.base() + 1).max(store_ts as u64))
                    .unwrap_or(store_ts.max(0) as u64);
                let size = HEADER + self.slots as u64 * 4 + self.entries as u64 * ENTRY;
                let file = MappedFile::create(&self.dir, base, size)?;
                let f = IndexFile::new(file, self.slots, self.entries)?;
                f.put_i64(0, store_ts);
                f.put_i64(8, store_ts);
                f.put_i64(24, upto as i64);
                f.put_i32(32, 1);
                f.put_i32(36, 1);
                f.synced.store(1, Ordering::Release);
                f.dirty.store(true, Ordering::Release);
                if let Some(old) = files.last() {
                    // Full: its slots are synced by the next `sync_slots`, not here (this
                    // may be an appender's thread).
                    self.due(old, old.count());
                }
                files.push(Arc::new(f));
            }
            key.clear();
            key.push_str(topic);
            key.push('#');
            key.push_str(k);
            if let Some(f) = files.last() {
                f.put(&key, phys, store_ts);
            }
        }
        if let Some(f) = files.last() {
            f.put_i64(24, (phys + size as u64) as i64);
            f.dirty.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Queues `f` for an `fdatasync` of its slots covering `count` entries.
    fn due(&self, f: &Arc<IndexFile>, count: u32) {
        let mut due = self.slots_due.lock();
        match due.iter_mut().find(|(d, _)| Arc::ptr_eq(d, f)) {
            Some(d) => d.1 = d.1.max(count),
            None => due.push((f.clone(), count)),
        }
    }

    /// Candidate commit log offsets for `topic#key` stored within `[begin, end]` (ms), newest
    /// file first, at most `max`.
    pub fn lookup(&self, topic: &str, key: &str, begin: i64, end: i64, max: usize) -> Vec<u64> {
        let full = format!("{topic}#{key}");
        let mut out = Vec::new();
        let files = self.files.lock();
        for f in files.iter().rev() {
            if out.len() >= max {
                break;
            }
            if f.begin_ts() > end || f.end_ts() < begin - 1000 {
                continue;
            }
            f.lookup(&full, begin, end, max, &mut out);
        }
        out
    }

    /// Makes the entries written since the last flush and the header durable (`msync` of
    /// those ranges), not the slots: they are replayed from the entries on open, and synced by
    /// [`sync_slots`](Self::sync_slots) once `slots` entries accumulated. Nothing written:
    /// no syscall. Call it while no record is being indexed (the header then matches the
    /// entries made durable).
    pub fn flush(&self) -> std::io::Result<()> {
        let dirty: Vec<Arc<IndexFile>> = self
            .files
            .lock()
            .iter()
            .filter(|f| f.dirty.load(Ordering::Acquire))
            .cloned()
            .collect();
        for f in dirty {
            f.dirty.store(false, Ordering::Release);
            let (count, slots_synced) = {
                let _files = self.files.lock();
                (f.count(), f.slots_synced())
            };
            let from = f.synced.load(Ordering::Acquire).min(count);
            if count > from {
                f.sync_range(f.entry_off(from), (count - from) as u64 * ENTRY)?;
            }
            f.sync_range(0, HEADER)?;
            f.synced.store(count, Ordering::Release);
            if count - slots_synced.min(count) >= self.slots {
                self.due(&f, count);
            }
        }
        Ok(())
    }

    /// Makes the slots of files that are due durable (`fdatasync` of the file: in steady
    /// state once per `slots` entries), then records it in their header.
    pub fn sync_slots(&self) -> std::io::Result<()> {
        let due = std::mem::take(&mut *self.slots_due.lock());
        for (f, count) in due {
            f.file.sync()?;
            {
                let _files = self.files.lock();
                if f.slots_synced() < count {
                    f.put_i32(32, count as i32);
                }
            }
            f.sync_range(0, HEADER)?;
        }
        Ok(())
    }

    /// Flushes everything (close): entries, header and slots of every file.
    pub fn sync_all(&self) -> std::io::Result<()> {
        self.flush()?;
        let files: Vec<Arc<IndexFile>> = self.files.lock().clone();
        for f in &files {
            let (count, slots_synced) = {
                let _files = self.files.lock();
                (f.count(), f.slots_synced())
            };
            if slots_synced < count {
                self.due(f, count);
            }
        }
        self.sync_slots()
    }

    /// Deletes index files whose entries all point below `log_min` (never the newest).
    pub fn delete_before(&self, log_min: u64) -> Result<usize> {
        let victims: Vec<Arc<IndexFile>> = {
            let mut files = self.files.lock();
            let mut n = 0;
            while n + 1 < files.len() && files[n].indexed_upto() <= log_min {
                n += 1;
            }
            files.drain(..n).collect()
        };
        for v in &victims {
            v.file.delete()?;
        }
        Ok(victims.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_keys_across_files_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let idx = IndexService::open(dir.path(), 16, 10, 0).unwrap();
        for i in 0..50u64 {
            let k = format!("k{}", i % 5);
            let u = format!("u{i}");
            idx.put(
                i * 100,
                100,
                1_000_000 + i as i64 * 1000,
                [k.as_str(), u.as_str()].into_iter(),
                &["T"],
            )
            .unwrap();
        }
        assert_eq!(idx.indexed_upto(), 5000);
        let mut hits = idx.lookup("T", "k3", 0, i64::MAX, 100);
        hits.sort();
        // Candidates include every true hit (collisions are filtered by the caller).
        for i in (3..50).step_by(5) {
            assert!(hits.contains(&(i * 100)), "missing {i}");
        }
        assert_eq!(idx.lookup("T", "u42", 0, i64::MAX, 10).first(), Some(&4200));
        // Time bounds.
        let early = idx.lookup("T", "k3", 0, 1_000_000 + 10_000, 100);
        assert!(early.contains(&300) && early.contains(&800) && !early.contains(&4800));
        // Max.
        assert_eq!(idx.lookup("T", "k3", 0, i64::MAX, 2).len(), 2);
        // Re-put of an already indexed record is skipped.
        idx.put(200, 100, 1_002_000, ["zz"].into_iter(), &["T"])
            .unwrap();
        assert!(idx.lookup("T", "zz", 0, i64::MAX, 10).is_empty());
        idx.flush().unwrap();
        drop(idx);
        let idx = IndexService::open(dir.path(), 16, 10, 3000).unwrap();
        assert_eq!(idx.indexed_upto(), 3000, "clamped to the recovered log end");
        assert_eq!(idx.lookup("T", "u12", 0, i64::MAX, 10).first(), Some(&1200));
        assert!(idx.delete_before(100_000).unwrap() > 0);
        assert!(idx.lookup("T", "u12", 0, i64::MAX, 10).is_empty());
    }

    fn put_keys(idx: &IndexService, from: u64, to: u64) {
        for i in from..to {
            let u = format!("u{i}");
            idx.put(i * 100, 100, 1_000_000, [u.as_str()].into_iter(), &["T"])
                .unwrap();
        }
    }

    #[test]
    fn flush_writes_entries_not_slots_and_open_replays_them() {
        let dir = tempfile::tempdir().unwrap();
        let idx = IndexService::open(dir.path(), 64, 1000, 0).unwrap();
        put_keys(&idx, 0, 40);
        idx.flush().unwrap();
        let last = idx.files.lock().last().unwrap().clone();
        assert!(!last.dirty.load(Ordering::Acquire), "flushed");
        assert_eq!(last.synced.load(Ordering::Acquire), 41);
        assert!(
            idx.slots_due.lock().is_empty(),
            "fewer than `slots` entries: slots not due"
        );
        // The slots never reached the disk (a crash before their sync): open rebuilds them.
        for h in 0..64 {
            last.put_i32(last.slot_off(h), 0);
        }
        assert!(idx.lookup("T", "u7", 0, i64::MAX, 10).is_empty());
        drop((last, idx));
        let idx = IndexService::open(dir.path(), 64, 1000, u64::MAX).unwrap();
        for i in 0..40 {
            let hits = idx.lookup("T", &format!("u{i}"), 0, i64::MAX, 100);
            assert!(hits.contains(&(i * 100)), "u{i} after replay");
        }
        // `slots` more entries: the slots are due; syncing them records it in the header.
        put_keys(&idx, 40, 120);
        idx.flush().unwrap();
        assert_eq!(idx.slots_due.lock().len(), 1);
        idx.sync_slots().unwrap();
        let last = idx.files.lock().last().unwrap().clone();
        assert_eq!(last.slots_synced(), 121);
        // Nothing new: a flush has nothing to do.
        idx.flush().unwrap();
        assert!(idx.slots_due.lock().is_empty());
        put_keys(&idx, 120, 130);
        idx.sync_all().unwrap();
        assert_eq!(last.slots_synced(), last.count(), "close: slots synced");
    }

    #[test]
    fn a_full_file_is_synced_later_not_in_put() {
        let dir = tempfile::tempdir().unwrap();
        let idx = IndexService::open(dir.path(), 16, 10, 0).unwrap();
        put_keys(&idx, 0, 12);
        assert_eq!(idx.files.lock().len(), 2);
        assert_eq!(
            idx.slots_due.lock().len(),
            1,
            "the full file waits for sync_slots"
        );
        idx.flush().unwrap();
        idx.sync_slots().unwrap();
        let first = idx.files.lock()[0].clone();
        assert_eq!(first.slots_synced(), first.count());
        for i in 0..12 {
            let hits = idx.lookup("T", &format!("u{i}"), 0, i64::MAX, 100);
            assert!(hits.contains(&(i * 100)), "u{i}");
        }
    }
}
