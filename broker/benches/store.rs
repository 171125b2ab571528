//! Store benchmark (a binary that prints figures; not a timed test).
//!
//! Measures, in one run on the same disk: raw sequential buffered write bandwidth and the raw
//! `fdatasync` rate, then `MessageStore::put` throughput (also counted until every put is
//! dispatched: in its consume queue and the index) and latency for 128 B and 1 KiB messages
//! with 1, 4 and 16 concurrent writers under `async` and `sync` flush.
//!
//! `WASMQ_BENCH_SECS` (default 2) bounds each case; `WASMQ_BENCH_DIR` picks the disk (default:
//! the system temp dir); `WASMQ_BENCH_FLUSH=sync|async` runs one flush mode only;
//! `WASMQ_BENCH_ZERO_FILL=1|0` overrides the store's `commit_log_zero_fill` (default: only
//! under sync flush). The last column shows, under sync flush, how many appends one commit-log
//! `fdatasync` carried, and the mean time a batch gathered appends + the mean `fdatasync`.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmq::store::{FlushMode, MessageInput, MessageStore, StoreConfig};

/// `WASMQ_BENCH_SECS`: seconds per case (`WASMQ_BENCH_SMOKE` does not shrink this bench).
fn secs() -> f64 {
    support::env_or("WASMQ_BENCH_SECS", 2.0)
}

fn base_dir() -> PathBuf {
    std::env::var_os("WASMQ_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// Raw buffered sequential write: MB/s without and with a final fdatasync.
fn raw_write() -> (f64, f64) {
    let dir = tempfile::tempdir_in(base_dir()).expect("temp dir");
    let path = dir.path().join("raw");
    let mut f = std::fs::File::create(&path).expect("create");
    let chunk = vec![0x5Au8; 1 << 20];
    let total_mb = ((secs() * 400.0) as usize).clamp(64, 1024);
    let t = Instant::now();
    for _ in 0..total_mb {
        f.write_all(&chunk).expect("write");
    }
    let buffered = total_mb as f64 / t.elapsed().as_secs_f64();
    f.sync_data().expect("fdatasync");
    let durable = total_mb as f64 / t.elapsed().as_secs_f64();
    (buffered, durable)
}

/// 1 KiB write + fdatasync per write, one writer: the disk's sync ceiling.
fn raw_fsync_rate() -> f64 {
    let dir = tempfile::tempdir_in(base_dir()).expect("temp dir");
    let mut f = std::fs::File::create(dir.path().join("sync")).expect("create");
    let buf = vec![1u8; 1024];
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed().as_secs_f64() < secs().min(1.0) && n < 200_000 {
        f.write_all(&buf).expect("write");
        f.sync_data().expect("fdatasync");
        n += 1;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

struct Case {
    mode: FlushMode,
    size: usize,
    writers: usize,
    msgs_per_sec: f64,
    /// Puts per second counted until they were all dispatched too (consume queue + index).
    dispatched_per_sec: f64,
    mb_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    /// Appends per commit-log `fdatasync` (sync flush: how well group commit batches).
    per_flush: f64,
    /// Mean `fdatasync` time and mean time a batch gathered appends, per flush.
    flush_us: f64,
    gather_us: f64,
}

/// The `p` quantile of latencies sorted in ns, in us.
fn pct(sorted: &[u32], p: f64) -> f64 {
    support::pct(sorted, p) / 1000.0
}

fn run_case(mode: FlushMode, size: usize, writers: usize) -> Case {
    // Start each case with no dirty data from the previous ones in the page cache: their
    // writeback would compete with this case's fdatasyncs.
    support::sync_disks();
    let dir = tempfile::tempdir_in(base_dir()).expect("temp dir");
    let cfg = StoreConfig {
        flush_mode: mode,
        commit_log_segment_size: 256 << 20,
        commit_log_zero_fill: std::env::var("WASMQ_BENCH_ZERO_FILL")
            .ok()
            .map(|v| v == "1" || v == "true"),
        cleanup_interval_ms: 3_600_000,
        // Production-like file sizes (the test sizes would roll a consume-queue file every
        // 1024 messages and an index file every 4096 keys: file creation would dominate).
        consume_queue_entries_per_file: 300_000,
        index_slots: 1 << 20,
        index_entries: 4 << 20,
        ..StoreConfig::for_tests(dir.path().join("store"))
    };
    let host: SocketAddr = "127.0.0.1:10911".parse().expect("addr");
    let store = Arc::new(MessageStore::open(cfg, host).expect("open store"));
    // Measure the settled store, not the preparation of its first spare segment.
    store.wait_prepared();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let max_per_writer = 5_000_000 / writers;
    let started = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            let stop = stop.clone();
            rt.spawn(async move {
                let body = vec![(w as u8).wrapping_add(b'a'); size];
                let props = "TAGS\u{1}bench\u{2}KEYS\u{1}k\u{2}";
                let mut lat: Vec<u32> = Vec::with_capacity(1 << 16);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && n < max_per_writer {
                    let msg = MessageInput {
                        topic: "Bench",
                        queue_id: (w % 8) as i32,
                        flag: 0,
                        sysflag: 0,
                        born_timestamp: 0,
                        born_host: "127.0.0.1:1".parse().expect("addr"),
                        reconsume_times: 0,
                        prepared_transaction_offset: 0,
                        body: &body,
                        properties: props,
                    };
                    let t = Instant::now();
                    let r = store.put(std::slice::from_ref(&msg)).await;
                    let us = t.elapsed().as_nanos().min(u32::MAX as u128) as u32;
                    assert!(r.status.is_ok(), "{:?}", r.status);
                    if lat.len() < 2_000_000 {
                        lat.push(us);
                    }
                    n += 1;
                }
                (n, lat)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs()));
    stop.store(true, Ordering::Relaxed);
    let mut total = 0usize;
    let mut lat = Vec::new();
    for h in handles {
        let (n, l) = rt.block_on(h).expect("writer");
        total += n;
        lat.extend(l);
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Until every put is also in its consume queue and the index (readable by a pull).
    rt.block_on(store.wait_dispatched(Duration::from_secs(120)));
    let dispatched = started.elapsed().as_secs_f64();
    let fs = store.flush_stats();
    lat.sort_unstable();
    let rec = size + 60 + 60; // header + topic + properties (approximate on-disk record)
    Case {
        mode,
        size,
        writers,
        msgs_per_sec: total as f64 / elapsed,
        dispatched_per_sec: total as f64 / dispatched,
        mb_per_sec: total as f64 * rec as f64 / elapsed / 1e6,
        p50_us: pct(&lat, 0.50),
        p99_us: pct(&lat, 0.99),
        p999_us: pct(&lat, 0.999),
        per_flush: fs.requests as f64 / fs.flushes.max(1) as f64,
        flush_us: fs.flush_ns as f64 / 1e3 / fs.flushes.max(1) as f64,
        gather_us: fs.gather_ns as f64 / 1e3 / fs.flushes.max(1) as f64,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    println!(
        "wasmq store benchmark: {} s per case, disk of {}",
        secs(),
        base_dir().display()
    );
    let (raw_buf, raw_durable) = raw_write();
    let fsyncs = raw_fsync_rate();
    println!("raw sequential write: {raw_buf:.0} MB/s buffered, {raw_durable:.0} MB/s including fdatasync");
    println!("raw 1 KiB write+fdatasync: {fsyncs:.0} /s (one writer)");
    println!();
    println!(
        "{:<6} {:>6} {:>8} {:>12} {:>12} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "flush",
        "size",
        "writers",
        "msgs/s",
        "dispatched/s",
        "MB/s",
        "p50 us",
        "p99 us",
        "p999 us",
        "per fsync"
    );
    let mut cases = Vec::new();
    // `WASMQ_BENCH_FLUSH=sync|async` runs one mode only.
    let only = std::env::var("WASMQ_BENCH_FLUSH").unwrap_or_default();
    let modes = [FlushMode::Async, FlushMode::Sync]
        .into_iter()
        .filter(|m| only.is_empty() || format!("{m:?}").eq_ignore_ascii_case(&only));
    for mode in modes {
        for size in [128usize, 1024] {
            for writers in [1usize, 4, 16] {
                let c = run_case(mode, size, writers);
                println!(
                    "{:<6} {:>6} {:>8} {:>12.0} {:>12.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10}",
                    format!("{:?}", c.mode).to_lowercase(),
                    c.size,
                    c.writers,
                    c.msgs_per_sec,
                    c.dispatched_per_sec,
                    c.mb_per_sec,
                    c.p50_us,
                    c.p99_us,
                    c.p999_us,
                    if c.mode == FlushMode::Sync {
                        format!(
                            "{:.1} ({:.0}+{:.0} us)",
                            c.per_flush, c.gather_us, c.flush_us
                        )
                    } else {
                        "-".to_string()
                    }
                );
                cases.push(c);
            }
        }
    }
    println!();
    let find = |m: FlushMode, s: usize, w: usize| {
        cases
            .iter()
            .find(|c| c.mode == m && c.size == s && c.writers == w)
            .map(|c| (c.msgs_per_sec, c.mb_per_sec))
            .unwrap_or((0.0, 0.0))
    };
    let best_async_1k = [1, 4, 16]
        .iter()
        .map(|&w| find(FlushMode::Async, 1024, w).1)
        .fold(0.0f64, f64::max);
    println!(
        "async 1 KiB: {:.0} MB/s = {:.0}% of raw buffered write bandwidth (target >= 60%)",
        best_async_1k,
        100.0 * best_async_1k / raw_buf
    );
    for size in [128usize, 1024] {
        let one = find(FlushMode::Sync, size, 1).0;
        let sixteen = find(FlushMode::Sync, size, 16).0;
        println!(
            "sync {size} B: 16 writers {sixteen:.0} msgs/s vs 1 writer {one:.0} msgs/s = {:.1}x (target >= 8x)",
            if one > 0.0 { sixteen / one } else { 0.0 }
        );
    }
}
