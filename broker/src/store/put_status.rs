//! The outcome of a put: only `Ok` is an acknowledgement of durability under the configured
//! flush mode.

use super::commit_log::Appended;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutStatus {
    /// Stored, and durable as the flush mode promises.
    Ok,
    /// Stored, but the sync flush did not finish in time: durability unknown.
    FlushDiskTimeout,
    /// The store cannot take writes (read-only after a flush failure, shutting down, no room
    /// for a new segment). Nothing was stored.
    ServiceUnavailable(String),
    /// The message breaks a limit (size, topic, properties). Nothing was stored.
    MessageIllegal(String),
    /// The disk is fuller than the configured ratio. Nothing was stored.
    DiskFull,
}

impl PutStatus {
    pub fn is_ok(&self) -> bool {
        matches!(self, PutStatus::Ok)
    }
    /// The messages are in the log (possibly not durable yet).
    pub fn is_stored(&self) -> bool {
        matches!(self, PutStatus::Ok | PutStatus::FlushDiskTimeout)
    }
}

/// Result of putting one or more messages.
#[derive(Debug, Clone)]
pub struct PutResult {
    pub status: PutStatus,
    /// Where each message landed (empty unless stored).
    pub appended: Vec<Appended>,
}
