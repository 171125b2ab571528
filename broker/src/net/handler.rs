//! The application side of the transport: what to do with each inbound request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::connection::Connection;
use crate::protocol::RemotingCommand;

/// The future a handler returns: the response, or `None` for no response.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Option<RemotingCommand>> + Send + 'a>>;

/// Handles requests arriving on a connection. Each request runs in its own task, so a handler may hold a
/// request (long polling) without delaying others on the same connection.
///
/// The transport fixes up the returned response (opaque, RESPONSE flag, serialize type of the request) and
/// drops it for oneway requests. Unknown codes are the handler's business: answer them with
/// [`RemotingCommand::not_supported`].
pub trait RequestHandler: Send + Sync + 'static {
    fn handle(&self, conn: Arc<Connection>, req: RemotingCommand) -> HandlerFuture<'_>;

    /// Called once when a connection is established, before any request.
    fn on_connect(&self, _conn: &Arc<Connection>) {}

    /// Called once when a connection has closed (for any reason).
    fn on_disconnect(&self, _conn: &Arc<Connection>) {}
}

/// Answers every request with `REQUEST_CODE_NOT_SUPPORTED` (oneway requests are ignored). The default for
/// outbound clients that do not expect requests from their peer.
#[derive(Debug, Default, Clone, Copy)]
pub struct NotSupportedHandler;

impl RequestHandler for NotSupportedHandler {
    fn handle(&self, _conn: Arc<Connection>, req: RemotingCommand) -> HandlerFuture<'_> {
        Box::pin(std::future::ready(Some(RemotingCommand::not_supported(
            &req,
        ))))
    }
}
