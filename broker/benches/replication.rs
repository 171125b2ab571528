//! Replication (issue 12): what a slave costs a master's sends, and how fast a fresh slave
//! copies a master's log beside the disk's raw write rate, in one run.
//!
//! Brokers run in process (`wasmq::broker::run`, async flush, 256 MiB segments, shipped
//! plugins not loaded, no NameServer), each on its own runtime of 2 workers (the slave's
//! threads are named `slave-worker`) with its store in its own temp dir; a slave dials its
//! master's HA port (`ha_master_addr`) over loopback. Master, slave and producers share the
//! machine's cores, so whatever the slave and the master's replication session do (copies,
//! checksums, the slave's own dispatch) takes CPU from the master's sends; on a 2-core
//! machine that shows in the ratios, and the CPU figures say where it goes.
//!
//! 1. Sends: 16 producers, one connection each, SEND_MESSAGE_V2 of 1 KiB bodies to 8 queues,
//!    each waiting for its reply, for `WASMQ_BENCH_SECS` (default 5) or `WASMQ_BENCH_COUNT`
//!    messages in all (default 10,000,000), whichever ends first. Three cases, each on fresh
//!    brokers: no slave (an `async_master` alone), `async_master` + slave, and `sync_master`
//!    (`in_sync_replicas` 2) + slave. Before the clock starts: a slave is linked and in sync
//!    (HA_STATUS), a short warm-up has run and the slave holds it, and the process is idle
//!    (a broker's start-up work, such as prefaulting its first segments, is done). Figures:
//!    SUCCESS replies per second (messages and MB of bodies), the producers' latency p50 /
//!    p99 (all replies), cores kept busy and CPU us per reply (the whole process: brokers
//!    and producers; by thread group in the summary), how far the slave trailed when the
//!    producers stopped and how long it then took to hold everything, replies other than
//!    SUCCESS by code; ratios `sync_master` / `async_master` + slave (goal: at least 0.60)
//!    and `async_master` + slave / no slave. With a healthy slave a `sync_master` must answer
//!    SUCCESS to every send: any other reply (SLAVE_NOT_AVAILABLE, FLUSH_SLAVE_TIMEOUT, ...)
//!    in any case fails the bench once the tables are printed (with when the first and last
//!    came), and so does a slave that is not connected and in sync after a case.
//! 2. Catch-up: a master alone is filled with `WASMQ_BENCH_CATCHUP_MB` MiB of commit log
//!    (default 512; 1 KiB messages, batches of 128, 4 connections) and left to go idle, then
//!    `sync` writes every dirty page out. The disk's raw rate in the same temp filesystem: as
//!    many bytes written to a new file in 256 KiB `write`s (the page-cache rate), then one
//!    `fdatasync` (the disk rate, including the writes). Then a fresh, empty slave starts;
//!    its clock runs from the start until its commit log ends where the master's does
//!    (`maxOffset`, polled every 2 ms: "held"), then on until its commit-log files are
//!    `fdatasync`ed ("durable"). "1st byte" is when the slave first held any byte (its start,
//!    the link, and its first segment ready), "stream" the rate from there to "held".
//!
//!    Like with like: under async flush a slave copies the stream into its mapped segments,
//!    i.e. into the page cache, and its flusher writes them out every 500 ms; so "held" is a
//!    page-cache figure and is set beside the raw page-cache write, while "durable" (the same
//!    bytes on disk) is set beside raw write + `fdatasync`. The goal (catch-up at least 50%
//!    of the disk's raw write rate) is judged on the durable pair; both ratios are printed.
//!    The master's log was just written, so the master streams it from the page cache, not
//!    from a cold disk.
//!
//! `WASMQ_BENCH_RUNS` (default 3) repeats both parts; the order of the send cases rotates
//! from run to run, so drift falls on each case alike. Rows print as cases end; then a table
//! of ratios per run and the medians (ratios: the median of the per-run ratios).
//! `WASMQ_BENCH_LOG=1` prints the brokers' logs to stderr (`RUST_LOG` filters them).
//! `WASMQ_BENCH_SMOKE=1` shrinks everything to seconds in all (CI runs it that way; its
//! figures are not meaningful). Run: `cargo bench -p wasmq-broker --bench replication`.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{micros, pct, smoke, BenchBroker, SendReq, RPC};
use wasmq::config::BrokerRole;
use wasmq::net::RemotingClient;
use wasmq::protocol::response;
use wasmq::store::FlushMode;

const PRODUCERS: usize = 16;
const QUEUES: usize = 8;
const BODY: usize = 1024;
const TOPIC: &str = "Repl";
const WARM_TOPIC: &str = "ReplWarm";
const FILL_TOPIC: &str = "ReplFill";
/// Messages per fill batch, and fill connections.
const FILL_BATCH: usize = 128;
const FILL_CONNS: usize = 4;
/// Size of each raw `write`.
const WRITE_CHUNK: usize = 256 << 10;
/// How long a slave may take to link and be in sync.
const LINK_LIMIT: Duration = Duration::from_secs(30);
/// How long a slave may take to hold what its master stored, and a fill may take.
const COPY_LIMIT: Duration = Duration::from_secs(600);

/// `WASMQ_BENCH_SECS`: seconds of sending per case.
fn secs() -> f64 {
    support::secs(5.0, 0.3)
}

/// `WASMQ_BENCH_COUNT`: most messages per case.
fn max_count() -> usize {
    support::max_count(10_000_000, 3_000)
}

/// `WASMQ_BENCH_RUNS`: repetitions of the whole bench.
fn runs() -> usize {
    support::knob("WASMQ_BENCH_RUNS", 3usize, 1).max(1)
}

/// `WASMQ_BENCH_CATCHUP_MB`: commit-log bytes a fresh slave copies.
fn catch_up_bytes() -> u64 {
    support::knob("WASMQ_BENCH_CATCHUP_MB", 512u64, 16).max(1) << 20
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// An `async_master` without a slave.
    Alone,
    /// An `async_master` and a slave.
    Async,
    /// A `sync_master` (`in_sync_replicas` 2) and a slave.
    Sync,
}

impl Case {
    const ALL: [Case; 3] = [Case::Alone, Case::Async, Case::Sync];

    fn label(self) -> &'static str {
        match self {
            Case::Alone => "no slave",
            Case::Async => "async_master + slave",
            Case::Sync => "sync_master + slave",
        }
    }

    fn role(self) -> BrokerRole {
        match self {
            Case::Alone | Case::Async => BrokerRole::AsyncMaster,
            Case::Sync => BrokerRole::SyncMaster,
        }
    }

    fn has_slave(self) -> bool {
        self != Case::Alone
    }
}

// ---- brokers

/// A master with `role` (broker id 0); returns it and its HA address. Its broker port is the
/// HA port - 1, so the slave's metadata copy finds it.
fn start_master(role: BrokerRole) -> (BenchBroker, SocketAddr) {
    let (listen, ha) = support::free_pair();
    let b = BenchBroker::start(FlushMode::Async, |cfg| {
        cfg.listen = listen;
        cfg.broker_id = 0;
        cfg.broker_role = role;
        cfg.ha_listen = Some(ha);
        cfg.in_sync_replicas = 2;
        cfg.load_shipped_plugins = false;
        // The catch-up case fills 512 MiB as fast as it can before it measures: that setup
        // must not meet the dirty-bytes back-pressure (flow control), which is not measured here.
        cfg.store.max_dirty_bytes = 8 << 30;
    });
    (b, ha)
}

/// A fresh, empty slave (broker id 1) of the master whose HA port is `master_ha`.
fn start_slave(master_ha: SocketAddr) -> BenchBroker {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SLAVE_WORKER)
        .enable_all()
        .build()
        .expect("runtime");
    BenchBroker::start_on(rt, FlushMode::Async, |cfg| {
        cfg.broker_id = 1;
        cfg.broker_role = BrokerRole::Slave;
        cfg.ha_master_addr = Some(master_ha.to_string());
        cfg.load_shipped_plugins = false;
    })
}

fn max_offset(status: &Value) -> u64 {
    status["maxOffset"]
        .as_u64()
        .expect("maxOffset in HA_STATUS")
}

/// Slave 1 as its master's HA_STATUS lists it.
fn slave_entry(master_status: &Value) -> Option<&Value> {
    master_status["slaves"]
        .as_array()?
        .iter()
        .find(|s| s["brokerId"] == 1)
}

/// Whether the slave is connected to its master and the master counts it in sync.
fn healthy(master_status: &Value, slave_status: &Value) -> bool {
    slave_entry(master_status).is_some_and(|s| s["inSync"] == true)
        && slave_status["master"]["connected"] == true
}

/// Waits (bounded) until the slave is linked and in sync.
async fn wait_linked(master: &RemotingClient, slave: &RemotingClient) {
    let start = Instant::now();
    loop {
        let (m, s) = (
            support::ha_status(master).await,
            support::ha_status(slave).await,
        );
        if healthy(&m, &s) {
            return;
        }
        assert!(
            start.elapsed() < LINK_LIMIT,
            "the slave did not link within {LINK_LIMIT:?}\nmaster: {m}\nslave: {s}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (bounded) until the slave's commit log ends where the master's does (nothing is
/// being sent); how long that took.
async fn wait_caught_up(master: &RemotingClient, slave: &RemotingClient) -> Duration {
    let start = Instant::now();
    let want = max_offset(&support::ha_status(master).await);
    loop {
        let s = support::ha_status(slave).await;
        let have = max_offset(&s);
        assert!(
            have <= want,
            "the slave holds {have} bytes, the master {want}"
        );
        if have == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < COPY_LIMIT,
            "the slave holds {have} of {want} bytes after {COPY_LIMIT:?}\nslave: {s}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ---- CPU time

/// Names of the slave's runtime threads (the master's, shared with the producers, are
/// `bench-worker`).
const SLAVE_WORKER: &str = "slave-worker";

/// Where CPU time goes, by thread name: the master's runtime with the producers (and
/// threads it spawned unnamed, such as segment warmers), the slave's runtime (likewise),
/// the stores' dispatch and flush threads (both brokers'), and the rest.
const CPU_GROUPS: [&str; 5] = [
    "master rt+producers",
    "slave rt",
    "dispatch",
    "flush",
    "other",
];

/// CPU time so far in clock ticks (100 a second on Linux): the process's, and by
/// [`CPU_GROUPS`] for the threads alive now. Zeros where `/proc` is missing.
#[derive(Debug, Clone, Default)]
struct Cpu {
    total: u64,
    threads: BTreeMap<String, (usize, u64)>,
}

/// utime + stime of a `stat` line, and the thread's name.
fn stat_ticks(stat: &str) -> Option<(&str, u64)> {
    // The name may hold spaces: fields are counted after its closing parenthesis (utime is
    // field 14, stime 15).
    let name = &stat[stat.find('(')? + 1..stat.rfind(')')?];
    let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    Some((
        name,
        f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
    ))
}

fn cpu_total() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| stat_ticks(&s).map(|t| t.1))
        .unwrap_or(0)
}

fn cpu_now() -> Cpu {
    let mut threads = BTreeMap::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for e in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue; // gone meanwhile
            };
            if let Some((name, ticks)) = stat_ticks(&stat) {
                let group = match name {
                    "bench-worker" => 0,
                    SLAVE_WORKER => 1,
                    "wasmq-dispatch" => 2,
                    "wasmq-flush" => 3,
                    _ => 4,
                };
                threads.insert(e.file_name().to_string_lossy().into_owned(), (group, ticks));
            }
        }
    }
    Cpu {
        total: cpu_total(),
        threads,
    }
}

/// CPU seconds between two samples, by [`CPU_GROUPS`] (threads that ended meanwhile count
/// as "other", through the process's total).
fn cpu_between(a: &Cpu, b: &Cpu) -> [f64; 5] {
    let mut out = [0.0; 5];
    for (tid, (group, ticks)) in &b.threads {
        let before = a.threads.get(tid).map_or(0, |t| t.1);
        out[*group] += ticks.saturating_sub(before) as f64 / 100.0;
    }
    let total = b.total.saturating_sub(a.total) as f64 / 100.0;
    out[4] = (total - out[..4].iter().sum::<f64>()).max(0.0);
    out
}

/// Waits (bounded) until the process is nearly idle: under 20 ms of CPU in 200 ms. A
/// broker's background start-up work (its first segments created and prefaulted, some
/// hundreds of ms of CPU each) is done before a case measures, as it would be long before
/// a broker's steady state. Whether it got quiet.
async fn quiesce() -> bool {
    // How long the brokers may stay busy after their start.
    let limit = Duration::from_secs(if smoke() { 3 } else { 20 });
    let start = Instant::now();
    while start.elapsed() < limit {
        let before = cpu_total();
        tokio::time::sleep(Duration::from_millis(200)).await;
        if cpu_total().saturating_sub(before) < 2 {
            return true;
        }
    }
    false
}

// ---- part 1: sends

/// Replies of one code other than SUCCESS: how many, the first one's remark, and when the
/// first and the last came (since the producers started).
#[derive(Debug, Clone)]
struct Seen {
    n: usize,
    remark: String,
    first: Duration,
    last: Duration,
}

/// Replies other than SUCCESS, by code.
type Codes = BTreeMap<i32, Seen>;

fn add_codes(into: &mut Codes, from: &Codes) {
    for (code, s) in from {
        let e = into
            .entry(*code)
            .or_insert_with(|| Seen { n: 0, ..s.clone() });
        e.n += s.n;
        e.first = e.first.min(s.first);
        e.last = e.last.max(s.last);
    }
}

fn codes_text(codes: &Codes) -> String {
    if codes.is_empty() {
        return "0".into();
    }
    codes
        .iter()
        .map(|(code, s)| format!("{}x{}", s.n, code_name(*code)))
        .collect::<Vec<_>>()
        .join(",")
}

fn code_name(code: i32) -> String {
    match code {
        response::SLAVE_NOT_AVAILABLE => "SLAVE_NOT_AVAILABLE".into(),
        response::FLUSH_SLAVE_TIMEOUT => "FLUSH_SLAVE_TIMEOUT".into(),
        response::FLUSH_DISK_TIMEOUT => "FLUSH_DISK_TIMEOUT".into(),
        response::SYSTEM_BUSY => "SYSTEM_BUSY".into(),
        response::SYSTEM_ERROR => "SYSTEM_ERROR".into(),
        c => format!("code {c}"),
    }
}

struct Sent {
    replies: usize,
    ok: usize,
    elapsed: Duration,
    /// Latency of every reply, sorted, in microseconds.
    lat: Vec<u32>,
    codes: Codes,
}

/// [`PRODUCERS`] connections to `addr` send 1 KiB messages to `topic`, each waiting for its
/// reply, for at most `secs` and `count` messages in all.
async fn produce(addr: SocketAddr, topic: &str, secs: f64, count: usize) -> Sent {
    let mut conns = Vec::with_capacity(PRODUCERS);
    for _ in 0..PRODUCERS {
        conns.push(RemotingClient::connect(addr).await.expect("connect"));
    }
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(p, c)| {
            let topic = topic.to_string();
            let per = count / PRODUCERS + usize::from(p < count % PRODUCERS);
            tokio::spawn(async move {
                let body = vec![b'a' + (p % 26) as u8; BODY];
                let mut lat = Vec::with_capacity(per.min(1 << 20));
                let mut codes = Codes::new();
                let mut ok = 0usize;
                let mut n = 0usize;
                while n < per && Instant::now() < until {
                    let props =
                        format!("UNIQ_KEY\u{1}7F0000010000{p:04X}{n:016X}\u{2}WAIT\u{1}true\u{2}");
                    let req = SendReq::new(&topic, ((p + n) % QUEUES) as i32, &props)
                        .request(body.clone());
                    let t = Instant::now();
                    let r = c.invoke(req, RPC).await.expect("send");
                    lat.push(micros(t.elapsed()));
                    if r.code == response::SUCCESS {
                        ok += 1;
                    } else {
                        let at = started.elapsed();
                        let e = codes.entry(r.code).or_insert_with(|| Seen {
                            n: 0,
                            remark: r.remark.clone().unwrap_or_default(),
                            first: at,
                            last: at,
                        });
                        e.n += 1;
                        e.last = at;
                    }
                    n += 1;
                }
                (n, ok, lat, codes)
            })
        })
        .collect();
    let mut sent = Sent {
        replies: 0,
        ok: 0,
        elapsed: Duration::ZERO,
        lat: Vec::new(),
        codes: Codes::new(),
    };
    for t in tasks {
        let (n, ok, lat, codes) = t.await.expect("producer");
        sent.replies += n;
        sent.ok += ok;
        sent.lat.extend(lat);
        add_codes(&mut sent.codes, &codes);
    }
    sent.elapsed = started.elapsed();
    sent.lat.sort_unstable();
    sent
}

struct SendRow {
    run: usize,
    case: Case,
    sent: Sent,
    /// Replies other than SUCCESS during the warm-up.
    warm_codes: Codes,
    /// Bytes the slave trailed by when the producers stopped, and how long it then took to
    /// hold everything.
    lag_end: Option<(u64, Duration)>,
    /// Why the slave was not healthy after the case, if it was not.
    unhealthy: Option<String>,
    /// CPU seconds while the producers sent, by [`CPU_GROUPS`].
    cpu: [f64; 5],
    /// Whether the process was idle before the producers started.
    quiet: bool,
}

impl SendRow {
    fn rate(&self) -> f64 {
        self.sent.ok as f64 / self.sent.elapsed.as_secs_f64()
    }

    /// Cores kept busy (process CPU seconds per second).
    fn cores(&self) -> f64 {
        self.cpu.iter().sum::<f64>() / self.sent.elapsed.as_secs_f64()
    }

    /// Process CPU microseconds per reply, in all and by [`CPU_GROUPS`].
    fn cpu_per_msg(&self) -> (f64, [f64; 5]) {
        let n = self.sent.replies.max(1) as f64;
        let by = self.cpu.map(|c| c * 1e6 / n);
        (by.iter().sum(), by)
    }
}

fn send_header() {
    println!(
        "{:>3} {:<21} {:>8} {:>7} {:>5} {:>6} {:>6} {:>5} {:>7} {:>7} {:>11} {:>8}  not SUCCESS",
        "run",
        "case",
        "replies",
        "msg/s",
        "MB/s",
        "p50 us",
        "p99 us",
        "cores",
        "CPU us/",
        "slave",
        "lag at end",
        "catch-up",
    );
    println!(
        "{:>3} {:<21} {:>8} {:>7} {:>5} {:>6} {:>6} {:>5} {:>7} {:>7} {:>11} {:>8}",
        "", "", "", "", "", "", "", "busy", "msg", "rt us", "KiB", "ms"
    );
}

fn print_send(r: &SendRow) {
    let (lag, catch) = match r.lag_end {
        Some((bytes, d)) => (
            format!("{:.1}", bytes as f64 / 1024.0),
            format!("{:.1}", d.as_secs_f64() * 1e3),
        ),
        None => ("-".into(), "-".into()),
    };
    let (cpu, by) = r.cpu_per_msg();
    let slave_cpu = if r.case.has_slave() {
        format!("{:.1}", by[1])
    } else {
        "-".into()
    };
    println!(
        "{:>3} {:<21} {:>8} {:>7.0} {:>5.1} {:>6.0} {:>6.0} {:>5.2} {:>7.1} {:>7} {:>11} {:>8}  {}{}",
        r.run,
        r.case.label(),
        r.sent.replies,
        r.rate(),
        r.rate() * BODY as f64 / (1 << 20) as f64,
        pct(&r.sent.lat, 0.50),
        pct(&r.sent.lat, 0.99),
        r.cores(),
        cpu,
        slave_cpu,
        lag,
        catch,
        codes_text(&r.sent.codes),
        if r.quiet {
            ""
        } else {
            " (the brokers were still busy when the producers started)"
        },
    );
}

/// One send case on fresh brokers.
fn send_case(run: usize, case: Case) -> SendRow {
    // No dirty pages of the previous case competing with this one's writes.
    support::sync_disks();
    let (master, ha) = start_master(case.role());
    let slave = case.has_slave().then(|| start_slave(ha));
    let addr = master.addr;
    let (secs, count) = (secs(), max_count());
    let row = master.block_on(async {
        let mc = master.client().await;
        let sc = match &slave {
            Some(s) => Some(s.client().await),
            None => None,
        };
        support::create_topic(&mc, TOPIC, QUEUES).await;
        support::create_topic(&mc, WARM_TOPIC, QUEUES).await;
        if let Some(sc) = &sc {
            wait_linked(&mc, sc).await;
        }
        // Warm up: connections, topic tables, the first segment's pages, the HA stream.
        let warm = produce(addr, WARM_TOPIC, (secs / 5.0).min(0.5), count.min(5_000)).await;
        if let Some(sc) = &sc {
            wait_caught_up(&mc, sc).await;
            wait_linked(&mc, sc).await;
        }
        let quiet = quiesce().await;
        let before = cpu_now();
        let sent = produce(addr, TOPIC, secs, count).await;
        let cpu = cpu_between(&before, &cpu_now());
        let (mut lag_end, mut unhealthy) = (None, None);
        if let Some(sc) = &sc {
            let m = max_offset(&support::ha_status(&mc).await);
            let s = max_offset(&support::ha_status(sc).await);
            let took = wait_caught_up(&mc, sc).await;
            lag_end = Some((m.saturating_sub(s), took));
            let (ms, ss) = (support::ha_status(&mc).await, support::ha_status(sc).await);
            if !healthy(&ms, &ss) {
                unhealthy = Some(format!("master: {ms}\nslave: {ss}"));
            }
        }
        SendRow {
            run,
            case,
            sent,
            warm_codes: warm.codes,
            lag_end,
            unhealthy,
            cpu,
            quiet,
        }
    });
    if let Some(s) = slave {
        s.stop();
    }
    master.stop();
    row
}

// ---- part 2: catch-up

/// Fills `addr`'s commit log to at least `target` bytes with batches of 1 KiB messages from
/// [`FILL_CONNS`] connections; the log's end.
async fn fill(addr: SocketAddr, target: u64) -> u64 {
    let tasks: Vec<_> = (0..FILL_CONNS)
        .map(|f| {
            tokio::spawn(async move {
                let c = RemotingClient::connect(addr).await.expect("connect");
                let body = vec![b'A' + f as u8; BODY];
                let mut batch = Vec::with_capacity(FILL_BATCH * (BODY + 64));
                for _ in 0..FILL_BATCH {
                    wasmq::protocol::batch::encode_entry(&mut batch, 0, &body, b"").unwrap();
                }
                let start = Instant::now();
                for n in 0usize.. {
                    let req = SendReq::new(FILL_TOPIC, ((f + n) % QUEUES) as i32, "")
                        .batch(batch.clone());
                    let r = c.invoke(req, RPC).await.expect("fill send");
                    assert_eq!(r.code, response::SUCCESS, "fill: {:?}", r.remark);
                    let end = max_offset(&support::ha_status(&c).await);
                    if end >= target {
                        return end;
                    }
                    assert!(
                        start.elapsed() < COPY_LIMIT,
                        "fill: {end} of {target} bytes after {COPY_LIMIT:?}"
                    );
                }
                unreachable!()
            })
        })
        .collect();
    let mut end = 0;
    for t in tasks {
        end = end.max(t.await.expect("filler"));
    }
    end
}

/// `bytes` written to a new file in `dir` in [`WRITE_CHUNK`] writes, then `fdatasync`: the
/// time to the last write (page cache) and to the end of the `fdatasync` (disk).
fn raw_write(dir: &Path, bytes: u64) -> (Duration, Duration) {
    let path = dir.join("raw-write");
    let mut f = std::fs::File::create(&path).expect("create the raw file");
    let chunk = vec![0x5Au8; WRITE_CHUNK];
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(WRITE_CHUNK as u64) as usize;
        f.write_all(&chunk[..n]).expect("raw write");
        left -= n as u64;
    }
    let cached = start.elapsed();
    f.sync_data().expect("fdatasync");
    let durable = start.elapsed();
    drop(f);
    let _ = std::fs::remove_file(&path);
    (cached, durable)
}

/// `fdatasync` of every file in `dir`.
fn sync_files(dir: &Path) {
    for e in std::fs::read_dir(dir).expect("read the commit-log dir") {
        let p = e.expect("dir entry").path();
        if p.is_file() {
            std::fs::File::open(&p)
                .and_then(|f| f.sync_data())
                .expect("fdatasync a segment");
        }
    }
}

struct CatchUpRow {
    run: usize,
    /// Commit-log bytes the slave copied (and the raw write wrote).
    bytes: u64,
    fill: Duration,
    raw_cached: Duration,
    raw_durable: Duration,
    /// From the slave's start to its first byte, to holding everything, and to that being
    /// on disk.
    first: Duration,
    held: Duration,
    durable: Duration,
}

impl CatchUpRow {
    fn rate(&self, d: Duration) -> f64 {
        mb(self.bytes) / d.as_secs_f64()
    }
    fn held_rate(&self) -> f64 {
        self.rate(self.held)
    }
    /// From the first byte on: the stream without the slave's start.
    fn stream_rate(&self) -> f64 {
        self.rate(self.held.saturating_sub(self.first))
    }
    fn durable_rate(&self) -> f64 {
        self.rate(self.durable)
    }
    fn raw_cached_rate(&self) -> f64 {
        self.rate(self.raw_cached)
    }
    fn raw_durable_rate(&self) -> f64 {
        self.rate(self.raw_durable)
    }
}

fn catch_up_header() {
    println!(
        "{:>3} {:>7} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9}",
        "run",
        "log MB",
        "fill MB/s",
        "raw cache",
        "raw disk",
        "1st byte",
        "held",
        "durable",
        "stream",
        "held/",
        "durable/"
    );
    println!(
        "{:>3} {:>7} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9}",
        "", "", "", "MB/s", "MB/s", "ms", "MB/s", "MB/s", "MB/s", "cache", "disk"
    );
}

fn print_catch_up(r: &CatchUpRow) {
    println!(
        "{:>3} {:>7.0} {:>9.0} {:>10.0} {:>9.0} {:>9.1} {:>9.0} {:>9.0} {:>9.0} {:>7.2}x {:>8.2}x",
        r.run,
        mb(r.bytes),
        r.rate(r.fill),
        r.raw_cached_rate(),
        r.raw_durable_rate(),
        r.first.as_secs_f64() * 1e3,
        r.held_rate(),
        r.durable_rate(),
        r.stream_rate(),
        r.held_rate() / r.raw_cached_rate(),
        r.durable_rate() / r.raw_durable_rate(),
    );
}

/// A master alone filled with [`catch_up_bytes`]; the raw write of as many bytes; a fresh
/// slave copying them.
fn catch_up_case(run: usize) -> CatchUpRow {
    support::sync_disks();
    let (master, ha) = start_master(BrokerRole::AsyncMaster);
    let target = catch_up_bytes();
    let (bytes, fill_took) = master.block_on(async {
        let mc = master.client().await;
        support::create_topic(&mc, FILL_TOPIC, QUEUES).await;
        let start = Instant::now();
        fill(master.addr, target).await;
        let took = start.elapsed();
        // The log's end once every fill reply is in (no more sends).
        let end = max_offset(&support::ha_status(&mc).await);
        // The master's dispatch and segment preparation done: only the copy runs below.
        quiesce().await;
        (end, took)
    });
    // The master's pages on disk: the raw write and the slave's copy are the only writes.
    support::sync_disks();
    let raw_dir = tempfile::tempdir().expect("temp dir");
    let (raw_cached, raw_durable) = raw_write(raw_dir.path(), bytes);
    drop(raw_dir);
    support::sync_disks();

    let start = Instant::now();
    let slave = start_slave(ha);
    let (first, held) = master.block_on(async {
        let sc = slave.client().await;
        let mut first = None;
        loop {
            let s = support::ha_status(&sc).await;
            let have = max_offset(&s);
            if have > 0 && first.is_none() {
                first = Some(start.elapsed());
            }
            assert!(
                have <= bytes,
                "the slave holds {have} bytes, the master {bytes}"
            );
            if have == bytes {
                break (first.unwrap_or_default(), start.elapsed());
            }
            assert!(
                start.elapsed() < COPY_LIMIT,
                "the slave holds {have} of {bytes} bytes after {COPY_LIMIT:?}\nslave: {s}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    sync_files(&slave.store_dir().join("commitlog"));
    let durable = start.elapsed();
    slave.stop();
    master.stop();
    CatchUpRow {
        run,
        bytes,
        fill: fill_took,
        raw_cached,
        raw_durable,
        first,
        held,
        durable,
    }
}

// ---- summary

fn med(v: impl Iterator<Item = f64>) -> f64 {
    support::median(&v.collect::<Vec<_>>())
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

fn verdict(r: f64, goal: f64) -> &'static str {
    if r >= goal {
        "met"
    } else {
        "NOT met"
    }
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    if support::flag("WASMQ_BENCH_LOG") {
        // The brokers' logs (links, refusals, reconnects) on stderr, filtered by `RUST_LOG`.
        wasmq::logging::init();
    }
    let runs = runs();
    println!(
        "wasmq replication benchmark: in-process master and slave over loopback (async flush, \
         256 MiB segments, 2 runtime workers each, {} CPUs), {BODY} B bodies, {PRODUCERS} \
         producers, up to {} s and {} messages per case, catch-up of {:.0} MiB, {runs} run(s){}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        secs(),
        max_count(),
        mb(catch_up_bytes()),
        if smoke() {
            " (smoke: figures not meaningful)"
        } else {
            ""
        }
    );
    let mut sends: Vec<SendRow> = Vec::new();
    let mut catch_ups: Vec<CatchUpRow> = Vec::new();
    for run in 1..=runs {
        println!();
        println!(
            "run {run}: sends ({PRODUCERS} producers, one connection each, SEND_MESSAGE_V2 \
             waiting for each reply; msg/s = SUCCESS replies per second; latency of all replies; \
             lag at end = bytes the slave trailed by when the producers stopped)"
        );
        send_header();
        for i in 0..Case::ALL.len() {
            let case = Case::ALL[(i + run - 1) % Case::ALL.len()];
            let row = send_case(run, case);
            print_send(&row);
            sends.push(row);
        }
        println!();
        println!(
            "run {run}: catch-up of a fresh slave vs raw sequential write of as many bytes \
             ({} KiB writes) in the same temp filesystem",
            WRITE_CHUNK >> 10
        );
        catch_up_header();
        let row = catch_up_case(run);
        print_catch_up(&row);
        catch_ups.push(row);
    }

    let rate = |run: usize, case: Case| {
        sends
            .iter()
            .find(|r| r.run == run && r.case == case)
            .map_or(0.0, SendRow::rate)
    };
    println!();
    println!("ratios per run (throughput: higher is better)");
    println!(
        "{:>3} {:>16} {:>22} {:>19} {:>20}",
        "run", "sync / async", "async+slave / none", "catch-up durable /", "catch-up held /"
    );
    println!(
        "{:>3} {:>16} {:>22} {:>19} {:>20}",
        "", "(goal >= 0.60)", "", "raw disk (>= 0.50)", "raw page cache"
    );
    let mut sync_async = Vec::new();
    let mut async_none = Vec::new();
    let mut durable_raw = Vec::new();
    let mut held_raw = Vec::new();
    for run in 1..=runs {
        let sa = ratio(rate(run, Case::Sync), rate(run, Case::Async));
        let an = ratio(rate(run, Case::Async), rate(run, Case::Alone));
        let c = &catch_ups[run - 1];
        let dr = ratio(c.durable_rate(), c.raw_durable_rate());
        let hr = ratio(c.held_rate(), c.raw_cached_rate());
        println!("{run:>3} {sa:>15.2}x {an:>21.2}x {dr:>18.2}x {hr:>19.2}x");
        sync_async.push(sa);
        async_none.push(an);
        durable_raw.push(dr);
        held_raw.push(hr);
    }

    println!();
    println!("medians over {runs} run(s)");
    println!(
        "{:<21} {:>9} {:>7} {:>8} {:>8} {:>6} {:>11}  not SUCCESS",
        "case", "msg/s", "MB/s", "p50 us", "p99 us", "cores", "CPU us/msg"
    );
    for case in Case::ALL {
        let rows: Vec<&SendRow> = sends.iter().filter(|r| r.case == case).collect();
        let m = med(rows.iter().map(|r| r.rate()));
        let mut codes = Codes::new();
        for r in &rows {
            add_codes(&mut codes, &r.sent.codes);
        }
        println!(
            "{:<21} {:>9.0} {:>7.1} {:>8.0} {:>8.0} {:>6.2} {:>11.1}  {}",
            case.label(),
            m,
            m * BODY as f64 / (1 << 20) as f64,
            med(rows.iter().map(|r| pct(&r.sent.lat, 0.50))),
            med(rows.iter().map(|r| pct(&r.sent.lat, 0.99))),
            med(rows.iter().map(|r| r.cores())),
            med(rows.iter().map(|r| r.cpu_per_msg().0)),
            codes_text(&codes)
        );
    }
    println!();
    println!("CPU us per reply by thread while the producers sent (medians; all in one process)");
    print!("{:<21}", "case");
    for g in CPU_GROUPS {
        print!(" {g:>19}");
    }
    println!();
    for case in Case::ALL {
        let rows: Vec<&SendRow> = sends.iter().filter(|r| r.case == case).collect();
        print!("{:<21}", case.label());
        for g in 0..CPU_GROUPS.len() {
            print!(" {:>19.1}", med(rows.iter().map(|r| r.cpu_per_msg().1[g])));
        }
        println!();
    }
    println!();
    let cm = |f: fn(&CatchUpRow) -> f64| med(catch_ups.iter().map(f));
    println!(
        "catch-up: held {:.0} MB/s, durable {:.0} MB/s (first byte after {:.1} ms, then {:.0} \
         MB/s); raw write: page cache {:.0} MB/s, with fdatasync {:.0} MB/s",
        cm(CatchUpRow::held_rate),
        cm(CatchUpRow::durable_rate),
        med(catch_ups.iter().map(|r| r.first.as_secs_f64() * 1e3)),
        cm(CatchUpRow::stream_rate),
        cm(CatchUpRow::raw_cached_rate),
        cm(CatchUpRow::raw_durable_rate),
    );
    let (sa, an, dr, hr) = (
        support::median(&sync_async),
        support::median(&async_none),
        support::median(&durable_raw),
        support::median(&held_raw),
    );
    println!(
        "sync_master + slave / async_master + slave throughput: {sa:.2} (goal >= 0.60: {})",
        verdict(sa, 0.60)
    );
    println!("async_master + slave / no slave throughput: {an:.2}");
    println!(
        "catch-up durable / raw write + fdatasync: {dr:.2} (goal >= 0.50: {})",
        verdict(dr, 0.50)
    );
    println!(
        "catch-up held / raw write to the page cache: {hr:.2} (like with like, for reference)"
    );

    // What must not happen: replies other than SUCCESS, a slave not healthy after a case.
    let mut failures = Vec::new();
    for r in &sends {
        for (what, codes) in [("warm-up", &r.warm_codes), ("measured", &r.sent.codes)] {
            for (code, s) in codes {
                failures.push(format!(
                    "run {} {} ({what}): {} replies {} ({code}) from {:.3} s to {:.3} s \
                     after the producers started, e.g. {:?}",
                    r.run,
                    r.case.label(),
                    s.n,
                    code_name(*code),
                    s.first.as_secs_f64(),
                    s.last.as_secs_f64(),
                    s.remark
                ));
            }
        }
        if let Some(why) = &r.unhealthy {
            failures.push(format!(
                "run {} {}: the slave was not connected and in sync after the case\n{why}",
                r.run,
                r.case.label()
            ));
        }
    }
    if failures.is_empty() {
        println!("every reply was SUCCESS; every slave was connected and in sync after its case");
    } else {
        eprintln!();
        for f in &failures {
            eprintln!("FAILED: {f}");
        }
        std::process::exit(1);
    }
}
