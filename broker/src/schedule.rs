//! Delayed delivery by level (RocketMQ's scheduled messages): a message with property `DELAY`
//! = level is stored in `SCHEDULE_TOPIC_XXXX`, queue `level - 1`, with its real topic and queue
//! in `REAL_TOPIC` / `REAL_QID`. One task per level follows its queue (FIFO, since every message
//! of a level waits equally long) and re-puts each message into its real topic when due.
//!
//! Progress per level is persisted (`config/delayOffset.json`) after every delivery. A crash
//! between a delivery and that write leaves one message per level in doubt; on restart the
//! task looks it up by `UNIQ_KEY` in the real topic and skips it if it is already there, so
//! the scheduler never delivers a message twice. Messages are late after a restart, never lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use crate::context::delay::{DelayLevels, ScheduleState, SCHEDULE_TOPIC};
use crate::context::Broker;
use crate::protocol::properties::{self, DELAY, REAL_QID, REAL_TOPIC, UNIQ_KEY};
use crate::store::record::{self, Check, Entry, CRC_PROPERTY};
use crate::store::{MessageInput, PutStatus};

/// Why a DELAY property cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelayError {
    #[error("delay level {0:?} is not a number")]
    NotANumber(String),
    #[error("delay level {0} is negative")]
    Negative(i32),
}

/// The level a message asks for: `None` for no delay (absent, or 0 as RocketMQ treats it);
/// levels above the configured count are clamped to the longest (RocketMQ's rule).
pub fn requested_level(props: &str, levels: &DelayLevels) -> Result<Option<i32>, DelayError> {
    let Some(v) = properties::get_property(props, DELAY) else {
        return Ok(None);
    };
    let level: i32 = v
        .trim()
        .parse()
        .map_err(|_| DelayError::NotANumber(v.chars().take(32).collect()))?;
    match level {
        l if l < 0 => Err(DelayError::Negative(l)),
        0 => Ok(None),
        l => Ok(Some(l.min(levels.count()))),
    }
}

/// Properties of the parked copy: the real destination kept, a `UNIQ_KEY` ensured (the
/// scheduler's dedup key after a crash).
pub fn park_properties(props: &str, topic: &str, queue_id: i32) -> String {
    let mut p = String::with_capacity(props.len() + 96);
    p.push_str(props);
    if !p.is_empty() && !p.ends_with(properties::PROPERTY_SEPARATOR) {
        p.push(properties::PROPERTY_SEPARATOR);
    }
    let mut put = |k: &str, v: &str| {
        p.push_str(k);
        p.push(properties::NAME_VALUE_SEPARATOR);
        p.push_str(v);
        p.push(properties::PROPERTY_SEPARATOR);
    };
    put(REAL_TOPIC, topic);
    put(REAL_QID, &queue_id.to_string());
    if properties::get_property(props, UNIQ_KEY).is_none() {
        put(UNIQ_KEY, &new_uniq_key());
    }
    p
}

/// A broker-generated unique key (32 hex characters).
pub fn new_uniq_key() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!(
        "{:08X}{:016X}{:08X}",
        std::process::id(),
        now,
        SEQ.fetch_add(1, Ordering::Relaxed) as u32
    )
}

/// Strips the store's checksum trailer and the scheduling properties: what the real topic gets.
pub(crate) fn delivered_properties(props: &str) -> String {
    let mut out = String::with_capacity(props.len());
    for kv in properties::iter(props).flatten() {
        if kv.0 == REAL_TOPIC
            || kv.0 == REAL_QID
            || kv.0 == DELAY
            || kv.0 == CRC_PROPERTY
            || kv.0 == properties::TIMER_OUT_MS
        {
            continue;
        }
        out.push_str(kv.0);
        out.push(properties::NAME_VALUE_SEPARATOR);
        out.push_str(kv.1);
        out.push(properties::PROPERTY_SEPARATOR);
    }
    out
}

/// What became of a due parked message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Stored in its real topic (or found there already after a restart).
    Delivered,
    /// Cannot ever be delivered (malformed, topic refuses writes): logged and skipped.
    Dropped,
    /// The store refused for now (disk full, shutting down): try again later.
    RetryLater,
}

/// Re-puts a due parked message (schedule or timer) into its real topic and queue. With
/// `check_doubt`, first looks it up by `UNIQ_KEY` there: after a crash the message may have
/// been delivered before its progress was persisted.
pub async fn deliver(b: &Broker, r: &record::RecordView<'_>, check_doubt: bool) -> Delivery {
    let props = r.properties();
    let (Some(topic), Some(real_qid)) = (
        properties::get_property(props, REAL_TOPIC),
        properties::get_property(props, REAL_QID).and_then(|q| q.parse::<i32>().ok()),
    ) else {
        tracing::error!(
            offset = r.physical_offset(),
            "parked message lacks REAL_TOPIC/REAL_QID; dropping it"
        );
        return Delivery::Dropped;
    };
    let uniq = properties::get_property(props, UNIQ_KEY).unwrap_or("");
    if check_doubt && !uniq.is_empty() {
        let found = b
            .store
            .query_by_key(topic, uniq, 1, r.store_timestamp(), i64::MAX, true);
        if !found.is_empty() {
            tracing::info!(
                offset = r.physical_offset(),
                "parked message already delivered before restart"
            );
            return Delivery::Delivered;
        }
    }
    if let Err((code, remark)) = b.topic_for_write(topic) {
        tracing::warn!(
            topic,
            code,
            remark,
            "parked message's topic refuses writes; dropping it"
        );
        return Delivery::Dropped;
    }
    let out_props = delivered_properties(props);
    let msg = MessageInput {
        topic,
        queue_id: real_qid,
        flag: r.flag(),
        sysflag: r.sysflag(),
        born_timestamp: r.born_timestamp(),
        born_host: r.born_host(),
        reconsume_times: r.reconsume_times(),
        prepared_transaction_offset: r.prepared_transaction_offset(),
        body: r.body(),
        properties: &out_props,
    };
    match b.store.put(std::slice::from_ref(&msg)).await.status {
        PutStatus::Ok | PutStatus::FlushDiskTimeout => Delivery::Delivered,
        PutStatus::MessageIllegal(m) => {
            tracing::error!(reason = %m, "parked message cannot be stored; dropping it");
            Delivery::Dropped
        }
        other => {
            tracing::warn!(status = ?other, "re-putting a due message failed; will retry");
            Delivery::RetryLater
        }
    }
}

/// The task of one level: deliver due messages in order until shutdown.
pub async fn run_level(
    b: Arc<Broker>,
    level: i32,
    delay: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let qid = level - 1;
    let mut check_doubt = true;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let notify = b.hold.notifier(SCHEDULE_TOPIC, qid);
        let arrived = notify.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        let mut off = b.schedule.offset(level);
        let cq = b.store.consume_queue(SCHEDULE_TOPIC, qid);
        if let Some(cq) = &cq {
            off = off.max(cq.min_offset());
        }
        let entry = cq.as_ref().and_then(|cq| cq.get(off));
        let Some(e) = entry else {
            tokio::select! {
                _ = &mut arrived => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        };
        let Some(rec) = b.store.view(e.physical_offset) else {
            tracing::error!(
                level,
                offset = off,
                "scheduled message unreadable; skipping it"
            );
            let _ = b.schedule.advance(level, off + 1);
            continue;
        };
        let Ok(Entry::Record(r)) = record::decode(
            &rec,
            Check {
                crc: false,
                position: None,
            },
        ) else {
            let _ = b.schedule.advance(level, off + 1);
            continue;
        };
        let due = r.store_timestamp() + delay.as_millis() as i64;
        let now = crate::store::commit_log::now_ms();
        if now < due {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis((due - now) as u64)) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        match deliver(&b, &r, check_doubt).await {
            Delivery::Delivered | Delivery::Dropped => {
                check_doubt = false;
                if let Err(e) = b.schedule.advance(level, off + 1) {
                    tracing::error!(error = %e, "persisting schedule progress failed");
                }
            }
            Delivery::RetryLater => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_clamp() {
        let l = DelayLevels::parse("1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h")
            .unwrap();
        assert_eq!(requested_level("DELAY\u{1}3\u{2}", &l), Ok(Some(3)));
        assert_eq!(requested_level("DELAY\u{1}99\u{2}", &l), Ok(Some(18)));
        assert_eq!(requested_level("DELAY\u{1}0\u{2}", &l), Ok(None));
        assert_eq!(requested_level("", &l), Ok(None));
        assert!(requested_level("DELAY\u{1}-1\u{2}", &l).is_err());
        assert!(requested_level("DELAY\u{1}x\u{2}", &l).is_err());
    }

    #[test]
    fn park_and_deliver_properties() {
        let p = park_properties("TAGS\u{1}a\u{2}DELAY\u{1}2", "T", 3);
        assert_eq!(properties::get_property(&p, REAL_TOPIC), Some("T"));
        assert_eq!(properties::get_property(&p, REAL_QID), Some("3"));
        assert_eq!(
            properties::get_property(&p, UNIQ_KEY).map(str::len),
            Some(32)
        );
        let stored = format!("{p}__CRC32#\u{1}0123456789\u{2}");
        let d = delivered_properties(&stored);
        assert_eq!(properties::get_property(&d, "TAGS"), Some("a"));
        assert!(properties::get_property(&d, REAL_TOPIC).is_none());
        assert!(properties::get_property(&d, DELAY).is_none());
        assert!(properties::get_property(&d, CRC_PROPERTY).is_none());
        assert!(properties::get_property(&d, UNIQ_KEY).is_some());
    }
}
