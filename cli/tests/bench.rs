//! `wasmq bench` against a real `wasmq-broker` process (free loopback ports, temp store, killed
//! by PID at the end): exact counts with requests in flight, no message counted twice by a
//! pipelined consume, CPU per message of the broker, baselines, and refused bad input. The
//! summary block's `key=value` format is documented in `cli/src/bench/mod.rs`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn free() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Broker {
    child: Child,
    namesrv: SocketAddr,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path) -> Broker {
    let wasmq = PathBuf::from(env!("CARGO_BIN_EXE_wasmq"));
    let bin = wasmq.with_file_name("wasmq-broker");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p wasmq-broker`",
        bin.display()
    );
    let (b, ns) = (free(), free());
    let child = Command::new(bin)
        .args(["--ha-listen", &free().to_string()])
        .args(["--listen", &b.to_string()])
        .args(["--namesrv-listen", &ns.to_string()])
        .arg("--store-dir")
        .arg(dir)
        .args(["--segment-size", "4194304"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(ns).is_err() || TcpStream::connect(b).is_err() {
        assert!(Instant::now() < deadline, "broker did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Broker { child, namesrv: ns }
}

fn wasmq(b: Option<&Broker>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wasmq"));
    if let Some(b) = b {
        c.arg("--namesrv").arg(b.namesrv.to_string());
    }
    c.args(args).output().unwrap()
}

fn ok(b: &Broker, args: &[&str]) -> String {
    let o = wasmq(Some(b), args);
    assert!(
        o.status.success(),
        "wasmq {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// The summary block of a bench's output.
fn summary(out: &str) -> &str {
    let at = out
        .find("== summary ==")
        .unwrap_or_else(|| panic!("no summary: {out}"));
    &out[at..]
}

/// `key=value` of the summary block (each key at most once in it).
fn get<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    summary(out)
        .split_whitespace()
        .find_map(|t| t.strip_prefix(key)?.strip_prefix('='))
}

fn num(out: &str, key: &str) -> f64 {
    get(out, key)
        .unwrap_or_else(|| panic!("no {key}= in: {out}"))
        .trim_end_matches('x')
        .parse()
        .unwrap_or_else(|_| panic!("{key}= is not a number in: {out}"))
}

/// Messages the broker holds in `topic`, read back by a plain `wasmq consume` of a new group.
fn stored(b: &Broker, topic: &str, group: &str) -> u64 {
    let o = wasmq(
        Some(b),
        &[
            "consume",
            "--topic",
            topic,
            "--group",
            group,
            "--timeout-ms",
            "20000",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let line = err.lines().find(|l| l.starts_with("consumed ")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn produce_in_flight_is_exact_and_consume_counts_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path());
    let pid = b.child.id().to_string();
    ok(&b, &["topic", "create", "--topic", "BT", "--queues", "4"]);
    // Eight requests in flight on one connection: exactly --count, all stored.
    let out = ok(
        &b,
        &[
            "bench",
            "produce",
            "--topic",
            "BT",
            "--count",
            "2000",
            "--inflight",
            "8",
            "--size",
            "128",
            "--duration-secs",
            "60",
            "--no-baseline",
            "--broker-pid",
            &pid,
        ],
    );
    assert_eq!(get(&out, "msgs"), Some("2000"), "{out}");
    assert_eq!(get(&out, "errors"), Some("0"), "{out}");
    assert!(
        out.contains("produce total (1 threads x 8 in flight"),
        "{out}"
    );
    assert!(
        num(&out, "window_s") > 0.0 && num(&out, "p999") > 0.0,
        "{out}"
    );
    assert!(num(&out, "cpu_us_per_msg") > 0.0, "{out}");
    assert!(num(&out, "broker_cpu_us_per_msg") >= 0.0, "{out}");
    assert_eq!(get(&out, "broker_pid"), Some(pid.as_str()), "{out}");
    assert!(get(&out, "echo_p50_us").is_none(), "--no-baseline: {out}");
    assert_eq!(stored(&b, "BT", "check1"), 2000);

    // One queue holds all 2000 (one connection writes one queue): four pulls in flight are
    // consecutive ranges of it; none may be counted twice, --count is exact.
    let pull = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "consume",
            "--topic",
            "BT",
            "--duration-secs",
            "60",
            "--broker-pid",
            &pid,
        ];
        args.extend_from_slice(extra);
        ok(&b, &args)
    };
    let out = pull(&["--pull-batch", "64", "--inflight", "4", "--count", "2000"]);
    assert_eq!(get(&out, "msgs"), Some("2000"), "{out}");
    assert!(num(&out, "broker_cpu_us_per_msg") >= 0.0, "{out}");
    let out = pull(&["--pull-batch", "64", "--inflight", "4", "--count", "1500"]);
    assert_eq!(get(&out, "msgs"), Some("1500"), "{out}");
    // Without --count: the backlog, once. Pulls larger than the broker's cap (1024 messages)
    // come back short and their rest is pulled again.
    let out = pull(&["--pull-batch", "2000", "--inflight", "3"]);
    assert_eq!(get(&out, "msgs"), Some("2000"), "{out}");
    let out = pull(&["--pull-batch", "7", "--inflight", "16", "--threads", "2"]);
    assert_eq!(get(&out, "msgs"), Some("2000"), "{out}");

    // Batch (a last partial batch) and oneway (no replies) are exact too; baselines by default.
    let out = ok(
        &b,
        &[
            "bench",
            "produce",
            "--topic",
            "BT",
            "--mode",
            "batch",
            "--batch",
            "64",
            "--count",
            "1000",
            "--inflight",
            "4",
            "--threads",
            "2",
            "--size",
            "128",
            "--duration-secs",
            "60",
        ],
    );
    assert_eq!(get(&out, "msgs"), Some("1000"), "{out}");
    assert!(num(&out, "echo_p50_us") > 0.0, "{out}");
    assert!(num(&out, "store_msgs_per_s") > 0.0, "{out}");
    assert!(num(&out, "p50_over_echo_p50") > 0.0, "{out}");
    assert!(num(&out, "msgs_per_s_over_store") > 0.0, "{out}");
    let out = ok(
        &b,
        &[
            "bench",
            "produce",
            "--topic",
            "BT",
            "--mode",
            "oneway",
            "--count",
            "500",
            "--inflight",
            "4",
            "--size",
            "128",
            "--duration-secs",
            "60",
            "--no-baseline",
        ],
    );
    assert_eq!(get(&out, "msgs"), Some("500"), "{out}");
    assert!(out.contains("latency: none (oneway)"), "{out}");
    assert_eq!(get(&out, "oneway_stored"), Some("500"), "{out}");
    assert_eq!(get(&out, "oneway_lost"), Some("0"), "{out}");
    assert_eq!(stored(&b, "BT", "check2"), 3500);
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    for (args, what) in [
        (
            &["bench", "produce", "--topic", "T", "--inflight", "0"][..],
            "--inflight",
        ),
        (
            &["bench", "consume", "--topic", "T", "--pull-batch", "0"][..],
            "--pull-batch",
        ),
        (
            &["bench", "consume", "--topic", "T", "--inflight", "0"][..],
            "--inflight",
        ),
        (
            &["bench", "produce", "--topic", "T", "--batch", "0"][..],
            "--batch",
        ),
        (
            &["bench", "produce", "--topic", "T", "--count", "0"][..],
            "--count",
        ),
    ] {
        // No broker at all: the arguments are refused before anything connects.
        let o = wasmq(None, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(what), "{args:?}: {err}");
        assert!(
            err.contains("1 or more") || err.contains("nothing to do"),
            "{args:?}: {err}"
        );
    }
}
