//! `wasmq bench consume`: pulls a topic's backlog (each queue's [min, max) offsets when the run
//! starts) with `--threads` connections, `--inflight` pulls in flight on each, `--pull-batch`
//! messages per pull at most. Which offsets each pull asks for is [`Plan`]'s job: ranges never
//! overlap and only offsets inside a reply's range are counted, so no message counts twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use tokio::sync::Notify;
use wasmq::net::RemotingClient;
use wasmq::protocol::{request, response, RemotingCommand};

use super::baseline::{self, Baselines};
use super::budget::Budget;
use super::plan::{Outcome, Plan, Pull};
use super::report::{ticker, Counters, Summary};
use super::{deadline, merge, queue_offset, ConsumeArgs, TaskOut, Window};
use crate::rpc::{ext, TIMEOUT};

/// One connection's state, shared by its pulling tasks.
struct Conn {
    client: RemotingClient,
    plan: Mutex<Plan>,
    /// Woken when a pull finishes (it may have left a gap to pull).
    done: Notify,
}

struct Shared {
    topic: String,
    group: String,
    budget: Budget,
    counters: Arc<Counters>,
    deadline: Instant,
}

fn pull_request(s: &Shared, p: &Pull) -> RemotingCommand {
    RemotingCommand::new_request(
        request::PULL_MESSAGE,
        ext(&[
            ("consumerGroup", &s.group),
            ("topic", &s.topic),
            ("queueId", &p.queue.to_string()),
            ("queueOffset", &p.from.to_string()),
            ("maxMsgNums", &p.len.to_string()),
            ("sysFlag", "4"),
            ("commitOffset", "0"),
            ("suspendTimeoutMillis", "0"),
            ("subscription", "*"),
            ("subVersion", "1"),
        ]),
    )
}

/// What the next step of a pulling task is.
enum Next {
    Pull(Pull),
    Wait,
    Done,
}

/// One pulling task: take the plan's next range, pull it, count what it returned inside that
/// range, report the outcome; wait while only other tasks' pulls may still leave work.
async fn puller(s: Arc<Shared>, c: Arc<Conn>) -> Result<TaskOut> {
    let mut out = TaskOut::new();
    loop {
        if Instant::now() >= s.deadline {
            break;
        }
        let notified = c.done.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next = {
            let mut plan = c.plan.lock().map_err(|_| anyhow!("plan lock poisoned"))?;
            match plan.next(|n| s.budget.claim(n)) {
                Some(p) => Next::Pull(p),
                None if plan.outstanding() > 0 => Next::Wait,
                None => Next::Done,
            }
        };
        let p = match next {
            Next::Pull(p) => p,
            Next::Wait => {
                let _ = tokio::time::timeout_at(s.deadline.into(), notified).await;
                continue;
            }
            Next::Done => break,
        };
        let t0 = Instant::now();
        let r = c.client.invoke(pull_request(&s, &p), TIMEOUT).await;
        let t1 = Instant::now();
        let outcome = match r {
            Err(e) => {
                // Hand the range back before failing, so the plan stays consistent.
                finish(&s, &c, &p, Outcome::Gone { next_begin: None })?;
                return Err(e.into());
            }
            Ok(r) => match r.code {
                response::SUCCESS => {
                    let next_begin = crate::rpc::field_i64(&r, "nextBeginOffset")?;
                    let (mut n, mut bytes) = (0u64, 0u64);
                    crate::message::for_each(&r.body, |m| {
                        if p.counts(m.queue_offset(), next_begin) {
                            n += 1;
                            bytes += m.total_size() as u64;
                        }
                    })?;
                    let _ = out
                        .hist
                        .record((t1.duration_since(t0).as_nanos() as u64).max(1));
                    if n > 0 {
                        out.last = Some(t1);
                        s.counters.add(n, bytes);
                    }
                    Outcome::Got { next_begin }
                }
                response::PULL_RETRY_IMMEDIATELY => Outcome::Got {
                    next_begin: r.ext_fields.get_i64("nextBeginOffset")?.unwrap_or(p.from),
                },
                response::PULL_NOT_FOUND | response::PULL_OFFSET_MOVED => Outcome::Gone {
                    next_begin: r.ext_fields.get_i64("nextBeginOffset")?,
                },
                code => {
                    s.counters.error(code);
                    Outcome::Gone { next_begin: None }
                }
            },
        };
        finish(&s, &c, &p, outcome)?;
    }
    Ok(out)
}

/// Reports a pull's outcome to the plan, gives back an unused claim and wakes the waiters.
fn finish(s: &Shared, c: &Conn, p: &Pull, outcome: Outcome) -> Result<()> {
    let back = c
        .plan
        .lock()
        .map_err(|_| anyhow!("plan lock poisoned"))?
        .finished(p, outcome);
    s.budget.release(back);
    c.done.notify_waiters();
    Ok(())
}

pub async fn run(namesrv: &str, a: ConsumeArgs) -> Result<()> {
    let threads = a.threads.max(1);
    let mut cluster = crate::rpc::Cluster::new(namesrv);
    let queues = cluster.queues(&a.topic, false).await?;
    // A connection per thread and broker, with that thread's queues of the broker.
    let mut conns = Vec::new();
    let mut backlog = 0i64;
    for t in 0..threads {
        let mut by_addr: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (addr, q) in queues.iter().skip(t).step_by(threads) {
            by_addr.entry(addr.clone()).or_default().push(*q);
        }
        for (addr, qs) in by_addr {
            let client = RemotingClient::connect(addr.as_str()).await?;
            let mut ranges = Vec::with_capacity(qs.len());
            for q in qs {
                let min = queue_offset(&client, &a.topic, q, false).await?;
                let max = queue_offset(&client, &a.topic, q, true).await?;
                backlog += (max - min).max(0);
                ranges.push((q, min, max));
            }
            conns.push(Arc::new(Conn {
                client,
                plan: Mutex::new(Plan::new(ranges, a.pull_batch)),
                done: Notify::new(),
            }));
        }
    }
    if let Some(n) = a.count {
        if (n as i64) > backlog {
            eprintln!("note: --count {n} is more than the backlog of {backlog} messages");
        }
    }
    let counters = Arc::new(Counters::default());
    let window = Window::open(a.broker_pid)?;
    let shared = Arc::new(Shared {
        topic: a.topic.clone(),
        group: a.group.clone(),
        budget: Budget::new(a.count),
        counters: counters.clone(),
        deadline: deadline(window.start, a.duration_secs),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let tick = ticker(
        counters.clone(),
        stop.clone(),
        window.start,
        Duration::from_secs_f64(a.duration_secs.clamp(0.0, 86_400.0)) + TIMEOUT,
    );
    let mut tasks = Vec::new();
    for c in &conns {
        for _ in 0..a.inflight {
            tasks.push(tokio::spawn(puller(shared.clone(), c.clone())));
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
    let (hist, last) = merge(outs);
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
    if a.baseline {
        baselines.echo = Some(baseline::echo(20_000, Duration::from_secs(1)).await?);
    }
    let summary = Summary {
        title: format!(
            "consume total ({threads} threads x {} in flight, pull-batch {}, per-pull latency)",
            a.inflight, a.pull_batch
        ),
        msgs: counters.msgs.load(Ordering::Relaxed),
        bytes: counters.bytes.load(Ordering::Relaxed),
        errors: counters.errors(),
        window: end.saturating_duration_since(window.start),
        latency: Some(hist),
        client_cpu,
        broker_cpu,
        baselines,
        note: None,
    };
    print!("{}", summary.render());
    Ok(())
}
