//! The cost of flow control when nothing is over its limits: the same load against a broker
//! with `flow_control = true` (the default: every send checked for its time in queue, a stalled
//! store and unflushed bytes) and one with `flow_control = false`, side by side.
//!
//! Load: 16 producers (one connection each) sending SEND_MESSAGE_V2 with 1 KiB bodies to a
//! topic of 16 queues, each waiting for its reply before the next send (sync sends); async
//! flush; in-process brokers over loopback. `WASMQ_BENCH_RUNS` runs (default 3); each starts
//! both brokers afresh (which one first alternates between runs) and loads them in turn, in
//! short slices (10 of each, the order alternating), so that drift of a shared machine hits
//! both alike. Figures per run and broker: messages per second, the producers' latency
//! percentiles, and the on/off throughput ratio; then the median and mean ratio (the goal:
//! within 5%, i.e. 0.95 or more). Every run checks that each topic holds exactly the messages
//! sent and that no send was refused.
//!
//! `WASMQ_BENCH_AA=1` starts both brokers with flow control off: the ratio then shows the
//! bench's own noise on this machine. `WASMQ_BENCH_SECS` (default 5) is each broker's sending time per run, `WASMQ_BENCH_COUNT`
//! (default 5,000,000) bounds the messages of one slice; `WASMQ_BENCH_SMOKE=1` shrinks
//! everything to seconds in all (its figures are not meaningful).
//! Run: `cargo bench -p wasmq-broker --bench flow`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{median, micros, pct, smoke, BenchBroker, SendReq, RPC};
use wasmq::net::RemotingClient;
use wasmq::protocol::response;
use wasmq::store::FlushMode;

const PRODUCERS: usize = 16;
const QUEUES: usize = 16;
const BODY: usize = 1024;
const TOPIC: &str = "FlowBench";

/// `WASMQ_BENCH_SECS`: seconds of sending per broker and run.
fn secs() -> f64 {
    support::secs(5.0, 0.3)
}

/// `WASMQ_BENCH_COUNT`: most messages per slice.
fn max_count() -> usize {
    support::max_count(5_000_000, 2_000)
}

/// `WASMQ_BENCH_RUNS`: runs (both brokers each).
fn runs() -> usize {
    support::knob("WASMQ_BENCH_RUNS", 3, 1)
}

/// Slices of each broker's sending per run.
fn slices() -> usize {
    if smoke() {
        2
    } else {
        10
    }
}

/// What one broker's producers did in a run (all its slices).
#[derive(Default)]
struct Figures {
    sent: usize,
    busy: Duration,
    lat: Vec<u32>,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.sent as f64 / self.busy.as_secs_f64().max(1e-9)
    }
}

/// One slice: `conns` (one per producer) sending for at most `secs` and `count` messages in
/// all; panics on any reply but SEND_OK.
async fn load(conns: &[Arc<RemotingClient>], secs: f64, count: usize, into: &mut Figures) {
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = conns
        .iter()
        .enumerate()
        .map(|(p, c)| {
            let c = c.clone();
            let per_producer = count / PRODUCERS + usize::from(p < count % PRODUCERS);
            tokio::spawn(async move {
                let body = vec![b'a' + (p % 26) as u8; BODY];
                let mut lat = Vec::with_capacity(per_producer.min(1 << 20));
                let mut n = 0usize;
                while n < per_producer && Instant::now() < until {
                    let req =
                        SendReq::new(TOPIC, ((p + n) % QUEUES) as i32, "").request(body.clone());
                    let t = Instant::now();
                    let r = c.invoke(req, RPC).await.unwrap();
                    assert_eq!(
                        r.code,
                        response::SUCCESS,
                        "a send was refused: {:?}",
                        r.remark
                    );
                    lat.push(micros(t.elapsed()));
                    n += 1;
                }
                (n, lat)
            })
        })
        .collect();
    for t in tasks {
        let (n, l) = t.await.unwrap();
        into.sent += n;
        into.lat.extend(l);
    }
    into.busy += started.elapsed();
}

/// A broker under test (flow control on or off), its producers' connections, what they did.
struct Side {
    broker: BenchBroker,
    conns: Vec<Arc<RemotingClient>>,
    admin: RemotingClient,
    warm: Figures,
    figures: Figures,
}

impl Side {
    fn start(on: bool) -> Side {
        let broker = BenchBroker::start(FlushMode::Async, |cfg| cfg.flow_control = on);
        let (admin, conns) = broker.block_on(async {
            let admin = broker.client().await;
            support::create_topic(&admin, TOPIC, QUEUES).await;
            let mut conns = Vec::new();
            for _ in 0..PRODUCERS {
                conns.push(Arc::new(
                    RemotingClient::connect(broker.addr).await.unwrap(),
                ));
            }
            (admin, conns)
        });
        Side {
            broker,
            conns,
            admin,
            warm: Figures::default(),
            figures: Figures::default(),
        }
    }

    /// Sends for `secs` (a slice), counted as warm-up or measured.
    fn slice(&mut self, secs: f64, warm: bool) {
        let into = if warm {
            &mut self.warm
        } else {
            &mut self.figures
        };
        self.broker
            .block_on(load(&self.conns, secs, max_count(), into));
    }

    /// Checks the topic holds exactly what was sent, stops the broker; the figures.
    fn finish(self) -> Figures {
        let want = (self.warm.sent + self.figures.sent) as u64;
        self.broker
            .block_on(support::settle(&self.admin, TOPIC, QUEUES, want));
        drop(self.conns);
        drop(self.admin);
        self.broker.stop();
        let mut f = self.figures;
        f.lat.sort_unstable();
        f
    }
}

/// One run: both brokers started afresh, warmed up, then loaded in alternating slices.
fn run(run: usize) -> f64 {
    support::sync_disks();
    let on = !support::flag("WASMQ_BENCH_AA");
    // The broker started second may run a few % slower here (`WASMQ_BENCH_AA`): which one
    // starts first alternates between runs.
    let mut sides = if run % 2 == 1 {
        let off = Side::start(false);
        [off, Side::start(on)]
    } else {
        let on = Side::start(on);
        [Side::start(false), on]
    };
    let warm = (secs() / 10.0).min(0.5);
    for side in &mut sides {
        side.slice(warm, true);
    }
    let slice = secs() / slices() as f64;
    for i in 0..slices() {
        // Alternate which goes first.
        let order = if (run + i) % 2 == 0 { [0, 1] } else { [1, 0] };
        for k in order {
            sides[k].slice(slice, false);
        }
    }
    let [off, on] = sides.map(Side::finish);
    for (label, f) in [("off", &off), ("on", &on)] {
        println!(
            "{run:>3} {label:>12} {:>10} {:>10.0} {:>9.0} {:>9.0}",
            f.sent,
            f.rate(),
            pct(&f.lat, 0.50),
            pct(&f.lat, 0.99)
        );
    }
    if off.rate() > 0.0 {
        on.rate() / off.rate()
    } else {
        0.0
    }
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    println!(
        "wasmq flow-control benchmark: in-process broker over loopback, {PRODUCERS} producers \
         (one reply awaited at a time), {BODY} B bodies, {QUEUES} queues, async flush; per run \
         each broker sends {} s in {} slices (up to {} messages each); {} runs{}",
        secs(),
        slices(),
        max_count(),
        runs(),
        if smoke() {
            " (smoke: figures not meaningful)"
        } else {
            ""
        }
    );
    println!();
    println!(
        "{:>3} {:>12} {:>10} {:>10} {:>9} {:>9}",
        "run", "flow control", "messages", "msg/s", "p50 us", "p99 us"
    );
    let mut ratios = Vec::new();
    for r in 1..=runs() {
        ratios.push(run(r));
    }
    println!();
    for (i, r) in ratios.iter().enumerate() {
        println!("run {}: on / off throughput {r:.3}", i + 1);
    }
    let ratio = median(&ratios);
    let mean = ratios.iter().sum::<f64>() / ratios.len().max(1) as f64;
    println!(
        "on / off throughput: median {ratio:.3}, mean {mean:.3} (goal: >= 0.95){}",
        if ratio >= 0.95 { "" } else { " MISSED" }
    );
    println!("every run: no send refused; each topic held exactly the messages sent");
}
