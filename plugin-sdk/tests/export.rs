//! The glue behind `export_filter!`, driven natively through a small filter.

use wasmq_plugin_sdk::bindings::wasmq::plugin::types as wit;
use wasmq_plugin_sdk::glue::{self, HandleTable};
use wasmq_plugin_sdk::{encode_batch, CompileError, Compiled, Filter, Message, MessageSpec};

/// Matches messages whose queue offset is a multiple of the expression.
struct EveryNth;

impl Filter for EveryNth {
    type Compiled = i64;

    fn expression_types() -> &'static [&'static str] {
        &["NTH"]
    }

    fn compile(_: &str, expression: &str) -> Result<Compiled<i64>, CompileError> {
        match expression.parse::<i64>() {
            Ok(n) if n > 0 => Ok(Compiled::new(n).without_body()),
            _ => Err(CompileError::new(0, "expected a positive integer")),
        }
    }

    fn matches(n: &i64, message: &Message<'_>) -> bool {
        message.queue_offset() % n == 0
    }
}

// The macro must expand (and link) natively as well.
wasmq_plugin_sdk::export_filter!(EveryNth);

fn batch(count: i64) -> Vec<u8> {
    let specs: Vec<_> = (0..count)
        .map(|i| MessageSpec {
            queue_offset: i,
            topic: "t",
            ..Default::default()
        })
        .collect();
    encode_batch(&specs)
}

fn compile(table: &mut HandleTable<i64>, ty: &str, expr: &str) -> Result<u32, wit::CompileError> {
    let compiled =
        glue::compile_expression::<EveryNth>(ty, expr).map_err(glue::to_wit_compile_error)?;
    let out = glue::register(table, compiled)?;
    assert!(!out.needs_body);
    assert!(matches!(out.prefilter, wit::Prefilter::None));
    Ok(out.handle)
}

#[test]
fn compile_evaluate_release() {
    let mut table = HandleTable::new();
    let h3 = compile(&mut table, "NTH", "3").unwrap();
    let h2 = compile(&mut table, "NTH", "2").unwrap();
    assert_ne!(h2, h3);

    // Offsets 0..10: multiples of 3 are 0, 3, 6, 9.
    assert_eq!(
        glue::evaluate::<EveryNth>(&table, h3, &batch(10)),
        [0b0100_1001, 0b0000_0010]
    );
    assert_eq!(
        glue::evaluate::<EveryNth>(&table, h2, &batch(9)),
        [0b0101_0101, 0b0000_0001]
    );
    assert_eq!(glue::evaluate::<EveryNth>(&table, h2, &batch(0)), [0u8; 0]);

    // Malformed batch or unknown handle: empty list.
    let mut bad = batch(10);
    bad.pop();
    assert!(glue::evaluate::<EveryNth>(&table, h2, &bad).is_empty());
    assert!(glue::evaluate::<EveryNth>(&table, 12345, &batch(10)).is_empty());

    // A released handle stays dead even when its slot is reused.
    assert_eq!(table.remove(h3), Some(3));
    assert_eq!(table.remove(h3), None);
    let h5 = compile(&mut table, "NTH", "5").unwrap();
    assert_ne!(h5, h3);
    assert!(glue::evaluate::<EveryNth>(&table, h3, &batch(10)).is_empty());
    assert_eq!(
        glue::evaluate::<EveryNth>(&table, h5, &batch(10)),
        [0b0010_0001, 0]
    );
    assert_eq!(table.len(), 2);
}

#[test]
fn compile_errors() {
    let mut table = HandleTable::new();
    let e = compile(&mut table, "SQL92", "3").unwrap_err();
    assert_eq!(e.position, 0);
    assert!(e.reason.contains("SQL92"), "{}", e.reason);
    assert!(compile(&mut table, "NTH", "zero").is_err());
    assert!(table.is_empty());
}

#[test]
fn expression_types_and_config() {
    assert_eq!(glue::expression_types::<EveryNth>(), ["NTH"]);
    assert_eq!(
        EveryNth::configure(&[("any".into(), "thing".into())]),
        Ok(())
    );
}
