//! A transaction checker that does what the broker's containment tests ask of it, message
//! by message, chosen by the half message's property `TXN_TEST`:
//!
//! | `TXN_TEST`  | `check` does                                                        |
//! |-------------|---------------------------------------------------------------------|
//! | `commit`    | verdict commit                                                      |
//! | `rollback`  | verdict rollback                                                    |
//! | `trap`      | panics (a trap: the crate is built with `panic = "abort"`)          |
//! | `loop`      | spins forever (deadline / epoch interruption)                       |
//! | `grow`      | allocates and touches memory until allocation fails (memory cap)    |
//! | `bad-len`   | verdict unknown, but the whole list comes back one verdict short    |
//! | other, none | verdict unknown                                                     |
//!
//! Messages are handled in batch order, so a `trap`, `loop` or `grow` message stops the call
//! there. A malformed batch or a `meta` list of the wrong length traps, as with the SDK's
//! `export_txn_checker!`.
//!
//! `configure` accepts any settings, except `fail_configure`: `error` refuses the load with
//! an error, `trap` panics.
//!
//! This crate implements the raw WIT interface from `wasmq_plugin_sdk::txn_checker_bindings`
//! (the `TxnChecker` trait cannot return a short verdict list), reusing the SDK's decoder.

use std::hint::black_box;

use wasmq_plugin_sdk::glue::{check_batch, to_wit_verdict};
use wasmq_plugin_sdk::txn_checker_bindings::exports::wasmq::plugin::txn_checker::{
    Guest, TxnMeta as WitTxnMeta, TxnVerdict as WitTxnVerdict,
};
use wasmq_plugin_sdk::{CheckError, Message, TxnVerdict, ABI_VERSION};

/// The property choosing the behaviour.
pub const PROPERTY: &str = "TXN_TEST";

/// What `check` does for one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Verdict commit.
    Commit,
    /// Verdict rollback.
    Rollback,
    /// Panic.
    Trap,
    /// Infinite loop.
    Loop,
    /// Unbounded memory growth.
    Grow,
    /// Verdict unknown, and the verdict list one short.
    BadLen,
    /// Verdict unknown.
    Unknown,
}

impl Behaviour {
    /// The behaviour a message asks for.
    pub fn of(message: &Message<'_>) -> Behaviour {
        match message.property(PROPERTY) {
            Some("commit") => Behaviour::Commit,
            Some("rollback") => Behaviour::Rollback,
            Some("trap") => Behaviour::Trap,
            Some("loop") => Behaviour::Loop,
            Some("grow") => Behaviour::Grow,
            Some("bad-len") => Behaviour::BadLen,
            _ => Behaviour::Unknown,
        }
    }
}

/// The verdicts for a batch, carrying out the behaviours; `Err` for a malformed batch or a
/// wrong-length `meta` (which `check` turns into a trap).
pub fn verdicts<M>(batch: &[u8], meta: &[M]) -> Result<Vec<TxnVerdict>, CheckError>
where
    M: Copy + Into<wasmq_plugin_sdk::TxnMeta>,
{
    let mut short = false;
    let mut verdicts = check_batch(batch, meta, |message, _meta| match Behaviour::of(message) {
        Behaviour::Commit => TxnVerdict::Commit,
        Behaviour::Rollback => TxnVerdict::Rollback,
        Behaviour::Trap => panic!("txn-misbehave: trap, as requested"),
        Behaviour::Loop => spin(),
        Behaviour::Grow => grow(),
        Behaviour::BadLen => {
            short = true;
            TxnVerdict::Unknown
        }
        Behaviour::Unknown => TxnVerdict::Unknown,
    })?;
    if short {
        verdicts.pop();
    }
    Ok(verdicts)
}

/// The raw `wasmq:plugin/txn-checker` implementation.
pub struct TxnMisbehave;

impl Guest for TxnMisbehave {
    fn abi_version() -> u32 {
        ABI_VERSION
    }

    fn configure(config: Vec<(String, String)>) -> Result<(), String> {
        for (key, value) in &config {
            if key == "fail_configure" {
                match value.as_str() {
                    "error" => return Err("txn-misbehave: configure error, as requested".into()),
                    "trap" => panic!("txn-misbehave: panic in configure, as requested"),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn check(batch: Vec<u8>, meta: Vec<WitTxnMeta>) -> Vec<WitTxnVerdict> {
        match verdicts(&batch, &meta) {
            Ok(verdicts) => verdicts.into_iter().map(to_wit_verdict).collect(),
            Err(error) => panic!("txn-misbehave: {error}"),
        }
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

// Export symbols only for wasm (their names do not link into a native cdylib).
#[cfg(target_arch = "wasm32")]
wasmq_plugin_sdk::export_txn_checker_world!(
    TxnMisbehave with_types_in wasmq_plugin_sdk::txn_checker_bindings
);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmq_plugin_sdk::{encode_batch, MessageSpec, TxnMeta};

    fn batch(tests: &[Option<&str>]) -> Vec<u8> {
        let properties: Vec<Vec<(&str, &str)>> = tests
            .iter()
            .map(|t| t.map(|t| vec![(PROPERTY, t)]).unwrap_or_default())
            .collect();
        let specs: Vec<_> = properties
            .iter()
            .enumerate()
            .map(|(i, properties)| MessageSpec {
                queue_offset: i as i64,
                topic: "t",
                properties,
                ..Default::default()
            })
            .collect();
        encode_batch(&specs)
    }

    fn meta(n: usize) -> Vec<TxnMeta> {
        vec![TxnMeta::default(); n]
    }

    #[test]
    fn verdicts_by_property() {
        let tests = [
            Some("commit"),
            Some("rollback"),
            None,
            Some("COMMIT"),
            Some("dance"),
        ];
        assert_eq!(
            verdicts(&batch(&tests), &meta(5)).unwrap(),
            [
                TxnVerdict::Commit,
                TxnVerdict::Rollback,
                TxnVerdict::Unknown,
                TxnVerdict::Unknown,
                TxnVerdict::Unknown,
            ]
        );
    }

    #[test]
    fn bad_len_is_one_short() {
        let tests = [Some("commit"), Some("bad-len"), Some("rollback")];
        assert_eq!(
            verdicts(&batch(&tests), &meta(3)).unwrap(),
            [TxnVerdict::Commit, TxnVerdict::Unknown]
        );
        // Through the raw export too, with the WIT types.
        let wit_meta = vec![
            WitTxnMeta {
                age_ms: 0,
                checks: 0
            };
            3
        ];
        assert_eq!(TxnMisbehave::check(batch(&tests), wit_meta).len(), 2);
    }

    #[test]
    #[should_panic(expected = "trap, as requested")]
    fn trap_panics() {
        let _ = verdicts(&batch(&[Some("commit"), Some("trap")]), &meta(2));
    }

    #[test]
    #[should_panic(expected = "meta entries")]
    fn wrong_meta_length_traps() {
        TxnMisbehave::check(batch(&[None, None]), Vec::new());
    }

    #[test]
    fn configure_on_demand() {
        let setting = |v: &str| vec![("fail_configure".to_owned(), v.to_owned())];
        assert!(TxnMisbehave::configure(Vec::new()).is_ok());
        assert!(TxnMisbehave::configure(setting("no")).is_ok());
        assert!(TxnMisbehave::configure(setting("error")).is_err());
        assert_eq!(TxnMisbehave::abi_version(), ABI_VERSION);
    }
}
