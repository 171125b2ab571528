//! Request processors, one file per request family. Each takes the broker context, the
//! connection and the request, and returns the response (or `None` for oneway requests).

pub mod admin;
pub mod consumer;
pub mod end_transaction;
pub mod plugin_admin;
pub mod pull;
pub mod query;
pub mod send;
pub mod send_back;
pub mod txn_admin;

use crate::protocol::{response, RemotingCommand};

/// A response with `code` and a remark.
pub(crate) fn reply(
    req: &RemotingCommand,
    code: i32,
    remark: impl Into<String>,
) -> RemotingCommand {
    RemotingCommand::response_to(req, code, Some(remark.into()))
}

/// SUCCESS with no remark.
pub(crate) fn ok(req: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(req, response::SUCCESS, None)
}

/// A request whose header could not be parsed.
pub(crate) fn bad_header(req: &RemotingCommand, e: impl std::fmt::Display) -> RemotingCommand {
    reply(
        req,
        response::SYSTEM_ERROR,
        format!("bad request header: {e}"),
    )
}
