//! Flushing the commit log. `sync` mode: a flusher thread wakes on work (never on a tick),
//! flushes everything appended so far with one `fdatasync`, and releases every put waiting at
//! or below that offset: concurrent puts share one flush (group commit). `async` mode: the
//! same thread flushes every `flush_interval_ms`, or at once when woken
//! ([`Flusher::flush_now`]: a send that finds too many unflushed bytes).
//!
//! A flush error is not retried (after a failed fsync the kernel may have dropped the dirty
//! pages): the store turns read-only and every waiter learns its data is not known durable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use super::commit_log::CommitLog;
use super::config::FlushMode;

/// Published after every flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushProgress {
    pub flushed: u64,
    pub failed: bool,
}

#[derive(Default)]
struct Wake {
    pending: bool,
    shutdown: bool,
    /// Appends since the current batch started gathering.
    count: usize,
    /// How many appends the last batch carried: the next batch waits (briefly) for as many.
    target: usize,
}

/// Longest a batch waits for more appends before flushing what it has.
const MAX_GATHER: Duration = Duration::from_millis(1);

pub struct Flusher {
    mode: FlushMode,
    interval: Duration,
    wake: Mutex<Wake>,
    cv: Condvar,
    progress: watch::Sender<FlushProgress>,
    /// Fault injection: the next flush fails as if `fdatasync` returned EIO.
    inject_failure: std::sync::atomic::AtomicBool,
    /// Flushes that wrote something (one `fdatasync` of the commit log each).
    flushes: AtomicU64,
    /// Appends announced by [`request`](Flusher::request) (sync mode).
    requests: AtomicU64,
    /// Time spent in `fdatasync`, and gathering appends for a batch (nanoseconds).
    flush_ns: AtomicU64,
    gather_ns: AtomicU64,
}

/// Counters of the flusher: `requests / flushes` is how many appends a flush carried on average.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushStats {
    pub flushes: u64,
    pub requests: u64,
    pub flush_ns: u64,
    pub gather_ns: u64,
}

/// What a put learns from waiting for its flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushWait {
    Durable,
    TimedOut,
    Failed,
}

impl Flusher {
    pub fn new(mode: FlushMode, interval: Duration, flushed: u64) -> Flusher {
        Flusher {
            mode,
            interval,
            wake: Mutex::new(Wake::default()),
            cv: Condvar::new(),
            progress: watch::channel(FlushProgress {
                flushed,
                failed: false,
            })
            .0,
            inject_failure: std::sync::atomic::AtomicBool::new(false),
            flushes: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            flush_ns: AtomicU64::new(0),
            gather_ns: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> FlushStats {
        FlushStats {
            flushes: self.flushes.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            flush_ns: self.flush_ns.load(Ordering::Relaxed),
            gather_ns: self.gather_ns.load(Ordering::Relaxed),
        }
    }

    /// Makes the next flush fail (fault-injection for tests of the read-only path).
    pub fn inject_failure(&self) {
        self.inject_failure.store(true, Ordering::Release);
    }

    /// Tells a sync-mode flusher there is new data (called after each append).
    pub fn request(&self) {
        if self.mode == FlushMode::Sync {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let mut w = self.wake.lock();
            w.count += 1;
            if !w.pending {
                w.pending = true;
                self.cv.notify_one();
            } else if w.count == w.target {
                self.cv.notify_one();
            }
        }
    }

    /// Wakes the flusher for a flush now (async mode flushes every interval otherwise). A
    /// flush in progress is followed by another at once.
    pub fn flush_now(&self) {
        let mut w = self.wake.lock();
        if !w.pending {
            w.pending = true;
            self.cv.notify_one();
        }
    }

    pub fn shutdown(&self) {
        self.wake.lock().shutdown = true;
        self.cv.notify_all();
    }

    pub fn progress(&self) -> FlushProgress {
        *self.progress.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<FlushProgress> {
        self.progress.subscribe()
    }

    /// Waits until `offset` is durable, the flush fails, or `timeout` passes.
    pub async fn wait(&self, offset: u64, timeout: Duration) -> FlushWait {
        let mut rx = self.progress.subscribe();
        let fut = rx.wait_for(|p| p.failed || p.flushed >= offset);
        let outcome = match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(p)) if p.failed && p.flushed < offset => FlushWait::Failed,
            Ok(Ok(_)) => FlushWait::Durable,
            Ok(Err(_)) => FlushWait::Failed,
            Err(_) => FlushWait::TimedOut,
        };
        outcome
    }

    /// The flusher loop; returns on shutdown after a last flush. `on_fail` is told once.
    pub fn run(
        &self,
        log: &CommitLog,
        on_flushed: impl Fn(u64),
        on_fail: impl Fn(&std::io::Error),
    ) {
        // How long the last flush took: a batch gathers appends for at most about as long.
        let mut last_flush = Duration::ZERO;
        loop {
            let shutdown = {
                let mut w = self.wake.lock();
                match self.mode {
                    FlushMode::Sync => {
                        while !w.pending && !w.shutdown {
                            self.cv.wait(&mut w);
                        }
                        // Group commit: writers released by the last flush are re-appending
                        // right now; wait until as many as last time have (or a short deadline),
                        // so one fdatasync carries them all. A lone writer never waits.
                        let gather = std::time::Instant::now();
                        let deadline = gather + last_flush.min(MAX_GATHER);
                        while w.count < w.target && !w.shutdown {
                            if self.cv.wait_until(&mut w, deadline).timed_out() {
                                break;
                            }
                        }
                        w.target = w.count;
                        w.count = 0;
                        self.gather_ns
                            .fetch_add(gather.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    }
                    FlushMode::Async => {
                        // Woken early by `flush_now` (also one that came during the last flush).
                        if !w.shutdown && !w.pending {
                            self.cv.wait_for(&mut w, self.interval);
                        }
                    }
                }
                w.pending = false;
                w.shutdown
            };
            let started = std::time::Instant::now();
            if self.progress.borrow().failed {
                return;
            }
            let result = if self.inject_failure.swap(false, Ordering::AcqRel) {
                Err(std::io::Error::other("injected fsync failure"))
            } else {
                log.flush()
            };
            last_flush = started.elapsed();
            self.flush_ns
                .fetch_add(last_flush.as_nanos() as u64, Ordering::Relaxed);
            match result {
                Ok(flushed) => {
                    let advanced = self.progress.send_if_modified(|p| {
                        let changed = flushed > p.flushed;
                        p.flushed = p.flushed.max(flushed);
                        changed
                    });
                    if advanced {
                        self.flushes.fetch_add(1, Ordering::Relaxed);
                        on_flushed(flushed);
                    }
                }
                Err(e) => {
                    on_fail(&e);
                    self.progress.send_modify(|p| p.failed = true);
                    return;
                }
            }
            if shutdown {
                return;
            }
        }
    }
}

/// Runs the flusher on its own thread.
pub fn spawn(
    flusher: Arc<Flusher>,
    log: Arc<CommitLog>,
    on_flushed: impl Fn(u64) + Send + 'static,
    on_fail: impl Fn(&std::io::Error) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("wasmq-flush".into())
        .spawn(move || flusher.run(&log, on_flushed, on_fail))
}
