//! One remoting connection, server-side or client-side: the [`Connection`] handle the application holds,
//! and the driver that runs it (a reader loop in the connection's task, one writer task).
//!
//! Reader: decodes frames from a growing `BytesMut`; a response completes the matching pending request by
//! opaque; a request is handed to the [`RequestHandler`] in a task of its own, so a held request (long poll)
//! never blocks the next one. Writer: fed by a bounded queue; it drains everything queued into one buffer and
//! writes it with one `write_all`, so N concurrent responses cost about one syscall, not N. Bodies above
//! [`NetConfig::write_copy_threshold`] are written from their own buffer instead of being copied.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::config::NetConfig;
use super::error::NetError;
use super::handler::RequestHandler;
use crate::protocol::{response, FrameCodec, RemotingCommand, FLAG_ONEWAY, FLAG_RESPONSE};

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// Handle to a live (or closed) connection. Cheap to clone via `Arc`; safe to keep after the connection
/// closed (sends then fail with [`NetError::ConnectionClosed`]).
pub struct Connection {
    id: u64,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
    tx: mpsc::Sender<RemotingCommand>,
    pending: Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>,
    next_opaque: AtomicI32,
    closed: watch::Sender<bool>,
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
    fn complete(&self, resp: RemotingCommand) {
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

/// Runs a connection until the peer closes it, an error occurs, it idles out, `close()` is called or
/// `shutdown` turns true. Calls the handler's `on_connect` / `on_disconnect` around it.
pub(crate) async fn drive(
    conn: Arc<Connection>,
    stream: TcpStream,
    rx: mpsc::Receiver<RemotingCommand>,
    handler: Arc<dyn RequestHandler>,
    config: NetConfig,
    shutdown: watch::Receiver<bool>,
) {
    let (rd, wr) = stream.into_split();
    handler.on_connect(&conn);
    let writer = tokio::spawn(write_loop(conn.clone(), wr, rx, config.clone()));
    let result = read_loop(&conn, rd, &handler, &config, shutdown).await;
    match &result {
        Ok(()) => tracing::debug!(conn = conn.id, peer = %conn.peer_addr, "connection closed"),
        Err(e) => {
            tracing::info!(conn = conn.id, peer = %conn.peer_addr, error = %e, "closing connection")
        }
    }
    conn.close();
    // The writer drains what is queued; a peer that stopped reading gets a short grace, then the write is
    // abandoned.
    let mut writer = writer;
    if tokio::time::timeout(Duration::from_secs(1), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    handler.on_disconnect(&conn);
}

/// Waits until `rx` turns true; never resolves if its sender is gone.
pub(crate) async fn until_true(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn read_loop(
    conn: &Arc<Connection>,
    mut rd: OwnedReadHalf,
    handler: &Arc<dyn RequestHandler>,
    config: &NetConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), NetError> {
    const READ_CHUNK: usize = 64 * 1024;
    let codec = FrameCodec::new(config.max_frame_len);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut closed = conn.closed.subscribe();
    let far_future = Duration::from_secs(86400 * 365);
    let idle_timeout = config.idle_timeout.unwrap_or(far_future);
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    loop {
        let mut got_frame = false;
        while let Some(frame) = codec.decode(&mut buf)? {
            got_frame = true;
            let cmd = RemotingCommand::decode(frame)?;
            if cmd.is_response() {
                conn.complete(cmd);
            } else {
                spawn_request(conn.clone(), handler.clone(), cmd);
            }
        }
        if got_frame {
            idle.as_mut().reset(Instant::now() + idle_timeout);
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            r = rd.read_buf(&mut buf) => {
                if r? == 0 {
                    return Ok(());
                }
            }
            _ = &mut idle => return Err(NetError::IdleTimeout(idle_timeout)),
            _ = until_true(&mut shutdown) => return Ok(()),
            _ = closed.wait_for(|c| *c) => return Ok(()),
        }
    }
}

fn spawn_request(conn: Arc<Connection>, handler: Arc<dyn RequestHandler>, req: RemotingCommand) {
    tokio::spawn(async move {
        let oneway = req.is_oneway();
        let opaque = req.opaque;
        let serialize_type = req.serialize_type;
        let resp = handler.handle(conn.clone(), req).await;
        if oneway {
            return;
        }
        if let Some(mut resp) = resp {
            resp.opaque = opaque;
            resp.flag = (resp.flag | FLAG_RESPONSE) & !FLAG_ONEWAY;
            resp.serialize_type = serialize_type;
            let _ = conn.send(resp).await;
        }
    });
}

/// Encodes `cmd` into `buf` (or into `chunks` for large bodies). An unencodable response becomes a
/// SYSTEM_ERROR response so the peer is not left waiting.
fn encode_into(
    cmd: RemotingCommand,
    buf: &mut BytesMut,
    chunks: &mut Vec<Bytes>,
    config: &NetConfig,
) {
    let mut cmd = cmd;
    if let Err(e) = cmd.encode_header(buf) {
        tracing::warn!(code = cmd.code, opaque = cmd.opaque, error = %e, "cannot encode command");
        if !cmd.is_response() {
            return;
        }
        let mut err = RemotingCommand::response_to(
            &cmd,
            response::SYSTEM_ERROR,
            Some("response could not be encoded".into()),
        );
        err.flag = cmd.flag;
        cmd = err;
        if cmd.encode_header(buf).is_err() {
            return;
        }
    }
    if cmd.body.len() >= config.write_copy_threshold {
        chunks.push(buf.split().freeze());
        chunks.push(cmd.body);
    } else {
        buf.extend_from_slice(&cmd.body);
    }
}

async fn write_loop(
    conn: Arc<Connection>,
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<RemotingCommand>,
    config: NetConfig,
) {
    let mut closed = conn.closed.subscribe();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut chunks: Vec<Bytes> = Vec::new();
    loop {
        let first = tokio::select! {
            biased;
            c = rx.recv() => match c {
                Some(c) => c,
                None => break,
            },
            _ = closed.wait_for(|c| *c) => break,
        };
        encode_into(first, &mut buf, &mut chunks, &config);
        let mut queued = buf.len();
        while queued < config.write_coalesce_bytes {
            match rx.try_recv() {
                Ok(c) => {
                    encode_into(c, &mut buf, &mut chunks, &config);
                    queued = buf.len() + chunks.iter().map(Bytes::len).sum::<usize>();
                }
                Err(_) => break,
            }
        }
        let mut result = Ok(());
        for chunk in chunks.drain(..) {
            result = wr.write_all(&chunk).await;
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() && !buf.is_empty() {
            result = wr.write_all(&buf).await;
        }
        buf.clear();
        if buf.capacity() > 4 * 1024 * 1024 {
            buf = BytesMut::with_capacity(64 * 1024);
        }
        if let Err(e) = result {
            tracing::debug!(conn = conn.id, error = %e, "write failed");
            conn.close();
            break;
        }
    }
    let _ = wr.shutdown().await;
}
