//! A fixed-size, preallocated, memory-mapped file: the unit of the commit log, consume queues
//! and index. One writer fills it front to back; readers read below the published write
//! position concurrently without locks.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fs4::fs_std::FileExt;
use memmap2::{MmapOptions, MmapRaw};

use super::error::{IoContext, Result, StoreError};

pub struct MappedFile {
    path: PathBuf,
    file: File,
    map: MmapRaw,
    /// Logical offset of the file's first byte (its name).
    base: u64,
    size: u64,
    /// Bytes written and visible to readers.
    wrote: AtomicU64,
    /// Bytes known durable.
    flushed: AtomicU64,
    deleted: AtomicBool,
}

/// Name of a file that starts at `base`: 20 zero-padded digits, as RocketMQ names them.
pub fn file_name(base: u64) -> String {
    format!("{base:020}")
}

/// Parses a 20-digit file name back into its base offset.
pub fn parse_file_name(name: &str) -> Option<u64> {
    (name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

/// Lists `dir`'s files named by base offset, sorted. Other names are an error: a stray file in
/// a store directory means something is wrong and guessing could lose data.
pub fn list_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    for entry in rd {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".tmp") {
            continue;
        }
        match parse_file_name(&name) {
            Some(base) => out.push((base, entry.path())),
            None => {
                return Err(StoreError::Corruption {
                    file: entry.path(),
                    offset: 0,
                    reason: "unexpected file in store directory".into(),
                })
            }
        }
    }
    out.sort();
    Ok(out)
}

impl MappedFile {
    /// Creates (or reuses) the file of `size` bytes at `dir/<base>`, with its blocks allocated
    /// before mapping, so a full disk is an error here rather than a SIGBUS on a later write.
    pub fn create(dir: &Path, base: u64, size: u64) -> Result<MappedFile> {
        Self::create_filled(dir, base, size, None)
    }

    /// As [`create`](Self::create); with `zero_fill` the allocated blocks are also written with
    /// zeros, and `zero_fill` is called with the bytes zeroed so far after each 16 MiB: it may
    /// sleep, to pace the writing, or fail, to abandon the file (then removed). `fallocate` leaves *unwritten* extents: the first write into each block converts
    /// it in the filesystem journal, so every `fdatasync` after an append commits the journal
    /// too, and costs more the more blocks it covers. Over written zeros an `fdatasync` writes
    /// only data: what sync-flush group commit needs. Done off the hot path (segments are
    /// prepared ahead), in chunks with a `fdatasync` each so the zeros never pile up as dirty
    /// page cache that competes with the foreground flushes.
    pub fn create_filled(
        dir: &Path,
        base: u64,
        size: u64,
        zero_fill: Option<&dyn Fn(u64) -> std::io::Result<()>>,
    ) -> Result<MappedFile> {
        let path = dir.join(file_name(base));
        let tmp = dir.join(format!("{}.tmp", file_name(base)));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .at(&tmp)?;
        if let Err(e) = file.allocate(size).and_then(|()| match zero_fill {
            Some(pace) => write_zeros(&file, size, pace),
            None => Ok(()),
        }) {
            let _ = std::fs::remove_file(&tmp);
            return Err(StoreError::io(&tmp, e));
        }
        file.sync_all().at(&tmp)?;
        std::fs::rename(&tmp, &path).at(&path)?;
        sync_dir(dir)?;
        Self::map(path, file, base, size, 0)
    }

    /// Opens an existing file; its write position is set by recovery.
    pub fn open(path: &Path, base: u64, expected_size: u64) -> Result<MappedFile> {
        Self::open_inner(path, base, expected_size, false)
    }

    /// Opens the last file of a log, which a crash or an operator may have left short: the
    /// missing tail is restored as allocated zeros (recovery then finds the real end).
    pub fn open_extending(path: &Path, base: u64, expected_size: u64) -> Result<MappedFile> {
        Self::open_inner(path, base, expected_size, true)
    }

    fn open_inner(path: &Path, base: u64, expected_size: u64, extend: bool) -> Result<MappedFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .at(path)?;
        let mut len = file.metadata().at(path)?.len();
        if extend && len < expected_size {
            tracing::warn!(path = %path.display(), len, expected_size, "file is short; extending it with zeros");
            file.allocate(expected_size).at(path)?;
            file.set_len(expected_size).at(path)?;
            file.sync_all().at(path)?;
            len = expected_size;
        }
        if len != expected_size {
            return Err(StoreError::Corruption {
                file: path.to_path_buf(),
                offset: len,
                reason: format!("file is {len} bytes, expected {expected_size}"),
            });
        }
        Self::map(path.to_path_buf(), file, base, expected_size, expected_size)
    }

    fn map(path: PathBuf, file: File, base: u64, size: u64, wrote: u64) -> Result<MappedFile> {
        let map = MmapOptions::new()
            .len(size as usize)
            .map_raw(&file)
            .at(&path)?;
        Ok(MappedFile {
            path,
            file,
            map,
            base,
            size,
            wrote: AtomicU64::new(wrote),
            flushed: AtomicU64::new(wrote),
            deleted: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn base(&self) -> u64 {
        self.base
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Logical end of this file.
    pub fn end(&self) -> u64 {
        self.base + self.size
    }
    pub fn wrote(&self) -> u64 {
        self.wrote.load(Ordering::Acquire)
    }
    pub fn remaining(&self) -> u64 {
        self.size - self.wrote()
    }
    pub fn flushed(&self) -> u64 {
        self.flushed.load(Ordering::Acquire)
    }
    pub fn is_full(&self) -> bool {
        self.wrote() == self.size
    }

    /// Sets the write position (recovery, truncation). Only the single writer calls this.
    pub fn set_wrote(&self, pos: u64) {
        let pos = pos.min(self.size);
        self.wrote.store(pos, Ordering::Release);
        if self.flushed() > pos {
            self.flushed.store(pos, Ordering::Release);
        }
    }

    /// Bytes `[pos, pos+len)` of the file for writing. Only the single writer (who holds the
    /// owner's append lock) may call this, and only for a range at or beyond `wrote()`, which
    /// no reader looks at until [`publish`](Self::publish) moves past it.
    ///
    /// # Panics
    /// If the range is outside the file: callers check `remaining()` first.
    #[allow(clippy::mut_from_ref)]
    pub fn write_slice(&self, pos: u64, len: usize) -> &mut [u8] {
        assert!(
            pos + len as u64 <= self.size,
            "write outside the mapped file"
        );
        // SAFETY: the mapping is `size` bytes and lives as long as `self`; the range is in
        // bounds (asserted). Exclusive access: the single writer owns the unpublished region
        // beyond `wrote`, readers only read below `wrote` (Acquire/Release on `wrote`).
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(pos as usize), len) }
    }

    /// Writes `data` at `pos` through the file descriptor (into the page cache the mapping
    /// shares), for the single writer, beyond `wrote()`; visible to readers once
    /// [`publish`](Self::publish)ed. The commit log appends this way into zero-filled segments
    /// (see `CommitLog`'s writer for why).
    pub fn write_at(&self, pos: u64, data: &[u8]) -> std::io::Result<()> {
        assert!(
            pos + data.len() as u64 <= self.size,
            "write outside the mapped file"
        );
        self.file.write_all_at(data, pos)
    }

    /// Makes bytes up to `pos` visible to readers.
    pub fn publish(&self, pos: u64) {
        debug_assert!(pos <= self.size);
        self.wrote.store(pos, Ordering::Release);
    }

    /// Published bytes `[pos, pos+len)`, or `None` if the range is not (yet) written.
    pub fn read(&self, pos: u64, len: usize) -> Option<&[u8]> {
        let end = pos.checked_add(len as u64)?;
        if end > self.wrote() {
            return None;
        }
        // SAFETY: in bounds (end <= wrote <= size) and published: the writer never writes
        // below `wrote` again except through recovery/truncation, which runs before readers
        // exist or zeroes only bytes no index points at.
        Some(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(pos as usize), len) })
    }

    /// All bytes of the file regardless of the write position (recovery scans).
    pub fn raw(&self) -> &[u8] {
        // SAFETY: the whole mapping; used by recovery before any writer runs.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.size as usize) }
    }

    /// Makes everything written durable through the file descriptor (`fdatasync`: cheaper here
    /// than `msync` of the mapping, and it covers pages dirtied through the mapping).
    pub fn flush(&self) -> std::io::Result<u64> {
        let target = self.wrote();
        if target > self.flushed() {
            self.file.sync_data()?;
            self.flushed.fetch_max(target, Ordering::AcqRel);
        }
        Ok(target)
    }

    /// `fdatasync` regardless of the write position (files written at random places).
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Marks the file deleted and unlinks it. Readers holding an `Arc` keep a valid mapping.
    pub fn delete(&self) -> Result<()> {
        self.deleted.store(true, Ordering::Release);
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(&self.path, e)),
        }
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Prefaults the whole mapping off the hot path (page cache pages and page tables), so
    /// appends do not take a major page fault every 4 KiB. Read-populate on purpose: a
    /// write-populate would mark every page of the segment dirty, and the next `fdatasync`
    /// would then write the whole segment's zeros before a sync-mode put could be acknowledged.
    /// Best effort: kernels without `MADV_POPULATE_READ` just skip it.
    pub fn warm(&self) {
        self.warm_from(0, &AtomicBool::new(false));
    }

    /// [`warm`](Self::warm) from byte `from` on, in 16 MiB steps, until `stop` is set.
    /// Returns where it stopped (the size when done), so a caller that needed the file at
    /// once can let another thread finish the rest.
    pub fn warm_from(&self, from: u64, stop: &AtomicBool) -> u64 {
        const STEP: u64 = 16 << 20;
        let mut pos = from;
        while pos < self.size {
            if stop.load(Ordering::Acquire) {
                return pos;
            }
            let len = STEP.min(self.size - pos);
            if self
                .map
                .advise_range(memmap2::Advice::PopulateRead, pos as usize, len as usize)
                .is_err()
            {
                return self.size;
            }
            pos += len;
        }
        self.size
    }

    /// Last modification time of the file (retention).
    pub fn modified(&self) -> Option<std::time::SystemTime> {
        self.file.metadata().ok()?.modified().ok()
    }
}

/// Writes zeros over `[0, size)` of `file` in 1 MiB writes, with an `fdatasync` and a call of
/// `pace` every 16 MiB.
fn write_zeros(
    file: &File,
    size: u64,
    pace: &dyn Fn(u64) -> std::io::Result<()>,
) -> std::io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    const SYNC_EVERY: u64 = 16 << 20;
    let zeros = vec![0u8; CHUNK as usize];
    let mut pos = 0;
    while pos < size {
        let n = (size - pos).min(CHUNK);
        file.write_all_at(&zeros[..n as usize], pos)?;
        pos += n;
        if pos % SYNC_EVERY == 0 {
            file.sync_data()?;
            pace(pos)?;
        }
    }
    Ok(())
}

/// `fsync` of a directory, so a created or renamed entry survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(file_name(1073741824), "00000000001073741824");
        assert_eq!(parse_file_name("00000000001073741824"), Some(1073741824));
        assert_eq!(parse_file_name("0000000000107374182"), None);
        assert_eq!(parse_file_name("0000000000107374182x"), None);
    }

    #[test]
    fn zero_filled_file_written_through_the_descriptor_reads_through_the_mapping() {
        let dir = tempfile::tempdir().unwrap();
        // Not a multiple of the 1 MiB zeroing chunk; one 16 MiB pacing step.
        let size = (16 << 20) + 8192;
        let paced = std::cell::Cell::new(0);
        let f = MappedFile::create_filled(
            dir.path(),
            0,
            size,
            Some(&|_| {
                paced.set(paced.get() + 1);
                Ok(())
            }),
        )
        .unwrap();
        assert_eq!(paced.get(), 1, "paced every 16 MiB");
        assert_eq!(std::fs::metadata(f.path()).unwrap().len(), size);
        assert!(f.raw().iter().all(|&b| b == 0));
        f.write_at(size - 5, b"tail!").unwrap();
        assert!(
            f.read(size - 5, 5).is_none(),
            "unpublished bytes are invisible"
        );
        f.publish(size);
        assert_eq!(f.read(size - 5, 5).unwrap(), b"tail!");
        assert_eq!(f.flush().unwrap(), size);
        let reopened = MappedFile::open(f.path(), 0, size).unwrap();
        assert_eq!(&reopened.raw()[(size - 5) as usize..], b"tail!");
    }

    #[test]
    fn write_publish_read_flush() {
        let dir = tempfile::tempdir().unwrap();
        let f = MappedFile::create(dir.path(), 4096, 65536).unwrap();
        assert_eq!(f.wrote(), 0);
        f.write_slice(0, 5).copy_from_slice(b"hello");
        assert!(f.read(0, 5).is_none(), "unpublished bytes are invisible");
        f.publish(5);
        assert_eq!(f.read(0, 5).unwrap(), b"hello");
        assert!(f.read(3, 5).is_none());
        assert_eq!(f.flush().unwrap(), 5);
        assert_eq!(f.flushed(), 5);
        drop(f);
        let f = MappedFile::open(&dir.path().join(file_name(4096)), 4096, 65536).unwrap();
        assert_eq!(&f.raw()[..5], b"hello");
        assert!(MappedFile::open(&dir.path().join(file_name(4096)), 4096, 4096).is_err());
        let listed = list_files(dir.path()).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0, 4096);
    }

    #[test]
    fn stray_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("junk"), b"x").unwrap();
        assert!(matches!(
            list_files(dir.path()),
            Err(StoreError::Corruption { .. })
        ));
    }
}
