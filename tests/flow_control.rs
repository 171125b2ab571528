//! Flow control (issue 14) with the real `wasmq-broker` binary on loopback: send-side
//! back-pressure under a flood of producers (SYSTEM_BUSY, bounded waits and memory, nothing
//! acknowledged lost or doubled), a real client (npm `ali-ons`) meeting refusals, and pulls:
//! 10,000 held long polls (memory, every one woken by new data), the bound on held pulls and
//! the caps per pull.
//!
//! Figures are printed (`--nocapture`); the bounds asserted are stated beside each check.

mod broker_support;
mod clients_support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker_support::wire::{ext, records, PullReq, SendReq};
use broker_support::BrokerProc;
use clients_support::{events, run, Lang};
use serde_json::{json, Value};
use wasmq::net::RemotingClient;
use wasmq::protocol::{request, response, RemotingCommand};

const RPC: Duration = Duration::from_secs(30);

/// The scenarios load the machine on purpose: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Writes a config file (TOML) next to the store directory; the broker takes it with `--config`.
fn config_file(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("broker.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn start(dir: &Path, config: &str, env: &[(&str, &str)]) -> BrokerProc {
    let cfg = config_file(dir, config);
    let cfg = cfg.to_str().unwrap();
    BrokerProc::start_env(&dir.join("store"), &["--config", cfg], env)
}

/// The process's anonymous resident memory (`RssAnon` of `/proc/PID/status`), in KiB.
fn rss_anon_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .expect("RssAnon in /proc/PID/status")
}

/// CPU time (user + system) a process has used so far (`/proc/PID/stat`), in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) are space-separated; utime and
    // stime are the 14th and 15th fields of the line.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Samples a process's RssAnon every 20 ms until stopped; the largest value seen.
struct RssSampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: i32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(rss_anon_kib(pid)));
        let (s, m) = (stop.clone(), max.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                m.fetch_max(rss_anon_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssSampler {
            stop,
            max,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max.load(Ordering::Relaxed)
    }
}

async fn create_topic(c: &RemotingClient, topic: &str, queues: usize) {
    let q = queues.to_string();
    let r = c
        .invoke(
            RemotingCommand::new_request(
                request::UPDATE_AND_CREATE_TOPIC,
                ext(&[
                    ("topic", topic),
                    ("readQueueNums", &q),
                    ("writeQueueNums", &q),
                    ("perm", "6"),
                ]),
            ),
            RPC,
        )
        .await
        .unwrap();
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
}

async fn max_offset(c: &RemotingClient, topic: &str, queue: usize) -> i64 {
    let r = c
        .invoke(
            RemotingCommand::new_request(
                request::GET_MAX_OFFSET,
                ext(&[("topic", topic), ("queueId", &queue.to_string())]),
            ),
            RPC,
        )
        .await
        .unwrap();
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    r.ext_fields.get_i64("offset").unwrap().unwrap_or(0)
}

/// Every message of a queue, pulled from offset 0 (no hold): (queue offset, body).
async fn pull_queue(c: &RemotingClient, topic: &str, queue: usize) -> Vec<(i64, Vec<u8>)> {
    let end = max_offset(c, topic, queue).await;
    let mut out = Vec::new();
    let mut offset = 0i64;
    while offset < end {
        let r = c
            .invoke(
                PullReq::new("CG_CHECK", topic, queue as i32, offset)
                    .max(1024)
                    .request(),
                RPC,
            )
            .await
            .unwrap();
        assert_eq!(
            r.code,
            response::SUCCESS,
            "{topic}/{queue}@{offset}: {:?}",
            r.remark
        );
        let recs = records(&r.body);
        assert!(!recs.is_empty());
        for rec in recs {
            out.push((rec.queue_offset, rec.body));
        }
        offset = r.ext_fields.get_i64("nextBeginOffset").unwrap().unwrap();
    }
    out
}

/// Every message of a topic's queues `0..queues`: body -> every (queue, offset) it is at.
async fn stored_on(
    c: &RemotingClient,
    topic: &str,
    queues: usize,
) -> HashMap<Vec<u8>, Vec<(usize, i64)>> {
    let mut at: HashMap<Vec<u8>, Vec<(usize, i64)>> = HashMap::new();
    for q in 0..queues {
        for (offset, body) in pull_queue(c, topic, q).await {
            at.entry(body).or_default().push((q, offset));
        }
    }
    at
}

/// What one send got: its code, how long the client waited, and where SEND_OK put it.
struct Sent {
    body: Vec<u8>,
    code: i32,
    remark: Option<String>,
    wait: Duration,
    queue: i32,
    queue_offset: i64,
}

const FLOOD_QUEUES: usize = 8;
const PRODUCERS: usize = 64;
/// Sends each producer keeps in flight (pipelined on its connection).
const WINDOW: usize = 8;
const FLOOD_BODY: usize = 512;
/// The broker's `wait_time_ms_in_send_queue` in the flood.
const FLOOD_WAIT_MS: u64 = 10;
/// How long the flood lasts, and the most sends per producer.
const FLOOD_SECS: f64 = 4.0;
const FLOOD_MAX_PER_PRODUCER: usize = 20_000;
/// Stated bounds: no send waits (as its client measures it, request written to reply read,
/// both sockets included, on a 2-core machine the client shares) longer than the broker's
/// `wait_time_ms_in_send_queue` plus this margin (observed here: max 0.35-0.8 s with flow
/// control, 0.5 s with `flow_control = false`; in this closed loop of 512 sends in flight the
/// waits are the machine's, mostly CPU shared by the broker, the test's clients and other
/// builds)...
const FLOOD_WAIT_MARGIN: Duration = Duration::from_millis(1500);
/// ...and the broker's RssAnon grows at most this much above idle during the flood
/// (observed: +8 MiB).
const FLOOD_RSS_BOUND_KIB: u64 = 32 * 1024;

/// A producer's body `p<producer>-<slot>-<n>`, padded with `.` to [`FLOOD_BODY`] bytes.
fn flood_body(p: usize, slot: usize, n: usize) -> Vec<u8> {
    let mut b = format!("p{p}-{slot}-{n}-").into_bytes();
    b.resize(FLOOD_BODY, b'.');
    b
}

#[test]
fn a_flood_of_producers_is_pushed_back_and_nothing_acknowledged_is_lost() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = start(
        dir.path(),
        &format!("[broker]\nwait_time_ms_in_send_queue = {FLOOD_WAIT_MS}\n"),
        &[],
    );
    let rt = rt();
    let admin = rt.block_on(RemotingClient::connect(broker.broker)).unwrap();
    rt.block_on(create_topic(&admin, "Flood", FLOOD_QUEUES));
    // Warm up (connections, topic, first segment pages), then settle: the idle figure.
    rt.block_on(async {
        for i in 0..200 {
            let req = SendReq::new("Warm", i % 4, "").request(vec![b'w'; FLOOD_BODY]);
            let r = admin.invoke(req, RPC).await.unwrap();
            assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_anon_kib(broker.pid());
    let sampler = RssSampler::start(broker.pid());
    let (broker_cpu, own_cpu) = (
        cpu_ticks(broker.pid()),
        cpu_ticks(std::process::id() as i32),
    );
    let started = Instant::now();
    let sent: Vec<Sent> = rt.block_on(async {
        let mut conns = Vec::new();
        for _ in 0..PRODUCERS {
            conns.push(Arc::new(
                RemotingClient::connect(broker.broker).await.unwrap(),
            ));
        }
        let until = Instant::now() + Duration::from_secs_f64(FLOOD_SECS);
        let per_slot = FLOOD_MAX_PER_PRODUCER / WINDOW;
        let mut tasks = Vec::new();
        for (p, c) in conns.iter().enumerate() {
            for slot in 0..WINDOW {
                let c = c.clone();
                tasks.push(tokio::spawn(async move {
                    let mut out = Vec::new();
                    let queue = ((p + slot) % FLOOD_QUEUES) as i32;
                    for n in 0..per_slot {
                        if Instant::now() >= until {
                            break;
                        }
                        let body = flood_body(p, slot, n);
                        let req = SendReq::new("Flood", queue, "").request(body.clone());
                        let t = Instant::now();
                        let r = c.invoke(req, RPC).await.expect("every send is answered");
                        let wait = t.elapsed();
                        let queue_offset = r.ext_fields.get_i64("queueOffset").ok().flatten();
                        out.push(Sent {
                            body,
                            code: r.code,
                            remark: r.remark.clone(),
                            wait,
                            queue,
                            queue_offset: queue_offset.unwrap_or(-1),
                        });
                    }
                    out
                }));
            }
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let elapsed = started.elapsed();
    let peak = sampler.finish();
    let broker_cpu = cpu_ticks(broker.pid()) - broker_cpu;
    let own_cpu = cpu_ticks(std::process::id() as i32) - own_cpu;
    let ok: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.code == response::SUCCESS)
        .collect();
    let busy: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.code == response::SYSTEM_BUSY)
        .collect();
    let other: Vec<(i32, &Option<String>)> = sent
        .iter()
        .filter(|s| s.code != response::SUCCESS && s.code != response::SYSTEM_BUSY)
        .map(|s| (s.code, &s.remark))
        .take(5)
        .collect();
    // The broker's own measure of the refused sends' time in queue (from their remarks).
    let period = |s: &&Sent| -> u64 {
        let r = s.remark.as_deref().unwrap_or("");
        r.split("period in queue: ")
            .nth(1)
            .and_then(|t| t.split("ms").next())
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(0)
    };
    let max_period = busy.iter().map(period).max().unwrap_or(0);
    let mut ok_waits: Vec<Duration> = ok.iter().map(|s| s.wait).collect();
    ok_waits.sort();
    let mut waits: Vec<Duration> = sent.iter().map(|s| s.wait).collect();
    waits.sort();
    let q = |p: f64| waits[((waits.len() - 1) as f64 * p) as usize];
    println!(
        "flood: CPU used: broker {broker_cpu} ticks, test process {own_cpu} ticks; SEND_OK client wait p50 {:?} max {:?}; refused after at most {max_period} ms in the broker's queue, e.g. {:?}",
        ok_waits.get(ok_waits.len() / 2),
        ok_waits.last(),
        busy.last().and_then(|s| s.remark.as_deref())
    );
    println!(
        "flood: {} producers x {WINDOW} in flight for {elapsed:.1?}: {} sends, {} SEND_OK ({:.0}/s), {} SYSTEM_BUSY; client wait p50 {:?} p99 {:?} max {:?}; RssAnon idle {} KiB, peak {} KiB (+{} KiB)",
        PRODUCERS,
        sent.len(),
        ok.len(),
        ok.len() as f64 / elapsed.as_secs_f64(),
        busy.len(),
        q(0.5),
        q(0.99),
        q(1.0),
        idle,
        peak,
        peak.saturating_sub(idle)
    );
    assert!(other.is_empty(), "only SEND_OK and SYSTEM_BUSY: {other:?}");
    // Requests are handled inline as they are read (issue 13), so a flood mostly waits in its
    // own sockets (TCP pushes back) rather than in the broker; SYSTEM_BUSY comes only when a
    // send still waited past `wait_time_ms_in_send_queue` inside the broker. Either way every
    // wait stays within the bound checked below.
    if busy.is_empty() {
        println!("flood: no SYSTEM_BUSY: the sends waited in their sockets, not in the broker");
    }
    assert!(!ok.is_empty());
    for s in busy.iter().take(50) {
        let remark = s.remark.as_deref().unwrap_or("");
        assert!(
            remark.starts_with("[TIMEOUT_CLEAN_QUEUE]broker busy, start flow control for a while, period in queue: ")
                && remark.contains("ms, size of queue: "),
            "{remark}"
        );
    }
    let bound = Duration::from_millis(FLOOD_WAIT_MS) + FLOOD_WAIT_MARGIN;
    assert!(
        q(1.0) <= bound,
        "a send waited {:?} (bound {bound:?})",
        q(1.0)
    );
    assert!(
        peak.saturating_sub(idle) <= FLOOD_RSS_BOUND_KIB,
        "RssAnon grew {} KiB above idle (bound {FLOOD_RSS_BOUND_KIB} KiB)",
        peak - idle
    );
    // Every SEND_OK is stored exactly once, where its reply said; nothing refused is stored.
    let at = rt.block_on(stored_on(&admin, "Flood", FLOOD_QUEUES));
    for s in &ok {
        let places = at.get(&s.body).map(Vec::as_slice).unwrap_or(&[]);
        assert_eq!(
            places,
            &[(s.queue as usize, s.queue_offset)],
            "{} acknowledged at {}/{}",
            String::from_utf8_lossy(&s.body[..16]),
            s.queue,
            s.queue_offset
        );
    }
    for s in &busy {
        assert!(
            !at.contains_key(&s.body),
            "{} was refused but stored",
            String::from_utf8_lossy(&s.body[..16])
        );
    }
    assert_eq!(
        at.len(),
        ok.len(),
        "stored messages are exactly the acknowledged ones"
    );
    if !busy.is_empty() {
        let log = broker.log_text();
        assert!(log.contains("flow control: send refused"), "{log}");
    }
}

fn sent_ok(lines: &[Value]) -> Vec<&Value> {
    events(lines, "sent")
        .into_iter()
        .filter(|l| l["status"] == "SEND_OK")
        .collect()
}

/// A JSON number or a number in a string (ali-ons reports queue ids as strings).
fn num(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The ali-ons producer's messages `<prefix>-<i>-` (`n` of them) are each stored exactly once,
/// on the broker, queue and offset ali-ons was told; `brokers` are (broker name, process).
fn check_stored_once(
    brokers: &[(&str, &BrokerProc)],
    topic: &str,
    prefix: &str,
    n: usize,
    out: &[Value],
) {
    let rt = rt();
    let mut stored: BTreeMap<String, Vec<(String, usize, i64)>> = BTreeMap::new();
    for (name, broker) in brokers {
        let c = rt.block_on(RemotingClient::connect(broker.broker)).unwrap();
        for (body, places) in rt.block_on(stored_on(&c, topic, 4)) {
            let e = stored.entry(String::from_utf8(body).unwrap()).or_default();
            e.extend(places.into_iter().map(|(q, o)| (name.to_string(), q, o)));
        }
    }
    let mut told: BTreeMap<String, (String, usize, i64)> = BTreeMap::new();
    for l in sent_ok(out) {
        let i = num(&l["i"]);
        let place = (
            l["brokerName"].as_str().unwrap().to_string(),
            num(&l["queueId"]) as usize,
            num(&l["queueOffset"]),
        );
        assert!(
            told.insert(format!("{prefix}-{i}-"), place).is_none(),
            "{i} acknowledged twice"
        );
    }
    assert_eq!(told.len(), n, "every message acknowledged once");
    assert_eq!(stored.len(), n, "exactly the messages sent are stored");
    for (body, place) in &told {
        assert_eq!(stored.get(body), Some(&vec![place.clone()]), "{body}");
    }
}

#[test]
fn ali_ons_retries_a_busy_store_on_its_own_and_nothing_is_lost_or_doubled() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    // On broker-a every 3rd send finds the store busy: `[PC_SYNCHRONIZED]`, SYSTEM_ERROR as
    // RocketMQ answers it, which ali-ons retries by itself on another broker (it never retries
    // on the broker that refused, so a second broker, broker-b, registers with broker-a's
    // NameServer).
    std::fs::create_dir_all(dir.path().join("a")).unwrap();
    let a = start(
        &dir.path().join("a"),
        "",
        &[("WASMQ_FAILPOINT", "send-store-busy=3")],
    );
    let b = BrokerProc::start_external(
        &dir.path().join("b-store"),
        a.namesrv,
        8 << 20,
        &["--broker-name", "broker-b"],
    );
    wait_route_brokers(&a, "BusyStore", 2);
    let n = 120;
    let out = run(
        Lang::Node,
        json!({"role": "produce", "namesrv": a.namesrv.to_string(), "topic": "BusyStore",
            "group": "PG_BUSY", "generate": {"count": n, "prefix": "pc"}}),
    );
    assert!(events(&out, "error").is_empty(), "{out:?}");
    assert_eq!(sent_ok(&out).len(), n, "{out:?}");
    let refused = refusals(&a);
    println!("ali-ons: {n} messages SEND_OK, broker-a refused {refused} sends [PC_SYNCHRONIZED]");
    assert!(refused >= 10, "{refused} refusals logged");
    check_stored_once(
        &[("broker-a", &a), ("broker-b", &b)],
        "BusyStore",
        "pc",
        n,
        &out,
    );
}

/// Sends refused, as the broker's log counts them (the first refusal is logged at once, then
/// one line a second with the number since the last line).
fn refusals(broker: &BrokerProc) -> u64 {
    std::thread::sleep(Duration::from_millis(1100));
    // One more refusal flushes the count of the last second into the log.
    let rt = rt();
    let c = rt.block_on(RemotingClient::connect(broker.broker)).unwrap();
    let mut extra = 0;
    for _ in 0..8 {
        let r = rt
            .block_on(c.invoke(SendReq::new("Probe", 0, "").request(b"p".to_vec()), RPC))
            .unwrap();
        if r.code != response::SUCCESS {
            extra += 1;
            break;
        }
    }
    let log = broker.log_text();
    let lines = log
        .lines()
        .filter(|l| l.contains("flow control: send refused"));
    let mut n = 0;
    for l in lines {
        n += 1 + l
            .split("refused_since_last_report=")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    n - extra
}

/// Waits (bounded) until the NameServer of `broker` routes `topic` to `n` brokers.
fn wait_route_brokers(broker: &BrokerProc, topic: &str, n: usize) {
    let rt = rt();
    rt.block_on(async {
        let c = RemotingClient::connect(broker.namesrv).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = c
                .invoke(
                    RemotingCommand::new_request(
                        request::GET_ROUTEINFO_BY_TOPIC,
                        ext(&[("topic", topic)]),
                    ),
                    RPC,
                )
                .await
                .unwrap();
            if r.code == response::SUCCESS {
                let route = wasmq::protocol::route::TopicRouteData::from_json(&r.body).unwrap();
                if route.broker_datas.len() == n {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{topic} never routed to {n} brokers"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

#[test]
fn ali_ons_hands_system_busy_to_the_application_whose_retry_loses_and_doubles_nothing() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    // Every 4th send is refused `[TIMEOUT_CLEAN_QUEUE]` (SYSTEM_BUSY): ali-ons 3.12 does not
    // retry code 2 (nor does the Java client before 5.x); the application sends again.
    let broker = start(
        dir.path(),
        "",
        &[("WASMQ_FAILPOINT", "send-queue-timeout=4")],
    );
    let n = 120;
    let out = run(
        Lang::Node,
        json!({"role": "produce", "namesrv": broker.namesrv.to_string(), "topic": "BusyQueue",
            "group": "PG_BUSYQ", "retryBusyMs": 20, "generate": {"count": n, "prefix": "tq"}}),
    );
    assert!(events(&out, "error").is_empty(), "{out:?}");
    let busy = events(&out, "busy");
    println!(
        "ali-ons: {n} messages SEND_OK, {} SYSTEM_BUSY handed to the application",
        busy.len()
    );
    assert!(
        busy.len() >= n / 4 - 1,
        "{} SYSTEM_BUSY seen by the application",
        busy.len()
    );
    assert!(busy.iter().all(|l| l["error"]
        .as_str()
        .unwrap_or("")
        .starts_with("[TIMEOUT_CLEAN_QUEUE]broker busy")));
    assert_eq!(sent_ok(&out).len(), n, "{out:?}");
    check_stored_once(&[("broker-a", &broker)], "BusyQueue", "tq", n, &out);
}

const HOLD_QUEUES: usize = 100;
const HELD: usize = 10_000;
const HOLD_CONNS: usize = 4;
/// Stated bound: 10,000 held pulls add at most this much RssAnon to the broker.
const HOLD_RSS_BOUND_KIB: u64 = 64 * 1024;

/// Issues `n` held pulls (queue `i % queues` of `topic`, from offset 0, held up to 25 s) over
/// `conns`; each task counts its answer in `answered` and returns (queue, code, records).
fn hold_pulls(
    rt: &tokio::runtime::Runtime,
    conns: &[Arc<RemotingClient>],
    topic: &'static str,
    queues: usize,
    n: usize,
    answered: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<(usize, i32, usize)>> {
    (0..n)
        .map(|i| {
            let c = conns[i % conns.len()].clone();
            let answered = answered.clone();
            rt.spawn(async move {
                let q = i % queues;
                let req = PullReq::new("CG_HOLD", topic, q as i32, 0)
                    .suspend(25_000)
                    .request();
                let r = c.invoke(req, Duration::from_secs(60)).await.unwrap();
                answered.fetch_add(1, Ordering::Relaxed);
                (q, r.code, records(&r.body).len())
            })
        })
        .collect()
}

fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn ten_thousand_held_pulls_stay_small_and_are_all_woken_by_new_data() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), "", &[]);
    let rt = rt();
    let conns: Vec<Arc<RemotingClient>> = (0..HOLD_CONNS)
        .map(|_| Arc::new(rt.block_on(RemotingClient::connect(broker.broker)).unwrap()))
        .collect();
    rt.block_on(create_topic(&conns[0], "Held", HOLD_QUEUES));
    // Warm up the pull path, then the idle figure.
    rt.block_on(async {
        let r = conns[0]
            .invoke(PullReq::new("CG_HOLD", "Held", 0, 0).request(), RPC)
            .await
            .unwrap();
        assert_eq!(r.code, response::PULL_NOT_FOUND);
    });
    std::thread::sleep(Duration::from_millis(300));
    let idle = rss_anon_kib(broker.pid());
    let answered = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let pulls = hold_pulls(&rt, &conns, "Held", HOLD_QUEUES, HELD, &answered);
    // Every pull reaches the broker and is held: RssAnon stops growing (three samples 300 ms
    // apart unchanged, and at least 2 s after the first pull).
    let (mut last, mut same) = (0, 0);
    assert!(wait_for(Duration::from_secs(30), || {
        std::thread::sleep(Duration::from_millis(300));
        let now = rss_anon_kib(broker.pid());
        same = if now == last { same + 1 } else { 0 };
        last = now;
        same >= 3 && t.elapsed() >= Duration::from_secs(2)
    }));
    let held = rss_anon_kib(broker.pid());
    assert_eq!(
        answered.load(Ordering::Relaxed),
        0,
        "a pull was answered before any data"
    );
    println!(
        "{HELD} held pulls set up in {:?}: RssAnon idle {idle} KiB, held {held} KiB (+{} KiB, {} B per held pull)",
        t.elapsed(),
        held.saturating_sub(idle),
        held.saturating_sub(idle) * 1024 / HELD as u64
    );
    assert!(
        held.saturating_sub(idle) <= HOLD_RSS_BOUND_KIB,
        "{HELD} held pulls take {} KiB (bound {HOLD_RSS_BOUND_KIB} KiB)",
        held - idle
    );
    // One message per queue wakes every pull held on it.
    let woke = Instant::now();
    rt.block_on(async {
        for q in 0..HOLD_QUEUES {
            let req = SendReq::new("Held", q as i32, "").request(format!("m{q}").into_bytes());
            let r = conns[0].invoke(req, RPC).await.unwrap();
            assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
        }
    });
    let results: Vec<(usize, i32, usize)> = rt.block_on(async {
        let mut v = Vec::new();
        for p in pulls {
            v.push(
                tokio::time::timeout(Duration::from_secs(30), p)
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        v
    });
    println!(
        "all {HELD} held pulls answered {:?} after the sends began",
        woke.elapsed()
    );
    let found = results
        .iter()
        .filter(|(_, code, n)| *code == response::SUCCESS && *n == 1)
        .count();
    assert_eq!(
        found, HELD,
        "every held pull returns FOUND with its queue's message"
    );
}

#[test]
fn pulls_beyond_max_held_pulls_are_answered_at_once_and_pulls_are_capped() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = start(
        dir.path(),
        "[broker]\nmax_held_pulls = 1000\npull_max_msgs = 10\npull_max_bytes = 4096\n",
        &[],
    );
    let rt = rt();
    let conns: Vec<Arc<RemotingClient>> = (0..2)
        .map(|_| Arc::new(rt.block_on(RemotingClient::connect(broker.broker)).unwrap()))
        .collect();
    rt.block_on(create_topic(&conns[0], "Bound", 10));
    let answered = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let pulls = hold_pulls(&rt, &conns, "Bound", 10, 1500, &answered);
    // The 500 beyond the bound are answered PULL_NOT_FOUND at once; 1000 stay held.
    assert!(
        wait_for(Duration::from_secs(10), || answered.load(Ordering::Relaxed)
            >= 500),
        "{} answered",
        answered.load(Ordering::Relaxed)
    );
    let refused_in = t.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        answered.load(Ordering::Relaxed),
        500,
        "the 1000 held stay held"
    );
    println!("1500 pulls, max_held_pulls 1000: 500 answered at once within {refused_in:?}");
    rt.block_on(async {
        for q in 0..10 {
            for k in 0..30 {
                let req = SendReq::new("Bound", q, "").request(format!("b{q}-{k}").into_bytes());
                let r = conns[0].invoke(req, RPC).await.unwrap();
                assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
            }
        }
    });
    let results: Vec<(usize, i32, usize)> = rt.block_on(async {
        let mut v = Vec::new();
        for p in pulls {
            v.push(
                tokio::time::timeout(Duration::from_secs(30), p)
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        v
    });
    let by_code = results.iter().fold(HashMap::new(), |mut m, (_, c, _)| {
        *m.entry(*c).or_insert(0) += 1;
        m
    });
    assert_eq!(
        by_code.get(&response::PULL_NOT_FOUND),
        Some(&500),
        "{by_code:?}"
    );
    assert_eq!(by_code.get(&response::SUCCESS), Some(&1000), "{by_code:?}");
    // Caps per pull: at most `pull_max_msgs` whatever is asked, and about `pull_max_bytes`
    // (here 4 KiB: the first message always, then whole records within the cap).
    rt.block_on(async {
        let r = conns[0]
            .invoke(
                PullReq::new("CG_CAP", "Bound", 0, 0).max(1000).request(),
                RPC,
            )
            .await
            .unwrap();
        assert_eq!(r.code, response::SUCCESS);
        assert_eq!(records(&r.body).len(), 10, "pull_max_msgs caps a pull");
        let big = vec![b'x'; 3000];
        for _ in 0..3 {
            let req = SendReq::new("Capped", 0, "").request(big.clone());
            assert_eq!(
                conns[0].invoke(req, RPC).await.unwrap().code,
                response::SUCCESS
            );
        }
        let r = conns[0]
            .invoke(
                // Held until the sends are dispatched (async: not at once).
                PullReq::new("CG_CAP", "Capped", 0, 0)
                    .max(32)
                    .suspend(5000)
                    .request(),
                RPC,
            )
            .await
            .unwrap();
        assert_eq!(r.code, response::SUCCESS);
        let got = records(&r.body);
        assert_eq!(
            got.len(),
            1,
            "pull_max_bytes 4096 holds one 3000-byte message"
        );
        assert!(r.body.len() <= 4096);
    });
    let seen: HashSet<usize> = results.iter().map(|(q, _, _)| *q).collect();
    assert_eq!(seen.len(), 10);
}
