//! The driver of a [`Connection`]: a reader loop in the connection's task and one writer task.
//!
//! Reader: decodes frames from a growing `BytesMut`; a response completes the matching pending request by
//! opaque; a request is handed to the [`RequestHandler`] in a task of its own, so a held request (long poll)
//! never blocks the next one. Each request holds one of the connection's
//! [`NetConfig::max_inflight_per_connection`] slots until its response is queued (a oneway one until its
//! handler returns), and one of its [`NetConfig::start_window`] places until its handler first waits on
//! something or finishes: a connection flooding the broker has at most that many fresh tasks queued
//! ahead of other connections' requests, while many long polls may be held at once. With no slot or
//! place free the reader reads ahead at most `READ_AHEAD` bytes, 64 KiB (so responses from the peer behind a
//! few requests still arrive) and then stops reading: further requests wait in the socket and TCP
//! pushes back on the peer.
//!
//! Writer: fed by a bounded queue; it drains everything queued into one buffer and writes it with one
//! `write_all`, so N concurrent responses cost about one syscall, not N. Bodies above
//! [`NetConfig::write_copy_threshold`] are written from their own buffer instead of being copied. What it
//! has written gives room back under [`NetConfig::max_queued_response_bytes`]; a peer that accepts no byte
//! for [`NetConfig::write_stall_timeout`] is closed (and logged).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::config::NetConfig;
use super::connection::{Connection, Outbound};
use super::error::NetError;
use super::handler::RequestHandler;
use crate::protocol::{response, FrameCodec, RemotingCommand, FLAG_ONEWAY, FLAG_RESPONSE};

/// Runs a connection until the peer closes it, an error occurs, it idles out, `close()` is called or
/// `shutdown` turns true. Calls the handler's `on_connect` / `on_disconnect` around it.
pub(crate) async fn drive(
    conn: Arc<Connection>,
    stream: TcpStream,
    rx: mpsc::Receiver<Outbound>,
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
    let slots = Slots::new(config);
    // Requests decoded while no slot (or no place in the start window) was free, in arrival order,
    // with their frame sizes.
    let mut waiting: VecDeque<(RemotingCommand, usize)> = VecDeque::new();
    let mut waiting_bytes = 0usize;
    loop {
        while !waiting.is_empty() {
            let Some(slot) = slots.try_take() else {
                break;
            };
            if let Some((req, size)) = waiting.pop_front() {
                waiting_bytes -= size;
                spawn_request(conn.clone(), handler.clone(), req, slot);
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
                if let Some(slot) = slots.try_take() {
                    spawn_request(conn.clone(), handler.clone(), cmd, slot);
                    continue;
                }
            }
            waiting_bytes += size;
            waiting.push_back((cmd, size));
        }
        if got_frame {
            idle.as_mut().reset(Instant::now() + idle_timeout);
        }
        // With requests waiting for a slot, read on only within the read-ahead bound.
        let can_read = waiting.is_empty() || buf.len() + waiting_bytes < READ_AHEAD;
        if can_read && buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            r = rd.read_buf(&mut buf), if can_read => {
                if r? == 0 {
                    return Ok(());
                }
            }
            slot = slots.take(), if !waiting.is_empty() => {
                if let Some((req, size)) = waiting.pop_front() {
                    waiting_bytes -= size;
                    spawn_request(conn.clone(), handler.clone(), req, slot);
                }
            }
            _ = &mut idle => return Err(NetError::IdleTimeout(idle_timeout)),
            _ = until_true(&mut shutdown) => return Ok(()),
            _ = closed.wait_for(|c| *c) => return Ok(()),
        }
    }
}

/// The per-connection bounds on requests: `inflight` slots (held until the response is queued) and a
/// small `window` of requests not yet started (held until the handler first waits or finishes), so a
/// flooding connection puts at most [`NetConfig::start_window`] fresh tasks ahead of other
/// connections' in the scheduler, while up to `max_inflight_per_connection` may wait (long polls).
struct Slots {
    inflight: Arc<Semaphore>,
    window: Arc<Semaphore>,
}

struct Slot {
    inflight: OwnedSemaphorePermit,
    window: OwnedSemaphorePermit,
}

impl Slots {
    fn new(config: &NetConfig) -> Slots {
        // Never closed, so acquiring fails only when no slot is free.
        Slots {
            inflight: Arc::new(Semaphore::new(
                config
                    .max_inflight_per_connection
                    .clamp(1, Semaphore::MAX_PERMITS),
            )),
            window: Arc::new(Semaphore::new(
                config.start_window.clamp(1, Semaphore::MAX_PERMITS),
            )),
        }
    }

    fn try_take(&self) -> Option<Slot> {
        let inflight = self.inflight.clone().try_acquire_owned().ok()?;
        let window = self.window.clone().try_acquire_owned().ok()?;
        Some(Slot { inflight, window })
    }

    /// Waits for both. Cancel-safe: a permit taken before the future is dropped goes back.
    async fn take(&self) -> Slot {
        const NEVER_CLOSED: &str = "a connection's slot semaphores are never closed";
        let inflight = self
            .inflight
            .clone()
            .acquire_owned()
            .await
            .expect(NEVER_CLOSED);
        let window = self
            .window
            .clone()
            .acquire_owned()
            .await
            .expect(NEVER_CLOSED);
        Slot { inflight, window }
    }
}

/// Polls the handler's future; gives the window permit back when its first poll returns (it waits
/// on something, or it is done).
struct FirstWait<F> {
    inner: F,
    window: Option<OwnedSemaphorePermit>,
}

impl<F: std::future::Future + Unpin> std::future::Future for FirstWait<F> {
    type Output = F::Output;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let r = std::pin::Pin::new(&mut self.inner).poll(cx);
        self.window = None;
        r
    }
}

/// Runs one request in a task of its own. Its place in the start window is given back when the
/// handler's first poll returns; its in-flight slot once the response is queued (or the handler of a
/// oneway request returned).
fn spawn_request(
    conn: Arc<Connection>,
    handler: Arc<dyn RequestHandler>,
    req: RemotingCommand,
    slot: Slot,
) {
    tokio::spawn(async move {
        let oneway = req.is_oneway();
        let opaque = req.opaque;
        let serialize_type = req.serialize_type;
        let resp = FirstWait {
            inner: handler.handle(conn.clone(), req),
            window: Some(slot.window),
        }
        .await;
        let inflight = slot.inflight;
        if !oneway {
            if let Some(mut resp) = resp {
                resp.opaque = opaque;
                resp.flag = (resp.flag | FLAG_RESPONSE) & !FLAG_ONEWAY;
                resp.serialize_type = serialize_type;
                let _ = conn.send(resp).await;
            }
        }
        drop(inflight);
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

/// Writes all of `data`; fails with `PeerNotReading` (closing the connection) when the peer accepts no
/// byte for `stall`.
async fn write_all_or_stall(
    conn: &Connection,
    wr: &mut OwnedWriteHalf,
    mut data: &[u8],
    stall: Option<Duration>,
) -> Result<(), NetError> {
    while !data.is_empty() {
        let n = match stall {
            Some(stall) => match tokio::time::timeout(stall, wr.write(data)).await {
                Ok(r) => r?,
                Err(_) => return Err(conn.peer_not_reading(stall)),
            },
            None => wr.write(data).await?,
        };
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
        }
        data = &data[n..];
    }
    Ok(())
}

async fn write_loop(
    conn: Arc<Connection>,
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outbound>,
    config: NetConfig,
) {
    let mut closed = conn.closed.subscribe();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut chunks: Vec<Bytes> = Vec::new();
    let stall = config.write_stall_timeout;
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
        encode_into(first.cmd, &mut buf, &mut chunks, &config);
        let mut queued = buf.len();
        while queued < config.write_coalesce_bytes {
            match rx.try_recv() {
                Ok(c) => {
                    room += c.room as usize;
                    encode_into(c.cmd, &mut buf, &mut chunks, &config);
                    queued = buf.len() + chunks.iter().map(Bytes::len).sum::<usize>();
                }
                Err(_) => break,
            }
        }
        let mut result = Ok(());
        for chunk in chunks.drain(..) {
            result = write_all_or_stall(&conn, &mut wr, &chunk, stall).await;
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() && !buf.is_empty() {
            result = write_all_or_stall(&conn, &mut wr, &buf, stall).await;
        }
        conn.room.add_permits(room);
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
