//! Transaction administration (wasmq's private codes): list the pending half messages with
//! their age and checks (`wasmq txn list`), and resolve one by hand (`wasmq txn commit |
//! rollback`), for those kept after their last check.

use serde::Serialize;

use crate::context::Broker;
use crate::protocol::{message_id, request, response, RemotingCommand};
use crate::store::commit_log::now_ms;
use crate::transaction::{resolve, Decision, Pending};

use super::reply;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Listed {
    #[serde(flatten)]
    pending: Pending,
    offset_msg_id: String,
    age_ms: i64,
    /// The txn-checker plugin bound to the topic, if any.
    checker: Option<String>,
}

pub async fn handle(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    match req.code {
        request::TXN_LIST => list(b, req),
        request::TXN_RESOLVE => resolve_by_hand(b, req).await,
        _ => RemotingCommand::not_supported(req),
    }
}

fn list(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let topic = req.ext_fields.get("topic");
    let now = now_ms();
    let listed: Vec<Listed> = b
        .transactions
        .list()
        .into_iter()
        .filter(|p| topic.is_none_or(|t| t == p.topic))
        .map(|p| Listed {
            offset_msg_id: message_id::encode(b.store_host, p.offset as i64),
            age_ms: now - p.store_timestamp,
            checker: b.plugins.txn_checker_for(&p.topic).map(|c| c.name.clone()),
            pending: p,
        })
        .collect();
    RemotingCommand::response_to(req, response::SUCCESS, None)
        .with_body(serde_json::to_vec(&listed).unwrap_or_default())
}

async fn resolve_by_hand(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let offset = match req.ext_fields.get_i64("offset") {
        Ok(Some(o)) if o >= 0 => o as u64,
        _ => return reply(req, response::SYSTEM_ERROR, "offset is required"),
    };
    let decision = match req.ext_fields.get("action") {
        Some("commit") => Decision::Commit,
        Some("rollback") => Decision::Rollback,
        _ => {
            return reply(
                req,
                response::SYSTEM_ERROR,
                "action must be commit or rollback",
            )
        }
    };
    match resolve(b, offset, decision, "operator").await {
        Ok(r) => reply(req, response::SUCCESS, format!("{r:?}")),
        Err(e) => reply(req, response::SYSTEM_ERROR, e.to_string()),
    }
}
