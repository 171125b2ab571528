//! Master/slave replication (issue 12) with real processes on loopback: a standalone
//! `wasmq-namesrv`, a master and a slave `wasmq-broker` registering with it, driven by the raw
//! protocol and by the real third-party clients (npm ali-ons, PyPI rocketmq-client-python).
//!
//! - `async_master_copies_real_client_sends_byte_for_byte`: 10,000 sends by ali-ons and
//!   rocketmq-client-python; the slave's commit log is byte-identical up to the master's max
//!   offset and every queue's max offset is equal on both.
//! - `sync_master_loses_no_acknowledged_message_on_sigkill`: 16 concurrent producers, the
//!   master SIGKILLed mid-way; every SEND_OK message is consumed from the slave by ali-ons.
//! - `sync_master_with_a_frozen_slave_answers_within_the_timeout`: the slave SIGSTOPped: sends
//!   answer FLUSH_SLAVE_TIMEOUT or SLAVE_NOT_AVAILABLE within `slave_timeout_ms` plus a margin,
//!   never SEND_OK; after SIGCONT, SEND_OK again.
//! - `a_killed_slave_catches_up_100_mib`: the slave SIGKILLed, 100 MiB produced, restarted: it
//!   catches up and is byte-identical again.
//! - `push_consumer_reads_from_the_slave_while_the_master_is_down`: an ali-ons push consumer
//!   keeps consuming from the slave while the master is down; the master comes back with older
//!   offsets and the slave brings them up to what the group committed on it; the consumer does
//!   not go back past those offsets.
//! - `a_filter_plugin_loaded_on_the_master_serves_the_slave`: the JSON filter plugin, loaded on
//!   the master only, evaluates a subscription on the slave (raw pull, then ali-ons).
//! - `bad_input_on_the_ha_port_and_to_the_slave`: garbage, a duplicate slave id and a diverged
//!   offset on the HA port are closed while the real slave keeps replicating; a slave with
//!   another segment size is refused naming both sizes and appends nothing; sends to a slave
//!   are refused with code 14 and store nothing.

mod broker_support;
mod clients_support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use broker_support::wire::{ext, records, send_req, PullReq, SendReq};
use broker_support::{free_port, BrokerProc};
use clients_support::{events, ClientProc, Lang, LiveClient};
use serde_json::{json, Value};
use wasmq::net::RemotingClient;
use wasmq::protocol::route::TopicRouteData;
use wasmq::protocol::{request, response, RemotingCommand};

// ---------------------------------------------------------------------------------------------
// Shared helpers: processes, requests, replication state, commit-log comparison.
// ---------------------------------------------------------------------------------------------

/// Commit-log segment size of most groups here: small, so logs cross segment boundaries.
const SEG: u64 = 1 << 20;
const RPC: Duration = Duration::from_secs(10);

/// One runtime for every request the tests make (multi-thread: `block_on` from test threads
/// running side by side).
fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// One request on a fresh connection.
async fn try_call(addr: SocketAddr, cmd: RemotingCommand) -> anyhow::Result<RemotingCommand> {
    let c = RemotingClient::connect(addr).await?;
    let r = c.invoke(cmd, RPC).await;
    c.close();
    Ok(r?)
}

fn call(addr: SocketAddr, cmd: RemotingCommand) -> RemotingCommand {
    rt().block_on(try_call(addr, cmd))
        .unwrap_or_else(|e| panic!("request to {addr}: {e}"))
}

/// Polls `f` every 50 ms until it gives a value; panics naming `what` after `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out ({limit:?}) waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn addr(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().unwrap()
}

/// A standalone `wasmq-namesrv`, killed by PID when dropped.
struct NameSrv {
    child: Option<Child>,
    addr: SocketAddr,
}

impl NameSrv {
    fn start(log: &Path) -> NameSrv {
        let addr = addr(free_port());
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_wasmq-namesrv"))
            .args(["--listen", &addr.to_string()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start wasmq-namesrv");
        let ns = NameSrv {
            child: Some(child),
            addr,
        };
        wait_for("the NameServer to listen", Duration::from_secs(30), || {
            TcpStream::connect(addr).ok()
        });
        ns
    }
}

impl Drop for NameSrv {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A NameServer, a master and its slave (broker id 1), each on its own loopback ports and in
/// its own store directory under one temp dir. Fields drop in order: processes first, then the
/// directory.
struct Cluster {
    ns: NameSrv,
    master: BrokerProc,
    /// The master's HA address (`--ha-listen`).
    ha: SocketAddr,
    slave: BrokerProc,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the NameServer and the master (`--role role` plus `master_extra`), creates
    /// `topics` (name, queues) on the master, then starts the slave, which learns the master
    /// from the NameServer; returns once the two are linked.
    fn start(role: &str, master_extra: &[&str], segment: u64, topics: &[(&str, u32)]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ns = NameSrv::start(&dir.path().join("namesrv.log"));
        let ha = addr(free_port());
        let ha_s = ha.to_string();
        let mut flags = vec!["--role", role, "--ha-listen", &ha_s];
        flags.extend_from_slice(master_extra);
        let master =
            BrokerProc::start_external(&dir.path().join("master"), ns.addr, segment, &flags);
        for (t, q) in topics {
            create_topic(master.broker, t, *q);
        }
        let slave = BrokerProc::start_external(
            &dir.path().join("slave"),
            ns.addr,
            segment,
            &["--role", "slave", "--broker-id", "1"],
        );
        let c = Cluster {
            ns,
            master,
            ha,
            slave,
            dir,
        };
        c.wait_linked(Duration::from_secs(30));
        c
    }

    /// Waits until the master lists slave 1 and the slave is connected to the master.
    fn wait_linked(&self, limit: Duration) {
        wait_for("the slave to link to the master", limit, || {
            let m = ha_status(self.master.broker);
            let s = ha_status(self.slave.broker);
            (slave_entry(&m, 1).is_some() && s["master"]["connected"] == true).then_some(())
        });
    }

    /// Waits until the slave holds the master's whole log (nothing is being produced); the
    /// offset.
    fn wait_caught_up(&self, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        loop {
            let m = max_offset(self.master.broker);
            let s = max_offset(self.slave.broker);
            if m == s {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "the slave did not catch up within {limit:?}: master {m} slave {s}\nslave log:\n{}",
                tail(&self.slave.log_text())
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn store(&self, which: &str) -> PathBuf {
        self.dir.path().join(which)
    }

    /// Logs of all three processes, for failure messages.
    fn logs(&self) -> String {
        format!(
            "--- master log:\n{}\n--- slave log:\n{}\n--- namesrv log:\n{}",
            tail(&self.master.log_text()),
            tail(&self.slave.log_text()),
            tail(&std::fs::read_to_string(self.dir.path().join("namesrv.log")).unwrap_or_default())
        )
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn create_topic(broker: SocketAddr, topic: &str, queues: u32) {
    let q = queues.to_string();
    let r = call(
        broker,
        RemotingCommand::new_request(
            request::UPDATE_AND_CREATE_TOPIC,
            ext(&[
                ("topic", topic),
                ("readQueueNums", &q),
                ("writeQueueNums", &q),
                ("perm", "6"),
            ]),
        ),
    );
    assert_eq!(r.code, response::SUCCESS, "create {topic}: {:?}", r.remark);
}

/// HA_STATUS: the broker's replication state (JSON).
fn ha_status(broker: SocketAddr) -> Value {
    let r = call(
        broker,
        RemotingCommand::new_request(request::HA_STATUS, ext(&[])),
    );
    assert_eq!(r.code, response::SUCCESS, "HA_STATUS: {:?}", r.remark);
    serde_json::from_slice(&r.body).unwrap()
}

fn slave_entry(master_status: &Value, id: i64) -> Option<Value> {
    master_status["slaves"]
        .as_array()?
        .iter()
        .find(|s| s["brokerId"] == id)
        .cloned()
}

/// The broker's commit-log max offset (HA_STATUS `maxOffset`).
fn max_offset(broker: SocketAddr) -> u64 {
    ha_status(broker)["maxOffset"].as_u64().unwrap()
}

/// GET_MAX_OFFSET of one queue.
fn queue_max(broker: SocketAddr, topic: &str, queue: u32) -> i64 {
    let r = call(
        broker,
        RemotingCommand::new_request(
            request::GET_MAX_OFFSET,
            ext(&[("topic", topic), ("queueId", &queue.to_string())]),
        ),
    );
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    r.ext_fields.get_i64("offset").unwrap().unwrap()
}

/// Topics (name -> queue count) of a broker (GET_ALL_TOPIC_CONFIG).
fn topics(broker: SocketAddr) -> BTreeMap<String, u32> {
    let r = call(
        broker,
        RemotingCommand::new_request(request::GET_ALL_TOPIC_CONFIG, ext(&[])),
    );
    assert_eq!(r.code, response::SUCCESS);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["topicConfigTable"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, t)| {
            let n = t["readQueueNums"]
                .as_u64()
                .unwrap()
                .max(t["writeQueueNums"].as_u64().unwrap());
            (k.clone(), n as u32)
        })
        .collect()
}

/// Every queue of every topic the master has holds the same max offset on the slave: waits
/// (bounded) for the slave's dispatch, which indexes replicated bytes after they land. The
/// number of queues compared.
fn assert_queues_equal(master: SocketAddr, slave: SocketAddr) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut n = 0;
        let mut differ = Vec::new();
        for (topic, queues) in topics(master) {
            for q in 0..queues {
                let (m, s) = (queue_max(master, &topic, q), queue_max(slave, &topic, q));
                if m != s {
                    differ.push(format!("{topic}/{q}: master {m}, slave {s}"));
                }
                n += 1;
            }
        }
        if differ.is_empty() {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "queue max offsets differ: {differ:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Commit-log segments (base offset -> file) of a store.
fn segments(store: &Path) -> BTreeMap<u64, PathBuf> {
    let Ok(rd) = std::fs::read_dir(store.join("commitlog")) else {
        return BTreeMap::new();
    };
    rd.filter_map(|e| {
        let e = e.ok()?;
        let base = e.file_name().to_str()?.parse::<u64>().ok()?;
        Some((base, e.path()))
    })
    .collect()
}

fn read_prefix(path: &Path, len: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("{} shorter than {len}: {e}", path.display()));
    buf
}

/// The slave's commit log is byte-identical to the master's from the master's first segment up
/// to `upto`, with the same segment files; the number of bytes compared.
fn assert_logs_identical(master: &Path, slave: &Path, upto: u64) -> u64 {
    let (m, s) = (segments(master), segments(slave));
    let mut compared = 0;
    for (base, path) in m.range(..upto) {
        let len = (upto - base).min(std::fs::metadata(path).unwrap().len()) as usize;
        let theirs = s.get(base).unwrap_or_else(|| {
            panic!("the slave has no segment {base:020}; it has {:?}", s.keys())
        });
        let (a, b) = (read_prefix(path, len), read_prefix(theirs, len));
        if a != b {
            let i = a.iter().zip(&b).position(|(x, y)| x != y).unwrap();
            panic!(
                "commit logs differ at offset {} (segment {base:020} + {i})",
                base + i as u64
            );
        }
        compared += len as u64;
    }
    compared
}

/// SEND_MESSAGE_V2 of one body; the response code, or `None` when the connection failed.
async fn send_one(c: &RemotingClient, topic: &str, queue: i32, body: &[u8]) -> Option<i32> {
    c.invoke(send_req(topic, queue, "", body), RPC)
        .await
        .ok()
        .map(|r| r.code)
}

/// Sends `bodies` to `topic` (queue = index % queues), expecting SEND_OK for each.
fn send_all(broker: SocketAddr, topic: &str, queues: usize, bodies: &[String]) {
    rt().block_on(async {
        let c = RemotingClient::connect(broker).await.unwrap();
        for (i, b) in bodies.iter().enumerate() {
            let r = c
                .invoke(send_req(topic, (i % queues) as i32, "", b.as_bytes()), RPC)
                .await
                .unwrap();
            assert_eq!(r.code, response::SUCCESS, "send {b}: {:?}", r.remark);
        }
        c.close();
    })
}

/// QUERY_CONSUMER_OFFSET of each queue (`-1` where the broker has none).
fn committed(broker: SocketAddr, group: &str, topic: &str, queues: u32) -> Vec<i64> {
    (0..queues)
        .map(|q| {
            let r = call(
                broker,
                RemotingCommand::new_request(
                    request::QUERY_CONSUMER_OFFSET,
                    ext(&[
                        ("consumerGroup", group),
                        ("topic", topic),
                        ("queueId", &q.to_string()),
                    ]),
                ),
            );
            if r.code == response::SUCCESS {
                r.ext_fields.get_i64("offset").unwrap().unwrap()
            } else {
                -1
            }
        })
        .collect()
}

/// The route of `topic` at the NameServer, if any.
fn route(ns: SocketAddr, topic: &str) -> Option<TopicRouteData> {
    let r = call(
        ns,
        RemotingCommand::new_request(request::GET_ROUTEINFO_BY_TOPIC, ext(&[("topic", topic)])),
    );
    (r.code == response::SUCCESS).then(|| TopicRouteData::from_json(&r.body).unwrap())
}

/// Waits until the route of `topic` lists exactly `addrs` (broker id -> address) and queues.
fn wait_route(ns: SocketAddr, topic: &str, addrs: &[(i64, SocketAddr)], limit: Duration) {
    let want: BTreeMap<String, String> = addrs
        .iter()
        .map(|(id, a)| (id.to_string(), a.to_string()))
        .collect();
    wait_for(
        &format!("the route of {topic} to be {want:?}"),
        limit,
        || {
            let r = route(ns, topic)?;
            let got: BTreeMap<String, String> = r
                .broker_datas
                .first()?
                .broker_addrs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (got == want && !r.queue_datas.is_empty()).then_some(())
        },
    );
}

fn sent_ok(lines: &[Value]) -> usize {
    events(lines, "sent")
        .iter()
        .filter(|l| l["status"] == "SEND_OK" || l["status"] == "0")
        .count()
}

fn bodies(lines: &[Value]) -> Vec<String> {
    events(lines, "msg")
        .iter()
        .map(|l| l["body"].as_str().unwrap_or("").to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. async_master: real clients' sends, byte-identical logs, equal queues.
// ---------------------------------------------------------------------------------------------

#[test]
fn async_master_copies_real_client_sends_byte_for_byte() {
    let t0 = Instant::now();
    let c = Cluster::start("async_master", &[], SEG, &[("Async", 4)]);
    let ns = c.ns.addr.to_string();
    // Two ali-ons and two rocketmq-client-python producers, 2,500 sends each, side by side.
    let procs: Vec<(Lang, ClientProc)> = [Lang::Node, Lang::Python, Lang::Node, Lang::Python]
        .into_iter()
        .enumerate()
        .map(|(k, lang)| {
            // Bodies "<k>-<i>-" and up to 199 'x's: records of varied sizes.
            let job = json!({"role": "produce", "namesrv": ns, "topic": "Async",
                "group": format!("PG_ASYNC_{k}"), "timeoutMs": 110000,
                "generate": {"count": 2500, "prefix": k.to_string(), "tags": "T", "padMod": 200}});
            (lang, ClientProc::spawn(lang, &job))
        })
        .collect();
    let mut total = 0;
    for (lang, p) in procs {
        let out = p.finish(Duration::from_secs(120));
        let ok = sent_ok(&out);
        assert_eq!(ok, 2500, "{lang:?} producer: {:?}", events(&out, "error"));
        total += ok;
    }
    assert_eq!(total, 10_000);
    let sends = t0.elapsed();
    let upto = c.wait_caught_up(Duration::from_secs(60));
    let bytes = assert_logs_identical(&c.store("master"), &c.store("slave"), upto);
    assert_eq!(bytes, upto, "every byte of the master's log compared");
    let queues = assert_queues_equal(c.master.broker, c.slave.broker);
    let msgs: i64 = (0..4).map(|q| queue_max(c.slave.broker, "Async", q)).sum();
    assert_eq!(msgs, 10_000, "the slave's queues index every message");
    eprintln!(
        "async_master: 10,000 sends in {sends:?}; {bytes} bytes ({} segments) identical, {queues} queues equal; total {:?}",
        segments(&c.store("slave")).len(),
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. sync_master: SIGKILL of the master loses no acknowledged message.
// ---------------------------------------------------------------------------------------------

#[test]
fn sync_master_loses_no_acknowledged_message_on_sigkill() {
    let t0 = Instant::now();
    let mut c = Cluster::start(
        "sync_master",
        &["--in-sync-replicas", "2", "--slave-timeout-ms", "2000"],
        SEG,
        &[("Sync", 4)],
    );
    // The slave must have the topic (metadata copy) to be routed for it once alone.
    wait_for(
        "the slave to copy topic Sync",
        Duration::from_secs(30),
        || topics(c.slave.broker).contains_key("Sync").then_some(()),
    );
    let master = c.master.broker;
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(BTreeMap::<i32, usize>::new()));
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let (acked, refused) = (acked.clone(), refused.clone());
            rt().spawn(async move {
                let Ok(c) = RemotingClient::connect(master).await else {
                    return 0;
                };
                let mut attempted = 0;
                for i in 0.. {
                    let body = format!("p{t:02}-{i:05}");
                    attempted += 1;
                    match send_one(&c, "Sync", t % 4, body.as_bytes()).await {
                        Some(response::SUCCESS) => acked.lock().unwrap().push(body),
                        Some(code) => *refused.lock().unwrap().entry(code).or_default() += 1,
                        None => break,
                    }
                }
                attempted
            })
        })
        .collect();
    // SIGKILL mid-way: once 2,000 sends were acknowledged.
    wait_for("2,000 acknowledged sends", Duration::from_secs(60), || {
        (acked.lock().unwrap().len() >= 2000).then_some(())
    });
    c.master.kill9();
    let attempted: usize = rt().block_on(async {
        let mut n = 0;
        for t in tasks {
            n += tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("producers stop once the master is gone")
                .unwrap();
        }
        n
    });
    let acked: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    let refused = refused.lock().unwrap().clone();
    // The NameServer drops the master when its connection closes: the route names the slave.
    wait_route(
        c.ns.addr,
        "Sync",
        &[(1, c.slave.broker)],
        Duration::from_secs(20),
    );
    // What the slave indexed, once its dispatch has settled (stable for half a second).
    let mut last = -1;
    let on_slave: i64 = wait_for(
        "the slave's dispatch to settle",
        Duration::from_secs(20),
        || {
            let n: i64 = (0..4).map(|q| queue_max(c.slave.broker, "Sync", q)).sum();
            let settled = n == last && n as usize >= acked.len();
            last = n;
            if !settled {
                std::thread::sleep(Duration::from_millis(450));
            }
            settled.then_some(n)
        },
    );
    assert!(
        on_slave as usize >= acked.len(),
        "the slave indexes {on_slave} messages, fewer than the {} acknowledged",
        acked.len()
    );
    // A real client, knowing only the NameServer, reads everything from the slave.
    let out = ClientProc::spawn(
        Lang::Node,
        &json!({"role": "consume", "namesrv": c.ns.addr.to_string(), "topic": "Sync",
            "group": "CG_SYNC", "expect": on_slave, "lingerMs": 1000, "timeoutMs": 90000}),
    )
    .finish(Duration::from_secs(100));
    let got: BTreeSet<String> = bodies(&out).into_iter().collect();
    let missing: Vec<&String> = acked.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages not consumed from the slave, e.g. {:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        c.logs()
    );
    eprintln!(
        "sync_master SIGKILL: {attempted} sends attempted, {} SEND_OK, refused {refused:?}, {on_slave} on the slave, {} consumed ({} deliveries); total {:?}",
        acked.len(),
        got.len(),
        bodies(&out).len(),
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 3. sync_master with the slave frozen.
// ---------------------------------------------------------------------------------------------

/// Whether every thread of process `pid` is in the stopped state (`T` in `/proc/.../stat`).
fn all_threads_stopped(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).all(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .ok()
            .and_then(|st| {
                // The state follows the parenthesized command name.
                let rest = &st[st.rfind(')')? + 1..];
                rest.split_whitespace().next().map(|s| s == "T")
            })
            .unwrap_or(false)
    })
}

#[test]
fn sync_master_with_a_frozen_slave_answers_within_the_timeout() {
    const TIMEOUT_MS: u64 = 1000;
    // Scheduling on a shared 2-core machine: what a send may take beyond the timeout.
    const MARGIN: Duration = Duration::from_millis(1500);
    let t0 = Instant::now();
    let c = Cluster::start(
        "sync_master",
        &[
            "--in-sync-replicas",
            "2",
            "--slave-timeout-ms",
            &TIMEOUT_MS.to_string(),
        ],
        SEG,
        &[("Frozen", 2)],
    );
    let master = c.master.broker;
    let send = |i: usize| -> (i32, Duration) {
        let start = Instant::now();
        let body = format!("f-{i}");
        let code = rt()
            .block_on(async {
                let c = RemotingClient::connect(master).await.ok()?;
                send_one(&c, "Frozen", (i % 2) as i32, body.as_bytes()).await
            })
            .expect("the master answers");
        (code, start.elapsed())
    };
    wait_for("a first SEND_OK", Duration::from_secs(10), || {
        (send(0).0 == response::SUCCESS).then_some(())
    });
    c.slave.signal("STOP");
    // SIGSTOP takes effect asynchronously: wait until every thread of the slave is stopped.
    let pid = c.slave.pid();
    wait_for("the slave to stop", Duration::from_secs(5), || {
        all_threads_stopped(pid).then_some(())
    });
    let frozen_at = Instant::now();
    let mut answers = Vec::new();
    // Sequential sends, then a burst of 8 concurrent ones.
    for i in 1..=4 {
        answers.push(send(i));
    }
    let burst: Vec<(i32, Duration)> = std::thread::scope(|s| {
        let hs: Vec<_> = (5..13).map(|i| s.spawn(move || send(i))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    answers.extend(burst);
    // More, for three seconds frozen in all (the master drops a slave silent for 10 s).
    let mut i = 13;
    while frozen_at.elapsed() < Duration::from_secs(3) {
        answers.push(send(i));
        i += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let frozen_for = frozen_at.elapsed();
    c.slave.signal("CONT");
    let limit = Duration::from_millis(TIMEOUT_MS) + MARGIN;
    for (code, took) in &answers {
        assert!(
            *code == response::FLUSH_SLAVE_TIMEOUT || *code == response::SLAVE_NOT_AVAILABLE,
            "a send to a sync_master with its only slave frozen answered {code}: {answers:?}"
        );
        assert!(
            *took <= limit,
            "a send took {took:?}, more than slave_timeout_ms + {MARGIN:?}: {answers:?}"
        );
    }
    // Thawed: SEND_OK again, within a bounded wait.
    let thawed = Instant::now();
    wait_for("SEND_OK after SIGCONT", Duration::from_secs(20), || {
        (send(100).0 == response::SUCCESS).then_some(())
    });
    let recovered = thawed.elapsed();
    let after: Vec<(i32, Duration)> = (101..111).map(send).collect();
    assert!(
        after.iter().all(|(code, _)| *code == response::SUCCESS),
        "sends after the slave recovered: {after:?}"
    );
    let upto = c.wait_caught_up(Duration::from_secs(20));
    assert_logs_identical(&c.store("master"), &c.store("slave"), upto);
    let codes: BTreeMap<i32, usize> = answers.iter().fold(BTreeMap::new(), |mut m, (c, _)| {
        *m.entry(*c).or_default() += 1;
        m
    });
    eprintln!(
        "frozen slave: {} sends over {frozen_for:?} answered {codes:?} (12 = FLUSH_SLAVE_TIMEOUT, 11 = SLAVE_NOT_AVAILABLE), slowest {:?}; SEND_OK {recovered:?} after SIGCONT; total {:?}",
        answers.len(),
        answers.iter().map(|a| a.1).max().unwrap(),
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 4. A killed slave catches up 100 MiB.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_killed_slave_catches_up_100_mib() {
    const SEGMENT: u64 = 4 << 20;
    const BODY: usize = 4000;
    const PER_BATCH: usize = 64;
    const BATCHES: usize = 410; // 410 * 64 * 4000 bytes of bodies: about 100 MiB
    let t0 = Instant::now();
    let mut c = Cluster::start("async_master", &[], SEGMENT, &[("Bulk", 4)]);
    send_all(c.master.broker, "Bulk", 4, &["before".to_string()]);
    c.wait_caught_up(Duration::from_secs(20));
    c.slave.kill9();
    let before = max_offset(c.master.broker);
    let produce = Instant::now();
    let master = c.master.broker;
    rt().block_on(async {
        let tasks: Vec<_> = (0..2)
            .map(|t| {
                tokio::spawn(async move {
                    let conn = RemotingClient::connect(master).await.unwrap();
                    for b in (t..BATCHES).step_by(2) {
                        let mut body = Vec::with_capacity(PER_BATCH * (BODY + 64));
                        for m in 0..PER_BATCH {
                            let fill = ((b * PER_BATCH + m) % 251) as u8;
                            wasmq::protocol::batch::encode_entry(&mut body, 0, &[fill; BODY], b"")
                                .unwrap();
                        }
                        let r = conn
                            .invoke(SendReq::new("Bulk", (b % 4) as i32, "").batch(body), RPC)
                            .await
                            .unwrap();
                        assert_eq!(r.code, response::SUCCESS, "batch {b}: {:?}", r.remark);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let produced = max_offset(c.master.broker) - before;
    let produce = produce.elapsed();
    assert!(produced >= 100 << 20, "produced only {produced} bytes");
    let restart = Instant::now();
    c.slave.restart();
    let upto = c.wait_caught_up(Duration::from_secs(120));
    let caught_up = restart.elapsed();
    let bytes = assert_logs_identical(&c.store("master"), &c.store("slave"), upto);
    assert_eq!(bytes, upto);
    assert_queues_equal(c.master.broker, c.slave.broker);
    eprintln!(
        "slave catch-up: {produced} bytes produced in {produce:?} while the slave was down; caught up {caught_up:?} after restart ({:.1} MiB/s incl. start); {} segments identical; total {:?}",
        produced as f64 / (1 << 20) as f64 / caught_up.as_secs_f64(),
        segments(&c.store("slave")).len(),
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 5. A push consumer reads from the slave while the master is down.
// ---------------------------------------------------------------------------------------------

/// Waits (bounded) until `consumer` delivered every body of `want`.
fn wait_consumed(consumer: &LiveClient, c: &Cluster, what: &str, want: &[String]) {
    let want: BTreeSet<&str> = want.iter().map(String::as_str).collect();
    let done = consumer.wait_until(Duration::from_secs(60), |lines| {
        let got: BTreeSet<&str> = events(lines, "msg")
            .iter()
            .filter_map(|l| l["body"].as_str())
            .collect();
        want.is_subset(&got)
    });
    assert!(
        done,
        "the consumer did not get {what}: {:?}\nstderr: {}\n{}",
        bodies(&consumer.lines()),
        consumer.stderr(),
        c.logs()
    );
}

#[test]
fn push_consumer_reads_from_the_slave_while_the_master_is_down() {
    const TOPIC: &str = "Failover";
    const GROUP: &str = "CG_FAILOVER";
    const N: usize = 100; // per phase, 25 per queue
    let t0 = Instant::now();
    let mut c = Cluster::start("async_master", &[], SEG, &[(TOPIC, 4)]);
    wait_for(
        "the slave to copy the topic",
        Duration::from_secs(30),
        || topics(c.slave.broker).contains_key(TOPIC).then_some(()),
    );
    let phase = |p: &str| -> Vec<String> { (0..N).map(|i| format!("{p}-{i:03}")).collect() };
    let (a, b, cc) = (phase("A"), phase("B"), phase("C"));
    let consumer = LiveClient::spawn(
        Lang::Node,
        &json!({"role": "consume", "namesrv": c.ns.addr.to_string(), "topic": TOPIC,
            "group": GROUP, "pollMs": 1000, "persistMs": 1000, "timeoutMs": 170000}),
    );
    // Phase A, master up: consumed and committed on the master.
    assert!(consumer.wait_until(Duration::from_secs(30), |l| !events(l, "ready").is_empty()));
    send_all(c.master.broker, TOPIC, 4, &a);
    wait_consumed(&consumer, &c, "phase A from the master", &a);
    wait_for("A committed on the master", Duration::from_secs(30), || {
        (committed(c.master.broker, GROUP, TOPIC, 4) == [25; 4]).then_some(())
    });
    // ... and written to its disk (every 5 s), so the master comes back with them: older
    // than what the consumer will commit on the slave meanwhile.
    let committed_at = std::time::SystemTime::now();
    let offsets_file = c.store("master").join("config/consumerOffset.json");
    wait_for(
        "the master to persist offsets",
        Duration::from_secs(15),
        || {
            let m = std::fs::metadata(&offsets_file).ok()?.modified().ok()?;
            let text = std::fs::read_to_string(&offsets_file).ok()?;
            (m > committed_at && text.contains(&format!("{TOPIC}@{GROUP}"))).then_some(())
        },
    );
    // Phase B: produced while the consumer is frozen, replicated, then the master dies.
    let node = consumer.pid();
    let signal = |sig: &str| {
        let st = Command::new("kill")
            .args([sig, &node.to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill {sig} {node}");
        if sig == "-STOP" {
            wait_for("the consumer to stop", Duration::from_secs(5), || {
                all_threads_stopped(node as i32).then_some(())
            });
        }
    };
    signal("-STOP");
    send_all(c.master.broker, TOPIC, 4, &b);
    c.wait_caught_up(Duration::from_secs(20));
    c.master.kill9();
    let down = Instant::now();
    let before_kill = bodies(&consumer.lines());
    assert!(
        !before_kill.iter().any(|m| m.starts_with("B-")),
        "B was consumed before the master died"
    );
    signal("-CONT");
    wait_consumed(&consumer, &c, "phase B from the slave", &b);
    let b_took = down.elapsed();
    // What the consumer committed on the slave while the master was down.
    let on_slave = wait_for("B committed on the slave", Duration::from_secs(30), || {
        let s = committed(c.slave.broker, GROUP, TOPIC, 4);
        (s == [50; 4]).then_some(s)
    });
    // The master returns with older offsets (A's). With the consumer frozen, only the slave
    // can bring the master's offsets up to what the group committed on it (HA_MERGE_OFFSETS,
    // part of its metadata sync).
    signal("-STOP");
    let before_restart = consumer.lines().len();
    c.master.restart();
    let back = Instant::now();
    let master_at_restart = committed(c.master.broker, GROUP, TOPIC, 4);
    let master_caught_up = wait_for(
        "the master's offsets to reach the slave's",
        Duration::from_secs(30),
        || {
            let m = committed(c.master.broker, GROUP, TOPIC, 4);
            m.iter()
                .zip(&on_slave)
                .all(|(m, s)| m >= s)
                .then(|| back.elapsed())
        },
    );
    signal("-CONT");
    c.wait_linked(Duration::from_secs(60));
    // Phase C, master back.
    send_all(c.master.broker, TOPIC, 4, &cc);
    wait_consumed(&consumer, &c, "phase C after the master returned", &cc);
    let final_master = wait_for(
        "the master's offsets to reach the end",
        Duration::from_secs(30),
        || {
            let m = committed(c.master.broker, GROUP, TOPIC, 4);
            (m == [75; 4]).then_some(m)
        },
    );
    let final_slave = committed(c.slave.broker, GROUP, TOPIC, 4);
    let lines = consumer.lines();
    drop(consumer);
    // Deliveries after the master came back: none below what was committed on the slave.
    let after: Vec<&Value> = events(&lines[before_restart..], "msg");
    let back: Vec<&&Value> = after
        .iter()
        .filter(|m| {
            let q = m["queueId"].as_u64().unwrap() as usize;
            m["queueOffset"].as_i64().unwrap() < on_slave[q]
        })
        .collect();
    assert!(
        back.is_empty(),
        "after the master returned the consumer went back past offsets {on_slave:?} it committed on the slave: {back:?}"
    );
    let mut count: HashMap<String, usize> = HashMap::new();
    for b in bodies(&lines) {
        *count.entry(b).or_default() += 1;
    }
    let dups: Vec<(&String, &usize)> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dups.iter().all(|(b, _)| !b.starts_with("A-")),
        "messages committed before the master died were delivered again: {dups:?}"
    );
    for q in 0..4 {
        assert!(
            final_slave[q] >= on_slave[q],
            "the slave's offset of queue {q} went back: {on_slave:?} -> {final_slave:?}"
        );
        assert!(final_master[q] >= on_slave[q]);
    }
    assert_eq!(count.len(), 3 * N, "every message consumed");
    eprintln!(
        "failover consumer: B consumed from the slave {b_took:?} after the master died; slave offsets {on_slave:?}; master restarted with {master_at_restart:?}, reached the slave's {master_caught_up:?} after restart (consumer frozen), ended at {final_master:?} (slave {final_slave:?}); {} duplicates {dups:?}; total {:?}",
        dups.len(),
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 6. A filter plugin loaded on the master serves a subscription on the slave.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_filter_plugin_loaded_on_the_master_serves_the_slave() {
    const TOPIC: &str = "JsonOrders";
    const EXPR: &str = "amount > 150 AND region = 'eu'";
    let t0 = Instant::now();
    let mut c = Cluster::start("async_master", &[], SEG, &[(TOPIC, 2)]);
    let wasm = std::fs::read(wasmq::plugin::shipped::path("json-filter")).unwrap();
    let r = call(
        c.master.broker,
        RemotingCommand::new_request(
            request::PLUGIN_LOAD,
            ext(&[("name", "json-filter"), ("config", "[]")]),
        )
        .with_body(wasm),
    );
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let msgs: Vec<(String, bool)> = (0..40)
        .map(|i| {
            let region = ["eu", "us"][(i / 2) % 2];
            let amount = i * 10;
            let body = json!({"i": i, "amount": amount, "region": region}).to_string();
            (body, amount > 150 && region == "eu")
        })
        .collect();
    let want: BTreeSet<String> = msgs.iter().filter(|m| m.1).map(|m| m.0.clone()).collect();
    assert!(!want.is_empty() && want.len() < msgs.len());
    let all: Vec<String> = msgs.iter().map(|m| m.0.clone()).collect();
    send_all(c.master.broker, TOPIC, 2, &all);
    c.wait_caught_up(Duration::from_secs(20));
    // The slave copies the plugin with its metadata (every 10 s): then a JSON pull there works.
    let pull_slave = |q: i32, from: i64| {
        call(
            c.slave.broker,
            PullReq::new("CG_JSON_RAW", TOPIC, q, from)
                .max(8)
                .filter("JSON", EXPR)
                .request(),
        )
    };
    let synced = Instant::now();
    wait_for(
        "the JSON filter on the slave",
        Duration::from_secs(40),
        || (pull_slave(0, 0).code == response::SUCCESS).then_some(()),
    );
    let synced = synced.elapsed();
    let list = call(
        c.slave.broker,
        RemotingCommand::new_request(request::PLUGIN_LIST, ext(&[])),
    );
    let list: Value = serde_json::from_slice(&list.body).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "json-filter"),
        "{list}"
    );
    // Every queue read to its end in small pulls.
    let mut got = BTreeSet::new();
    for q in 0..2 {
        let end = queue_max(c.master.broker, TOPIC, q as u32);
        let mut at = 0;
        while at < end {
            let r = pull_slave(q, at);
            assert!(
                r.code == response::SUCCESS || r.code == response::PULL_RETRY_IMMEDIATELY,
                "pull {q}@{at}: {} {:?}",
                r.code,
                r.remark
            );
            got.extend(records(&r.body).iter().map(|m| m.text()));
            let next = r.ext_fields.get_i64("nextBeginOffset").unwrap().unwrap();
            assert!(next > at, "pull {q}@{at} made no progress");
            at = next;
        }
    }
    assert_eq!(got, want, "a raw JSON pull on the slave");
    // A real client subscribed with the JSON type, the master gone: served by the slave.
    c.master.kill9();
    wait_route(
        c.ns.addr,
        TOPIC,
        &[(1, c.slave.broker)],
        Duration::from_secs(20),
    );
    let out = ClientProc::spawn(
        Lang::Node,
        &json!({"role": "consume", "namesrv": c.ns.addr.to_string(), "topic": TOPIC,
            "group": "CG_JSON", "type": "JSON", "expr": EXPR, "expect": want.len(),
            "lingerMs": 1500, "timeoutMs": 60000}),
    )
    .finish(Duration::from_secs(70));
    let consumed = bodies(&out);
    let set: BTreeSet<String> = consumed.iter().cloned().collect();
    assert_eq!(set.len(), consumed.len(), "duplicates: {consumed:?}");
    assert_eq!(set, want, "ali-ons with a JSON subscription on the slave");
    eprintln!(
        "plugin on the slave: synced {synced:?} after the slave caught up; {} of {} messages selected; total {:?}",
        want.len(),
        msgs.len(),
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Bad input.
// ---------------------------------------------------------------------------------------------

/// A slave's hello as the HA protocol writes it (`broker/src/ha/wire.rs`), by hand: u32 length,
/// kind 1, magic `WQHA`, version 1, broker id, epoch, segment size, offset, u16 + name.
fn hello_frame(broker_id: i64, segment: u64, offset: u64, name: &str) -> Vec<u8> {
    let mut body = vec![1u8];
    body.extend_from_slice(&0x5751_4841u32.to_be_bytes());
    body.extend_from_slice(&1u16.to_be_bytes());
    body.extend_from_slice(&broker_id.to_be_bytes());
    body.extend_from_slice(&0u64.to_be_bytes());
    body.extend_from_slice(&segment.to_be_bytes());
    body.extend_from_slice(&offset.to_be_bytes());
    body.extend_from_slice(&(name.len() as u16).to_be_bytes());
    body.extend_from_slice(name.as_bytes());
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend(body);
    f
}

/// Writes `bytes` to the HA port and reads until the master closes the connection (bounded);
/// what it sent back.
fn ha_exchange(ha: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(ha).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    // The master may close before all is written: that is an answer too.
    let _ = s.write_all(bytes);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the master kept the connection open ({e}); got {got:?}"),
        }
    }
}

/// The reason in a REFUSE frame (kind 4).
fn refusal(reply: &[u8]) -> String {
    assert!(reply.len() >= 5, "no frame before the close: {reply:?}");
    let len = u32::from_be_bytes(reply[..4].try_into().unwrap()) as usize;
    assert_eq!(reply[4], 4, "a REFUSE frame: {reply:?}");
    String::from_utf8_lossy(&reply[5..4 + len]).into_owned()
}

#[test]
fn bad_input_on_the_ha_port_and_to_the_slave() {
    let t0 = Instant::now();
    let c = Cluster::start(
        "sync_master",
        &["--in-sync-replicas", "2", "--slave-timeout-ms", "2000"],
        SEG,
        &[("Bad", 2)],
    );
    let batch = |k: &str| -> Vec<String> { (0..20).map(|i| format!("{k}-{i}")).collect() };
    // SEND_OK from a sync_master needing 2 copies: the real slave is in sync.
    send_all(c.master.broker, "Bad", 2, &batch("before"));
    let acked_before = slave_entry(&ha_status(c.master.broker), 1).unwrap()["ackedOffset"]
        .as_u64()
        .unwrap();

    // Garbage: an HTTP request, a frame longer than allowed, an unknown kind, a bad magic.
    let garbage: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        vec![0, 0, 0, 1, 9],
        {
            let mut h = hello_frame(3, SEG, 0, "broker-a");
            h[5] ^= 0xff;
            h
        },
    ];
    for g in &garbage {
        let reply = ha_exchange(c.ha, g);
        assert!(
            reply.is_empty() || reply[4] == 4,
            "garbage {g:?} answered {reply:?}"
        );
    }
    // A second connection claiming to be slave 1.
    let dup = refusal(&ha_exchange(c.ha, &hello_frame(1, SEG, 0, "broker-a")));
    assert!(dup.contains("already connected"), "{dup}");
    // A slave claiming an offset the master never wrote.
    let beyond = max_offset(c.master.broker) + (1 << 20);
    let diverged = refusal(&ha_exchange(c.ha, &hello_frame(2, SEG, beyond, "broker-a")));
    assert!(diverged.contains(&beyond.to_string()), "{diverged}");
    // A hello for another broker name.
    let other = refusal(&ha_exchange(c.ha, &hello_frame(2, SEG, 0, "broker-z")));
    assert!(other.contains("broker-z"), "{other}");
    // The master still serves the real slave: sends are acknowledged by both copies and the
    // slave's confirmed offset advances.
    send_all(c.master.broker, "Bad", 2, &batch("after"));
    let st = ha_status(c.master.broker);
    let s1 = slave_entry(&st, 1).expect("slave 1 still connected");
    assert!(s1["ackedOffset"].as_u64().unwrap() > acked_before, "{st}");
    assert_eq!(st["slaves"].as_array().unwrap().len(), 1, "{st}");
    let upto = c.wait_caught_up(Duration::from_secs(20));
    assert_logs_identical(&c.store("master"), &c.store("slave"), upto);

    // A well-formed slave (id 3) that then reports an offset the master never wrote: the
    // master ends its session.
    {
        let mut s = TcpStream::connect(c.ha).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.write_all(&hello_frame(3, SEG, 0, "broker-a")).unwrap();
        let mut head = [0u8; 5];
        s.read_exact(&mut head).unwrap();
        assert_eq!(head[4], 3, "a WELCOME frame");
        wait_for("slave 3 on the master", Duration::from_secs(10), || {
            slave_entry(&ha_status(c.master.broker), 3)
        });
        let lie = max_offset(c.master.broker) + (1 << 20);
        let mut report = vec![0, 0, 0, 9, 2];
        report.extend_from_slice(&lie.to_be_bytes());
        s.write_all(&report).unwrap();
        // Whatever the master streamed meanwhile, then the close.
        let mut sink = Vec::new();
        match s.read_to_end(&mut sink) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("the master kept a lying slave's connection open: {e}"),
        }
        wait_for("slave 3 dropped", Duration::from_secs(10), || {
            slave_entry(&ha_status(c.master.broker), 3)
                .is_none()
                .then_some(())
        });
    }
    // Every bad connection was closed and logged.
    let ended = c
        .master
        .log_text()
        .matches("replication session ended")
        .count();
    assert!(
        ended >= garbage.len() + 4,
        "{ended} bad sessions logged\n{}",
        c.logs()
    );
    send_all(c.master.broker, "Bad", 2, &batch("after-lie"));

    // A slave with another segment size: refused, naming both sizes; appends nothing.
    let other_seg = 2 * SEG;
    let ha = c.ha.to_string();
    let wrong = BrokerProc::start_external(
        &c.store("slave2"),
        c.ns.addr,
        other_seg,
        &[
            "--role",
            "slave",
            "--broker-id",
            "2",
            "--ha-master-addr",
            &ha,
        ],
    );
    let error = wait_for(
        "the refusal in the slave's HA_STATUS",
        Duration::from_secs(30),
        || {
            ha_status(wrong.broker)["master"]["error"]
                .as_str()
                .map(String::from)
        },
    );
    assert!(
        error.contains(&SEG.to_string()) && error.contains(&other_seg.to_string()),
        "the error names both segment sizes: {error}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let st = ha_status(wrong.broker);
    assert_eq!(st["maxOffset"], 0, "{st}");
    for (_, seg) in segments(&c.store("slave2")) {
        let bytes = std::fs::read(&seg).unwrap();
        assert!(
            bytes.iter().all(|b| *b == 0),
            "{} holds data",
            seg.display()
        );
    }
    assert!(slave_entry(&ha_status(c.master.broker), 2).is_none());
    drop(wrong);

    // Sends to the slave: refused with SERVICE_NOT_AVAILABLE naming the master; nothing stored.
    let slave_max = max_offset(c.slave.broker);
    for (topic, q) in [("Bad", 0), ("NotHere", 0)] {
        let r = call(c.slave.broker, send_req(topic, q, "", b"to the slave"));
        assert_eq!(r.code, response::SERVICE_NOT_AVAILABLE, "{:?}", r.remark);
        let remark = r.remark.unwrap_or_default();
        assert!(
            remark.contains(&c.master.broker.to_string()),
            "the refusal names the master {}: {remark}",
            c.master.broker
        );
    }
    let mut body = Vec::new();
    wasmq::protocol::batch::encode_entry(&mut body, 0, b"batch to the slave", b"").unwrap();
    let r = call(c.slave.broker, SendReq::new("Bad", 1, "").batch(body));
    assert_eq!(r.code, response::SERVICE_NOT_AVAILABLE, "{:?}", r.remark);
    assert_eq!(max_offset(c.slave.broker), slave_max, "nothing appended");
    assert_eq!(queue_max(c.slave.broker, "NotHere", 0), 0);
    send_all(c.master.broker, "Bad", 2, &batch("last"));
    let upto = c.wait_caught_up(Duration::from_secs(20));
    assert_logs_identical(&c.store("master"), &c.store("slave"), upto);
    assert_queues_equal(c.master.broker, c.slave.broker);
    eprintln!(
        "bad input: refusals {dup:?} / {diverged:?} / {other:?}; segment size: {error:?}; total {:?}",
        t0.elapsed()
    );
}
