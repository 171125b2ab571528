//! The real `wasmq-broker` binary driven by clients nobody here wrote: npm `ali-ons@3.12.0` and
//! PyPI `rocketmq-client-python==0.5.0rc2` (installed by `tests/clients/install.sh` into the
//! test tree). Each scenario uses its own topic and group names.

mod broker_support;
mod clients_support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use broker_support::BrokerProc;
use clients_support::{events, run, ClientProc, Lang};
use serde_json::{json, Value};
use wasmq::net::RemotingClient;
use wasmq::protocol::{request, ExtFields, RemotingCommand};

/// The scenarios start several client processes each; run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn msgs(n: usize, f: impl Fn(usize) -> Value) -> Value {
    Value::Array((0..n).map(f).collect())
}

fn sent_ok(lines: &[Value]) -> usize {
    events(lines, "sent")
        .iter()
        .filter(|l| l["status"] == "SEND_OK" || l["status"] == "0" || l["status"] == "ONEWAY")
        .count()
}

fn bodies(lines: &[Value]) -> Vec<String> {
    events(lines, "msg")
        .iter()
        .map(|l| l["body"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Waits (bounded) until the broker lists `n` members in a consumer group: the signal that
/// client processes have joined.
fn wait_members(broker: &BrokerProc, group: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut e = ExtFields::new();
            e.insert("consumerGroup", group);
            let r = c
                .invoke(
                    RemotingCommand::new_request(request::GET_CONSUMER_LIST_BY_GROUP, e),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            let ids: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            let members = ids["consumerIdList"]
                .as_array()
                .map(|a| a.len())
                .unwrap_or(0);
            if members == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "group {group} never had {n} members"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

#[test]
fn sends_tags_and_big_bodies() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(&dir.path().join("store"), &["--flush", "sync"]);
    let ns = broker.namesrv.to_string();
    // ali-ons sync sends with tags A/B/C, keys and a user property.
    let out = run(
        Lang::Node,
        json!({"role": "produce", "namesrv": ns, "topic": "TagTopic", "group": "PG_N",
        "messages": msgs(30, |i| json!({"tags": (["A", "B", "C"][i % 3]), "keys": format!("key-{i}"), "body": format!("n-{i}"), "props": {"n": i}}))}),
    );
    assert_eq!(sent_ok(&out), 30, "{out:?}");
    // rocketmq-client-python sync and oneway sends to the same topic.
    let out = run(
        Lang::Python,
        json!({"role": "produce", "namesrv": ns, "topic": "TagTopic", "mode": "sync",
        "messages": msgs(10, |i| json!({"tags": "A", "body": format!("py-sync-{i}")}))}),
    );
    assert_eq!(sent_ok(&out), 10, "{out:?}");
    let out = run(
        Lang::Python,
        json!({"role": "produce", "namesrv": ns, "topic": "TagTopic", "mode": "oneway",
        "messages": msgs(10, |i| json!({"tags": "C", "body": format!("py-oneway-{i}")}))}),
    );
    assert_eq!(sent_ok(&out), 10, "{out:?}");
    // A TAG consumer (ali-ons, "A || C") gets exactly the A and C messages, once each.
    let out = run(
        Lang::Node,
        json!({"role": "consume", "namesrv": ns, "topic": "TagTopic", "group": "CG_TAG_N",
        "expr": "A || C", "expect": 40, "lingerMs": 1500, "timeoutMs": 60000}),
    );
    let mut got = bodies(&out);
    got.sort();
    let mut want: Vec<String> = (0..30)
        .filter(|i| i % 3 != 1)
        .map(|i| format!("n-{i}"))
        .collect();
    want.extend((0..10).map(|i| format!("py-sync-{i}")));
    want.extend((0..10).map(|i| format!("py-oneway-{i}")));
    want.sort();
    assert_eq!(got, want, "exactly the A and C messages, each once");
    // A TAG consumer in Python ("B") gets exactly the B messages.
    let out = run(
        Lang::Python,
        json!({"role": "consume", "namesrv": ns, "topic": "TagTopic", "group": "CG_TAG_PY",
        "expr": "B", "expect": 10, "lingerMs": 1500, "timeoutMs": 60000}),
    );
    let mut got = bodies(&out);
    got.sort();
    let mut want: Vec<String> = (0..30)
        .filter(|i| i % 3 == 1)
        .map(|i| format!("n-{i}"))
        .collect();
    want.sort();
    assert_eq!(got, want);
    // A 64 KiB body, compressed by ali-ons, comes back unchanged.
    let out = run(
        Lang::Node,
        json!({"role": "produce", "namesrv": ns, "topic": "BigTopic",
        "messages": [{"tags": "big", "bodySize": 65536}]}),
    );
    assert_eq!(sent_ok(&out), 1);
    let out = run(
        Lang::Node,
        json!({"role": "consume", "namesrv": ns, "topic": "BigTopic", "group": "CG_BIG",
        "expect": 1, "timeoutMs": 30000}),
    );
    let m = events(&out, "msg");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["bodyLen"], 65536);
    let body: Vec<u8> = (0..65536usize).map(|k| ((k * 31) & 0xff) as u8).collect();
    let sha = sha256_hex(&body);
    assert_eq!(m[0]["bodySha256"], sha.as_str());
}

fn sha256_hex(data: &[u8]) -> String {
    // Small and dependency-free: shell out to coreutils, present on every machine of our kind.
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn groups_split_take_over_broadcast_and_resume() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(&dir.path().join("store"), &[]);
    let ns = broker.namesrv.to_string();

    // Two clustering consumers of one group split the queues; every message is consumed once.
    // The C++ client (Python) rebalances at once on NOTIFY_CONSUMER_IDS_CHANGED.
    let c1 = ClientProc::spawn(
        Lang::Python,
        &json!({"role": "consume", "namesrv": ns, "topic": "SplitTopic",
        "group": "CG_SPLIT", "expect": 1000, "timeoutMs": 40000}),
    );
    let c2 = ClientProc::spawn(
        Lang::Python,
        &json!({"role": "consume", "namesrv": ns, "topic": "SplitTopic",
        "group": "CG_SPLIT", "expect": 1000, "timeoutMs": 14000}),
    );
    wait_members(&broker, "CG_SPLIT", 2);
    // Rebalancing is client-side; give both a moment to take their share after the notify.
    std::thread::sleep(Duration::from_secs(3));
    let out = run(
        Lang::Node,
        json!({"role": "produce", "namesrv": ns, "topic": "SplitTopic",
        "messages": msgs(40, |i| json!({"body": format!("first-{i}")}))}),
    );
    assert_eq!(sent_ok(&out), 40);
    // c2 leaves (its timeout ends it cleanly: offsets committed, client unregistered) ...
    let out2 = c2.finish(Duration::from_secs(60));
    wait_members(&broker, "CG_SPLIT", 1);
    // ... and c1 takes over its queues.
    let out = run(
        Lang::Node,
        json!({"role": "produce", "namesrv": ns, "topic": "SplitTopic",
        "messages": msgs(40, |i| json!({"body": format!("second-{i}")}))}),
    );
    assert_eq!(sent_ok(&out), 40);
    let out1 = c1.finish(Duration::from_secs(60));
    let b1 = bodies(&out1);
    let b2 = bodies(&out2);
    let first1: HashSet<&String> = b1.iter().filter(|b| b.starts_with("first")).collect();
    let first2: HashSet<&String> = b2.iter().filter(|b| b.starts_with("first")).collect();
    assert!(
        !first1.is_empty() && !first2.is_empty(),
        "both consumers got a share: {} / {}",
        first1.len(),
        first2.len()
    );
    assert!(first1.is_disjoint(&first2), "no message consumed by both");
    assert_eq!(
        first1.len() + first2.len(),
        40,
        "every first-phase message consumed"
    );
    let second: Vec<&String> = b1.iter().filter(|b| b.starts_with("second")).collect();
    assert_eq!(
        second.len(),
        40,
        "the remaining consumer took over every queue"
    );
    let mut all: Vec<&String> = b1.iter().chain(b2.iter()).collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "no duplicates");

    // Broadcasting: each consumer gets every message.
    let out = run(
        Lang::Node,
        json!({"role": "produce", "namesrv": ns, "topic": "BcastTopic",
        "messages": msgs(12, |i| json!({"body": format!("b-{i}")}))}),
    );
    assert_eq!(sent_ok(&out), 12);
    let a = ClientProc::spawn(
        Lang::Node,
        &json!({"role": "consume", "namesrv": ns, "topic": "BcastTopic",
        "group": "CG_BCAST", "broadcast": true, "instance": "one", "expect": 12, "lingerMs": 1000, "timeoutMs": 40000}),
    );
    // A second ali-ons process: the C++ client (Python) starts a new broadcasting consumer at
    // the end of each queue (CONSUME_FROM_LAST_OFFSET), so it would see only later messages.
    let b = ClientProc::spawn(
        Lang::Node,
        &json!({"role": "consume", "namesrv": ns, "topic": "BcastTopic",
        "group": "CG_BCAST", "broadcast": true, "instance": "two", "expect": 12, "lingerMs": 1000, "timeoutMs": 40000}),
    );
    for out in [
        a.finish(Duration::from_secs(60)),
        b.finish(Duration::from_secs(60)),
    ] {
        let mut got = bodies(&out);
        got.sort();
        let mut want: Vec<String> = (0..12).map(|i| format!("b-{i}")).collect();
        want.sort();
        assert_eq!(got, want);
    }

    // A group restarting resumes from its committed offsets.
    let out = run(
        Lang::Node,
        json!({"role": "produce", "namesrv": ns, "topic": "ResumeTopic",
        "messages": msgs(10, |i| json!({"body": format!("r1-{i}")}))}),
    );
    assert_eq!(sent_ok(&out), 10);
    let out = run(
        Lang::Node,
        json!({"role": "consume", "namesrv": ns, "topic": "ResumeTopic", "group": "CG_RESUME",
        "expect": 10, "lingerMs": 500, "timeoutMs": 30000}),
    );
    assert_eq!(bodies(&out).len(), 10);
    let out = run(
        Lang::Node,
        json!({"role": "produce", "namesrv": ns, "topic": "ResumeTopic",
        "messages": msgs(10, |i| json!({"body": format!("r2-{i}")}))}),
    );
    assert_eq!(sent_ok(&out), 10);
    let out = run(
        Lang::Node,
        json!({"role": "consume", "namesrv": ns, "topic": "ResumeTopic", "group": "CG_RESUME",
        "expect": 10, "lingerMs": 1500, "timeoutMs": 30000}),
    );
    let mut got = bodies(&out);
    got.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("r2-{i}")).collect();
    want.sort();
    assert_eq!(got, want, "only the messages after the committed offsets");
}

#[test]
fn ordered_by_sharding_key() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(&dir.path().join("store"), &[]);
    let ns = broker.namesrv.to_string();
    let keys = ["order-a", "order-b", "order-c", "order-d", "order-e"];
    let out = run(
        Lang::Python,
        json!({"role": "produce", "namesrv": ns, "topic": "OrderTopic", "mode": "orderly",
        "messages": msgs(60, |i| json!({"shardingKey": (keys[i % 5]), "body": format!("{}:{}", keys[i % 5], i / 5)}))}),
    );
    assert_eq!(sent_ok(&out), 60, "{out:?}");
    let out = run(
        Lang::Python,
        json!({"role": "consume", "namesrv": ns, "topic": "OrderTopic", "group": "CG_ORDER",
        "orderly": true, "expect": 60, "lingerMs": 1000, "timeoutMs": 60000}),
    );
    let mut per_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut queue_of: HashMap<String, i64> = HashMap::new();
    for m in events(&out, "msg") {
        let body = m["body"].as_str().unwrap();
        let (k, seq) = body.split_once(':').unwrap();
        per_key
            .entry(k.to_string())
            .or_default()
            .push(seq.parse().unwrap());
        let q = m["queueId"].as_i64().unwrap();
        assert_eq!(
            *queue_of.entry(k.to_string()).or_insert(q),
            q,
            "one key, one queue"
        );
    }
    assert_eq!(per_key.len(), 5);
    for (k, seqs) in per_key {
        assert_eq!(
            seqs,
            (0..12).collect::<Vec<u32>>(),
            "{k} consumed in send order"
        );
    }
}

/// Pulls queue 0 of a topic with wasmq's own client (to inspect dead-letter queues).
fn pull_all(broker: &BrokerProc, topic: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        let mut e = ExtFields::new();
        for (k, v) in [
            ("consumerGroup", "inspect"),
            ("topic", topic),
            ("queueId", "0"),
            ("queueOffset", "0"),
            ("maxMsgNums", "32"),
            ("sysFlag", "4"),
            ("subscription", "*"),
        ] {
            e.insert(k, v);
        }
        let r = c
            .invoke(
                RemotingCommand::new_request(request::PULL_MESSAGE, e),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        let mut out = Vec::new();
        let mut rest = &r.body[..];
        while !rest.is_empty() {
            let Ok(wasmq::store::record::Entry::Record(v)) = wasmq::store::record::decode(
                rest,
                wasmq::store::record::Check {
                    crc: true,
                    position: None,
                },
            ) else {
                break;
            };
            out.push(format!(
                "{}|{}|{}",
                String::from_utf8_lossy(v.body()),
                v.reconsume_times(),
                v.property("DLQ_ORIGIN_TOPIC").unwrap_or("")
            ));
            rest = &rest[v.total_size()..];
        }
        out
    })
}

#[test]
fn delays_retries_and_dead_letters() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    // Level 2 is RocketMQ's 5 s; the levels retries use (3 + reconsumeTimes) are short here.
    let cfg = dir.path().join("broker.toml");
    std::fs::write(&cfg, "[broker]\nmessage_delay_levels = \"1s 5s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s\"\n").unwrap();
    let broker = BrokerProc::start(
        &dir.path().join("store"),
        &["--config", cfg.to_str().unwrap()],
    );
    let ns = broker.namesrv.to_string();

    // ali-ons: delay level 2 is consumed no earlier than 5 s after the send.
    let consumer = ClientProc::spawn(
        Lang::Node,
        &json!({"role": "consume", "namesrv": ns, "topic": "DelayTopic",
        "group": "CG_DELAY", "expect": 1, "timeoutMs": 40000}),
    );
    let out = run(
        Lang::Node,
        json!({"role": "produce", "namesrv": ns, "topic": "DelayTopic",
        "messages": [{"body": "in-five", "delayLevel": 2}]}),
    );
    assert_eq!(sent_ok(&out), 1, "{out:?}");
    // From when the send was issued: the broker's clock starts at its store time, between
    // the issue and the acknowledgement.
    let sent_at = events(&out, "sent")[0]["start"].as_i64().unwrap();
    let got = consumer.finish(Duration::from_secs(60));
    let m = events(&got, "msg");
    assert_eq!(m.len(), 1);
    let waited = m[0]["at"].as_i64().unwrap() - sent_at;
    assert!(
        (5000..12000).contains(&waited),
        "consumed {waited} ms after the send"
    );

    // ali-ons: a consumer that throws sees the message again with reconsumeTimes 1, 2, ...;
    // after its maxReconsumeTimes (2) the message is in %DLQ%<group> and no longer delivered.
    let out = run(
        Lang::Node,
        json!({"role": "produce", "namesrv": ns, "topic": "RetryTopic",
        "messages": [{"body": "poison"}]}),
    );
    assert_eq!(sent_ok(&out), 1);
    let out = run(
        Lang::Node,
        json!({"role": "consume", "namesrv": ns, "topic": "RetryTopic", "group": "CG_RETRY",
        "failTimes": 100, "maxReconsumeTimes": 2, "timeoutMs": 15000}),
    );
    let attempts: Vec<i64> = events(&out, "attempt")
        .iter()
        .filter(|a| a["body"] == "poison")
        .map(|a| a["reconsumeTimes"].as_i64().unwrap())
        .collect();
    assert_eq!(
        attempts,
        [0, 1, 2],
        "delivered, then retried twice, then no more"
    );
    assert_eq!(pull_all(&broker, "%DLQ%CG_RETRY"), ["poison|3|RetryTopic"]);

    // rocketmq-client-python: set_delay_time_level and RECONSUME_LATER behave the same way.
    let out = run(
        Lang::Python,
        json!({"role": "produce", "namesrv": ns, "topic": "PyDelayTopic",
        "messages": [{"body": "py-later", "delayLevel": 2}]}),
    );
    assert_eq!(sent_ok(&out), 1, "{out:?}");
    let sent_at = events(&out, "sent")[0]["start"].as_i64().unwrap();
    let out = run(
        Lang::Python,
        json!({"role": "consume", "namesrv": ns, "topic": "PyDelayTopic", "group": "CG_PY_RETRY",
        "failTimes": 2, "expect": 1, "lingerMs": 1000, "timeoutMs": 40000}),
    );
    let attempts: Vec<&Value> = events(&out, "attempt");
    assert!(
        attempts[0]["at"].as_i64().unwrap() - sent_at >= 5000,
        "first delivery after the 5 s delay"
    );
    let times: Vec<i64> = attempts
        .iter()
        .map(|a| a["reconsumeTimes"].as_i64().unwrap())
        .collect();
    assert_eq!(times, [0, 1, 2], "RECONSUME_LATER twice, then consumed");
    assert_eq!(bodies(&out), ["py-later"]);

    // Rewind: a group reset to a timestamp replays exactly the messages stored at or after it.
    let out = run(
        Lang::Node,
        json!({"role": "produce", "namesrv": ns, "topic": "RewindTopic",
        "messages": msgs(6, |i| json!({"body": format!("old-{i}")}))}),
    );
    assert_eq!(sent_ok(&out), 6);
    let out = run(
        Lang::Node,
        json!({"role": "produce", "namesrv": ns, "topic": "RewindTopic",
        "messages": msgs(6, |i| json!({"body": format!("new-{i}")}))}),
    );
    assert_eq!(sent_ok(&out), 6);
    let out = run(
        Lang::Node,
        json!({"role": "consume", "namesrv": ns, "topic": "RewindTopic", "group": "CG_REWIND",
        "expect": 12, "lingerMs": 500, "timeoutMs": 30000}),
    );
    let all = events(&out, "msg");
    assert_eq!(all.len(), 12);
    // The reset point: the store time of the first "new" message (millisecond precision).
    let t = all
        .iter()
        .filter(|m| m["body"].as_str().is_some_and(|b| b.starts_with("new")))
        .map(|m| m["storeTimestamp"].as_i64().unwrap())
        .min()
        .unwrap();
    let expected: Vec<String> = {
        let mut v: Vec<String> = all
            .iter()
            .filter(|m| m["storeTimestamp"].as_i64().unwrap() >= t)
            .map(|m| m["body"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    wait_members(&broker, "CG_REWIND", 0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        let mut e = ExtFields::new();
        e.insert("topic", "RewindTopic");
        e.insert("group", "CG_REWIND");
        e.insert_display("timestamp", t);
        let r = c
            .invoke(
                RemotingCommand::new_request(request::INVOKE_BROKER_TO_RESET_OFFSET, e),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(r.code, wasmq::protocol::response::SUCCESS, "{:?}", r.remark);
    });
    let out = run(
        Lang::Node,
        json!({"role": "consume", "namesrv": ns, "topic": "RewindTopic", "group": "CG_REWIND",
        "expect": expected.len(), "lingerMs": 1500, "timeoutMs": 30000}),
    );
    let mut got = bodies(&out);
    got.sort();
    assert_eq!(
        got, expected,
        "replayed exactly the messages stored at or after the reset time"
    );
}

/// Sum of a group's committed offsets over a topic's queues.
fn committed(broker: &BrokerProc, group: &str, topic: &str, queues: i32) -> i64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        let mut sum = 0;
        for q in 0..queues {
            let mut e = ExtFields::new();
            e.insert("consumerGroup", group);
            e.insert("topic", topic);
            e.insert_display("queueId", q);
            e.insert("setZeroIfNotFound", "false");
            let r = c
                .invoke(
                    RemotingCommand::new_request(request::QUERY_CONSUMER_OFFSET, e),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            sum += r.ext_fields.get_i64("offset").ok().flatten().unwrap_or(0);
        }
        sum
    })
}

#[test]
fn live_group_reset_replays_through_the_cpp_client() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(&dir.path().join("store"), &[]);
    let ns = broker.namesrv.to_string();
    let out = run(
        Lang::Node,
        json!({"role": "produce", "namesrv": ns, "topic": "LiveReset",
        "messages": msgs(8, |i| json!({"body": format!("live-{i}")}))}),
    );
    assert_eq!(sent_ok(&out), 8);
    // A Python (C++) consumer reads all 8 and keeps running.
    let consumer = ClientProc::spawn(
        Lang::Python,
        &json!({"role": "consume", "namesrv": ns, "topic": "LiveReset",
        "group": "CG_LIVE", "expect": 16, "lingerMs": 500, "timeoutMs": 45000}),
    );
    // Its progress reaches the broker (commits ride on pulls and a 5 s timer).
    let deadline = Instant::now() + Duration::from_secs(30);
    while committed(&broker, "CG_LIVE", "LiveReset", 4) < 8 {
        assert!(
            Instant::now() < deadline,
            "the consumer never committed its progress"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Reset to the beginning while it runs: the broker pushes RESET_CONSUMER_CLIENT_OFFSET.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        let mut e = ExtFields::new();
        e.insert("topic", "LiveReset");
        e.insert("group", "CG_LIVE");
        e.insert("timestamp", "0");
        let r = c
            .invoke(
                RemotingCommand::new_request(request::INVOKE_BROKER_TO_RESET_OFFSET, e),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(r.code, wasmq::protocol::response::SUCCESS, "{:?}", r.remark);
    });
    let out = consumer.finish(Duration::from_secs(60));
    let mut got = bodies(&out);
    got.sort();
    let mut want: Vec<String> = (0..8)
        .flat_map(|i| [format!("live-{i}"), format!("live-{i}")])
        .collect();
    want.sort();
    assert_eq!(
        got, want,
        "every message consumed again after the live reset"
    );
}
