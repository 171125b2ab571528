//! The master's side: slaves connect to the HA port, say where their log ends, and receive
//! the commit log from there; their reports feed [`Replication`](crate::context::Replication)
//! (in-sync set, sync-master acknowledgements).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::wire::{read_frame, Frame, Hello, Welcome, WireError};
use super::EPOCH;
use crate::context::Broker;

/// Bytes of whole records per data frame (a larger record goes alone).
const BATCH: usize = 256 << 10;
/// A master with nothing to send says so this often.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A slave that reports nothing this long (it reports every second) is dropped, so a dead
/// connection does not keep its id from reconnecting.
const SLAVE_SILENCE: Duration = Duration::from_secs(10);
/// A slave must say hello this soon after connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts slaves until shutdown.
pub async fn serve(b: Arc<Broker>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = super::stopped(&mut shutdown) => return,
            r = listener.accept() => match r {
                Ok((sock, peer)) => {
                    let b = b.clone();
                    let stop = shutdown.clone();
                    tokio::spawn(async move {
                        if let Err(e) = session(b, sock, peer, stop).await {
                            tracing::warn!(%peer, error = %e, "replication session ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "HA accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("refused: {0}")]
    Refused(String),
    #[error("slave said nothing within {0:?}")]
    Silent(Duration),
}

async fn refuse(w: &mut OwnedWriteHalf, reason: String) -> SessionError {
    let mut b = BytesMut::new();
    Frame::Refuse(reason.clone()).encode_header(&mut b);
    let _ = w.write_all(&b).await;
    let _ = w.shutdown().await;
    SessionError::Refused(reason)
}

/// Checks a slave's hello against this master's log; the offset to stream from, or why not.
fn accept_hello(b: &Broker, h: &Hello) -> Result<u64, String> {
    let seg = b.config.store.commit_log_segment_size;
    if h.broker_name != b.config.broker_name {
        return Err(format!(
            "slave belongs to broker {:?}, this master is {:?}",
            h.broker_name, b.config.broker_name
        ));
    }
    if h.broker_id <= 0 {
        return Err(format!("slave broker id {} must be above 0", h.broker_id));
    }
    if h.segment_size != seg {
        return Err(format!(
            "commit_log_segment_size differs: master {seg} bytes, slave {} bytes; segments must be byte-identical",
            h.segment_size
        ));
    }
    if h.epoch > EPOCH {
        return Err(format!(
            "slave's log epoch {} is newer than the master's {EPOCH}",
            h.epoch
        ));
    }
    let (min, max) = (b.store.log_min_offset(), b.store.log_max_offset());
    if h.offset > max {
        return Err(format!(
            "slave holds the log up to offset {} but the master's log ends at {max}: the logs diverged",
            h.offset
        ));
    }
    if h.offset == 0 {
        // An empty slave takes everything still stored.
        return Ok(min);
    }
    if h.offset < min {
        return Err(format!(
            "slave holds the log up to offset {} but the master keeps only from {min}: clear the slave's store to copy it again",
            h.offset
        ));
    }
    Ok(h.offset)
}

async fn session(
    b: Arc<Broker>,
    sock: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SessionError> {
    let _ = sock.set_nodelay(true);
    let (mut rd, mut wr) = sock.into_split();
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut rd)).await {
        Err(_) => return Err(SessionError::Silent(HELLO_TIMEOUT)),
        Ok(Err(e)) => return Err(e.into()),
        Ok(Ok(Frame::Hello(h))) => h,
        Ok(Ok(other)) => {
            return Err(refuse(&mut wr, format!("expected a hello, got {other:?}")).await);
        }
    };
    if b.replication.is_slave() {
        return Err(refuse(&mut wr, "this broker is a slave, not a master".into()).await);
    }
    let start = match accept_hello(&b, &hello) {
        Ok(s) => s,
        Err(reason) => return Err(refuse(&mut wr, reason).await),
    };
    let id = hello.broker_id;
    let sess = match b.replication.slave_connected(id, peer, hello.offset) {
        Ok(s) => s,
        Err(reason) => return Err(refuse(&mut wr, reason).await),
    };
    tracing::info!(%peer, slave = id, from = start, "slave connected");
    let result = stream(&b, &mut rd, &mut wr, id, sess, start, &mut shutdown).await;
    b.replication.slave_gone(id, sess);
    tracing::info!(%peer, slave = id, "slave disconnected");
    result
}

/// Streams the log from `start` while reading the slave's reports.
async fn stream(
    b: &Arc<Broker>,
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    id: i64,
    sess: u64,
    start: u64,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), SessionError> {
    let mut log_end = b.store.watch_log_end();
    let mut out = BufWriter::with_capacity(BATCH + 4096, wr);
    let mut hdr = BytesMut::with_capacity(64);
    hdr.clear();
    Frame::Welcome(Welcome {
        epoch: EPOCH,
        segment_size: b.config.store.commit_log_segment_size,
        min_offset: b.store.log_min_offset(),
        max_offset: b.store.log_max_offset(),
        start,
    })
    .encode_header(&mut hdr);
    out.write_all(&hdr).await.map_err(WireError::from)?;
    out.flush().await.map_err(WireError::from)?;
    // Reports arrive on their own task; it ends the session on garbage or a lie.
    let (bad_tx, mut bad_rx) = tokio::sync::oneshot::channel::<SessionError>();
    let reader = {
        let b = b.clone();
        async move {
            let e = loop {
                let frame = match tokio::time::timeout(SLAVE_SILENCE, read_frame(rd)).await {
                    Ok(f) => f,
                    Err(_) => break SessionError::Silent(SLAVE_SILENCE),
                };
                match frame {
                    Ok(Frame::Report { offset }) => {
                        let max = b.store.log_max_offset();
                        if offset > max {
                            break SessionError::Refused(format!(
                                "slave {id} reports offset {offset}, beyond the master's log end {max}"
                            ));
                        }
                        b.replication.slave_acked(id, sess, offset, max);
                    }
                    Ok(other) => {
                        break SessionError::Refused(format!(
                            "slave {id} sent an unexpected frame {other:?}"
                        ))
                    }
                    Err(e) => break e.into(),
                }
            };
            let _ = bad_tx.send(e);
        }
    };
    tokio::pin!(reader);
    let mut next = start;
    let mut idle = tokio::time::interval(HEARTBEAT);
    idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Send everything published, a frame at a time, then flush once.
        let mut sent = false;
        loop {
            match b.store.read_replica(next, BATCH) {
                Ok(Some(bytes)) => {
                    hdr.clear();
                    Frame::Data {
                        offset: next,
                        master_max: b.store.log_max_offset(),
                        crc: crc32fast::hash(&bytes),
                        bytes: bytes.clone(),
                    }
                    .encode_header(&mut hdr);
                    let w = async {
                        out.write_all(&hdr).await?;
                        out.write_all(&bytes).await
                    };
                    tokio::select! {
                        r = w => r.map_err(WireError::from)?,
                        _ = &mut reader => { return Err(bad_rx.try_recv().unwrap_or(SessionError::Wire(WireError::Closed))); }
                    }
                    next += bytes.len() as u64;
                    sent = true;
                }
                Ok(None) => break,
                Err((min, max)) => {
                    let reason = format!(
                        "slave {id} needs offset {next}, outside the master's log [{min}, {max})"
                    );
                    let _ = out.flush().await;
                    return Err(refuse(out.get_mut(), reason).await);
                }
            }
        }
        if sent {
            out.flush().await.map_err(WireError::from)?;
            idle.reset();
        }
        tokio::select! {
            _ = super::stopped(shutdown) => return Ok(()),
            _ = &mut reader => return Err(bad_rx.try_recv().unwrap_or(SessionError::Wire(WireError::Closed))),
            r = log_end.changed() => if r.is_err() { return Ok(()) },
            _ = idle.tick() => {
                hdr.clear();
                Frame::Heartbeat { master_max: b.store.log_max_offset() }.encode_header(&mut hdr);
                out.write_all(&hdr).await.map_err(WireError::from)?;
                out.flush().await.map_err(WireError::from)?;
            }
        }
    }
}
