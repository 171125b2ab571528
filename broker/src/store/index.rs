//! Index of messages by key: `KEYS` tokens and `UNIQ_KEY`, each as `topic#key`, in hash-index
//! files laid out like RocketMQ's:
//!
//! ```text
//! header 40 B: begin_ts i64 | end_ts i64 | begin_phys i64 | indexed_upto i64 | slots_used i32 | count i32
//! slots  4 B each: number of the newest entry in the slot (0 = none)
//! entries 20 B each: key_hash i32 | phys i64 | seconds since begin_ts i32 | previous entry i32
//! ```
//! Files are named by their first store timestamp. The index is a hint: lookups return
//! candidate offsets that the caller verifies against the record (hash collisions, and entries
//! left pointing past a truncated log tail after a crash, are filtered there).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::error::{IoContext, Result};
use super::mapped_file::{list_files, MappedFile};
use super::record::tag_hash;

const HEADER: u64 = 40;

fn key_hash(key: &str) -> i32 {
    (tag_hash(key) as i32).wrapping_abs().max(0)
}

struct IndexFile {
    file: Arc<MappedFile>,
    slots: u32,
    entries: u32,
}

impl IndexFile {
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
    fn is_full(&self) -> bool {
        self.count() >= self.entries
    }
    fn slot_off(&self, hash: i32) -> u64 {
        HEADER + (hash as u32 % self.slots) as u64 * 4
    }
    fn entry_off(&self, n: u32) -> u64 {
        HEADER + self.slots as u64 * 4 + n as u64 * 20
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
    files: Mutex<Vec<IndexFile>>,
}

impl IndexService {
    /// Opens the index files in `dir`. Entries at or past `log_end` are stale (the log was
    /// truncated) and will be rewritten by re-dispatch.
    pub fn open(dir: &Path, slots: u32, entries: u32, log_end: u64) -> Result<IndexService> {
        std::fs::create_dir_all(dir).at(dir)?;
        let size = HEADER + slots as u64 * 4 + entries as u64 * 20;
        let mut files = Vec::new();
        for (base, path) in list_files(dir)? {
            let f = IndexFile {
                file: Arc::new(MappedFile::open(&path, base, size)?),
                slots,
                entries,
            };
            if f.indexed_upto() > log_end {
                f.put_i64(24, log_end as i64);
            }
            files.push(f);
        }
        Ok(IndexService {
            dir: dir.to_path_buf(),
            slots,
            entries,
            files: Mutex::new(files),
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
                let size = HEADER + self.slots as u64 * 4 + self.entries as u64 * 20;
                let f = IndexFile {
                    file: Arc::new(MappedFile::create(&self.dir, base, size)?),
                    slots: self.slots,
                    entries: self.entries,
                };
                f.put_i64(0, store_ts);
                f.put_i64(8, store_ts);
                f.put_i64(24, upto as i64);
                f.put_i32(36, 1);
                if let Some(old) = files.last() {
                    old.file.sync().at(old.file.path())?;
                }
                files.push(f);
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
        }
        Ok(())
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

    pub fn flush(&self) -> std::io::Result<()> {
        let last = self.files.lock().last().map(|f| f.file.clone());
        if let Some(f) = last {
            f.sync()?;
        }
        Ok(())
    }

    /// Deletes index files whose entries all point below `log_min` (never the newest).
    pub fn delete_before(&self, log_min: u64) -> Result<usize> {
        let victims: Vec<IndexFile> = {
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
}
