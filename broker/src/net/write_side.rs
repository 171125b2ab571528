//! The socket's write side, shared by everyone who writes to one peer.
//!
//! Whoever has a frame to send writes it **directly** (one non-blocking `writev`, under a short
//! lock) when nothing is queued: a response costs one syscall in the task that made it, with no
//! hop to another task. Only what the socket does not take at once, and whatever is sent while
//! something is queued, goes to the connection's **writer task**, which owns the socket until its
//! queue is empty (then it hands it back: `busy` false). Frames never interleave: a direct write
//! happens only while the writer is idle, under the same lock the queueing side takes.
//!
//! The writer task itself is in [`super::driver`]; [`gather`] lays out what it takes: small frames
//! encoded into one buffer, bodies above [`NetConfig::write_copy_threshold`] and zero-copy parts
//! written from their own buffers, all in one vectored write.

use std::cell::RefCell;
use std::io::IoSlice;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::config::NetConfig;
use crate::protocol::{response, RemotingCommand};

/// What is queued for the writer, with the room it holds under the queued-bytes bound.
pub(crate) struct Outbound {
    pub(super) what: Out,
    pub(super) room: u32,
}

pub(crate) enum Out {
    Cmd(RemotingCommand),
    /// The rest of frames a direct write could not finish.
    Bytes(Bytes),
}

/// The write half and whether the writer task owns it.
#[derive(Default)]
pub(super) struct WriteState {
    /// The socket, from when the connection runs until its writer stopped.
    half: Option<Arc<OwnedWriteHalf>>,
    /// Something is queued for (or being written by) the writer task: nobody else writes.
    busy: bool,
}

pub(super) struct WriteSide {
    state: Mutex<WriteState>,
    tx: mpsc::UnboundedSender<Outbound>,
}

/// What a direct write did with a frame.
pub(super) enum Direct {
    /// Written whole, or handed to the writer (what the socket did not take).
    Done,
    /// The socket failed (or the writer is gone): the connection must close.
    Failed(std::io::Error),
    /// The writer is busy (or not running): queue it, with room.
    Queue(Vec<RemotingCommand>),
}

thread_local! {
    /// Encoding buffer of direct writes, reused by every connection on this thread.
    static FRAMES: RefCell<BytesMut> = RefCell::new(BytesMut::with_capacity(16 * 1024));
}

/// Parts above this size are not copied into the encoding buffer of a direct write.
const DIRECT_COPY_MAX: usize = 4 * 1024;

impl WriteSide {
    pub(super) fn new() -> (WriteSide, mpsc::UnboundedReceiver<Outbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let side = WriteSide {
            state: Mutex::new(WriteState::default()),
            tx,
        };
        (side, rx)
    }

    pub(super) fn attach(&self, half: Arc<OwnedWriteHalf>) {
        self.state.lock().half = Some(half);
    }

    /// The writer stopped: nobody writes to the socket any more.
    pub(super) fn detach(&self) {
        self.state.lock().half = None;
    }

    /// Queues for the writer task (which then owns the socket until its queue is empty); false
    /// when the writer is gone.
    pub(super) fn enqueue(&self, o: Outbound) -> bool {
        let mut st = self.state.lock();
        st.busy = true;
        self.tx.send(o).is_ok()
    }

    /// The writer wrote everything it took: it gives the socket back if nothing more is queued.
    pub(super) fn release_if_empty(&self, rx: &mpsc::UnboundedReceiver<Outbound>) -> bool {
        let mut st = self.state.lock();
        if rx.is_empty() {
            st.busy = false;
            true
        } else {
            false
        }
    }

    /// Writes `cmds` as one `writev` when the writer is idle. What the socket does not take goes
    /// to the writer (without room: at most one such remainder exists, since everything after it
    /// is queued with room until the writer is idle again).
    pub(super) fn write_direct(&self, cmds: Vec<RemotingCommand>) -> Direct {
        let mut st = self.state.lock();
        let Some(half) = st.half.as_ref().filter(|_| !st.busy) else {
            return Direct::Queue(cmds);
        };
        let stream: &TcpStream = half.as_ref().as_ref();
        // The bytes the socket did not take, or the error that failed the write.
        let rest = FRAMES.with(|frames| {
            let mut buf = frames.borrow_mut();
            buf.clear();
            // Parts in order: ranges of `buf` (encoded headers and small bodies) and large bodies.
            let mut parts: Vec<Part> = Vec::with_capacity(2 * cmds.len());
            let mut mark = 0;
            for cmd in &cmds {
                let Some(cmd) = encodable(cmd, &mut buf) else {
                    continue;
                };
                let body = &cmd.body;
                if body.len() > DIRECT_COPY_MAX {
                    parts.push(Part::Buf(mark, buf.len()));
                    mark = buf.len();
                    parts.push(Part::Body(body.clone()));
                } else {
                    buf.extend_from_slice(body);
                }
            }
            parts.push(Part::Buf(mark, buf.len()));
            let total: usize = parts.iter().map(|p| p.len()).sum();
            let slices: Vec<IoSlice<'_>> = parts
                .iter()
                .filter(|p| p.len() > 0)
                .map(|p| IoSlice::new(p.bytes(&buf)))
                .collect();
            let n = match stream.try_write_vectored(&slices) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            Ok((n < total).then(|| remainder(&parts, &buf, n)))
        });
        match rest {
            Ok(None) => Direct::Done,
            Ok(Some(rest)) => {
                st.busy = true;
                let what = Out::Bytes(rest);
                match self.tx.send(Outbound { what, room: 0 }) {
                    Ok(()) => Direct::Done,
                    Err(_) => Direct::Failed(std::io::ErrorKind::BrokenPipe.into()),
                }
            }
            Err(e) => Direct::Failed(e),
        }
    }
}

/// A frame's parts in a direct write.
enum Part {
    Buf(usize, usize),
    Body(Bytes),
}

impl Part {
    fn len(&self) -> usize {
        match self {
            Part::Buf(a, b) => b - a,
            Part::Body(b) => b.len(),
        }
    }

    fn bytes<'a>(&'a self, buf: &'a [u8]) -> &'a [u8] {
        match self {
            Part::Buf(a, b) => &buf[*a..*b],
            Part::Body(b) => b,
        }
    }
}

/// The bytes of `parts` after the first `written`, in one buffer.
fn remainder(parts: &[Part], buf: &[u8], mut written: usize) -> Bytes {
    let mut rest = BytesMut::new();
    for p in parts {
        let b = p.bytes(buf);
        if written >= b.len() {
            written -= b.len();
            continue;
        }
        rest.extend_from_slice(&b[written..]);
        written = 0;
    }
    rest.freeze()
}

/// A command whose header could be encoded: itself, or a SYSTEM_ERROR response in its place.
enum Cmd<'a> {
    Same(&'a RemotingCommand),
    Replaced(RemotingCommand),
}

impl std::ops::Deref for Cmd<'_> {
    type Target = RemotingCommand;
    fn deref(&self) -> &RemotingCommand {
        match self {
            Cmd::Same(c) => c,
            Cmd::Replaced(c) => c,
        }
    }
}

/// Encodes `cmd`'s header into `buf`. An unencodable response becomes a SYSTEM_ERROR response so
/// the peer is not left waiting; an unencodable request is dropped (`None`).
fn encodable<'a>(cmd: &'a RemotingCommand, buf: &mut BytesMut) -> Option<Cmd<'a>> {
    let at = buf.len();
    let Err(e) = cmd.encode_header(buf) else {
        return Some(Cmd::Same(cmd));
    };
    buf.truncate(at);
    tracing::warn!(code = cmd.code, opaque = cmd.opaque, error = %e, "cannot encode command");
    if !cmd.is_response() {
        return None;
    }
    let mut err = RemotingCommand::response_to(
        cmd,
        response::SYSTEM_ERROR,
        Some("response could not be encoded".into()),
    );
    err.flag = cmd.flag;
    err.serialize_type = cmd.serialize_type;
    if err.encode_header(buf).is_err() {
        buf.truncate(at);
        return None;
    }
    Some(Cmd::Replaced(err))
}

/// Appends `o` to the writer's batch: small frames into `buf`, large and raw parts as their own.
pub(super) fn gather(o: Out, buf: &mut BytesMut, chunks: &mut Vec<Bytes>, config: &NetConfig) {
    match o {
        Out::Bytes(b) => {
            if !buf.is_empty() {
                chunks.push(buf.split().freeze());
            }
            chunks.push(b);
        }
        Out::Cmd(cmd) => {
            let Some(cmd) = encodable(&cmd, buf) else {
                return;
            };
            if cmd.body.len() >= config.write_copy_threshold {
                chunks.push(buf.split().freeze());
                chunks.push(cmd.body.clone());
            } else {
                buf.extend_from_slice(&cmd.body);
            }
        }
    }
}
