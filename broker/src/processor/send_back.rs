//! CONSUMER_SEND_MSG_BACK (36): a consumer failed a message. It goes to `%RETRY%<group>` with
//! a delay (level `3 + reconsumeTimes`, or the one requested), or, once `maxReconsumeTimes` is
//! reached or the requested level is negative, to `%DLQ%<group>` keeping its origin.

use std::sync::Arc;

use crate::context::Broker;
use crate::net::Connection;
use crate::protocol::headers::ConsumerSendMsgBackHeader;
use crate::protocol::properties::{
    self, DELAY, DLQ_ORIGIN_MESSAGE_ID, DLQ_ORIGIN_TOPIC, ORIGIN_MESSAGE_ID, RETRY_TOPIC,
};
use crate::protocol::{message_id, response, RemotingCommand};
use crate::schedule::{park_properties, SCHEDULE_TOPIC};
use crate::store::record::{self, Check, Entry, CRC_PROPERTY};
use crate::store::{MessageInput, PutStatus};

use super::{bad_header, ok, reply};

pub const RETRY_PREFIX: &str = "%RETRY%";
pub const DLQ_PREFIX: &str = "%DLQ%";

pub async fn send_back(
    b: &Broker,
    _conn: &Arc<Connection>,
    req: &RemotingCommand,
) -> RemotingCommand {
    let h = match ConsumerSendMsgBackHeader::parse(&req.ext_fields) {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let original = (h.offset >= 0)
        .then(|| b.store.view(h.offset as u64))
        .flatten();
    let Some(rec) = original else {
        return reply(
            req,
            response::SYSTEM_ERROR,
            format!("look message by offset failed, {}", h.offset),
        );
    };
    let Ok(Entry::Record(r)) = record::decode(
        &rec,
        Check {
            crc: false,
            position: None,
        },
    ) else {
        return reply(
            req,
            response::SYSTEM_ERROR,
            format!("no message at offset {}", h.offset),
        );
    };
    let props = r.properties();
    let origin_topic = properties::get_property(props, RETRY_TOPIC)
        .unwrap_or(r.topic())
        .to_string();
    // The first failure's id sticks: a retried copy carries it in ORIGIN_MESSAGE_ID.
    let origin_id = properties::get_property(props, ORIGIN_MESSAGE_ID)
        .or(h.origin_msg_id)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| message_id::encode(r.store_host(), r.physical_offset()));
    let reconsume = r.reconsume_times() + 1;
    let max = h
        .max_reconsume_times
        .unwrap_or(b.config.max_reconsume_times);
    let to_dlq = reconsume > max || h.delay_level < 0;
    // Rebuild the properties: drop the checksum trailer and any stale delay, keep the origin.
    let mut new_props = String::with_capacity(props.len() + 128);
    for (k, v) in properties::iter(props).flatten() {
        if k == CRC_PROPERTY || k == DELAY || k == RETRY_TOPIC {
            continue;
        }
        let _ = properties::push_pair(&mut new_props, k, v);
    }
    let _ = properties::push_pair(&mut new_props, RETRY_TOPIC, &origin_topic);
    if properties::get_property(&new_props, ORIGIN_MESSAGE_ID).is_none() {
        let _ = properties::push_pair(&mut new_props, ORIGIN_MESSAGE_ID, &origin_id);
    }
    let (topic, level) = if to_dlq {
        let _ = properties::push_pair(&mut new_props, DLQ_ORIGIN_TOPIC, &origin_topic);
        let _ = properties::push_pair(&mut new_props, DLQ_ORIGIN_MESSAGE_ID, &origin_id);
        (format!("{DLQ_PREFIX}{}", h.group), None)
    } else {
        let level = if h.delay_level > 0 {
            h.delay_level
        } else {
            3 + r.reconsume_times()
        };
        (
            format!("{RETRY_PREFIX}{}", h.group),
            Some(level.min(b.delay_levels.count())),
        )
    };
    if let Err((code, remark)) = b.topic_for_write(&topic) {
        return reply(req, code, remark);
    }
    let parked_props;
    let mut msg = MessageInput {
        topic: &topic,
        queue_id: 0,
        flag: r.flag(),
        sysflag: r.sysflag(),
        born_timestamp: r.born_timestamp(),
        born_host: r.born_host(),
        reconsume_times: reconsume,
        prepared_transaction_offset: 0,
        body: r.body(),
        properties: &new_props,
    };
    if let Some(level) = level {
        parked_props = park_properties(&new_props, &topic, 0);
        msg.topic = SCHEDULE_TOPIC;
        msg.queue_id = level - 1;
        msg.properties = &parked_props;
    } else {
        tracing::info!(group = h.group, topic = %origin_topic, id = %origin_id, reconsume, "message moved to the dead-letter queue");
    }
    let put = b.store.put(std::slice::from_ref(&msg)).await;
    match put.status {
        PutStatus::Ok => ok(req),
        PutStatus::FlushDiskTimeout => {
            reply(req, response::FLUSH_DISK_TIMEOUT, "stored, flush timed out")
        }
        PutStatus::MessageIllegal(m) => reply(req, response::MESSAGE_ILLEGAL, m),
        PutStatus::ServiceUnavailable(m) => reply(req, response::SERVICE_NOT_AVAILABLE, m),
        PutStatus::DiskFull => reply(req, response::SERVICE_NOT_AVAILABLE, "disk full"),
    }
}
