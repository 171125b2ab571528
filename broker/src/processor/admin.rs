//! Topic administration: UPDATE_AND_CREATE_TOPIC (17), DELETE_TOPIC_IN_BROKER (215),
//! GET_ALL_TOPIC_CONFIG (21).

use crate::broker::Broker;
use crate::meta::TopicConfig;
use crate::protocol::headers::CreateTopicHeader;
use crate::protocol::{response, RemotingCommand};

use super::{bad_header, ok, reply};

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
