//! One loaded version of a transaction check-back handler (WIT world `txn-checker-plugin`):
//! warm instances, a typed batched call under a deadline, and the same failure accounting as
//! filters. The transaction checker ([`crate::transaction::check`]) calls it for half messages
//! due for a check, before asking the producer group.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::Store;

use super::batch::BatchEncoder;
use super::engine::PluginEngine;
use super::filter::EvalError;
use super::guest::{self, trap_reason, GuestState, Pool, Stats};
use super::limits::PluginLimits;
use super::PluginError;

mod wit {
    wasmtime::component::bindgen!({
        world: "txn-checker-plugin",
        path: "../plugin-sdk/wit",
    });
}

use wit::exports::wasmq::plugin::txn_checker as wit_txn;

/// The export a transaction checker must have.
pub const TXN_CHECKER_EXPORT: &str = "wasmq:plugin/txn-checker@0.1.0";

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

struct Warm {
    store: Store<GuestState>,
    bindings: wit::TxnCheckerPlugin,
}

pub struct LoadedChecker {
    pub name: String,
    pub version: u64,
    pub sha256: String,
    pub size: usize,
    /// The operator's config as given (host `wasmq.*` keys included), persisted as is.
    pub config: Vec<(String, String)>,
    pub limits: PluginLimits,
    plugin_config: Vec<(String, String)>,
    pre: wit::TxnCheckerPluginPre<GuestState>,
    ticks: u64,
    pool: Pool<Warm>,
    pub stats: Stats,
}

impl LoadedChecker {
    /// Validates and activates a module: header, exports, ABI version, config, and a
    /// self-test (an empty batch must give no verdicts).
    pub fn load(
        engine: &PluginEngine,
        name: &str,
        version: u64,
        wasm: &[u8],
        config: Vec<(String, String)>,
    ) -> Result<Arc<LoadedChecker>, PluginError> {
        let c = super::registry::Module::compile(engine, wasm)?;
        Self::from_module(engine, name, version, &c, config)
    }

    /// As [`load`](Self::load), from a module already compiled.
    pub fn from_module(
        engine: &PluginEngine,
        name: &str,
        version: u64,
        module: &super::registry::Module,
        config: Vec<(String, String)>,
    ) -> Result<Arc<LoadedChecker>, PluginError> {
        let (limits, plugin_config) = PluginLimits::from_config(&config)?;
        let component = &module.component;
        let sha256 = module.sha256.clone();
        guest::check_export(&module.exports, TXN_CHECKER_EXPORT)?;
        let pre = wit::TxnCheckerPluginPre::new(guest::link(engine, component)?).map_err(|e| {
            PluginError::Invalid(format!("does not export {TXN_CHECKER_EXPORT}: {e:#}"))
        })?;
        let c = LoadedChecker {
            name: name.to_string(),
            version,
            sha256,
            size: module.size,
            config,
            ticks: PluginEngine::ticks(limits.deadline_ms),
            limits,
            plugin_config,
            pre,
            pool: Pool::default(),
            stats: Stats::default(),
        };
        let mut w = c.instantiate().map_err(guest::load_error)?;
        let g = w.bindings.wasmq_plugin_txn_checker();
        w.store.set_epoch_deadline(c.ticks);
        guest::check_abi(g.call_abi_version(&mut w.store))?;
        w.store.set_epoch_deadline(c.ticks);
        let out = g
            .call_check(&mut w.store, BatchEncoder::new().bytes(), &[])
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
        c.pool.give_back(w);
        Ok(Arc::new(c))
    }

    /// Marks this version replaced or unloaded.
    pub fn retire(&self) {
        self.pool.retire();
    }

    fn failed(&self, reason: String) -> EvalError {
        guest::failed(&self.name, reason)
    }

    fn instantiate(&self) -> Result<Warm, EvalError> {
        let (store, bindings) = guest::instantiate(
            self.pre.engine(),
            &self.limits,
            self.ticks,
            &self.name,
            |store| self.pre.instantiate(store),
            |b, store| {
                b.wasmq_plugin_txn_checker()
                    .call_configure(store, &self.plugin_config)
            },
        )?;
        Ok(Warm { store, bindings })
    }

    fn count_failure(&self, e: &EvalError) {
        if let EvalError::Failed { reason, .. } = e {
            self.stats.failure(
                &self.name,
                self.version,
                self.limits.quarantine_after,
                reason,
            );
        }
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
        if self.stats.quarantined() {
            return Err(EvalError::Quarantined(self.name.clone()));
        }
        let mut w = self
            .pool
            .take(|| self.instantiate().inspect_err(|e| self.count_failure(e)))?;
        let start = Instant::now();
        let meta: Vec<wit_txn::TxnMeta> = meta
            .iter()
            .map(|m| wit_txn::TxnMeta {
                age_ms: m.age_ms,
                checks: m.checks,
            })
            .collect();
        w.store.set_epoch_deadline(self.ticks);
        let r = w
            .bindings
            .wasmq_plugin_txn_checker()
            .call_check(&mut w.store, batch.bytes(), &meta)
            .map_err(|e| self.failed(format!("check: {}", trap_reason(&e))))
            .and_then(|v| {
                if v.len() == n {
                    Ok(v)
                } else {
                    Err(self.failed(format!(
                        "check returned {} verdicts for {n} messages",
                        v.len()
                    )))
                }
            });
        match r {
            Ok(v) => {
                self.stats.success(n, start.elapsed().as_nanos() as u64);
                self.pool.give_back(w);
                Ok(v.into_iter()
                    .map(|v| match v {
                        wit_txn::TxnVerdict::Unknown => TxnVerdict::Unknown,
                        wit_txn::TxnVerdict::Commit => TxnVerdict::Commit,
                        wit_txn::TxnVerdict::Rollback => TxnVerdict::Rollback,
                    })
                    .collect())
            }
            Err(e) => {
                // The instance may be in any state after a trap: drop it.
                self.count_failure(&e);
                Err(e)
            }
        }
    }
}
