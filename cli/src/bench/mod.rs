//! `wasmq bench produce|consume`: bounded load generators against a running broker.
//!
//! Each `--threads` task has its own connection and keeps `--inflight` requests outstanding on
//! it (pipelined; replies matched by opaque in `RemotingClient`). Rates are taken over the exact
//! measured window, first request sent -> last reply received (oneway: -> the queues' max
//! offsets show every message sent), and `--count` is exact: a request claims its messages
//! before it is sent. A line is printed every second while the run goes, then one summary block.
//! Produce also measures baselines in the same run (after the load; `--no-baseline` skips
//! them): a TCP 1 KiB echo round trip over loopback and the store's 1 KiB append rate.
//!
//! Summary block format (stable; tests parse it). It starts with the line `== summary ==`;
//! every following line is `<label>: ...` and its figures are `key=value` tokens, each key at
//! most once in the block, units in the key's name:
//!
//! ```text
//! == summary ==
//! produce total (T threads x K in flight, S B, sync): R msgs/s M MB/s latency us p50=.. p99=.. p999=.. max=..
//! window: msgs=N bytes=B errors=E window_s=W msgs_per_s=R mb_per_s=M
//! client cpu: cpu_ms=.. cpu_user_ms=.. cpu_sys_ms=.. cpu_us_per_msg=.. cpu_cores=..
//! broker cpu: broker_pid=P broker_cpu_ms=.. broker_cpu_user_ms=.. broker_cpu_sys_ms=.. broker_cpu_us_per_msg=.. broker_cpu_cores=..
//! baseline tcp echo 1 KiB, 1 in flight: echo_p50_us=.. echo_p99_us=.. echo_round_trips=..
//! baseline store append 1 KiB, 1 writer, async flush: store_msgs_per_s=.. store_appends=..
//! ratios: p50_over_echo_p50=1.7x msgs_per_s_over_store=0.620
//! oneway: oneway_sent=N oneway_stored=N oneway_lost=0
//! errors by response code: {code: n, ..}
//! ```
//!
//! `broker cpu` only with `--broker-pid`; baselines and ratios only when measured; `oneway:`
//! only in oneway mode (which prints `latency: none (oneway)`); `errors by response code` only
//! when a request failed. `msgs` counts messages the broker acknowledged (produce), that the
//! queues' max offsets show stored (oneway: the broker may drop oneway sends, e.g. under flow
//! control, and nobody is told), or that were pulled (consume, each queue offset at most once). CPU figures are user+sys time over the window
//! (this process: getrusage; the broker: /proc/PID/stat, clock-tick resolution).

mod baseline;
mod budget;
mod consume;
mod cpu;
mod plan;
mod produce;
mod report;

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use wasmq::net::RemotingClient;
use wasmq::protocol::{request, RemotingCommand};

use crate::rpc::{ext, field_i64, TIMEOUT};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Mode {
    Sync,
    Oneway,
    Batch,
}

#[derive(Args, Debug)]
pub struct ProduceArgs {
    #[arg(long)]
    pub topic: String,
    /// Connections (one task each).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Stop sending after this long.
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Stop after exactly this many messages in total.
    #[arg(long, value_parser = crate::args::parse_count)]
    pub count: Option<u64>,
    #[arg(long, value_enum, default_value_t = Mode::Sync)]
    pub mode: Mode,
    /// Messages per request in batch mode.
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    pub batch: u32,
    /// Requests in flight per connection (pipelined on it).
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub inflight: u32,
    /// The broker's PID (same machine): print its CPU time per message.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Skip the baselines (TCP echo round trip, store append rate).
    #[arg(long)]
    pub no_baseline: bool,
}

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    #[arg(long)]
    pub topic: String,
    #[arg(long, default_value = "wasmq-bench")]
    pub group: String,
    /// Connections (one task each); the topic's queues are split among them.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Stop pulling after this long.
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Stop after exactly this many messages (default: the backlog when the run starts).
    #[arg(long, value_parser = crate::args::parse_count)]
    pub count: Option<u64>,
    /// Most messages per pull (maxMsgNums; the broker may return fewer).
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    pub pull_batch: u32,
    /// Pulls in flight per connection (different queues, or consecutive offset ranges of one).
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub inflight: u32,
    /// The broker's PID (same machine): print its CPU time per message.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Also measure the TCP echo baseline (off by default for consume).
    #[arg(long)]
    pub baseline: bool,
}

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Send as fast as possible.
    Produce(ProduceArgs),
    /// Pull a topic's backlog (from each queue's first offset) as fast as possible.
    Consume(ConsumeArgs),
}

pub async fn run(namesrv: &str, cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Produce(a) => produce::run(namesrv, a).await,
        BenchCmd::Consume(a) => consume::run(namesrv, a).await,
    }
}

/// A positive whole number (`--inflight`, `--batch`, `--pull-batch`), at most 65,536.
fn at_least_one(s: &str) -> Result<u32, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if (1..=65_536).contains(&n) => Ok(n as u32),
        Ok(n) if n < 1 => Err(format!("{n} would do nothing: give 1 or more")),
        Ok(n) => Err(format!("{n} is more than the 65536 allowed")),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// Bounds of a run's load loops: every loop also ends by this deadline (the --duration-secs
/// limit plus a margin for what is in flight).
fn deadline(start: Instant, secs: f64) -> Instant {
    start + Duration::from_secs_f64(secs.clamp(0.0, 86_400.0))
}

/// The start of a measured window: when, and the CPU time used so far (here and by the broker).
struct Window {
    start: Instant,
    cpu: cpu::CpuTimes,
    broker: Option<(u32, cpu::CpuTimes)>,
}

impl Window {
    fn open(broker_pid: Option<u32>) -> Result<Window> {
        let broker = match broker_pid {
            Some(pid) => Some((pid, cpu::of_pid(pid)?)),
            None => None,
        };
        Ok(Window {
            cpu: cpu::own()?,
            broker,
            start: Instant::now(),
        })
    }

    /// CPU used since `open`: this process's, and the broker's.
    fn cpu_since(&self) -> Result<(cpu::CpuTimes, Option<(u32, cpu::CpuTimes)>)> {
        let own = cpu::own()?.since(&self.cpu);
        let broker = match self.broker {
            Some((pid, b)) => Some((pid, cpu::of_pid(pid)?.since(&b))),
            None => None,
        };
        Ok((own, broker))
    }
}

/// One load task's results.
struct TaskOut {
    hist: Histogram<u64>,
    /// When its last successful reply arrived.
    last: Option<Instant>,
}

impl TaskOut {
    fn new() -> TaskOut {
        TaskOut {
            hist: baseline::hist(),
            last: None,
        }
    }
}

/// Merges task results: the latency histogram and the latest reply.
fn merge(outs: Vec<TaskOut>) -> (Histogram<u64>, Option<Instant>) {
    let mut h = baseline::hist();
    let mut last = None;
    for o in outs {
        let _ = h.add(&o.hist);
        last = last.max(o.last);
    }
    (h, last)
}

/// A queue's min or max offset (GET_MIN_OFFSET / GET_MAX_OFFSET).
async fn queue_offset(c: &RemotingClient, topic: &str, queue: i32, max: bool) -> Result<i64> {
    let code = if max {
        request::GET_MAX_OFFSET
    } else {
        request::GET_MIN_OFFSET
    };
    let r = c
        .invoke(
            RemotingCommand::new_request(
                code,
                ext(&[("topic", topic), ("queueId", &queue.to_string())]),
            ),
            TIMEOUT,
        )
        .await?;
    if r.code != wasmq::protocol::response::SUCCESS {
        anyhow::bail!(
            "offset query of {topic} queue {queue} answered code {}: {}",
            r.code,
            r.remark.unwrap_or_default()
        );
    }
    field_i64(&r, "offset")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_of_work_are_one_or_more() {
        assert_eq!(at_least_one("8"), Ok(8));
        assert!(at_least_one("0").unwrap_err().contains("give 1 or more"));
        assert!(at_least_one("-2").is_err());
        assert!(at_least_one("70000").unwrap_err().contains("65536"));
        assert!(at_least_one("x").is_err());
    }
}
