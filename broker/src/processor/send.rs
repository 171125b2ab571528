//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320) and the reply variants:
//! validate, pick the queue, append (one store call per request, batches included), answer
//! with the offset message ids.

use std::sync::Arc;

use crate::broker::Broker;
use crate::net::Connection;
use crate::protocol::headers::{SendMessageHeader, SendMessageResponseHeader};
use crate::protocol::{batch, message_id, response, RemotingCommand};
use crate::store::record::{SYSFLAG_TXN_MASK, SYSFLAG_TXN_PREPARED};
use crate::store::{MessageInput, PutStatus};

use super::{bad_header, reply};

pub async fn send(b: &Broker, conn: &Arc<Connection>, req: &RemotingCommand) -> RemotingCommand {
    let h = match SendMessageHeader::parse_for_code(req.code, &req.ext_fields) {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    if is_system_topic(h.topic) {
        return reply(
            req,
            response::NO_PERMISSION,
            format!(
                "the topic[{}] is a system topic; clients cannot send to it",
                h.topic
            ),
        );
    }
    let topic = match b.topic_for_write(h.topic) {
        Ok(t) => t,
        Err((code, remark)) => return reply(req, code, remark),
    };
    let prepared = h.sys_flag & SYSFLAG_TXN_MASK == SYSFLAG_TXN_PREPARED;
    if prepared && h.batch {
        return reply(
            req,
            response::MESSAGE_ILLEGAL,
            "transactional messages cannot be sent in a batch",
        );
    }
    let queues = topic.write_queue_nums as i32;
    let queue_id = if h.queue_id < 0 {
        (rand_u32() % queues as u32) as i32
    } else if h.queue_id >= queues {
        return reply(
            req,
            response::SYSTEM_ERROR,
            format!(
                "request queueId[{}] is illegal, Topic: {}, topicConfig.writeQueueNums: {queues}",
                h.queue_id, h.topic
            ),
        );
    } else {
        h.queue_id
    };
    let born_host = conn.peer_addr();
    let base = MessageInput {
        topic: h.topic,
        queue_id,
        flag: h.flag,
        sysflag: h.sys_flag,
        born_timestamp: h.born_timestamp,
        born_host,
        reconsume_times: h.reconsume_times,
        prepared_transaction_offset: 0,
        body: &req.body,
        properties: h.properties,
    };
    // The router bound to the topic, if any, decides where each message goes (before the
    // delay, timer and transaction steps, which then park the routed destination).
    let router = b.plugins.router_for(h.topic);
    let mut plan: Option<crate::routing::Plan> = None;
    let result = if h.batch {
        let entries = match batch::decode(&req.body) {
            Ok(e) if !e.is_empty() => e,
            Ok(_) => return reply(req, response::MESSAGE_ILLEGAL, "empty batch"),
            Err(e) => {
                return reply(
                    req,
                    response::MESSAGE_ILLEGAL,
                    format!("bad batch body: {e}"),
                )
            }
        };
        let mut msgs = Vec::with_capacity(entries.len());
        for e in &entries {
            let props = match e.properties_str() {
                Ok(p) => p,
                Err(e) => {
                    return reply(
                        req,
                        response::MESSAGE_ILLEGAL,
                        format!("bad batch properties: {e}"),
                    )
                }
            };
            if DELIVERY_TIME_PROPERTIES
                .iter()
                .any(|k| crate::protocol::properties::get_property(props, k).is_some())
            {
                return reply(
                    req,
                    response::MESSAGE_ILLEGAL,
                    "delayed and timed messages cannot be sent in a batch",
                );
            }
            msgs.push(MessageInput {
                flag: e.flag,
                body: e.body,
                properties: props,
                ..base
            });
        }
        if let Some(r) = &router {
            match crate::routing::route(b, r, &topic, &msgs) {
                Ok(p) => plan = p,
                Err((code, remark)) => return reply(req, code, remark),
            }
        }
        match &plan {
            Some(p) => b.store.put_dispatched(&p.apply(&msgs), &p.extra).await,
            None => b.store.put(&msgs).await,
        }
    } else {
        let mut base = base;
        if let Some(r) = &router {
            match crate::routing::route(b, r, &topic, std::slice::from_ref(&base)) {
                Ok(p) => plan = p,
                Err((code, remark)) => return reply(req, code, remark),
            }
        }
        let mut extra: &[Vec<crate::store::multi_dispatch::DispatchTarget>] = &[];
        if let Some(p) = &plan {
            base.topic = p.topic(0);
            base.queue_id = p.queue(0);
            extra = &p.extra;
        }
        let fans_out = plan.as_ref().is_some_and(|p| p.fans_out());
        let not_immediate = |what: &str| {
            reply(
                req,
                response::MESSAGE_ILLEGAL,
                format!(
                    "router {}: extra dispatch targets are not supported for {what} messages",
                    router.as_ref().map_or("", |r| r.name.as_str())
                ),
            )
        };
        if prepared {
            if fans_out {
                return not_immediate("transactional");
            }
            // Half message: stored invisibly until END_TRANSACTION or a check resolves it.
            let group = crate::protocol::properties::get_property(h.properties, "PGROUP")
                .unwrap_or(h.producer_group);
            if !group.is_empty() {
                b.clients.note_producer_connection(group, conn);
            }
            crate::transaction::half_put(b, &base, h.producer_group).await
        } else {
            match crate::schedule::requested_level(h.properties, &b.delay_levels) {
                Err(e) => return reply(req, response::MESSAGE_ILLEGAL, e.to_string()),
                Ok(Some(_)) if fans_out => return not_immediate("delayed"),
                Ok(Some(level)) => {
                    // Delayed: parked in the schedule topic until due (see `schedule`).
                    let props =
                        crate::schedule::park_properties(h.properties, base.topic, base.queue_id);
                    let parked = MessageInput {
                        topic: crate::schedule::SCHEDULE_TOPIC,
                        queue_id: level - 1,
                        properties: &props,
                        ..base
                    };
                    b.store.put(std::slice::from_ref(&parked)).await
                }
                Ok(None) => {
                    let max = std::time::Duration::from_secs(b.config.timer_max_delay_secs);
                    let now = crate::store::commit_log::now_ms();
                    match crate::timer::requested_delivery(h.properties, now, max) {
                        Err(e) => return reply(req, response::MESSAGE_ILLEGAL, e.to_string()),
                        Ok(Some(_)) if fans_out => return not_immediate("timed"),
                        Ok(Some(at)) => {
                            // Timed: parked in the timer topic until `at` (see `timer`).
                            let props = crate::timer::timer_properties(
                                h.properties,
                                base.topic,
                                base.queue_id,
                                at,
                            );
                            let parked = MessageInput {
                                topic: crate::timer::TIMER_TOPIC,
                                queue_id: 0,
                                properties: &props,
                                ..base
                            };
                            b.store.put(std::slice::from_ref(&parked)).await
                        }
                        Ok(None) => {
                            b.store
                                .put_dispatched(std::slice::from_ref(&base), extra)
                                .await
                        }
                    }
                }
            }
        }
    };
    let queue_id = plan.as_ref().map_or(queue_id, |p| p.queue(0));
    let code = match &result.status {
        PutStatus::Ok => response::SUCCESS,
        PutStatus::FlushDiskTimeout => response::FLUSH_DISK_TIMEOUT,
        PutStatus::MessageIllegal(m) => return reply(req, response::MESSAGE_ILLEGAL, m.clone()),
        PutStatus::ServiceUnavailable(m) => {
            return reply(req, response::SERVICE_NOT_AVAILABLE, m.clone())
        }
        PutStatus::DiskFull => {
            return reply(
                req,
                response::SERVICE_NOT_AVAILABLE,
                "the disk of the broker is full: writes are refused until space is freed",
            )
        }
    };
    let host = b.store_host;
    let mut ids = String::with_capacity(result.appended.len() * 33);
    for (i, a) in result.appended.iter().enumerate() {
        if i > 0 {
            ids.push(',');
        }
        message_id::encode_into(&mut ids, host, a.physical_offset as i64);
    }
    let first = result
        .appended
        .first()
        .map(|a| a.queue_offset as i64)
        .unwrap_or(0);
    let mut resp = RemotingCommand::response_to(req, code, None);
    SendMessageResponseHeader {
        msg_id: &ids,
        queue_id,
        queue_offset: first,
        transaction_id: None,
        region: Some("DefaultRegion"),
        trace_on: Some(true),
    }
    .write_to(&mut resp.ext_fields);
    resp
}

/// A cheap per-thread xorshift for spreading sends without a queue id.
fn rand_u32() -> u32 {
    use std::cell::Cell;
    thread_local!(static S: Cell<u32> = Cell::new(0x9E37_79B9 ^ std::process::id()));
    S.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        s.set(x);
        x
    })
}

/// Properties that ask for a later delivery (not honoured inside batches, as in RocketMQ).
const DELIVERY_TIME_PROPERTIES: [&str; 5] = [
    "DELAY",
    "TIMER_DELIVER_MS",
    "TIMER_DELAY_SEC",
    "TIMER_DELAY_MS",
    "__STARTDELIVERTIME",
];

/// Topics the broker uses internally; clients may not write them directly.
pub(crate) fn is_system_topic(topic: &str) -> bool {
    topic == crate::schedule::SCHEDULE_TOPIC
        || topic == crate::namesrv::route_table::AUTO_CREATE_TOPIC
        || topic.starts_with("rmq_sys_")
        || topic.starts_with("RMQ_SYS_")
}
