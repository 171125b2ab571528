//! The host against real plugins built by `build.rs` from `plugins/` (the test plugins in
//! `plugins/testing/` misbehave on request).

use std::time::{Duration, Instant};

use super::batch::{bit, BatchEncoder};
use super::*;

fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(shipped::path(name)).unwrap()
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

fn registry() -> Registry {
    Registry::open(None, registry::DEFAULT_MAX_MODULE_BYTES).unwrap()
}

fn batch(n: usize) -> BatchEncoder {
    let mut e = BatchEncoder::new();
    for i in 0..n {
        let props = format!("n\u{1}{i}\u{2}TAGS\u{1}T{}\u{2}", i % 3);
        e.push(i as i64, 0, b"T", props.as_bytes(), b"");
    }
    e
}

#[test]
fn tag_filter_compiles_to_tag_hashes() {
    let r = registry();
    r.load("tag-filter", shipped::TAG_FILTER, vec![]).unwrap();
    let f = r.for_type("TAG").unwrap();
    assert_eq!(f.compile("TAG", "*").unwrap().prefilter, Prefilter::All);
    let c = f.compile("TAG", "TagA || TagB").unwrap();
    let Prefilter::TagHashes(h) = c.prefilter else {
        panic!("{c:?}")
    };
    let mut h = h.to_vec();
    h.sort();
    let mut want = vec![
        crate::store::record::tag_hash("TagA"),
        crate::store::record::tag_hash("TagB"),
    ];
    want.sort();
    assert_eq!(h, want);
    assert!(!c.needs_body);
}

#[test]
fn bad_modules_are_refused_and_the_active_version_stays() {
    let r = registry();
    r.load("m", &wasm("modulo"), vec![kv("divisor", "2")])
        .unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"definitely not wasm".to_vec(), "not a WebAssembly file"),
        (b"\0asm\x01\0\0\0".to_vec(), "core wasm module"),
        (wasm("bad-abi"), "ABI version 9999"),
        (
            wasm("no-filter"),
            "exports neither wasmq:plugin/filter@0.1.0 nor wasmq:plugin/txn-checker@0.1.0",
        ),
        (
            {
                let mut w = wasm("modulo");
                w.truncate(w.len() / 2);
                w
            },
            "not a loadable component",
        ),
    ];
    for (bytes, want) in cases {
        let e = r.upgrade("m", &bytes, None).unwrap_err().to_string();
        assert!(e.contains(want), "{want:?} not in {e:?}");
        let e = r.load("other", &bytes, vec![]).unwrap_err().to_string();
        assert!(e.contains(want), "{want:?} not in {e:?}");
    }
    // A filter cannot be upgraded into a checker.
    let e = r
        .upgrade("m", &wasm("txn-misbehave"), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("is a filter, the new module is a txn-checker"),
        "{e}"
    );
    let small = Registry::open(None, 1000).unwrap();
    let e = small.load("m", &wasm("modulo"), vec![]).unwrap_err();
    assert!(e.to_string().contains("the limit is 1000"), "{e}");
    // Config is validated at load, by the plugin and by the host.
    let e = r.load("m2", &wasm("modulo"), vec![]).unwrap_err();
    assert!(matches!(e, PluginError::Config(_)), "{e}");
    let e = r
        .load(
            "m2",
            &wasm("modulo"),
            vec![kv("wasmq.on_failure", "explode")],
        )
        .unwrap_err();
    assert!(matches!(e, PluginError::Config(_)), "{e}");
    // The type is taken by "m".
    let e = r
        .load("m2", &wasm("modulo"), vec![kv("divisor", "3")])
        .unwrap_err();
    assert!(matches!(e, PluginError::TypeTaken { .. }), "{e}");
    let f = r.for_type("MOD").unwrap();
    assert_eq!((f.name.as_str(), f.version), ("m", 1));
    let bits = f.evaluate("MOD", "n", &batch(10)).unwrap();
    let matched: Vec<usize> = (0..10).filter(|&i| bit(&bits, i)).collect();
    assert_eq!(matched, [0, 2, 4, 6, 8]);
}

#[test]
fn upgrade_swaps_versions_and_the_registry_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let r = Registry::open(Some(dir.path()), registry::DEFAULT_MAX_MODULE_BYTES).unwrap();
        r.load("m", &wasm("modulo"), vec![kv("divisor", "2")])
            .unwrap();
        let v1 = r.for_type("MOD").unwrap();
        let info = r
            .upgrade("m", &wasm("modulo"), Some(vec![kv("divisor", "3")]))
            .unwrap();
        assert_eq!(info.version, 2);
        assert!(v1.retired());
        // A batch that started on v1 still finishes on v1.
        let bits = v1.evaluate("MOD", "n", &batch(4)).unwrap();
        assert!(bit(&bits, 2));
        let v2 = r.for_type("MOD").unwrap();
        assert!(!v2.retired());
        let bits = v2.evaluate("MOD", "n", &batch(4)).unwrap();
        assert!(bit(&bits, 3) && !bit(&bits, 2));
        r.load("tag-filter", shipped::TAG_FILTER, vec![]).unwrap();
    }
    let r = Registry::open(Some(dir.path()), registry::DEFAULT_MAX_MODULE_BYTES).unwrap();
    let l = r.list();
    assert_eq!(l.len(), 2, "{l:?}");
    let m = l.iter().find(|p| p.name == "m").unwrap();
    assert_eq!(m.version, 2);
    assert_eq!(m.config, vec![kv("divisor", "3")]);
    // Compiled artifacts were cached by content hash.
    assert!(std::fs::read_dir(dir.path().join("cache")).unwrap().count() >= 2);
    // Unload is refused while used, unless forced.
    let e = r
        .unload("m", false, |_| vec!["g/T (MOD)".into()])
        .unwrap_err();
    assert!(e.to_string().contains("g/T (MOD)"), "{e}");
    r.unload("m", true, |_| vec!["g/T (MOD)".into()]).unwrap();
    assert!(r.for_type("MOD").is_none());
    let r = Registry::open(Some(dir.path()), registry::DEFAULT_MAX_MODULE_BYTES).unwrap();
    assert_eq!(r.list().len(), 1);
}

#[test]
fn misbehaving_plugins_are_contained() {
    let r = registry();
    r.load(
        "bad",
        &wasm("misbehave"),
        vec![
            kv("wasmq.deadline_ms", "100"),
            kv("wasmq.memory_mb", "16"),
            kv("wasmq.quarantine_after", "100"),
        ],
    )
    .unwrap();
    let f = r.for_type("MISBEHAVE").unwrap();
    let b = batch(20);
    for expr in ["loop", "grow", "recurse", "panic", "bad-len", "huge"] {
        let t = Instant::now();
        let e = f.evaluate("MISBEHAVE", expr, &b).unwrap_err();
        assert!(matches!(e, EvalError::Failed { .. }), "{expr}: {e}");
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{expr} took {:?}",
            t.elapsed()
        );
        // The next call gets a fresh instance and works.
        let bits = f.evaluate("MISBEHAVE", "every:2", &b).unwrap();
        assert!(bit(&bits, 0) && !bit(&bits, 1), "{expr}");
    }
    let s = &f.stats;
    assert_eq!(s.failures.load(std::sync::atomic::Ordering::Relaxed), 6);
    assert!(!s.quarantined());
    let e = f.compile("MISBEHAVE", "compile-error").unwrap_err();
    assert_eq!(
        e,
        EvalError::Compile {
            position: 3,
            reason: match &e {
                EvalError::Compile { reason, .. } => reason.clone(),
                _ => unreachable!(),
            }
        }
    );
    assert!(matches!(
        f.compile("MISBEHAVE", "compile-panic").unwrap_err(),
        EvalError::Failed { .. }
    ));
}

#[test]
fn repeated_failures_quarantine_the_plugin() {
    let r = registry();
    r.load(
        "bad",
        &wasm("misbehave"),
        vec![kv("wasmq.quarantine_after", "3")],
    )
    .unwrap();
    let f = r.for_type("MISBEHAVE").unwrap();
    for _ in 0..3 {
        assert!(matches!(
            f.evaluate("MISBEHAVE", "panic", &batch(3)).unwrap_err(),
            EvalError::Failed { .. }
        ));
    }
    assert!(f.stats.quarantined());
    assert!(matches!(
        f.evaluate("MISBEHAVE", "ok", &batch(3)).unwrap_err(),
        EvalError::Quarantined(_)
    ));
    let l = r.list();
    let last = l[0].last_error.clone().unwrap_or_default();
    assert!(l[0].quarantined && last.starts_with("evaluate: "), "{last}");
    // An upgrade (here to the same module) brings a fresh, unquarantined version.
    r.upgrade("bad", &wasm("misbehave"), None).unwrap();
    let f = r.for_type("MISBEHAVE").unwrap();
    assert!(f.evaluate("MISBEHAVE", "ok", &batch(3)).is_ok());
}

fn half(props: &str) -> (String, String) {
    (props.to_string(), String::new())
}

fn check_batch(msgs: &[(String, String)]) -> BatchEncoder {
    let mut e = BatchEncoder::new();
    for (i, (props, body)) in msgs.iter().enumerate() {
        e.push(i as i64, 0, b"Orders", props.as_bytes(), body.as_bytes());
    }
    e
}

#[test]
fn txn_checkers_decide_batches_and_failures_are_contained() {
    let dir = tempfile::tempdir().unwrap();
    let r = Registry::open(Some(dir.path()), registry::DEFAULT_MAX_MODULE_BYTES).unwrap();
    let e = r
        .load(
            "d",
            &wasm("txn-deadline-checker"),
            vec![kv("deadline_ms", "x")],
        )
        .unwrap_err();
    assert!(matches!(e, PluginError::Config(_)), "{e}");
    let info = r
        .load(
            "d",
            &wasm("txn-deadline-checker"),
            vec![kv("deadline_ms", "1000"), kv("commit_property", "PAID")],
        )
        .unwrap();
    assert_eq!(info.kind, "txn-checker");
    assert!(info.expression_types.is_empty());
    assert!(r.get("d").is_none(), "not a filter");
    r.bind(PluginKind::TxnChecker, "Orders", "d").unwrap();
    assert!(r.bind(PluginKind::Filter, "Orders", "d").is_err());
    let c = r.txn_checker_for("Orders").unwrap();
    assert!(r.txn_checker_for("Other").is_none());
    let msgs = [half("PAID\u{1}true\u{2}"), half(""), half("")];
    let meta = [
        TxnMeta {
            age_ms: 0,
            checks: 0,
        },
        TxnMeta {
            age_ms: 10,
            checks: 3,
        },
        TxnMeta {
            age_ms: 1000,
            checks: 1,
        },
    ];
    let v = c.check(&check_batch(&msgs), &meta).unwrap();
    assert_eq!(
        v,
        [
            TxnVerdict::Commit,
            TxnVerdict::Unknown,
            TxnVerdict::Rollback
        ]
    );
    // Unload is refused while bound; bindings and the checker survive a restart.
    let e = r
        .unload("d", false, |_| Vec::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("txn-checker binding of topic Orders"), "{e}");
    drop(c);
    drop(r);
    let r = Registry::open(Some(dir.path()), registry::DEFAULT_MAX_MODULE_BYTES).unwrap();
    assert_eq!(r.txn_checker_for("Orders").unwrap().version, 1);
    r.unload("d", true, |_| Vec::new()).unwrap();
    assert!(r.bindings().is_empty());

    // Misbehaving checkers: each failure is contained and counted, the next call works.
    r.load(
        "bad",
        &wasm("txn-misbehave"),
        vec![
            kv("wasmq.deadline_ms", "50"),
            kv("wasmq.quarantine_after", "100"),
        ],
    )
    .unwrap();
    r.bind(PluginKind::TxnChecker, "*", "bad").unwrap();
    let c = r.txn_checker_for("Anything").unwrap();
    for mode in ["trap", "loop", "grow", "bad-len"] {
        let start = Instant::now();
        let props = format!("TXN_TEST\u{1}{mode}\u{2}");
        let err = c
            .check(&check_batch(&[half(&props)]), &[TxnMeta::default()])
            .unwrap_err();
        assert!(matches!(err, EvalError::Failed { .. }), "{mode}: {err}");
        assert!(start.elapsed() < Duration::from_secs(10), "{mode}");
        let ok = c
            .check(
                &check_batch(&[half("TXN_TEST\u{1}commit\u{2}"), half("")]),
                &[TxnMeta::default(); 2],
            )
            .unwrap();
        assert_eq!(
            ok,
            [TxnVerdict::Commit, TxnVerdict::Unknown],
            "after {mode}"
        );
    }
    assert_eq!(
        c.stats.failures.load(std::sync::atomic::Ordering::Relaxed),
        4
    );
}

#[test]
fn routers_give_one_verdict_per_message_and_failures_are_contained() {
    let r = registry();
    r.load("hr", &wasm("hash-router"), vec![]).unwrap();
    r.load(
        "guard",
        &wasm("schema-guard"),
        vec![kv("required", "id,type")],
    )
    .unwrap();
    r.load(
        "rm",
        &wasm("router-misbehave"),
        vec![
            kv("wasmq.deadline_ms", "50"),
            kv("wasmq.quarantine_after", "100"),
        ],
    )
    .unwrap();
    r.bind(PluginKind::Router, "Keyed", "hr").unwrap();
    r.bind(PluginKind::Router, "Events", "guard").unwrap();
    r.bind(PluginKind::Router, "*", "rm").unwrap();
    let hr = r.router_for("Keyed").unwrap();
    assert!(!hr.needs_body);
    let mut e = BatchEncoder::new();
    for k in ["a", "b", "a", ""] {
        let props = if k.is_empty() {
            String::new()
        } else {
            format!("KEYS\u{1}{k}\u{2}")
        };
        e.push(3, 0, b"Keyed", props.as_bytes(), b"");
    }
    let v = hr.route(4, &e).unwrap();
    let q = |i: usize| match v[i].route {
        Destination::Queue(q) => Some(q),
        _ => None,
    };
    // RocketMQ's SelectMessageQueueByHash: |hashCode % n|.
    let a = (crate::store::record::tag_hash("a") % 4).unsigned_abs();
    assert_eq!(q(0), Some(a as u32));
    assert_eq!(q(0), q(2), "one key, one queue");
    assert_eq!(v[3].route, Destination::Keep, "no key: the client's choice");

    let guard = r.router_for("Events").unwrap();
    assert!(guard.needs_body);
    let mut e = BatchEncoder::new();
    for body in [r#"{"id":1,"type":"x"}"#, r#"{"id":1}"#, "nope"] {
        e.push(0, 0, b"Events", b"", body.as_bytes());
    }
    let v = guard.route(4, &e).unwrap();
    assert_eq!(v[0].route, Destination::Keep);
    assert!(
        matches!(&v[1].route, Destination::Reject(r) if r.contains("\"type\"")),
        "{v:?}"
    );
    assert!(matches!(&v[2].route, Destination::Reject(r) if r.contains("not valid JSON")));

    // Default binding; misbehaviour is contained and the next call works.
    let rm = r.router_for("Anything").unwrap();
    for mode in ["trap", "loop", "grow", "bad-len"] {
        let mut e = BatchEncoder::new();
        let props = format!("ROUTE_TEST\u{1}{mode}\u{2}");
        e.push(0, 0, b"Anything", props.as_bytes(), b"");
        let start = Instant::now();
        assert!(rm.route(4, &e).is_err(), "{mode}");
        assert!(start.elapsed() < Duration::from_secs(10));
        let mut ok = BatchEncoder::new();
        ok.push(0, 0, b"Anything", b"ROUTE_TEST\x01extra:A,B:1\x02", b"");
        let v = rm.route(4, &ok).unwrap();
        assert_eq!(v[0].route, Destination::Keep);
        assert_eq!(
            v[0].extra,
            [
                RouteTarget {
                    topic: "A".into(),
                    queue: None
                },
                RouteTarget {
                    topic: "B".into(),
                    queue: Some(1)
                }
            ]
        );
    }
    // A router cannot be bound as a txn-checker, nor upgraded into one.
    assert!(r.bind(PluginKind::TxnChecker, "T", "hr").is_err());
    assert!(r.upgrade("hr", &wasm("txn-misbehave"), None).is_err());
}
