//! The commit log: every topic's messages appended to one log of fixed-size segments.
//!
//! One writer appends under a mutex: a request's records are encoded into a scratch buffer and
//! written with one copy per segment they fall in (a `pwrite` into zero-filled segments, a store
//! through the mapping otherwise), then published; readers find the segment
//! for an offset and read published bytes through its mapping without taking that mutex. The
//! next segment is created (preallocated, zero-filled when configured, prefaulted) on a
//! background thread, from open on, so rolling does not stall the writer.
//!
//! While an append holds that mutex, the log says since when ([`CommitLog::append_busy_for`],
//! RocketMQ's `beginTimeInLock`): flow control refuses sends to a store stalled in an append
//! (a page fault on a busy disk, a segment not ready) without touching the lock itself.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard, RwLock};

use super::error::{IoContext, Result, StoreError};
use super::mapped_file::{list_files, MappedFile};
use super::multi_dispatch::{self, DispatchTarget};
use super::record::{self, Check, DecodeError, Entry, MessageInput, Placement, BLANK_MIN};

/// The next segment, being created on a background thread.
struct Prepared {
    /// The file, and how far its warming got (its size when whole).
    handle: JoinHandle<Result<(MappedFile, u64)>>,
    /// Set when the segment is needed now: zero-filling stops pacing itself and warming
    /// stops (the rest is warmed beside the appends).
    hurry: Arc<AtomicBool>,
    /// Set when it will not be needed (shutdown): zero-filling stops and the file is dropped.
    cancel: Arc<AtomicBool>,
}

impl Prepared {
    fn join(self) -> std::thread::Result<Result<(MappedFile, u64)>> {
        self.hurry.store(true, Ordering::Release);
        self.handle.join()
    }

    fn abandon(self) {
        self.cancel.store(true, Ordering::Release);
        let _ = self.handle.join();
    }
}

/// Why the writer could not move on to the next segment.
enum RollError {
    /// Writing the pending records or the filler failed.
    Write(StoreError),
    /// The next segment could not be created.
    Segment(StoreError),
}

/// Largest queue id accepted (queue offsets are kept in a vector per topic).
pub const MAX_QUEUE_ID: i32 = 1 << 16;

/// Where one appended message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub physical_offset: u64,
    pub size: u32,
    pub queue_offset: u64,
    pub store_timestamp: i64,
}

/// Why an append failed before anything was written.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Illegal(#[from] record::RecordError),
    #[error("could not create the next commit log segment: {0}")]
    Segment(StoreError),
    /// Writing the records failed (the segment's blocks are allocated, so this is an I/O
    /// error of the device or filesystem): nothing of the failed write was published, but
    /// queue offsets were reserved, so the store must stop accepting writes.
    #[error("writing to the commit log failed: {0}")]
    Write(StoreError),
}

/// Bytes of one stored record, kept alive by its segment (zero-copy into replies), or an
/// owned copy (a multi-dispatched record rewritten for the target it is read through).
#[derive(Clone)]
pub struct RecordBytes(Src);

#[derive(Clone)]
enum Src {
    Mapped {
        seg: Arc<MappedFile>,
        pos: u64,
        len: usize,
    },
    Owned(bytes::Bytes),
}

impl AsRef<[u8]> for RecordBytes {
    fn as_ref(&self) -> &[u8] {
        match &self.0 {
            // Constructed only for a range `read` accepted, which stays published.
            Src::Mapped { seg, pos, len } => seg.read(*pos, *len).unwrap_or(&[]),
            Src::Owned(b) => b,
        }
    }
}

impl std::ops::Deref for RecordBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_ref()
    }
}

impl RecordBytes {
    /// Zero-copy `Bytes` over the mapping (or the owned copy).
    pub fn into_bytes(self) -> bytes::Bytes {
        match self.0 {
            Src::Owned(b) => b,
            mapped => bytes::Bytes::from_owner(RecordBytes(mapped)),
        }
    }

    /// Owned record bytes.
    pub fn owned(v: Vec<u8>) -> RecordBytes {
        RecordBytes(Src::Owned(v.into()))
    }
}

/// What sits at an offset, for the dispatcher that walks the log.
pub enum LogEntry {
    Record(RecordBytes),
    /// Segment filler: continue at the given offset.
    Skip(u64),
    /// Nothing published there yet.
    End,
}

struct Writer {
    active: Option<Arc<MappedFile>>,
    next: Option<Prepared>,
    /// Next queue offset per topic and queue id.
    queue_offsets: HashMap<Box<str>, Vec<u64>>,
    last_store_ts: i64,
    /// Records encoded for the active segment and not yet written, starting at its `wrote()`.
    scratch: Vec<u8>,
}

/// Scratch capacity kept between appends (a larger one from a big batch is given back).
const SCRATCH_KEEP: usize = 1 << 20;

/// The writer's lock taken for an append: while it is held, the log's `append_busy_since`
/// says since when; it is cleared before the lock is released.
struct AppendGuard<'a> {
    w: MutexGuard<'a, Writer>,
    busy_since: &'a AtomicU64,
}

impl std::ops::Deref for AppendGuard<'_> {
    type Target = Writer;
    fn deref(&self) -> &Writer {
        &self.w
    }
}

impl std::ops::DerefMut for AppendGuard<'_> {
    fn deref_mut(&mut self) -> &mut Writer {
        &mut self.w
    }
}

impl Drop for AppendGuard<'_> {
    fn drop(&mut self) {
        // Runs before the field `w` is dropped, i.e. before the lock is released.
        self.busy_since.store(0, Ordering::Release);
    }
}

pub struct CommitLog {
    dir: PathBuf,
    segment_size: u64,
    /// New segments are zero-filled (see [`MappedFile::create_filled`]).
    zero_fill: bool,
    store_host: SocketAddr,
    segments: RwLock<Vec<Arc<MappedFile>>>,
    writer: Mutex<Writer>,
    /// End of the published log.
    max_offset: AtomicU64,
    /// End of the durable log.
    flushed_offset: AtomicU64,
    /// Clock of `append_busy_since`.
    epoch: Instant,
    /// While an append holds the writer's lock: when it took it (nanoseconds since `epoch`,
    /// plus 1); 0 when no append holds it.
    append_busy_since: AtomicU64,
}

/// Outcome of verifying the log on open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecovery {
    pub end: u64,
    /// Bytes after `end` that held something (torn record, garbage) and were zeroed.
    pub truncated_bytes: u64,
    /// Set when damaged data was followed by valid records and the operator allowed truncation.
    pub dropped_after_corruption: Option<String>,
}

impl Drop for CommitLog {
    fn drop(&mut self) {
        // Nothing will use a segment still being prepared: its thread stops and removes it.
        if let Some(p) = &self.writer.get_mut().next {
            p.cancel.store(true, Ordering::Release);
        }
    }
}

impl CommitLog {
    /// Opens the log in `dir`, verifying records from `verify_from` (the checkpoint's flushed
    /// offset) to the end, truncating a torn tail and refusing damage before valid records.
    pub fn open(
        dir: &Path,
        segment_size: u64,
        zero_fill: bool,
        store_host: SocketAddr,
        verify_from: u64,
        allow_truncate: bool,
    ) -> Result<(CommitLog, LogRecovery)> {
        std::fs::create_dir_all(dir).at(dir)?;
        let mut segs = Vec::new();
        let files = list_files(dir)?;
        // The active segment and the preallocated spare after it may be left short by a
        // crash or an operator's cut; older segments are always complete.
        let short_ok_from = files.len().saturating_sub(2);
        for (i, (base, path)) in files.into_iter().enumerate() {
            if base % segment_size != 0 {
                return Err(StoreError::Corruption {
                    file: path,
                    offset: 0,
                    reason: format!(
                        "segment name is not a multiple of the segment size {segment_size}"
                    ),
                });
            }
            if let Some(prev) = segs.last() {
                let prev: &Arc<MappedFile> = prev;
                if prev.end() != base {
                    return Err(StoreError::Corruption {
                        file: path,
                        offset: 0,
                        reason: format!(
                            "gap in the commit log: previous segment ends at {}",
                            prev.end()
                        ),
                    });
                }
            }
            let f = if i >= short_ok_from {
                MappedFile::open_extending(&path, base, segment_size)?
            } else {
                MappedFile::open(&path, base, segment_size)?
            };
            segs.push(Arc::new(f));
        }
        let recovery = recover(dir, &mut segs, verify_from, allow_truncate)?;
        let end = recovery.end;
        let active = segs.last().cloned();
        let next_base = active.as_ref().map_or(0, |s| s.end());
        let log = CommitLog {
            dir: dir.to_path_buf(),
            segment_size,
            zero_fill,
            store_host,
            segments: RwLock::new(segs),
            writer: Mutex::new(Writer {
                active,
                next: None,
                queue_offsets: HashMap::new(),
                last_store_ts: 0,
                scratch: Vec::new(),
            }),
            max_offset: AtomicU64::new(end),
            flushed_offset: AtomicU64::new(end),
            epoch: Instant::now(),
            append_busy_since: AtomicU64::new(0),
        };
        // The segment the next roll (or the first append) takes, prepared from now on.
        log.prepare_next(&mut log.writer.lock(), next_base);
        Ok((log, recovery))
    }

    pub fn store_host(&self) -> SocketAddr {
        self.store_host
    }

    /// End of the published log (next append position, modulo a segment roll).
    pub fn max_offset(&self) -> u64 {
        self.max_offset.load(Ordering::Acquire)
    }

    /// First offset still stored (retention moves it).
    pub fn min_offset(&self) -> u64 {
        self.segments
            .read()
            .first()
            .map(|s| s.base())
            .unwrap_or_else(|| self.max_offset())
    }

    pub fn flushed_offset(&self) -> u64 {
        self.flushed_offset.load(Ordering::Acquire)
    }

    /// Bytes appended and not yet flushed.
    pub fn dirty_bytes(&self) -> u64 {
        // Flushed first: the end only grows, so the difference never goes below the truth.
        let flushed = self.flushed_offset();
        self.max_offset().saturating_sub(flushed)
    }

    /// How long the append in progress has held the writer's lock; `None` when no append
    /// holds it. Two atomic loads and a clock read: never takes the lock.
    pub fn append_busy_for(&self) -> Option<Duration> {
        match self.append_busy_since.load(Ordering::Acquire) {
            0 => None,
            since => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_nanos(since - 1)),
            ),
        }
    }

    /// Holds the writer's lock as an append does, until the returned guard is dropped (tests
    /// of a stalled store).
    #[cfg(test)]
    pub(crate) fn hold_append_lock(&self) -> impl Sized + '_ {
        self.lock_for_append()
    }

    /// The writer's lock, for an append (see [`append_busy_for`](Self::append_busy_for)).
    fn lock_for_append(&self) -> AppendGuard<'_> {
        let w = self.writer.lock();
        let since = self.epoch.elapsed().as_nanos().min(u64::MAX as u128 - 1) as u64 + 1;
        self.append_busy_since.store(since, Ordering::Release);
        AppendGuard {
            w,
            busy_since: &self.append_busy_since,
        }
    }

    /// Restores the per-queue offset counters (from the consume queues, after recovery).
    pub fn set_queue_offsets(&self, table: HashMap<Box<str>, Vec<u64>>) {
        self.writer.lock().queue_offsets = table;
    }

    /// Current next queue offset for a topic/queue (tests, admin).
    pub fn next_queue_offset(&self, topic: &str, queue_id: i32) -> u64 {
        let w = self.writer.lock();
        w.queue_offsets
            .get(topic)
            .and_then(|v| v.get(queue_id as usize).copied())
            .unwrap_or(0)
    }

    /// Appends `msgs` under one lock, with consecutive queue offsets per queue. Either every
    /// message is checked and written, or (on an illegal message) none is.
    pub fn append(
        &self,
        msgs: &[MessageInput<'_>],
        body_crcs: &[i32],
        max_body: usize,
        max_props: usize,
        out: &mut Vec<Appended>,
    ) -> Result<(), AppendError> {
        self.append_dispatched(msgs, &[], body_crcs, max_body, max_props, out)
    }

    /// As [`append`](Self::append); message `i` is also indexed in the consume queues of
    /// `targets[i]` (when present and not empty), whose queue offsets are reserved here, under
    /// the same lock, and recorded in the record (see [`multi_dispatch`](super::multi_dispatch)).
    pub fn append_dispatched(
        &self,
        msgs: &[MessageInput<'_>],
        targets: &[Vec<DispatchTarget>],
        body_crcs: &[i32],
        max_body: usize,
        max_props: usize,
        out: &mut Vec<Appended>,
    ) -> Result<(), AppendError> {
        debug_assert_eq!(msgs.len(), body_crcs.len());
        for (i, m) in msgs.iter().enumerate() {
            let extra = targets.get(i).map_or(&[][..], Vec::as_slice);
            let bound = if extra.is_empty() {
                0
            } else {
                multi_dispatch::property_len_bound(extra)
            };
            record::validate(m, max_body, max_props.saturating_sub(bound))?;
            for q in std::iter::once(m.queue_id).chain(extra.iter().map(|t| t.queue_id)) {
                if !(0..MAX_QUEUE_ID).contains(&q) {
                    return Err(AppendError::Illegal(record::RecordError::NegativeQueueId(
                        q,
                    )));
                }
            }
            for t in extra {
                let probe = MessageInput {
                    topic: &t.topic,
                    ..*m
                };
                record::validate(&probe, max_body, max_props.saturating_sub(bound))?;
            }
        }
        let now = now_ms();
        let mut w = self.lock_for_append();
        let store_ts = now.max(w.last_store_ts);
        w.last_store_ts = store_ts;
        let mut offsets = Vec::new();
        for (i, (m, &crc)) in msgs.iter().zip(body_crcs).enumerate() {
            let extra = targets.get(i).map_or(&[][..], Vec::as_slice);
            let props;
            let routed;
            let m = if extra.is_empty() {
                m
            } else {
                offsets.clear();
                for t in extra {
                    offsets.push(next_queue_offset(
                        &mut w.queue_offsets,
                        &t.topic,
                        t.queue_id,
                    ));
                }
                props = multi_dispatch::with_targets(m.properties, extra, &offsets);
                routed = MessageInput {
                    properties: &props,
                    ..*m
                };
                &routed
            };
            let size = record::encoded_len(m, &self.store_host);
            let pending = w.scratch.len() as u64;
            let fits = w
                .active
                .as_ref()
                .is_some_and(|s| s.remaining() >= pending + size as u64);
            let rolled = if fits {
                Ok(())
            } else {
                self.write_pending(&mut w)
                    .and_then(|()| self.segment_with_room(&mut w, size).map(drop))
            };
            match rolled {
                Ok(()) => {}
                Err(e) => {
                    // Give back the target offsets reserved for this unwritten record.
                    for t in extra.iter().rev() {
                        if let Some(o) = w
                            .queue_offsets
                            .get_mut(t.topic.as_str())
                            .and_then(|v| v.get_mut(t.queue_id as usize))
                        {
                            *o -= 1;
                        }
                    }
                    return Err(match e {
                        RollError::Write(e) => AppendError::Write(e),
                        RollError::Segment(e) => AppendError::Segment(e),
                    });
                }
            }
            let seg = w.active.as_ref().expect("a segment with room");
            let pos = seg.wrote() + w.scratch.len() as u64;
            let physical_offset = seg.base() + pos;
            let queue_offset = next_queue_offset(&mut w.queue_offsets, m.topic, m.queue_id);
            let at = Placement {
                queue_offset: queue_offset as i64,
                physical_offset: physical_offset as i64,
                store_timestamp: store_ts,
                store_host: self.store_host,
                body_crc: crc,
            };
            let start = w.scratch.len();
            w.scratch.resize(start + size, 0);
            record::encode_into(&mut w.scratch[start..], m, &at);
            out.push(Appended {
                physical_offset,
                size: size as u32,
                queue_offset,
                store_timestamp: store_ts,
            });
        }
        self.write_pending(&mut w).map_err(|e| match e {
            RollError::Write(e) | RollError::Segment(e) => AppendError::Write(e),
        })?;
        if w.scratch.capacity() > SCRATCH_KEEP {
            w.scratch = Vec::with_capacity(SCRATCH_KEEP);
        }
        if let Some(seg) = &w.active {
            self.max_offset
                .store(seg.base() + seg.wrote(), Ordering::Release);
        }
        Ok(())
    }

    /// Writes the encoded records of `w.scratch` at the active segment's write position
    /// and publishes them.
    fn write_pending(&self, w: &mut Writer) -> std::result::Result<(), RollError> {
        if w.scratch.is_empty() {
            return Ok(());
        }
        let seg = w
            .active
            .as_ref()
            .expect("records are encoded for the active segment");
        let pos = seg.wrote();
        // Measured here (`cargo bench --bench store`): over written zeros a `pwrite` keeps each
        // `fdatasync` to the data (stores through the mapping would make the flush write-protect
        // and fault the pages again, ~2 ms a flush); over `fallocate`d blocks the mapping is
        // ~5x cheaper per append than a `pwrite` and the flush pays the extent conversion anyway.
        let result = if self.zero_fill {
            seg.write_at(pos, &w.scratch)
        } else {
            seg.write_slice(pos, w.scratch.len())
                .copy_from_slice(&w.scratch);
            Ok(())
        };
        let len = w.scratch.len() as u64;
        w.scratch.clear();
        result.map_err(|e| RollError::Write(StoreError::io(seg.path(), e)))?;
        seg.publish(pos + len);
        Ok(())
    }

    /// Starts creating the segment at `base` on a background thread. Zero-filling is paced
    /// by the active segment: at most twice its filled fraction (plus 1/16) of the new segment
    /// is zeroed, so the zeros are written a little at a time over the active segment's life
    /// rather than in one burst of disk writes that sync flushes would queue behind. A roll
    /// (or shutdown) that needs the segment sooner lifts the pacing.
    fn prepare_next(&self, w: &mut Writer, base: u64) {
        let (dir, size, zero) = (self.dir.clone(), self.segment_size, self.zero_fill);
        let active = w.active.clone();
        let hurry = Arc::new(AtomicBool::new(false));
        let cancel = Arc::new(AtomicBool::new(false));
        let (lifted, cancelled) = (hurry.clone(), cancel.clone());
        let handle = std::thread::spawn(move || {
            let pace = |zeroed: u64| loop {
                if cancelled.load(Ordering::Acquire) {
                    return Err(std::io::Error::other("segment preparation abandoned"));
                }
                let behind = active
                    .as_ref()
                    .is_some_and(|a| zeroed > (2 * a.wrote()).saturating_add(a.size() / 16));
                if !behind || lifted.load(Ordering::Acquire) {
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            };
            let pace: &dyn Fn(u64) -> std::io::Result<()> = &pace;
            let f = MappedFile::create_filled(&dir, base, size, zero.then_some(pace))?;
            let warmed = f.warm_from(0, &lifted);
            Ok((f, warmed))
        });
        w.next = Some(Prepared {
            handle,
            hurry,
            cancel,
        });
    }

    /// Stops preparing the next segment (shutdown): its half-written file is removed, and the
    /// next open prepares it again.
    pub fn abandon_prepared(&self) {
        if let Some(p) = self.writer.lock().next.take() {
            p.abandon();
        }
    }

    /// Waits for the segment being prepared in the background, at full speed (benchmarks that
    /// want the store settled before they measure).
    pub fn wait_prepared(&self) {
        let mut w = self.writer.lock();
        if let Some(p) = w.next.take() {
            let (hurry, cancel) = (p.hurry.clone(), p.cancel.clone());
            // Keep a good one for the next roll; a failed one is created again then.
            if let Ok(Ok((f, warmed))) = p.join() {
                let handle = std::thread::spawn(move || Ok((f, warmed)));
                w.next = Some(Prepared {
                    handle,
                    hurry,
                    cancel,
                });
            }
        }
    }

    /// The active segment if `size` fits, else closes it with a filler and rolls. Nothing may
    /// be pending in the scratch buffer.
    fn segment_with_room(
        &self,
        w: &mut Writer,
        size: usize,
    ) -> std::result::Result<Arc<MappedFile>, RollError> {
        debug_assert!(w.scratch.is_empty());
        if let Some(seg) = &w.active {
            let remaining = seg.remaining();
            if remaining >= size as u64 {
                return Ok(seg.clone());
            }
            let pos = seg.wrote();
            if remaining >= BLANK_MIN as u64 {
                // The filler's header; the rest of the segment is left as it is.
                let mut blank = [0u8; BLANK_MIN];
                record::encode_blank_header(&mut blank, remaining as usize);
                seg.write_at(pos, &blank)
                    .map_err(|e| RollError::Write(StoreError::io(seg.path(), e)))?;
            }
            seg.publish(seg.size());
        }
        let base = w.active.as_ref().map(|s| s.end()).unwrap_or(0);
        self.roll_to(w, base)
    }

    /// Makes a new segment at `base` the active one.
    fn roll_to(
        &self,
        w: &mut Writer,
        base: u64,
    ) -> std::result::Result<Arc<MappedFile>, RollError> {
        // The segment prepared (and warmed as far as it got) in the background, or, if that
        // failed or is missing, one created now: a failure back then (a full disk) may have
        // cleared since. A roll does not wait for warming: a slave's first segment is needed
        // as soon as the log is opened, and 256 MiB take a few hundred ms to populate.
        let (seg, warmed) = match w.next.take().map(|h| h.join()) {
            Some(Ok(Ok((f, warmed)))) if f.base() == base => (Arc::new(f), warmed),
            other => {
                if let Some(Ok(Ok((f, _)))) = other {
                    // Prepared for another base (a slave's first segment starts where its
                    // master's oldest does): not part of the log.
                    let _ = f.delete();
                }
                (
                    Arc::new(
                        MappedFile::create_filled(
                            &self.dir,
                            base,
                            self.segment_size,
                            self.zero_fill
                                .then_some(&(|_| Ok(())) as &dyn Fn(u64) -> std::io::Result<()>),
                        )
                        .map_err(RollError::Segment)?,
                    ),
                    0,
                )
            }
        };
        self.segments.write().push(seg.clone());
        w.active = Some(seg.clone());
        // Prepare the one after this off the hot path.
        self.prepare_next(w, seg.end());
        if warmed < seg.size() {
            let warm = seg.clone();
            std::thread::spawn(move || warm.warm_from(warmed, &AtomicBool::new(false)));
        }
        Ok(seg)
    }

    /// Segment holding `offset`.
    pub fn segment_for(&self, offset: u64) -> Option<Arc<MappedFile>> {
        let segs = self.segments.read();
        let first = segs.first()?.base();
        if offset < first {
            return None;
        }
        let idx = ((offset - first) / self.segment_size) as usize;
        segs.get(idx).cloned()
    }

    /// The record at `offset` of `size` bytes (from a consume-queue entry).
    pub fn read(&self, offset: u64, size: u32) -> Option<RecordBytes> {
        let seg = self.segment_for(offset)?;
        let pos = offset - seg.base();
        seg.read(pos, size as usize)?;
        Some(RecordBytes(Src::Mapped {
            seg,
            pos,
            len: size as usize,
        }))
    }

    /// The record starting at `offset`, found by reading its size; validated (no CRC).
    pub fn read_at(&self, offset: u64) -> LogEntry {
        let Some(seg) = self.segment_for(offset) else {
            return LogEntry::End;
        };
        let pos = offset - seg.base();
        let published = seg.wrote();
        if pos >= published {
            return if published == seg.size() {
                LogEntry::Skip(seg.end())
            } else {
                LogEntry::End
            };
        }
        let avail = seg.read(pos, (published - pos) as usize).unwrap_or(&[]);
        match record::decode(
            avail,
            Check {
                crc: false,
                position: Some(offset as i64),
            },
        ) {
            Ok(Entry::Record(r)) => LogEntry::Record(RecordBytes(Src::Mapped {
                seg: seg.clone(),
                pos,
                len: r.total_size(),
            })),
            Ok(Entry::Blank) => LogEntry::Skip(seg.end()),
            // Fewer than 8 bytes left in a full segment: implicit end of segment.
            Err(DecodeError::Truncated { .. }) if published == seg.size() => {
                LogEntry::Skip(seg.end())
            }
            Err(_) => LogEntry::End,
        }
    }

    /// Makes everything appended so far durable. Returns the new flushed offset.
    pub fn flush(&self) -> std::io::Result<u64> {
        let target = self.max_offset();
        let flushed = self.flushed_offset();
        if target <= flushed {
            return Ok(flushed);
        }
        let pending: Vec<Arc<MappedFile>> = {
            let segs = self.segments.read();
            segs.iter()
                .filter(|s| s.end() > flushed && s.flushed() < s.wrote())
                .cloned()
                .collect()
        };
        for seg in pending {
            seg.flush()?;
        }
        self.flushed_offset.fetch_max(target, Ordering::AcqRel);
        Ok(target)
    }

    /// Deletes whole segments (never the active one) for which `expired` says so, oldest first,
    /// stopping at the first that is kept. Returns the new minimum offset.
    pub fn delete_segments(&self, mut expired: impl FnMut(&MappedFile) -> bool) -> Result<u64> {
        let victims: Vec<Arc<MappedFile>> = {
            let mut segs = self.segments.write();
            let mut n = 0;
            while n + 1 < segs.len() && segs[n].is_full() && expired(&segs[n]) {
                n += 1;
            }
            segs.drain(..n).collect()
        };
        for v in &victims {
            tracing::info!(file = %v.path().display(), "retention: deleting commit log segment");
            v.delete()?;
        }
        Ok(self.min_offset())
    }

    pub fn segments(&self) -> Vec<Arc<MappedFile>> {
        self.segments.read().clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[path = "replica_log.rs"]
mod replica;
pub use replica::ReplicaAppendError;

fn next_queue_offset(table: &mut HashMap<Box<str>, Vec<u64>>, topic: &str, queue_id: i32) -> u64 {
    let qid = queue_id as usize;
    let v = match table.get_mut(topic) {
        Some(v) => v,
        None => table.entry(topic.into()).or_default(),
    };
    if v.len() <= qid {
        v.resize(qid + 1, 0);
    }
    let o = v[qid];
    v[qid] = o + 1;
    o
}

/// Wall-clock milliseconds since the Unix epoch (store timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Verifies the log from `from`, finds its end and makes everything past it empty.
fn recover(
    dir: &Path,
    segs: &mut Vec<Arc<MappedFile>>,
    from: u64,
    allow_truncate: bool,
) -> Result<LogRecovery> {
    let Some(first) = segs.first() else {
        if from > 0 {
            return Err(StoreError::Corruption {
                file: dir.to_path_buf(),
                offset: from,
                reason: "checkpoint names a flushed offset but no commit log segment exists".into(),
            });
        }
        return Ok(LogRecovery {
            end: 0,
            truncated_bytes: 0,
            dropped_after_corruption: None,
        });
    };
    let first_base = first.base();
    let last_end = segs.last().map(|s| s.end()).unwrap_or(0);
    if from > last_end {
        return Err(StoreError::Corruption {
            file: dir.to_path_buf(),
            offset: from,
            reason: format!(
                "checkpoint offset {from} is past the end of the commit log ({last_end})"
            ),
        });
    }
    let seg_size = first.size();
    let seg_index = |off: u64| ((off - first_base) / seg_size) as usize;
    // Walk valid records from the start of the segment holding the checkpoint: a segment
    // always starts with a record, so the walk never depends on the checkpoint being exact.
    let from = from.max(first_base);
    let mut pos = first_base + seg_index(from.min(last_end - 1)) as u64 * seg_size;
    let mut failure: Option<DecodeError> = None;
    loop {
        let i = seg_index(pos);
        let Some(seg) = segs.get(i) else { break };
        let rel = (pos - seg.base()) as usize;
        let buf = &seg.raw()[rel..];
        if buf.len() < BLANK_MIN {
            if i + 1 < segs.len() {
                pos = seg.end();
                continue;
            }
            break;
        }
        match record::decode(
            buf,
            Check {
                crc: true,
                position: Some(pos as i64),
            },
        ) {
            Ok(Entry::Record(r)) => pos += r.total_size() as u64,
            Ok(Entry::Blank) => pos = seg.end(),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let end = pos;
    let mut dropped = None;
    if end < from {
        let i = seg_index(end);
        let reason = format!(
            "the log ends at {end} ({}) but the checkpoint says it was flushed up to {from}: durable data is missing",
            failure.as_ref().map(|e| e.to_string()).unwrap_or_default()
        );
        if !allow_truncate {
            return Err(StoreError::Corruption {
                file: segs[i].path().to_path_buf(),
                offset: end - segs[i].base(),
                reason: format!("{reason}; refusing to start (set allow_truncate_on_corruption to accept the loss)"),
            });
        }
        tracing::error!(%reason, "truncating the commit log below the checkpoint");
        dropped = Some(reason);
    }
    // Anything valid after the end means the damage is not a torn tail.
    if let Some(later) = find_valid_record_after(segs, end) {
        let i = seg_index(end).min(segs.len() - 1);
        let file = segs[i].path().to_path_buf();
        let reason = format!(
            "record at offset {} of the log is damaged ({}) but a valid record follows at {}",
            end,
            failure.as_ref().map(|e| e.to_string()).unwrap_or_default(),
            later
        );
        if !allow_truncate {
            return Err(StoreError::Corruption {
                file,
                offset: end - segs[i].base(),
                reason: format!("{reason}; refusing to start (set allow_truncate_on_corruption to drop everything after it)"),
            });
        }
        tracing::error!(file = %file.display(), %reason, "truncating the commit log after corruption");
        dropped = Some(reason);
    }
    // Zero the tail of the end's segment and drop segments after it.
    let mut truncated = 0u64;
    let end_idx = if end == last_end {
        segs.len() - 1
    } else {
        seg_index(end)
    };
    for (i, seg) in segs.iter().enumerate() {
        if i < end_idx {
            seg.set_wrote(seg.size());
        } else if i == end_idx {
            let rel = end - seg.base();
            let tail = &seg.raw()[rel as usize..];
            if let Some(last) = last_nonzero(tail) {
                let n = last + 1;
                seg.write_slice(rel, n).fill(0);
                seg.set_wrote(seg.size());
                seg.flush().at(seg.path())?;
                truncated += n as u64;
            }
            seg.set_wrote(rel);
        }
    }
    for seg in segs.drain(end_idx + 1..) {
        truncated += seg.raw().iter().filter(|&&b| b != 0).count() as u64;
        tracing::warn!(file = %seg.path().display(), "removing commit log segment past the end of the log");
        seg.delete()?;
    }
    if truncated > 0 {
        tracing::warn!(
            end,
            truncated,
            "commit log tail truncated to the last valid record"
        );
    }
    Ok(LogRecovery {
        end,
        truncated_bytes: truncated,
        dropped_after_corruption: dropped,
    })
}

/// Offset of a record after `end` that passes every check at its own position, if any.
fn find_valid_record_after(segs: &[Arc<MappedFile>], end: u64) -> Option<u64> {
    let magic = record::MAGIC_V1.to_be_bytes();
    for seg in segs.iter().filter(|s| s.end() > end) {
        let raw = seg.raw();
        let start = end.saturating_sub(seg.base()) as usize + 1;
        if start >= raw.len() {
            continue;
        }
        for hit in memchr::memmem::find_iter(&raw[start..], &magic) {
            let rel = start + hit;
            if rel < 4 {
                continue;
            }
            let rec_start = rel - 4;
            let abs = seg.base() + rec_start as u64;
            if abs <= end {
                continue;
            }
            let check = Check {
                crc: true,
                position: Some(abs as i64),
            };
            if let Ok(Entry::Record(_)) = record::decode(&raw[rec_start..], check) {
                return Some(abs);
            }
        }
    }
    None
}

fn last_nonzero(buf: &[u8]) -> Option<usize> {
    let mut chunks = buf.rchunks(64);
    let mut end = buf.len();
    for c in &mut chunks {
        let start = end - c.len();
        if c.iter().any(|&b| b != 0) {
            return c.iter().rposition(|&b| b != 0).map(|p| start + p);
        }
        end = start;
    }
    None
}

#[cfg(test)]
#[path = "commit_log_tests.rs"]
mod tests;
