//! Router plugins against the real broker binary: moves, redirects, rejections and fan-out
//! decided before anything is stored; a whole request applied or refused; failures under the
//! plugin's policy; fan-out stored once and surviving SIGKILL; an upgrade under load losing
//! and duplicating nothing.

mod broker_support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use broker_support::wire::{ext, pull_req, records, send_req, Rec};
use broker_support::BrokerProc;
use wasmq::net::RemotingClient;
use wasmq::protocol::{message_id, request, response, RemotingCommand};

const T: Duration = Duration::from_secs(10);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn admin(c: &RemotingClient, code: i32, fields: &[(&str, &str)], body: Vec<u8>) {
    let r = c
        .invoke(
            RemotingCommand::new_request(code, ext(fields)).with_body(body),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(r.code, response::SUCCESS, "{code}: {:?}", r.remark);
}

fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(wasmq::plugin::shipped::path(name)).unwrap()
}

fn cfg_json(config: &[(&str, &str)]) -> String {
    let v: Vec<(String, String)> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    serde_json::to_string(&v).unwrap()
}

async fn load(c: &RemotingClient, name: &str, crate_name: &str, config: &[(&str, &str)]) {
    let cfg = cfg_json(config);
    admin(
        c,
        request::PLUGIN_LOAD,
        &[("name", name), ("config", &cfg)],
        wasm(crate_name),
    )
    .await;
}

async fn bind(c: &RemotingClient, topic: &str, name: &str) {
    admin(
        c,
        request::PLUGIN_BIND,
        &[("kind", "router"), ("topic", topic), ("name", name)],
        Vec::new(),
    )
    .await;
}

async fn create_topic(c: &RemotingClient, topic: &str, queues: u32) {
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

async fn send(
    c: &RemotingClient,
    topic: &str,
    queue: i32,
    props: &str,
    body: &str,
) -> RemotingCommand {
    c.invoke(send_req(topic, queue, props, body.as_bytes()), T)
        .await
        .unwrap()
}

fn route_test(v: &str) -> String {
    format!("ROUTE_TEST\u{1}{v}\u{2}")
}

/// Everything in a queue (short long-poll at the end).
async fn pull_all(c: &RemotingClient, topic: &str, queue: i32) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let r = c
            .invoke(
                pull_req("G", topic, queue, offset, 32, 200),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        if r.code != response::SUCCESS {
            return out;
        }
        let recs = records(&r.body);
        offset = recs.last().unwrap().queue_offset + 1;
        out.extend(recs);
    }
}

/// Pulls (bounded wait) until queue holds at least `n`.
async fn wait_n(c: &RemotingClient, topic: &str, queue: i32, n: usize) -> Vec<Rec> {
    let deadline = std::time::Instant::now() + T;
    loop {
        let got = pull_all(c, topic, queue).await;
        if got.len() >= n || std::time::Instant::now() > deadline {
            return got;
        }
    }
}

fn phys_of(r: &RemotingCommand) -> i64 {
    message_id::decode(r.ext_fields.get("msgId").unwrap())
        .unwrap()
        .1
}

/// A batch (SEND_BATCH_MESSAGE) of messages with the given properties, bodies b0, b1, ...
fn batch_req(topic: &str, props: &[String]) -> RemotingCommand {
    let mut body = Vec::new();
    for (i, p) in props.iter().enumerate() {
        wasmq::protocol::batch::encode_entry(
            &mut body,
            0,
            format!("b{i}").as_bytes(),
            p.as_bytes(),
        )
        .unwrap();
    }
    let mut r = send_req(topic, 0, "", &body);
    r.code = request::SEND_BATCH_MESSAGE;
    r
}

#[test]
fn routers_move_redirect_fan_out_reject_and_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProc::start(&dir.path().join("store"), &[]);
    let rt = rt();
    let (fan_phys, targets) = rt.block_on(async {
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        create_topic(&c, "R", 4).await;
        create_topic(&c, "Audit", 2).await;
        load(&c, "rm", "router-misbehave", &[]).await;
        load(
            &c,
            "lenient",
            "router-misbehave",
            &[("wasmq.on_failure", "keep")],
        )
        .await;
        bind(&c, "R", "rm").await;
        bind(&c, "Soft", "lenient").await;

        // Move to another queue: the reply names the queue it went to.
        let r = send(&c, "R", 0, &route_test("queue:2"), "moved").await;
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
        assert_eq!(r.ext_fields.get("queueId"), Some("2"));
        assert_eq!(wait_n(&c, "R", 2, 1).await[0].text(), "moved");
        // Redirect to another topic (created on demand), the client's queue kept.
        let r = send(&c, "R", 1, &route_test("redirect:R-eu"), "redirected").await;
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
        let eu = wait_n(&c, "R-eu", 1, 1).await;
        assert_eq!(
            (eu[0].topic.as_str(), eu[0].text().as_str()),
            ("R-eu", "redirected")
        );
        assert!(pull_all(&c, "R", 1).await.is_empty());

        // Fan-out: stored once, readable from each target with the target's metadata.
        let r = send(&c, "R", 3, &route_test("extra:Audit:1,R-eu"), "fanned").await;
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
        let fan_phys = phys_of(&r);
        let next = send(&c, "R", 3, "", "after").await;
        let own = wait_n(&c, "R", 3, 2).await;
        assert_eq!(own[0].text(), "fanned");
        let size = (own[1].phys - own[0].phys) as usize;
        assert_eq!(
            phys_of(&next),
            fan_phys + size as i64,
            "one record between them"
        );
        let audit = wait_n(&c, "Audit", 1, 1).await;
        assert_eq!(audit.len(), 1);
        assert_eq!(
            (
                audit[0].topic.as_str(),
                audit[0].queue_offset,
                audit[0].phys
            ),
            ("Audit", 0, fan_phys)
        );
        let eu = wait_n(&c, "R-eu", 3, 1).await;
        assert_eq!((eu[0].topic.as_str(), eu[0].phys), ("R-eu", fan_phys));
        assert_eq!(eu[0].text(), "fanned");

        // Rejected: the producer gets the reason; nothing is stored.
        let before: usize = pull_all(&c, "R", 0).await.len();
        let r = send(&c, "R", 0, &route_test("reject:no thanks"), "x").await;
        assert_eq!(r.code, response::MESSAGE_ILLEGAL);
        assert_eq!(
            r.remark.as_deref(),
            Some("rejected by router rm: no thanks")
        );
        // Verdicts the broker cannot apply are refused with a clear error.
        for (v, want) in [
            (
                "queue:9",
                "queue 9 does not exist in topic R (4 write queues)",
            ),
            ("redirect:Audit:5", "queue 5 does not exist in topic Audit"),
            ("redirect:RMQ_SYS_TRANS_HALF_TOPIC", "system topic"),
            ("extra:SCHEDULE_TOPIC_XXXX", "system topic"),
            ("trap", "failed"),
            ("bad-len", "verdicts for 1 messages"),
        ] {
            let r = send(&c, "R", 0, &route_test(v), "x").await;
            assert_eq!(r.code, response::SYSTEM_ERROR, "{v}");
            let remark = r.remark.unwrap_or_default();
            assert!(remark.contains(want), "{v}: {remark}");
        }
        // A batch with one rejected message is refused whole.
        let r = c
            .invoke(
                batch_req(
                    "R",
                    &[
                        route_test("keep"),
                        route_test("reject:bad one"),
                        route_test("queue:1"),
                    ],
                ),
                T,
            )
            .await
            .unwrap();
        assert_eq!(r.code, response::MESSAGE_ILLEGAL);
        assert_eq!(pull_all(&c, "R", 0).await.len(), before);
        assert!(pull_all(&c, "R", 1).await.is_empty());
        // A routed batch: each message where its verdict says.
        let r = c
            .invoke(
                batch_req("R", &[route_test("keep"), route_test("queue:1")]),
                T,
            )
            .await
            .unwrap();
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
        assert_eq!(wait_n(&c, "R", 1, 1).await[0].text(), "b1");
        assert_eq!(pull_all(&c, "R", 0).await.len(), before + 1);

        // Under `keep`, a failing router leaves the client's choice.
        let r = send(&c, "Soft", 2, &route_test("trap"), "kept").await;
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
        assert_eq!(wait_n(&c, "Soft", 2, 1).await[0].text(), "kept");
        // Delayed messages cannot fan out.
        let r = send(
            &c,
            "R",
            0,
            &format!("{}DELAY\u{1}1\u{2}", route_test("extra:Audit")),
            "x",
        )
        .await;
        assert_eq!(r.code, response::MESSAGE_ILLEGAL);
        (fan_phys, [("R", 3), ("Audit", 1), ("R-eu", 3)])
    });
    // SIGKILL and restart: every target still reads the one record.
    broker.kill9();
    broker.restart();
    rt.block_on(async {
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        for (topic, q) in targets {
            let got = pull_all(&c, topic, q).await;
            let fanned: Vec<&Rec> = got.iter().filter(|r| r.text() == "fanned").collect();
            assert_eq!(fanned.len(), 1, "{topic}:{q}");
            assert_eq!(fanned[0].phys, fan_phys);
            assert_eq!(fanned[0].topic, topic);
        }
        // Bindings survived too.
        let r = send(&c, "R", 0, &route_test("queue:3"), "after restart").await;
        assert_eq!(r.ext_fields.get("queueId"), Some("3"));
    });
}

#[test]
fn router_upgrade_under_load_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(&dir.path().join("store"), &["--flush", "sync"]);
    const N: usize = 1500;
    rt().block_on(async {
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        create_topic(&c, "H", 4).await;
        load(&c, "hr", "hash-router", &[]).await;
        bind(&c, "H", "hr").await;
        let sender = {
            let addr = broker.broker;
            tokio::spawn(async move {
                let c = RemotingClient::connect(addr).await.unwrap();
                let mut acked = Vec::new();
                for i in 0..N {
                    let props = format!("KEYS\u{1}k{}\u{2}UNIQ_KEY\u{1}u{i}\u{2}", i % 16);
                    // The client picks queue 0 every time; the router decides.
                    let r = c
                        .invoke(send_req("H", 0, &props, format!("{i}").as_bytes()), T)
                        .await
                        .unwrap();
                    if r.code == response::SUCCESS {
                        acked.push(i);
                    }
                }
                acked
            })
        };
        // Upgrade mid-stream to a router that sends everything to queue 0.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cfg = cfg_json(&[("mode", "everything-to-queue-0")]);
        admin(
            &c,
            request::PLUGIN_UPGRADE,
            &[("name", "hr"), ("config", &cfg)],
            wasm("router-misbehave"),
        )
        .await;
        let acked = sender.await.unwrap();
        assert_eq!(acked.len(), N, "every send succeeded");
        let mut seen: HashMap<usize, (i32, i64)> = HashMap::new();
        let mut per_key_queues: BTreeMap<usize, Vec<i32>> = BTreeMap::new();
        for q in 0..4 {
            let mut last: BTreeMap<usize, usize> = BTreeMap::new();
            for r in wait_n(&c, "H", q, 0).await {
                let i: usize = r.text().parse().unwrap();
                assert!(seen.insert(i, (q, r.queue_offset)).is_none(), "{i} twice");
                // Per key, a queue holds its messages in send order.
                if let Some(prev) = last.insert(i % 16, i) {
                    assert!(prev < i, "key {} out of order in queue {q}", i % 16);
                }
                per_key_queues.entry(i % 16).or_default().push(q);
            }
        }
        let missing: Vec<usize> = (0..N).filter(|i| !seen.contains_key(i)).collect();
        assert!(missing.is_empty(), "lost: {missing:?}");
        // Before the upgrade each key had one queue; after it, queue 0.
        let mut switched = 0;
        for k in 0..16 {
            let mut by_i: Vec<(usize, i32)> = (0..N)
                .filter(|i| i % 16 == k)
                .map(|i| (i, seen[&i].0))
                .collect();
            by_i.sort();
            let first = by_i[0].1;
            let cut = by_i.iter().position(|(_, q)| *q != first);
            if let Some(cut) = cut {
                assert!(
                    by_i[cut..].iter().all(|(_, q)| *q == 0),
                    "key {k}: {by_i:?}"
                );
                switched += 1;
            }
        }
        assert!(
            switched > 0,
            "the upgrade took effect for keys not on queue 0"
        );
        let last = seen[&(N - 1)].0;
        assert_eq!(last, 0, "after the upgrade everything goes to queue 0");
    });
}
