//! Router plugins seen by real third-party clients: npm `ali-ons` and PyPI
//! `rocketmq-client-python` (0.5.0rc2) producers and push consumers against the real broker
//! binary, with the shipped routers bound to three topics:
//! - `Keyed` (4 queues) → `hash-router`: every message of a key lands on the queue RocketMQ's
//!   `SelectMessageQueueByHash` picks for it, whatever queue the producer chose, and is
//!   consumed there in send order;
//! - `Orders` → `region-splitter`: `region=eu|us` messages go to `Orders-eu` (4 queues) and
//!   `Orders-us` (2 queues: the producer's queue 2 or 3 becomes 0 or 1), with their own topic,
//!   queue and offsets, and properties, keys, tags and body intact; messages without a region
//!   stay on `Orders`;
//! - `Events` → `schema-guard` (`required=id,type`): bodies that are not JSON objects with
//!   both fields are refused, the producer gets the reason as a send error, and they are never
//!   delivered.
//!
//! Each consumer must see exactly its messages, once each; consumers linger after the last
//! expected message to catch extras.

mod broker_support;
mod clients_support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use broker_support::wire::ext;
use broker_support::BrokerProc;
use clients_support::{events, ClientProc, Lang};
use serde_json::{json, Value};
use wasmq::net::RemotingClient;
use wasmq::protocol::{request, response, RemotingCommand};

const KEYED_QUEUES: u32 = 4;
const KEYED: usize = 40;
/// Five keys: on at least two different queues of four (checked).
const KEYS: [&str; 5] = ["order-1", "order-2", "cart-7", "user-42", "sku-x"];
const ORDERS: usize = 12;
const REGIONS: [Option<&str>; 3] = [Some("eu"), Some("us"), None];
/// Queue counts of the region targets: `Orders` and `Orders-eu` have 4, `Orders-us` 2.
const ORDERS_US_QUEUES: i64 = 2;
const REJECTED_BY: &str = "rejected by router sg: ";
/// Ends of client runs: the jobs' own timeouts are shorter.
const RUN_LIMIT: Duration = Duration::from_secs(100);

/// Java's `String.hashCode` (over UTF-16 code units, wrapping), written out here as the
/// oracle: RocketMQ's `SelectMessageQueueByHash` picks `|hashCode % n|`.
fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)))
}

fn hash_queue(key: &str) -> i64 {
    (i64::from(java_hash(key)) % i64::from(KEYED_QUEUES)).abs()
}

fn key_of(i: usize) -> &'static str {
    KEYS[i % KEYS.len()]
}

fn region_of(i: usize) -> Option<&'static str> {
    REGIONS[i % REGIONS.len()]
}

fn region_topic(region: Option<&str>) -> String {
    match region {
        Some(r) => format!("Orders-{r}"),
        None => "Orders".to_string(),
    }
}

/// The `Events` bodies: valid ones (`None`) and the reason schema-guard gives for the others
/// (`Some((reason, exact))`: the whole reason, or only its start).
fn events_cases() -> Vec<(&'static str, Option<(&'static str, bool)>)> {
    vec![
        (r#"{"id":1,"type":"created"}"#, None),
        (
            r#"{"id":2}"#,
            Some((r#"missing required field "type""#, true)),
        ),
        (r#"{"type":"x","id":"e-3","extra":[1,{"a":null}]}"#, None),
        ("not json at all", Some(("body is not valid JSON: ", false))),
        (
            r#"{"type":"y"}"#,
            Some((r#"missing required field "id""#, true)),
        ),
        (r#"{"id":null,"type":"nulls count"}"#, None),
        (
            "[1,2,3]",
            Some(("body is a JSON array, not an object", true)),
        ),
        (r#"  {"type":"z","id":6}  "#, None),
        (
            r#"{"id":7,"type":"t""#,
            Some(("body is not valid JSON: ", false)),
        ),
    ]
}

// ---- broker setup ---------------------------------------------------------------------------

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

/// Loads shipped plugin `crate_name` as router `name` and binds it to `topic`.
async fn route(
    c: &RemotingClient,
    topic: &str,
    name: &str,
    crate_name: &str,
    cfg: &[(&str, &str)],
) {
    let wasm = std::fs::read(wasmq::plugin::shipped::path(crate_name)).unwrap();
    let cfg: Vec<(&str, &str)> = cfg.to_vec();
    let cfg = serde_json::to_string(&cfg).unwrap();
    admin(
        c,
        request::PLUGIN_LOAD,
        &[("name", name), ("config", &cfg)],
        wasm,
    )
    .await;
    admin(
        c,
        request::PLUGIN_BIND,
        &[("kind", "router"), ("topic", topic), ("name", name)],
        Vec::new(),
    )
    .await;
}

/// A broker with the topics created and the three routers bound.
fn start_broker(dir: &std::path::Path) -> BrokerProc {
    let broker = BrokerProc::start(&dir.join("store"), &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        create_topic(&c, "Keyed", KEYED_QUEUES).await;
        create_topic(&c, "Orders", 4).await;
        create_topic(&c, "Orders-eu", 4).await;
        create_topic(&c, "Orders-us", ORDERS_US_QUEUES as u32).await;
        create_topic(&c, "Events", 4).await;
        route(&c, "Keyed", "hr", "hash-router", &[]).await;
        route(&c, "Orders", "rs", "region-splitter", &[]).await;
        route(
            &c,
            "Events",
            "sg",
            "schema-guard",
            &[("required", "id,type")],
        )
        .await;
    });
    broker
}

// ---- client events --------------------------------------------------------------------------

fn send_ok(l: &Value) -> bool {
    ["SEND_OK", "0", "SendStatus.OK"]
        .iter()
        .any(|s| l["status"] == *s)
}

/// The producer's events by message index: `sent` or `error`, exactly one per message.
fn by_index(lang: Lang, what: &str, out: &[Value], n: usize) -> BTreeMap<usize, Value> {
    let mut m = BTreeMap::new();
    for l in out
        .iter()
        .filter(|l| l["event"] == "sent" || l["event"] == "error")
    {
        let i = l["i"].as_u64().unwrap() as usize;
        assert!(
            m.insert(i, l.clone()).is_none(),
            "{lang:?} {what}: two results for message {i}: {out:?}"
        );
    }
    assert_eq!(
        m.keys().copied().collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>(),
        "{lang:?} {what}: one result per message: {out:?}"
    );
    m
}

/// One delivery as a consumer reported it.
#[derive(Debug, Clone)]
struct Got {
    topic: String,
    tags: String,
    keys: String,
    queue_id: i64,
    queue_offset: i64,
    body: String,
    msg_id: String,
    /// User properties (ali-ons consumers only: the Python consume role does not report them).
    props: Option<serde_json::Map<String, Value>>,
}

fn got(out: &[Value]) -> Vec<Got> {
    events(out, "msg")
        .iter()
        .map(|m| Got {
            topic: m["topic"].as_str().unwrap_or("").to_string(),
            tags: m["tags"].as_str().unwrap_or("").to_string(),
            keys: m["keys"].as_str().unwrap_or("").to_string(),
            queue_id: m["queueId"].as_i64().unwrap(),
            queue_offset: m["queueOffset"].as_i64().unwrap(),
            body: m["body"].as_str().unwrap_or("").to_string(),
            msg_id: m["msgId"].as_str().unwrap_or("").to_string(),
            props: m["props"].as_object().cloned(),
        })
        .collect()
}

/// The index a body carries (`<prefix><i>`), every body once.
fn indexes(what: &str, msgs: &[Got], prefix: &str) -> BTreeMap<usize, Got> {
    let mut m = BTreeMap::new();
    for g in msgs {
        let i: usize = g
            .body
            .strip_prefix(prefix)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{what}: unexpected body {:?}", g.body));
        assert!(
            m.insert(i, g.clone()).is_none(),
            "{what}: message {i} delivered twice: {msgs:?}"
        );
    }
    m
}

/// Per (topic, queue), the offsets delivered are exactly 0, 1, ... (the queues hold only
/// this test's messages) and grow with the message index (send order is storage order).
fn check_offsets(what: &str, delivered: &BTreeMap<usize, Got>) {
    let mut per_queue: BTreeMap<(String, i64), Vec<(usize, i64)>> = BTreeMap::new();
    for (i, g) in delivered {
        per_queue
            .entry((g.topic.clone(), g.queue_id))
            .or_default()
            .push((*i, g.queue_offset));
    }
    for ((topic, q), v) in per_queue {
        let offsets: Vec<i64> = v.iter().map(|(_, o)| *o).collect();
        assert_eq!(
            offsets,
            (0..v.len() as i64).collect::<Vec<_>>(),
            "{what}: {topic}:{q} offsets by send order: {v:?}"
        );
    }
}

/// A producer's view of a message: the queue it reports (ali-ons; the Python send result
/// has no queue id) and the offset and id.
fn check_against_send(lang: Lang, what: &str, i: usize, g: &Got, sent: &Value) {
    assert!(send_ok(sent), "{lang:?} {what} {i}: {sent}");
    assert_eq!(
        sent["queueOffset"].as_i64(),
        Some(g.queue_offset),
        "{lang:?} {what} {i}: the offset the producer was told is where it was consumed: {sent} vs {g:?}"
    );
    if let Some(q) = sent["queueId"].as_i64() {
        assert_eq!(
            q, g.queue_id,
            "{lang:?} {what} {i}: the queue the producer was told is where it was consumed"
        );
    }
    if let Some(id) = sent["msgId"].as_str() {
        assert_eq!(
            id, g.msg_id,
            "{lang:?} {what} {i}: the producer's message id is the consumer's"
        );
    }
}

// ---- the scenario ---------------------------------------------------------------------------

fn produce_job(ns: &str, topic: &str, group: &str, messages: Vec<Value>) -> Value {
    json!({"role": "produce", "namesrv": ns, "topic": topic, "group": group,
        "messages": messages, "timeoutMs": 60000})
}

fn consume_job(ns: &str, topic: &str, group: &str, expect: usize, orderly: bool) -> Value {
    json!({"role": "consume", "namesrv": ns, "topic": topic, "group": group,
        "expect": expect, "orderly": orderly, "lingerMs": 2000, "timeoutMs": 60000})
}

fn keyed_messages() -> Vec<Value> {
    (0..KEYED)
        .map(|i| json!({"tags": "K", "keys": key_of(i), "body": format!("k{i}"), "props": {"seq": i}}))
        .collect()
}

fn orders_messages() -> Vec<Value> {
    (0..ORDERS)
        .map(|i| {
            let mut props = serde_json::Map::new();
            props.insert("n".into(), json!(i.to_string()));
            if let Some(r) = region_of(i) {
                props.insert("region".into(), json!(r));
            }
            json!({"tags": format!("O{}", i % 2), "keys": format!("ord-{i} extra-{i}"),
                "body": format!("o{i}"), "props": props})
        })
        .collect()
}

fn events_messages() -> Vec<Value> {
    events_cases()
        .iter()
        .map(|(body, _)| json!({"tags": "E", "keys": "ev", "body": body}))
        .collect()
}

fn scenario(lang: Lang, label: &str) {
    let started = Instant::now();
    // The keys must exercise the router: on more than one queue of four.
    let queues: BTreeSet<i64> = KEYS.iter().map(|k| hash_queue(k)).collect();
    assert!(queues.len() >= 2, "keys on queues {queues:?}");
    assert_eq!(java_hash("123"), 48690);
    assert_eq!(java_hash("order-1"), -1_207_111_310);

    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let ns = broker.namesrv.to_string();
    // Group names unique to this run (the Python check below finds its producer's log by
    // its group).
    let g = |what: &str| {
        format!(
            "{what}_{label}_{}_{}",
            broker.namesrv.port(),
            std::process::id()
        )
    };

    // Producers, one per topic, side by side; each sends its messages one at a time.
    let p_keyed = ClientProc::spawn(
        lang,
        &produce_job(&ns, "Keyed", &g("PG_KEYED"), keyed_messages()),
    );
    let p_orders = ClientProc::spawn(
        lang,
        &produce_job(&ns, "Orders", &g("PG_ORDERS"), orders_messages()),
    );
    let p_events = ClientProc::spawn(
        lang,
        &produce_job(&ns, "Events", &g("PG_EVENTS"), events_messages()),
    );
    let keyed_sent = by_index(lang, "Keyed", &p_keyed.finish(RUN_LIMIT), KEYED);
    let orders_sent = by_index(lang, "Orders", &p_orders.finish(RUN_LIMIT), ORDERS);
    let events_out = p_events.finish(RUN_LIMIT);
    let cases = events_cases();
    let events_sent = by_index(lang, "Events", &events_out, cases.len());
    eprintln!("{label}: produced after {:?}", started.elapsed());

    // (3) schema-guard: every valid body is sent; every invalid one fails its send, and the
    // producer is told the router's reason.
    let mut refused = Vec::new();
    for (i, (body, reject)) in cases.iter().enumerate() {
        let l = &events_sent[&i];
        let Some((reason, exact)) = reject else {
            assert!(send_ok(l), "{lang:?} valid body {body:?} sent: {l}");
            continue;
        };
        assert_eq!(
            l["event"], "error",
            "{lang:?} invalid body {body:?} refused: {l}"
        );
        let text = l["error"].as_str().unwrap();
        match lang {
            // ali-ons: the broker's remark is the error's message, and its code 13 the code.
            Lang::Node => {
                assert_eq!(l["code"], 13, "MESSAGE_ILLEGAL: {l}");
                assert!(
                    is_reason(text, reason, *exact),
                    "{body:?}: the error gives the reason {reason:?}: {text:?}"
                );
            }
            // The C++ client under rocketmq-client-python catches the broker's error, retries,
            // and raises a generic one: the remark reaches the process (below) but not the
            // exception.
            Lang::Python => assert!(
                text.contains("No route info of this topic"),
                "{body:?}: {text:?}"
            ),
        }
        refused.push((*reason, *exact));
    }
    if let Lang::Python = lang {
        let remarks = cpp_send_remarks(&g("PG_EVENTS"));
        assert_eq!(
            remarks.len(),
            refused.len(),
            "one reason per refused body, in send order: {remarks:?}"
        );
        for (text, (reason, exact)) in remarks.iter().zip(&refused) {
            assert!(
                is_reason(text, reason, *exact),
                "the C++ client got the reason {reason:?}: {text:?}"
            );
        }
    }

    // Consumers: one group per topic, side by side. The Python (C++) consumer of `Keyed` is
    // orderly (its concurrent one may run two messages of one queue at once); ali-ons runs a
    // queue's messages in offset order.
    let want_region = |r: Option<&str>| (0..ORDERS).filter(|i| region_of(*i) == r).count();
    let valid: Vec<&str> = cases
        .iter()
        .filter(|(_, r)| r.is_none())
        .map(|(b, _)| *b)
        .collect();
    let specs: Vec<(String, usize, bool)> = vec![
        ("Keyed".into(), KEYED, matches!(lang, Lang::Python)),
        ("Orders-eu".into(), want_region(Some("eu")), false),
        ("Orders-us".into(), want_region(Some("us")), false),
        ("Orders".into(), want_region(None), false),
        ("Events".into(), valid.len(), false),
    ];
    let consumers: Vec<(String, ClientProc)> = specs
        .iter()
        .map(|(topic, n, orderly)| {
            let group = g(&format!("CG_{}", topic.replace('-', "_")));
            (
                topic.clone(),
                ClientProc::spawn(lang, &consume_job(&ns, topic, &group, *n, *orderly)),
            )
        })
        .collect();
    // Python messages' properties, seen by an ali-ons consumer (the Python consume role does
    // not report properties): one more group over the routed topics.
    let cross = matches!(lang, Lang::Python).then(|| {
        ClientProc::spawn(
            Lang::Node,
            &json!({"role": "consume", "namesrv": ns, "group": g("CG_NODE_VIEW"),
                "topics": ["Keyed", "Orders-eu", "Orders-us", "Orders"],
                "expect": KEYED + ORDERS, "lingerMs": 2000, "timeoutMs": 60000}),
        )
    });
    let mut delivered: HashMap<String, Vec<Got>> = consumers
        .into_iter()
        .map(|(topic, p)| (topic, got(&p.finish(RUN_LIMIT))))
        .collect();
    eprintln!("{label}: consumed after {:?}", started.elapsed());

    // (1) hash-router: exactly the 40 messages; each on its key's hash queue (the queue the
    // producer was told); per key, one queue and consumption in send order.
    let keyed = delivered.remove("Keyed").unwrap();
    let by_i = indexes("Keyed", &keyed, "k");
    assert_eq!(
        by_i.keys().copied().collect::<Vec<_>>(),
        (0..KEYED).collect::<Vec<_>>(),
        "{lang:?} Keyed: every message once"
    );
    let mut key_queues: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    for (i, m) in &by_i {
        assert_eq!(
            (m.topic.as_str(), m.tags.as_str(), m.keys.as_str()),
            ("Keyed", "K", key_of(*i)),
            "{lang:?} Keyed {i}"
        );
        assert_eq!(
            m.queue_id,
            hash_queue(key_of(*i)),
            "{lang:?} Keyed {i}: {m:?}"
        );
        check_against_send(lang, "Keyed", *i, m, &keyed_sent[i]);
        if let Some(p) = &m.props {
            assert_eq!(p.get("seq"), Some(&json!(i.to_string())), "{m:?}");
        }
        key_queues.entry(key_of(*i)).or_default().insert(m.queue_id);
    }
    for (k, qs) in &key_queues {
        assert_eq!(qs.len(), 1, "{lang:?} key {k} on one queue: {qs:?}");
    }
    for k in KEYS {
        let order: Vec<usize> = keyed
            .iter()
            .map(|m| m.body[1..].parse::<usize>().unwrap())
            .filter(|i| key_of(*i) == k)
            .collect();
        let sent: Vec<usize> = (0..KEYED).filter(|i| key_of(*i) == k).collect();
        assert_eq!(order, sent, "{lang:?} key {k} consumed in send order");
    }
    check_offsets("Keyed", &by_i);

    // (2) region-splitter: each target exactly its messages, with the target's metadata.
    for region in REGIONS {
        let topic = region_topic(region);
        let msgs = delivered.remove(&topic).unwrap();
        let by_i = indexes(&topic, &msgs, "o");
        let want: Vec<usize> = (0..ORDERS).filter(|i| region_of(*i) == region).collect();
        assert_eq!(
            by_i.keys().copied().collect::<Vec<_>>(),
            want,
            "{lang:?} {topic}: exactly its messages, once each"
        );
        for (i, m) in &by_i {
            assert_eq!(
                (m.topic.as_str(), m.tags.clone(), m.keys.clone()),
                (
                    topic.as_str(),
                    format!("O{}", i % 2),
                    format!("ord-{i} extra-{i}")
                ),
                "{lang:?} {topic} {i}"
            );
            if region == Some("us") {
                assert!(m.queue_id < ORDERS_US_QUEUES, "{lang:?} {m:?}");
            }
            check_against_send(lang, &topic, *i, m, &orders_sent[i]);
            if let Some(p) = &m.props {
                check_order_props(lang, *i, p);
            }
        }
        check_offsets(&topic, &by_i);
    }

    // (3) schema-guard: exactly the valid bodies are delivered.
    let ev = delivered.remove("Events").unwrap();
    let mut bodies: Vec<&str> = ev.iter().map(|m| m.body.as_str()).collect();
    bodies.sort();
    let mut want = valid.clone();
    want.sort();
    assert_eq!(
        bodies, want,
        "{lang:?} Events: exactly the valid bodies, once each"
    );
    for m in &ev {
        assert_eq!(
            (m.topic.as_str(), m.tags.as_str(), m.keys.as_str()),
            ("Events", "E", "ev")
        );
    }

    // Python producers: properties as ali-ons reads them.
    if let Some(cross) = cross {
        let msgs = got(&cross.finish(RUN_LIMIT));
        let mut seen = BTreeSet::new();
        for m in &msgs {
            assert!(seen.insert(m.body.clone()), "twice: {}", m.body);
            let p = m.props.as_ref().unwrap();
            if let Some(i) = m.body.strip_prefix('k') {
                assert_eq!(m.topic, "Keyed");
                assert_eq!(p["seq"], json!(i), "{m:?}");
            } else {
                let i: usize = m.body[1..].parse().unwrap();
                assert_eq!(m.topic, region_topic(region_of(i)), "{m:?}");
                assert_eq!(
                    m.queue_offset,
                    orders_sent[&i]["queueOffset"].as_i64().unwrap()
                );
                check_order_props(lang, i, p);
            }
        }
        assert_eq!(
            seen.len(),
            KEYED + ORDERS,
            "ali-ons saw every Python message"
        );
    }
    eprintln!("{label}: done after {:?}", started.elapsed());
}

/// Whether a send error's text is schema-guard's rejection for `reason` (all of it, or a
/// reason starting so when not `exact`).
fn is_reason(text: &str, reason: &str, exact: bool) -> bool {
    let want = format!("{REJECTED_BY}{reason}");
    if exact {
        text == want
    } else {
        text.starts_with(&want) && text.len() > want.len()
    }
}

/// The send errors' remarks the C++ client (rocketmq-client-python) logged in the producer
/// of group `group`, one per refused message in send order (it sends a refused message
/// several times; repeats in a row count once). Its log is
/// `$HOME/logs/rocketmq-cpp/<pid>_rocketmq-cpp.log.0` (`ClientProc` sets `HOME`), with
/// `groupname:<group>,` at the start and a `processSendResponse error remark:<remark>,
/// error code:<code>` line per refused attempt.
fn cpp_send_remarks(group: &str) -> Vec<String> {
    let dir = std::env::temp_dir().join("wasmq-client-home/logs/rocketmq-cpp");
    let needle = format!("groupname:{group},");
    let logs: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .filter(|t| t.contains(&needle))
        .collect();
    assert_eq!(logs.len(), 1, "one C++ client log names group {group}");
    let mut remarks: Vec<String> = Vec::new();
    for line in logs[0].lines() {
        let Some((_, rest)) = line.split_once("processSendResponse error remark:") else {
            continue;
        };
        let (remark, code) = rest.rsplit_once(", error code:").unwrap();
        assert!(code.starts_with("13["), "MESSAGE_ILLEGAL: {line}");
        if remarks.last().map(String::as_str) != Some(remark) {
            remarks.push(remark.to_string());
        }
    }
    remarks
}

fn check_order_props(lang: Lang, i: usize, p: &serde_json::Map<String, Value>) {
    assert_eq!(
        p.get("n"),
        Some(&json!(i.to_string())),
        "{lang:?} order {i}: {p:?}"
    );
    assert_eq!(
        p.get("region").and_then(Value::as_str),
        region_of(i),
        "{lang:?} order {i}: {p:?}"
    );
}

#[test]
fn ali_ons_producers_and_consumers_through_routers() {
    scenario(Lang::Node, "N");
}

#[test]
fn python_producers_and_consumers_through_routers() {
    scenario(Lang::Python, "PY");
}
