//! Transactional messages against the real broker binary: half messages stay invisible until
//! END_TRANSACTION commits them; duplicate, late and bad ENDs are harmless; check-backs go to
//! the producer group and to txn-checker plugins; SIGKILL between half put and END, and
//! between a commit and its op entry, neither loses a commit nor delivers one twice.

mod broker_support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_support::wire::{ext, pull_req, records, Rec};
use broker_support::BrokerProc;
use parking_lot::Mutex;
use wasmq::net::{Connection, HandlerFuture, NetConfig, RemotingClient, RequestHandler};
use wasmq::protocol::{message_id, request, response, RemotingCommand};

const T: Duration = Duration::from_secs(10);
const GROUP: &str = "PG_TXN";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn config(dir: &std::path::Path, body: &str) -> String {
    let cfg = dir.join("broker.toml");
    std::fs::write(&cfg, format!("[broker]\n{body}\n")).unwrap();
    cfg.to_string_lossy().into_owned()
}

/// A half message as Java/C++ producers send it: TRAN_MSG + PGROUP, sysflag PREPARED.
fn half_req(topic: &str, uniq: &str, extra_props: &str, body: &str) -> RemotingCommand {
    let props = format!(
        "TRAN_MSG\u{1}true\u{2}PGROUP\u{1}{GROUP}\u{2}UNIQ_KEY\u{1}{uniq}\u{2}KEYS\u{1}{uniq}\u{2}{extra_props}"
    );
    RemotingCommand::new_request(
        request::SEND_MESSAGE_V2,
        ext(&[
            ("a", GROUP),
            ("b", topic),
            ("e", "0"),
            ("f", "4"),
            ("g", "1"),
            ("i", &props),
        ]),
    )
    .with_body(body.as_bytes().to_vec())
}

/// What a producer needs to end a transaction: commit log offset and half-queue offset.
#[derive(Debug, Clone, Copy)]
struct Half {
    offset: i64,
    queue_offset: i64,
}

async fn send_half(c: &RemotingClient, topic: &str, uniq: &str, extra: &str, body: &str) -> Half {
    let r = c
        .invoke(half_req(topic, uniq, extra, body), T)
        .await
        .unwrap();
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let id = r.ext_fields.get("msgId").unwrap();
    Half {
        offset: message_id::decode(id).unwrap().1,
        queue_offset: r.ext_fields.get("queueOffset").unwrap().parse().unwrap(),
    }
}

fn end_req(group: &str, h: Half, commit_or_rollback: i32, from_check: bool) -> RemotingCommand {
    RemotingCommand::new_request(
        request::END_TRANSACTION,
        ext(&[
            ("producerGroup", group),
            ("tranStateTableOffset", &h.queue_offset.to_string()),
            ("commitLogOffset", &h.offset.to_string()),
            ("commitOrRollback", &commit_or_rollback.to_string()),
            (
                "fromTransactionCheck",
                if from_check { "true" } else { "false" },
            ),
            ("msgId", ""),
        ]),
    )
}

const COMMIT: i32 = 8;
const ROLLBACK: i32 = 12;

async fn end(c: &RemotingClient, h: Half, v: i32) -> RemotingCommand {
    c.invoke(end_req(GROUP, h, v, false), T).await.unwrap()
}

/// Everything in queue 0 of `topic` from offset 0 (a short long-poll at the end).
async fn pull_all(c: &RemotingClient, topic: &str) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let r = c
            .invoke(
                pull_req("G", topic, 0, offset, 32, 300),
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

/// Waits (bounded) until queue 0 of `topic` holds `n` messages; returns them.
async fn wait_for(c: &RemotingClient, topic: &str, n: usize, limit: Duration) -> Vec<Rec> {
    let deadline = Instant::now() + limit;
    loop {
        let got = pull_all(c, topic).await;
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
    }
}

async fn txn_list(c: &RemotingClient) -> Vec<serde_json::Value> {
    let r = c
        .invoke(RemotingCommand::new_request(request::TXN_LIST, ext(&[])), T)
        .await
        .unwrap();
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    serde_json::from_slice::<Vec<serde_json::Value>>(&r.body).unwrap()
}

/// Waits (bounded) until `wasmq txn list`'s admin request shows `n` pending.
async fn wait_pending(c: &RemotingClient, n: usize, limit: Duration) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + limit;
    loop {
        let l = txn_list(c).await;
        if l.len() == n || Instant::now() > deadline {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn bodies(recs: &[Rec]) -> Vec<String> {
    recs.iter().map(Rec::text).collect()
}

#[test]
fn end_transaction_commit_rollback_duplicates_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    // No check-back during this test.
    let cfg = config(dir.path(), "transaction_timeout_ms = 600000");
    let broker = BrokerProc::start(&dir.path().join("store"), &["--config", &cfg]);
    rt().block_on(async {
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        let a = send_half(&c, "TxA", "ua", "", "commit-me").await;
        let b = send_half(&c, "TxA", "ub", "", "roll-me-back").await;
        // Invisible until committed.
        assert!(pull_all(&c, "TxA").await.is_empty());
        assert_eq!(txn_list(&c).await.len(), 2);

        assert_eq!(end(&c, a, COMMIT).await.code, response::SUCCESS);
        assert_eq!(end(&c, b, ROLLBACK).await.code, response::SUCCESS);
        let got = wait_for(&c, "TxA", 1, T).await;
        assert_eq!(bodies(&got), ["commit-me"]);
        assert_eq!(got[0].prop("UNIQ_KEY"), Some("ua"));
        assert!(got[0].prop("REAL_TOPIC").is_none());
        assert!(txn_list(&c).await.is_empty());

        // Duplicates and late ENDs (also contradicting ones, also oneway) are no-ops.
        for (h, v) in [(a, COMMIT), (a, ROLLBACK), (b, COMMIT), (b, ROLLBACK)] {
            let r = end(&c, h, v).await;
            assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
            c.invoke_oneway(end_req(GROUP, h, v, true)).unwrap();
        }
        // A oneway END is never answered; a SUCCESS to the next request shows it was handled.
        assert!(txn_list(&c).await.is_empty());
        assert_eq!(bodies(&pull_all(&c, "TxA").await), ["commit-me"]);

        // Bad input is refused and applied to nothing.
        let p = send_half(&c, "TxA", "uc", "", "pending").await;
        let bad = [
            // No record starts there.
            Half {
                offset: p.offset + 1,
                queue_offset: p.queue_offset,
            },
            // Not a half message: the committed copy of `a`.
            Half {
                offset: got[0].phys,
                queue_offset: 0,
            },
            // Right offset, wrong half-queue offset.
            Half {
                offset: p.offset,
                queue_offset: p.queue_offset + 7,
            },
        ];
        for h in bad {
            let r = end(&c, h, COMMIT).await;
            assert_eq!(r.code, response::SYSTEM_ERROR, "{h:?}");
            assert!(r.remark.unwrap().contains("refused"));
        }
        let r = c
            .invoke(end_req("SOMEONE_ELSE", p, COMMIT, false), T)
            .await
            .unwrap();
        assert_eq!(r.code, response::SYSTEM_ERROR);
        assert!(r.remark.unwrap().contains("producer group"), "wrong group");
        let r = c.invoke(end_req(GROUP, p, 5, false), T).await.unwrap();
        assert_eq!(r.code, response::SYSTEM_ERROR, "illegal commitOrRollback");
        // Unknown (0) leaves it pending.
        assert_eq!(end(&c, p, 0).await.code, response::SUCCESS);
        let l = txn_list(&c).await;
        assert_eq!(l.len(), 1);
        assert_eq!(l[0]["uniqKey"], "uc");
        assert_eq!(l[0]["topic"], "TxA");
        assert_eq!(l[0]["group"], GROUP);
        assert_eq!(bodies(&pull_all(&c, "TxA").await), ["commit-me"]);

        // Batches cannot carry transactional messages; system topics cannot be written.
        let mut batch = half_req("TxA", "ud", "", "x");
        batch.ext_fields.insert("m", "true");
        let r = c.invoke(batch, T).await.unwrap();
        assert_eq!(r.code, response::MESSAGE_ILLEGAL);
        let r = c
            .invoke(half_req("RMQ_SYS_TRANS_HALF_TOPIC", "ue", "", "x"), T)
            .await
            .unwrap();
        assert_eq!(r.code, response::NO_PERMISSION);

        // Finally the pending one commits.
        assert_eq!(end(&c, p, COMMIT).await.code, response::SUCCESS);
        let got = wait_for(&c, "TxA", 2, T).await;
        assert_eq!(bodies(&got), ["commit-me", "pending"]);
    });
}

/// A producer that answers CHECK_TRANSACTION_STATE from a table keyed by UNIQ_KEY, with a
/// oneway END_TRANSACTION as Java and C++ producers do, and counts the checks it got.
struct Producer {
    answers: HashMap<String, i32>,
    checks: Mutex<Vec<String>>,
}

impl RequestHandler for Producer {
    fn handle(&self, conn: Arc<Connection>, req: RemotingCommand) -> HandlerFuture<'_> {
        Box::pin(async move {
            if req.code != request::CHECK_TRANSACTION_STATE {
                return None;
            }
            let rec = records(&req.body).remove(0);
            let uniq = rec.prop("UNIQ_KEY").unwrap_or("").to_string();
            assert_eq!(req.ext_fields.get("msgId"), Some(uniq.as_str()));
            self.checks.lock().push(format!("{}:{uniq}", rec.topic));
            let h = Half {
                offset: req
                    .ext_fields
                    .get("commitLogOffset")
                    .unwrap()
                    .parse()
                    .unwrap(),
                queue_offset: req
                    .ext_fields
                    .get("tranStateTableOffset")
                    .unwrap()
                    .parse()
                    .unwrap(),
            };
            let v = self.answers.get(&uniq).copied().unwrap_or(0);
            let _ = conn.send_oneway(end_req(GROUP, h, v, true));
            None
        })
    }
}

async fn register_producer(c: &RemotingClient) {
    let body = serde_json::json!({
        "clientID": "127.0.0.1@txn-test",
        "producerDataSet": [{"groupName": GROUP}],
        "consumerDataSet": [],
    });
    let r = c
        .invoke(
            RemotingCommand::new_request(request::HEART_BEAT, ext(&[]))
                .with_body(serde_json::to_vec(&body).unwrap()),
            T,
        )
        .await
        .unwrap();
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
}

#[test]
fn check_back_asks_the_producer_then_applies_the_final_action() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "transaction_timeout_ms = 300\ntransaction_check_interval_ms = 300\ntransaction_check_max = 3",
    );
    let broker = BrokerProc::start(&dir.path().join("store"), &["--config", &cfg]);
    rt().block_on(async {
        let producer = Arc::new(Producer {
            answers: [("yes", COMMIT), ("no", ROLLBACK), ("dunno", 0)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            checks: Mutex::new(Vec::new()),
        });
        let c = RemotingClient::connect_with(
            broker.broker,
            NetConfig::client(),
            Some(producer.clone() as Arc<dyn RequestHandler>),
        )
        .await
        .unwrap();
        register_producer(&c).await;
        let started = Instant::now();
        send_half(&c, "TxB", "yes", "", "checked-commit").await;
        send_half(&c, "TxB", "no", "", "checked-rollback").await;
        // Its first check waits 2 s (CHECK_IMMUNITY_TIME_IN_SECONDS), then 3 unknowns.
        send_half(
            &c,
            "TxB",
            "dunno",
            "CHECK_IMMUNITY_TIME_IN_SECONDS\u{1}2\u{2}",
            "never-decided",
        )
        .await;
        let got = wait_for(&c, "TxB", 1, T).await;
        assert_eq!(bodies(&got), ["checked-commit"]);
        // The undecided one is checked 3 times, then discarded (the default final action).
        let left = wait_pending(&c, 0, Duration::from_secs(20)).await;
        assert!(left.is_empty(), "still pending: {left:?}");
        let checks = producer.checks.lock().clone();
        let count = |k: &str| checks.iter().filter(|c| *c == &format!("TxB:{k}")).count();
        assert_eq!(count("yes"), 1, "{checks:?}");
        assert_eq!(count("no"), 1, "{checks:?}");
        assert_eq!(count("dunno"), 3, "{checks:?}");
        assert!(
            started.elapsed() >= Duration::from_millis(2000 + 2 * 300),
            "immunity and interval were honoured"
        );
        // Nothing else ever shows up.
        assert_eq!(bodies(&pull_all(&c, "TxB").await), ["checked-commit"]);
    });
    assert!(broker.log_text().contains("discarding it"));
}

async fn load_plugin(c: &RemotingClient, name: &str, crate_name: &str, config: &[(&str, &str)]) {
    let wasm = std::fs::read(wasmq::plugin::shipped::path(crate_name)).unwrap();
    let cfg: Vec<(String, String)> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let cfg = serde_json::to_string(&cfg).unwrap();
    let r = c
        .invoke(
            RemotingCommand::new_request(
                request::PLUGIN_LOAD,
                ext(&[("name", name), ("config", &cfg)]),
            )
            .with_body(wasm),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let info: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(info["kind"], "txn-checker");
}

async fn bind(c: &RemotingClient, topic: &str, name: &str) -> RemotingCommand {
    c.invoke(
        RemotingCommand::new_request(
            request::PLUGIN_BIND,
            ext(&[("kind", "txn-checker"), ("topic", topic), ("name", name)]),
        ),
        T,
    )
    .await
    .unwrap()
}

#[test]
fn checker_plugins_resolve_without_any_producer() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "transaction_timeout_ms = 200\ntransaction_check_interval_ms = 200\ntransaction_check_max = 1000",
    );
    let broker = BrokerProc::start(&dir.path().join("store"), &["--config", &cfg]);
    rt().block_on(async {
        // This connection never says it is a producer: nobody answers check-backs.
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        load_plugin(
            &c,
            "deadline",
            "txn-deadline-checker",
            &[("deadline_ms", "1500"), ("commit_property", "PAID")],
        )
        .await;
        load_plugin(
            &c,
            "odd",
            "txn-misbehave",
            &[
                ("wasmq.on_failure", "rollback"),
                ("wasmq.deadline_ms", "50"),
            ],
        )
        .await;
        // Bad bindings are refused.
        assert_eq!(
            bind(&c, "Orders", "nope").await.code,
            response::SYSTEM_ERROR
        );
        let r = bind(&c, "Orders", "sql92-filter").await;
        assert_eq!(r.code, response::SYSTEM_ERROR);
        assert!(r.remark.unwrap().contains("filter"));
        assert_eq!(bind(&c, "Orders", "deadline").await.code, response::SUCCESS);
        assert_eq!(bind(&c, "*", "odd").await.code, response::SUCCESS);

        let started = Instant::now();
        send_half(&c, "Orders", "paid", "PAID\u{1}true\u{2}", "paid-order").await;
        send_half(&c, "Orders", "stale", "", "stale-order").await;
        // Other topics fall to the default binding.
        send_half(&c, "Misc", "m1", "TXN_TEST\u{1}commit\u{2}", "m-commit").await;
        send_half(&c, "Misc", "m2", "TXN_TEST\u{1}rollback\u{2}", "m-rollback").await;
        let got = wait_for(&c, "Orders", 1, T).await;
        assert_eq!(bodies(&got), ["paid-order"]);
        let l = txn_list(&c).await;
        assert!(
            l.iter()
                .any(|p| p["uniqKey"] == "stale" && p["checker"] == "deadline"),
            "{l:?}"
        );
        // The stale one is rolled back once older than the deadline.
        let left = wait_pending(&c, 0, T).await;
        assert!(left.is_empty(), "{left:?}");
        assert!(started.elapsed() >= Duration::from_millis(1500));
        assert_eq!(bodies(&pull_all(&c, "Orders").await), ["paid-order"]);
        assert_eq!(bodies(&wait_for(&c, "Misc", 1, T).await), ["m-commit"]);

        // A checker that loops is stopped at its deadline; its policy (rollback) decides,
        // and the broker keeps serving meanwhile.
        send_half(&c, "Misc", "m3", "TXN_TEST\u{1}loop\u{2}", "m-loop").await;
        let left = wait_pending(&c, 0, T).await;
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(bodies(&pull_all(&c, "Misc").await), ["m-commit"]);
    });
    assert!(broker.log_text().contains("txn-checker failed"));
}

#[test]
fn sigkill_between_half_and_end_and_between_commit_and_op() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "transaction_timeout_ms = 600000");
    let store = dir.path().join("store");
    let mut broker = BrokerProc::start_env(
        &store,
        &["--config", &cfg],
        &[("WASMQ_FAILPOINT", "txn-after-commit-put")],
    );
    let rt = rt();
    let (h1, h2, h3, h4) = rt.block_on(async {
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        let h1 = send_half(&c, "TxK", "k1", "", "one").await;
        let h2 = send_half(&c, "TxK", "k2", "", "two").await;
        let h3 = send_half(&c, "TxK", "k3", "", "three").await;
        let h4 = send_half(&c, "TxK", "k4", "", "four").await;
        // This commit writes the real message, then the crash point kills the broker
        // before the op entry.
        c.invoke_oneway(end_req(GROUP, h3, COMMIT, false)).unwrap();
        (h1, h2, h3, h4)
    });
    assert!(
        broker.wait_exit(Duration::from_secs(20)),
        "the crash point was not reached"
    );
    broker.env.clear();
    broker.restart();
    rt.block_on(async {
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        // All four are pending again; three was committed before the crash, once.
        let l = txn_list(&c).await;
        let mut keys: Vec<String> = l
            .iter()
            .map(|p| p["uniqKey"].as_str().unwrap().to_string())
            .collect();
        keys.sort();
        assert_eq!(keys, ["k1", "k2", "k3", "k4"]);
        assert!(l.iter().all(|p| p["inDoubt"] == true));
        assert_eq!(bodies(&wait_for(&c, "TxK", 1, T).await), ["three"]);
        // The producer's answers arrive late: commit one, roll back two, and for three a
        // repeated commit and a contradicting rollback: three stays delivered once.
        assert_eq!(end(&c, h1, COMMIT).await.code, response::SUCCESS);
        assert_eq!(end(&c, h2, ROLLBACK).await.code, response::SUCCESS);
        assert_eq!(end(&c, h3, ROLLBACK).await.code, response::SUCCESS);
        assert_eq!(end(&c, h3, COMMIT).await.code, response::SUCCESS);
        let got = wait_for(&c, "TxK", 2, T).await;
        assert_eq!(bodies(&got), ["three", "one"]);
        assert_eq!(txn_list(&c).await.len(), 1, "four is still pending");
    });
    // Crash again without the crash point: everything resolved stays resolved.
    broker.kill9();
    broker.restart();
    rt.block_on(async {
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        let l = txn_list(&c).await;
        assert_eq!(l.len(), 1);
        assert_eq!(l[0]["uniqKey"], "k4");
        assert_eq!(end(&c, h4, COMMIT).await.code, response::SUCCESS);
        let got = wait_for(&c, "TxK", 3, T).await;
        assert_eq!(bodies(&got), ["three", "one", "four"]);
        // Nothing more arrives.
        assert_eq!(pull_all(&c, "TxK").await.len(), 3);
    });
    broker.kill9();
    broker.restart();
    rt.block_on(async {
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        assert!(txn_list(&c).await.is_empty());
        assert_eq!(bodies(&pull_all(&c, "TxK").await), ["three", "one", "four"]);
    });
    let log = broker.log_text();
    assert!(
        log.contains("crash point reached"),
        "the crash was where intended"
    );
}
