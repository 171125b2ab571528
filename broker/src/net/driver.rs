//! The driver of a [`Connection`]: a reader loop in the connection's task and one writer task.
//!
//! Reader: decodes frames from a growing `BytesMut`; a response completes the matching pending request by
//! opaque; a request is handed to the [`RequestHandler`] in a task of its own, so a held request (long poll)
//! never blocks the next one. Writer: fed by a bounded queue; it drains everything queued into one buffer and
//! writes it with one `write_all`, so N concurrent responses cost about one syscall, not N. Bodies above
//! [`NetConfig::write_copy_threshold`] are written from their own buffer instead of being copied.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::config::NetConfig;
use super::connection::Connection;
use super::error::NetError;
use super::handler::RequestHandler;
use crate::protocol::{response, FrameCodec, RemotingCommand, FLAG_ONEWAY, FLAG_RESPONSE};

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
            let mut cmd = RemotingCommand::decode(frame)?;
            if cmd.is_response() {
                conn.complete(cmd);
            } else {
                cmd.received_at = Some(std::time::Instant::now());
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
