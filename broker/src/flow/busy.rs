//! Send-side back-pressure (RocketMQ's answers): a send that waited longer than
//! `wait_time_ms_in_send_queue` before being processed, or that finds the store busy, is
//! refused before anything is stored for it, so a client may send it again (to this broker or
//! another) without making a duplicate.
//!
//! | refusal | when | code (as RocketMQ) |
//! |---|---|---|
//! | `[TIMEOUT_CLEAN_QUEUE]` | the request was decoded more than `wait_time_ms_in_send_queue` ago | SYSTEM_BUSY (2) |
//! | `[PC_SYNCHRONIZED]` | an append has held the commit log's lock longer than `os_page_cache_busy_timeout_ms` | SYSTEM_ERROR (1) |
//! | `[DIRTY_BYTES]` | async flush: more than `max_dirty_bytes` unflushed, still after waiting for the flusher for what is left of `wait_time_ms_in_send_queue` | SYSTEM_BUSY (2) |
//!
//! RocketMQ answers `[PC_SYNCHRONIZED]` with SYSTEM_ERROR, which its clients (Java, ali-ons)
//! retry at once on another broker; SYSTEM_BUSY is retried by Java clients 5.x, while ali-ons
//! and Java 4.x hand it to the application.
//!
//! When nothing is over its limits a check costs a clock read and a few atomic loads: no lock,
//! no allocation.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::counters::Reason;
use super::Refusal;
use crate::config::BrokerConfig;
use crate::protocol::response;
use crate::store::{FlushMode, MessageStore};

/// Fault injection (`WASMQ_FAILPOINT=send-queue-timeout=N`): every `N`th send is refused as if
/// it had waited too long.
pub const FAILPOINT_QUEUE_TIMEOUT: &str = "send-queue-timeout";
/// Fault injection (`WASMQ_FAILPOINT=send-store-busy=N`): every `N`th send finds the store
/// busy.
pub const FAILPOINT_STORE_BUSY: &str = "send-store-busy";

/// The configured bounds.
#[derive(Debug, Clone)]
pub struct Limits {
    pub wait_in_queue: Duration,
    pub page_cache_busy: Duration,
    pub max_dirty_bytes: u64,
    /// Async flush: sends may pile up dirty bytes (under sync flush each waits for its flush).
    pub async_flush: bool,
}

impl Limits {
    pub fn from_config(c: &BrokerConfig) -> Limits {
        Limits {
            wait_in_queue: Duration::from_millis(c.wait_time_ms_in_send_queue),
            page_cache_busy: Duration::from_millis(c.os_page_cache_busy_timeout_ms),
            max_dirty_bytes: c.store.max_dirty_bytes,
            async_flush: c.store.flush_mode == FlushMode::Async,
        }
    }
}

/// Sends being processed now (received by the send processor, not yet answered): the `size of
/// queue` a `[TIMEOUT_CLEAN_QUEUE]` remark reports.
#[derive(Debug, Default)]
pub struct InProgress(AtomicUsize);

impl InProgress {
    /// Counts a send until the guard is dropped.
    pub fn enter(&self) -> InProgressGuard<'_> {
        self.0.fetch_add(1, Ordering::Relaxed);
        InProgressGuard(&self.0)
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// A send counted in [`InProgress`].
#[derive(Debug)]
pub struct InProgressGuard<'a>(&'a AtomicUsize);

impl Drop for InProgressGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The response code of a refusal for `reason`, as RocketMQ answers it.
pub fn code(reason: Reason) -> i32 {
    match reason {
        Reason::PageCacheBusy => response::SYSTEM_ERROR,
        _ => response::SYSTEM_BUSY,
    }
}

/// `Ok` when the send may go on; else why not. `received` is when its frame was decoded
/// (`None`: not from the network, no time in queue to check); `sends` are those in progress.
pub async fn admit(
    limits: &Limits,
    store: &MessageStore,
    received: Option<Instant>,
    sends: &InProgress,
) -> Result<(), (Reason, Refusal)> {
    let waited = match received {
        Some(at) => {
            let waited = at.elapsed();
            if waited > limits.wait_in_queue || crate::failpoint::every_nth(FAILPOINT_QUEUE_TIMEOUT)
            {
                let remark = format!(
                    "[TIMEOUT_CLEAN_QUEUE]broker busy, start flow control for a while, period in queue: {}ms, size of queue: {}",
                    waited.as_millis(),
                    sends.count()
                );
                return Err(refuse(Reason::QueueTimeout, remark));
            }
            waited
        }
        None => Duration::ZERO,
    };
    let store_busy = store
        .append_busy_for()
        .is_some_and(|held| held > limits.page_cache_busy);
    if store_busy || crate::failpoint::every_nth(FAILPOINT_STORE_BUSY) {
        let remark = "[PC_SYNCHRONIZED]broker busy, start flow control for a while".to_string();
        return Err(refuse(Reason::PageCacheBusy, remark));
    }
    if limits.async_flush && store.dirty_bytes() > limits.max_dirty_bytes {
        // Wait for the flusher (woken now) for what is left of the send's time in queue.
        let left = limits.wait_in_queue.saturating_sub(waited);
        let dirty = store.wait_dirty_at_most(limits.max_dirty_bytes, left).await;
        if dirty > limits.max_dirty_bytes {
            let remark = format!(
                "[DIRTY_BYTES]broker busy: {dirty} bytes not yet flushed (max_dirty_bytes {})",
                limits.max_dirty_bytes
            );
            return Err(refuse(Reason::DirtyBytes, remark));
        }
    }
    Ok(())
}

fn refuse(reason: Reason, remark: String) -> (Reason, Refusal) {
    report(reason, &remark);
    (reason, (code(reason), remark))
}

/// Logs refusals: the first at once, then at most one line a second with how many more there
/// were (a flood of refusals must not become a flood of log lines).
fn report(reason: Reason, remark: &str) {
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    static SINCE: AtomicU64 = AtomicU64::new(0);
    let now = crate::store::commit_log::now_ms().max(0) as u64;
    let last = LAST_MS.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 1000
        && LAST_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let more = SINCE.swap(0, Ordering::Relaxed);
        tracing::warn!(
            ?reason,
            remark,
            refused_since_last_report = more,
            "flow control: send refused, nothing stored"
        );
    } else {
        SINCE.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MessageInput, StoreConfig};

    fn limits(wait_ms: u64, busy_ms: u64, max_dirty: u64) -> Limits {
        Limits {
            wait_in_queue: Duration::from_millis(wait_ms),
            page_cache_busy: Duration::from_millis(busy_ms),
            max_dirty_bytes: max_dirty,
            async_flush: true,
        }
    }

    /// An async-flush store whose flusher sleeps a minute unless woken.
    fn store(dir: &std::path::Path) -> MessageStore {
        let cfg = StoreConfig {
            flush_mode: FlushMode::Async,
            flush_interval_ms: 60_000,
            max_message_size: 64 * 1024,
            ..StoreConfig::for_tests(dir)
        };
        MessageStore::open(cfg, "127.0.0.1:10911".parse().unwrap()).unwrap()
    }

    async fn put(store: &MessageStore, n: usize, size: usize) {
        let body = vec![7u8; size];
        for _ in 0..n {
            let m = MessageInput {
                topic: "T",
                queue_id: 0,
                flag: 0,
                sysflag: 0,
                born_timestamp: 1,
                born_host: "127.0.0.1:5000".parse().unwrap(),
                reconsume_times: 0,
                prepared_transaction_offset: 0,
                body: &body,
                properties: "",
            };
            assert!(store.put(&[m]).await.status.is_ok());
        }
    }

    #[tokio::test]
    async fn a_send_that_waited_too_long_is_refused_busy() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let sends = InProgress::default();
        let _a = sends.enter();
        let _b = sends.enter();
        let l = limits(20, 1000, 1 << 30);
        assert!(admit(&l, &store, Some(Instant::now()), &sends)
            .await
            .is_ok());
        assert!(admit(&l, &store, None, &sends).await.is_ok());
        let old = Instant::now() - Duration::from_millis(35);
        let (reason, (code, remark)) = admit(&l, &store, Some(old), &sends).await.unwrap_err();
        assert_eq!(reason, Reason::QueueTimeout);
        assert_eq!(code, response::SYSTEM_BUSY);
        assert!(
            remark.starts_with("[TIMEOUT_CLEAN_QUEUE]broker busy, start flow control for a while, period in queue: 3"),
            "{remark}"
        );
        assert!(remark.ends_with("ms, size of queue: 2"), "{remark}");
    }

    #[tokio::test]
    async fn a_store_stalled_in_an_append_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let sends = InProgress::default();
        let l = limits(1000, 20, 1 << 30);
        assert_eq!(store.append_busy_for(), None);
        let stalled = store.hold_append_lock();
        assert!(admit(&l, &store, Some(Instant::now()), &sends)
            .await
            .is_ok());
        std::thread::sleep(Duration::from_millis(30));
        assert!(store.append_busy_for().unwrap() >= Duration::from_millis(30));
        let (reason, (code, remark)) = admit(&l, &store, Some(Instant::now()), &sends)
            .await
            .unwrap_err();
        assert_eq!(reason, Reason::PageCacheBusy);
        assert_eq!(code, response::SYSTEM_ERROR);
        assert_eq!(
            remark,
            "[PC_SYNCHRONIZED]broker busy, start flow control for a while"
        );
        drop(stalled);
        assert_eq!(store.append_busy_for(), None);
        assert!(admit(&l, &store, Some(Instant::now()), &sends)
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn too_many_dirty_bytes_wake_the_flusher_and_the_send_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        put(&store, 32, 1024).await;
        assert!(store.dirty_bytes() > 32 * 1024);
        let l = limits(5_000, 1000, 4096);
        let t = Instant::now();
        admit(&l, &store, Some(Instant::now()), &InProgress::default())
            .await
            .unwrap();
        // The flusher sleeps 60 s between flushes unless woken.
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert!(store.dirty_bytes() <= 4096);
    }

    #[tokio::test]
    async fn dirty_bytes_the_flusher_cannot_clear_are_refused_busy() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        put(&store, 32, 1024).await;
        let dirty = store.dirty_bytes();
        // The next flush fails: nothing more is flushed, the wait ends at once.
        store.inject_flush_failure();
        let l = limits(2_000, 1000, 4096);
        let t = Instant::now();
        let (reason, (code, remark)) =
            admit(&l, &store, Some(Instant::now()), &InProgress::default())
                .await
                .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(3));
        assert_eq!(reason, Reason::DirtyBytes);
        assert_eq!(code, response::SYSTEM_BUSY);
        assert_eq!(
            remark,
            format!(
                "[DIRTY_BYTES]broker busy: {dirty} bytes not yet flushed (max_dirty_bytes 4096)"
            )
        );
        // Under sync flush (each put waits for its own flush) the check does not apply.
        let sync = Limits {
            async_flush: false,
            ..l
        };
        assert!(
            admit(&sync, &store, Some(Instant::now()), &InProgress::default())
                .await
                .is_ok()
        );
    }

    #[test]
    fn sends_in_progress_are_counted_while_held() {
        let s = InProgress::default();
        {
            let _a = s.enter();
            let _b = s.enter();
            assert_eq!(s.count(), 2);
        }
        assert_eq!(s.count(), 0);
    }
}
