//! END_TRANSACTION (37), usually oneway: commit or roll back the half message named by its
//! commit log offset. Checked before anything is written: the offset must hold a pending half
//! message of the same producer group (and, when given, the same half-queue offset). A
//! duplicate or late END is a no-op; a bad one is refused with a logged reason.

use crate::context::Broker;
use crate::protocol::headers::{transaction_type, EndTransactionHeader};
use crate::protocol::{response, RemotingCommand};
use crate::store::record::{self, Check, Entry};
use crate::transaction::{resolve, Decision, ResolveError, HALF_TOPIC};

use super::{bad_header, ok, reply};

/// Returns `None` for oneway requests (never answered) and otherwise the result.
pub async fn end_transaction(b: &Broker, req: &RemotingCommand) -> Option<RemotingCommand> {
    let resp = handle(b, req).await;
    (!req.is_oneway()).then_some(resp)
}

async fn handle(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let h = match EndTransactionHeader::parse(&req.ext_fields) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "END_TRANSACTION with a bad header ignored");
            return bad_header(req, e);
        }
    };
    let decision = match h.commit_or_rollback {
        transaction_type::COMMIT => Decision::Commit,
        transaction_type::ROLLBACK => Decision::Rollback,
        transaction_type::NOT_TYPE => {
            // The producer does not know yet: the check loop will ask again.
            tracing::debug!(
                offset = h.commit_log_offset,
                group = h.producer_group,
                "END_TRANSACTION unknown: left pending"
            );
            return ok(req);
        }
        other => {
            tracing::warn!(
                offset = h.commit_log_offset,
                value = other,
                "END_TRANSACTION with an illegal commitOrRollback ignored"
            );
            return reply(
                req,
                response::SYSTEM_ERROR,
                format!("illegal commitOrRollback {other}: expected 0, 8 or 12"),
            );
        }
    };
    let offset = match u64::try_from(h.commit_log_offset) {
        Ok(o) => o,
        Err(_) => return refuse(req, &h, "negative commit log offset".into()),
    };
    let Some(p) = b.transactions.get(offset) else {
        // Already resolved (a duplicate or late END), or no half message at all.
        let what = describe(b, offset);
        if what == Found::HalfMessage {
            tracing::info!(
                offset,
                group = h.producer_group,
                from_check = h.from_transaction_check,
                "END_TRANSACTION for a half message already resolved: no-op"
            );
            return ok(req);
        }
        return refuse(req, &h, what.reason());
    };
    if p.group != h.producer_group {
        return refuse(
            req,
            &h,
            format!(
                "the half message belongs to producer group {:?}, not {:?}",
                p.group, h.producer_group
            ),
        );
    }
    // `tranStateTableOffset` is optional in the header (0 when absent).
    if h.tran_state_table_offset != 0 && h.tran_state_table_offset as u64 != p.queue_offset {
        return refuse(
            req,
            &h,
            format!(
                "tranStateTableOffset {} does not match the half message's {}",
                h.tran_state_table_offset, p.queue_offset
            ),
        );
    }
    let by = if h.from_transaction_check {
        "producer (check-back)"
    } else {
        "producer"
    };
    match resolve(b, offset, decision, by).await {
        Ok(_) => ok(req),
        // A duplicate racing the first: the first one wins, this one is a no-op.
        Err(ResolveError::NotPending(_) | ResolveError::Busy(_)) => ok(req),
        Err(e) => reply(req, response::SYSTEM_ERROR, e.to_string()),
    }
}

fn refuse(req: &RemotingCommand, h: &EndTransactionHeader<'_>, reason: String) -> RemotingCommand {
    tracing::warn!(
        offset = h.commit_log_offset,
        group = h.producer_group,
        msg_id = h.msg_id,
        %reason,
        "END_TRANSACTION refused"
    );
    reply(
        req,
        response::SYSTEM_ERROR,
        format!("END_TRANSACTION refused: {reason}"),
    )
}

#[derive(Debug, PartialEq, Eq)]
enum Found {
    HalfMessage,
    OtherMessage(String),
    Nothing,
}

impl Found {
    fn reason(&self) -> String {
        match self {
            Found::HalfMessage => "already resolved".into(),
            Found::OtherMessage(t) => {
                format!("the message at that offset is not a half message (topic {t})")
            }
            Found::Nothing => "no message starts at that commit log offset".into(),
        }
    }
}

/// What is stored at `offset`.
fn describe(b: &Broker, offset: u64) -> Found {
    let Some(bytes) = b.store.view(offset) else {
        return Found::Nothing;
    };
    match record::decode(
        &bytes,
        Check {
            crc: false,
            position: Some(offset as i64),
        },
    ) {
        Ok(Entry::Record(r)) if r.topic() == HALF_TOPIC => Found::HalfMessage,
        Ok(Entry::Record(r)) => Found::OtherMessage(r.topic().to_string()),
        _ => Found::Nothing,
    }
}
