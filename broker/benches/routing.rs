//! Send throughput with a router plugin bound vs none, side by side in one run.
//!
//! 1. In process: the shipped `hash-router` called through [`LoadedRouter::route`] over
//!    batches encoded as the send path encodes them (no bodies: the router does not ask for
//!    them), batch sizes 1, 32 and 256: encoding ns per message, `route` ns per call and per
//!    message, and how much of that is the wasm call itself (the plugin's own timer, what
//!    `meanNsPerMessage` reports); a fit into cost per call + cost per message; the same work
//!    done natively (SDK decoder, first key, Java hash); and `route` timed alone when the
//!    caches are flushed between calls or the instance changes threads each call, as it
//!    does in a broker. This is the router step's cost without the network.
//! 2. Over loopback against an in-process broker (async flush, 256 MiB segments deleted by
//!    retention 5 s after they fill, so the disk holds a few of them), 8 queues per topic,
//!    1 KiB bodies whose `KEYS` is one of 64 keys, the client picking queues round robin:
//!    topic `Plain` (no router) and topic `Routed` (`hash-router` bound: each message moves
//!    to its key's queue), plus, as a diagnostic, topic `Kept` (the same plugin configured
//!    to hash a property the messages lack, so it is called on every request but keeps every
//!    message where the client sent it: the router's cost without the store writing one
//!    request's messages to several queues). Two tables: batch sends (SEND_BATCH_MESSAGE, 32
//!    messages per request) and single sends (SEND_MESSAGE_V2, 1 message per request), each
//!    with 4 requests in flight (4 connections, each waiting for its reply). Requests are
//!    built before the clock starts (16 distinct ones per connection, cycled), so the client
//!    side costs the same in every case and little.
//!
//!    The cases take turns: `WASMQ_BENCH_ROUNDS` rounds (default 5) of one run each, the
//!    order changing every round (each case first, middle and last equally often), so drift
//!    and background load fall on all of them; each run sends for `WASMQ_BENCH_SECS` (default
//!    2) or `WASMQ_BENCH_COUNT` messages (default 400,000), whichever ends first, then waits
//!    (bounded) until the store has dispatched everything. Figures per case: the median
//!    run's messages/s and MB/s (of bodies), request latency p50/p99 over all its runs, the
//!    process CPU time per message over sending and dispatch (broker and senders share the
//!    process; from `/proc`, in 10 ms ticks, in all and by thread: runtime workers, dispatch,
//!    flush, other), the router's mean ns per message from PLUGIN_LIST (`meanNsPerMessage`,
//!    the wasm call as the broker times it), and the ratios to plain, of the medians and per
//!    round. `WASMQ_BENCH_WORKERS` (default 2) sets the runtime's worker threads;
//!    `WASMQ_BENCH_KEYED_QUEUES=1` has single sends pick their key's queue on the client.
//!
//! At the end every message sent must be stored where it belongs: per queue, `GET_MAX_OFFSET`
//! equals the count sent there (plain and all-keep: the client's queue; routed: its key's
//! queue, Java's `String.hashCode` of the key modulo 8, as the router computes it), and each
//! router must have seen every message of its topic without a failure.
//!
//! `WASMQ_BENCH_SMOKE=1` shrinks everything to a few seconds in all (CI runs it that way; its
//! figures are not meaningful). Run: `cargo bench -p wasmq-broker --bench routing`.

mod support;

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::{admin, env_or, median, micros, pct, smoke, BenchBroker, SendReq, RPC};
use wasmq::net::RemotingClient;
use wasmq::plugin::batch::BatchEncoder;
use wasmq::plugin::{registry, shipped, Destination, PluginKind, Registry};
use wasmq::protocol::{request, response, RemotingCommand};
use wasmq::store::FlushMode;

const QUEUES: usize = 8;
const BODY: usize = 1024;
const KEYS: usize = 64;
const INFLIGHT: usize = 4;
/// Distinct prebuilt requests per connection.
const POOL: usize = 16;
const ROUTER: &str = "hr";
/// The same plugin configured to hash a property no message has: every verdict is keep.
const KEEP_ROUTER: &str = "hr-keep";

/// Seconds of sending per run (`WASMQ_BENCH_SECS`).
fn secs() -> f64 {
    support::secs(2.0, 0.15)
}

/// Rounds (one run of each case per round; `WASMQ_BENCH_ROUNDS`).
fn rounds() -> usize {
    support::knob("WASMQ_BENCH_ROUNDS", 5usize, 2).max(1)
}

/// Most messages one run sends (`WASMQ_BENCH_COUNT`).
fn max_count() -> usize {
    support::max_count(400_000, 2_000)
}

fn key(k: usize) -> String {
    format!("key-{k}")
}

/// The queue the hash router picks for key `k`: `|h % n|`, `h` Java's `String.hashCode`.
fn key_queue(k: usize) -> usize {
    (i64::from(wasmq_plugin_sdk::java_string_hash(&key(k))) % QUEUES as i64).unsigned_abs() as usize
}

/// The properties a producer writes: a key, a message id (UNIQ_KEY), WAIT.
fn props(k: usize, uniq: usize) -> String {
    format!(
        "KEYS\u{1}{}\u{2}UNIQ_KEY\u{1}7F000001000000000000{uniq:012X}\u{2}WAIT\u{1}true\u{2}",
        key(k)
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Plain,
    /// Diagnostic: a hash router bound that finds no key (it hashes a property the messages
    /// do not have), so every verdict is keep: the router's cost without the store writing a
    /// request's messages to several queues.
    Kept,
    Routed,
}

const CASES: [Case; 3] = [Case::Plain, Case::Kept, Case::Routed];

/// The cases' orders, one per round in turn: each case runs first, second and last equally.
const ORDERS: [[Case; 3]; 6] = [
    [Case::Plain, Case::Kept, Case::Routed],
    [Case::Routed, Case::Kept, Case::Plain],
    [Case::Kept, Case::Routed, Case::Plain],
    [Case::Plain, Case::Routed, Case::Kept],
    [Case::Routed, Case::Plain, Case::Kept],
    [Case::Kept, Case::Plain, Case::Routed],
];

impl Case {
    fn topic(self) -> &'static str {
        match self {
            Case::Plain => "Plain",
            Case::Kept => "Kept",
            Case::Routed => "Routed",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Case::Plain => "plain (no router)",
            Case::Kept => "router, all keep",
            Case::Routed => "routed (hash-router)",
        }
    }

    /// The router bound to the case's topic.
    fn router(self) -> Option<&'static str> {
        match self {
            Case::Plain => None,
            Case::Kept => Some(KEEP_ROUTER),
            Case::Routed => Some(ROUTER),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A request built before the clock starts, and where its messages end up per queue.
struct Prebuilt {
    req: RemotingCommand,
    per_queue: [u64; QUEUES],
}

/// Whether single sends pick their key's queue on the client (`WASMQ_BENCH_KEYED_QUEUES=1`,
/// as RocketMQ's `SelectMessageQueueByHash` does), instead of round robin: then every case
/// writes the same queues and the router's verdicts name the queue the client chose.
fn keyed_queues() -> bool {
    support::flag("WASMQ_BENCH_KEYED_QUEUES")
}

/// Connection `sender`'s requests: `batch` messages each (SEND_MESSAGE_V2 for 1, else
/// SEND_BATCH_MESSAGE), the client's queue round robin (or, for single sends, see
/// [`keyed_queues`]), keys cycling through the 64.
fn prebuild(case: Case, sender: usize, batch: usize) -> Vec<Prebuilt> {
    let body = vec![b'a' + (sender % 26) as u8; BODY];
    (0..POOL)
        .map(|p| {
            let queue = if batch == 1 && keyed_queues() {
                key_queue((sender * 13 + p) % KEYS)
            } else {
                (sender + p) % QUEUES
            };
            let mut per_queue = [0u64; QUEUES];
            let mut message = |j: usize| {
                let k = (sender * 13 + p * batch + j) % KEYS;
                let q = match case {
                    Case::Plain | Case::Kept => queue,
                    Case::Routed => key_queue(k),
                };
                per_queue[q] += 1;
                props(k, (sender << 32) | (p << 16) | j)
            };
            let born = 1_700_000_000_000;
            let req = if batch == 1 {
                let pr = message(0);
                SendReq::new(case.topic(), queue as i32, &pr)
                    .born(born)
                    .request(body.clone())
            } else {
                let mut bytes = Vec::with_capacity(batch * (BODY + 128));
                for j in 0..batch {
                    let pr = message(j);
                    wasmq::protocol::batch::encode_entry(&mut bytes, 0, &body, pr.as_bytes())
                        .unwrap();
                }
                SendReq::new(case.topic(), queue as i32, "")
                    .born(born)
                    .batch(bytes)
            };
            Prebuilt { req, per_queue }
        })
        .collect()
}

/// Where the process's CPU time goes: the runtime's workers (broker and senders), the
/// store's dispatch and flush threads, and everything else (other threads, including
/// short-lived ones such as the segment warmers).
const CPU_GROUPS: [&str; 4] = ["workers", "dispatch", "flush", "other"];

/// CPU time so far, in clock ticks (100 per second on Linux): the process's total and each
/// live thread's, where `/proc` has them.
struct CpuSample {
    total: u64,
    threads: std::collections::HashMap<String, (usize, u64)>,
}

/// utime + stime of a `stat` line, and the thread's name.
fn stat_ticks(stat: &str) -> Option<(&str, u64)> {
    // The name may hold spaces: fields are counted after its closing parenthesis (state is
    // field 3, utime 14, stime 15).
    let name = &stat[stat.find('(')? + 1..stat.rfind(')')?];
    let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    Some((
        name,
        f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
    ))
}

fn cpu_sample() -> Option<CpuSample> {
    let total = stat_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?.1;
    let mut threads = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue; // gone meanwhile
        };
        if let Some((name, ticks)) = stat_ticks(&stat) {
            let group = match name {
                "bench-worker" => 0,
                "wasmq-dispatch" => 1,
                "wasmq-flush" => 2,
                _ => 3,
            };
            threads.insert(e.file_name().to_string_lossy().into_owned(), (group, ticks));
        }
    }
    Some(CpuSample { total, threads })
}

/// CPU seconds per group between two samples.
fn cpu_between(a: &CpuSample, b: &CpuSample) -> [f64; 4] {
    let mut out = [0.0; 4];
    for (tid, (group, ticks)) in &b.threads {
        let before = a.threads.get(tid).map_or(0, |t| t.1);
        out[*group] += ticks.saturating_sub(before) as f64 / 100.0;
    }
    let total = b.total.saturating_sub(a.total) as f64 / 100.0;
    out[3] = (total - out[0] - out[1] - out[2]).max(0.0);
    out
}

/// Router `name`'s counters from PLUGIN_LIST.
#[derive(Clone, Copy, Default)]
struct RouterStats {
    calls: u64,
    messages: u64,
    /// Total ns in the wasm call (mean per message x messages).
    nanos: u64,
    failures: u64,
}

impl RouterStats {
    fn since(self, before: RouterStats) -> RouterStats {
        RouterStats {
            calls: self.calls - before.calls,
            messages: self.messages - before.messages,
            nanos: self.nanos.saturating_sub(before.nanos),
            failures: self.failures - before.failures,
        }
    }

    fn ns_per_message(self) -> f64 {
        self.nanos as f64 / self.messages.max(1) as f64
    }

    fn ns_per_call(self) -> f64 {
        self.nanos as f64 / self.calls.max(1) as f64
    }
}

async fn router_stats(c: &RemotingClient, name: &str) -> RouterStats {
    let list = support::plugin_list(c).await;
    let p = list
        .iter()
        .find(|p| p["name"] == name)
        .expect("the router is listed");
    let n = |k: &str| p[k].as_u64().unwrap_or(0);
    let messages = n("messages");
    RouterStats {
        calls: n("calls"),
        messages,
        nanos: n("meanNsPerMessage") * messages,
        failures: n("failures"),
    }
}

struct Run {
    msgs: u64,
    elapsed: Duration,
    /// CPU seconds per group (`CPU_GROUPS`).
    cpu: Option<[f64; 4]>,
    lat: Vec<u32>,
}

/// What each case has sent so far, per queue.
type Sent = [[u64; QUEUES]; 3];

/// One run: `INFLIGHT` connections sending `case` requests of `batch` messages for at most
/// `secs` and `count` messages, then waiting until the store has dispatched them.
async fn run(
    addr: SocketAddr,
    admin: &RemotingClient,
    case: Case,
    batch: usize,
    secs: f64,
    count: usize,
    sent: &mut Sent,
) -> Run {
    // No dirty pages of the previous run competing with this one.
    support::sync_disks_async().await;
    let mut conns = Vec::new();
    for s in 0..INFLIGHT {
        let c = RemotingClient::connect(addr).await.unwrap();
        conns.push((c, prebuild(case, s, batch)));
    }
    let per_sender = count.div_ceil(batch * INFLIGHT).max(1);
    let cpu0 = cpu_sample();
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|(c, pool)| {
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_sender.min(1 << 20));
                let mut per_queue = [0u64; QUEUES];
                let mut n = 0usize;
                while n < per_sender && Instant::now() < until {
                    let p = &pool[n % POOL];
                    let t = Instant::now();
                    let r = c.invoke(p.req.clone(), RPC).await.unwrap();
                    lat.push(micros(t.elapsed()));
                    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
                    for (a, b) in per_queue.iter_mut().zip(p.per_queue) {
                        *a += b;
                    }
                    n += 1;
                }
                (lat, per_queue)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut msgs = 0;
    for t in tasks {
        let (l, per_queue) = t.await.unwrap();
        lat.extend(l);
        for (a, b) in sent[case.index()].iter_mut().zip(per_queue) {
            *a += b;
            msgs += b;
        }
    }
    let elapsed = start.elapsed();
    support::settle(admin, case.topic(), QUEUES, sent[case.index()].iter().sum()).await;
    let cpu = cpu_sample().zip(cpu0).map(|(b, a)| cpu_between(&a, &b));
    Run {
        msgs,
        elapsed,
        cpu,
        lat,
    }
}

#[derive(Default)]
struct Figures {
    rates: Vec<f64>,
    /// Per run: CPU microseconds per message, in all.
    cpu_us: Vec<f64>,
    /// Per run: CPU microseconds per message by `CPU_GROUPS`.
    cpu_groups: Vec<[f64; 4]>,
    lat: Vec<u32>,
}

impl Figures {
    fn add(&mut self, r: Run) {
        self.rates.push(r.msgs as f64 / r.elapsed.as_secs_f64());
        if let Some(cpu) = r.cpu {
            let per_msg = cpu.map(|s| s * 1e6 / (r.msgs as f64).max(1.0));
            self.cpu_us.push(per_msg.iter().sum());
            self.cpu_groups.push(per_msg);
        }
        self.lat.extend(r.lat);
    }
}

/// One table: warm-up, then `rounds` rounds of every case, the order changing each round.
async fn table(addr: SocketAddr, c: &RemotingClient, batch: usize, sent: &mut Sent) -> (f64, f64) {
    let (secs, rounds, count) = (secs(), rounds(), max_count());
    let what = if batch == 1 {
        "single sends (SEND_MESSAGE_V2), 1 message per request".to_string()
    } else {
        format!("batch sends (SEND_BATCH_MESSAGE), {batch} messages per request")
    };
    println!(
        "\n== {what}: 1 KiB bodies, {INFLIGHT} in flight, {QUEUES} queues; {rounds} rounds of {secs} s (at most {count} messages) per case, order rotating"
    );
    // Warm-up: connections, topic tables, the router's instances, the first pages.
    for case in CASES {
        run(addr, c, case, batch, (secs / 4.0).max(0.1), count / 4, sent).await;
    }
    let before = [
        router_stats(c, ROUTER).await,
        router_stats(c, KEEP_ROUTER).await,
    ];
    let mut figs = [Figures::default(), Figures::default(), Figures::default()];
    for r in 0..rounds {
        for case in ORDERS[r % ORDERS.len()] {
            let run = run(addr, c, case, batch, secs, count, sent).await;
            figs[case.index()].add(run);
        }
    }
    let stats = |case: Case, after: RouterStats| {
        after.since(before[usize::from(case.router() == Some(KEEP_ROUTER))])
    };
    let mut router = [RouterStats::default(); 3];
    for case in CASES {
        if let Some(name) = case.router() {
            router[case.index()] = stats(case, router_stats(c, name).await);
        }
    }
    println!(
        "{:<22} {:>9} {:>7} {:>7} {:>7} {:>10} {:>12} {:>7}   msgs/s per round",
        "case", "msgs/s", "MB/s", "p50 us", "p99 us", "cpu us/msg", "wasm ns/msg", "vs plain"
    );
    let plain_rate = median(&figs[Case::Plain.index()].rates);
    for case in CASES {
        let f = &mut figs[case.index()];
        f.lat.sort_unstable();
        let rate = median(&f.rates);
        let cpu = if f.cpu_us.is_empty() {
            "-".to_string()
        } else {
            format!("{:.2}", median(&f.cpu_us))
        };
        let wasm = match case.router() {
            Some(_) => format!("{:.0}", router[case.index()].ns_per_message()),
            None => "-".to_string(),
        };
        let per_round: Vec<String> = f.rates.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "{:<22} {rate:>9.0} {:>7.1} {:>7.0} {:>7.0} {cpu:>10} {wasm:>12} {:>7.3}   {}",
            case.label(),
            rate * BODY as f64 / 1e6,
            pct(&f.lat, 0.50),
            pct(&f.lat, 0.99),
            rate / plain_rate,
            per_round.join(" ")
        );
    }
    let [plain, kept, routed] = &figs;
    // Each round's runs are close in time: their ratios see the same background load.
    let paired = |other: &Figures| -> (f64, f64, f64) {
        let v: Vec<f64> = other
            .rates
            .iter()
            .zip(&plain.rates)
            .map(|(o, p)| o / p)
            .collect();
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        (median(&v), lo, hi)
    };
    let ratio = median(&routed.rates) / plain_rate;
    let (pm, lo, hi) = paired(routed);
    println!(
        "routed/plain msgs/s: {ratio:.3} (of medians); per round: median {pm:.3}, range {lo:.3}..{hi:.3}; target >= 0.85: {}",
        if ratio >= 0.85 { "met" } else { "NOT met" }
    );
    let (km, klo, khi) = paired(kept);
    println!(
        "all-keep/plain msgs/s: {:.3} (of medians); per round: median {km:.3}, range {klo:.3}..{khi:.3}",
        median(&kept.rates) / plain_rate
    );
    if CASES.iter().all(|c| !figs[c.index()].cpu_us.is_empty()) {
        let [p, k, r] = figs.each_ref().map(|f| median(&f.cpu_us));
        println!(
            "cpu per message (broker + client, incl. dispatch) vs plain: all-keep {:+.0} ns, routed {:+.0} ns",
            (k - p) * 1e3,
            (r - p) * 1e3
        );
    }
    if CASES.iter().all(|c| !figs[c.index()].cpu_groups.is_empty()) {
        // Each group's median over the runs (so the parts need not add up to the total).
        let part =
            |f: &Figures, g: usize| median(&f.cpu_groups.iter().map(|v| v[g]).collect::<Vec<_>>());
        println!(
            "cpu us per message by thread group (median of runs; workers = broker and senders):"
        );
        for case in CASES {
            let f = &figs[case.index()];
            let parts: Vec<String> = CPU_GROUPS
                .iter()
                .enumerate()
                .map(|(g, name)| {
                    let v = part(f, g);
                    if case == Case::Plain {
                        format!("{name} {v:.2}")
                    } else {
                        format!("{name} {v:.2} ({:+.2})", v - part(plain, g))
                    }
                })
                .collect();
            println!("  {:<22} {}", case.label(), parts.join(", "));
        }
    }
    println!(
        "p50 latency routed/plain: {:.3}, p99: {:.3}",
        pct(&routed.lat, 0.5) / pct(&plain.lat, 0.5).max(1.0),
        pct(&routed.lat, 0.99) / pct(&plain.lat, 0.99).max(1.0)
    );
    for case in [Case::Routed, Case::Kept] {
        let s = router[case.index()];
        assert_eq!(s.failures, 0, "{:?}: the router failed", case.router());
        println!(
            "{} (PLUGIN_LIST over these rounds): {} calls, {} messages, meanNsPerMessage {:.0} ({:.0} ns per call)",
            case.router().unwrap(),
            s.calls,
            s.messages,
            s.ns_per_message(),
            s.ns_per_call()
        );
    }
    (ratio, router[Case::Routed.index()].ns_per_message())
}

/// The router step in process: encode as `routing::route` does, then `LoadedRouter::route`.
fn route_in_process() {
    println!("== hash-router in process: LoadedRouter::route over batches encoded as the send path does (no bodies)");
    println!(
        "{:>6} {:>14} {:>16} {:>14} {:>16} {:>16}",
        "batch",
        "encode ns/msg",
        "route ns/call",
        "route ns/msg",
        "in wasm ns/msg",
        "host rest ns/msg"
    );
    let reg = Registry::open(None, registry::DEFAULT_MAX_MODULE_BYTES).unwrap();
    let wasm = std::fs::read(shipped::path("hash-router")).unwrap();
    reg.load(ROUTER, &wasm, vec![]).unwrap();
    reg.bind(PluginKind::Router, "Routed", ROUTER).unwrap();
    let router = reg.router_for("Routed").unwrap();
    assert!(!router.needs_body, "hash-router does not read bodies");
    let all: Vec<(String, usize)> = (0..1024)
        .map(|i| (props(i % KEYS, i), key_queue(i % KEYS)))
        .collect();
    let total = if smoke() { 20_000 } else { 4_000_000 };
    let limit = Duration::from_secs(if smoke() { 1 } else { 3 });
    let mut enc = BatchEncoder::new();
    let encode = |enc: &mut BatchEncoder, c: usize, batch: usize| {
        enc.clear();
        for j in 0..batch {
            let (p, _) = &all[(c * batch + j) % all.len()];
            enc.push(
                ((c + j) % QUEUES) as i64,
                1_700_000_000_000,
                b"Routed",
                p.as_bytes(),
                b"",
            );
        }
    };
    let mut per_call = Vec::new();
    let mut encode_32 = 0.0;
    for batch in [1usize, 32, 256] {
        let calls = (total / batch).max(1);
        // Encoding alone.
        let t = Instant::now();
        let mut done = 0;
        while done < calls && t.elapsed() < limit {
            encode(&mut enc, done, batch);
            black_box(enc.bytes());
            done += 1;
        }
        let encode_ns = t.elapsed().as_nanos() as f64 / (done * batch) as f64;
        // Encoding and routing; the plugin's own timer covers the wasm call.
        let (n0, m0) = (
            router.stats.nanos.load(Ordering::Relaxed),
            router.stats.messages.load(Ordering::Relaxed),
        );
        let t = Instant::now();
        let mut done = 0;
        while done < calls && t.elapsed() < limit {
            encode(&mut enc, done, batch);
            let v = router.route(QUEUES as u32, &enc).unwrap();
            assert_eq!(v.len(), batch);
            let want = all[(done * batch) % all.len()].1;
            assert_eq!(v[0].route, Destination::Queue(want as u32));
            black_box(v);
            done += 1;
        }
        let el = t.elapsed().as_nanos() as f64;
        let msgs = (done * batch) as f64;
        let (n1, m1) = (
            router.stats.nanos.load(Ordering::Relaxed),
            router.stats.messages.load(Ordering::Relaxed),
        );
        assert_eq!((m1 - m0) as f64, msgs);
        let route_ns = el / msgs - encode_ns;
        let wasm_ns = (n1 - n0) as f64 / msgs;
        per_call.push((batch, route_ns * batch as f64));
        if batch == 32 {
            encode_32 = encode_ns;
        }
        println!(
            "{batch:>6} {encode_ns:>14.1} {:>16.0} {route_ns:>14.1} {wasm_ns:>16.1} {:>16.1}",
            route_ns * batch as f64,
            route_ns - wasm_ns
        );
    }
    // A line through batch 1 and 256: fixed cost per call, cost per message.
    let (b1, t1) = per_call[0];
    let (bn, tn) = per_call[per_call.len() - 1];
    let per_msg = (tn - t1) / (bn - b1) as f64;
    println!(
        "route cost ~ {:.0} ns per call + {per_msg:.1} ns per message (fit through batches {b1} and {bn})",
        t1 - per_msg * b1 as f64
    );

    // The router's logic natively (SDK batch decoder, first KEYS token, Java hash), over the
    // same batches of 32: what the wasm call costs beyond the work itself.
    let (t, mut done, mut sum) = (Instant::now(), 0usize, 0u64);
    while done < total / 32 && t.elapsed() < limit {
        encode(&mut enc, done, 32);
        for m in wasmq_plugin_sdk::Batch::new(enc.bytes()).unwrap() {
            let m = m.unwrap();
            let k = m.keys().next().unwrap();
            sum +=
                (i64::from(wasmq_plugin_sdk::java_string_hash(k)) % QUEUES as i64).unsigned_abs();
        }
        done += 1;
    }
    black_box(sum);
    // Less the encoding, timed alone above.
    let native = t.elapsed().as_nanos() as f64 / (done * 32) as f64 - encode_32;
    println!(
        "the same work natively (SDK decoder, first key, Java hash), batches of 32: {native:.1} ns per message vs route() {:.1}",
        per_call[1].1 / 32.0
    );

    // The same calls as the broker makes them: between two requests it parses, stores and
    // answers messages, which pushes the instance's memory, its compiled code and the
    // runtime's state out of the caches, and a call may run on another core than the last.
    // Only the `route` call is timed here.
    println!("route() alone, between calls (ns per call | ns per message | of which in wasm, ns per call):");
    let mut junk = vec![0u8; 4 << 20];
    let calls_cap = if smoke() { 200 } else { 20_000 };
    for batch in [1usize, 32] {
        let timed = |enc: &BatchEncoder, took: &mut Duration| {
            let t = Instant::now();
            let v = router.route(QUEUES as u32, enc).unwrap();
            *took += t.elapsed();
            assert_eq!(v.len(), batch);
            black_box(v);
        };
        // (a) 4 MiB written between calls (the L2 of this machine's cores is much smaller).
        let n0 = router.stats.nanos.load(Ordering::Relaxed);
        let (mut took, mut done, t) = (Duration::ZERO, 0usize, Instant::now());
        while done < calls_cap && t.elapsed() < limit {
            for line in junk.chunks_mut(64) {
                line[0] = line[0].wrapping_add(1);
            }
            black_box(&junk);
            encode(&mut enc, done, batch);
            timed(&enc, &mut took);
            done += 1;
        }
        let wasm = (router.stats.nanos.load(Ordering::Relaxed) - n0) as f64 / done as f64;
        let per_call = took.as_nanos() as f64 / done as f64;
        println!(
            "  batch {batch:>3}, {:<44} {per_call:>8.0} | {:>6.0} | {wasm:>8.0}",
            "caches flushed (4 MiB written) between calls:",
            per_call / batch as f64
        );
        // (b) Two threads taking turns (a hand-off each call), so the instance moves between
        // cores as it does between the broker's workers.
        let n0 = router.stats.nanos.load(Ordering::Relaxed);
        let calls = calls_cap.min(5_000);
        let (took, done) = std::thread::scope(|scope| {
            let (to_b, from_a) = std::sync::mpsc::sync_channel::<usize>(0);
            let (to_a, from_b) = std::sync::mpsc::sync_channel::<usize>(0);
            let encode = &encode;
            let b = scope.spawn(move || {
                let (mut enc, mut took, mut done) = (BatchEncoder::new(), Duration::ZERO, 0);
                while let Ok(c) = from_a.recv() {
                    encode(&mut enc, c, batch);
                    timed(&enc, &mut took);
                    done += 1;
                    if to_a.send(c + 1).is_err() {
                        break;
                    }
                }
                (took, done)
            });
            let (mut enc, mut took, mut done, mut c) =
                (BatchEncoder::new(), Duration::ZERO, 0usize, 0usize);
            while c < calls {
                encode(&mut enc, c, batch);
                timed(&enc, &mut took);
                done += 1;
                to_b.send(c + 1).unwrap();
                c = from_b.recv().unwrap();
            }
            drop(to_b);
            let (b_took, b_done) = b.join().unwrap();
            (took + b_took, done + b_done)
        });
        let wasm = (router.stats.nanos.load(Ordering::Relaxed) - n0) as f64 / done as f64;
        let per_call = took.as_nanos() as f64 / done as f64;
        println!(
            "  batch {batch:>3}, {:<44} {per_call:>8.0} | {:>6.0} | {wasm:>8.0}",
            "two threads taking turns:",
            per_call / batch as f64
        );
    }
}

fn over_the_wire() {
    // Runtime workers shared by the broker and the senders (`WASMQ_BENCH_WORKERS`, default
    // 2): with 1, every route call runs on the same thread, so the router's instance never
    // moves between cores.
    let workers = env_or("WASMQ_BENCH_WORKERS", 2usize).max(1);
    if workers != 2 {
        println!("\n(runtime with {workers} worker threads)");
    }
    if keyed_queues() {
        println!("\n(single sends: the client picks each message's key's queue)");
    }
    // The runtime's workers are named `bench-worker` (`CPU_GROUPS`).
    let broker = BenchBroker::start_on(support::runtime(workers), FlushMode::Async, |cfg| {
        // A run writes up to ~0.5 GB: retention deletes sealed segments seconds after they
        // fill, so the bench holds a few segments at a time, whatever the number of rounds.
        cfg.store.file_reserved_hours = 5.0 / 3600.0;
        cfg.store.cleanup_interval_ms = 1_000;
        // Our own use stays small (above); refuse writes only on a disk that is really full.
        cfg.store.disk_max_used_ratio = 0.98;
    });
    let addr = broker.addr;
    let mut results = Vec::new();
    broker.block_on(async {
        let c = broker.client().await;
        for case in CASES {
            support::create_topic(&c, case.topic(), QUEUES).await;
        }
        let wasm = std::fs::read(shipped::path("hash-router")).unwrap();
        for (name, config) in [
            (ROUTER, "[]"),
            (KEEP_ROUTER, r#"[["property","no-such-property"]]"#),
        ] {
            admin(
                &c,
                request::PLUGIN_LOAD,
                &[("name", name), ("config", config)],
                wasm.clone(),
            )
            .await;
        }
        for case in CASES {
            if let Some(name) = case.router() {
                admin(
                    &c,
                    request::PLUGIN_BIND,
                    &[("kind", "router"), ("topic", case.topic()), ("name", name)],
                    Vec::new(),
                )
                .await;
            }
        }

        let mut sent: Sent = [[0; QUEUES]; 3];
        for batch in [32usize, 1] {
            results.push((batch, table(addr, &c, batch, &mut sent).await));
        }

        // Everything sent is stored where it belongs, and the router saw every routed message.
        for case in CASES {
            let want = sent[case.index()];
            support::settle(&c, case.topic(), QUEUES, want.iter().sum()).await;
            let have = support::max_offsets(&c, case.topic(), QUEUES).await;
            assert_eq!(have, want, "{}: per-queue counts", case.topic());
        }
        for case in CASES {
            if let Some(name) = case.router() {
                let s = router_stats(&c, name).await;
                assert_eq!(s.failures, 0, "{name} failed");
                assert_eq!(s.messages, sent[case.index()].iter().sum::<u64>(), "{name}");
            }
        }
        let total = |case: Case| sent[case.index()].iter().sum::<u64>();
        println!(
            "\nverified: Plain holds {}, Kept {} and Routed {} messages, each queue what was sent to it; Routed per queue: {:?}",
            total(Case::Plain),
            total(Case::Kept),
            total(Case::Routed),
            sent[Case::Routed.index()]
        );
    });
    broker.stop();
    println!("\n== summary: routed/plain msgs/s (target >= 0.85)");
    for (batch, (ratio, mean)) in results {
        println!(
            "{batch:>3} per request: {ratio:.3}  (router mean {mean:.0} ns per message over the wire)"
        );
    }
}

fn main() {
    route_in_process();
    over_the_wire();
}
