//! Baselines measured in the same run as a bench, so its figures can be read against the
//! machine: a plain TCP 1 KiB echo round trip over loopback (one in flight), and the store's
//! own 1 KiB append rate (one writer, async flush, in a temp dir removed afterwards).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wasmq::store::{FlushMode, MessageInput, MessageStore, StoreConfig};

use hdrhistogram::Histogram;

/// Latencies in ns, 1 ns to 60 s, 3 significant digits.
pub fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

/// TCP echo round trip of 1 KiB, one in flight.
#[derive(Clone, Copy, Debug)]
pub struct Echo {
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub round_trips: u64,
}

/// `MessageStore::put` of one 1 KiB message at a time, one writer.
#[derive(Clone, Copy, Debug)]
pub struct StoreRate {
    pub msgs_per_s: f64,
    pub appends: u64,
}

#[derive(Default)]
pub struct Baselines {
    pub echo: Option<Echo>,
    pub store: Option<StoreRate>,
}

const MSG: usize = 1024;

/// Round trips of 1 KiB to an in-process echo server on 127.0.0.1:0, at most `max_trips` or
/// `max_time`, whichever comes first.
pub async fn echo(max_trips: u64, max_time: Duration) -> Result<Echo> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; MSG];
        // Ends when the client closes its side.
        while s.read_exact(&mut buf).await.is_ok() {
            s.write_all(&buf).await?;
        }
        anyhow::Ok(())
    });
    let mut c = TcpStream::connect(addr).await?;
    c.set_nodelay(true)?;
    let out = vec![0x5Au8; MSG];
    let mut back = vec![0u8; MSG];
    let mut h = hist();
    let start = Instant::now();
    let mut n = 0u64;
    while n < max_trips && start.elapsed() < max_time {
        let t0 = Instant::now();
        c.write_all(&out).await?;
        c.read_exact(&mut back).await?;
        h.record((t0.elapsed().as_nanos() as u64).max(1))?;
        n += 1;
    }
    drop(c);
    server.await??;
    Ok(Echo {
        p50_ns: h.value_at_quantile(0.5),
        p99_ns: h.value_at_quantile(0.99),
        round_trips: n,
    })
}

/// Appends 1 KiB messages (properties shaped like the bench's) to a fresh store under the
/// system temp dir from one writer, for at most `max_time` or `max_msgs`; the store and its
/// dir are removed afterwards. Runs on its own thread (the store has its own threads too).
pub fn store_append(max_time: Duration, max_msgs: u64) -> Result<StoreRate> {
    std::thread::spawn(move || store_append_here(max_time, max_msgs))
        .join()
        .map_err(|_| anyhow!("the store baseline panicked"))?
}

fn store_append_here(max_time: Duration, max_msgs: u64) -> Result<StoreRate> {
    let dir = tempfile::Builder::new()
        .prefix("wasmq-bench-store-")
        .tempdir_in(std::env::temp_dir())
        .context("cannot create a temp dir for the store baseline")?;
    let cfg = StoreConfig {
        flush_mode: FlushMode::Async,
        commit_log_segment_size: 256 << 20,
        cleanup_interval_ms: 3_600_000,
        ..StoreConfig::default()
    };
    let cfg = StoreConfig {
        dir: dir.path().join("store"),
        ..cfg
    };
    let store = Arc::new(MessageStore::open(cfg, "127.0.0.1:10911".parse()?)?);
    store.wait_prepared();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let body = vec![b'x'; MSG];
    let born = "127.0.0.1:1".parse()?;
    let result = rt.block_on(async {
        let start = Instant::now();
        let mut n = 0u64;
        let mut props = String::with_capacity(96);
        while n < max_msgs && start.elapsed() < max_time {
            props.clear();
            props.push_str("UNIQ_KEY\u{1}");
            props.push_str(&format!("{:032X}", n));
            props.push_str("\u{2}WAIT\u{1}true\u{2}");
            let msg = MessageInput {
                topic: "BenchBaseline",
                queue_id: 0,
                flag: 0,
                sysflag: 0,
                born_timestamp: 0,
                born_host: born,
                reconsume_times: 0,
                prepared_transaction_offset: 0,
                body: &body,
                properties: &props,
            };
            let r = store.put(std::slice::from_ref(&msg)).await;
            if !r.status.is_ok() {
                return Err(anyhow!("store baseline append failed: {:?}", r.status));
            }
            n += 1;
        }
        Ok(StoreRate {
            msgs_per_s: n as f64 / start.elapsed().as_secs_f64().max(1e-9),
            appends: n,
        })
    });
    let _ = store.shutdown();
    drop(store);
    drop(dir);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn echo_is_bounded_by_its_count() {
        let e = echo(50, Duration::from_secs(10)).await.unwrap();
        assert_eq!(e.round_trips, 50);
        assert!(e.p50_ns > 0 && e.p99_ns >= e.p50_ns);
    }

    #[test]
    fn store_append_is_bounded_and_cleans_up() {
        let s = store_append(Duration::from_secs(10), 200).unwrap();
        assert_eq!(s.appends, 200);
        assert!(s.msgs_per_s > 0.0);
    }
}
