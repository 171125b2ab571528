//! The dispatch loop: follows the commit log and builds what reads need from each record (its
//! consume-queue entry and its index keys), then tells listeners which queues grew, which is
//! how held long-polling pulls wake up.
//!
//! Consume-queue entries are placed by the queue offset stored in the record, so dispatching a
//! record twice (re-dispatch after a crash) is a no-op: recovery restarts dispatch from the
//! checkpoint's durable point without creating duplicates.
//!
//! Who dispatches: under async flush the appender itself, right after its append
//! ([`Dispatcher::dispatch_inline`]): no wake-up of another thread per message, and a pull sees
//! the message as soon as the put returns. One dispatcher at a time (a lock tried, never
//! waited for by an appender): an appender that finds another dispatching leaves a mark, and
//! the one dispatching makes another pass for it (combining), so concurrent appenders share
//! passes. Under sync flush (only durable records are dispatched) and for a slave's replicated
//! bytes, the dispatcher thread does it, woken once per flush / replicated chunk. The thread
//! also flushes consume queues and index every interval, and catches up whatever an appender
//! left to it.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use super::commit_log::{CommitLog, LogEntry};
use super::consume_queue::CqEntry;
use super::index::IndexService;
use super::multi_dispatch;
use super::queues::ConsumeQueues;
use super::record::{self, Check, Entry};

/// Topic of messages waiting for an arbitrary delivery time (RocketMQ 5's name). Their
/// consume-queue entries carry the delivery time (ms, property `TIMER_OUT_MS`) in place of a
/// tag hash, so the timer scans due times without reading the log.
pub const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";

/// The consume-queue entry of the record at `pos`: its size and the hash of its tag (or, in
/// the timer topic, its delivery time).
fn cq_entry(pos: u64, r: &record::RecordView<'_>) -> CqEntry {
    let tag_hash = if r.topic() == TIMER_TOPIC {
        r.property("TIMER_OUT_MS")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    } else {
        r.property("TAGS").map(record::tag_hash).unwrap_or(0)
    };
    CqEntry {
        physical_offset: pos,
        size: r.total_size() as u32,
        tag_hash,
    }
}

/// Told when a consume queue has new entries (the long-polling hook).
pub trait ArrivalListener: Send + Sync {
    fn on_arrival(&self, topic: &str, queue_id: i32, max_offset: u64);
}

/// Several listeners told in turn.
pub struct ArrivalListeners(pub Vec<Arc<dyn ArrivalListener>>);

impl ArrivalListener for ArrivalListeners {
    fn on_arrival(&self, topic: &str, queue_id: i32, max_offset: u64) {
        for l in &self.0 {
            l.on_arrival(topic, queue_id, max_offset);
        }
    }
}

/// Passes one appender makes at most in [`Dispatcher::dispatch_inline`].
const INLINE_PASSES: usize = 4;

pub struct Dispatcher {
    log: Arc<CommitLog>,
    queues: Arc<ConsumeQueues>,
    index: Arc<IndexService>,
    listener: RwLock<Option<Arc<dyn ArrivalListener>>>,
    /// Every record below this offset is dispatched (in the page cache).
    next: AtomicU64,
    /// Every record below this offset has durable consume-queue and index entries.
    durable: AtomicU64,
    /// One dispatch pass at a time (held across a pass; appenders only try it).
    running: Mutex<()>,
    /// Set by an appender after publishing records: a pass must start after it.
    wanted: AtomicBool,
    /// Where the last flush found `next` (a flush with nothing dispatched since is skipped).
    flushed_at: AtomicU64,
    progress: watch::Sender<u64>,
    /// Woken by the appender (and after flushes).
    pub signal: crate::wake::Signal,
    /// Queues whose entries turned out missing (a gap): rebuilt from the log on open.
    lost: Mutex<Vec<(Arc<str>, i32)>>,
    only_durable: bool,
    /// Dispatch began at the log's first record (an empty or fully dispatched log at open):
    /// a queue's first record seen is its first in the log, so a new queue may start there.
    from_log_start: bool,
}

impl Dispatcher {
    /// `only_durable`: dispatch only records below the log's flushed offset (sync flush mode:
    /// consumers never see a message that is not yet durable; the flusher wakes the
    /// dispatcher after each flush instead of every append waking it).
    pub fn new(
        log: Arc<CommitLog>,
        queues: Arc<ConsumeQueues>,
        index: Arc<IndexService>,
        from: u64,
        only_durable: bool,
    ) -> Self {
        let from_log_start = from <= log.min_offset();
        Dispatcher {
            only_durable,
            from_log_start,
            log,
            queues,
            index,
            listener: RwLock::new(None),
            next: AtomicU64::new(from),
            durable: AtomicU64::new(from),
            running: Mutex::new(()),
            wanted: AtomicBool::new(false),
            flushed_at: AtomicU64::new(u64::MAX),
            progress: watch::channel(from).0,
            signal: crate::wake::Signal::default(),
            lost: Mutex::new(Vec::new()),
        }
    }

    pub fn set_listener(&self, l: Arc<dyn ArrivalListener>) {
        *self.listener.write() = Some(l);
    }

    pub fn dispatched(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }

    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Waits until every record below `offset` is dispatched or `timeout` passes.
    pub async fn wait_dispatched(&self, offset: u64, timeout: Duration) -> bool {
        let mut rx = self.progress.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|&d| d >= offset))
            .await
            .is_ok_and(|r| r.is_ok());
        reached
    }

    /// Dispatches everything published so far, from the appender's thread, unless another
    /// thread is dispatching: then that one makes one more pass for it. Passes at most
    /// [`INLINE_PASSES`] times (appenders that keep coming do not hold one caller forever);
    /// what is left then goes to the dispatcher thread.
    pub fn dispatch_inline(&self) {
        self.wanted.store(true, Ordering::SeqCst);
        // Pairs with the fence after unlocking below: either this `try_lock` sees the lock
        // free or the holder sees `wanted` (no pass lost between them).
        fence(Ordering::SeqCst);
        let mut passes = 0;
        loop {
            let Some(guard) = self.running.try_lock() else {
                // The holder checks `wanted` after its pass (and again after unlocking).
                return;
            };
            while self.wanted.swap(false, Ordering::SeqCst) {
                if passes == INLINE_PASSES {
                    drop(guard);
                    self.wanted.store(true, Ordering::SeqCst);
                    self.signal.notify();
                    return;
                }
                self.dispatch_pass();
                passes += 1;
            }
            drop(guard);
            fence(Ordering::SeqCst);
            // An appender that failed `try_lock` after our last check left its mark.
            if !self.wanted.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    /// Dispatches everything published so far. Returns the number of records dispatched.
    pub fn dispatch_available(&self) -> usize {
        let _running = self.running.lock();
        self.wanted.store(false, Ordering::SeqCst);
        self.dispatch_pass()
    }

    /// One pass to the end of the published log (the caller holds `running`).
    fn dispatch_pass(&self) -> usize {
        // A log that starts later (a slave's copy of a master whose first segments are gone)
        // is dispatched from its first record.
        let mut pos = self.dispatched().max(self.log.min_offset());
        let mut n = 0;
        let mut touched: Vec<(Arc<str>, i32, u64)> = Vec::new();
        let limit = if self.only_durable {
            self.log.flushed_offset()
        } else {
            u64::MAX
        };
        while pos < limit {
            match self.log.read_at(pos) {
                LogEntry::Record(bytes) => {
                    let len = bytes.len() as u64;
                    self.dispatch_one(pos, &bytes, &mut touched);
                    pos += len;
                    n += 1;
                    // Publish progress in chunks so readers see long batches early.
                    if n % 4096 == 0 {
                        self.publish(pos, &mut touched);
                    }
                }
                LogEntry::Skip(next) => pos = next,
                LogEntry::End => break,
            }
        }
        self.publish(pos, &mut touched);
        n
    }

    fn publish(&self, pos: u64, touched: &mut Vec<(Arc<str>, i32, u64)>) {
        self.next.store(pos, Ordering::Release);
        self.progress.send_if_modified(|p| {
            let changed = *p != pos;
            *p = pos;
            changed
        });
        if touched.is_empty() {
            return;
        }
        let listener = self.listener.read().clone();
        if let Some(l) = listener {
            for (topic, qid, max) in touched.iter() {
                l.on_arrival(topic, *qid, *max);
            }
        }
        touched.clear();
    }

    /// Indexes one record: its own queue, the extra targets it names (multi-dispatch), and
    /// the key index under each of those topics. Records the queues touched.
    fn dispatch_one(&self, pos: u64, bytes: &[u8], touched: &mut Vec<(Arc<str>, i32, u64)>) {
        let check = Check {
            crc: false,
            position: Some(pos as i64),
        };
        let Ok(Entry::Record(r)) = record::decode(bytes, check) else {
            tracing::error!(offset = pos, "dispatch: unreadable record");
            return;
        };
        let props = r.properties();
        let entry = cq_entry(pos, &r);
        let own = std::iter::once((r.topic(), r.queue_id(), r.queue_offset() as u64));
        let extra = props
            .contains(multi_dispatch::DISPATCH_PROPERTY)
            .then(|| multi_dispatch::targets(props))
            .into_iter()
            .flatten();
        for (topic, qid, offset) in own.chain(extra) {
            let result = self
                .queues
                .get_or_create(topic, qid)
                .and_then(|cq| cq.put_from(offset, entry, self.from_log_start).map(|_| cq));
            match result {
                Ok(cq) => {
                    let max = cq.max_offset();
                    match touched.iter_mut().find(|x| x.1 == qid && *x.0 == *topic) {
                        Some(x) => x.2 = x.2.max(max),
                        None => touched.push((cq.topic().clone(), qid, max)),
                    }
                }
                Err(e) => {
                    tracing::error!(offset = pos, topic, queue = qid, error = %e, "dispatch: consume queue write failed");
                    let mut lost = self.lost.lock();
                    if !lost.iter().any(|(t, q)| **t == *topic && *q == qid) {
                        lost.push((topic.into(), qid));
                    }
                }
            }
        }
        let keys = record::property(props, "KEYS").unwrap_or("");
        let uniq = record::property(props, "UNIQ_KEY").unwrap_or("");
        let all = keys.split(' ').chain(std::iter::once(uniq));
        let own_topic = [r.topic()];
        let many: Vec<&str>;
        let topics: &[&str] = if props.contains(multi_dispatch::DISPATCH_PROPERTY) {
            // Each topic once (a target may name another queue of the same topic).
            let mut v = vec![r.topic()];
            for (t, _, _) in multi_dispatch::targets(props) {
                if !v.contains(&t) {
                    v.push(t);
                }
            }
            many = v;
            &many
        } else {
            &own_topic
        };
        if let Err(e) = self
            .index
            .put(pos, entry.size, r.store_timestamp(), all, topics)
        {
            tracing::error!(offset = pos, error = %e, "dispatch: index write failed");
        }
    }

    /// Queues found missing entries since the last call.
    pub fn take_lost(&self) -> Vec<(Arc<str>, i32)> {
        std::mem::take(&mut *self.lost.lock())
    }

    /// Rebuilds the given queues from scratch by walking the whole log (recovery of a queue
    /// whose files were lost). Returns the entries written.
    pub fn rebuild(&self, lost: &[(Arc<str>, i32)]) -> super::error::Result<usize> {
        for (t, q) in lost {
            tracing::warn!(topic = %t, queue = q, "rebuilding consume queue from the commit log");
            self.queues.reset(t, *q)?;
        }
        let mut pos = self.log.min_offset();
        let end = self.dispatched();
        let mut n = 0;
        while pos < end {
            match self.log.read_at(pos) {
                LogEntry::Record(bytes) => {
                    let check = Check {
                        crc: false,
                        position: Some(pos as i64),
                    };
                    if let Ok(Entry::Record(r)) = record::decode(&bytes, check) {
                        let props = r.properties();
                        let own =
                            std::iter::once((r.topic(), r.queue_id(), r.queue_offset() as u64));
                        for (topic, qid, offset) in own.chain(multi_dispatch::targets(props)) {
                            if lost.iter().any(|(t, q)| **t == *topic && *q == qid) {
                                self.queues.get_or_create(topic, qid)?.put_from(
                                    offset,
                                    cq_entry(pos, &r),
                                    true,
                                )?;
                                n += 1;
                            }
                        }
                    }
                    pos += bytes.len() as u64;
                }
                LogEntry::Skip(next) => pos = next,
                LogEntry::End => break,
            }
        }
        Ok(n)
    }

    /// Flushes consume queues and index, then advances the durable point. Nothing to do when
    /// nothing was dispatched since the last flush. No pass runs meanwhile (the files flushed
    /// match the durable point exactly); appenders that came meanwhile are served after.
    pub fn flush(&self) -> std::io::Result<()> {
        {
            let _running = self.running.lock();
            let upto = self.dispatched();
            if self.flushed_at.load(Ordering::Acquire) != upto {
                self.queues.flush()?;
                self.index.flush()?;
                self.durable.fetch_max(upto, Ordering::AcqRel);
                self.flushed_at.store(upto, Ordering::Release);
            }
        }
        // Pairs with the fence in `dispatch_inline`: an appender that found the lock held.
        fence(Ordering::SeqCst);
        if self.wanted.load(Ordering::SeqCst) {
            self.dispatch_available();
        }
        // The index's slot table, when due: one `fdatasync`, outside the lock.
        self.index.sync_slots()
    }

    /// [`flush`](Self::flush), and the index's slots too (close).
    pub fn flush_all(&self) -> std::io::Result<()> {
        self.flush()?;
        let _running = self.running.lock();
        self.index.sync_all()
    }

    /// The loop: dispatch on every signal (and every `flush_every`, for whatever an appender
    /// left); flush dispatched structures every `flush_every`.
    pub fn run(&self, flush_every: Duration) {
        let mut last_flush = Instant::now();
        loop {
            let running = self.signal.wait(flush_every);
            self.dispatch_available();
            if !running || last_flush.elapsed() >= flush_every {
                if let Err(e) = self.flush() {
                    tracing::error!(error = %e, "flushing consume queues/index failed");
                }
                last_flush = Instant::now();
            }
            if !running {
                return;
            }
        }
    }
}
