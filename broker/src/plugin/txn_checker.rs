//! One loaded version of a transaction check-back handler (WIT world `txn-checker-plugin`):
//! a typed batched call on the shared instance path of [`super::instance`] (pool, deadline,
//! failure accounting, quarantine). The transaction checker ([`crate::transaction::check`])
//! calls it for half messages due for a check, before asking the producer group.

use std::ops::Deref;
use std::sync::Arc;

use super::batch::BatchEncoder;
use super::engine::PluginEngine;
use super::error::{EvalError, PluginError};
use super::guest::trap_reason;
use super::instance::{Versioned, Warm};
use super::module::Module;

mod wit {
    wasmtime::component::bindgen!({
        world: "txn-checker-plugin",
        path: "../plugin-sdk/wit",
    });
}

use wit::exports::wasmq::plugin::txn_checker as wit_txn;

/// A checker's decision on one half message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnVerdict {
    /// Undecided: ask the producer group, check again later.
    Unknown,
    Commit,
    Rollback,
}

/// What the checker is told about a half message besides its bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxnMeta {
    /// Milliseconds since the half message was stored.
    pub age_ms: u64,
    /// Checks made before this one.
    pub checks: u32,
}

/// The world `txn-checker-plugin`.
pub struct TxnCheckerWorld;

super::instance::world!(
    TxnCheckerWorld,
    TxnChecker,
    TxnCheckerPlugin,
    TxnCheckerPluginPre,
    (),
    wasmq_plugin_txn_checker
);

pub struct LoadedChecker {
    plugin: Versioned<TxnCheckerWorld>,
}

/// Name, version, config, limits, stats, `retire` and `count_failure` are the shared ones.
impl Deref for LoadedChecker {
    type Target = Versioned<TxnCheckerWorld>;
    fn deref(&self) -> &Self::Target {
        &self.plugin
    }
}

impl LoadedChecker {
    /// Validates and activates a compiled module (see `Versioned::load`): export, ABI
    /// version, config, and a self-test (an empty batch must give no verdicts).
    pub fn from_module(
        engine: &PluginEngine,
        name: &str,
        version: u64,
        module: &Module,
        config: Vec<(String, String)>,
    ) -> Result<Arc<LoadedChecker>, PluginError> {
        let (plugin, ()) = Versioned::load(engine, name, version, module, config, self_test)?;
        Ok(Arc::new(LoadedChecker { plugin }))
    }

    /// Decides a batch of half messages (`meta[i]` describes message i): one verdict each.
    /// A trap, timeout or wrong number of verdicts is counted and returned as a failure; the
    /// caller applies the plugin's policy.
    pub fn check(
        &self,
        batch: &BatchEncoder,
        meta: &[TxnMeta],
    ) -> Result<Vec<TxnVerdict>, EvalError> {
        let n = batch.count();
        debug_assert_eq!(n, meta.len());
        if n == 0 {
            return Ok(Vec::new());
        }
        let v = self.call(n, |w| {
            let meta: Vec<wit_txn::TxnMeta> = meta
                .iter()
                .map(|m| wit_txn::TxnMeta {
                    age_ms: m.age_ms,
                    checks: m.checks,
                })
                .collect();
            let (b, store) = w.armed();
            let v = b
                .wasmq_plugin_txn_checker()
                .call_check(store, batch.bytes(), &meta)
                .map_err(|e| self.failed(format!("check: {}", trap_reason(&e))))?;
            if v.len() == n {
                Ok(v)
            } else {
                Err(self.failed(format!(
                    "check returned {} verdicts for {n} messages",
                    v.len()
                )))
            }
        })?;
        Ok(v.into_iter()
            .map(|v| match v {
                wit_txn::TxnVerdict::Unknown => TxnVerdict::Unknown,
                wit_txn::TxnVerdict::Commit => TxnVerdict::Commit,
                wit_txn::TxnVerdict::Rollback => TxnVerdict::Rollback,
            })
            .collect())
    }
}

/// An empty batch must give no verdicts.
fn self_test(w: &mut Warm<TxnCheckerWorld>) -> Result<(), PluginError> {
    let (b, store) = w.armed();
    let out = b
        .wasmq_plugin_txn_checker()
        .call_check(store, BatchEncoder::new().bytes(), &[])
        .map_err(|e| {
            PluginError::Invalid(format!(
                "self-test check of an empty batch: {}",
                trap_reason(&e)
            ))
        })?;
    if !out.is_empty() {
        return Err(PluginError::Invalid(format!(
            "self-test: an empty batch gave {} verdicts, expected 0",
            out.len()
        )));
    }
    Ok(())
}
