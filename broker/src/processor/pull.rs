//! PULL_MESSAGE (11): filter by the pull's own subscription (sysFlag 0x4) or else the one the
//! group registered by heartbeat, read matching records straight from the log into the reply,
//! and hold the request (long polling) while nothing is there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::context::Broker;
use crate::filtered_read::ReadLimits;
use crate::protocol::headers::{pull_sys_flag, PullMessageHeader, PullMessageResponseHeader};
use crate::protocol::{response, RemotingCommand};
use crate::store::{GetResult, GetStatus};
use crate::subscription::{Subscription, SubscriptionError};

use super::{bad_header, reply};

/// Reply body of a pull that does not say how many bytes it wants (RocketMQ's
/// `maxTransferBytesOnMessageInMemory`), within `pull_max_bytes`.
const DEFAULT_MAX_BYTES: usize = 256 * 1024;

pub async fn pull(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let h = match PullMessageHeader::parse(&req.ext_fields) {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let Some(topic) = b.topics.get(h.topic) else {
        return reply(
            req,
            response::TOPIC_NOT_EXIST,
            format!("topic[{}] not exist, apply first please!", h.topic),
        );
    };
    if !topic.readable() {
        return reply(
            req,
            response::NO_PERMISSION,
            format!("the topic[{}] pulling message is forbidden", h.topic),
        );
    }
    if h.queue_id < 0 || h.queue_id >= topic.read_queue_nums as i32 {
        return reply(
            req,
            response::SYSTEM_ERROR,
            format!(
                "queueId[{}] is illegal, topic:[{}] topicConfig.readQueueNums:[{}]",
                h.queue_id, h.topic, topic.read_queue_nums
            ),
        );
    }
    let sub: Arc<Subscription> = if h.has_flag(pull_sys_flag::SUBSCRIPTION) {
        let expr = h.subscription.unwrap_or("*");
        match Subscription::parse(
            &b.plugins,
            h.topic,
            h.expression_type.unwrap_or(""),
            expr,
            h.sub_version,
        ) {
            Ok(s) => Arc::new(s),
            Err(e) => return parse_failed(req, e),
        }
    } else {
        match b.clients.subscription(h.consumer_group, h.topic) {
            Some(s) => s,
            None => {
                return reply(
                    req,
                    response::SUBSCRIPTION_NOT_EXIST,
                    format!(
                        "the consumer's subscription not exist, group: {} topic: {}",
                        h.consumer_group, h.topic
                    ),
                )
            }
        }
    };
    if h.has_flag(pull_sys_flag::COMMIT_OFFSET) && h.commit_offset >= 0 {
        b.offsets
            .commit(h.consumer_group, h.topic, h.queue_id, h.commit_offset);
        if b.replication.is_slave() {
            // Sent to the master when it is back (`replica_meta`).
            b.replication
                .note_local_commit(h.consumer_group, h.topic, h.queue_id);
        }
    }
    // Caps per pull (`pull_max_msgs`, `pull_max_bytes`), whatever the client asks.
    let max_msgs = (h.max_msg_nums.max(1) as usize).min(b.config.pull_max_msgs);
    let max_bytes = h
        .max_msg_bytes
        .filter(|&m| m > 0)
        .map(|m| m as usize)
        .unwrap_or(DEFAULT_MAX_BYTES)
        .min(b.config.pull_max_bytes);
    // The group's quota may allow fewer messages now, or none: a long poll then waits for the
    // group's tokens, up to half its hold (the rest is for data, so the client's timeout is
    // kept); past that (at once for a pull not held) the pull finds nothing at its own offset
    // and the client pulls again. Never an error that makes a client skip data.
    let (max_msgs, max_bytes) = {
        let asked = (max_msgs, max_bytes);
        let held_for = if h.has_flag(pull_sys_flag::SUSPEND) {
            (h.suspend_timeout_millis.max(0) as u64).min(b.config.max_long_poll_ms)
        } else {
            0
        };
        let until = Instant::now() + Duration::from_millis(held_for / 2);
        let mut counted = false;
        loop {
            let caps = b.flow.pull_caps(h.consumer_group, max_msgs, max_bytes);
            if caps != asked && !counted {
                counted = true;
                let (t, g) = (Some(h.topic), Some(h.consumer_group));
                b.flow
                    .rejections
                    .count(crate::flow::Reason::GroupQuota, t, g);
            }
            if caps.0 > 0 && caps.1 > 0 {
                break caps;
            }
            let ready = Instant::now() + b.flow.quotas.group_ready_in(h.consumer_group);
            tokio::time::sleep_until(ready.min(until).into()).await;
            if ready > until {
                let remark = format!("[GROUP_QUOTA]group {} over its quota", h.consumer_group);
                let mut resp = reply(req, response::PULL_NOT_FOUND, remark);
                PullMessageResponseHeader {
                    suggest_which_broker_id: 0,
                    next_begin_offset: h.queue_offset.max(0),
                    min_offset: b.store.min_offset(h.topic, h.queue_id) as i64,
                    max_offset: b.store.max_offset(h.topic, h.queue_id) as i64,
                }
                .write_to(&mut resp.ext_fields);
                return resp;
            }
        }
    };
    let offset = h.queue_offset.max(0) as u64;
    let suspend = h.has_flag(pull_sys_flag::SUSPEND) && h.suspend_timeout_millis > 0;
    let deadline = Instant::now()
        + Duration::from_millis(
            (h.suspend_timeout_millis.max(0) as u64).min(b.config.max_long_poll_ms),
        );
    let mut held = None;
    let mut held_refused = false;
    loop {
        // Register interest before reading, so an arrival in between is not lost.
        let notify = suspend.then(|| b.hold.notifier(h.topic, h.queue_id));
        let waiting = notify.as_ref().map(|n| n.notified());
        tokio::pin!(waiting);
        if let Some(w) = waiting.as_mut().as_pin_mut() {
            w.enable();
        }
        let got = match crate::filtered_read::read(
            &b.store,
            &b.plugins,
            &b.filter_bits,
            &sub,
            h.queue_id,
            offset,
            ReadLimits {
                max_msgs,
                max_bytes,
            },
        ) {
            Ok(g) => g,
            Err(e) => return parse_failed(req, e),
        };
        let (code, next) = status_code(&got, offset);
        if code == response::SUCCESS {
            let bytes = got.messages.iter().map(|m| m.bytes.len()).sum();
            b.flow.pulled(h.consumer_group, got.messages.len(), bytes);
        }
        // Past `max_held_pulls` a pull is answered at once rather than held.
        if held.is_none() && code == response::PULL_NOT_FOUND && suspend {
            held = b.flow.hold_pull();
            held_refused = held.is_none();
        }
        if code != response::PULL_NOT_FOUND
            || !suspend
            || held_refused
            || Instant::now() >= deadline
        {
            let suggest = suggest_broker(b, &got);
            return respond(req, code, next, suggest, got);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if let Some(w) = waiting.as_mut().as_pin_mut() {
            let _ = tokio::time::timeout(remaining, w).await;
        }
    }
}

fn parse_failed(req: &RemotingCommand, e: SubscriptionError) -> RemotingCommand {
    reply(
        req,
        response::SUBSCRIPTION_PARSE_FAILED,
        format!("parse the consumer's subscription failed: {e}"),
    )
}

/// RocketMQ's mapping of a read's outcome to a pull response code and next offset.
fn status_code(got: &GetResult, offset: u64) -> (i32, u64) {
    match got.status {
        GetStatus::Found => (response::SUCCESS, got.next_offset),
        GetStatus::NoMatchedMessage => (response::PULL_RETRY_IMMEDIATELY, got.next_offset),
        GetStatus::NoMatchedLogicQueue | GetStatus::NoMessageInQueue => {
            if offset != 0 {
                (response::PULL_OFFSET_MOVED, got.next_offset)
            } else {
                (response::PULL_NOT_FOUND, 0)
            }
        }
        GetStatus::OffsetFoundNull | GetStatus::OffsetOverflowOne => {
            (response::PULL_NOT_FOUND, got.next_offset)
        }
        GetStatus::OffsetOverflowBadly | GetStatus::OffsetTooSmall => {
            (response::PULL_OFFSET_MOVED, got.next_offset)
        }
    }
}

/// Which broker the consumer should pull from next (RocketMQ's `suggestWhichBrokerId`): with
/// `slave_read_enable`, a master sends a consumer whose messages are far behind the log's end
/// (more than [`SLAVE_READ_LAG_RATIO`] of memory, so no longer in the page cache) to slave 1;
/// otherwise (and always on a slave without it) the master, id 0. A client whose master is
/// gone keeps reading from the slave whatever is suggested.
fn suggest_broker(b: &Broker, got: &GetResult) -> i64 {
    if !b.config.slave_read_enable {
        return 0;
    }
    let Some(last) = got.messages.last() else {
        return 0;
    };
    let check = crate::store::record::Check {
        crc: false,
        position: None,
    };
    let at = crate::store::record::decode(&last.bytes, check)
        .ok()
        .and_then(|e| match e {
            crate::store::record::Entry::Record(r) => Some(r.physical_offset().max(0) as u64),
            crate::store::record::Entry::Blank => None,
        })
        .unwrap_or(0);
    let behind = b.store.log_max_offset().saturating_sub(at);
    suggest_for_lag(
        behind,
        memory_bytes(),
        b.replication.is_slave(),
        b.config.broker_id,
    )
}

/// RocketMQ's `accessMessageInMemoryMaxRatio`: messages further behind than this share of
/// memory are likely read from disk.
const SLAVE_READ_LAG_RATIO: f64 = 0.40;

fn suggest_for_lag(behind: u64, memory: u64, on_slave: bool, own_id: i64) -> i64 {
    let far = behind as f64 > memory as f64 * SLAVE_READ_LAG_RATIO;
    match (on_slave, far) {
        (false, true) => 1,
        (false, false) => 0,
        // A slave keeps a lagging consumer; one that caught up goes back to the master.
        (true, true) => own_id,
        (true, false) => 0,
    }
}

/// Physical memory (`/proc/meminfo`), read once.
fn memory_bytes() -> u64 {
    static MEM: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MEM.get_or_init(|| {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .map_or(8 << 30, |kb| kb * 1024)
    })
}

fn respond(
    req: &RemotingCommand,
    code: i32,
    next: u64,
    suggest: i64,
    got: GetResult,
) -> RemotingCommand {
    let mut resp = RemotingCommand::response_to(req, code, None);
    PullMessageResponseHeader {
        suggest_which_broker_id: suggest,
        next_begin_offset: next as i64,
        min_offset: got.min_offset as i64,
        max_offset: got.max_offset as i64,
    }
    .write_to(&mut resp.ext_fields);
    if code == response::SUCCESS {
        let total: usize = got.messages.iter().map(|m| m.bytes.len()).sum();
        if got.messages.len() == 1 {
            // One record: hand the mapped bytes to the writer without copying.
            if let Some(m) = got.messages.into_iter().next() {
                resp.body = m.bytes.into_bytes();
            }
        } else {
            let mut body = BytesMut::with_capacity(total);
            for m in &got.messages {
                body.extend_from_slice(&m.bytes);
            }
            resp.body = body.freeze();
        }
    }
    resp
}

#[cfg(test)]
mod suggest_tests {
    use super::suggest_for_lag;

    #[test]
    fn lagging_consumers_go_to_the_slave_and_back() {
        let mem = 1000;
        assert_eq!(suggest_for_lag(100, mem, false, 0), 0);
        assert_eq!(suggest_for_lag(401, mem, false, 0), 1);
        assert_eq!(suggest_for_lag(401, mem, true, 2), 2);
        assert_eq!(suggest_for_lag(10, mem, true, 2), 0);
    }
}
