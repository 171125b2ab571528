//! What a bench prints: one line per second while it runs, and one summary block at the end
//! (format in the module doc of `bench`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::baseline::Baselines;
use super::cpu::CpuTimes;

/// Counts shared by a run's tasks (one atomic add per reply; errors are the rare path).
#[derive(Default)]
pub struct Counters {
    pub msgs: AtomicU64,
    pub bytes: AtomicU64,
    errors: Mutex<BTreeMap<i32, u64>>,
}

impl Counters {
    pub fn add(&self, msgs: u64, bytes: u64) {
        self.msgs.fetch_add(msgs, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn error(&self, code: i32) {
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(code).or_default() += 1;
        }
    }

    pub fn errors(&self) -> BTreeMap<i32, u64> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

/// Prints `[  Ns] msgs/s MB/s` every second from `start` until `stop` (or at most `limit`).
pub fn ticker(
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    start: Instant,
    limit: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = (0u64, 0u64, start);
        let mut t = tokio::time::interval_at(
            (start + Duration::from_secs(1)).into(),
            Duration::from_secs(1),
        );
        while !stop.load(Ordering::Relaxed) && start.elapsed() < limit {
            t.tick().await;
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let now = Instant::now();
            let (m, b) = (
                counters.msgs.load(Ordering::Relaxed),
                counters.bytes.load(Ordering::Relaxed),
            );
            let dt = now.duration_since(last.2).as_secs_f64().max(1e-9);
            println!(
                "[{:>4.0}s] {:.0} msgs/s {:.1} MB/s",
                now.duration_since(start).as_secs_f64(),
                (m - last.0) as f64 / dt,
                (b - last.1) as f64 / dt / 1e6
            );
            last = (m, b, now);
        }
    })
}

/// The figures of a finished run.
pub struct Summary {
    /// `produce total (...)` / `consume total (...)`.
    pub title: String,
    pub msgs: u64,
    pub bytes: u64,
    pub errors: BTreeMap<i32, u64>,
    /// First request sent -> last reply received.
    pub window: Duration,
    /// Per-request latency in ns (`None`: oneway, no replies).
    pub latency: Option<Histogram<u64>>,
    pub client_cpu: CpuTimes,
    pub broker_cpu: Option<(u32, CpuTimes)>,
    pub baselines: Baselines,
    /// A line of its own (`label: key=value ...`), e.g. what a oneway run lost.
    pub note: Option<String>,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

impl Summary {
    pub fn msgs_per_s(&self) -> f64 {
        self.msgs as f64 / self.window.as_secs_f64().max(1e-9)
    }

    fn per_msg_us(&self, cpu: &CpuTimes) -> f64 {
        cpu.total().as_secs_f64() * 1e6 / self.msgs.max(1) as f64
    }

    /// The summary block, lines of `label: key=value ...` after a `== summary ==` header.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let secs = self.window.as_secs_f64().max(1e-9);
        let _ = writeln!(o, "== summary ==");
        let _ = write!(
            o,
            "{}: {:.0} msgs/s {:.1} MB/s",
            self.title,
            self.msgs_per_s(),
            self.bytes as f64 / secs / 1e6
        );
        match &self.latency {
            Some(h) if !h.is_empty() => {
                let _ = writeln!(
                    o,
                    " latency us p50={:.0} p99={:.0} p999={:.0} max={:.0}",
                    us(h.value_at_quantile(0.5)),
                    us(h.value_at_quantile(0.99)),
                    us(h.value_at_quantile(0.999)),
                    us(h.max())
                );
            }
            Some(_) => o.push_str(" latency: no replies\n"),
            None => o.push_str(" latency: none (oneway)\n"),
        }
        let errors: u64 = self.errors.values().sum();
        let _ = writeln!(
            o,
            "window: msgs={} bytes={} errors={errors} window_s={:.6} msgs_per_s={:.1} mb_per_s={:.2}",
            self.msgs,
            self.bytes,
            secs,
            self.msgs_per_s(),
            self.bytes as f64 / secs / 1e6
        );
        let c = &self.client_cpu;
        let _ = writeln!(
            o,
            "client cpu: cpu_ms={:.1} cpu_user_ms={:.1} cpu_sys_ms={:.1} cpu_us_per_msg={:.2} cpu_cores={:.2}",
            c.total().as_secs_f64() * 1e3,
            c.user.as_secs_f64() * 1e3,
            c.sys.as_secs_f64() * 1e3,
            self.per_msg_us(c),
            c.total().as_secs_f64() / secs
        );
        if let Some((pid, b)) = &self.broker_cpu {
            let _ = writeln!(
                o,
                "broker cpu: broker_pid={pid} broker_cpu_ms={:.0} broker_cpu_user_ms={:.0} broker_cpu_sys_ms={:.0} broker_cpu_us_per_msg={:.2} broker_cpu_cores={:.2}",
                b.total().as_secs_f64() * 1e3,
                b.user.as_secs_f64() * 1e3,
                b.sys.as_secs_f64() * 1e3,
                self.per_msg_us(b),
                b.total().as_secs_f64() / secs
            );
        }
        if let Some(e) = &self.baselines.echo {
            let _ = writeln!(
                o,
                "baseline tcp echo 1 KiB, 1 in flight: echo_p50_us={:.1} echo_p99_us={:.1} echo_round_trips={}",
                us(e.p50_ns),
                us(e.p99_ns),
                e.round_trips
            );
        }
        if let Some(s) = &self.baselines.store {
            let _ = writeln!(
                o,
                "baseline store append 1 KiB, 1 writer, async flush: store_msgs_per_s={:.0} store_appends={}",
                s.msgs_per_s, s.appends
            );
        }
        let mut ratios = Vec::new();
        if let (Some(e), Some(h)) = (&self.baselines.echo, &self.latency) {
            if !h.is_empty() && e.p50_ns > 0 {
                ratios.push(format!(
                    "p50_over_echo_p50={:.1}x",
                    h.value_at_quantile(0.5) as f64 / e.p50_ns as f64
                ));
            }
        }
        if let Some(s) = &self.baselines.store {
            if s.msgs_per_s > 0.0 {
                ratios.push(format!(
                    "msgs_per_s_over_store={:.3}",
                    self.msgs_per_s() / s.msgs_per_s
                ));
            }
        }
        if !ratios.is_empty() {
            let _ = writeln!(o, "ratios: {}", ratios.join(" "));
        }
        if let Some(n) = &self.note {
            let _ = writeln!(o, "{n}");
        }
        if !self.errors.is_empty() {
            let _ = writeln!(o, "errors by response code: {:?}", self.errors);
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::super::baseline::{hist, Echo, StoreRate};
    use super::*;

    /// `key=value` of a rendered block (keys are unique in it).
    fn get<'a>(block: &'a str, key: &str) -> Option<&'a str> {
        block
            .split_whitespace()
            .find_map(|t| t.strip_prefix(key)?.strip_prefix('='))
    }

    #[test]
    fn the_block_has_every_figure_once_and_the_ratios() {
        let mut h = hist();
        for v in [100_000u64, 200_000, 300_000] {
            h.record(v).unwrap();
        }
        let s = Summary {
            title: "produce total (1 thread x 8 in flight, 1024 B, sync)".into(),
            msgs: 2000,
            bytes: 2000 * 1024,
            errors: BTreeMap::new(),
            window: Duration::from_millis(500),
            latency: Some(h),
            client_cpu: CpuTimes {
                user: Duration::from_millis(30),
                sys: Duration::from_millis(10),
            },
            broker_cpu: Some((
                7,
                CpuTimes {
                    user: Duration::from_millis(60),
                    sys: Duration::from_millis(20),
                },
            )),
            baselines: Baselines {
                echo: Some(Echo {
                    p50_ns: 50_000,
                    p99_ns: 90_000,
                    round_trips: 20_000,
                }),
                store: Some(StoreRate {
                    msgs_per_s: 8000.0,
                    appends: 12_000,
                }),
            },
            note: Some("oneway: oneway_sent=3 oneway_stored=2 oneway_lost=1".into()),
        };
        let b = s.render();
        assert!(b.starts_with("== summary ==\nproduce total ("), "{b}");
        assert_eq!(get(&b, "msgs"), Some("2000"));
        assert_eq!(get(&b, "msgs_per_s"), Some("4000.0"));
        assert_eq!(get(&b, "p50"), Some("200"));
        assert_eq!(get(&b, "cpu_us_per_msg"), Some("20.00"));
        assert_eq!(get(&b, "broker_cpu_us_per_msg"), Some("40.00"));
        assert_eq!(get(&b, "p50_over_echo_p50"), Some("4.0x"));
        assert_eq!(get(&b, "msgs_per_s_over_store"), Some("0.500"));
        assert_eq!(get(&b, "oneway_lost"), Some("1"));
        let mut keys: Vec<&str> = b
            .split_whitespace()
            .filter_map(|t| t.split_once('=').map(|(k, _)| k))
            .filter(|k| !k.is_empty())
            .collect();
        let n = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), n, "a key appears twice: {b}");
    }
}
