//! Timer benchmark (prints figures; not a timed test): parks N messages (default 1,000,000,
//! `WASMQ_TIMER_BENCH_N`) with random delivery times over the next hour in a real broker
//! process, samples the broker's resident memory while they are pending, and measures how late
//! the ones due during the next `WASMQ_TIMER_BENCH_SECS` (default 40) are delivered.

mod support;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{env_or, free_port, PullReq, SendReq};
use wasmq::net::RemotingClient;
use wasmq::protocol::response;
use wasmq::store::commit_log::now_ms;
use wasmq::store::record::{self, Check, Entry};

/// Anonymous resident memory (heap, stacks): what pending messages could cost. File-backed
/// pages of the mapped log are page cache, not the broker's own memory.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("RssAnon:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let n: u64 = env_or("WASMQ_TIMER_BENCH_N", 1_000_000);
    let window: u64 = env_or("WASMQ_TIMER_BENCH_SECS", 40);
    let dir = tempfile::tempdir().expect("temp dir");
    let (bp, np) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmq-broker"))
        .args([
            "--listen",
            &format!("127.0.0.1:{bp}"),
            "--namesrv-listen",
            &format!("127.0.0.1:{np}"),
        ])
        .arg("--store-dir")
        .arg(dir.path().join("store"))
        .args(["--segment-size", "268435456"])
        .stderr(Stdio::null())
        .spawn()
        .expect("start broker");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", bp)).is_err() {
        assert!(Instant::now() < deadline, "broker did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let rss_idle = rss_kib(pid);
    let start = now_ms();
    let sent = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    println!("parking {n} timed messages (delivery uniformly over the next hour) ...");
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..16u64 {
            let sent = sent.clone();
            tasks.push(tokio::spawn(async move {
                let c = RemotingClient::connect(("127.0.0.1", bp))
                    .await
                    .expect("connect");
                let mut x = 0x9E3779B97F4A7C15u64 ^ w;
                for i in (w..n).step_by(16) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let at = start + 5_000 + (x % 3_595_000) as i64;
                    let props = format!("TIMER_DELIVER_MS\u{1}{at}\u{2}");
                    let req = SendReq::new("TimerBench", 0, &props)
                        .born(now_ms())
                        .request(format!("m{i}").into_bytes());
                    let r = c.invoke(req, Duration::from_secs(10)).await.expect("send");
                    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.expect("sender");
        }
    });
    let park_secs = t0.elapsed().as_secs_f64();
    let rss_parked = rss_kib(pid);
    println!(
        "parked {} in {park_secs:.1} s ({:.0} msgs/s); broker anonymous RSS idle {} MiB, with all pending {} MiB",
        sent.load(Ordering::Relaxed),
        n as f64 / park_secs,
        rss_idle / 1024,
        rss_parked / 1024
    );
    // Consume what comes due during the window and measure lateness.
    let mut late: Vec<i64> = Vec::new();
    let mut rss_max = rss_parked;
    rt.block_on(async {
        let c = RemotingClient::connect(("127.0.0.1", bp))
            .await
            .expect("connect");
        let mut offset = 0i64;
        let end = Instant::now() + Duration::from_secs(window);
        while Instant::now() < end {
            let pull = PullReq::new("bench", "TimerBench", 0, offset)
                .max(64)
                .suspend(1000);
            let r = c
                .invoke(pull.request(), Duration::from_secs(10))
                .await
                .expect("pull");
            if r.code == response::SUCCESS {
                let mut rest = &r.body[..];
                while !rest.is_empty() {
                    let Ok(Entry::Record(v)) = record::decode(
                        rest,
                        Check {
                            crc: false,
                            position: None,
                        },
                    ) else {
                        break;
                    };
                    if let Some(at) = v
                        .property("TIMER_DELIVER_MS")
                        .and_then(|a| a.parse::<i64>().ok())
                    {
                        // A message sent after its delivery time is due when it arrives.
                        late.push(v.store_timestamp() - at.max(v.born_timestamp()));
                    }
                    offset += 1;
                    rest = &rest[v.total_size()..];
                }
            }
            rss_max = rss_max.max(rss_kib(pid));
        }
    });
    let horizon = now_ms();
    let expected = {
        // Due so far: replay the senders' generator.
        let mut count = 0u64;
        for w in 0..16u64 {
            let mut x = 0x9E3779B97F4A7C15u64 ^ w;
            for _ in (w..n).step_by(16) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if start + 5_000 + ((x % 3_595_000) as i64) <= horizon - 1_000 {
                    count += 1;
                }
            }
        }
        count
    };
    late.sort_unstable();
    let pct = |p: f64| {
        late.get(((late.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "delivered {} of {expected} due in the first {window} s (+5 s lead); lateness ms p50={} p99={} max={}; \
         broker anonymous RSS max during delivery {} MiB",
        late.len(),
        pct(0.5),
        pct(0.99),
        late.last().copied().unwrap_or(0),
        rss_max / 1024
    );
    let _ = child.kill();
    let _ = child.wait();
}
