//! Errors of the networking layer.

use std::time::Duration;

use thiserror::Error;

use crate::protocol::{CommandError, FrameError};

#[derive(Debug, Error)]
pub enum NetError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("undecodable command: {0}")]
    Command(#[from] CommandError),
    #[error("connection closed")]
    ConnectionClosed,
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("outbound queue full")]
    QueueFull,
    #[error("connection idle for {0:?}")]
    IdleTimeout(Duration),
    /// The peer accepted nothing we wrote (or left no room under the queued-bytes bound) for `stalled`.
    #[error("peer not reading: {queued} bytes queued for it, no progress for {stalled:?}")]
    PeerNotReading { queued: usize, stalled: Duration },
}
