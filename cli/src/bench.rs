//! `wasmq bench produce|consume`: bounded load generators. Each task has its own connection;
//! figures are printed every second and at the end (msgs/s, MB/s, latency p50/p99/p999/max).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::{Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use wasmq::net::RemotingClient;
use wasmq::protocol::{batch, request, response, RemotingCommand};

use crate::message::{properties, send_request, uniq_key};
use crate::rpc::{ext, field_i64, Cluster, TIMEOUT};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Mode {
    Sync,
    Oneway,
    Batch,
}

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Send as fast as possible.
    Produce {
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long, default_value_t = 1024)]
        size: usize,
        #[arg(long, default_value_t = 10.0)]
        duration_secs: f64,
        /// Stop after this many messages in total.
        #[arg(long)]
        count: Option<u64>,
        #[arg(long, value_enum, default_value_t = Mode::Sync)]
        mode: Mode,
        /// Messages per request in batch mode.
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
    /// Pull a topic's backlog from its first offset as fast as possible.
    Consume {
        #[arg(long)]
        topic: String,
        #[arg(long, default_value = "wasmq-bench")]
        group: String,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long, default_value_t = 10.0)]
        duration_secs: f64,
        #[arg(long)]
        count: Option<u64>,
    },
}

#[derive(Default)]
struct Stats {
    msgs: AtomicU64,
    bytes: AtomicU64,
    errors: Mutex<std::collections::BTreeMap<i32, u64>>,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn report(label: &str, elapsed: f64, msgs: u64, bytes: u64, h: &Histogram<u64>) {
    println!(
        "{label}: {:.0} msgs/s {:.1} MB/s latency us p50={} p99={} p999={} max={}",
        msgs as f64 / elapsed,
        bytes as f64 / elapsed / 1e6,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
}

pub async fn run(namesrv: &str, cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Produce {
            topic,
            threads,
            size,
            duration_secs,
            count,
            mode,
            batch,
        } => {
            produce(
                namesrv,
                &topic,
                threads.max(1),
                size,
                duration_secs,
                count,
                mode,
                batch.max(1),
            )
            .await
        }
        BenchCmd::Consume {
            topic,
            group,
            threads,
            duration_secs,
            count,
        } => {
            consume(
                namesrv,
                &topic,
                &group,
                threads.max(1),
                duration_secs,
                count,
            )
            .await
        }
    }
}

/// Prints interval figures every second until `stop`.
fn ticker(
    stats: Arc<Stats>,
    hists: Arc<Mutex<Histogram<u64>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = (0u64, 0u64);
        let mut t = tokio::time::interval(Duration::from_secs(1));
        t.tick().await;
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            t.tick().await;
            let (m, b) = (
                stats.msgs.load(Ordering::Relaxed),
                stats.bytes.load(Ordering::Relaxed),
            );
            let h = hists.lock().map(|h| h.clone()).unwrap_or_else(|_| hist());
            report(
                &format!("[{:>4.0}s]", start.elapsed().as_secs_f64()),
                1.0,
                m - last.0,
                b - last.1,
                &h,
            );
            last = (m, b);
        }
    })
}

/// Lets the load tasks run until the deadline, the message limit, or their own end; then stops
/// them and the ticker, surfacing the first task error.
async fn finish(
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
    stats: &Stats,
    stop: &AtomicBool,
    tick: tokio::task::JoinHandle<()>,
    deadline: Instant,
    limit: u64,
) -> Result<()> {
    while Instant::now() < deadline
        && stats.msgs.load(Ordering::Relaxed) < limit
        && !tasks.iter().all(|t| t.is_finished())
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    let _ = tick.await;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn produce(
    namesrv: &str,
    topic: &str,
    threads: usize,
    size: usize,
    secs: f64,
    count: Option<u64>,
    mode: Mode,
    batch_n: usize,
) -> Result<()> {
    let mut cluster = Cluster::new(namesrv);
    let queues = cluster.queues(topic, true).await?;
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let all = Arc::new(Mutex::new(hist()));
    let limit = count.unwrap_or(u64::MAX);
    let started = Instant::now();
    let tick = ticker(stats.clone(), all.clone(), stop.clone());
    let mut tasks = Vec::new();
    for t in 0..threads {
        let (addr, q) = queues[t % queues.len()].clone();
        let (stats, stop, all, topic) =
            (stats.clone(), stop.clone(), all.clone(), topic.to_string());
        tasks.push(tokio::spawn(async move {
            let c = RemotingClient::connect(addr.as_str()).await?;
            let body = vec![b'x'; size];
            let per_req = if mode == Mode::Batch { batch_n } else { 1 };
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) && stats.msgs.load(Ordering::Relaxed) < limit {
                let uniq = uniq_key(seq);
                seq += 1;
                let req = if mode == Mode::Batch {
                    let mut b = Vec::with_capacity(per_req * (size + 80));
                    for i in 0..per_req {
                        let p = properties(None, None, &[], &format!("{uniq}{i:04}"));
                        batch::encode_entry(&mut b, 0, &body, p.as_bytes())?;
                    }
                    send_request(&topic, q, "", b, true)
                } else {
                    send_request(
                        &topic,
                        q,
                        &properties(None, None, &[], &uniq),
                        body.clone(),
                        false,
                    )
                };
                let t0 = Instant::now();
                if mode == Mode::Oneway {
                    c.invoke_oneway(req)?;
                } else {
                    let r = c.invoke(req, TIMEOUT).await?;
                    if r.code != response::SUCCESS {
                        *stats
                            .errors
                            .lock()
                            .expect("lock")
                            .entry(r.code)
                            .or_default() += 1;
                        continue;
                    }
                }
                let us = t0.elapsed().as_micros() as u64;
                if let Ok(mut h) = all.lock() {
                    let _ = h.record(us.max(1));
                }
                stats.msgs.fetch_add(per_req as u64, Ordering::Relaxed);
                stats
                    .bytes
                    .fetch_add((per_req * size) as u64, Ordering::Relaxed);
            }
            if mode == Mode::Oneway {
                // One acknowledged send drains what the connection still holds.
                let r = c
                    .invoke(send_request(&topic, q, "", b"end".to_vec(), false), TIMEOUT)
                    .await?;
                if r.code != response::SUCCESS {
                    bail!("final send answered {}", r.code);
                }
            }
            anyhow::Ok(())
        }));
    }
    finish(
        tasks,
        &stats,
        &stop,
        tick,
        started + Duration::from_secs_f64(secs),
        limit,
    )
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    let h = all.lock().map(|h| h.clone()).unwrap_or_else(|_| hist());
    report(
        &format!("produce total ({threads} threads, {size} B, {mode:?})"),
        elapsed,
        stats.msgs.load(Ordering::Relaxed),
        stats.bytes.load(Ordering::Relaxed),
        &h,
    );
    let errors = stats.errors.lock().map(|e| e.clone()).unwrap_or_default();
    if !errors.is_empty() {
        println!("errors by response code: {errors:?}");
    }
    Ok(())
}

async fn consume(
    namesrv: &str,
    topic: &str,
    group: &str,
    threads: usize,
    secs: f64,
    count: Option<u64>,
) -> Result<()> {
    let mut cluster = Cluster::new(namesrv);
    let queues = cluster.queues(topic, false).await?;
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let all = Arc::new(Mutex::new(hist()));
    let limit = count.unwrap_or(u64::MAX);
    let started = Instant::now();
    let tick = ticker(stats.clone(), all.clone(), stop.clone());
    let mut tasks = Vec::new();
    for t in 0..threads {
        let mine: Vec<(String, i32)> = queues.iter().skip(t).step_by(threads).cloned().collect();
        let (stats, stop, all, topic, group) = (
            stats.clone(),
            stop.clone(),
            all.clone(),
            topic.to_string(),
            group.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conns = std::collections::HashMap::new();
            let mut offsets = vec![0i64; mine.len()];
            let mut drained = vec![false; mine.len()];
            while !stop.load(Ordering::Relaxed)
                && stats.msgs.load(Ordering::Relaxed) < limit
                && drained.iter().any(|d| !d)
            {
                for (i, (addr, q)) in mine.iter().enumerate() {
                    if drained[i] {
                        continue;
                    }
                    if !conns.contains_key(addr) {
                        conns.insert(addr.clone(), RemotingClient::connect(addr.as_str()).await?);
                    }
                    let c = &conns[addr];
                    let req = RemotingCommand::new_request(
                        request::PULL_MESSAGE,
                        ext(&[
                            ("consumerGroup", &group),
                            ("topic", &topic),
                            ("queueId", &q.to_string()),
                            ("queueOffset", &offsets[i].to_string()),
                            ("maxMsgNums", "32"),
                            ("sysFlag", "4"),
                            ("subscription", "*"),
                            ("subVersion", "1"),
                        ]),
                    );
                    let t0 = Instant::now();
                    let r = c.invoke(req, TIMEOUT).await?;
                    match r.code {
                        response::SUCCESS => {
                            let n = crate::message::for_each(&r.body, |_| {})?;
                            if let Ok(mut h) = all.lock() {
                                let _ = h.record((t0.elapsed().as_micros() as u64).max(1));
                            }
                            stats.msgs.fetch_add(n as u64, Ordering::Relaxed);
                            stats
                                .bytes
                                .fetch_add(r.body.len() as u64, Ordering::Relaxed);
                            offsets[i] = field_i64(&r, "nextBeginOffset")?;
                        }
                        response::PULL_NOT_FOUND => drained[i] = true,
                        response::PULL_RETRY_IMMEDIATELY | response::PULL_OFFSET_MOVED => {
                            offsets[i] = field_i64(&r, "nextBeginOffset")?
                        }
                        code => *stats.errors.lock().expect("lock").entry(code).or_default() += 1,
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    finish(
        tasks,
        &stats,
        &stop,
        tick,
        started + Duration::from_secs_f64(secs),
        limit,
    )
    .await?;
    let h = all.lock().map(|h| h.clone()).unwrap_or_else(|_| hist());
    report(
        &format!("consume total ({threads} threads, per-pull latency)"),
        started.elapsed().as_secs_f64(),
        stats.msgs.load(Ordering::Relaxed),
        stats.bytes.load(Ordering::Relaxed),
        &h,
    );
    Ok(())
}
