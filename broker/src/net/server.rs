//! The accept loop: one task per connection (reader) plus its writer task, bounded by `max_connections`.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::config::NetConfig;
use super::connection::new_connection;
use super::driver::{drive, until_true};
use super::error::NetError;
use super::handler::RequestHandler;

/// Accepts connections on `listener` and serves remoting requests with `handler` until `shutdown` becomes
/// `true` (a dropped sender is *not* a shutdown). Returns once the accept loop stopped; connections observe
/// the same signal and close on their own.
///
/// Per connection: frames that are too large, garbage bytes or undecodable headers close that connection
/// only; so does `idle_timeout` without a frame. Connections beyond `max_connections` are closed at once.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<dyn RequestHandler>,
    config: NetConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), NetError> {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    tracing::info!(addr = ?listener.local_addr().ok(), "remoting server listening");
    loop {
        let accepted = tokio::select! {
            _ = until_true(&mut shutdown) => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = config.max_connections, "too many connections, closing");
            drop(stream);
            continue;
        };
        let (conn, rx) = match new_connection(&stream, &config) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cannot set up connection");
                continue;
            }
        };
        tracing::debug!(conn = conn.id(), %peer, "connection accepted");
        let handler = handler.clone();
        let config = config.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            drive(conn, stream, rx, handler, config, shutdown).await;
            drop(permit);
        });
    }
    tracing::info!("remoting server stopped accepting");
    Ok(())
}
