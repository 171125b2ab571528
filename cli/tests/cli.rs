//! The `wasmq` command against a real `wasmq-broker` process (started on free loopback ports
//! in a temp store; killed by PID at the end). `cargo test --workspace` builds both binaries
//! into the same target directory.

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
    broker: SocketAddr,
    namesrv: SocketAddr,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn broker_bin() -> PathBuf {
    let wasmq = PathBuf::from(env!("CARGO_BIN_EXE_wasmq"));
    let b = wasmq.with_file_name("wasmq-broker");
    assert!(
        b.exists(),
        "{} is missing: run `cargo build --workspace` (cargo test --workspace builds it)",
        b.display()
    );
    b
}

fn start(dir: &std::path::Path) -> Broker {
    start_with(dir, &[])
}

/// A broker with extra flags (e.g. `--config FILE`).
fn start_with(dir: &std::path::Path, extra: &[&str]) -> Broker {
    let (b, ns) = (free(), free());
    let mut cmd = Command::new(broker_bin());
    // The HA port (default: broker port + 1, which nobody reserved) gets a free one.
    if !extra.contains(&"--ha-listen") {
        cmd.args(["--ha-listen", &free().to_string()]);
    }
    let child = cmd
        .args(extra)
        .args([
            "--listen",
            &b.to_string(),
            "--namesrv-listen",
            &ns.to_string(),
        ])
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
    Broker {
        child,
        broker: b,
        namesrv: ns,
    }
}

fn wasmq(b: &Broker, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmq"))
        .arg("--namesrv")
        .arg(b.namesrv.to_string())
        .args(args)
        .output()
        .unwrap()
}

fn ok(b: &Broker, args: &[&str]) -> String {
    let o = wasmq(b, args);
    assert!(
        o.status.success(),
        "wasmq {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn topics_send_consume_query_offsets_bench() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path());
    assert!(ok(
        &b,
        &["topic", "create", "--topic", "CliTopic", "--queues", "2"]
    )
    .contains("created CliTopic"));
    assert!(ok(&b, &["topic", "list"]).lines().any(|l| l == "CliTopic"));
    assert!(ok(&b, &["topic", "route", "--topic", "CliTopic"]).contains("\"writeQueueNums\":2"));
    for i in 0..20 {
        let tag = if i % 2 == 0 { "A" } else { "B" };
        let out = ok(
            &b,
            &[
                "send",
                "--topic",
                "CliTopic",
                "--tag",
                tag,
                "--keys",
                &format!("key-{i}"),
                "--body",
                &format!("body-{i}"),
            ],
        );
        assert!(out.starts_with("SEND_OK"), "{out}");
    }
    let out = ok(
        &b,
        &[
            "consume",
            "--topic",
            "CliTopic",
            "--group",
            "G",
            "--expr",
            "A",
            "--count",
            "10",
            "--timeout-ms",
            "10000",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 10);
    assert!(lines.iter().all(|l| l.contains("tags=A ")));
    // Every A consumed, so a second run finds nothing more.
    let o = wasmq(
        &b,
        &[
            "consume",
            "--topic",
            "CliTopic",
            "--group",
            "G",
            "--expr",
            "A",
            "--count",
            "1",
            "--timeout-ms",
            "500",
        ],
    );
    assert!(!o.status.success());
    let offsets = ok(&b, &["offsets", "--group", "G", "--topic", "CliTopic"]);
    assert!(offsets.contains("lag=0"), "{offsets}");
    let found = ok(&b, &["query", "--topic", "CliTopic", "--key", "key-7"]);
    assert!(found.contains("body=body-7"), "{found}");
    let sent = ok(&b, &["send", "--topic", "CliTopic", "--body", "by-id"]);
    let id = sent
        .split("msgId=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert!(ok(&b, &["query", "--id", id]).contains("body=by-id"));
    // Errors come back with the broker's reason and a failing exit.
    let o = wasmq(
        &b,
        &[
            "consume",
            "--topic",
            "CliTopic",
            "--group",
            "G2",
            "--type",
            "NOPE",
            "--expr",
            "x",
            "--timeout-ms",
            "500",
        ],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("no loaded plugin serves expression type \"NOPE\""));
    // Bench runs, bounded, and prints its figures.
    let out = ok(
        &b,
        &[
            "bench",
            "produce",
            "--topic",
            "BenchTopic",
            "--threads",
            "2",
            "--size",
            "128",
            "--duration-secs",
            "1",
        ],
    );
    assert!(
        out.contains("produce total") && out.contains("msgs/s") && out.contains("p999="),
        "{out}"
    );
    let out = ok(
        &b,
        &[
            "bench",
            "produce",
            "--topic",
            "BenchTopic",
            "--mode",
            "batch",
            "--batch",
            "16",
            "--count",
            "320",
            "--duration-secs",
            "5",
        ],
    );
    assert!(out.contains("produce total"), "{out}");
    let out = ok(
        &b,
        &[
            "bench",
            "consume",
            "--topic",
            "BenchTopic",
            "--duration-secs",
            "2",
        ],
    );
    assert!(out.contains("consume total"), "{out}");
}

#[test]
fn offsets_reset_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path());
    assert!(ok(&b, &["topic", "create", "--topic", "R", "--queues", "1"]).contains("created"));
    for i in 0..5 {
        ok(&b, &["send", "--topic", "R", "--body", &format!("m{i}")]);
    }
    let out = ok(
        &b,
        &[
            "consume",
            "--topic",
            "R",
            "--group",
            "G",
            "--count",
            "5",
            "--timeout-ms",
            "10000",
        ],
    );
    assert_eq!(out.lines().count(), 5);
    // Rewind to offset 2: the next run sees m2..m4 again.
    assert!(ok(
        &b,
        &[
            "offsets",
            "reset",
            "--group",
            "G",
            "--topic",
            "R",
            "--to-offset",
            "2"
        ]
    )
    .contains("\"0\":2"));
    let out = ok(
        &b,
        &[
            "consume",
            "--topic",
            "R",
            "--group",
            "G",
            "--count",
            "3",
            "--timeout-ms",
            "10000",
        ],
    );
    assert!(
        out.contains("body=m2") && out.contains("body=m4") && !out.contains("body=m1"),
        "{out}"
    );
    // Timestamp 0 = everything.
    ok(
        &b,
        &[
            "offsets",
            "reset",
            "--group",
            "G",
            "--topic",
            "R",
            "--timestamp",
            "0",
        ],
    );
    assert!(ok(&b, &["offsets", "--group", "G", "--topic", "R"]).contains("lag=5"));
    // No dead letters yet: resend fails clearly.
    assert!(!wasmq(&b, &["dlq", "resend", "--group", "G"])
        .status
        .success());
    // A dead letter (as the broker writes them: origin kept in properties) is listed and resent
    // to its original topic.
    ok(
        &b,
        &[
            "send",
            "--topic",
            "%DLQ%G",
            "--tag",
            "t",
            "--property",
            "DLQ_ORIGIN_TOPIC=R",
            "--body",
            "dead",
        ],
    );
    // Sends are acknowledged before dispatch indexes them: list until it shows (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    let list = loop {
        let l = ok(&b, &["dlq", "list", "--group", "G"]);
        if l.contains("body=dead") || Instant::now() > deadline {
            break l;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        list.contains("body=dead") && list.contains("originTopic=R"),
        "{list}"
    );
    let resent = ok(&b, &["dlq", "resend", "--group", "G"]);
    assert!(resent.contains("to R"), "{resent}");
    let out = ok(
        &b,
        &[
            "consume",
            "--topic",
            "R",
            "--group",
            "G2",
            "--count",
            "6",
            "--timeout-ms",
            "10000",
        ],
    );
    assert!(out.contains("body=dead") && out.contains("tags=t"), "{out}");
}

fn plugin_file(name: &str) -> String {
    wasmq::plugin::shipped::path(name).display().to_string()
}

#[test]
fn plugins_load_list_test_consume_json_upgrade_unload() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path());
    // Shipped filters are loaded at start.
    let list = ok(&b, &["plugin", "list"]);
    assert!(
        list.contains("tag-filter") && list.contains("sql92-filter"),
        "{list}"
    );
    // Bad modules are refused with a precise error.
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"not wasm at all").unwrap();
    let o = wasmq(
        &b,
        &[
            "plugin",
            "load",
            "--name",
            "j",
            "--file",
            bad.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a WebAssembly file"));
    let o = wasmq(
        &b,
        &[
            "plugin",
            "load",
            "--name",
            "j",
            "--file",
            &plugin_file("bad-abi"),
        ],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("ABI version 9999"));
    // The JSON example filter.
    let out = ok(
        &b,
        &[
            "plugin",
            "load",
            "--name",
            "json",
            "--file",
            &plugin_file("json-filter"),
        ],
    );
    assert!(
        out.contains("loaded json version 1") && out.contains("JSON"),
        "{out}"
    );
    let bodies = [
        r#"{"amount": 150, "region": "eu"}"#,
        r#"{"amount": 50, "region": "eu"}"#,
        r#"{"amount": 500, "region": "us"}"#,
        r#"{"amount": "250", "region": "eu", "id": 4}"#,
        "not json",
        r#"{"region": "eu"}"#,
    ];
    for body in bodies {
        let out = ok(
            &b,
            &["send", "--topic", "Orders", "--queue", "0", "--body", body],
        );
        assert!(out.starts_with("SEND_OK"), "{out}");
    }
    // Dry run over the stored messages.
    let out = ok(
        &b,
        &[
            "plugin",
            "test",
            "--name",
            "json",
            "--expr",
            "amount > 100 AND region = 'eu'",
            "--topic",
            "Orders",
            "--count",
            "10",
        ],
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("MATCH")).count(),
        2,
        "{out}"
    );
    let o = wasmq(
        &b,
        &[
            "plugin", "test", "--name", "json", "--expr", "amount >", "--topic", "Orders",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stdout).contains("does not compile"));
    // Samples from a file.
    let samples = dir.path().join("samples.json");
    std::fs::write(
        &samples,
        r#"[{"topic": "T", "tags": "A", "properties": {"color": "red", "n": "7"}},
            {"topic": "T", "tags": "B", "properties": {"color": "blue", "n": "9"}}]"#,
    )
    .unwrap();
    let out = ok(
        &b,
        &[
            "plugin",
            "test",
            "--type",
            "SQL92",
            "--expr",
            "color = 'red' AND n > 5",
            "--samples",
            samples.to_str().unwrap(),
        ],
    );
    let marks: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("MATCH") || l.starts_with("no "))
        .map(|l| &l[..5])
        .collect();
    assert_eq!(marks, ["MATCH", "no   "], "{out}");
    // The dry run explains itself: sample indexes, the prefilter in words, a summary.
    assert!(out.contains("MATCH sample 0 tags A"), "{out}");
    assert!(
        out.contains("prefilter: none: the plugin evaluates"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("1 of 2 matched (samples in ")),
        "{out}"
    );
    let out = ok(
        &b,
        &[
            "plugin",
            "test",
            "--type",
            "sql92",
            "--expr",
            "color = 'red'",
            "--samples",
            samples.to_str().unwrap(),
            "--show-properties",
        ],
    );
    assert!(out.contains("properties={TAGS=A,color=red,n=7}"), "{out}");
    // A type nobody serves: the loaded types are listed.
    let o = wasmq(
        &b,
        &[
            "plugin",
            "test",
            "--type",
            "NOPE",
            "--expr",
            "x",
            "--samples",
            samples.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success());
    assert!(
        err.contains("no loaded plugin serves expression type \"NOPE\"")
            && err.contains("loaded types: ")
            && err.contains("SQL92"),
        "{err}"
    );
    // A consumer with a JSON expression gets exactly the matching bodies.
    let out = ok(
        &b,
        &[
            "consume",
            "--topic",
            "Orders",
            "--group",
            "GJ",
            "--type",
            "JSON",
            "--expr",
            "amount > 100 AND region = 'eu'",
            "--count",
            "2",
            "--timeout-ms",
            "10000",
        ],
    );
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), 2, "{out}");
    assert!(
        got[0].contains(bodies[0]) && got[1].contains(bodies[3]),
        "{out}"
    );
    // Upgrade keeps serving; list shows version 2 and the calls made.
    let out = ok(
        &b,
        &[
            "plugin",
            "upgrade",
            "--name",
            "json",
            "--file",
            &plugin_file("json-filter"),
        ],
    );
    assert!(out.contains("upgraded json version 2"), "{out}");
    let list = ok(&b, &["plugin", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(list.lines().next().unwrap()).unwrap();
    let json = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "json")
        .unwrap();
    assert_eq!(json["version"], 2);
    ok(&b, &["plugin", "unload", "--name", "json"]);
    assert!(!ok(&b, &["plugin", "list"]).contains("json "));
}

#[test]
fn plugin_new_writes_buildable_crates_of_each_kind_that_load_and_work() {
    let dir = tempfile::tempdir().unwrap();
    let new = |name: &str, kind: &str| {
        Command::new(env!("CARGO_BIN_EXE_wasmq"))
            .args(["plugin", "new", name, "--kind", kind, "--dir"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let kinds = [
        ("my-filter", "filter", "wasmq:plugin/filter"),
        ("my-router", "router", "wasmq:plugin/router"),
        ("my-checker", "txn-checker", "wasmq:plugin/txn-checker"),
    ];
    for (name, kind, interface) in kinds {
        let out = new(name, kind);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let root = dir.path().join(name);
        for f in ["Cargo.toml", "src/lib.rs", "README.md"] {
            assert!(root.join(f).exists(), "{f}");
        }
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        assert!(readme.contains(interface), "{readme}");
        assert!(!readme.contains("{{"), "unfilled placeholder: {readme}");
    }
    assert!(
        !new("my-filter", "filter").status.success(),
        "refuses to overwrite"
    );
    assert!(!new("other", "sorter").status.success(), "unknown kind");
    // They build for the plugin target (sharing the plugins' build cache).
    let target = PathBuf::from(wasmq::plugin::shipped::PLUGINS_DIR)
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let wasm = |name: &str| {
        let st = Command::new(&cargo)
            .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(dir.path().join(name))
            .status()
            .unwrap();
        assert!(st.success(), "{name} builds");
        let file = target.join(format!(
            "wasm32-wasip2/release/{}.wasm",
            name.replace('-', "_")
        ));
        assert!(file.exists(), "{}", file.display());
        file.display().to_string()
    };
    // A broker validates each against its world and lists it under its kind.
    let b = start(dir.path());
    for (name, kind, _) in kinds {
        ok(
            &b,
            &["plugin", "load", "--name", name, "--file", &wasm(name)],
        );
        let listed = ok(&b, &["plugin", "list"]);
        assert!(
            listed
                .lines()
                .any(|l| l.starts_with(&format!("{name} ")) && l.contains(kind)),
            "{listed}"
        );
    }
    // The filter's default type is its name upper-cased (my-filter -> MY_FILTER), and
    // subscriptions may name it in any case.
    let listed = ok(&b, &["plugin", "list"]);
    assert!(listed.contains("MY_FILTER"), "{listed}");
    let samples = dir.path().join("vip.json");
    std::fs::write(
        &samples,
        r#"[{"topic": "T", "properties": {"vip": "true"}}, {"topic": "T"}]"#,
    )
    .unwrap();
    let out = ok(
        &b,
        &[
            "plugin",
            "test",
            "--type",
            "my_filter",
            "--expr",
            "vip",
            "--samples",
            samples.to_str().unwrap(),
        ],
    );
    assert!(out.contains("1 of 2 matched"), "{out}");
    // The generated router works as its comment says: `queue` picks the queue (modulo the
    // write queues), a bad one is refused with the reason.
    ok(
        &b,
        &["topic", "create", "--topic", "Routed", "--queues", "4"],
    );
    ok(
        &b,
        &[
            "route",
            "bind",
            "--topic",
            "Routed",
            "--plugin",
            "my-router",
        ],
    );
    let out = ok(
        &b,
        &[
            "send",
            "--topic",
            "Routed",
            "--queue",
            "0",
            "--property",
            "queue=6",
            "--body",
            "x",
        ],
    );
    assert!(
        out.starts_with("SEND_OK") && out.contains(" queue=2 "),
        "{out}"
    );
    let bad = wasmq(
        &b,
        &[
            "send",
            "--topic",
            "Routed",
            "--property",
            "queue=x",
            "--body",
            "y",
        ],
    );
    assert!(!bad.status.success());
    let said = String::from_utf8_lossy(&bad.stdout);
    assert!(
        said.contains("FAILED code=") && said.contains("is not a queue number"),
        "{said}"
    );
    // The generated checker binds like the shipped one.
    ok(
        &b,
        &["txn", "bind", "--topic", "Routed", "--plugin", "my-checker"],
    );
}

const TXN_GROUP: &str = "PG_CLI_TXN";

/// A `--config` file holding `body` as its `[broker]` table (other keys keep their defaults).
fn broker_config(dir: &std::path::Path, body: &str) -> String {
    let cfg = dir.join("broker.toml");
    std::fs::write(&cfg, format!("[broker]\n{body}\n")).unwrap();
    cfg.display().to_string()
}

/// Sends a half message as Java/C++ producers do (sysflag PREPARED, TRAN_MSG, PGROUP) on a
/// connection closed right after, so no producer is left to answer check-backs. Returns its
/// commit log offset (from the reply's message id).
fn send_half(b: &Broker, topic: &str, uniq: &str, extra_props: &str, body: &str) -> i64 {
    use wasmq::net::RemotingClient;
    use wasmq::protocol::{message_id, request, response, ExtFields, RemotingCommand};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = RemotingClient::connect(b.broker).await.unwrap();
        let props = format!(
            "TRAN_MSG\u{1}true\u{2}PGROUP\u{1}{TXN_GROUP}\u{2}UNIQ_KEY\u{1}{uniq}\u{2}KEYS\u{1}{uniq}\u{2}{extra_props}"
        );
        let mut e = ExtFields::new();
        for (k, v) in [
            ("a", TXN_GROUP),
            ("b", topic),
            ("e", "0"),
            ("f", "4"),
            ("g", "1"),
            ("i", &props),
        ] {
            e.insert(k, v);
        }
        let req = RemotingCommand::new_request(request::SEND_MESSAGE_V2, e)
            .with_body(body.as_bytes().to_vec());
        let r = c.invoke(req, Duration::from_secs(10)).await.unwrap();
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
        message_id::decode(r.ext_fields.get("msgId").unwrap())
            .unwrap()
            .1
    })
}

/// The rows of `wasmq txn list` (OFFSET TOPIC QUEUE GROUP AGE_MS CHECKS STATE CHECKER
/// UNIQ_KEY), after checking its `broker <addr>: N pending` header.
fn txn_rows(b: &Broker, out: &str) -> Vec<Vec<String>> {
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    let prefix = format!("broker {}: ", b.broker);
    let n: usize = header
        .strip_prefix(&prefix)
        .and_then(|r| r.strip_suffix(" pending"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected header {header:?} in {out}"));
    let mut rows = Vec::new();
    let mut columns = None;
    for l in lines {
        if l.trim_start().starts_with("OFFSET") {
            // Where OFFSET ends (right-aligned numbers) and UNIQ_KEY starts.
            columns = Some((l.find("OFFSET").unwrap() + 6, l.find("UNIQ_KEY").unwrap()));
            continue;
        }
        let (offset_end, uniq_start) = columns.unwrap_or_else(|| panic!("no column header: {out}"));
        let row: Vec<String> = l.split_whitespace().map(String::from).collect();
        // The table lines up: every column under its header.
        assert_eq!(
            l.get(..offset_end).map(str::trim_start),
            Some(row[0].as_str()),
            "{out}"
        );
        assert_eq!(l.get(uniq_start..), row.last().map(String::as_str), "{out}");
        rows.push(row);
    }
    assert_eq!(rows.len(), n, "{out}");
    rows
}

/// Polls `wasmq txn list` (bounded) until it reports `n` pending; returns its last output.
fn wait_txn_pending(b: &Broker, n: usize, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let out = ok(b, &["txn", "list"]);
        if txn_rows(b, &out).len() == n || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `wasmq consume` of one topic: the stdout lines, and whether it got `count` in time.
fn consume(b: &Broker, topic: &str, group: &str, count: usize, timeout_ms: u64) -> (bool, String) {
    let o = wasmq(
        b,
        &[
            "consume",
            "--topic",
            topic,
            "--group",
            group,
            "--count",
            &count.to_string(),
            "--timeout-ms",
            &timeout_ms.to_string(),
        ],
    );
    (o.status.success(), String::from_utf8(o.stdout).unwrap())
}

#[test]
fn txn_list_then_operator_commit_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing checks the half messages during this test: only the operator resolves them.
    let cfg = broker_config(dir.path(), "transaction_timeout_ms = 600000");
    let b = start_with(&dir.path().join("store"), &["--config", &cfg]);
    assert!(ok(
        &b,
        &["topic", "create", "--topic", "TxCli", "--queues", "1"]
    )
    .contains("created"));
    assert!(txn_rows(&b, &ok(&b, &["txn", "list"])).is_empty());

    let keep = send_half(&b, "TxCli", "cli-commit", "", "commit-by-hand");
    let drop = send_half(&b, "TxCli", "cli-rollback", "", "rollback-by-hand");
    let out = ok(&b, &["txn", "list"]);
    let rows = txn_rows(&b, &out);
    assert_eq!(rows.len(), 2, "{out}");
    let row = rows
        .iter()
        .find(|r| r.last().map(String::as_str) == Some("cli-commit"))
        .unwrap_or_else(|| panic!("{out}"));
    // OFFSET TOPIC QUEUE GROUP AGE_MS CHECKS STATE CHECKER UNIQ_KEY; no checker bound.
    assert_eq!(row[0], keep.to_string(), "{out}");
    assert_eq!(&row[1..4], ["TxCli", "0", TXN_GROUP], "{out}");
    assert_eq!(&row[5..8], ["0", "pending", "-"], "{out}");
    assert!(rows.iter().any(|r| r[0] == drop.to_string()), "{out}");
    // Filtered by topic; as JSON.
    assert!(txn_rows(&b, &ok(&b, &["txn", "list", "--topic", "Other"])).is_empty());
    let json = ok(&b, &["txn", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(v["broker"], b.broker.to_string());
    assert_eq!(v["pending"].as_array().unwrap().len(), 2, "{json}");
    // Half messages are invisible to consumers.
    let (got_all, out) = consume(&b, "TxCli", "G", 1, 500);
    assert!(!got_all && out.is_empty(), "{out}");

    // The operator commits one and rolls back the other.
    let out = ok(&b, &["txn", "commit", "--offset", &keep.to_string()]);
    assert!(
        out.starts_with(&format!("commit of offset {keep} on {}", b.broker)),
        "{out}"
    );
    let out = ok(&b, &["txn", "rollback", "--offset", &drop.to_string()]);
    assert!(
        out.starts_with(&format!("rollback of offset {drop}")),
        "{out}"
    );
    assert!(txn_rows(&b, &ok(&b, &["txn", "list"])).is_empty());
    // Exactly the committed one is delivered.
    let (got_all, out) = consume(&b, "TxCli", "G", 1, 10_000);
    assert!(got_all, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("keys=cli-commit ") && out.ends_with("body=commit-by-hand\n"),
        "{out}"
    );
    let (got_all, out) = consume(&b, "TxCli", "G", 1, 500);
    assert!(!got_all && out.is_empty(), "nothing else: {out}");

    // Resolving what is no longer (or never was) pending fails with the broker's reason.
    for offset in [keep, 12345] {
        let o = wasmq(&b, &["txn", "commit", "--offset", &offset.to_string()]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!(
                "no pending half message at commit log offset {offset}"
            )),
            "{err}"
        );
    }
}

#[test]
fn txn_checker_plugin_resolves_without_a_producer() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = broker_config(
        dir.path(),
        "transaction_timeout_ms = 200\ntransaction_check_interval_ms = 200\ntransaction_check_max = 1000",
    );
    let b = start_with(&dir.path().join("store"), &["--config", &cfg]);
    assert!(ok(
        &b,
        &["topic", "create", "--topic", "TxPlug", "--queues", "1"]
    )
    .contains("created"));
    let out = ok(
        &b,
        &[
            "plugin",
            "load",
            "--name",
            "dl",
            "--file",
            &plugin_file("txn-deadline-checker"),
            "--config",
            "deadline_ms=1000",
            "--config",
            "commit_property=PAID",
        ],
    );
    assert!(out.starts_with("loaded dl version 1"), "{out}");
    let out = ok(&b, &["txn", "bind", "--topic", "TxPlug", "--plugin", "dl"]);
    assert!(
        out.contains("bound txn-checker dl to topic TxPlug"),
        "{out}"
    );
    let out = ok(&b, &["txn", "bindings"]);
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().eq(["TxPlug", "dl"])),
        "{out}"
    );
    // Only txn-checker plugins bind.
    let o = wasmq(
        &b,
        &["txn", "bind", "--topic", "TxPlug", "--plugin", "nope"],
    );
    assert!(!o.status.success());

    // No producer is connected: the plugin alone decides.
    let started = Instant::now();
    send_half(&b, "TxPlug", "paid", "PAID\u{1}true\u{2}", "paid-order");
    send_half(&b, "TxPlug", "stale", "", "stale-order");
    let out = ok(&b, &["txn", "list"]);
    if started.elapsed() < Duration::from_millis(800) {
        // Younger than its deadline: the unpaid one is still pending, checked by dl.
        let rows = txn_rows(&b, &out);
        assert!(
            rows.iter()
                .any(|r| r[7] == "dl" && r.last().map(String::as_str) == Some("stale")),
            "{out}"
        );
    }
    let out = wait_txn_pending(&b, 0, Duration::from_secs(20));
    assert!(txn_rows(&b, &out).is_empty(), "still pending: {out}");
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "the unpaid one was rolled back at its deadline, not before"
    );
    // The paid one was committed, the other rolled back.
    let (got_all, out) = consume(&b, "TxPlug", "G", 1, 10_000);
    assert!(got_all, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.ends_with("body=paid-order\n"), "{out}");
    let (got_all, out) = consume(&b, "TxPlug", "G", 1, 500);
    assert!(!got_all && out.is_empty(), "nothing else: {out}");

    let out = ok(&b, &["txn", "unbind", "--topic", "TxPlug"]);
    assert!(
        out.contains("unbound the txn-checker of topic TxPlug"),
        "{out}"
    );
    assert!(!ok(&b, &["txn", "bindings"]).contains("TxPlug"));
}

#[test]
fn route_bind_list_unbind_with_hash_router() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path());
    ok(
        &b,
        &["topic", "create", "--topic", "Keyed", "--queues", "4"],
    );
    let out = ok(
        &b,
        &[
            "plugin",
            "load",
            "--name",
            "hr",
            "--file",
            &plugin_file("hash-router"),
        ],
    );
    assert!(out.contains("hr"), "{out}");
    assert!(ok(&b, &["plugin", "list"])
        .lines()
        .any(|l| l.starts_with("hr ") && l.contains("router")));
    // Bad bindings fail with a clear message.
    let bad = wasmq(
        &b,
        &["route", "bind", "--topic", "Keyed", "--plugin", "nope"],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not loaded"));
    let bad = wasmq(
        &b,
        &[
            "route",
            "bind",
            "--topic",
            "Keyed",
            "--plugin",
            "tag-filter",
        ],
    );
    assert!(!bad.status.success());
    ok(&b, &["route", "bind", "--topic", "Keyed", "--plugin", "hr"]);
    assert!(ok(&b, &["route", "list"])
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Keyed", "hr"]));
    // Whatever queue the tool picks, the router puts one key on one queue.
    for i in 0..12 {
        let q = (i % 4).to_string();
        let out = ok(
            &b,
            &[
                "send",
                "--topic",
                "Keyed",
                "--queue",
                &q,
                "--keys",
                &format!("k{}", i % 3),
                "--body",
                &format!("{i}"),
            ],
        );
        assert!(out.starts_with("SEND_OK"), "{out}");
    }
    let (_, out) = consume(&b, "Keyed", "G", 12, 20_000);
    let mut queue_of: std::collections::HashMap<String, String> = Default::default();
    let mut n = 0;
    for l in out.lines().filter(|l| l.starts_with("topic=Keyed")) {
        let field = |k: &str| {
            l.split(' ')
                .find_map(|f| f.strip_prefix(&format!("{k}=")))
                .unwrap_or("")
                .to_string()
        };
        let prev = queue_of.insert(field("keys"), field("queue"));
        assert!(prev.is_none_or(|p| p == field("queue")), "{out}");
        n += 1;
    }
    assert_eq!(n, 12, "{out}");
    assert_eq!(queue_of.len(), 3);
    ok(&b, &["route", "unbind", "--topic", "Keyed"]);
    assert!(!ok(&b, &["route", "list"]).contains("Keyed"));
    let bad = wasmq(&b, &["route", "unbind", "--topic", "Keyed"]);
    assert!(!bad.status.success());
}

/// The committed offset `wasmq offsets` shows for queue 0 of a one-queue topic ("-": none).
fn committed_q0(b: &Broker, group: &str, topic: &str) -> String {
    let out = ok(b, &["offsets", "--group", group, "--topic", topic]);
    // Header, one row per queue, total.
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[1], "0", "{out}");
    row[2].to_string()
}

/// The value of `key=` in a `consume` line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(' ')
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

/// `wasmq consume --group G --topic T` with `extra` flags: (stdout, stderr), asserting success.
fn consume_run(b: &Broker, topic: &str, group: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["consume", "--topic", topic, "--group", group];
    args.extend_from_slice(extra);
    let o = wasmq(b, &args);
    let (out, err) = (
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8(o.stderr).unwrap(),
    );
    assert!(o.status.success(), "wasmq {args:?} failed: {err}\n{out}");
    (out, err)
}

#[test]
fn consume_commits_exactly_what_it_printed() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path());
    ok(
        &b,
        &["topic", "create", "--topic", "Drain", "--queues", "1"],
    );
    let sent = ok(
        &b,
        &["send", "--topic", "Drain", "--count", "10", "--size", "16"],
    );
    assert_eq!(
        sent.lines().filter(|l| l.starts_with("SEND_OK")).count(),
        10,
        "{sent}"
    );
    // A group that never consumed: `offsets` says so instead of showing zeros.
    let o = wasmq(&b, &["offsets", "--group", "gc", "--topic", "Drain"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("group gc has no committed offset"), "{err}");

    // --count 3, --count 3, then no count: 0-2, 3-5, 6-9, each exactly once; the committed
    // offset follows what was printed, and reaches 10 only with the last run.
    let runs: [(&[&str], std::ops::Range<i64>); 3] = [
        (&["--count", "3"], 0..3),
        (&["--count", "3"], 3..6),
        (&[], 6..10),
    ];
    for (i, (flags, want)) in runs.into_iter().enumerate() {
        let mut extra = flags.to_vec();
        extra.extend(["--timeout-ms", "30000"]);
        let started = Instant::now();
        let (out, err) = consume_run(&b, "Drain", "gc", &extra);
        let offsets: Vec<i64> = out
            .lines()
            .map(|l| {
                let off = field(l, "offset");
                assert!(
                    field(l, "body").starts_with(&format!("message-{off}-")),
                    "{l}"
                );
                assert!(!l.contains("properties="), "{l}");
                off.parse().unwrap()
            })
            .collect();
        assert_eq!(offsets, want.clone().collect::<Vec<_>>(), "run {i}: {out}");
        assert_eq!(committed_q0(&b, "gc", "Drain"), want.end.to_string());
        // The last line says what was committed and why the run ended.
        let last = err.lines().last().unwrap_or_default();
        assert!(last.contains(&format!("queue 0={}", want.end)), "{err}");
        if flags.is_empty() {
            assert!(last.contains("queues drained"), "{err}");
            // A drained run ends by itself, long before its timeout.
            assert!(started.elapsed() < Duration::from_secs(15), "{err}");
        } else {
            assert!(last.contains("stopped at --count"), "{err}");
        }
    }
    // Nothing left: a run without a count prints nothing, succeeds and changes nothing.
    let (out, err) = consume_run(&b, "Drain", "gc", &[]);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("consumed 0 messages") && err.contains("(unchanged)"),
        "{err}"
    );
    assert!(ok(&b, &["offsets", "--group", "gc", "--topic", "Drain"]).contains("lag=0"));

    // Bad counts are refused before anything is pulled or committed.
    ok(
        &b,
        &[
            "offsets",
            "reset",
            "--group",
            "gc",
            "--topic",
            "Drain",
            "--to-offset",
            "4",
        ],
    );
    for bad in ["0", "-3", "x"] {
        let o = wasmq(
            &b,
            &[
                "consume", "--topic", "Drain", "--group", "gc", "--count", bad,
            ],
        );
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("--count"), "{err}");
        assert!(o.stdout.is_empty());
        assert_eq!(committed_q0(&b, "gc", "Drain"), "4", "{bad}: {err}");
    }
    let o = wasmq(
        &b,
        &["send", "--topic", "Drain", "--body", "b", "--count", "0"],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to do"));
    assert!(o.stdout.is_empty());
}

#[test]
fn consume_with_sql92_skips_no_matching_message_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path());
    ok(&b, &["topic", "create", "--topic", "Sql", "--queues", "1"]);
    for i in 0..10 {
        let parity = format!("parity={}", if i % 2 == 0 { "even" } else { "odd" });
        let n = format!("n={i}");
        let body = format!("m{i}");
        let out = ok(
            &b,
            &[
                "send",
                "--topic",
                "Sql",
                "--property",
                &n,
                "--property",
                &parity,
                "--body",
                &body,
            ],
        );
        assert!(out.starts_with("SEND_OK"), "{out}");
    }
    let sql = ["--type", "SQL92", "--expr", "parity = 'even'"];
    // (flags, bodies printed, committed afterwards: at least past the last printed, at most up
    // to the next matching message).
    let runs: [(&[&str], &[&str], std::ops::RangeInclusive<i64>); 3] = [
        (&["--count", "2"], &["m0", "m2"], 3..=4),
        (&["--count", "2"], &["m4", "m6"], 7..=8),
        (&[], &["m8"], 10..=10),
    ];
    for (flags, want, committed) in runs {
        let mut extra = sql.to_vec();
        extra.extend_from_slice(flags);
        extra.extend(["--timeout-ms", "30000"]);
        let (out, err) = consume_run(&b, "Sql", "gs", &extra);
        let bodies: Vec<&str> = out.lines().map(|l| field(l, "body")).collect();
        assert_eq!(bodies, want, "{out}\n{err}");
        let c: i64 = committed_q0(&b, "gs", "Sql").parse().unwrap();
        assert!(
            committed.contains(&c),
            "committed {c}, want {committed:?}: {err}"
        );
    }
    let (out, _) = consume_run(&b, "Sql", "gs", &sql);
    assert!(out.is_empty(), "{out}");
    assert!(ok(&b, &["offsets", "--group", "gs", "--topic", "Sql"]).contains("lag=0"));
}

#[test]
fn send_body_count_copies_and_consume_shows_properties() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path());
    ok(
        &b,
        &["topic", "create", "--topic", "Props", "--queues", "4"],
    );
    let out = ok(
        &b,
        &[
            "send",
            "--topic",
            "Props",
            "--tag",
            "T",
            "--property",
            "color=red",
            "--body",
            "hello",
            "--count",
            "8",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 8, "{out}");
    assert!(lines.iter().all(|l| l.starts_with("SEND_OK")), "{out}");
    // Round robin: two on each of the four queues; eight distinct messages.
    let mut per_queue = std::collections::HashMap::<&str, usize>::new();
    for l in &lines {
        *per_queue.entry(field(l, "queue")).or_default() += 1;
    }
    assert!(
        per_queue.len() == 4 && per_queue.values().all(|&n| n == 2),
        "{out}"
    );
    let uniq: std::collections::HashSet<&str> = lines.iter().map(|l| field(l, "uniqKey")).collect();
    assert_eq!(uniq.len(), 8, "{out}");

    let (out, _) = consume_run(
        &b,
        "Props",
        "gp",
        &["--count", "8", "--timeout-ms", "30000", "--show-properties"],
    );
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), 8, "{out}");
    for l in &got {
        let props = field(l, "properties");
        assert!(
            props.starts_with('{')
                && props.ends_with('}')
                && props.contains("TAGS=T")
                && props.contains("color=red")
                && props.contains("UNIQ_KEY="),
            "{l}"
        );
        assert!(l.ends_with(" body=hello"), "{l}");
        assert!(
            uniq.contains(
                field(l, "properties")
                    .split("UNIQ_KEY=")
                    .nth(1)
                    .unwrap()
                    .split([',', '}'])
                    .next()
                    .unwrap()
            ),
            "{l}"
        );
    }

    // One-message runs start at a random queue, so they do not all land on the same one
    // (all twelve on one queue: probability 4^-11).
    let mut queues = std::collections::HashSet::new();
    for i in 0..12 {
        let out = ok(
            &b,
            &["send", "--topic", "Props", "--body", &format!("one-{i}")],
        );
        queues.insert(field(out.lines().next().unwrap(), "queue").to_string());
    }
    assert!(queues.len() > 1, "{queues:?}");
}

/// Plugin admin errors read as the broker's reason (no internal request or response codes),
/// and a module too large for one request is refused before it is sent, naming the limit.
#[test]
fn plugin_admin_errors_say_why_without_internal_codes() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path());
    let o = wasmq(&b, &["plugin", "unload", "--name", "nosuch"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success());
    assert!(err.contains("plugin \"nosuch\" is not loaded"), "{err}");
    assert!(
        !err.contains("request ") && !err.contains("answered code"),
        "internal codes in: {err}"
    );
    // 20 MiB: over the frame limit.
    let big = dir.path().join("big.wasm");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(20 << 20).unwrap();
    let o = wasmq(
        &b,
        &[
            "plugin",
            "load",
            "--name",
            "big",
            "--file",
            big.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success());
    assert!(
        err.contains("20971520 bytes") && err.contains("at most") && err.contains("16777216"),
        "{err}"
    );
    // Nothing was loaded, and the broker still answers.
    let list = ok(&b, &["plugin", "list"]);
    assert!(!list.contains("big"), "{list}");
}

/// `wasmq cluster` against one broker: its group, a row with id 0, role async_master, its
/// address and HA address, no slave; `--json` carries the same status.
#[test]
fn cluster_shows_a_lone_master() {
    let dir = tempfile::tempdir().unwrap();
    let ha = free();
    let b = start_with(dir.path(), &["--ha-listen", &ha.to_string()]);
    let out = ok(&b, &["send", "--topic", "ClusterTopic", "--body", "x"]);
    assert!(out.starts_with("SEND_OK"), "{out}");
    let out = ok(&b, &["cluster"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("cluster DefaultCluster  broker broker-a"),
        "{out}"
    );
    let row = lines
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&"0"))
        .unwrap_or_else(|| panic!("no row of broker id 0 in:\n{out}"));
    assert_eq!(
        row[..4],
        [
            "0",
            "async_master",
            b.broker.to_string().as_str(),
            ha.to_string().as_str()
        ],
        "{out}"
    );
    assert!(row[4].parse::<u64>().unwrap() > 0, "{out}");
    assert!(out.contains("no slave connected"), "{out}");
    assert!(!out.contains("unreachable"), "{out}");

    let out = ok(&b, &["cluster", "--json"]);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{out}");
    let r = &rows[0];
    assert_eq!(r["brokerName"], "broker-a");
    assert_eq!(r["brokerId"], 0);
    assert_eq!(r["addr"], b.broker.to_string());
    assert_eq!(r["reachable"], true);
    let s = &r["status"];
    assert_eq!(s["role"], "async_master", "{out}");
    assert_eq!(s["brokerId"], 0);
    assert_eq!(s["haAddr"], ha.to_string());
    assert!(s["maxOffset"].as_u64().unwrap() > 0, "{out}");
    assert_eq!(s["slaves"], serde_json::json!([]));
    assert!(s["master"].is_null(), "{out}");
}

/// `(kind, name, msgs/s, bytes/s, source)` of every quota `quota list --json` shows.
fn quota_rows(b: &Broker) -> Vec<(String, String, String, String, String)> {
    let out = ok(b, &["quota", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["broker"], b.broker.to_string(), "{out}");
    v["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            let s = |k: &str| q[k].to_string();
            (
                s("kind"),
                s("name"),
                s("msgsPerSec"),
                s("bytesPerSec"),
                s("source"),
            )
        })
        .collect()
}

/// `wasmq quota set|list|remove`: quotas on a topic and a group, a configured one that a
/// runtime one overrides and that `remove` brings back, and bad input (negative, zero, absurd
/// or non-numeric rates, no rate, both or neither of topic and group, unknown topic or group,
/// removing what is not set or only configured): each a clear error that changes nothing.
#[test]
fn quota_set_list_remove_and_bad_input_changing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("quota.toml");
    std::fs::write(
        &cfg,
        "[broker]\n\n[[quota]]\ntopic = \"CfgTopic\"\nmsgs_per_sec = 50\n",
    )
    .unwrap();
    let b = start_with(dir.path(), &["--config", cfg.to_str().unwrap()]);
    for t in ["QTopic", "CfgTopic"] {
        ok(&b, &["topic", "create", "--topic", t, "--queues", "2"]);
    }
    // QGroup becomes known by the offsets its consumer commits.
    assert!(ok(&b, &["send", "--topic", "QTopic", "--body", "x"]).starts_with("SEND_OK"));
    let (done, out) = consume(&b, "QTopic", "QGroup", 1, 10_000);
    assert!(done, "{out}");

    let out = ok(
        &b,
        &["quota", "set", "--topic", "QTopic", "--msgs-per-sec", "100"],
    );
    assert_eq!(
        out.trim(),
        format!("{}: quota on topic QTopic: 100 msgs/s", b.broker)
    );
    let out = ok(
        &b,
        &[
            "quota",
            "set",
            "--group",
            "QGroup",
            "--msgs-per-sec",
            "20",
            "--bytes-per-sec",
            "1048576",
        ],
    );
    assert!(
        out.contains("quota on group QGroup: 20 msgs/s, 1048576 bytes/s"),
        "{out}"
    );
    let before = quota_rows(&b);
    let q = |s: &str| format!("\"{s}\"");
    assert_eq!(
        before,
        [
            (
                q("topic"),
                q("CfgTopic"),
                "50".into(),
                "null".into(),
                q("config")
            ),
            (
                q("topic"),
                q("QTopic"),
                "100".into(),
                "null".into(),
                q("runtime")
            ),
            (
                q("group"),
                q("QGroup"),
                "20".into(),
                "1048576".into(),
                q("runtime")
            ),
        ]
    );

    let addr = b.broker.to_string();
    let bad: &[(&[&str], &str)] = &[
        (
            &["--topic", "QTopic", "--msgs-per-sec", "-5"],
            "must be more than 0, got -5",
        ),
        (
            &["--topic", "QTopic", "--msgs-per-sec", "0"],
            "must be more than 0, got 0",
        ),
        (
            &["--topic", "QTopic", "--bytes-per-sec", "-1"],
            "must be more than 0",
        ),
        (
            &["--topic", "QTopic", "--msgs-per-sec", "5000000000"],
            "at most 1000000000",
        ),
        (
            &["--group", "QGroup", "--bytes-per-sec", "99999999999999"],
            "at most 1000000000000",
        ),
        (
            &["--topic", "QTopic", "--msgs-per-sec", "fast"],
            "whole number",
        ),
        (
            &["--topic", "QTopic"],
            "give --msgs-per-sec, --bytes-per-sec or both",
        ),
        (
            &[
                "--topic",
                "QTopic",
                "--group",
                "QGroup",
                "--msgs-per-sec",
                "5",
            ],
            "cannot be used with",
        ),
        (&["--msgs-per-sec", "5"], "required"),
        (
            &["--topic", "NoSuchTopic", "--msgs-per-sec", "5"],
            "NoSuchTopic",
        ),
        (
            &[
                "--topic",
                "NoSuchTopic",
                "--msgs-per-sec",
                "5",
                "--broker",
                &addr,
            ],
            "topic NoSuchTopic does not exist on this broker",
        ),
        (
            &["--group", "NoSuchGroup", "--msgs-per-sec", "5"],
            "consumer group NoSuchGroup is unknown on this broker",
        ),
    ];
    for (args, says) in bad {
        let o = wasmq(&b, &[&["quota", "set"], *args].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    for (args, says) in [
        (
            &["--topic", "CfgTopic"][..],
            "set by [[quota]] in the broker's config file",
        ),
        (
            &["--topic", "NoQuota"][..],
            "no quota is set on topic NoQuota",
        ),
        (&[][..], "required"),
    ] {
        let o = wasmq(&b, &[&["quota", "remove"], args].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(quota_rows(&b), before, "bad input changed the quotas");

    // The table: one row per quota with its rates, source, current rates and rejections.
    let out = ok(&b, &["quota", "list"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("broker {}: 3 quotas", b.broker), "{out}");
    let row = |name: &str| {
        lines
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.get(1) == Some(&name))
            .unwrap_or_else(|| panic!("no row of {name} in:\n{out}"))
    };
    assert_eq!(
        row("QTopic"),
        ["topic", "QTopic", "100", "-", "runtime", "0", "0", "0"]
    );
    assert_eq!(row("CfgTopic")[4], "config", "{out}");
    assert_eq!(
        row("QGroup")[..4],
        ["group", "QGroup", "20", "1048576"],
        "{out}"
    );
    assert!(out.contains("no rejections"), "{out}");

    // A runtime quota overrides the configured one; removing it brings the configured one
    // back.
    ok(
        &b,
        &["quota", "set", "--topic", "CfgTopic", "--msgs-per-sec", "7"],
    );
    let out = ok(&b, &["quota", "list"]);
    assert!(out.contains("runtime*"), "{out}");
    let out = ok(&b, &["quota", "remove", "--topic", "CfgTopic"]);
    assert!(
        out.contains("the configured one applies again: 50 msgs/s"),
        "{out}"
    );
    let out = ok(&b, &["quota", "remove", "--topic", "QTopic"]);
    assert!(out.contains("removed the quota on topic QTopic"), "{out}");
    ok(&b, &["quota", "remove", "--group", "QGroup"]);
    assert_eq!(quota_rows(&b), before[..1]);
}
