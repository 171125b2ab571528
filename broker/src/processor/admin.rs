//! Topic administration: UPDATE_AND_CREATE_TOPIC (17), DELETE_TOPIC_IN_BROKER (215),
//! GET_ALL_TOPIC_CONFIG (21), INVOKE_BROKER_TO_RESET_OFFSET (222).

use crate::context::Broker;
use crate::meta::TopicConfig;
use crate::protocol::headers::CreateTopicHeader;
use crate::protocol::{response, RemotingCommand};

use super::{bad_header, ok, reply};

/// INVOKE_BROKER_TO_RESET_OFFSET (222): rewinds (or forwards) a group's committed offsets on
/// every queue of a topic, to the first message stored at or after `timestamp` (ms; -1 = the
/// end), or to `offset` when given. Live consumers of the group are told with
/// RESET_CONSUMER_CLIENT_OFFSET (220), so they restart from there instead of overwriting the
/// committed offsets with their own.
pub fn reset_offset(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let e = &req.ext_fields;
    let (Some(topic), Some(group)) = (e.get("topic"), e.get("group")) else {
        return bad_header(req, "topic and group are required");
    };
    let timestamp = match e.get_i64("timestamp") {
        Ok(t) => t,
        Err(err) => return bad_header(req, err),
    };
    let offset = match e.get_i64("offset") {
        Ok(o) => o,
        Err(err) => return bad_header(req, err),
    };
    if timestamp.is_none() && offset.is_none() {
        return bad_header(req, "timestamp or offset is required");
    }
    let Some(t) = b.topics.get(topic) else {
        return reply(
            req,
            response::TOPIC_NOT_EXIST,
            format!("topic[{topic}] not exist"),
        );
    };
    let mut table = serde_json::Map::new();
    for q in 0..t.read_queue_nums as i32 {
        let (min, max) = (b.store.min_offset(topic, q), b.store.max_offset(topic, q));
        let to = match (offset, timestamp) {
            (Some(o), _) => (o.max(0) as u64).clamp(min, max),
            (None, Some(-1)) => max,
            (None, Some(ts)) => b
                .store
                .search_offset(topic, q, ts, crate::store::Boundary::Lower),
            (None, None) => max,
        };
        b.offsets.commit(group, topic, q, to as i64);
        table.insert(q.to_string(), serde_json::Value::from(to));
    }
    if let Err(e) = b.offsets.persist_if_dirty() {
        return reply(req, response::SYSTEM_ERROR, e.to_string());
    }
    push_reset(b, group, topic, timestamp.unwrap_or(0), &table);
    tracing::info!(group, topic, ?timestamp, ?offset, "consumer offsets reset");
    ok(req).with_body(serde_json::Value::Object(table).to_string().into_bytes())
}

pub fn create_topic(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let h = match CreateTopicHeader::parse(&req.ext_fields) {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    if !(1..=1024).contains(&h.read_queue_nums) || !(1..=1024).contains(&h.write_queue_nums) {
        return reply(
            req,
            response::INVALID_PARAMETER,
            "queue counts must be within 1..=1024",
        );
    }
    let cfg = TopicConfig {
        topic_name: h.topic.to_string(),
        read_queue_nums: h.read_queue_nums as u32,
        write_queue_nums: h.write_queue_nums as u32,
        perm: (h.perm & 7) as u32,
        topic_sys_flag: h.topic_sys_flag.max(0) as u32,
        order: h.order,
    };
    match b.topics.upsert(cfg) {
        Ok(_) => {
            b.topics_changed();
            ok(req)
        }
        Err(e) => reply(req, response::SYSTEM_ERROR, e.to_string()),
    }
}

pub fn delete_topic(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let Some(topic) = req.ext_fields.get("topic") else {
        return bad_header(req, "missing field topic");
    };
    match b.topics.delete(topic) {
        Ok(_) => {
            b.topics_changed();
            ok(req)
        }
        Err(e) => reply(req, response::SYSTEM_ERROR, e.to_string()),
    }
}

pub fn all_topic_config(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        topic_config_table: std::collections::BTreeMap<String, TopicConfig>,
    }
    let body = Body {
        topic_config_table: b
            .topics
            .all()
            .into_iter()
            .map(|t| (t.topic_name.clone(), (*t).clone()))
            .collect(),
    };
    match serde_json::to_vec(&body) {
        Ok(v) => ok(req).with_body(v),
        Err(e) => reply(req, response::SYSTEM_ERROR, e.to_string()),
    }
}

/// Tells every live consumer of `group` its new offsets (RESET_CONSUMER_CLIENT_OFFSET, 220).
/// C/C++ clients read a list of `{topic, brokerName, queueId, offset}` (Java's
/// `ResetOffsetBodyForC`); Java-family clients read fastjson's map keyed by the queue object.
fn push_reset(
    b: &Broker,
    group: &str,
    topic: &str,
    timestamp: i64,
    table: &serde_json::Map<String, serde_json::Value>,
) {
    let broker = &b.config.broker_name;
    let mut for_c = Vec::new();
    let mut for_java = String::from("{\"offsetTable\":{");
    for (i, (q, off)) in table.iter().enumerate() {
        let qid: i32 = q.parse().unwrap_or(0);
        for_c.push(serde_json::json!({"topic": topic, "brokerName": broker, "queueId": qid, "offset": off}));
        if i > 0 {
            for_java.push(',');
        }
        let key = serde_json::json!({"brokerName": broker, "queueId": qid, "topic": topic});
        for_java.push_str(&format!("{key}:{off}"));
    }
    for_java.push_str("}}");
    let for_c = serde_json::json!({ "offsetTable": for_c }).to_string();
    for ch in b.clients.consumer_channels(group) {
        let mut e = crate::protocol::ExtFields::new();
        e.insert("topic", topic);
        e.insert("group", group);
        e.insert_display("timestamp", timestamp);
        e.insert("isForce", "true");
        let body = if ch.language == crate::protocol::LanguageCode::Cpp {
            &for_c
        } else {
            &for_java
        };
        let cmd =
            RemotingCommand::new_request(crate::protocol::request::RESET_CONSUMER_CLIENT_OFFSET, e)
                .with_body(body.clone().into_bytes());
        if let Err(err) = ch.conn.send_oneway(cmd) {
            tracing::warn!(client = %ch.client_id, error = %err, "could not push an offset reset");
        }
    }
}
