//! Transactional messages (RocketMQ's half messages, REMOTING.md §14).
//!
//! ```text
//! producer --SEND (TRAN_MSG, sysflag PREPARED)--> processor::send -> half_put: stored in
//!          RMQ_SYS_TRANS_HALF_TOPIC queue 0 (REAL_TOPIC / REAL_QID kept), TxnTable::insert
//! producer --END_TRANSACTION (oneway)--> processor::end_transaction -> resolve:
//!          commit: the real message to its topic and queue, then an op entry
//!          rollback: an op entry only            (op entries: RMQ_SYS_TRANS_OP_HALF_TOPIC)
//! check::run: entries due for a check -> the topic's txn-checker plugin (batched) ->
//!          commit / rollback / unknown -> CHECK_TRANSACTION_STATE to a producer of PGROUP
//!          ... up to transaction_check_max checks, then the final action (discard | keep)
//! ```
//!
//! | file | concept |
//! |---|---|
//! | [`TxnTable`] | the pending half messages, rebuilt at start from the half and op topics (in the broker context) |
//! | [`resolve`] | storing a half message; commit / rollback / discard, idempotent and crash-safe |
//! | [`check`] | the check loop: checker plugins first, then the producer group |
//!
//! Crash safety: a commit writes the real message before the op entry. A crash between the
//! two leaves the half message pending after restart, marked in doubt; resolving an in-doubt
//! entry first looks for the committed copy (by `UNIQ_KEY` in the real topic, confirmed by
//! its prepared-transaction offset) and only writes the missing op entry. So a committed
//! message is delivered once and a rolled-back one never, whatever answer comes later.

pub mod check;
pub mod resolve;

pub use crate::context::txn_table::{
    FinalAction, Pending, TxnTable, HALF_TOPIC, OP_PROPERTY, OP_TOPIC,
};
pub use resolve::{half_put, resolve, Decision, ResolveError, Resolved};
