//! Broker-side filtering seen by a real third-party client: ali-ons consumers subscribing with
//! SQL92 expressions (RocketMQ's selector, run by the shipped `sql92-filter` plugin) and with a
//! TAG expression (the shipped `tag-filter` plugin, decided on consume-queue tag hashes)
//! receive exactly the messages the rules select, and nothing else.

mod broker_support;
mod clients_support;

use std::collections::BTreeSet;
use std::time::Duration;

use broker_support::BrokerProc;
use clients_support::{events, run, ClientProc, Lang};
use serde_json::{json, Value};

struct Msg {
    body: String,
    tag: &'static str,
    color: Option<&'static str>,
    n: Option<String>,
}

fn messages() -> Vec<Msg> {
    (0..60)
        .map(|i| Msg {
            body: format!("m{i}"),
            tag: ["A", "B", "C"][i % 3],
            color: [Some("red"), Some("blue"), Some("green"), None][i % 4],
            n: if i % 7 == 6 {
                Some("abc".into()) // not a number: a numeric comparison cannot hold
            } else if i % 11 == 10 {
                None
            } else {
                Some((i % 10).to_string())
            },
        })
        .collect()
}

fn num(m: &Msg) -> Option<i64> {
    m.n.as_deref().and_then(|n| n.parse().ok())
}

#[test]
fn sql92_and_tag_consumers_receive_exactly_their_messages() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(&dir.path().join("store"), &[]);
    let ns = broker.namesrv.to_string();
    let msgs = messages();
    let payload: Vec<Value> = msgs
        .iter()
        .map(|m| {
            let mut props = serde_json::Map::new();
            if let Some(c) = m.color {
                props.insert("color".into(), json!(c));
            }
            if let Some(n) = &m.n {
                props.insert("n".into(), json!(n));
            }
            json!({"tags": m.tag, "body": m.body, "props": props})
        })
        .collect();
    let out = run(
        Lang::Node,
        json!({"role": "produce", "namesrv": ns, "topic": "Filtered", "messages": payload}),
    );
    assert_eq!(events(&out, "sent").len(), msgs.len(), "{out:?}");

    // Each expression with an oracle written from RocketMQ's rules: a comparison with a
    // missing property is UNKNOWN, UNKNOWN never matches, `NOT UNKNOWN` is UNKNOWN, and a
    // property that does not coerce to the literal's number type does not match.
    type Oracle = fn(&Msg) -> bool;
    let cases: Vec<(&str, &str, Oracle)> = vec![
        ("SQL92", "color = 'red' AND n > 5", |m| {
            m.color == Some("red") && num(m).is_some_and(|n| n > 5)
        }),
        ("SQL92", "n BETWEEN 3 AND 7 AND color <> 'blue'", |m| {
            num(m).is_some_and(|n| (3..=7).contains(&n)) && m.color.is_some_and(|c| c != "blue")
        }),
        ("SQL92", "color IN ('red', 'green') OR n IS NULL", |m| {
            m.color.is_some_and(|c| c == "red" || c == "green") || m.n.is_none()
        }),
        ("SQL92", "NOT (color = 'blue')", |m| {
            m.color.is_some_and(|c| c != "blue")
        }),
        ("SQL92", "n = '5' OR n >= 9", |m| {
            m.n.as_deref() == Some("5") || num(m).is_some_and(|n| n >= 9)
        }),
        ("TAG", "A || C", |m| m.tag == "A" || m.tag == "C"),
    ];
    let consumers: Vec<(usize, BTreeSet<String>, ClientProc)> = cases
        .iter()
        .enumerate()
        .map(|(i, (ty, expr, oracle))| {
            let want: BTreeSet<String> = msgs
                .iter()
                .filter(|m| oracle(m))
                .map(|m| m.body.clone())
                .collect();
            assert!(
                !want.is_empty() && want.len() < msgs.len(),
                "{expr} selects something, not everything"
            );
            let p = ClientProc::spawn(
                Lang::Node,
                &json!({"role": "consume", "namesrv": ns, "topic": "Filtered",
                    "group": format!("CG_FILTER_{i}"), "type": ty, "expr": expr,
                    "expect": want.len(), "lingerMs": 2000, "timeoutMs": 60000}),
            );
            (i, want, p)
        })
        .collect();
    for (i, want, p) in consumers {
        let out = p.finish(Duration::from_secs(90));
        let got: Vec<String> = events(&out, "msg")
            .iter()
            .map(|m| m["body"].as_str().unwrap().to_string())
            .collect();
        let set: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(
            set.len(),
            got.len(),
            "{}: duplicates in {got:?}",
            cases[i].1
        );
        assert_eq!(set, want, "{} {}", cases[i].0, cases[i].1);
    }
}
