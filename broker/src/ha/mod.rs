//! Replication between the brokers of a group (`docs/replication.md`): a master streams its
//! commit log to slaves over the HA port; slaves append it byte for byte and rebuild their
//! consume queues and index with their own dispatch, so queue offsets match.
//!
//! | file | concept |
//! |---|---|
//! | [`wire`] | the stream's frames: hello, welcome/refuse, data, report, heartbeat |
//! | [`master`] | the HA listener and one streaming session per slave |
//! | [`slave`] | the link to the master: append, report, reconnect |
//!
//! What a sync master's send waits for, and the in-sync set, live in
//! [`crate::context::replication`].

pub mod master;
pub mod slave;
pub mod wire;

/// The replication epoch of every log until failover (issue: automatic failover) assigns
/// epochs; carried in the handshake so that work can truncate a diverged log.
pub const EPOCH: u64 = 0;

/// Resolves once the shutdown flag is set (or its sender is gone).
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
