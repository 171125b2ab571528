//! The driver of a [`Connection`]: a reader loop in the connection's task and one writer task
//! ([`super::write_side`]).
//!
//! Reader: decodes frames from a growing `BytesMut`; a response completes the matching pending request by
//! opaque; a request is handled **inline**: the [`RequestHandler`]'s future is polled once on the reader's
//! task, and one that finishes there (most do: sends under async flush, pulls that find messages,
//! heartbeats) has its response written directly, the responses of one read gathered into one write.
//! One that waits (a held long poll, a sync flush, a replication ack) goes on in a task of its own, so it
//! never blocks the next request. After [`NetConfig::inline_burst`] requests handled in a row the reader
//! yields, so a connection flooding the broker with costly requests takes turns with the others.
//!
//! Each request holds one of the connection's [`NetConfig::max_inflight_per_connection`] slots until its
//! response is written or queued (a oneway one until its handler returns). With no slot free the reader
//! reads ahead at most `READ_AHEAD` bytes, 64 KiB (so responses from the peer behind a few requests still
//! arrive) and then stops reading: further requests wait in the socket and TCP pushes back on the peer.

use std::collections::VecDeque;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::config::NetConfig;
use super::connection::Connection;
use super::error::NetError;
use super::handler::RequestHandler;
use super::write_side::{gather, Outbound};
use crate::protocol::{FrameCodec, RemotingCommand, FLAG_ONEWAY, FLAG_RESPONSE};

/// Runs a connection until the peer closes it, an error occurs, it idles out, `close()` is called or
/// `shutdown` turns true. Calls the handler's `on_connect` / `on_disconnect` around it.
pub(crate) async fn drive(
    conn: Arc<Connection>,
    stream: TcpStream,
    rx: mpsc::UnboundedReceiver<Outbound>,
    handler: Arc<dyn RequestHandler>,
    config: NetConfig,
    shutdown: watch::Receiver<bool>,
) {
    let (rd, wr) = stream.into_split();
    let wr = Arc::new(wr);
    conn.write_side().attach(wr.clone());
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

/// Bytes of requests the reader decodes ahead while every slot is taken (plus the raw bytes buffered).
const READ_AHEAD: usize = 64 * 1024;

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
    // Never closed, so acquiring fails only when no slot is free.
    let slots = Arc::new(Semaphore::new(
        config
            .max_inflight_per_connection
            .clamp(1, Semaphore::MAX_PERMITS),
    ));
    // Requests decoded while no slot was free, in arrival order, with their frame sizes.
    let mut waiting: VecDeque<(RemotingCommand, usize)> = VecDeque::new();
    let mut waiting_bytes = 0usize;
    let mut inline = Inline::new(conn, handler, config);
    loop {
        while !waiting.is_empty() {
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                break;
            };
            if let Some((req, size)) = waiting.pop_front() {
                waiting_bytes -= size;
                inline.start(req, slot).await;
            }
        }
        let mut got_frame = false;
        while waiting.is_empty() || waiting_bytes < READ_AHEAD {
            let Some(frame) = codec.decode(&mut buf)? else {
                break;
            };
            got_frame = true;
            let size = 8 + frame.header.len() + frame.body.len();
            let mut cmd = RemotingCommand::decode(frame)?;
            if cmd.body.is_empty() {
                // An empty slice still pins the whole read buffer; a held pull would keep it for 30 s.
                cmd.body = Bytes::new();
            }
            if cmd.is_response() {
                conn.complete(cmd);
                continue;
            }
            cmd.received_at = Some(std::time::Instant::now());
            if waiting.is_empty() {
                if let Ok(slot) = slots.clone().try_acquire_owned() {
                    inline.start(cmd, slot).await;
                    continue;
                }
            }
            waiting_bytes += size;
            waiting.push_back((cmd, size));
        }
        // Everything decoded was handled (or waits for a slot): answer what is ready in one write.
        inline.flush().await;
        if got_frame {
            idle.as_mut().reset(Instant::now() + idle_timeout);
        }
        // With requests waiting for a slot, read on only within the read-ahead bound.
        let can_read = waiting.is_empty() || buf.len() + waiting_bytes < READ_AHEAD;
        if can_read && buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_CHUNK);
        }
        let slot = tokio::select! {
            r = rd.read_buf(&mut buf), if can_read => {
                if r? == 0 {
                    return Ok(());
                }
                None
            }
            slot = slots.clone().acquire_owned(), if !waiting.is_empty() => {
                Some(slot.expect("a connection's slot semaphore is never closed"))
            }
            _ = &mut idle => return Err(NetError::IdleTimeout(idle_timeout)),
            _ = until_true(&mut shutdown) => return Ok(()),
            _ = closed.wait_for(|c| *c) => return Ok(()),
        };
        if let Some(slot) = slot {
            if let Some((req, size)) = waiting.pop_front() {
                waiting_bytes -= size;
                inline.start(req, slot).await;
                inline.flush().await;
            }
        }
    }
}

/// Requests handled on the reader's task, and the responses they made, not yet written.
struct Inline<'a> {
    conn: &'a Arc<Connection>,
    handler: &'a Arc<dyn RequestHandler>,
    config: &'a NetConfig,
    ready: Vec<RemotingCommand>,
    ready_bytes: usize,
    /// The in-flight slots of the requests whose responses are in `ready`.
    slots: Vec<OwnedSemaphorePermit>,
    /// Requests handled since the reader last yielded.
    burst: usize,
}

impl<'a> Inline<'a> {
    fn new(
        conn: &'a Arc<Connection>,
        handler: &'a Arc<dyn RequestHandler>,
        config: &'a NetConfig,
    ) -> Self {
        Inline {
            conn,
            handler,
            config,
            ready: Vec::new(),
            ready_bytes: 0,
            slots: Vec::new(),
            burst: 0,
        }
    }

    /// Polls the handler's future for `req` once here; one that waits goes on in a task of its
    /// own, which holds `slot` until its response is written or queued.
    async fn start(&mut self, req: RemotingCommand, slot: OwnedSemaphorePermit) {
        if self.conn.is_closed() {
            // Nobody would get the answer (the reader stops at its next turn).
            return;
        }
        let oneway = req.is_oneway();
        let fix = Fixup {
            opaque: req.opaque,
            serialize_type: req.serialize_type,
        };
        let (handler, conn) = (self.handler.clone(), self.conn.clone());
        let mut fut: Pin<Box<dyn Future<Output = Option<RemotingCommand>> + Send>> =
            Box::pin(async move { handler.handle(conn, req).await });
        // A waker that does nothing: a future that waits is polled again by its own task at once,
        // which registers the task's waker.
        let first = fut
            .as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()));
        match first {
            Poll::Ready(resp) => {
                if let (false, Some(resp)) = (oneway, resp) {
                    self.ready_bytes += resp.body.len() + 128;
                    self.ready.push(fix.apply(resp));
                    self.slots.push(slot);
                }
            }
            Poll::Pending => {
                let conn = self.conn.clone();
                tokio::spawn(async move {
                    let resp = fut.await;
                    if let (false, Some(resp)) = (oneway, resp) {
                        let _ = conn.send(fix.apply(resp)).await;
                    }
                    drop(slot);
                });
            }
        }
        self.burst += 1;
        if self.ready_bytes >= self.config.write_coalesce_bytes {
            self.flush().await;
        }
        if self.burst >= self.config.inline_burst {
            self.flush().await;
            self.burst = 0;
            tokio::task::yield_now().await;
        }
    }

    /// Writes the responses made so far (directly, or queued behind what is queued already).
    async fn flush(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        self.ready_bytes = 0;
        let ready = std::mem::take(&mut self.ready);
        // A failure closes the connection; the reader sees that next.
        let _ = self.conn.send_all(ready).await;
        self.slots.clear();
    }
}

/// What the transport sets on every response: the request's opaque and serialize type, the
/// RESPONSE flag.
#[derive(Clone, Copy)]
struct Fixup {
    opaque: i32,
    serialize_type: crate::protocol::SerializeType,
}

impl Fixup {
    fn apply(self, mut resp: RemotingCommand) -> RemotingCommand {
        resp.opaque = self.opaque;
        resp.flag = (resp.flag | FLAG_RESPONSE) & !FLAG_ONEWAY;
        resp.serialize_type = self.serialize_type;
        resp
    }
}

/// Writes all of `chunks` with vectored writes; fails with `PeerNotReading` (closing the
/// connection) when the peer accepts no byte for `stall`.
async fn write_all_or_stall(
    conn: &Connection,
    stream: &TcpStream,
    chunks: &[Bytes],
    stall: Option<Duration>,
) -> Result<(), NetError> {
    const MAX_IOV: usize = 64;
    let (mut i, mut off) = (0usize, 0usize);
    while i < chunks.len() {
        if chunks[i].len() == off {
            i += 1;
            off = 0;
            continue;
        }
        let slices: Vec<IoSlice<'_>> = std::iter::once(&chunks[i][off..])
            .chain(chunks[i + 1..].iter().map(|c| &c[..]))
            .take(MAX_IOV)
            .map(IoSlice::new)
            .collect();
        let mut n = match stream.try_write_vectored(&slices) {
            Ok(0) => return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let ready = stream.writable();
                match stall {
                    Some(stall) => tokio::time::timeout(stall, ready)
                        .await
                        .map_err(|_| conn.peer_not_reading(stall))??,
                    None => ready.await?,
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        while n > 0 {
            let left = chunks[i].len() - off;
            if n < left {
                off += n;
                n = 0;
            } else {
                n -= left;
                i += 1;
                off = 0;
            }
        }
    }
    Ok(())
}

/// The writer task: writes what is queued (everything queued at once in one go, up to
/// [`NetConfig::write_coalesce_bytes`]) until the connection closes.
pub(super) async fn write_loop(
    conn: Arc<Connection>,
    half: Arc<OwnedWriteHalf>,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    config: NetConfig,
) {
    let mut closed = conn.closed.subscribe();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut chunks: Vec<Bytes> = Vec::new();
    let stall = config.write_stall_timeout;
    let stream: &TcpStream = half.as_ref().as_ref();
    loop {
        let first = tokio::select! {
            biased;
            c = rx.recv() => match c {
                Some(c) => c,
                None => break,
            },
            _ = closed.wait_for(|c| *c) => break,
        };
        // Room this batch holds under the queued-bytes bound, given back once it is written.
        let mut room = first.room as usize;
        gather(first.what, &mut buf, &mut chunks, &config);
        let mut queued = buf.len() + chunks.iter().map(Bytes::len).sum::<usize>();
        while queued < config.write_coalesce_bytes {
            match rx.try_recv() {
                Ok(c) => {
                    room += c.room as usize;
                    gather(c.what, &mut buf, &mut chunks, &config);
                    queued = buf.len() + chunks.iter().map(Bytes::len).sum::<usize>();
                }
                Err(_) => break,
            }
        }
        if !buf.is_empty() {
            chunks.push(buf.split().freeze());
        }
        let result = write_all_or_stall(&conn, stream, &chunks, stall).await;
        chunks.clear();
        conn.room.add_permits(room);
        if buf.capacity() > 4 * 1024 * 1024 {
            buf = BytesMut::with_capacity(64 * 1024);
        }
        if let Err(e) = result {
            tracing::debug!(conn = conn.id, error = %e, "write failed");
            conn.close();
            break;
        }
        conn.write_side().release_if_empty(&rx);
    }
    conn.write_side().detach();
    // Dropping the last handle of the write half shuts its direction down.
}
