//! `wasmq bench produce`: `--threads` connections, each with `--inflight` sending tasks sharing
//! it (requests pipelined, replies matched by opaque), in sync, batch or oneway mode, until
//! `--count` messages are claimed or `--duration-secs` passes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use wasmq::net::{NetError, RemotingClient};
use wasmq::protocol::{batch, response, RemotingCommand};

use super::baseline::{self, Baselines};
use super::budget::Budget;
use super::report::{ticker, Counters, Summary};
use super::{deadline, merge, queue_offset, Mode, ProduceArgs, TaskOut, Window};
use crate::message::{properties, send_request, uniq_key};
use crate::rpc::{Cluster, TIMEOUT};

/// How long a oneway run waits, after its last send, for the queues to show every message.
const ONEWAY_SETTLE: Duration = Duration::from_secs(10);
/// A oneway run stops waiting once the queues have not grown for this long.
const ONEWAY_STALL: Duration = Duration::from_secs(1);

/// What every sending task shares.
struct Shared {
    topic: String,
    mode: Mode,
    per_req: u64,
    size: usize,
    body: Bytes,
    budget: Budget,
    counters: Arc<Counters>,
    deadline: Instant,
}

impl Shared {
    /// A send request of `n` messages (n > 1 only in batch mode); `seq` makes unique keys.
    fn request(&self, queue: i32, n: u64, seq: u64) -> Result<RemotingCommand> {
        let uniq = uniq_key(seq);
        if self.mode == Mode::Batch {
            let mut b = Vec::with_capacity(n as usize * (self.size + 96));
            for i in 0..n {
                let p = properties(None, None, &[], &format!("{uniq}{i:04}"));
                batch::encode_entry(&mut b, 0, &self.body, p.as_bytes())?;
            }
            Ok(send_request(&self.topic, queue, "", b, true))
        } else {
            let p = properties(None, None, &[], &uniq);
            Ok(
                send_request(&self.topic, queue, &p, Vec::new(), false)
                    .with_body(self.body.clone()),
            )
        }
    }
}

/// One sending task: claim, send, wait for the reply (or not: oneway), until the budget or
/// the deadline ends it.
async fn sender(s: Arc<Shared>, c: Arc<RemotingClient>, queue: i32, id: u64) -> Result<TaskOut> {
    let mut out = TaskOut::new();
    let mut seq = id << 40;
    loop {
        let t0 = Instant::now();
        if t0 >= s.deadline {
            break;
        }
        let n = s.budget.claim(s.per_req);
        if n == 0 {
            break;
        }
        seq += 1;
        if s.mode == Mode::Oneway {
            // The connection's queue is full while the broker is behind: wait for room.
            loop {
                match c.invoke_oneway(s.request(queue, n, seq)?) {
                    Ok(()) => break,
                    Err(NetError::QueueFull) if Instant::now() < s.deadline + ONEWAY_SETTLE => {
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            s.counters.add(n, n * s.size as u64);
            continue;
        }
        let r = c.invoke(s.request(queue, n, seq)?, TIMEOUT).await?;
        let t1 = Instant::now();
        if r.code == response::SUCCESS {
            let _ = out
                .hist
                .record((t1.duration_since(t0).as_nanos() as u64).max(1));
            out.last = Some(t1);
            s.counters.add(n, n * s.size as u64);
        } else {
            s.counters.error(r.code);
        }
    }
    Ok(out)
}

/// Sum of the max offsets of `queues` (each on its thread's connection).
async fn max_offsets(conns: &[(Arc<RemotingClient>, i32)], topic: &str) -> Result<i64> {
    let mut seen = std::collections::BTreeSet::new();
    let mut sum = 0;
    for (c, q) in conns {
        if seen.insert((c.connection().peer_addr(), *q)) {
            sum += queue_offset(c, topic, *q, true).await?;
        }
    }
    Ok(sum)
}

/// After a oneway run's last send: polls the queues until they hold `sent` more messages than
/// `before`, or stop growing for [`ONEWAY_STALL`], or [`ONEWAY_SETTLE`] passes. Returns how many
/// were stored and when the last of them was seen.
async fn settle(
    conns: &[(Arc<RemotingClient>, i32)],
    topic: &str,
    before: i64,
    sent: u64,
) -> Result<(u64, Instant)> {
    let give_up = Instant::now() + ONEWAY_SETTLE;
    let (mut stored, mut seen) = (0u64, Instant::now());
    loop {
        let now = (max_offsets(conns, topic).await? - before).max(0) as u64;
        let t = Instant::now();
        if now > stored {
            (stored, seen) = (now, t);
        }
        if stored >= sent || t >= give_up || t.duration_since(seen) >= ONEWAY_STALL {
            return Ok((stored, seen));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

pub async fn run(namesrv: &str, a: ProduceArgs) -> Result<()> {
    let threads = a.threads.max(1);
    let mut cluster = Cluster::new(namesrv);
    let queues = cluster.queues(&a.topic, true).await?;
    let mut conns = Vec::with_capacity(threads);
    for t in 0..threads {
        let (addr, q) = queues[t % queues.len()].clone();
        conns.push((Arc::new(RemotingClient::connect(addr.as_str()).await?), q));
    }
    let before = if a.mode == Mode::Oneway {
        max_offsets(&conns, &a.topic).await?
    } else {
        0
    };
    let counters = Arc::new(Counters::default());
    let window = Window::open(a.broker_pid)?;
    let shared = Arc::new(Shared {
        topic: a.topic.clone(),
        mode: a.mode,
        per_req: if a.mode == Mode::Batch {
            a.batch as u64
        } else {
            1
        },
        size: a.size,
        body: Bytes::from(vec![b'x'; a.size]),
        budget: Budget::new(a.count),
        counters: counters.clone(),
        deadline: deadline(window.start, a.duration_secs),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let tick = ticker(
        counters.clone(),
        stop.clone(),
        window.start,
        Duration::from_secs_f64(a.duration_secs.clamp(0.0, 86_400.0)) + ONEWAY_SETTLE + TIMEOUT,
    );
    let mut tasks = Vec::new();
    for (t, (c, q)) in conns.iter().enumerate() {
        for k in 0..a.inflight as u64 {
            let id = t as u64 * a.inflight as u64 + k;
            tasks.push(tokio::spawn(sender(shared.clone(), c.clone(), *q, id)));
        }
    }
    let mut outs = Vec::with_capacity(tasks.len());
    let mut failed = None;
    for t in tasks {
        match t.await? {
            Ok(o) => outs.push(o),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    let (hist, mut last) = merge(outs);
    let sent = counters.msgs.load(Ordering::Relaxed);
    let mut msgs = sent;
    let mut note = None;
    if a.mode == Mode::Oneway && failed.is_none() {
        // Oneway has no replies: the window ends when the queues hold every message sent, or
        // at the last growth seen before they stop growing (the broker may drop oneway sends,
        // e.g. under flow control; only what is stored counts).
        let (stored, at) = settle(&conns, &a.topic, before, sent).await?;
        msgs = stored;
        last = Some(at);
        note = Some(format!(
            "oneway: oneway_sent={sent} oneway_stored={stored} oneway_lost={}",
            sent.saturating_sub(stored)
        ));
    }
    let (client_cpu, broker_cpu) = window.cpu_since()?;
    let end = last.unwrap_or_else(Instant::now);
    stop.store(true, Ordering::Relaxed);
    tick.abort();
    let _ = tick.await;
    drop(conns);
    if let Some(e) = failed {
        return Err(e);
    }
    let mut baselines = Baselines::default();
    if !a.no_baseline {
        baselines.echo = Some(baseline::echo(20_000, Duration::from_secs(1)).await?);
        // The store baseline blocks (its own thread and runtime): off the async workers.
        baselines.store = Some(
            tokio::task::spawn_blocking(|| {
                baseline::store_append(Duration::from_millis(1500), 2_000_000)
            })
            .await??,
        );
    }
    let summary = Summary {
        title: format!(
            "produce total ({threads} threads x {} in flight, {} B, {})",
            a.inflight,
            a.size,
            match a.mode {
                Mode::Sync => "sync".to_string(),
                Mode::Oneway => "oneway".to_string(),
                Mode::Batch => format!("batch of {}", a.batch),
            }
        ),
        msgs,
        bytes: msgs * a.size as u64,
        errors: counters.errors(),
        window: end.saturating_duration_since(window.start),
        latency: (a.mode != Mode::Oneway).then_some(hist),
        client_cpu,
        broker_cpu,
        baselines,
        note,
    };
    print!("{}", summary.render());
    if msgs == 0 && !summary.errors.is_empty() {
        bail!("no message was accepted: {:?}", summary.errors);
    }
    Ok(())
}
