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

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::protocol::properties::{
    self, START_DELIVER_TIME, TIMER_DELAY_MS, TIMER_DELAY_SEC, TIMER_DELIVER_MS, TIMER_OUT_MS,
};
use crate::schedule::{deliver, park_properties, Delivery};
use crate::store::record::{self, Check, Entry};

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

/// Delivered flags from the low-water mark on (bit i = entry `low + i`).
struct Delivered {
    low: u64,
    bits: Vec<u64>,
    dirty: bool,
}

impl Delivered {
    fn is_set(&self, off: u64) -> bool {
        if off < self.low {
            return true;
        }
        let i = (off - self.low) as usize;
        self.bits
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn set(&mut self, off: u64) {
        if off < self.low {
            return;
        }
        let i = (off - self.low) as usize;
        if self.bits.len() <= i / 64 {
            self.bits.resize(i / 64 + 1, 0);
        }
        self.bits[i / 64] |= 1 << (i % 64);
        // Advance the low-water mark over whole delivered words.
        let full = self.bits.iter().take_while(|w| **w == u64::MAX).count();
        if full > 0 {
            self.bits.drain(..full);
            self.low += full as u64 * 64;
        }
        self.dirty = true;
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + self.bits.len() * 8);
        v.extend_from_slice(&self.low.to_be_bytes());
        for w in &self.bits {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v
    }

    fn decode(b: &[u8]) -> Option<Delivered> {
        if b.len() < 8 || (b.len() - 8) % 8 != 0 {
            return None;
        }
        let word = |c: &[u8]| u64::from_be_bytes(c.try_into().unwrap_or([0; 8]));
        Some(Delivered {
            low: word(&b[..8]),
            bits: b[8..].chunks_exact(8).map(word).collect(),
            dirty: false,
        })
    }
}

pub struct TimerState {
    path: std::path::PathBuf,
    delivered: Mutex<Delivered>,
}

impl TimerState {
    pub fn open(dir: &std::path::Path) -> TimerState {
        let path = dir.join("timer.bits");
        let delivered = std::fs::read(&path)
            .ok()
            .and_then(|b| Delivered::decode(&b))
            .unwrap_or(Delivered {
                low: 0,
                bits: Vec::new(),
                dirty: false,
            });
        TimerState {
            path,
            delivered: Mutex::new(delivered),
        }
    }

    pub fn persist(&self) -> Result<(), crate::store::StoreError> {
        let bytes = {
            let mut d = self.delivered.lock();
            if !d.dirty {
                return Ok(());
            }
            d.dirty = false;
            d.encode()
        };
        crate::store::checkpoint::write_atomically(&self.path, &bytes)
    }

    /// Entries not yet delivered start here.
    pub fn low_water(&self) -> u64 {
        self.delivered.lock().low
    }

    /// Bytes of delivered flags held (for the memory figures).
    pub fn bitmap_bytes(&self) -> usize {
        self.delivered.lock().bits.len() * 8
    }
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
            let state = b.timer.delivered.lock();
            cq.scan(scanned_upto.max(state.low), |off, e| {
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
            if b.timer.delivered.lock().is_set(off) {
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
                b.timer.delivered.lock().set(off);
                continue;
            };
            let Ok(Entry::Record(r)) = record::decode(
                &rec,
                Check {
                    crc: false,
                    position: None,
                },
            ) else {
                b.timer.delivered.lock().set(off);
                continue;
            };
            match deliver(&b, &r, due <= check_doubt_until).await {
                Delivery::Delivered | Delivery::Dropped => b.timer.delivered.lock().set(off),
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

    #[test]
    fn delivered_bitmap_advances_and_round_trips() {
        let mut d = Delivered {
            low: 0,
            bits: Vec::new(),
            dirty: false,
        };
        for off in (0..200).rev() {
            if off != 70 {
                d.set(off);
            }
        }
        assert_eq!(
            d.low, 64,
            "the first word is complete; 70 is missing from the second"
        );
        assert!(d.is_set(10) && d.is_set(150) && !d.is_set(70) && !d.is_set(300));
        let back = Delivered::decode(&d.encode()).unwrap();
        assert_eq!((back.low, back.bits.clone()), (d.low, d.bits.clone()));
        d.set(70);
        assert_eq!(d.low, 192);
    }
}
