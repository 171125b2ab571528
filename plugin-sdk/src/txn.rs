//! The [`TxnChecker`] trait a transaction check-back plugin implements, and its verdicts.

use core::fmt;

use crate::batch::{DecodeError, Message};

/// A transaction check-back handler: decides half messages (transactional messages their
/// producer has neither committed nor rolled back) before the broker asks the producer group.
///
/// Implement it on a unit struct and export it with
/// [`export_txn_checker!`](crate::export_txn_checker). All functions are associated
/// functions: a plugin instance is single-threaded and keeps any state (such as its
/// configuration) in statics.
pub trait TxnChecker: 'static {
    /// Receives the operator's `key=value` settings once after instantiation; an error
    /// refuses the load (or upgrade) with that message. The default accepts anything.
    fn configure(config: &[(String, String)]) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// The verdict on one half message. Called once per message of each checked batch, in
    /// order. `message` has its real topic (where a commit writes it), the producer's
    /// properties and its body; its queue offset is the half message's offset in the half
    /// topic and its store timestamp when the half message was stored.
    fn check(message: &Message<'_>, meta: TxnMeta) -> TxnVerdict;
}

/// What the broker knows about a half message besides its bytes (guests have no clock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TxnMeta {
    /// Milliseconds since the half message was stored.
    pub age_ms: u64,
    /// Checks made before this one (0 on the first check).
    pub checks: u32,
}

/// The decision on one half message (mirror of the WIT `txn-verdict`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TxnVerdict {
    /// Undecided: the broker asks a producer of the group and checks again later.
    #[default]
    Unknown,
    /// Deliver the message to its real topic.
    Commit,
    /// Drop the message: it is never delivered.
    Rollback,
}

/// Why a batch handed to `check` cannot be answered. The export macro traps on it (the host
/// counts the call as failed); [`glue::check_batch`](crate::glue::check_batch) returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// The batch is malformed.
    Decode(DecodeError),
    /// `meta` does not have one entry per message.
    MetaLength {
        /// Messages the batch declares.
        messages: u32,
        /// Entries in `meta`.
        meta: usize,
    },
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Decode(e) => write!(f, "malformed batch: {e}"),
            CheckError::MetaLength { messages, meta } => {
                write!(f, "{meta} meta entries for {messages} messages")
            }
        }
    }
}

impl std::error::Error for CheckError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CheckError::Decode(e) => Some(e),
            CheckError::MetaLength { .. } => None,
        }
    }
}

impl From<DecodeError> for CheckError {
    fn from(error: DecodeError) -> Self {
        CheckError::Decode(error)
    }
}
