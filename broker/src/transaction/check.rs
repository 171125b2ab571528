//! The check loop: half messages unresolved past their timeout are first put to the topic's
//! txn-checker plugin (one batched call per plugin per round, on the blocking pool so no
//! request waits on it), then, when it says unknown or there is none, CHECK_TRANSACTION_STATE
//! goes to a live producer of the group. Each round counts one check; after
//! `transaction_check_max` checks the final action applies (discard or keep).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::context::Broker;
use crate::plugin::batch::BatchEncoder;
use crate::plugin::{FailurePolicy, LoadedChecker, TxnMeta, TxnVerdict};
use crate::protocol::headers::CheckTransactionStateHeader;
use crate::protocol::properties::{TRANSACTION_ID, UNIQ_KEY};
use crate::protocol::{message_id, request, RemotingCommand};
use crate::store::commit_log::{now_ms, RecordBytes};
use crate::store::record::{self, Check, Entry, Placement, RecordView};
use crate::store::MessageInput;

use super::resolve::{resolve, Decision, ResolveError};
use super::{FinalAction, HALF_TOPIC};
use crate::context::txn_table::Pending;

/// Most half messages handled in one round (and in one plugin call).
const ROUND: usize = 256;

/// Runs until shutdown: first rebuilds the pending table from the store, then checks.
pub async fn run(b: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = now_ms();
        let due = b.transactions.due(now, ROUND);
        if due.is_empty() {
            let wait = b
                .transactions
                .next_due()
                .map(|t| (t - now).clamp(1, 1000) as u64)
                .unwrap_or(1000);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                _ = shutdown.changed() => {}
            }
        } else {
            round(&b, due).await;
        }
        persist(&b);
    }
}

/// Persists the table's check state (also called at shutdown).
pub fn persist(b: &Broker) {
    let end = b.store.max_offset(HALF_TOPIC, 0);
    if let Err(e) = b.transactions.persist_if_dirty(end) {
        tracing::error!(error = %e, "persisting transaction check state failed");
    }
}

/// A due entry with its stored half message.
type Due = (Pending, RecordBytes);

/// One round over due entries.
async fn round(b: &Arc<Broker>, due: Vec<Pending>) {
    let mut by_plugin: HashMap<String, (Arc<LoadedChecker>, Vec<Due>)> = HashMap::new();
    let mut ask: Vec<Due> = Vec::new();
    for p in due {
        let Some(bytes) = b.store.view(p.offset) else {
            // Removed by retention before anyone resolved it.
            tracing::warn!(offset = p.offset, topic = %p.topic, "half message no longer stored; forgetting it");
            b.transactions.finish(p.offset, true, false);
            continue;
        };
        if p.checks >= b.config.transaction_check_max {
            final_action(b, &p).await;
            continue;
        }
        match b.plugins.txn_checker_for(&p.topic) {
            Some(c) => by_plugin
                .entry(c.name.clone())
                .or_insert_with(|| (c, Vec::new()))
                .1
                .push((p, bytes)),
            None => ask.push((p, bytes)),
        }
    }
    let now = now_ms();
    for (_, (checker, items)) in by_plugin {
        let verdicts = ask_plugin(&checker, &items, now).await;
        for ((p, bytes), v) in items.into_iter().zip(verdicts) {
            let by = format!("txn-checker {} v{}", checker.name, checker.version);
            let d = match v {
                TxnVerdict::Commit => Decision::Commit,
                TxnVerdict::Rollback => Decision::Rollback,
                TxnVerdict::Unknown => {
                    ask.push((p, bytes));
                    continue;
                }
            };
            match resolve(b, p.offset, d, &by).await {
                Ok(_) | Err(ResolveError::NotPending(_)) | Err(ResolveError::Busy(_)) => {}
                // Could not write now: count the check and try again next interval.
                Err(_) => ask.push((p, bytes)),
            }
        }
    }
    for (p, bytes) in ask {
        ask_producer(b, &p, &bytes);
    }
}

/// The plugin's verdicts on a batch, or its failure policy's for each message.
async fn ask_plugin(checker: &Arc<LoadedChecker>, items: &[Due], now: i64) -> Vec<TxnVerdict> {
    let mut batch = BatchEncoder::new();
    let mut meta = Vec::with_capacity(items.len());
    for (p, bytes) in items {
        if let Ok(Entry::Record(r)) = record::decode(
            bytes,
            Check {
                crc: false,
                position: None,
            },
        ) {
            batch.push(
                p.queue_offset as i64,
                r.store_timestamp(),
                p.topic.as_bytes(),
                r.properties_bytes(),
                r.body(),
            );
        } else {
            batch.push(
                p.queue_offset as i64,
                p.store_timestamp,
                p.topic.as_bytes(),
                b"",
                b"",
            );
        }
        meta.push(TxnMeta {
            age_ms: (now - p.store_timestamp).max(0) as u64,
            checks: p.checks,
        });
    }
    let c = checker.clone();
    let n = items.len();
    let r = tokio::task::spawn_blocking(move || c.check(&batch, &meta)).await;
    match r {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            let v = match checker.limits.on_failure {
                FailurePolicy::Deliver => TxnVerdict::Commit,
                FailurePolicy::Skip => TxnVerdict::Rollback,
                FailurePolicy::Hold => TxnVerdict::Unknown,
            };
            tracing::warn!(plugin = %checker.name, error = %e, policy = ?v, "txn-checker failed; its failure policy decides");
            vec![v; n]
        }
        Err(e) => {
            tracing::error!(plugin = %checker.name, error = %e, "txn-checker call panicked");
            vec![TxnVerdict::Unknown; n]
        }
    }
}

/// Counts a check and sends CHECK_TRANSACTION_STATE to one live producer of the group.
fn ask_producer(b: &Broker, p: &Pending, bytes: &RecordBytes) {
    let next = now_ms().saturating_add(b.config.transaction_check_interval_ms as i64);
    b.transactions.checked(p.offset, p.checks + 1, next);
    let conns = b.clients.producer_connections(&p.group);
    let Some(conn) = conns
        .iter()
        .filter(|c| !c.is_closed())
        .nth(p.checks as usize % conns.len().max(1))
        .or_else(|| conns.iter().find(|c| !c.is_closed()))
    else {
        tracing::debug!(offset = p.offset, group = %p.group, checks = p.checks + 1,
            "no live producer of the group to check with");
        return;
    };
    let Ok(Entry::Record(r)) = record::decode(
        bytes,
        Check {
            crc: false,
            position: None,
        },
    ) else {
        return;
    };
    let cmd = check_request(b, p, &r);
    match conn.send_oneway(cmd) {
        Ok(()) => tracing::debug!(offset = p.offset, group = %p.group, checks = p.checks + 1,
            "CHECK_TRANSACTION_STATE sent"),
        Err(e) => {
            tracing::debug!(offset = p.offset, group = %p.group, error = %e, "check request not sent")
        }
    }
}

/// CHECK_TRANSACTION_STATE: the header names the half message; the body is the half message
/// as the producer sent it (real topic and queue), in the stored-message format.
fn check_request(b: &Broker, p: &Pending, r: &RecordView<'_>) -> RemotingCommand {
    let offset_msg_id = message_id::encode(b.store_host, p.offset as i64);
    let uniq = r.property(UNIQ_KEY).unwrap_or(&offset_msg_id);
    let txn_id = r.property(TRANSACTION_ID).unwrap_or(uniq);
    let header = CheckTransactionStateHeader {
        topic: &p.topic,
        tran_state_table_offset: p.queue_offset as i64,
        commit_log_offset: p.offset as i64,
        msg_id: uniq,
        transaction_id: txn_id,
        offset_msg_id: &offset_msg_id,
    };
    let msg = MessageInput {
        topic: &p.topic,
        queue_id: p.queue_id,
        flag: r.flag(),
        sysflag: r.sysflag(),
        born_timestamp: r.born_timestamp(),
        born_host: r.born_host(),
        reconsume_times: r.reconsume_times(),
        prepared_transaction_offset: p.offset as i64,
        body: r.body(),
        properties: r.properties(),
    };
    let body = record::encode(
        &msg,
        &Placement {
            queue_offset: p.queue_offset as i64,
            physical_offset: p.offset as i64,
            store_timestamp: r.store_timestamp(),
            store_host: b.store_host,
            body_crc: r.body_crc(),
        },
    );
    RemotingCommand::new_request(request::CHECK_TRANSACTION_STATE, header.to_ext_fields())
        .with_body(body)
}

/// After the last check: discard it, or keep it for an operator.
async fn final_action(b: &Broker, p: &Pending) {
    match b.config.transaction_final_action {
        FinalAction::Discard => {
            tracing::warn!(offset = p.offset, topic = %p.topic, group = %p.group, checks = p.checks,
                "transaction unresolved after the last check: discarding it");
            if let Err(
                ResolveError::Unreadable(..) | ResolveError::Topic(_) | ResolveError::Store(_),
            ) = resolve(b, p.offset, Decision::Discard, "final action").await
            {
                // Not written now (e.g. the disk is full): try again an interval later rather
                // than at once.
                let next = now_ms().saturating_add(b.config.transaction_check_interval_ms as i64);
                b.transactions.checked(p.offset, p.checks, next);
            }
        }
        FinalAction::Keep => {
            tracing::warn!(offset = p.offset, topic = %p.topic, group = %p.group, checks = p.checks,
                "transaction unresolved after the last check: kept for an operator (wasmq txn commit|rollback)");
            b.transactions.keep(p.offset);
        }
    }
}
