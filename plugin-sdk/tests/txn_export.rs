//! The glue behind `export_txn_checker!`, driven natively through a small checker.

use wasmq_plugin_sdk::glue::{self, check_batch};
use wasmq_plugin_sdk::txn_checker_bindings::exports::wasmq::plugin::txn_checker as wit;
use wasmq_plugin_sdk::{
    encode_batch, CheckError, DecodeErrorKind, Message, MessageSpec, TxnChecker, TxnMeta,
    TxnVerdict,
};

/// Commits messages tagged `done`, rolls back those checked 3 times or more, else unknown.
struct ByTag;

impl TxnChecker for ByTag {
    fn check(message: &Message<'_>, meta: TxnMeta) -> TxnVerdict {
        if message.tags() == Some("done") {
            TxnVerdict::Commit
        } else if meta.checks >= 3 {
            TxnVerdict::Rollback
        } else {
            TxnVerdict::Unknown
        }
    }
}

// The macro must expand (and link) natively as well.
wasmq_plugin_sdk::export_txn_checker!(ByTag);

fn batch(tags: &[&str]) -> Vec<u8> {
    let props: Vec<[(&str, &str); 2]> = tags
        .iter()
        .map(|t| [("TAGS", *t), ("PGROUP", "pg")])
        .collect();
    let specs: Vec<_> = props
        .iter()
        .enumerate()
        .map(|(i, p)| MessageSpec {
            queue_offset: i as i64,
            topic: "orders",
            properties: p,
            body: b"body",
            ..Default::default()
        })
        .collect();
    encode_batch(&specs)
}

fn wit_meta(checks: &[u32]) -> Vec<wit::TxnMeta> {
    checks
        .iter()
        .map(|&checks| wit::TxnMeta { age_ms: 5, checks })
        .collect()
}

#[test]
fn one_verdict_per_message_in_order() {
    let verdicts = glue::check::<ByTag>(
        &batch(&["done", "x", "x", "done"]),
        &wit_meta(&[0, 2, 3, 9]),
    );
    assert_eq!(
        verdicts,
        [
            wit::TxnVerdict::Commit,
            wit::TxnVerdict::Unknown,
            wit::TxnVerdict::Rollback,
            wit::TxnVerdict::Commit,
        ]
    );
    assert!(glue::check::<ByTag>(&batch(&[]), &[]).is_empty());
}

#[test]
fn meta_reaches_the_checker() {
    let meta = [
        TxnMeta {
            age_ms: 7,
            checks: 1,
        },
        TxnMeta {
            age_ms: u64::MAX,
            checks: u32::MAX,
        },
    ];
    let mut seen = Vec::new();
    let verdicts = check_batch(&batch(&["a", "b"]), &meta, |m, meta| {
        seen.push((m.tags().unwrap().to_owned(), m.body().to_vec(), meta));
        TxnVerdict::Unknown
    })
    .unwrap();
    assert_eq!(verdicts.len(), 2);
    assert_eq!(
        seen,
        [
            ("a".to_owned(), b"body".to_vec(), meta[0]),
            ("b".to_owned(), b"body".to_vec(), meta[1]),
        ]
    );
    let from_wit: TxnMeta = wit::TxnMeta {
        age_ms: 1,
        checks: 2,
    }
    .into();
    assert_eq!(
        from_wit,
        TxnMeta {
            age_ms: 1,
            checks: 2
        }
    );
}

#[test]
fn bad_batches_are_errors() {
    let good = batch(&["x", "y"]);
    let meta = [TxnMeta::default(); 2];
    let run = |bytes: &[u8], meta: &[TxnMeta]| check_batch(bytes, meta, ByTag::check);
    assert_eq!(
        run(&good, &meta[..1]),
        Err(CheckError::MetaLength {
            messages: 2,
            meta: 1
        })
    );
    let three = [TxnMeta::default(); 3];
    assert!(matches!(
        run(&good, &three),
        Err(CheckError::MetaLength { meta: 3, .. })
    ));
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        run(&trailing, &meta),
        Err(CheckError::Decode(e)) if e.kind == DecodeErrorKind::TrailingBytes
    ));
    assert!(matches!(
        run(&good[..good.len() - 1], &meta),
        Err(CheckError::Decode(_))
    ));
    assert!(matches!(run(&[], &[]), Err(CheckError::Decode(_))));
}

#[test]
#[should_panic(expected = "1 meta entries for 2 messages")]
fn the_export_traps_on_a_meta_length_mismatch() {
    glue::check::<ByTag>(&batch(&["x", "y"]), &wit_meta(&[0]));
}

#[test]
#[should_panic(expected = "malformed batch")]
fn the_export_traps_on_a_malformed_batch() {
    let bytes = batch(&["x"]);
    glue::check::<ByTag>(&bytes[..bytes.len() - 2], &wit_meta(&[0]));
}

#[test]
fn default_configure_accepts_anything() {
    assert_eq!(ByTag::configure(&[("any".into(), "thing".into())]), Ok(()));
    assert_eq!(TxnVerdict::default(), TxnVerdict::Unknown);
    assert_eq!(
        wit::TxnVerdict::from(TxnVerdict::Rollback),
        wit::TxnVerdict::Rollback
    );
}
