//! Storing half messages and resolving them: commit (the real message, then the op entry),
//! rollback and discard (the op entry only). Each resolution claims its entry in the
//! [`TxnTable`](super::TxnTable) first, so duplicates and races are no-ops, and an entry in
//! doubt after a crash is checked for an earlier commit before anything is written.

use crate::context::Broker;
use crate::protocol::properties::{self, PGROUP};
use crate::store::commit_log::now_ms;
use crate::store::record::{self, Check, Entry, RecordView, SYSFLAG_TXN_COMMIT, SYSFLAG_TXN_MASK};
use crate::store::{MessageInput, PutResult, PutStatus};

use super::{HALF_TOPIC, OP_PROPERTY, OP_TOPIC};
use crate::context::txn_table::{NotResolvable, Pending};

/// What to do with a half message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Commit,
    Rollback,
    /// Rolled back by the broker after the last check (final action `discard`).
    Discard,
}

/// What a resolution did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Committed,
    RolledBack,
    Discarded,
    /// In doubt after a restart and found committed before the crash: only the op entry
    /// was written, whatever the decision (the message was already delivered).
    AlreadyCommitted,
}

impl Resolved {
    fn op(self) -> &'static str {
        match self {
            Resolved::Committed | Resolved::AlreadyCommitted => "commit",
            Resolved::RolledBack => "rollback",
            Resolved::Discarded => "discard",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("no pending half message at commit log offset {0}")]
    NotPending(u64),
    #[error("the half message at commit log offset {0} is being resolved already")]
    Busy(u64),
    #[error("the half message at commit log offset {0} cannot be read: {1}")]
    Unreadable(u64, String),
    #[error("the real topic refuses the commit: {0}")]
    Topic(String),
    #[error("the store refused the write: {0}")]
    Store(String),
}

/// Stores a half message (the producer's `msg` with its real topic and queue) in the half
/// topic and registers it pending.
pub async fn half_put(b: &Broker, msg: &MessageInput<'_>, producer_group: &str) -> PutResult {
    let mut props = crate::schedule::park_properties(msg.properties, msg.topic, msg.queue_id);
    if properties::get_property(&props, PGROUP).is_none() && !producer_group.is_empty() {
        props.push_str(PGROUP);
        props.push(properties::NAME_VALUE_SEPARATOR);
        props.push_str(producer_group);
        props.push(properties::PROPERTY_SEPARATOR);
    }
    let half = MessageInput {
        topic: HALF_TOPIC,
        queue_id: 0,
        properties: &props,
        ..*msg
    };
    let in_flight = b.transactions.start_put();
    let result = b.store.put(std::slice::from_ref(&half)).await;
    if let Some(a) = result.appended.first() {
        let pending = b.store.view(a.physical_offset).and_then(|bytes| {
            match record::decode(
                &bytes,
                Check {
                    crc: false,
                    position: None,
                },
            ) {
                Ok(Entry::Record(r)) => Pending::from_record(&r, b.config.transaction_timeout_ms),
                _ => None,
            }
        });
        match pending {
            Some(p) => b.transactions.insert(p),
            None => tracing::error!(
                offset = a.physical_offset,
                "stored half message cannot be read back; it will be found again at restart"
            ),
        }
    }
    drop(in_flight);
    result
}

/// Resolves the pending half message at commit log `offset`. `by` says who decided (logs).
pub async fn resolve(
    b: &Broker,
    offset: u64,
    decision: Decision,
    by: &str,
) -> Result<Resolved, ResolveError> {
    let p = b.transactions.begin(offset).map_err(|e| match e {
        NotResolvable::NotPending => ResolveError::NotPending(offset),
        NotResolvable::Busy => ResolveError::Busy(offset),
    })?;
    match apply(b, &p, decision).await {
        Ok(r) => {
            b.transactions.finish(offset, true, false);
            tracing::info!(offset, topic = %p.topic, group = %p.group, uniq_key = %p.uniq_key,
                by, outcome = r.op(), already = r == Resolved::AlreadyCommitted, "transaction resolved");
            Ok(r)
        }
        Err((e, maybe_committed)) => {
            b.transactions.finish(offset, false, maybe_committed);
            tracing::warn!(offset, by, error = %e, "transaction not resolved; it stays pending");
            Err(e)
        }
    }
}

/// Writes what `decision` needs. The flag in an error says a commit may have been written.
async fn apply(
    b: &Broker,
    p: &Pending,
    decision: Decision,
) -> Result<Resolved, (ResolveError, bool)> {
    let bytes = b.store.view(p.offset).ok_or_else(|| {
        (
            ResolveError::Unreadable(p.offset, "no record there".into()),
            false,
        )
    })?;
    let r = match record::decode(
        &bytes,
        Check {
            crc: false,
            position: Some(p.offset as i64),
        },
    ) {
        Ok(Entry::Record(r)) if r.topic() == HALF_TOPIC => r,
        Ok(_) => {
            return Err((
                ResolveError::Unreadable(p.offset, "not a half message".into()),
                false,
            ))
        }
        Err(e) => return Err((ResolveError::Unreadable(p.offset, e.to_string()), false)),
    };
    let outcome = if p.in_doubt && committed_before(b, p) {
        Resolved::AlreadyCommitted
    } else {
        match decision {
            Decision::Commit => {
                commit(b, p, &r).await.map_err(|e| (e, false))?;
                crate::failpoint::hit("txn-after-commit-put");
                Resolved::Committed
            }
            Decision::Rollback => Resolved::RolledBack,
            Decision::Discard => Resolved::Discarded,
        }
    };
    let committed = matches!(outcome, Resolved::Committed | Resolved::AlreadyCommitted);
    write_op(b, p.offset, outcome.op())
        .await
        .map_err(|e| (e, committed))?;
    Ok(outcome)
}

/// Whether the real topic already holds the commit of this half message (looked up by
/// `UNIQ_KEY`, confirmed by the prepared-transaction offset the commit carries).
fn committed_before(b: &Broker, p: &Pending) -> bool {
    if p.uniq_key.is_empty() {
        return false;
    }
    b.store
        .query_by_key(&p.topic, &p.uniq_key, 16, p.store_timestamp, i64::MAX, true)
        .iter()
        .any(|bytes| {
            matches!(
                record::decode(bytes, Check { crc: false, position: None }),
                Ok(Entry::Record(r)) if r.prepared_transaction_offset() == p.offset as i64
            )
        })
}

/// Writes the real message (visible, wakes pulls): transaction type COMMIT, the half
/// message's offset as its prepared-transaction offset.
async fn commit(b: &Broker, p: &Pending, r: &RecordView<'_>) -> Result<(), ResolveError> {
    let topic = b
        .topic_for_write(&p.topic)
        .map_err(|(_, remark)| ResolveError::Topic(remark))?;
    let queues = topic.write_queue_nums.max(1) as i32;
    let queue_id = if (0..queues).contains(&p.queue_id) {
        p.queue_id
    } else {
        tracing::warn!(topic = %p.topic, queue = p.queue_id, queues,
            "the half message's queue no longer exists; committing to another queue");
        p.queue_id.rem_euclid(queues)
    };
    let props = crate::schedule::delivered_properties(r.properties());
    let msg = MessageInput {
        topic: &p.topic,
        queue_id,
        flag: r.flag(),
        sysflag: (r.sysflag() & !SYSFLAG_TXN_MASK) | SYSFLAG_TXN_COMMIT,
        born_timestamp: r.born_timestamp(),
        born_host: r.born_host(),
        reconsume_times: r.reconsume_times(),
        prepared_transaction_offset: p.offset as i64,
        body: r.body(),
        properties: &props,
    };
    put_ok(b.store.put(std::slice::from_ref(&msg)).await.status)
}

/// Records the resolution of the half message at `offset` in the op topic.
async fn write_op(b: &Broker, offset: u64, op: &str) -> Result<(), ResolveError> {
    let body = offset.to_string();
    let mut props = String::with_capacity(32);
    for (k, v) in [(properties::TAGS, "d"), (OP_PROPERTY, op)] {
        props.push_str(k);
        props.push(properties::NAME_VALUE_SEPARATOR);
        props.push_str(v);
        props.push(properties::PROPERTY_SEPARATOR);
    }
    let msg = MessageInput {
        topic: OP_TOPIC,
        queue_id: 0,
        flag: 0,
        sysflag: 0,
        born_timestamp: now_ms(),
        born_host: b.store_host,
        reconsume_times: 0,
        prepared_transaction_offset: offset as i64,
        body: body.as_bytes(),
        properties: &props,
    };
    put_ok(b.store.put(std::slice::from_ref(&msg)).await.status)
}

fn put_ok(status: PutStatus) -> Result<(), ResolveError> {
    match status {
        // Appended: a flush timeout does not undo the write (and a restart finds it).
        PutStatus::Ok | PutStatus::FlushDiskTimeout => Ok(()),
        other => Err(ResolveError::Store(format!("{other:?}"))),
    }
}
