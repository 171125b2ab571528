//! The slave's side: connects to its master's HA address (configured, or learned from the
//! NameServer), says where its log ends, appends what the master streams byte for byte and
//! reports its offset after each batch and every second. Reconnects with back-off; a refusal
//! (diverged log, different segment size) is shown by `wasmq cluster` and retried slowly,
//! and nothing is appended meanwhile.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::BytesMut;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{watch, Mutex};

use super::wire::{read_frame, Frame, Hello, WireError};
use super::EPOCH;
use crate::context::Broker;

/// Reports go out at least this often (the master's liveness check of a slave).
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// A master silent this long (it heartbeats every second) is given up on.
const MASTER_SILENCE: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("the master refused: {0}")]
    Refused(String),
    #[error("the master sent nothing for {0:?}")]
    Silent(Duration),
    #[error("{0}")]
    Protocol(String),
    /// The store refused the master's bytes: replication stops until an operator acts.
    #[error("{0}")]
    Append(String),
}

/// Replicates from the master until shutdown (only on a slave).
pub async fn run(b: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut master = b.replication.watch_master();
    let mut backoff = new_backoff();
    let mut last_error: Option<String> = None;
    loop {
        let addr = master.borrow_and_update().clone();
        let Some(addr) = addr else {
            tokio::select! {
                _ = super::stopped(&mut shutdown) => return,
                r = master.changed() => if r.is_err() { return },
            }
            continue;
        };
        let ha = addr.ha_addr.clone();
        let began = std::time::Instant::now();
        let result = tokio::select! {
            _ = super::stopped(&mut shutdown) => return,
            // The master moved: reconnect to the new address at once.
            _ = moved(&mut master, &ha) => { backoff = new_backoff(); continue }
            r = follow(&b, &ha) => r,
        };
        b.replication.link_state(false, None);
        if began.elapsed() > MASTER_SILENCE {
            // The link was up for a while: start the back-off over.
            backoff = new_backoff();
        }
        let delay = backoff.next().unwrap_or(Duration::from_secs(5));
        let e = match result {
            Ok(()) => continue,
            Err(e) => e,
        };
        let msg = e.to_string();
        let serious = matches!(e, LinkError::Refused(_) | LinkError::Append(_));
        if serious {
            b.replication.link_error(Some(msg.clone()));
        }
        if last_error.as_deref() != Some(msg.as_str()) {
            if serious {
                tracing::error!(master = %ha, error = %msg, "replication stopped; retrying in {delay:?}");
            } else {
                tracing::warn!(master = %ha, error = %msg, "replication link down; reconnecting in {delay:?}");
            }
            last_error = Some(msg);
        }
        tokio::select! {
            _ = super::stopped(&mut shutdown) => return,
            _ = moved(&mut master, &ha) => backoff = new_backoff(),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Resolves when the master's HA address is no longer `ha` (learning its client address
/// for the same HA address is not a move).
async fn moved(
    rx: &mut watch::Receiver<Option<crate::context::replication::MasterAddrs>>,
    ha: &str,
) {
    loop {
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
        if rx.borrow().as_ref().map(|m| m.ha_addr.as_str()) != Some(ha) {
            return;
        }
    }
}

fn new_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

async fn send(w: &Mutex<OwnedWriteHalf>, f: &Frame) -> Result<(), WireError> {
    let mut b = BytesMut::with_capacity(64);
    f.encode_header(&mut b);
    w.lock().await.write_all(&b).await?;
    Ok(())
}

/// One connection to the master: hello, then append what it streams until something fails.
async fn follow(b: &Arc<Broker>, ha: &str) -> Result<(), LinkError> {
    let sock = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(ha))
        .await
        .map_err(|_| LinkError::Protocol(format!("connecting to {ha} timed out")))?
        .map_err(WireError::from)?;
    let _ = sock.set_nodelay(true);
    let (rd, wr) = sock.into_split();
    let mut rd = BufReader::with_capacity(512 << 10, rd);
    let wr = Arc::new(Mutex::new(wr));
    let mine = b.store.log_max_offset();
    send(
        &wr,
        &Frame::Hello(Hello {
            broker_name: b.config.broker_name.clone(),
            broker_id: b.config.broker_id,
            epoch: EPOCH,
            segment_size: b.config.store.commit_log_segment_size,
            offset: mine,
        }),
    )
    .await?;
    let welcome = match tokio::time::timeout(MASTER_SILENCE, read_frame(&mut rd)).await {
        Err(_) => return Err(LinkError::Silent(MASTER_SILENCE)),
        Ok(r) => match r? {
            Frame::Welcome(w) => w,
            Frame::Refuse(reason) => return Err(LinkError::Refused(reason)),
            other => {
                return Err(LinkError::Protocol(format!(
                    "expected a welcome, got {other:?}"
                )))
            }
        },
    };
    if welcome.segment_size != b.config.store.commit_log_segment_size {
        return Err(LinkError::Refused(format!(
            "commit_log_segment_size differs: master {} bytes, slave {} bytes",
            welcome.segment_size, b.config.store.commit_log_segment_size
        )));
    }
    if welcome.start != mine && !(mine == 0 && b.store.log_min_offset() == 0) {
        return Err(LinkError::Protocol(format!(
            "the master starts the stream at {} but this log ends at {mine}",
            welcome.start
        )));
    }
    tracing::info!(master = %ha, from = welcome.start, master_max = welcome.max_offset, "replicating from the master");
    b.replication.link_state(true, Some(welcome.max_offset));
    b.replication.link_error(None);
    // Reports every second, whatever arrives (the master's liveness check of this slave).
    let ticker = {
        let (b, wr) = (b.clone(), wr.clone());
        tokio::spawn(async move {
            let mut t = tokio::time::interval(REPORT_EVERY);
            loop {
                t.tick().await;
                let offset = b.store.log_max_offset();
                if send(&wr, &Frame::Report { offset }).await.is_err() {
                    return;
                }
                adopt_topics(&b);
            }
        })
    };
    let _stop_ticker = AbortOnDrop(ticker);
    loop {
        let f = match tokio::time::timeout(MASTER_SILENCE, read_frame(&mut rd)).await {
            Err(_) => return Err(LinkError::Silent(MASTER_SILENCE)),
            Ok(f) => f?,
        };
        match f {
            Frame::Data {
                offset,
                master_max,
                crc,
                bytes,
            } => {
                let got = crc32fast::hash(&bytes);
                if got != crc {
                    return Err(LinkError::Protocol(format!(
                        "checksum mismatch in the batch at offset {offset} ({} bytes): {got:#x} != {crc:#x}",
                        bytes.len()
                    )));
                }
                b.store
                    .append_replica(offset, &bytes)
                    .map_err(|e| LinkError::Append(e.to_string()))?;
                b.replication.link_state(true, Some(master_max));
            }
            Frame::Heartbeat { master_max } => b.replication.link_state(true, Some(master_max)),
            Frame::Refuse(reason) => return Err(LinkError::Refused(reason)),
            other => {
                return Err(LinkError::Protocol(format!(
                    "unexpected frame from the master: {other:?}"
                )))
            }
        }
        // One report per burst: when nothing more is buffered, say where the log ends.
        if rd.buffer().is_empty() {
            let offset = b.store.log_max_offset();
            send(&wr, &Frame::Report { offset }).await?;
        }
    }
}

/// Topics whose messages arrived by replication before the metadata sync brought their
/// configs (a topic auto-created on the master moments before it died) get a config sized to
/// their queues, so the slave routes and serves them; the next sync makes them the master's.
pub fn adopt_topics(b: &Broker) -> usize {
    let mut queues: std::collections::BTreeMap<String, u32> = Default::default();
    for cq in b.store.consume_queues() {
        if b.topics.get(cq.topic()).is_none() {
            let n = queues.entry(cq.topic().to_string()).or_default();
            *n = (*n).max(cq.queue_id().max(0) as u32 + 1);
        }
    }
    let mut adopted = 0;
    for (topic, n) in queues {
        match b.topics.get_or_create(&topic, n) {
            Ok(_) => {
                tracing::info!(topic, queues = n, "topic adopted from replicated messages");
                adopted += 1;
            }
            Err(e) => tracing::warn!(topic, error = %e, "cannot adopt a replicated topic"),
        }
    }
    if adopted > 0 {
        b.topics_changed();
    }
    adopted
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
