//! Consume queue: per topic and queue id, fixed 20-byte entries (commit log offset i64, size
//! i32, tag hash i64) in their own segment files, indexed by queue offset. Written by the
//! dispatcher only; read by pulls without locks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use super::error::{IoContext, Result, StoreError};
use super::mapped_file::{list_files, MappedFile};

pub const ENTRY_SIZE: u64 = 20;

/// One consume-queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqEntry {
    pub physical_offset: u64,
    pub size: u32,
    pub tag_hash: i64,
}

impl CqEntry {
    fn encode(&self) -> [u8; ENTRY_SIZE as usize] {
        let mut b = [0u8; ENTRY_SIZE as usize];
        b[0..8].copy_from_slice(&(self.physical_offset as i64).to_be_bytes());
        b[8..12].copy_from_slice(&(self.size as i32).to_be_bytes());
        b[12..20].copy_from_slice(&self.tag_hash.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> CqEntry {
        let mut p = [0u8; 8];
        p.copy_from_slice(&b[0..8]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[12..20]);
        CqEntry {
            physical_offset: i64::from_be_bytes(p) as u64,
            size: i32::from_be_bytes([b[8], b[9], b[10], b[11]]) as u32,
            tag_hash: i64::from_be_bytes(t),
        }
    }

    /// A zero-size entry was never written.
    fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub fn end(&self) -> u64 {
        self.physical_offset + self.size as u64
    }
}

/// What [`ConsumeQueue::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CqPut {
    Written,
    /// The entry was already there (re-dispatch after a restart).
    AlreadyPresent,
}

pub struct ConsumeQueue {
    topic: Arc<str>,
    queue_id: i32,
    dir: PathBuf,
    entries_per_file: u64,
    files: RwLock<Vec<Arc<MappedFile>>>,
    /// Next queue offset to be written (= number of entries ever written).
    max_offset: AtomicU64,
    /// First queue offset still readable (retention moves it).
    min_offset: AtomicU64,
}

impl ConsumeQueue {
    fn file_bytes(&self) -> u64 {
        self.entries_per_file * ENTRY_SIZE
    }

    /// Opens (or creates empty) the queue in `root/<topic>/<queue_id>`, dropping entries that
    /// point past `log_end` and entries before `log_min`.
    pub fn open(
        root: &Path,
        topic: &str,
        queue_id: i32,
        entries_per_file: u64,
        log_min: u64,
        log_end: u64,
    ) -> Result<ConsumeQueue> {
        let dir = root.join(topic).join(queue_id.to_string());
        let file_bytes = entries_per_file * ENTRY_SIZE;
        let mut files: Vec<Arc<MappedFile>> = Vec::new();
        for (base, path) in list_files(&dir)? {
            if base % file_bytes != 0 || files.last().is_some_and(|p| p.end() != base) {
                return Err(StoreError::Corruption {
                    file: path,
                    offset: 0,
                    reason: "consume queue files are not contiguous".into(),
                });
            }
            files.push(Arc::new(MappedFile::open(&path, base, file_bytes)?));
        }
        let cq = ConsumeQueue {
            topic: topic.into(),
            queue_id,
            dir,
            entries_per_file,
            files: RwLock::new(Vec::new()),
            max_offset: AtomicU64::new(0),
            min_offset: AtomicU64::new(0),
        };
        // Find the end: the first never-written entry of the last file with data.
        let mut max = files.first().map(|f| f.base() / ENTRY_SIZE).unwrap_or(0);
        for f in &files {
            let raw = f.raw();
            let mut n = 0;
            while n < entries_per_file {
                let e = CqEntry::decode(&raw[(n * ENTRY_SIZE) as usize..]);
                if e.is_empty() {
                    break;
                }
                n += 1;
            }
            f.set_wrote(n * ENTRY_SIZE);
            if n > 0 {
                max = f.base() / ENTRY_SIZE + n;
            }
            if n < entries_per_file {
                break;
            }
        }
        // Files wholly past the end hold nothing; files in between are full.
        while files.len() > 1 && files.last().is_some_and(|f| f.base() / ENTRY_SIZE >= max) {
            if let Some(f) = files.pop() {
                f.delete()?;
            }
        }
        let min = files.first().map(|f| f.base() / ENTRY_SIZE).unwrap_or(0);
        *cq.files.write() = files;
        cq.max_offset.store(max, Ordering::Release);
        cq.min_offset.store(min, Ordering::Release);
        cq.truncate_beyond(log_end)?;
        cq.advance_min(log_min);
        Ok(cq)
    }

    pub fn topic(&self) -> &Arc<str> {
        &self.topic
    }
    pub fn queue_id(&self) -> i32 {
        self.queue_id
    }
    pub fn max_offset(&self) -> u64 {
        self.max_offset.load(Ordering::Acquire)
    }
    pub fn min_offset(&self) -> u64 {
        self.min_offset
            .load(Ordering::Acquire)
            .min(self.max_offset())
    }

    fn locate(&self, queue_offset: u64) -> Option<(Arc<MappedFile>, u64)> {
        let files = self.files.read();
        let first = files.first()?;
        let byte = queue_offset * ENTRY_SIZE;
        if byte < first.base() {
            return None;
        }
        let idx = ((byte - first.base()) / self.file_bytes()) as usize;
        let f = files.get(idx)?.clone();
        let rel = byte - f.base();
        Some((f, rel))
    }

    /// The entry at `queue_offset`, if written and not deleted.
    pub fn get(&self, queue_offset: u64) -> Option<CqEntry> {
        if queue_offset < self.min_offset() || queue_offset >= self.max_offset() {
            return None;
        }
        let (f, rel) = self.locate(queue_offset)?;
        f.read(rel, ENTRY_SIZE as usize).map(CqEntry::decode)
    }

    /// Visits entries from `from` on, in order, until `visit` returns false or the queue ends.
    /// Reads straight out of the mapping: no allocation per entry.
    pub fn scan(&self, from: u64, mut visit: impl FnMut(u64, CqEntry) -> bool) {
        let mut off = from.max(self.min_offset());
        let max = self.max_offset();
        while off < max {
            let Some((f, rel)) = self.locate(off) else {
                return;
            };
            let in_file = ((f.size() - rel) / ENTRY_SIZE).min(max - off);
            let Some(bytes) = f.read(rel, (in_file * ENTRY_SIZE) as usize) else {
                return;
            };
            for chunk in bytes.chunks_exact(ENTRY_SIZE as usize) {
                if !visit(off, CqEntry::decode(chunk)) {
                    return;
                }
                off += 1;
            }
        }
    }

    /// Writes the entry for `queue_offset` (the dispatcher's only write). Idempotent for an
    /// entry that is already there with the same commit log offset.
    pub fn put(&self, queue_offset: u64, entry: CqEntry) -> Result<CqPut> {
        self.put_from(queue_offset, entry, false)
    }

    /// As [`put`](Self::put); with `first_in_log`, the caller knows the log holds no earlier
    /// record of this queue (it walks the log from its first record: a slave copying a master
    /// whose first segments are gone, a rebuild after retention), so an empty queue may start
    /// at `queue_offset`. Otherwise a gap is an error (entries were lost: rebuild).
    pub fn put_from(&self, queue_offset: u64, entry: CqEntry, first_in_log: bool) -> Result<CqPut> {
        let max = self.max_offset();
        if queue_offset < max {
            return match self.get(queue_offset) {
                Some(e) if e == entry => Ok(CqPut::AlreadyPresent),
                // Below the minimum (deleted by retention): nothing to do.
                None if queue_offset < self.min_offset() => Ok(CqPut::AlreadyPresent),
                other => Err(StoreError::Corruption {
                    file: self.dir.clone(),
                    offset: queue_offset * ENTRY_SIZE,
                    reason: format!(
                        "consume queue entry {queue_offset} is {other:?}, the log says {entry:?}"
                    ),
                }),
            };
        }
        if first_in_log && queue_offset > max && max == 0 && self.files.read().is_empty() {
            // A queue whose first entries are gone from the log (a slave that starts at its
            // master's oldest segment, a rebuild after retention) starts where the log does.
            self.start_at(queue_offset)?;
        } else if queue_offset > max {
            // Entries are missing (files lost or deleted by hand): the store rebuilds the
            // queue from the log (see `MessageStore::open`).
            return Err(StoreError::Corruption {
                file: self.dir.clone(),
                offset: max * ENTRY_SIZE,
                reason: format!(
                    "gap in consume queue: next entry is {max}, the log has {queue_offset}"
                ),
            });
        }
        let f = self.file_for_write(queue_offset)?;
        let rel = queue_offset * ENTRY_SIZE - f.base();
        f.write_slice(rel, ENTRY_SIZE as usize)
            .copy_from_slice(&entry.encode());
        f.publish(rel + ENTRY_SIZE);
        self.max_offset.store(queue_offset + 1, Ordering::Release);
        Ok(CqPut::Written)
    }

    /// Starts an empty queue at `first`: the entries before it in its file are placeholders
    /// (pointing at offset 0, below any log that starts later), so a reopen finds the end and
    /// retention's `advance_min` moves past them.
    fn start_at(&self, first: u64) -> Result<()> {
        let f = self.file_for_write(first)?;
        let placeholder = CqEntry {
            physical_offset: 0,
            size: 1,
            tag_hash: 0,
        }
        .encode();
        let from = f.base() / ENTRY_SIZE;
        let slots = f.write_slice(0, ((first - from) * ENTRY_SIZE) as usize);
        for e in slots.chunks_exact_mut(ENTRY_SIZE as usize) {
            e.copy_from_slice(&placeholder);
        }
        f.publish((first - from) * ENTRY_SIZE);
        self.max_offset.store(first, Ordering::Release);
        self.min_offset.store(first, Ordering::Release);
        Ok(())
    }

    fn file_for_write(&self, queue_offset: u64) -> Result<Arc<MappedFile>> {
        if let Some((f, _)) = self.locate(queue_offset) {
            return Ok(f);
        }
        std::fs::create_dir_all(&self.dir).at(&self.dir)?;
        let fb = self.file_bytes();
        let base = queue_offset * ENTRY_SIZE / fb * fb;
        let f = Arc::new(MappedFile::create(&self.dir, base, fb)?);
        let mut files = self.files.write();
        if let Some(last) = files.last() {
            if last.end() != base {
                return Err(StoreError::Corruption {
                    file: f.path().to_path_buf(),
                    offset: 0,
                    reason: "consume queue file would not be contiguous".into(),
                });
            }
        }
        files.push(f.clone());
        Ok(f)
    }

    /// Zeroes entries whose record ends past `log_end` (the log was truncated in recovery).
    pub fn truncate_beyond(&self, log_end: u64) -> Result<()> {
        let mut max = self.max_offset();
        let min = self.min_offset();
        while max > min {
            match self.get(max - 1) {
                Some(e) if e.end() > log_end => max -= 1,
                _ => break,
            }
        }
        if max == self.max_offset() {
            return Ok(());
        }
        tracing::warn!(topic = %self.topic, queue = self.queue_id, from = max, to = self.max_offset(),
            "dropping consume queue entries past the end of the commit log");
        for off in max..self.max_offset() {
            if let Some((f, rel)) = self.locate(off) {
                f.write_slice(rel, ENTRY_SIZE as usize).fill(0);
                if f.wrote() > rel {
                    f.set_wrote(rel);
                }
            }
        }
        self.max_offset.store(max, Ordering::Release);
        Ok(())
    }

    /// Moves the minimum past entries whose records are below `log_min` (retention).
    pub fn advance_min(&self, log_min: u64) {
        let mut min = self.min_offset();
        let max = self.max_offset();
        // Binary search: entries are in commit log order.
        let (mut lo, mut hi) = (min, max);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid) {
                Some(e) if e.physical_offset < log_min => lo = mid + 1,
                _ => hi = mid,
            }
        }
        if lo > min {
            min = lo;
            self.min_offset.store(min, Ordering::Release);
        }
    }

    /// Deletes whole files below the minimum (keeps the last file). Returns files removed.
    pub fn delete_expired_files(&self) -> Result<usize> {
        let min_byte = self.min_offset() * ENTRY_SIZE;
        let victims: Vec<Arc<MappedFile>> = {
            let mut files = self.files.write();
            let mut n = 0;
            while n + 1 < files.len() && files[n].end() <= min_byte {
                n += 1;
            }
            files.drain(..n).collect()
        };
        for v in &victims {
            v.delete()?;
        }
        Ok(victims.len())
    }

    pub fn flush(&self) -> std::io::Result<()> {
        let files: Vec<Arc<MappedFile>> = self
            .files
            .read()
            .iter()
            .filter(|f| f.flushed() < f.wrote())
            .cloned()
            .collect();
        for f in files {
            f.flush()?;
        }
        Ok(())
    }

    /// First (or last) queue offset whose store time is at/after (at/before) `ts`, using
    /// `store_ts` to read an entry's store time from the commit log.
    pub fn search_by_time(
        &self,
        ts: i64,
        boundary: Boundary,
        store_ts: impl Fn(&CqEntry) -> Option<i64>,
    ) -> u64 {
        let (min, max) = (self.min_offset(), self.max_offset());
        let ts_at = |o: u64| self.get(o).and_then(|e| store_ts(&e));
        match boundary {
            Boundary::Lower => {
                // First offset with time >= ts; max if none.
                let (mut lo, mut hi) = (min, max);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    match ts_at(mid) {
                        Some(t) if t < ts => lo = mid + 1,
                        _ => hi = mid,
                    }
                }
                lo
            }
            Boundary::Upper => {
                // Last offset with time <= ts; min if none.
                let (mut lo, mut hi) = (min, max);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    match ts_at(mid) {
                        Some(t) if t <= ts => lo = mid + 1,
                        _ => hi = mid,
                    }
                }
                if lo > min {
                    lo - 1
                } else {
                    min
                }
            }
        }
    }
}

/// Which end of a run of equal timestamps a time search lands on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// The first message stored at or after the time.
    Lower,
    /// The last message stored at or before the time.
    Upper,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(p: u64) -> CqEntry {
        CqEntry {
            physical_offset: p,
            size: 100,
            tag_hash: p as i64 * 7,
        }
    }

    #[test]
    fn a_new_queue_starts_where_the_log_does() {
        let dir = tempfile::tempdir().unwrap();
        let cq = ConsumeQueue::open(dir.path(), "T", 0, 8, 0, u64::MAX).unwrap();
        assert!(
            cq.put(13, e(5000)).is_err(),
            "a gap unless the log starts there"
        );
        assert_eq!(cq.put_from(13, e(5000), true).unwrap(), CqPut::Written);
        assert_eq!(cq.put(14, e(5100)).unwrap(), CqPut::Written);
        assert_eq!((cq.min_offset(), cq.max_offset()), (13, 15));
        assert_eq!(cq.get(12), None);
        assert_eq!(cq.get(13), Some(e(5000)));
        // A gap after the start is still refused.
        assert!(cq.put(17, e(5300)).is_err());
        cq.flush().unwrap();
        drop(cq);
        let cq = ConsumeQueue::open(dir.path(), "T", 0, 8, 4000, u64::MAX).unwrap();
        assert_eq!((cq.min_offset(), cq.max_offset()), (13, 15));
        assert_eq!(cq.get(14), Some(e(5100)));
    }

    #[test]
    fn put_get_scan_across_files_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cq = ConsumeQueue::open(dir.path(), "T", 1, 8, 0, u64::MAX).unwrap();
        for i in 0..30 {
            assert_eq!(cq.put(i, e(i * 100)).unwrap(), CqPut::Written);
        }
        assert_eq!(cq.max_offset(), 30);
        assert_eq!(cq.get(17), Some(e(1700)));
        assert_eq!(cq.get(30), None);
        let mut seen = Vec::new();
        cq.scan(5, |o, en| {
            seen.push((o, en.physical_offset));
            seen.len() < 12
        });
        assert_eq!(seen.len(), 12);
        assert_eq!(seen[0], (5, 500));
        assert_eq!(seen[11], (16, 1600));
        // Idempotent re-put; a conflicting one is an error; a gap is an error.
        assert_eq!(cq.put(3, e(300)).unwrap(), CqPut::AlreadyPresent);
        assert!(cq.put(3, e(999)).is_err());
        assert!(cq.put(32, e(3200)).is_err());
        cq.flush().unwrap();
        drop(cq);
        let cq = ConsumeQueue::open(dir.path(), "T", 1, 8, 0, u64::MAX).unwrap();
        assert_eq!(cq.max_offset(), 30);
        assert_eq!(cq.get(29), Some(e(2900)));
        // Reopen with a shorter log drops entries past it.
        drop(cq);
        let cq = ConsumeQueue::open(dir.path(), "T", 1, 8, 0, 2000).unwrap();
        assert_eq!(cq.max_offset(), 20, "entry 19 ends at 2000");
        assert_eq!(cq.put(20, e(2000)).unwrap(), CqPut::Written);
        drop(cq);
        let cq = ConsumeQueue::open(dir.path(), "T", 1, 8, 0, u64::MAX).unwrap();
        assert_eq!(cq.max_offset(), 21);
    }

    #[test]
    fn retention_moves_min_and_deletes_files() {
        let dir = tempfile::tempdir().unwrap();
        let cq = ConsumeQueue::open(dir.path(), "T", 0, 8, 0, u64::MAX).unwrap();
        for i in 0..30 {
            cq.put(i, e(i * 100)).unwrap();
        }
        cq.advance_min(1750);
        assert_eq!(cq.min_offset(), 18);
        assert_eq!(cq.get(17), None);
        assert_eq!(cq.delete_expired_files().unwrap(), 2);
        assert_eq!(cq.get(18), Some(e(1800)));
        drop(cq);
        let cq = ConsumeQueue::open(dir.path(), "T", 0, 8, 1750, u64::MAX).unwrap();
        assert_eq!((cq.min_offset(), cq.max_offset()), (18, 30));
    }

    #[test]
    fn time_search() {
        let dir = tempfile::tempdir().unwrap();
        let cq = ConsumeQueue::open(dir.path(), "T", 0, 8, 0, u64::MAX).unwrap();
        // times: offsets 0..10 at 100,100,200,200,200,300,...
        let times = [100, 100, 200, 200, 200, 300, 400, 400, 500, 600];
        for (i, _) in times.iter().enumerate() {
            cq.put(i as u64, e(i as u64)).unwrap();
        }
        let ts = |en: &CqEntry| Some(times[en.physical_offset as usize]);
        assert_eq!(cq.search_by_time(200, Boundary::Lower, ts), 2);
        assert_eq!(cq.search_by_time(200, Boundary::Upper, ts), 4);
        assert_eq!(cq.search_by_time(250, Boundary::Lower, ts), 5);
        assert_eq!(cq.search_by_time(250, Boundary::Upper, ts), 4);
        assert_eq!(cq.search_by_time(50, Boundary::Lower, ts), 0);
        assert_eq!(cq.search_by_time(700, Boundary::Lower, ts), 10);
        assert_eq!(cq.search_by_time(700, Boundary::Upper, ts), 9);
    }
}
