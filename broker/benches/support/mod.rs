//! Scaffolding shared by the benches (each says `mod support;`; cargo does not take this file
//! for a bench of its own):
//!
//! - env knobs: [`smoke`] (`WASMQ_BENCH_SMOKE`), [`secs`] (`WASMQ_BENCH_SECS`), [`max_count`]
//!   (`WASMQ_BENCH_COUNT`), and [`env_or`] / [`knob`] / [`flag`] for the others;
//! - loopback ports ([`free`], [`free_port`], [`free_pair`]) and request builders ([`ext`],
//!   [`SendReq`], [`PullReq`]), shared with the broker tests (`tests/broker_support/wire.rs`);
//! - latency figures: [`micros`], [`pct`], [`median`];
//! - [`BenchBroker`]: a broker in process on a free port, its store in a temp dir, and the
//!   runtime the bench's clients share with it;
//! - admin requests: [`admin`], [`create_topic`], [`plugin_list`], and stored counts:
//!   [`max_offset`], [`max_offsets`], [`stored`], [`settle`]; replication state: [`ha_status`];
//! - [`sync_disks`] between cases.

// Each bench uses a part of this module.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use wasmq::config::BrokerConfig;
use wasmq::net::RemotingClient;
use wasmq::protocol::{request, response, RemotingCommand};
use wasmq::store::FlushMode;

#[path = "../../../tests/broker_support/wire.rs"]
mod wire;

// Not every bench uses each of these.
#[allow(unused_imports)]
pub use wire::{ext, free_port, PullReq, SendReq};

/// Timeout of a bench's requests.
pub const RPC: Duration = Duration::from_secs(30);
/// How long the store may take to dispatch what a case sent ([`settle`]).
pub const SETTLE_LIMIT: Duration = Duration::from_secs(120);
/// How long a broker may take to answer after its start, and to stop.
const START_LIMIT: Duration = Duration::from_secs(30);
const STOP_LIMIT: Duration = Duration::from_secs(60);

// ---- env knobs

/// Whether env `name` is set, and neither empty nor `0`.
pub fn flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

/// `WASMQ_BENCH_SMOKE=1`: every case shrunk to seconds in all (CI runs the benches so; the
/// figures are not meaningful).
pub fn smoke() -> bool {
    flag("WASMQ_BENCH_SMOKE")
}

/// Env `name` parsed, or `default` when it is unset or does not parse.
pub fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// `in_smoke` under [`smoke`], else env `name` or `default`.
pub fn knob<T: FromStr>(name: &str, default: T, in_smoke: T) -> T {
    if smoke() {
        in_smoke
    } else {
        env_or(name, default)
    }
}

/// Seconds per case or run: `WASMQ_BENCH_SECS` (`default` unset; `in_smoke` under [`smoke`]).
pub fn secs(default: f64, in_smoke: f64) -> f64 {
    knob("WASMQ_BENCH_SECS", default, in_smoke)
}

/// Most messages per case or run: `WASMQ_BENCH_COUNT` (`default` unset; `in_smoke` under
/// [`smoke`]).
pub fn max_count(default: usize, in_smoke: usize) -> usize {
    knob("WASMQ_BENCH_COUNT", default, in_smoke)
}

// ---- ports

/// A loopback address nothing listens on right now.
pub fn free() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Two loopback addresses on consecutive ports that nothing listens on right now: a master's
/// broker port and its HA port (a slave given only `ha_master_addr` takes its master's broker
/// port to be the HA port - 1, as the default HA port is the broker port + 1).
pub fn free_pair() -> (SocketAddr, SocketAddr) {
    for _ in 0..100 {
        let Ok(a) = std::net::TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = a.local_addr().map(|a| a.port()) else {
            continue;
        };
        if port == u16::MAX {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            let at = |p| SocketAddr::from(([127, 0, 0, 1], p));
            return (at(port), at(port + 1));
        }
    }
    panic!("no two free consecutive loopback ports in 100 tries");
}

// ---- latency figures

/// A duration in whole microseconds (saturating), as latencies are collected.
pub fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// The `p` quantile (0..=1) of sorted samples, nearest rank; 0 for none.
pub fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64
}

/// The median (mean of the middle two for an even count); 0 for none.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        0.0
    } else if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    }
}

// ---- disks

/// `sync`: no dirty pages of the previous case competing with the next one's writes.
pub fn sync_disks() {
    let _ = std::process::Command::new("sync").status();
}

/// [`sync_disks`] from async code, off the runtime's workers.
pub async fn sync_disks_async() {
    tokio::task::spawn_blocking(sync_disks).await.unwrap();
}

// ---- the broker

/// A multi-threaded runtime with `workers` worker threads named `bench-worker`.
pub fn runtime(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("bench-worker")
        .enable_all()
        .build()
        .expect("runtime")
}

/// A broker in process (`wasmq::broker::run`, no NameServer) on a free loopback port, its
/// store in a temp dir (256 MiB segments), on a runtime the bench's clients share.
/// [`stop`](Self::stop) stops it and waits for `run` to return; the temp dir goes with it.
pub struct BenchBroker {
    pub addr: SocketAddr,
    // Dropped in this order: the runtime, then the store's directory.
    rt: Runtime,
    stop: tokio::sync::watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
    failed: Arc<OnceLock<String>>,
    store_dir: PathBuf,
    dir: tempfile::TempDir,
}

impl BenchBroker {
    /// Starts a broker with `flush` on a runtime of 2 workers; `tweak` adjusts its config.
    pub fn start(flush: FlushMode, tweak: impl FnOnce(&mut BrokerConfig)) -> BenchBroker {
        Self::start_on(runtime(2), flush, tweak)
    }

    /// As [`start`](Self::start), on `rt`.
    pub fn start_on(
        rt: Runtime,
        flush: FlushMode,
        tweak: impl FnOnce(&mut BrokerConfig),
    ) -> BenchBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cfg = BrokerConfig {
            listen: free(),
            namesrv_listen: None,
            ..Default::default()
        };
        cfg.store.dir = dir.path().join("store");
        cfg.store.commit_log_segment_size = 256 << 20;
        cfg.store.flush_mode = flush;
        tweak(&mut cfg);
        let addr = cfg.listen;
        let store_dir = cfg.store.dir.clone();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let failed = Arc::new(OnceLock::new());
        let server = rt.spawn({
            let failed = failed.clone();
            async move {
                if let Err(e) = wasmq::broker::run(cfg, stop_rx).await {
                    let _ = failed.set(e.to_string());
                }
            }
        });
        BenchBroker {
            addr,
            rt,
            stop,
            server: Some(server),
            failed,
            store_dir,
            dir,
        }
    }

    /// The broker's store directory (`store.dir` as started).
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// Runs `f` on the broker's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// A connection to the broker, once it answers (bounded).
    pub async fn client(&self) -> RemotingClient {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Ok(c) = RemotingClient::connect(self.addr).await {
                return c;
            }
            if let Some(e) = self.failed.get() {
                panic!("broker failed: {e}");
            }
            assert!(Instant::now() < deadline, "broker did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the broker and waits (bounded) for `run` to return; panics if it failed or did
    /// not stop. Removes the store's temp dir.
    pub fn stop(mut self) {
        if let Err(e) = self.shutdown() {
            panic!("{e}");
        }
    }

    fn shutdown(&mut self) -> Result<(), String> {
        let Some(server) = self.server.take() else {
            return Ok(());
        };
        let _ = self.stop.send(true);
        match self
            .rt
            .block_on(async { tokio::time::timeout(STOP_LIMIT, server).await })
        {
            Err(_) => Err(format!("broker did not stop within {STOP_LIMIT:?}")),
            Ok(Err(e)) => Err(format!("broker task: {e}")),
            Ok(Ok(())) => match self.failed.get() {
                Some(e) => Err(format!("broker failed: {e}")),
                None => Ok(()),
            },
        }
    }
}

impl Drop for BenchBroker {
    /// A broker not stopped (a bench that panicked) is stopped all the same, quietly.
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

// ---- admin requests and stored counts

/// A request that must succeed (60 s timeout); returns the reply.
pub async fn admin(
    c: &RemotingClient,
    code: i32,
    fields: &[(&str, &str)],
    body: Vec<u8>,
) -> RemotingCommand {
    let r = c
        .invoke(
            RemotingCommand::new_request(code, ext(fields)).with_body(body),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(r.code, response::SUCCESS, "{code}: {:?}", r.remark);
    r
}

/// UPDATE_AND_CREATE_TOPIC: `queues` read and write queues, read-write.
pub async fn create_topic(c: &RemotingClient, topic: &str, queues: usize) {
    let q = queues.to_string();
    admin(
        c,
        request::UPDATE_AND_CREATE_TOPIC,
        &[
            ("topic", topic),
            ("readQueueNums", &q),
            ("writeQueueNums", &q),
            ("perm", "6"),
        ],
        Vec::new(),
    )
    .await;
}

/// PLUGIN_LIST: one JSON object per loaded plugin.
pub async fn plugin_list(c: &RemotingClient) -> Vec<serde_json::Value> {
    let r = c
        .invoke(
            RemotingCommand::new_request(request::PLUGIN_LIST, ext(&[])),
            RPC,
        )
        .await
        .unwrap();
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    serde_json::from_slice(&r.body).unwrap()
}

/// Messages in `topic`'s queue `queue` (`GET_MAX_OFFSET`).
pub async fn max_offset(c: &RemotingClient, topic: &str, queue: usize) -> u64 {
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
    r.ext_fields.get_i64("offset").unwrap().unwrap_or(0) as u64
}

/// Messages per queue of `topic`, queues `0..queues`.
pub async fn max_offsets(c: &RemotingClient, topic: &str, queues: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(queues);
    for q in 0..queues {
        out.push(max_offset(c, topic, q).await);
    }
    out
}

/// Messages in `topic` (queues `0..queues`) in all.
pub async fn stored(c: &RemotingClient, topic: &str, queues: usize) -> u64 {
    max_offsets(c, topic, queues).await.iter().sum()
}

/// Waits (bounded by [`SETTLE_LIMIT`], polling every 2 ms) until `topic` holds `want`
/// messages in all; more than `want` fails at once.
pub async fn settle(c: &RemotingClient, topic: &str, queues: usize, want: u64) {
    let start = Instant::now();
    loop {
        let have = stored(c, topic, queues).await;
        assert!(have <= want, "{topic}: {have} messages stored, {want} sent");
        if have == want {
            return;
        }
        assert!(
            start.elapsed() < SETTLE_LIMIT,
            "{topic}: {have} of {want} messages after {SETTLE_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// HA_STATUS: the broker's replication state (JSON: `role`, `maxOffset`, `slaves` with
/// `brokerId`, `ackedOffset`, `lagBytes`, `inSync`; on a slave `master` with `connected`,
/// `masterMaxOffset`, `lagBytes`, `error`).
pub async fn ha_status(c: &RemotingClient) -> serde_json::Value {
    let r = c
        .invoke(
            RemotingCommand::new_request(request::HA_STATUS, ext(&[])),
            RPC,
        )
        .await
        .unwrap();
    assert_eq!(r.code, response::SUCCESS, "HA_STATUS: {:?}", r.remark);
    serde_json::from_slice(&r.body).unwrap()
}
