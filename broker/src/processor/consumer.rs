//! Client and consumer-group requests: HEART_BEAT (34), UNREGISTER_CLIENT (35),
//! GET_CONSUMER_LIST_BY_GROUP (38), QUERY/UPDATE_CONSUMER_OFFSET (14/15), LOCK/UNLOCK_BATCH_MQ
//! (41/42) and CHECK_CLIENT_CONFIG (46).

use std::sync::Arc;

use crate::clients::ConsumerInfo;
use crate::context::Broker;
use crate::net::Connection;
use crate::protocol::headers::{
    GetConsumerListHeader, QueryConsumerOffsetHeader, UnregisterClientHeader,
    UpdateConsumerOffsetHeader,
};
use crate::protocol::heartbeat::{
    self, CheckClientConfigBody, GetConsumerListResponseBody, HeartbeatData, LockBatchRequestBody,
    LockBatchResponseBody, MessageQueue,
};
use crate::protocol::{response, RemotingCommand};
use crate::subscription::Subscription;

use super::{bad_header, ok, reply};

pub fn heartbeat(b: &Broker, conn: &Arc<Connection>, req: &RemotingCommand) -> RemotingCommand {
    let hb: HeartbeatData = match heartbeat::from_json(&req.body) {
        Ok(h) => h,
        Err(e) => {
            return reply(
                req,
                response::SYSTEM_ERROR,
                format!("bad heartbeat body: {e}"),
            )
        }
    };
    for p in &hb.producer_data_set {
        b.clients
            .register_producer(&p.group_name, &hb.client_id, conn);
    }
    for c in &hb.consumer_data_set {
        let mut subs = Vec::with_capacity(c.subscription_data_set.len());
        for s in &c.subscription_data_set {
            match Subscription::parse(
                &b.plugins,
                &s.topic,
                &s.expression_type,
                &s.sub_string,
                s.sub_version,
            ) {
                Ok(sub) => subs.push(sub),
                Err(e) => {
                    tracing::warn!(group = %c.group_name, topic = %s.topic, error = %e, "heartbeat with an unusable subscription");
                }
            }
            if s.topic.starts_with("%RETRY%") && b.topics.get(&s.topic).is_none() {
                // Every push consumer subscribes its retry topic: create it (one queue).
                match b.topics.get_or_create(&s.topic, 1) {
                    Ok(_) => b.topics_changed(),
                    Err(e) => {
                        tracing::warn!(topic = %s.topic, error = %e, "cannot create retry topic")
                    }
                }
            }
        }
        if c.subscription_data_set.iter().any(|s| {
            !s.expression_type.is_empty() && !s.expression_type.eq_ignore_ascii_case("TAG")
        }) {
            b.filter_bits.notify(); // a plugin expression may be new: start its bits now
        }
        let info = ConsumerInfo {
            consume_type: c.consume_type.name().to_string(),
            message_model: c.message_model.name().to_string(),
            consume_from_where: c.consume_from_where.name().to_string(),
        };
        if b.clients
            .register_consumer(&c.group_name, &hb.client_id, conn, req.language, info, subs)
        {
            tracing::info!(group = %c.group_name, client = %hb.client_id, "consumer joined");
            b.notify_consumer_ids_changed(&c.group_name);
        }
    }
    ok(req)
}

pub fn unregister(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let h = match UnregisterClientHeader::parse(&req.ext_fields) {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    if let Some(g) = h.producer_group {
        b.clients.unregister_producer(g, h.client_id);
    }
    if let Some(g) = h.consumer_group {
        b.locks.release_client(g, h.client_id);
        if b.clients.unregister_consumer(g, h.client_id) {
            tracing::info!(group = g, client = h.client_id, "consumer left");
            b.notify_consumer_ids_changed(g);
        }
    }
    ok(req)
}

pub fn consumer_list(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let h = match GetConsumerListHeader::parse(&req.ext_fields) {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let ids = b.clients.consumer_ids(h.consumer_group);
    if ids.is_empty() {
        return reply(
            req,
            response::SYSTEM_ERROR,
            format!("no consumer for this group, {}", h.consumer_group),
        );
    }
    ok(req).with_body(heartbeat::to_json(&GetConsumerListResponseBody {
        consumer_id_list: ids,
    }))
}

pub fn query_offset(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let h = match QueryConsumerOffsetHeader::parse(&req.ext_fields) {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let offset = match b.offsets.query(h.consumer_group, h.topic, h.queue_id) {
        Some(o) => Some(o),
        // RocketMQ's rule: a young queue (never truncated, first message still present) is
        // read from its start, so a new group consumes a fresh topic from the beginning.
        None if h.set_zero_if_not_found != Some(false)
            && b.store.min_offset(h.topic, h.queue_id) == 0
            && b.store.max_offset(h.topic, h.queue_id) > 0 =>
        {
            Some(0)
        }
        None => None,
    };
    match offset {
        Some(o) => {
            let mut r = ok(req);
            r.ext_fields.insert_display("offset", o);
            r
        }
        None => reply(
            req,
            response::QUERY_NOT_FOUND,
            "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first",
        ),
    }
}

pub fn update_offset(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let h = match UpdateConsumerOffsetHeader::parse(&req.ext_fields) {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    if h.commit_offset < 0 || b.topics.get(h.topic).is_none() {
        return reply(
            req,
            response::SYSTEM_ERROR,
            format!(
                "bad offset {} or unknown topic {}",
                h.commit_offset, h.topic
            ),
        );
    }
    b.offsets
        .commit(h.consumer_group, h.topic, h.queue_id, h.commit_offset);
    if b.replication.is_slave() {
        // Sent to the master when it is back (`replica_meta`).
        b.replication
            .note_local_commit(h.consumer_group, h.topic, h.queue_id);
    }
    ok(req)
}

fn queues(body: &LockBatchRequestBody) -> Vec<(String, i32)> {
    body.mq_set
        .iter()
        .map(|q| (q.topic.clone(), q.queue_id))
        .collect()
}

pub fn lock(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let body: LockBatchRequestBody = match heartbeat::from_json(&req.body) {
        Ok(x) => x,
        Err(e) => return reply(req, response::SYSTEM_ERROR, format!("bad lock body: {e}")),
    };
    let locked = b
        .locks
        .lock(&body.consumer_group, &body.client_id, &queues(&body));
    let lock_ok_mq_set = body
        .mq_set
        .iter()
        .filter(|q| {
            locked
                .iter()
                .any(|(t, i)| *t == q.topic && *i == q.queue_id)
        })
        .cloned()
        .collect::<Vec<MessageQueue>>();
    ok(req).with_body(heartbeat::to_json(&LockBatchResponseBody {
        lock_ok_mq_set,
    }))
}

pub fn unlock(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let body: LockBatchRequestBody = match heartbeat::from_json(&req.body) {
        Ok(x) => x,
        Err(e) => return reply(req, response::SYSTEM_ERROR, format!("bad unlock body: {e}")),
    };
    b.locks
        .unlock(&body.consumer_group, &body.client_id, &queues(&body));
    ok(req)
}

pub fn check_client_config(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let body: CheckClientConfigBody = match heartbeat::from_json(&req.body) {
        Ok(x) => x,
        Err(e) => return reply(req, response::SYSTEM_ERROR, format!("bad body: {e}")),
    };
    if let Some(s) = &body.subscription_data {
        if let Err(e) = Subscription::parse(
            &b.plugins,
            &s.topic,
            &s.expression_type,
            &s.sub_string,
            s.sub_version,
        ) {
            return reply(req, response::SUBSCRIPTION_PARSE_FAILED, e.to_string());
        }
    }
    ok(req)
}
