//! One remoting connection, server-side or client-side: the [`Connection`] handle the application holds
//! (send a request and await its response, send oneway or a response, close). The loops that run it are in
//! [`super::driver`].
//!
//! A command is written directly when nothing is queued for the peer ([`super::write_side`]); everything
//! queued for the writer task holds room under [`NetConfig::max_queued_response_bytes`] (an estimate
//! of its encoded size) until the writer has written it: a peer that does not read makes whoever queues
//! more wait, instead of growing memory, and once it accepts nothing for
//! [`NetConfig::write_stall_timeout`] the writer closes the connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use super::write_side::{Direct, Out, Outbound, WriteSide};
use tokio::time::Instant;

use super::config::NetConfig;
use super::error::NetError;
use crate::protocol::{RemotingCommand, FLAG_ONEWAY, FLAG_RESPONSE};

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// Estimated encoded size of `cmd`: length words, a JSON header of typical shape, remark, ext fields
/// and body. Cheap (no encoding); used only for the queued-bytes bound.
fn estimated_size(cmd: &RemotingCommand) -> usize {
    8 + 128
        + cmd.remark.as_ref().map_or(0, String::len)
        + cmd.ext_fields.len() * 48
        + cmd.body.len()
}

/// Handle to a live (or closed) connection. Cheap to clone via `Arc`; safe to keep after the connection
/// closed (sends then fail with [`NetError::ConnectionClosed`]).
pub struct Connection {
    pub(super) id: u64,
    pub(super) peer_addr: SocketAddr,
    local_addr: SocketAddr,
    write: WriteSide,
    pending: Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>,
    next_opaque: AtomicI32,
    pub(super) closed: watch::Sender<bool>,
    /// Free room under the queued-bytes bound (`room_cap` in all); the writer gives it back.
    pub(super) room: Semaphore,
    room_cap: u32,
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
            // Whoever waits for room to queue a command fails with ConnectionClosed.
            self.room.close();
        }
    }

    /// Estimated bytes queued for writing to the peer and not yet written.
    pub fn queued_bytes(&self) -> usize {
        (self.room_cap as usize).saturating_sub(self.room.available_permits())
    }

    /// The peer took nothing for `stalled`: logs it (with the bytes waiting for it) and closes.
    pub(super) fn peer_not_reading(&self, stalled: Duration) -> NetError {
        let queued = self.queued_bytes();
        if !self.is_closed() {
            tracing::warn!(conn = self.id, peer = %self.peer_addr, queued_bytes = queued,
                stalled_ms = stalled.as_millis() as u64, "peer is not reading its responses, closing");
        }
        self.close();
        NetError::PeerNotReading { queued, stalled }
    }

    /// Takes room for `cmd` under the queued-bytes bound, waiting while the peer has not taken what is
    /// queued already. A peer that takes nothing at all is closed by the writer (`write_stall_timeout`),
    /// which fails this wait; one that reads slowly only makes it longer (never a false close).
    async fn take_room(&self, cmd: &RemotingCommand) -> Result<u32, NetError> {
        // One command larger than the whole bound takes all of it and goes alone.
        let n = estimated_size(cmd).min(self.room_cap as usize) as u32;
        // The semaphore is closed only by `close`.
        self.room
            .acquire_many(n)
            .await
            .map_err(|_| NetError::ConnectionClosed)?
            .forget();
        Ok(n)
    }

    /// Queues `cmd` with the room it holds; gives the room back if the writer is gone.
    fn enqueue(&self, cmd: RemotingCommand, room: u32) -> Result<(), NetError> {
        let what = Out::Cmd(cmd);
        if self.write.enqueue(Outbound { what, room }) {
            Ok(())
        } else {
            self.room.add_permits(room as usize);
            Err(NetError::ConnectionClosed)
        }
    }

    pub(super) fn write_side(&self) -> &WriteSide {
        &self.write
    }

    /// Writes `cmds` directly if nothing is queued, else queues each with room (waiting for it).
    pub(super) async fn send_all(&self, cmds: Vec<RemotingCommand>) -> Result<(), NetError> {
        if self.is_closed() {
            return Err(NetError::ConnectionClosed);
        }
        match self.write.write_direct(cmds) {
            Direct::Done => Ok(()),
            Direct::Failed(e) => {
                tracing::debug!(conn = self.id, error = %e, "write failed");
                self.close();
                Err(NetError::ConnectionClosed)
            }
            Direct::Queue(cmds) => {
                for cmd in cmds {
                    let room = self.take_room(&cmd).await?;
                    self.enqueue(cmd, room)?;
                }
                Ok(())
            }
        }
    }

    fn next_opaque(&self) -> i32 {
        self.next_opaque.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues a command (usually a response) for writing, waiting while the outbound queue is full or
    /// holds `max_queued_response_bytes` already. Fails with `ConnectionClosed` when the connection
    /// closes meanwhile (e.g. the peer took nothing for `write_stall_timeout`).
    pub async fn send(&self, cmd: RemotingCommand) -> Result<(), NetError> {
        if self.is_closed() {
            return Err(NetError::ConnectionClosed);
        }
        self.send_all(vec![cmd]).await
    }

    /// Sends a oneway request (flag bit1 set, own opaque) without waiting: fails with `QueueFull` rather
    /// than blocking when the peer is not reading.
    pub fn send_oneway(&self, mut cmd: RemotingCommand) -> Result<(), NetError> {
        if self.is_closed() {
            return Err(NetError::ConnectionClosed);
        }
        cmd.flag = (cmd.flag | FLAG_ONEWAY) & !FLAG_RESPONSE;
        cmd.opaque = self.next_opaque();
        let mut cmds = match self.write.write_direct(vec![cmd]) {
            Direct::Done => return Ok(()),
            Direct::Failed(e) => {
                tracing::debug!(conn = self.id, error = %e, "write failed");
                self.close();
                return Err(NetError::ConnectionClosed);
            }
            Direct::Queue(cmds) => cmds,
        };
        let Some(cmd) = cmds.pop() else {
            return Ok(());
        };
        let n = estimated_size(&cmd).min(self.room_cap as usize) as u32;
        match self.room.try_acquire_many(n) {
            Ok(p) => p.forget(),
            Err(tokio::sync::TryAcquireError::NoPermits) => return Err(NetError::QueueFull),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(NetError::ConnectionClosed),
        }
        self.enqueue(cmd, n)
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
        tokio::time::timeout_at(deadline, self.send_all(vec![cmd]))
            .await
            .map_err(|_| NetError::Timeout(timeout))??;
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
) -> Result<(Arc<Connection>, mpsc::UnboundedReceiver<Outbound>), NetError> {
    stream.set_nodelay(true)?;
    let (write, rx) = WriteSide::new();
    // At least one byte (a zero bound would queue nothing); at most what one acquisition can take.
    let room_cap = config
        .max_queued_response_bytes
        .clamp(1, (u32::MAX as usize).min(Semaphore::MAX_PERMITS)) as u32;
    let conn = Arc::new(Connection {
        id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
        peer_addr: stream.peer_addr()?,
        local_addr: stream.local_addr()?,
        write,
        pending: Mutex::new(HashMap::new()),
        next_opaque: AtomicI32::new(1),
        closed: watch::channel(false).0,
        room: Semaphore::new(room_cap as usize),
        room_cap,
    });
    Ok((conn, rx))
}
