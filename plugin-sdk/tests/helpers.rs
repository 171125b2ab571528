//! The test helpers (`wasmq_plugin_sdk::testing`) decide as the broker does: prefilters first,
//! then the plugin; routers and checkers get one verdict per message.

use wasmq_plugin_sdk::testing::{check, check_txn, route, TestMessage};
use wasmq_plugin_sdk::{
    java_string_hash, CompileError, Compiled, Filter, Message, Route, Router, TxnChecker, TxnMeta,
    TxnVerdict, Verdict,
};

/// `TAG` expressions `a || b` as a tag-hash prefilter; `*` as all.
struct Tags;

impl Filter for Tags {
    type Compiled = ();
    fn expression_types() -> &'static [&'static str] {
        &["TAG"]
    }
    fn compile(_: &str, expression: &str) -> Result<Compiled<()>, CompileError> {
        if expression.trim() == "*" {
            return Ok(Compiled::all(()));
        }
        let hashes = expression
            .split("||")
            .map(|t| java_string_hash(t.trim()))
            .collect();
        Ok(Compiled::tag_hashes((), hashes))
    }
    fn matches(_: &(), _: &Message<'_>) -> bool {
        panic!("a prefiltered expression is never evaluated by the plugin")
    }
}

#[test]
fn prefilters_decide_without_calling_matches() {
    let msgs = [
        TestMessage::new("T").tag("a"),
        TestMessage::new("T").tag("b"),
        TestMessage::new("T"),
    ];
    assert_eq!(
        check::<Tags>("tag", "a || c", &msgs),
        Ok(vec![true, false, false])
    );
    assert_eq!(check::<Tags>("TAG", "*", &msgs), Ok(vec![true, true, true]));
    assert!(
        check::<Tags>("SQL92", "a", &msgs).is_err(),
        "a type it does not serve"
    );
}

/// Queue = offset of the message modulo the queues; rejects empty bodies.
struct ByOffset;

impl Router for ByOffset {
    fn needs_body() -> bool {
        true
    }
    fn route(message: &Message<'_>, write_queues: u32) -> Verdict {
        if message.body().is_empty() {
            return Verdict::new(Route::Reject("empty body".into()));
        }
        Verdict::new(Route::Queue((message.queue_offset() as u32) % write_queues))
    }
}

#[test]
fn routers_get_bodies_and_offsets_in_order() {
    let msgs = [
        TestMessage::new("T").body("x"),
        TestMessage::new("T").body("y"),
        TestMessage::new("T"),
        TestMessage::new("T").body("z").queue_offset(7),
    ];
    let v: Vec<Route> = route::<ByOffset>(4, &msgs)
        .into_iter()
        .map(|v| v.route)
        .collect();
    assert_eq!(
        v,
        [
            Route::Queue(0),
            Route::Queue(1),
            Route::Reject("empty body".into()),
            Route::Queue(3)
        ]
    );
}

/// Commits after 3 checks, rolls back what is older than 1 s, else unknown.
struct Patient;

impl TxnChecker for Patient {
    fn check(_: &Message<'_>, meta: TxnMeta) -> TxnVerdict {
        if meta.age_ms > 1000 {
            TxnVerdict::Rollback
        } else if meta.checks >= 3 {
            TxnVerdict::Commit
        } else {
            TxnVerdict::Unknown
        }
    }
}

#[test]
fn checkers_see_each_half_messages_meta() {
    let m = TestMessage::new("T");
    let meta = |age_ms, checks| TxnMeta { age_ms, checks };
    assert_eq!(
        check_txn::<Patient>(&[
            (m.clone(), meta(10, 0)),
            (m.clone(), meta(10, 3)),
            (m, meta(5000, 0)),
        ]),
        [
            TxnVerdict::Unknown,
            TxnVerdict::Commit,
            TxnVerdict::Rollback
        ]
    );
}
