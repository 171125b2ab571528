//! The `MISBEHAVE` expression type: a plugin that does what the broker's containment tests
//! ask of it, inside `evaluate`, chosen by the expression:
//!
//! | expression | `evaluate` does                                                        |
//! |------------|------------------------------------------------------------------------|
//! | `ok`       | matches every message                                                  |
//! | `none`     | matches no message                                                     |
//! | `every:N`  | matches messages whose queue offset is a multiple of N (N >= 1)        |
//! | `loop`     | spins forever (deadline / epoch interruption)                          |
//! | `grow`     | allocates and touches memory without bound (memory cap)                |
//! | `recurse`  | recurses without bound (stack cap)                                     |
//! | `panic`    | panics (a trap: the crate is built with `panic = "abort"`)             |
//! | `bad-len`  | returns `ceil(count / 8) + 1` bytes (a bad result)                     |
//! | `huge`     | returns a 64 MiB list (output size cap)                                |
//!
//! In `compile`: an expression starting with `compile-panic` panics, one starting with
//! `compile-error` fails with a compile error at position 3; anything else unknown is a
//! compile error at position 0. Bodies are never needed.
//!
//! This crate implements the raw WIT interface from `wasmq_plugin_sdk::bindings` (the export
//! macro's `Filter` trait cannot return a wrong-length bitset), reusing the SDK's decoder.

use std::cell::RefCell;
use std::hint::black_box;

use wasmq_plugin_sdk::bindings::exports::wasmq::plugin::filter::{CompileError, Compiled, Guest};
use wasmq_plugin_sdk::bindings::wasmq::plugin::types::Prefilter;
use wasmq_plugin_sdk::glue::{evaluate_batch, HandleTable};
use wasmq_plugin_sdk::{bitset_len, Batch, ABI_VERSION};

/// The expression type served.
pub const EXPRESSION_TYPE: &str = "MISBEHAVE";
/// Size of the `huge` result.
pub const HUGE_LEN: usize = 64 << 20;

/// What `evaluate` does for a compiled expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Match all.
    Ok,
    /// Match none.
    None,
    /// Match queue offsets divisible by N.
    Every(i64),
    /// Infinite loop.
    Loop,
    /// Unbounded memory growth.
    Grow,
    /// Unbounded recursion.
    Recurse,
    /// Panic.
    Panic,
    /// Wrong-length result.
    BadLen,
    /// 64 MiB result.
    Huge,
}

/// Parses an expression (the `compile-*` prefixes are handled by `compile`).
pub fn parse(expression: &str) -> Result<Behaviour, CompileError> {
    let error = |position: u32, reason: String| CompileError { position, reason };
    Ok(match expression {
        "ok" => Behaviour::Ok,
        "none" => Behaviour::None,
        "loop" => Behaviour::Loop,
        "grow" => Behaviour::Grow,
        "recurse" => Behaviour::Recurse,
        "panic" => Behaviour::Panic,
        "bad-len" => Behaviour::BadLen,
        "huge" => Behaviour::Huge,
        _ => match expression.strip_prefix("every:") {
            Some(n) => match n.parse::<i64>() {
                Ok(n) if n >= 1 => Behaviour::Every(n),
                _ => return Err(error(6, format!("expected an integer >= 1, got `{n}`"))),
            },
            None => return Err(error(0, format!("unknown behaviour `{expression}`"))),
        },
    })
}

thread_local! {
    static HANDLES: RefCell<HandleTable<Behaviour>> = const { RefCell::new(HandleTable::new()) };
}

/// The raw `wasmq:plugin/filter` implementation.
pub struct Misbehave;

impl Guest for Misbehave {
    fn abi_version() -> u32 {
        ABI_VERSION
    }

    fn expression_types() -> Vec<String> {
        vec![EXPRESSION_TYPE.to_owned()]
    }

    fn configure(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn compile(expression_type: String, expression: String) -> Result<Compiled, CompileError> {
        if expression_type != EXPRESSION_TYPE {
            return Err(CompileError {
                position: 0,
                reason: format!("expression type `{expression_type}` is not served"),
            });
        }
        if expression.starts_with("compile-panic") {
            panic!("misbehave: panic in compile, as requested");
        }
        if expression.starts_with("compile-error") {
            return Err(CompileError {
                position: 3,
                reason: "misbehave: compile error, as requested".to_owned(),
            });
        }
        let behaviour = parse(&expression)?;
        let handle = HANDLES
            .with_borrow_mut(|table| table.insert(behaviour))
            .ok_or_else(|| CompileError {
                position: 0,
                reason: "too many compiled expressions".to_owned(),
            })?;
        Ok(Compiled {
            handle,
            prefilter: Prefilter::None,
            needs_body: false,
        })
    }

    fn release(handle: u32) {
        HANDLES.with_borrow_mut(|table| {
            table.remove(handle);
        });
    }

    fn evaluate(handle: u32, batch: Vec<u8>) -> Vec<u8> {
        let Some(behaviour) = HANDLES.with_borrow(|table| table.get(handle).copied()) else {
            return Vec::new();
        };
        evaluate(behaviour, &batch)
    }
}

/// `evaluate` for one behaviour.
pub fn evaluate(behaviour: Behaviour, batch: &[u8]) -> Vec<u8> {
    let bits = |matches: &dyn Fn(i64) -> bool| {
        evaluate_batch(batch, |m| matches(m.queue_offset()))
            .map(|bits| bits.into_bytes())
            .unwrap_or_default()
    };
    match behaviour {
        Behaviour::Ok => bits(&|_| true),
        Behaviour::None => bits(&|_| false),
        Behaviour::Every(n) => bits(&|offset| offset.rem_euclid(n) == 0),
        Behaviour::Loop => spin(),
        Behaviour::Grow => grow(),
        Behaviour::Recurse => vec![recurse(0) as u8],
        Behaviour::Panic => panic!("misbehave: panic in evaluate, as requested"),
        Behaviour::BadLen => {
            let count = Batch::new(batch).map_or(0, |b| b.message_count() as usize);
            vec![0xff; bitset_len(count) + 1]
        }
        Behaviour::Huge => vec![0xff; HUGE_LEN],
    }
}

/// Never returns and never yields.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n).wrapping_add(1);
    }
}

/// Allocates 1 MiB chunks, writes every page of each and keeps them all, until the
/// allocator fails (which aborts: a trap).
fn grow() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        for page in chunk.chunks_mut(4096) {
            page[0] = 1;
        }
        hoard.push(black_box(chunk));
    }
}

/// Recurses until the stack runs out; the work after the call keeps it from being a tail
/// call, and `black_box` keeps the optimiser from seeing that it never ends.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let frame = black_box([depth; 8]);
    recurse(depth + 1).wrapping_add(frame[(depth % 8) as usize])
}

// Export symbols only for wasm (their names do not link into a native cdylib).
#[cfg(target_arch = "wasm32")]
wasmq_plugin_sdk::export_filter_world!(Misbehave with_types_in wasmq_plugin_sdk::bindings);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmq_plugin_sdk::{encode_batch, MessageSpec};

    fn batch(offsets: std::ops::Range<i64>) -> Vec<u8> {
        let specs: Vec<_> = offsets
            .map(|queue_offset| MessageSpec {
                queue_offset,
                topic: "t",
                ..Default::default()
            })
            .collect();
        encode_batch(&specs)
    }

    #[test]
    fn parse_behaviours() {
        assert_eq!(parse("ok").unwrap(), Behaviour::Ok);
        assert_eq!(parse("every:4").unwrap(), Behaviour::Every(4));
        assert_eq!(parse("every:0").unwrap_err().position, 6);
        assert_eq!(parse("dance").unwrap_err().position, 0);
    }

    #[test]
    fn well_behaved_results() {
        let b = batch(0..10);
        assert_eq!(evaluate(Behaviour::Ok, &b), [0xff, 0b11]);
        assert_eq!(evaluate(Behaviour::None, &b), [0, 0]);
        assert_eq!(evaluate(Behaviour::Every(4), &b), [0b0001_0001, 0b01]);
        assert_eq!(evaluate(Behaviour::BadLen, &b).len(), 3);
        assert!(evaluate(Behaviour::Ok, &b[..20]).is_empty());
    }

    #[test]
    fn compile_requests() {
        let e = Misbehave::compile(EXPRESSION_TYPE.into(), "compile-error now".into()).unwrap_err();
        assert_eq!(e.position, 3);
        let c = Misbehave::compile(EXPRESSION_TYPE.into(), "every:2".into()).unwrap();
        assert_eq!(Misbehave::evaluate(c.handle, batch(0..3)), [0b101]);
        Misbehave::release(c.handle);
        assert!(Misbehave::evaluate(c.handle, batch(0..3)).is_empty());
    }
}
