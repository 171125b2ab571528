//! Delivery at arbitrary times (`TIMER_DELIVER_MS`, `TIMER_DELAY_SEC`, `TIMER_DELAY_MS`, and
//! Aliyun's `__STARTDELIVERTIME`).
//!
//! A timed message is parked in the timer topic ([`TIMER_TOPIC`], one queue). Its consume-queue
//! entry carries its delivery time, so the timer finds due messages by scanning 20-byte
//! entries without reading the log. It keeps in memory only the messages due within the next
//! [`WINDOW`], in a heap. Everything further out stays on disk and is picked up by a later scan,
//! so memory follows what is due soon, not what is pending.
//!
//! Deliveries are recorded in a bitmap, one bit per timer-queue entry from the low-water mark
//! on, persisted every second (`config/timer.bits`). After a crash, a due message whose bit was
//! not yet persisted is looked up by `UNIQ_KEY` in its real topic before it is delivered, so it
//! is delivered once. Messages are late after a restart, never lost.
//!
//! Rules for bad input: a time in the past (or now) is delivered at once; a time further ahead
//! than `timer_max_delay_secs` is refused with MESSAGE_ILLEGAL; a value that is not a number is
//! refused.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::context::Broker;
use crate::protocol::properties::{
    self, START_DELIVER_TIME, TIMER_DELAY_MS, TIMER_DELAY_SEC, TIMER_DELIVER_MS, TIMER_OUT_MS,
};
use crate::schedule::{deliver, park_properties, Delivery};
use crate::store::record::{self, Check, Entry};

pub use crate::context::timer_state::TimerState;
pub use crate::store::dispatch::TIMER_TOPIC;

/// How far ahead the timer holds due messages in memory.
pub const WINDOW: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    #[error("{0} is not a number: {1:?}")]
    NotANumber(&'static str, String),
    #[error("delivery time is {ahead_s} s ahead; the limit is {max_s} s")]
    TooFar { ahead_s: i64, max_s: i64 },
}

/// The delivery time a message asks for, if it asks for one in the future.
pub fn requested_delivery(
    props: &str,
    now_ms: i64,
    max_delay: Duration,
) -> Result<Option<i64>, TimerError> {
    let num = |key: &'static str| -> Result<Option<i64>, TimerError> {
        match properties::get_property(props, key) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| TimerError::NotANumber(key, v.chars().take(32).collect())),
        }
    };
    let at = if let Some(t) = num(TIMER_DELIVER_MS)? {
        t
    } else if let Some(t) = num(START_DELIVER_TIME)? {
        t
    } else if let Some(s) = num(TIMER_DELAY_SEC)? {
        now_ms.saturating_add(s.saturating_mul(1000))
    } else if let Some(ms) = num(TIMER_DELAY_MS)? {
        now_ms.saturating_add(ms)
    } else {
        return Ok(None);
    };
    if at <= now_ms {
        return Ok(None);
    }
    let max = max_delay.as_millis() as i64;
    if at - now_ms > max {
        return Err(TimerError::TooFar {
            ahead_s: (at - now_ms) / 1000,
            max_s: max / 1000,
        });
    }
    Ok(Some(at))
}

/// Properties of the parked copy: destination, unique key and the delivery time.
pub fn timer_properties(props: &str, topic: &str, queue_id: i32, deliver_ms: i64) -> String {
    let mut p = park_properties(props, topic, queue_id);
    let _ = properties::push_pair(&mut p, TIMER_OUT_MS, &deliver_ms.to_string());
    p
}

/// The timer task: scan, hold what is due soon, deliver on time, until shutdown.
pub async fn run(b: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut heap: BinaryHeap<Reverse<(i64, u64)>> = BinaryHeap::new();
    // Entries below this were looked at by the last scan.
    let mut scanned_upto = 0u64;
    let mut horizon = 0i64;
    let mut next_full_scan = Instant::now();
    // Only messages due before this start can have been delivered by a previous run whose
    // bitmap write was lost: they are checked against their real topic first.
    let check_doubt_until = crate::store::commit_log::now_ms();
    let mut last_persist = Instant::now();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let notify = b.hold.notifier(TIMER_TOPIC, 0);
        let arrived = notify.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        let now = crate::store::commit_log::now_ms();
        if let Some(cq) = b.store.consume_queue(TIMER_TOPIC, 0) {
            let full = Instant::now() >= next_full_scan;
            if full {
                heap.clear();
                scanned_upto = b.timer.low_water();
                horizon = now + WINDOW.as_millis() as i64;
                next_full_scan = Instant::now() + WINDOW / 2;
            }
            // A full scan re-reads the pending entries; in between only new entries are read.
            let state = b.timer.delivered();
            cq.scan(scanned_upto.max(state.low()), |off, e| {
                if e.tag_hash <= horizon && !state.is_set(off) {
                    heap.push(Reverse((e.tag_hash, off)));
                }
                scanned_upto = off + 1;
                true
            });
            drop(state);
        }
        // Deliver what is due.
        while let Some(Reverse((due, off))) = heap.peek().copied() {
            if due > crate::store::commit_log::now_ms() || *shutdown.borrow() {
                break;
            }
            heap.pop();
            if b.timer.delivered().is_set(off) {
                continue;
            }
            let Some(e) = b
                .store
                .consume_queue(TIMER_TOPIC, 0)
                .and_then(|cq| cq.get(off))
            else {
                continue;
            };
            let Some(rec) = b.store.view(e.physical_offset) else {
                b.timer.delivered().set(off);
                continue;
            };
            let Ok(Entry::Record(r)) = record::decode(
                &rec,
                Check {
                    crc: false,
                    position: None,
                },
            ) else {
                b.timer.delivered().set(off);
                continue;
            };
            match deliver(&b, &r, due <= check_doubt_until).await {
                Delivery::Delivered | Delivery::Dropped => b.timer.delivered().set(off),
                Delivery::RetryLater => {
                    heap.push(Reverse((due, off)));
                    break;
                }
            }
        }
        if last_persist.elapsed() >= Duration::from_secs(1) {
            if let Err(e) = b.timer.persist() {
                tracing::error!(error = %e, "persisting timer progress failed");
            }
            last_persist = Instant::now();
        }
        let next_due = heap.peek().map(|Reverse((d, _))| *d);
        let now = crate::store::commit_log::now_ms();
        let mut wait = Duration::from_millis(200);
        if let Some(d) = next_due {
            wait = wait.min(Duration::from_millis((d - now).max(0) as u64));
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut arrived => {}
            _ = shutdown.changed() => {}
        }
    }
    if let Err(e) = b.timer.persist() {
        tracing::error!(error = %e, "persisting timer progress failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_time_rules() {
        let max = Duration::from_secs(3600);
        let now = 1_000_000;
        assert_eq!(requested_delivery("", now, max), Ok(None));
        assert_eq!(
            requested_delivery("TIMER_DELIVER_MS\u{1}1005000\u{2}", now, max),
            Ok(Some(1_005_000))
        );
        assert_eq!(
            requested_delivery("__STARTDELIVERTIME\u{1}1002000\u{2}", now, max),
            Ok(Some(1_002_000))
        );
        assert_eq!(
            requested_delivery("TIMER_DELAY_SEC\u{1}3\u{2}", now, max),
            Ok(Some(1_003_000))
        );
        assert_eq!(
            requested_delivery("TIMER_DELAY_MS\u{1}250\u{2}", now, max),
            Ok(Some(1_000_250))
        );
        assert_eq!(
            requested_delivery("TIMER_DELIVER_MS\u{1}5\u{2}", now, max),
            Ok(None),
            "past = now"
        );
        assert!(matches!(
            requested_delivery("TIMER_DELAY_SEC\u{1}99999999\u{2}", now, max),
            Err(TimerError::TooFar { .. })
        ));
        assert!(requested_delivery("TIMER_DELAY_MS\u{1}soon\u{2}", now, max).is_err());
    }
}
