//! HA_STATUS (wasmq admin): this broker's replication state as `wasmq cluster` shows it: its
//! role, its commit-log offsets, and its slaves' confirmed offsets and lag (master) or its
//! link to the master (slave).

use crate::context::Broker;
use crate::protocol::{response, RemotingCommand};

use super::{ok, reply};

/// Body: JSON `context::replication::ReplicationStatus`.
pub fn status(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let s = b.replication.status(
        &b.config,
        b.store.log_min_offset(),
        b.store.log_max_offset(),
    );
    match serde_json::to_vec(&s) {
        Ok(body) => ok(req).with_body(body),
        Err(e) => reply(
            req,
            response::SYSTEM_ERROR,
            format!("cannot encode the replication status: {e}"),
        ),
    }
}
