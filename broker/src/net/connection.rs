//! One remoting connection, server-side or client-side: the [`Connection`] handle the application holds
//! (send a request and await its response, send oneway or a response, close). The loops that run it are in
//! [`super::driver`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::config::NetConfig;
use super::error::NetError;
use crate::protocol::{RemotingCommand, FLAG_ONEWAY, FLAG_RESPONSE};

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// Handle to a live (or closed) connection. Cheap to clone via `Arc`; safe to keep after the connection
/// closed (sends then fail with [`NetError::ConnectionClosed`]).
pub struct Connection {
    pub(super) id: u64,
    pub(super) peer_addr: SocketAddr,
    local_addr: SocketAddr,
    tx: mpsc::Sender<RemotingCommand>,
    pending: Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>,
    next_opaque: AtomicI32,
    pub(super) closed: watch::Sender<bool>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("peer_addr", &self.peer_addr)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Removes a pending entry if the requesting future is dropped or times out.
struct PendingGuard<'a> {
    conn: &'a Connection,
    opaque: i32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.conn.pending.lock().remove(&self.opaque);
    }
}

impl Connection {
    /// Unique (per process) connection id.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Resolves once the connection has closed.
    pub async fn closed(&self) {
        let mut rx = self.closed.subscribe();
        // The sender lives in `self`, so this cannot fail while we borrow it.
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Closes the connection: the reader and writer stop, pending requests fail.
    pub fn close(&self) {
        if !self.closed.send_replace(true) {
            // Dropping the senders wakes every waiter in `request` with ConnectionClosed.
            self.pending.lock().clear();
        }
    }

    fn next_opaque(&self) -> i32 {
        self.next_opaque.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues a command (usually a response) for writing, waiting while the outbound queue is full.
    pub async fn send(&self, cmd: RemotingCommand) -> Result<(), NetError> {
        if self.is_closed() {
            return Err(NetError::ConnectionClosed);
        }
        self.tx
            .send(cmd)
            .await
            .map_err(|_| NetError::ConnectionClosed)
    }

    /// Sends a oneway request (flag bit1 set, own opaque) without waiting: fails with `QueueFull` rather
    /// than blocking when the peer is not reading.
    pub fn send_oneway(&self, mut cmd: RemotingCommand) -> Result<(), NetError> {
        if self.is_closed() {
            return Err(NetError::ConnectionClosed);
        }
        cmd.flag = (cmd.flag | FLAG_ONEWAY) & !FLAG_RESPONSE;
        cmd.opaque = self.next_opaque();
        self.tx.try_send(cmd).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => NetError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => NetError::ConnectionClosed,
        })
    }

    /// Sends a request to the peer and waits for its response (matched by a fresh opaque).
    pub async fn request(
        &self,
        mut cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, NetError> {
        if self.is_closed() {
            return Err(NetError::ConnectionClosed);
        }
        let opaque = self.next_opaque();
        cmd.opaque = opaque;
        cmd.flag &= !(FLAG_RESPONSE | FLAG_ONEWAY);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(opaque, tx);
        let _guard = PendingGuard { conn: self, opaque };
        let deadline = Instant::now() + timeout;
        tokio::time::timeout_at(deadline, self.tx.send(cmd))
            .await
            .map_err(|_| NetError::Timeout(timeout))?
            .map_err(|_| NetError::ConnectionClosed)?;
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(NetError::ConnectionClosed),
            Err(_) => Err(NetError::Timeout(timeout)),
        }
    }

    /// Hands a response from the peer to the waiting `request`, if any.
    pub(super) fn complete(&self, resp: RemotingCommand) {
        let waiter = self.pending.lock().remove(&resp.opaque);
        match waiter {
            Some(tx) => {
                let _ = tx.send(resp);
            }
            None => tracing::debug!(
                conn = self.id,
                opaque = resp.opaque,
                code = resp.code,
                "response without a pending request (timed out?)"
            ),
        }
    }
}

/// Creates the handle and its outbound queue for a freshly accepted or connected stream.
pub(crate) fn new_connection(
    stream: &TcpStream,
    config: &NetConfig,
) -> Result<(Arc<Connection>, mpsc::Receiver<RemotingCommand>), NetError> {
    stream.set_nodelay(true)?;
    let (tx, rx) = mpsc::channel(config.write_queue.max(1));
    let conn = Arc::new(Connection {
        id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
        peer_addr: stream.peer_addr()?,
        local_addr: stream.local_addr()?,
        tx,
        pending: Mutex::new(HashMap::new()),
        next_opaque: AtomicI32::new(1),
        closed: watch::channel(false).0,
    });
    Ok((conn, rx))
}
