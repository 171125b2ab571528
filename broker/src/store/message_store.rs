//! `MessageStore`: the store's front door. Opens and recovers the store, runs its threads
//! (flusher, dispatcher, housekeeping), and offers put / get / lookup to the broker.

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use fs4::fs_std::FileExt;
use parking_lot::Mutex;

use super::checkpoint::{Checkpoint, CheckpointFile};
use super::cleanup::{self, CleanupReport};
use super::commit_log::{AppendError, CommitLog, LogEntry, LogRecovery, RecordBytes};
use super::config::{FlushMode, StoreConfig};
use super::consume_queue::{Boundary, ConsumeQueue, CqEntry};
use super::dispatch::{ArrivalListener, Dispatcher};
use super::error::{IoContext, Result, StoreError};
use super::flush::{self, FlushWait, Flusher};
use super::index::IndexService;
use super::mapped_file::sync_dir;
use super::multi_dispatch::{self, DispatchTarget};
use super::put_status::{PutResult, PutStatus};
use super::queues::ConsumeQueues;
use super::record::{self, Check, Entry, MessageInput, RecordView};

/// Decides which consume-queue entries a read returns.
pub trait MessageFilter {
    /// Cheap test on the entry's tag hash, before the record is read.
    fn by_tag_hash(&self, _tag_hash: i64) -> bool {
        true
    }
    /// Exact test on the record.
    fn by_record(&self, _record: &RecordView<'_>) -> bool {
        true
    }
    /// Test on the queue offset, before the record is read (precomputed match bits).
    fn by_offset(&self, _queue_offset: u64) -> bool {
        true
    }
}

/// Accepts every message.
pub struct AcceptAll;
impl MessageFilter for AcceptAll {}

/// Outcome of a read from a queue (RocketMQ's `GetMessageStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetStatus {
    Found,
    /// Entries were scanned but none matched the filter.
    NoMatchedMessage,
    NoMessageInQueue,
    /// The queue does not exist.
    NoMatchedLogicQueue,
    OffsetTooSmall,
    OffsetOverflowOne,
    OffsetOverflowBadly,
    /// Entries point into deleted log segments.
    OffsetFoundNull,
}

pub struct FoundMessage {
    pub queue_offset: u64,
    pub bytes: RecordBytes,
}

pub struct GetResult {
    pub status: GetStatus,
    pub messages: Vec<FoundMessage>,
    /// Where the next read should start.
    pub next_offset: u64,
    pub min_offset: u64,
    pub max_offset: u64,
}

/// How many entries one read scans at most when the filter rejects them.
const MAX_SCAN: usize = 16_000;

struct Threads {
    handles: Vec<JoinHandle<()>>,
}

struct Inner {
    config: StoreConfig,
    log: Arc<CommitLog>,
    queues: Arc<ConsumeQueues>,
    index: Arc<IndexService>,
    dispatcher: Arc<Dispatcher>,
    flusher: Arc<Flusher>,
    checkpoint: CheckpointFile,
    read_only: OnceLock<String>,
    disk_full: AtomicBool,
    closed: AtomicBool,
    /// Wakes the housekeeping thread early (shutdown).
    stop: crate::wake::Signal,
    /// The commit log's end, for watchers (replication sessions); sent only when watched.
    log_end: tokio::sync::watch::Sender<u64>,
    #[allow(dead_code)]
    lock: File,
}

pub struct MessageStore {
    inner: Arc<Inner>,
    threads: Mutex<Option<Threads>>,
    recovery: RecoveryReport,
}

/// What `open` found and did.
#[derive(Debug, Clone)]
pub struct RecoveryReport {
    /// The abort marker was present: the previous run did not shut down cleanly.
    pub crashed: bool,
    pub checkpoint: Checkpoint,
    pub log: LogRecovery,
    /// Records re-dispatched into consume queues and the index.
    pub redispatched: usize,
}

impl MessageStore {
    /// Opens (creating if needed) and recovers the store, then starts its threads.
    pub fn open(config: StoreConfig, store_host: SocketAddr) -> Result<MessageStore> {
        config.validate()?;
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).at(&dir)?;
        let lock_path = dir.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .at(&lock_path)?;
        if !lock.try_lock_exclusive().at(&lock_path)? {
            return Err(StoreError::Locked(dir));
        }
        let abort = dir.join("abort");
        let crashed = abort.exists();
        let checkpoint = CheckpointFile::new(&dir);
        let cp = checkpoint.load()?;
        let (log, log_rec) = CommitLog::open(
            &dir.join("commitlog"),
            config.commit_log_segment_size,
            config.zero_fill(),
            store_host,
            cp.log_flushed,
            config.allow_truncate_on_corruption,
        )?;
        let log = Arc::new(log);
        let (min, end) = (log.min_offset(), log.max_offset());
        let queues = Arc::new(ConsumeQueues::open(
            &dir.join("consumequeue"),
            config.consume_queue_entries_per_file,
            min,
            end,
        )?);
        let index = Arc::new(IndexService::open(
            &dir.join("index"),
            config.index_slots,
            config.index_entries,
            end,
        )?);
        let from = cp.dispatched.clamp(min, end);
        let dispatcher = Arc::new(Dispatcher::new(
            log.clone(),
            queues.clone(),
            index.clone(),
            from,
            config.flush_mode == FlushMode::Sync,
        ));
        let missing = queues.missing_from_manifest();
        let redispatched = dispatcher.dispatch_available();
        let mut lost = dispatcher.take_lost();
        for m in missing {
            if !lost.contains(&m) {
                lost.push(m);
            }
        }
        if !lost.is_empty() {
            let n = dispatcher.rebuild(&lost)?;
            tracing::warn!(
                queues = lost.len(),
                entries = n,
                "consume queues rebuilt from the commit log"
            );
        }
        dispatcher.flush().at(&dir)?;
        log.set_queue_offsets(queues.offset_table());
        let flusher = Arc::new(Flusher::new(
            config.flush_mode,
            Duration::from_millis(config.flush_interval_ms),
            end,
        ));
        checkpoint.store(&Checkpoint {
            log_flushed: end,
            dispatched: dispatcher.durable(),
        })?;
        File::create(&abort).at(&abort)?;
        sync_dir(&dir)?;
        let recovery = RecoveryReport {
            crashed,
            checkpoint: cp,
            log: log_rec,
            redispatched,
        };
        tracing::info!(dir = %dir.display(), crashed, log_end = end, redispatched,
            truncated = recovery.log.truncated_bytes, "store opened");
        let inner = Arc::new(Inner {
            config,
            log,
            queues,
            index,
            dispatcher,
            flusher,
            checkpoint,
            read_only: OnceLock::new(),
            disk_full: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            stop: crate::wake::Signal::default(),
            log_end: tokio::sync::watch::channel(end).0,
            lock,
        });
        inner.check_disk();
        let threads = Self::start_threads(&inner).at(&dir)?;
        Ok(MessageStore {
            inner,
            threads: Mutex::new(Some(threads)),
            recovery,
        })
    }

    fn start_threads(inner: &Arc<Inner>) -> std::io::Result<Threads> {
        let mut handles = Vec::new();
        let i = inner.clone();
        let d = inner.dispatcher.clone();
        let on_flushed = move |_| d.signal.notify();
        handles.push(flush::spawn(inner.flusher.clone(), inner.log.clone(), on_flushed, move |e| {
            let reason = format!("commit log flush failed ({e}); refusing writes");
            tracing::error!(error = %e, "FLUSH FAILED: the store is now read-only; data not yet flushed may be lost");
            let _ = i.read_only.set(reason);
        })?);
        let d = inner.dispatcher.clone();
        let every = Duration::from_millis(inner.config.flush_interval_ms.min(1000));
        handles.push(
            std::thread::Builder::new()
                .name("wasmq-dispatch".into())
                .spawn(move || d.run(every))?,
        );
        let i = inner.clone();
        handles.push(
            std::thread::Builder::new()
                .name("wasmq-housekeeping".into())
                .spawn(move || i.housekeeping())?,
        );
        Ok(Threads { handles })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Appends `msgs` (one lock for the batch) and, in sync mode, waits for their flush.
    pub async fn put(&self, msgs: &[MessageInput<'_>]) -> PutResult {
        self.put_dispatched(msgs, &[]).await
    }

    /// As [`put`](Self::put); message `i` is also indexed in the consume queues of
    /// `targets[i]` (multi-dispatch: stored once, readable through each target).
    pub async fn put_dispatched(
        &self,
        msgs: &[MessageInput<'_>],
        targets: &[Vec<DispatchTarget>],
    ) -> PutResult {
        let appended = match self.append_dispatched(msgs, targets) {
            Ok(a) => a,
            Err(status) => {
                return PutResult {
                    status,
                    appended: Vec::new(),
                }
            }
        };
        let status = match self.inner.config.flush_mode {
            FlushMode::Async => PutStatus::Ok,
            FlushMode::Sync => {
                let end = appended
                    .last()
                    .map(|a| a.physical_offset + a.size as u64)
                    .unwrap_or(0);
                match self
                    .inner
                    .flusher
                    .wait(end, self.inner.config.sync_flush_timeout())
                    .await
                {
                    FlushWait::Durable => PutStatus::Ok,
                    FlushWait::TimedOut | FlushWait::Failed => PutStatus::FlushDiskTimeout,
                }
            }
        };
        PutResult { status, appended }
    }

    /// The append half of a put: writes the records, wakes the flusher (sync flush) and, under
    /// async flush, dispatches them on this thread, without waiting for durability.
    pub fn append(
        &self,
        msgs: &[MessageInput<'_>],
    ) -> std::result::Result<Vec<super::commit_log::Appended>, PutStatus> {
        self.append_dispatched(msgs, &[])
    }

    /// [`append`](Self::append) with extra dispatch targets per message.
    pub fn append_dispatched(
        &self,
        msgs: &[MessageInput<'_>],
        targets: &[Vec<DispatchTarget>],
    ) -> std::result::Result<Vec<super::commit_log::Appended>, PutStatus> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(PutStatus::ServiceUnavailable("store is shut down".into()));
        }
        if let Some(reason) = inner.read_only.get() {
            return Err(PutStatus::ServiceUnavailable(reason.clone()));
        }
        if inner.disk_full.load(Ordering::Acquire) {
            return Err(PutStatus::DiskFull);
        }
        let crcs: Vec<i32> = msgs.iter().map(|m| record::body_crc(m.body)).collect();
        let mut appended = Vec::with_capacity(msgs.len());
        let c = &inner.config;
        match inner.log.append_dispatched(
            msgs,
            targets,
            &crcs,
            c.max_message_size,
            c.max_properties_size,
            &mut appended,
        ) {
            Ok(()) => {}
            Err(AppendError::Illegal(e)) => return Err(PutStatus::MessageIllegal(e.to_string())),
            Err(AppendError::Write(e)) => {
                // Queue offsets were reserved for records that are not in the log: no
                // further append may follow until a restart recovers from the log itself.
                let reason = format!("commit log write failed: {e}");
                tracing::error!(%reason, "store stops accepting writes");
                let _ = inner.read_only.set(reason.clone());
                return Err(PutStatus::ServiceUnavailable(reason));
            }
            Err(AppendError::Segment(e)) => {
                tracing::error!(error = %e, "cannot create commit log segment");
                let full = matches!(&e, StoreError::Io { source, .. } if source.raw_os_error() == Some(28));
                return Err(if full {
                    PutStatus::DiskFull
                } else {
                    PutStatus::ServiceUnavailable(e.to_string())
                });
            }
        }
        inner.flusher.request();
        inner.appended(inner.log.max_offset());
        if inner.config.flush_mode == FlushMode::Async {
            // On this thread: no wake-up of the dispatcher per append (see `dispatch`).
            inner.dispatcher.dispatch_inline();
        }
        Ok(appended)
    }

    /// Published commit-log bytes from `offset` for a slave: whole records, about `max`
    /// bytes, within one segment (zero-copy). `Ok(None)`: nothing there yet; `Err((min, max))`:
    /// the offset is outside the stored log.
    pub fn read_replica(
        &self,
        offset: u64,
        max: usize,
    ) -> std::result::Result<Option<bytes::Bytes>, (u64, u64)> {
        Ok(self
            .inner
            .log
            .read_replica(offset, max)?
            .map(RecordBytes::into_bytes))
    }

    /// A slave appends bytes replicated from its master at `offset` (its own log's end); the
    /// dispatcher builds its consume queues and index from them as from its own appends.
    pub fn append_replica(
        &self,
        offset: u64,
        data: &[u8],
    ) -> std::result::Result<(), super::commit_log::ReplicaAppendError> {
        let inner = &self.inner;
        if let Some(reason) = inner.read_only.get() {
            return Err(super::commit_log::ReplicaAppendError::Write(
                StoreError::ReadOnly(reason.clone()),
            ));
        }
        inner.log.append_replica(offset, data)?;
        inner.flusher.request();
        if inner.config.flush_mode == FlushMode::Async {
            // One wake-up per replicated chunk (many records): dispatched off the link's task.
            inner.dispatcher.signal.notify();
        }
        inner.appended(inner.log.max_offset());
        Ok(())
    }

    /// Watches the end of the commit log (a master's replication sessions wait on it).
    pub fn watch_log_end(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.log_end.subscribe()
    }

    /// Waits until the commit log segment being prepared in the background is ready
    /// (benchmarks measure a settled store).
    pub fn wait_prepared(&self) {
        self.inner.log.wait_prepared();
    }

    /// How long the append in progress has held the commit log's append lock (`None`: no
    /// append holds it). Cheap: never takes the lock.
    pub fn append_busy_for(&self) -> Option<Duration> {
        self.inner.log.append_busy_for()
    }

    /// Holds the commit log's append lock until the returned guard is dropped (tests of a
    /// stalled store).
    #[cfg(test)]
    pub(crate) fn hold_append_lock(&self) -> impl Sized + '_ {
        self.inner.log.hold_append_lock()
    }

    /// Commit log bytes appended and not yet flushed.
    pub fn dirty_bytes(&self) -> u64 {
        self.inner.log.dirty_bytes()
    }

    /// Wakes the flusher for a flush now (in async mode it flushes every interval otherwise).
    pub fn flush_now(&self) {
        self.inner.flusher.flush_now();
    }

    /// Waits, at most `timeout`, until no more than `max` bytes of the commit log are
    /// unflushed, waking the flusher first; returns the unflushed bytes then. A failed flush
    /// ends the wait at once.
    pub async fn wait_dirty_at_most(&self, max: u64, timeout: Duration) -> u64 {
        let dirty = self.dirty_bytes();
        if dirty <= max {
            return dirty;
        }
        let target = self.inner.log.max_offset().saturating_sub(max);
        self.inner.flusher.flush_now();
        let _ = self.inner.flusher.wait(target, timeout).await;
        self.dirty_bytes()
    }

    /// Flush counters (how many appends each `fdatasync` carried, on average).
    pub fn flush_stats(&self) -> super::flush::FlushStats {
        self.inner.flusher.stats()
    }

    pub fn consume_queue(&self, topic: &str, queue_id: i32) -> Option<Arc<ConsumeQueue>> {
        self.inner.queues.get(topic, queue_id)
    }

    pub fn consume_queues(&self) -> Vec<Arc<ConsumeQueue>> {
        self.inner.queues.all()
    }

    pub fn queue_ids(&self, topic: &str) -> Vec<i32> {
        self.inner.queues.queue_ids(topic)
    }

    pub fn min_offset(&self, topic: &str, queue_id: i32) -> u64 {
        self.consume_queue(topic, queue_id)
            .map(|q| q.min_offset())
            .unwrap_or(0)
    }

    pub fn max_offset(&self, topic: &str, queue_id: i32) -> u64 {
        self.consume_queue(topic, queue_id)
            .map(|q| q.max_offset())
            .unwrap_or(0)
    }

    /// Store time of the message at `offset` of a queue.
    pub fn store_time(&self, topic: &str, queue_id: i32, offset: u64) -> Option<i64> {
        let e = self.consume_queue(topic, queue_id)?.get(offset)?;
        self.entry_store_time(&e)
    }

    fn entry_store_time(&self, e: &CqEntry) -> Option<i64> {
        let rec = self.inner.log.read(e.physical_offset, e.size)?;
        match record::decode(
            &rec,
            Check {
                crc: false,
                position: None,
            },
        ) {
            Ok(Entry::Record(v)) => Some(v.store_timestamp()),
            _ => None,
        }
    }

    /// Store time of the oldest message still in the queue.
    pub fn earliest_store_time(&self, topic: &str, queue_id: i32) -> Option<i64> {
        let q = self.consume_queue(topic, queue_id)?;
        self.store_time(topic, queue_id, q.min_offset())
    }

    /// Queue offset of the first (`Lower`) / last (`Upper`) message stored at/after (at/before)
    /// `timestamp` ms.
    pub fn search_offset(
        &self,
        topic: &str,
        queue_id: i32,
        timestamp: i64,
        boundary: Boundary,
    ) -> u64 {
        match self.consume_queue(topic, queue_id) {
            Some(q) => q.search_by_time(timestamp, boundary, |e| self.entry_store_time(e)),
            None => 0,
        }
    }

    /// The record that starts at commit log `offset` (VIEW_MESSAGE_BY_ID).
    pub fn view(&self, offset: u64) -> Option<RecordBytes> {
        match self.inner.log.read_at(offset) {
            LogEntry::Record(r) => Some(r),
            _ => None,
        }
    }

    pub fn set_arrival_listener(&self, l: Arc<dyn ArrivalListener>) {
        self.inner.dispatcher.set_listener(l);
    }

    /// End of the commit log (bytes appended).
    pub fn log_max_offset(&self) -> u64 {
        self.inner.log.max_offset()
    }

    pub fn log_min_offset(&self) -> u64 {
        self.inner.log.min_offset()
    }

    pub fn log_segment_count(&self) -> usize {
        self.inner.log.segments().len()
    }

    /// Everything below this commit log offset is in the consume queues.
    pub fn dispatched_offset(&self) -> u64 {
        self.inner.dispatcher.dispatched()
    }

    /// Waits until everything appended so far is visible to reads (tests, read-your-writes).
    pub async fn wait_dispatched(&self, timeout: Duration) -> bool {
        let end = self.inner.log.max_offset();
        self.inner.dispatcher.wait_dispatched(end, timeout).await
    }

    /// Walks the commit log from its start (tools and tests): calls `f` with each record.
    pub fn for_each_record(&self, mut f: impl FnMut(u64, &RecordView<'_>)) {
        let mut pos = self.inner.log.min_offset();
        loop {
            match self.inner.log.read_at(pos) {
                LogEntry::Record(r) => {
                    if let Ok(Entry::Record(v)) = record::decode(
                        &r,
                        Check {
                            crc: true,
                            position: Some(pos as i64),
                        },
                    ) {
                        f(pos, &v);
                    }
                    pos += r.len() as u64;
                }
                LogEntry::Skip(n) => pos = n,
                LogEntry::End => return,
            }
        }
    }

    /// Runs one retention pass now (it also runs every `cleanup_interval_ms`).
    pub fn clean_now(&self, now: SystemTime) -> Result<CleanupReport> {
        self.inner.clean(now)
    }

    /// The store refuses writes after a flush failure; this says why.
    pub fn read_only_reason(&self) -> Option<&str> {
        self.inner.read_only.get().map(|s| s.as_str())
    }

    /// Flushes everything, writes the checkpoint and removes the abort marker. Idempotent.
    pub fn shutdown(&self) -> Result<()> {
        let Some(threads) = self.threads.lock().take() else {
            return Ok(());
        };
        let inner = &self.inner;
        inner.closed.store(true, Ordering::Release);
        inner.flusher.shutdown();
        inner.dispatcher.signal.shutdown();
        inner.stop.shutdown();
        for h in threads.handles {
            let _ = h.join();
        }
        inner.log.abandon_prepared();
        if let Some(reason) = inner.read_only.get() {
            // Leave the abort marker: the next start must verify the tail.
            tracing::warn!(reason, "store shut down read-only");
            return Ok(());
        }
        inner.log.flush().at(inner.log.dir())?;
        inner.dispatcher.dispatch_available();
        inner.dispatcher.flush_all().at(&inner.config.dir)?;
        inner.write_checkpoint()?;
        let abort = inner.config.dir.join("abort");
        std::fs::remove_file(&abort).at(&abort)?;
        sync_dir(&inner.config.dir)?;
        tracing::info!(dir = %inner.config.dir.display(), "store shut down cleanly");
        Ok(())
    }

    /// Fault injection: the next commit log flush fails (tests of the read-only path).
    pub fn inject_flush_failure(&self) {
        self.inner.flusher.inject_failure();
    }

    pub fn dir(&self) -> PathBuf {
        self.inner.config.dir.clone()
    }
}

impl Drop for MessageStore {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "store shutdown failed");
        }
    }
}

impl Inner {
    /// Tells watchers of the log end (replication sessions) that it moved; free without any.
    fn appended(&self, end: u64) {
        if self.log_end.receiver_count() > 0 {
            self.log_end.send_if_modified(|e| {
                let up = end > *e;
                if up {
                    *e = end;
                }
                up
            });
        }
    }

    fn write_checkpoint(&self) -> Result<()> {
        let p = self.flusher.progress();
        if p.failed {
            return Ok(());
        }
        let cp = Checkpoint {
            log_flushed: p.flushed.min(self.log.flushed_offset()),
            dispatched: self.dispatcher.durable(),
        };
        self.checkpoint.store(&cp)
    }

    fn check_disk(&self) -> Option<f64> {
        let ratio = cleanup::disk_used_ratio(&self.config.dir)?;
        let full = ratio > self.config.disk_max_used_ratio;
        let was = self.disk_full.swap(full, Ordering::AcqRel);
        if full && !was {
            tracing::error!(
                ratio,
                max = self.config.disk_max_used_ratio,
                "disk is full: refusing writes"
            );
        } else if !full && was {
            tracing::info!(ratio, "disk usage back below the limit: accepting writes");
        }
        Some(ratio)
    }

    fn clean(&self, now: SystemTime) -> Result<CleanupReport> {
        let reserved = Duration::from_secs_f64(self.config.file_reserved_hours * 3600.0);
        let force = self
            .check_disk()
            .is_some_and(|r| r > self.config.disk_max_used_ratio);
        cleanup::clean(&self.log, &self.queues, &self.index, reserved, now, force)
    }

    fn housekeeping(&self) {
        let cp_every = Duration::from_millis(self.config.checkpoint_interval_ms);
        let clean_every = Duration::from_millis(self.config.cleanup_interval_ms);
        let mut last_clean = std::time::Instant::now();
        loop {
            if !self.stop.wait(cp_every.min(clean_every)) {
                return;
            }
            if let Err(e) = self.write_checkpoint() {
                tracing::error!(error = %e, "writing the checkpoint failed");
            }
            if last_clean.elapsed() >= clean_every {
                last_clean = std::time::Instant::now();
                match self.clean(SystemTime::now()) {
                    Ok(r) if r.segments_deleted > 0 => tracing::info!(?r, "retention pass"),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "retention failed"),
                }
            }
        }
    }
}

#[path = "read.rs"]
mod read;

#[cfg(test)]
#[path = "message_store_tests.rs"]
mod tests;
