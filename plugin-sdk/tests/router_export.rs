//! The glue behind `export_router!`, driven natively through a small router.

use wasmq_plugin_sdk::glue::{self, route_batch};
use wasmq_plugin_sdk::router_bindings::exports::wasmq::plugin::router as wit;
use wasmq_plugin_sdk::{
    encode_batch, BatchBuilder, DecodeErrorKind, Message, MessageSpec, Route, Router, Target,
    Verdict,
};

/// By tag: `q` -> queue (born timestamp mod write queues), `r` -> redirect to `<topic>-r`
/// keeping the client's queue, `x` -> reject, `c` -> keep plus two extra targets, else keep.
struct ByTag;

impl Router for ByTag {
    fn route(message: &Message<'_>, write_queues: u32) -> Verdict {
        match message.tags() {
            Some("q") => Verdict::queue((message.born_timestamp() as u32) % write_queues),
            Some("r") => {
                Verdict::redirect(format!("{}-r", message.topic()), message.client_queue_id())
            }
            Some("x") => Verdict::reject(format!("tag x (body {} bytes)", message.body().len())),
            Some("c") => Verdict::keep()
                .with_extra("copy")
                .with_extra(Target::new("audit", Some(2))),
            _ => Verdict::keep(),
        }
    }
}

// The macro must expand (and link) natively as well.
wasmq_plugin_sdk::export_router!(ByTag);

/// One message per tag, as the host encodes a send request: queue id i, born timestamp 10+i.
fn batch(tags: &[&str]) -> Vec<u8> {
    let props: Vec<[(&str, &str); 1]> = tags.iter().map(|t| [("TAGS", *t)]).collect();
    let specs: Vec<_> = props
        .iter()
        .enumerate()
        .map(|(i, p)| MessageSpec {
            queue_offset: i as i64,
            store_timestamp: 10 + i as i64,
            topic: "orders",
            properties: p,
            body: b"",
        })
        .collect();
    encode_batch(&specs)
}

#[test]
fn one_verdict_per_message_in_order() {
    let verdicts = glue::route::<ByTag>(4, &batch(&["q", "r", "x", "c", "none", "r"]));
    // The WIT types have no `PartialEq`: compare through the SDK's (a lossless conversion).
    let verdicts: Vec<Verdict> = verdicts.into_iter().map(Verdict::from).collect();
    assert_eq!(
        verdicts,
        [
            Verdict::queue(2), // born 10 % 4
            Verdict::redirect("orders-r", Some(1)),
            Verdict::reject("tag x (body 0 bytes)"),
            Verdict {
                route: Route::Keep,
                extra: vec![Target::new("copy", None), Target::new("audit", Some(2))],
            },
            Verdict::keep(),
            Verdict::redirect("orders-r", Some(5)),
        ]
    );
    // And the WIT shape itself.
    let wit_verdict = glue::to_wit_router_verdict(Verdict::redirect("t", Some(3)).with_extra("e"));
    assert!(matches!(
        &wit_verdict.route,
        wit::Destination::Redirect(wit::Target { topic, queue: Some(3) }) if topic == "t"
    ));
    assert!(matches!(
        wit_verdict.extra.as_slice(),
        [wit::Target { topic, queue: None }] if topic == "e"
    ));
    assert!(glue::route::<ByTag>(4, &batch(&[])).is_empty());
}

#[test]
fn router_fields_travel_in_queue_offset_and_store_timestamp() {
    let mut builder = BatchBuilder::new();
    builder.push_raw(3, 1_700_000_000_123, "t", b"", b"{}");
    builder.push_raw(-1, 0, "t", b"", b"");
    builder.push_raw(i64::from(u32::MAX) + 1, 0, "t", b"", b"");
    let bytes = builder.finish();
    let mut seen = Vec::new();
    let verdicts = route_batch(&bytes, |m| {
        seen.push((m.client_queue_id(), m.born_timestamp(), m.body().len()));
        Verdict::keep()
    })
    .unwrap();
    assert_eq!(verdicts, vec![Verdict::keep(); 3]);
    assert_eq!(
        seen,
        [(Some(3), 1_700_000_000_123, 2), (None, 0, 0), (None, 0, 0)]
    );
}

#[test]
fn bad_batches_are_errors() {
    let good = batch(&["q", "r"]);
    let run = |bytes: &[u8]| route_batch(bytes, |m| ByTag::route(m, 4));
    assert_eq!(run(&good).unwrap().len(), 2);
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(run(&trailing), Err(e) if e.kind == DecodeErrorKind::TrailingBytes));
    assert!(run(&good[..good.len() - 1]).is_err());
    assert!(run(&[]).is_err());
}

#[test]
#[should_panic(expected = "wasmq router: malformed batch")]
fn the_export_traps_on_a_malformed_batch() {
    let bytes = batch(&["q"]);
    glue::route::<ByTag>(4, &bytes[..bytes.len() - 2]);
}

#[test]
fn defaults_constructors_and_conversions() {
    assert_eq!(ByTag::configure(&[("any".into(), "thing".into())]), Ok(()));
    assert!(!ByTag::needs_body());
    assert_eq!(Verdict::default(), Verdict::keep());
    assert_eq!(Route::default(), Route::Keep);
    assert_eq!(Verdict::from(Route::Queue(7)), Verdict::queue(7));
    assert_eq!(Target::from("a"), Target::new("a", None));
    assert_eq!(Target::from(String::from("a")), Target::new("a", None));
    let v = Verdict::redirect("t", Some(1))
        .with_extras(["x", "y"])
        .with_extras([Target::new("z", Some(0))]);
    assert_eq!(
        v,
        Verdict {
            route: Route::Redirect(Target::new("t", Some(1))),
            extra: vec![
                Target::new("x", None),
                Target::new("y", None),
                Target::new("z", Some(0)),
            ],
        }
    );
    // SDK -> WIT -> SDK is lossless.
    for v in [
        v,
        Verdict::keep(),
        Verdict::queue(u32::MAX),
        Verdict::reject("no"),
        Verdict::redirect("t", None).with_extra("e"),
    ] {
        let w: wit::Verdict = v.clone().into();
        assert_eq!(Verdict::from(w), v);
    }
    assert!(matches!(
        wit::Destination::from(Route::Reject("r".into())),
        wit::Destination::Reject(r) if r == "r"
    ));
    assert!(matches!(
        wit::Destination::from(Route::Keep),
        wit::Destination::Keep
    ));
    assert!(matches!(
        wit::Target::from(Target::new("t", Some(3))),
        wit::Target { topic, queue: Some(3) } if topic == "t"
    ));
}
