//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320) and the reply variants,
//! as named steps: decode the header ([`send`]) -> check the topic ([`writable_topic`]) -> pick
//! the queue ([`pick_queue`]) -> decode a batch ([`decode_batch`]) -> route ([`route`], the
//! router plugin bound to the topic) -> park or put ([`put_one`]: half message, delay level,
//! timer, or the store; a batch is one store call) -> reply with the offset message ids
//! ([`respond`]).

use std::sync::Arc;

use crate::context::replication::ReplicaWait;
use crate::context::Broker;
use crate::meta::TopicConfig;
use crate::net::Connection;
use crate::plugin::LoadedRouter;
use crate::protocol::headers::{SendMessageHeader, SendMessageResponseHeader};
use crate::protocol::{batch, message_id, response, RemotingCommand};
use crate::routing::Plan;
use crate::store::multi_dispatch::DispatchTarget;
use crate::store::record::{SYSFLAG_TXN_MASK, SYSFLAG_TXN_PREPARED};
use crate::store::{MessageInput, PutResult, PutStatus};

use super::{bad_header, reply};

/// Why a send is refused: the response code and its remark.
type Refusal = (i32, String);

fn refuse(code: i32, remark: impl Into<String>) -> Refusal {
    (code, remark.into())
}

/// The send path, step by step: decode the header, check the topic, pick the queue, then
/// route, park (delay, timer, transaction) or put, and reply with the stored offsets.
pub async fn send(b: &Broker, conn: &Arc<Connection>, req: &RemotingCommand) -> RemotingCommand {
    // Counted while it is processed: the "size of queue" flow control reports.
    let _in_progress = b.flow.send_started();
    let h = match SendMessageHeader::parse_for_code(req.code, &req.ext_fields) {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    match store_request(b, conn, req, &h).await {
        Ok((result, queue_id)) => match replicated(b, &result).await {
            None => respond(b, req, &result, queue_id),
            Some((code, remark)) => {
                let mut resp = respond(b, req, &result, queue_id);
                resp.code = code;
                resp.remark = Some(remark);
                resp
            }
        },
        Err((code, remark)) => reply(req, code, remark),
    }
}

/// Why a slave takes no sends, naming its master.
pub(crate) fn slave_refusal(b: &Broker) -> String {
    let master = b
        .replication
        .master()
        .map(|m| m.addr.unwrap_or(m.ha_addr))
        .unwrap_or_else(|| "unknown".into());
    format!(
        "broker {} id {} is a slave and takes no writes; send to its master (id 0, {master})",
        b.config.broker_name, b.config.broker_id
    )
}

/// A `sync_master` waits until enough in-sync slaves hold what it stored: `None` when they
/// do (or nothing waits), else the code and remark that replace SEND_OK (stored here,
/// replication unknown).
async fn replicated(b: &Broker, result: &PutResult) -> Option<(i32, String)> {
    if !b.replication.waits_for_slaves() || result.status != PutStatus::Ok {
        return None;
    }
    let end = result
        .appended
        .last()
        .map(|a| a.physical_offset + a.size as u64)?;
    match b
        .replication
        .wait_replicated(end, b.store.log_max_offset())
        .await
    {
        ReplicaWait::Replicated => None,
        ReplicaWait::NotAvailable => Some((
            response::SLAVE_NOT_AVAILABLE,
            format!(
                "stored on the master; fewer than {} in-sync replicas: slave not available",
                b.config.in_sync_replicas
            ),
        )),
        ReplicaWait::TimedOut => Some((
            response::FLUSH_SLAVE_TIMEOUT,
            format!(
                "stored on the master; slaves did not confirm within {} ms",
                b.config.slave_timeout_ms
            ),
        )),
    }
}

/// Decodes, routes and stores the request's messages; the result and the queue of the first.
async fn store_request(
    b: &Broker,
    conn: &Arc<Connection>,
    req: &RemotingCommand,
    h: &SendMessageHeader<'_>,
) -> Result<(PutResult, i32), Refusal> {
    let topic = writable_topic(b, h)?;
    let queue_id = pick_queue(h, &topic)?;
    let base = MessageInput {
        topic: h.topic,
        queue_id,
        flag: h.flag,
        sysflag: h.sys_flag,
        born_timestamp: h.born_timestamp,
        born_host: conn.peer_addr(),
        reconsume_times: h.reconsume_times,
        prepared_transaction_offset: 0,
        body: &req.body,
        properties: h.properties,
    };
    // The router bound to the topic, if any, decides where each message goes (before the
    // delay, timer and transaction steps, which then park the routed destination).
    let router = b.plugins.router_for(h.topic);
    if h.batch {
        let msgs = decode_batch(&req.body, &base)?;
        b.flow
            .admit_send(
                &b.store,
                h.topic,
                msgs.len(),
                req.body.len(),
                req.received_at,
            )
            .await?;
        let plan = route(b, router.as_ref(), &topic, &msgs)?;
        let result = match &plan {
            Some(p) => b.store.put_dispatched(&p.apply(&msgs), &p.extra).await,
            None => b.store.put(&msgs).await,
        };
        Ok((result, plan.as_ref().map_or(queue_id, |p| p.queue(0))))
    } else {
        b.flow
            .admit_send(&b.store, h.topic, 1, req.body.len(), req.received_at)
            .await?;
        let plan = route(b, router.as_ref(), &topic, std::slice::from_ref(&base))?;
        let result = put_one(b, conn, h, base, plan.as_ref(), router.as_deref()).await?;
        Ok((result, plan.as_ref().map_or(queue_id, |p| p.queue(0))))
    }
}

/// The topic, if clients may write it (auto-created when allowed).
fn writable_topic(b: &Broker, h: &SendMessageHeader<'_>) -> Result<Arc<TopicConfig>, Refusal> {
    if crate::context::is_system_topic(h.topic) {
        return Err(refuse(
            response::NO_PERMISSION,
            format!(
                "the topic[{}] is a system topic; clients cannot send to it",
                h.topic
            ),
        ));
    }
    let topic = b.topic_for_write(h.topic)?;
    if is_prepared(h) && h.batch {
        return Err(refuse(
            response::MESSAGE_ILLEGAL,
            "transactional messages cannot be sent in a batch",
        ));
    }
    Ok(topic)
}

fn is_prepared(h: &SendMessageHeader<'_>) -> bool {
    h.sys_flag & SYSFLAG_TXN_MASK == SYSFLAG_TXN_PREPARED
}

/// The queue the client asked for, or a random one (uniform over the write queues).
fn pick_queue(h: &SendMessageHeader<'_>, topic: &TopicConfig) -> Result<i32, Refusal> {
    let queues = topic.write_queue_nums as i32;
    if h.queue_id < 0 {
        Ok(rand::random_range(0..queues.max(1)))
    } else if h.queue_id >= queues {
        Err(refuse(
            response::SYSTEM_ERROR,
            format!(
                "request queueId[{}] is illegal, Topic: {}, topicConfig.writeQueueNums: {queues}",
                h.queue_id, h.topic
            ),
        ))
    } else {
        Ok(h.queue_id)
    }
}

/// The messages of a batch body, each with the request's topic and queue.
fn decode_batch<'a>(
    body: &'a [u8],
    base: &MessageInput<'a>,
) -> Result<Vec<MessageInput<'a>>, Refusal> {
    let entries = match batch::decode(body) {
        Ok(e) if !e.is_empty() => e,
        Ok(_) => return Err(refuse(response::MESSAGE_ILLEGAL, "empty batch")),
        Err(e) => {
            return Err(refuse(
                response::MESSAGE_ILLEGAL,
                format!("bad batch body: {e}"),
            ))
        }
    };
    let mut msgs = Vec::with_capacity(entries.len());
    for e in &entries {
        let props = e.properties_str().map_err(|e| {
            refuse(
                response::MESSAGE_ILLEGAL,
                format!("bad batch properties: {e}"),
            )
        })?;
        if DELIVERY_TIME_PROPERTIES
            .iter()
            .any(|k| crate::protocol::properties::get_property(props, k).is_some())
        {
            return Err(refuse(
                response::MESSAGE_ILLEGAL,
                "delayed and timed messages cannot be sent in a batch",
            ));
        }
        msgs.push(MessageInput {
            flag: e.flag,
            body: e.body,
            properties: props,
            ..*base
        });
    }
    Ok(msgs)
}

/// The router's plan for the messages, when a router is bound to the topic.
fn route(
    b: &Broker,
    router: Option<&Arc<LoadedRouter>>,
    topic: &TopicConfig,
    msgs: &[MessageInput<'_>],
) -> Result<Option<Plan>, Refusal> {
    match router {
        Some(r) => crate::routing::route(b, r, topic, msgs),
        None => Ok(None),
    }
}

/// Stores one message where its plan puts it: parked as a half message (transaction), in the
/// schedule topic (delay level) or the timer topic (delivery time), or put at once.
async fn put_one(
    b: &Broker,
    conn: &Arc<Connection>,
    h: &SendMessageHeader<'_>,
    mut msg: MessageInput<'_>,
    plan: Option<&Plan>,
    router: Option<&LoadedRouter>,
) -> Result<PutResult, Refusal> {
    let mut extra: &[Vec<DispatchTarget>] = &[];
    if let Some(p) = plan {
        msg.topic = p.topic(0);
        msg.queue_id = p.queue(0);
        extra = &p.extra;
    }
    let fans_out = plan.is_some_and(|p| p.fans_out());
    let not_immediate = |what: &str| {
        refuse(
            response::MESSAGE_ILLEGAL,
            format!(
                "router {}: extra dispatch targets are not supported for {what} messages",
                router.map_or("", |r| r.name.as_str())
            ),
        )
    };
    if is_prepared(h) {
        if fans_out {
            return Err(not_immediate("transactional"));
        }
        // Half message: stored invisibly until END_TRANSACTION or a check resolves it.
        let group = crate::protocol::properties::get_property(h.properties, "PGROUP")
            .unwrap_or(h.producer_group);
        if !group.is_empty() {
            b.clients.note_producer_connection(group, conn);
        }
        return Ok(crate::transaction::half_put(b, &msg, h.producer_group).await);
    }
    let level = crate::schedule::requested_level(h.properties, &b.delay_levels)
        .map_err(|e| refuse(response::MESSAGE_ILLEGAL, e.to_string()))?;
    if let Some(level) = level {
        if fans_out {
            return Err(not_immediate("delayed"));
        }
        // Delayed: parked in the schedule topic until due (see `schedule`).
        let props = crate::schedule::park_properties(h.properties, msg.topic, msg.queue_id);
        let parked = MessageInput {
            topic: crate::schedule::SCHEDULE_TOPIC,
            queue_id: level - 1,
            properties: &props,
            ..msg
        };
        return Ok(b.store.put(std::slice::from_ref(&parked)).await);
    }
    let max = std::time::Duration::from_secs(b.config.timer_max_delay_secs);
    let now = crate::store::commit_log::now_ms();
    let at = crate::timer::requested_delivery(h.properties, now, max)
        .map_err(|e| refuse(response::MESSAGE_ILLEGAL, e.to_string()))?;
    if let Some(at) = at {
        if fans_out {
            return Err(not_immediate("timed"));
        }
        // Timed: parked in the timer topic until `at` (see `timer`).
        let props = crate::timer::timer_properties(h.properties, msg.topic, msg.queue_id, at);
        let parked = MessageInput {
            topic: crate::timer::TIMER_TOPIC,
            queue_id: 0,
            properties: &props,
            ..msg
        };
        return Ok(b.store.put(std::slice::from_ref(&parked)).await);
    }
    Ok(b.store
        .put_dispatched(std::slice::from_ref(&msg), extra)
        .await)
}

/// The reply: SEND_OK (or FLUSH_DISK_TIMEOUT) with the offset message ids, or the refusal.
fn respond(
    b: &Broker,
    req: &RemotingCommand,
    result: &PutResult,
    queue_id: i32,
) -> RemotingCommand {
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

/// Properties that ask for a later delivery (not honoured inside batches, as in RocketMQ).
const DELIVERY_TIME_PROPERTIES: [&str; 5] = [
    "DELAY",
    "TIMER_DELIVER_MS",
    "TIMER_DELAY_SEC",
    "TIMER_DELAY_MS",
    "__STARTDELIVERTIME",
];
