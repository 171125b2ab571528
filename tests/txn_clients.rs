//! Transactional messages through a client nobody here wrote: PyPI
//! `rocketmq-client-python==0.5.0rc2` (Apache's C++ client), its `TransactionMQProducer`, against
//! the real `wasmq-broker` binary. The local transaction decides commit, rollback or "unknown";
//! an unknown one is settled by the broker's check-back (CHECK_TRANSACTION_STATE), which the
//! producer answers from its check callback.

mod broker_support;
mod clients_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use broker_support::BrokerProc;
use clients_support::{events, ClientProc, Lang};
use serde_json::{json, Value};
use wasmq::net::RemotingClient;
use wasmq::protocol::{request, response, ExtFields, RemotingCommand};

/// One case: its keys (and body), what the local transaction answers, what a check-back answers.
struct Case {
    keys: &'static str,
    local: &'static str,
    check: &'static str,
}

const CASES: [Case; 4] = [
    Case {
        keys: "txn-local-commit",
        local: "commit",
        check: "rollback",
    },
    Case {
        keys: "txn-local-rollback",
        local: "rollback",
        check: "commit",
    },
    Case {
        keys: "txn-check-commit",
        local: "unknown",
        check: "commit",
    },
    Case {
        keys: "txn-check-rollback",
        local: "unknown",
        check: "rollback",
    },
];

fn str_set<'a>(lines: &'a [Value], kind: &str, field: &str) -> BTreeSet<&'a str> {
    events(lines, kind)
        .iter()
        .map(|l| l[field].as_str().unwrap_or(""))
        .collect()
}

/// Waits (bounded) until the NameServer serves a route for `topic` (auto-creating it): the
/// broker's ports accept connections a little before it answers requests.
fn wait_route(broker: &BrokerProc, topic: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = RemotingClient::connect(broker.namesrv).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut e = ExtFields::new();
            e.insert("topic", topic);
            let r = c
                .invoke(
                    RemotingCommand::new_request(request::GET_ROUTEINFO_BY_TOPIC, e),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            if r.code == response::SUCCESS {
                return;
            }
            assert!(Instant::now() < deadline, "no route for {topic}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

#[test]
fn python_transactions_commit_rollback_and_check_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("broker.toml");
    // Checks every second for up to a minute: the C++ client may register its producer group
    // (by heartbeat) only 30 s after it starts, see below.
    std::fs::write(
        &cfg,
        "[broker]\ntransaction_timeout_ms = 1000\ntransaction_check_interval_ms = 1000\n\
         transaction_check_max = 60\n",
    )
    .unwrap();
    let broker = BrokerProc::start(
        &dir.path().join("store"),
        &["--config", cfg.to_str().unwrap()],
    );
    let ns = broker.namesrv.to_string();

    // The C++ client heartbeats (registering its producer group, the only way the broker
    // learns where to send check-backs) at start, 10 ms later and then every 30 s, each time
    // to the brokers it knows by then: it knows this one once the first send has looked up
    // the topic's route. A route served at once usually beats the 10 ms heartbeat.
    wait_route(&broker, "TxnTopic");

    // All four cases in one producer run. It stays up until both unknown ones were checked
    // back, plus two check intervals in which a repeated check would show; 45 s at most,
    // past the 30 s heartbeat.
    let messages: Vec<Value> = CASES
        .iter()
        .map(|c| {
            json!({"keys": c.keys, "tags": "txn", "body": c.keys, "props": {"case": c.keys},
                   "local": c.local, "check": c.check})
        })
        .collect();
    let producer = ClientProc::spawn(
        Lang::Python,
        &json!({"role": "txn-produce", "namesrv": ns, "topic": "TxnTopic", "group": "PG_TXN_PY",
        "messages": messages, "expectChecks": 2, "graceMs": 2000, "lingerMs": 45000,
        "timeoutMs": 60000}),
    );
    let out = producer.finish(Duration::from_secs(90));
    let log = || format!("{out:#?}\nbroker log:\n{}", broker.log_text());
    assert!(events(&out, "error").is_empty(), "{}", log());

    // Every half message was accepted, and each local transaction ran once with its answer.
    let sent = events(&out, "sent");
    assert_eq!(sent.len(), CASES.len(), "{}", log());
    let mut sent_id = BTreeMap::new();
    for s in &sent {
        assert_eq!(s["status"], "SEND_OK", "{}", log());
        let i = s["index"].as_u64().unwrap() as usize;
        sent_id.insert(i, s["msgId"].as_str().unwrap().to_string());
    }
    assert_eq!(sent_id.len(), CASES.len(), "one send per case");
    let locals: BTreeMap<usize, &str> = events(&out, "local")
        .iter()
        .map(|l| {
            (
                l["index"].as_u64().unwrap() as usize,
                l["answer"].as_str().unwrap(),
            )
        })
        .collect();
    let want_locals: BTreeMap<usize, &str> = CASES
        .iter()
        .enumerate()
        .map(|(i, c)| (i, c.local))
        .collect();
    assert_eq!(locals, want_locals, "{}", log());

    // Exactly the two unknown ones were checked back, once each, as the messages sent: their
    // real topic, keys and unique id (the id the send returned).
    let mut checked: BTreeMap<usize, usize> = BTreeMap::new();
    for c in events(&out, "checked") {
        let i = c["index"].as_u64().unwrap() as usize;
        *checked.entry(i).or_default() += 1;
        assert_eq!(c["topic"], "TxnTopic", "{}", log());
        assert_eq!(c["keys"], CASES[i].keys, "{}", log());
        assert_eq!(c["uniqKey"], sent_id[&i].as_str(), "{}", log());
    }
    assert_eq!(
        checked,
        BTreeMap::from([(2, 1), (3, 1)]),
        "only the unknown transactions are checked, each once: {}",
        log()
    );
    let done = events(&out, "done");
    assert_eq!(done.len(), 1, "{}", log());
    assert_eq!(done[0]["checks"], 2, "{}", log());

    // A consumer of the topic gets exactly the committed ones, once each, and nothing more
    // while it lingers.
    let consumer = ClientProc::spawn(
        Lang::Python,
        &json!({"role": "consume", "namesrv": ns, "topic": "TxnTopic", "group": "CG_TXN_PY",
        "expect": 2, "lingerMs": 3000, "timeoutMs": 30000}),
    );
    let got = consumer.finish(Duration::from_secs(60));
    let mut bodies: Vec<&str> = events(&got, "msg")
        .iter()
        .map(|m| m["body"].as_str().unwrap_or(""))
        .collect();
    bodies.sort_unstable();
    assert_eq!(
        bodies,
        ["txn-check-commit", "txn-local-commit"],
        "the committed messages, each once: {got:#?}"
    );
    assert_eq!(
        str_set(&got, "msg", "keys"),
        BTreeSet::from(["txn-check-commit", "txn-local-commit"])
    );
    assert!(
        events(&got, "msg").iter().all(|m| m["topic"] == "TxnTopic"),
        "{got:#?}"
    );
}
