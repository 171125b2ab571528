//! One loaded version of a filter plugin: the pre-linked component, a pool of warm instances
//! (each with its own store, memory cap and compiled-expression handles), typed calls under a
//! deadline, and failure accounting that ends in quarantine.
//!
//! A trap, a timeout or a bad result never escapes as a panic: the instance that failed is
//! dropped (a fresh one is built on the next call), the failure is counted, and the caller
//! applies the plugin's [`FailurePolicy`](super::FailurePolicy).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use wasmtime::Store;

use super::batch::BatchEncoder;
use super::engine::PluginEngine;
use super::guest::{self, trap_reason, GuestState, Stats};
use super::limits::PluginLimits;
use super::PluginError;

mod wit {
    wasmtime::component::bindgen!({
        world: "filter-plugin",
        path: "../plugin-sdk/wit",
    });
}

use wit::wasmq::plugin::types as wit_types;

/// The export a filter plugin must have.
pub const FILTER_EXPORT: &str = "wasmq:plugin/filter@0.1.0";

/// Largest number of expression types one plugin may serve.
const MAX_TYPES: usize = 16;

/// Compiled handles one warm instance keeps before it releases them all.
const MAX_HANDLES: usize = 4096;

/// What the broker may decide without calling the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prefilter {
    None,
    All,
    /// Match exactly these consume-queue tag hashes.
    TagHashes(Arc<[i64]>),
}

/// An expression compiled by the plugin (the handle itself lives in each warm instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub prefilter: Prefilter,
    pub needs_body: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The expression does not compile (the consumer's error, not the plugin's).
    #[error("at position {position}: {reason}")]
    Compile { position: u32, reason: String },
    /// The plugin trapped, timed out or returned a bad result.
    #[error("plugin {name} failed: {reason}")]
    Failed { name: String, reason: String },
    #[error("plugin {0} is quarantined after repeated failures")]
    Quarantined(String),
}

/// Compile results: type -> expression -> result.
type CompileCache = HashMap<String, HashMap<String, Result<Compiled, EvalError>>>;

struct Warm {
    store: Store<GuestState>,
    bindings: wit::FilterPlugin,
    /// Handles by expression type, then expression (looked up without allocating).
    handles: HashMap<String, HashMap<String, u32>>,
}

pub struct LoadedFilter {
    pub name: String,
    pub version: u64,
    pub sha256: String,
    pub size: usize,
    pub expression_types: Vec<String>,
    /// The operator's config as given (host `wasmq.*` keys included), persisted as is.
    pub config: Vec<(String, String)>,
    pub limits: PluginLimits,
    plugin_config: Vec<(String, String)>,
    pre: wit::FilterPluginPre<GuestState>,
    ticks: u64,
    idle: Mutex<Vec<Warm>>,
    pub stats: Stats,
    retired: AtomicBool,
    /// Compile results by type and expression (a consumer's errors included, so a bad
    /// expression in every pull costs one lookup).
    compiled: Mutex<CompileCache>,
}

impl LoadedFilter {
    /// Validates and activates a module: header, exports, ABI version, config, self-test.
    pub fn load(
        engine: &PluginEngine,
        name: &str,
        version: u64,
        wasm: &[u8],
        config: Vec<(String, String)>,
    ) -> Result<Arc<LoadedFilter>, PluginError> {
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
    ) -> Result<Arc<LoadedFilter>, PluginError> {
        let (limits, plugin_config) = PluginLimits::from_config(&config)?;
        let component = &module.component;
        let sha256 = module.sha256.clone();
        guest::check_export(&module.exports, FILTER_EXPORT)?;
        let pre = guest::link(engine, component)?;
        let pre = wit::FilterPluginPre::new(pre)
            .map_err(|e| PluginError::Invalid(format!("does not export {FILTER_EXPORT}: {e:#}")))?;
        let mut f = LoadedFilter {
            name: name.to_string(),
            version,
            sha256,
            size: module.size,
            expression_types: Vec::new(),
            config,
            ticks: PluginEngine::ticks(limits.deadline_ms),
            limits,
            plugin_config,
            pre,
            idle: Mutex::new(Vec::new()),
            stats: Stats::default(),
            retired: AtomicBool::new(false),
            compiled: Mutex::new(HashMap::new()),
        };
        let mut w = f.instantiate().map_err(guest::load_error)?;
        let g = w.bindings.wasmq_plugin_filter();
        w.store.set_epoch_deadline(f.ticks);
        guest::check_abi(g.call_abi_version(&mut w.store))?;
        w.store.set_epoch_deadline(f.ticks);
        let mut types = g.call_expression_types(&mut w.store).map_err(|e| {
            PluginError::Invalid(format!("self-test expression-types: {}", trap_reason(&e)))
        })?;
        for t in &mut types {
            if t.is_empty()
                || t.len() > 32
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(PluginError::Invalid(format!(
                    "expression type {t:?} is not 1-32 characters of [A-Za-z0-9_-]"
                )));
            }
            t.make_ascii_uppercase();
        }
        types.sort();
        types.dedup();
        if types.is_empty() || types.len() > MAX_TYPES {
            return Err(PluginError::Invalid(format!(
                "a filter serves 1..{MAX_TYPES} expression types, this one names {}",
                types.len()
            )));
        }
        // Self-test: compiling an empty expression of each type must not trap (an error is
        // fine); a handle it returns must evaluate an empty batch to an empty bitset.
        for t in &types {
            w.store.set_epoch_deadline(f.ticks);
            let r = g.call_compile(&mut w.store, t, "").map_err(|e| {
                PluginError::Invalid(format!("self-test compile({t}, \"\"): {}", trap_reason(&e)))
            })?;
            if let Ok(c) = r {
                w.store.set_epoch_deadline(f.ticks);
                let out = g
                    .call_evaluate(&mut w.store, c.handle, BatchEncoder::new().bytes())
                    .map_err(|e| {
                        PluginError::Invalid(format!(
                            "self-test evaluate of an empty batch: {}",
                            trap_reason(&e)
                        ))
                    })?;
                if !out.is_empty() {
                    return Err(PluginError::Invalid(format!(
                        "self-test: an empty batch gave {} result bytes, expected 0",
                        out.len()
                    )));
                }
                w.store.set_epoch_deadline(f.ticks);
                let _ = g.call_release(&mut w.store, c.handle);
            }
        }
        f.expression_types = types;
        f.idle.get_mut().push(w);
        Ok(Arc::new(f))
    }

    /// Marks this version replaced or unloaded: subscriptions resolve again.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.idle.lock().clear();
    }

    pub fn retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Lifts quarantine (an operator reset); failures counted so far stay counted.
    pub fn serves(&self, ty: &str) -> bool {
        self.expression_types.iter().any(|t| t == ty)
    }

    fn instantiate(&self) -> Result<Warm, EvalError> {
        let (store, bindings) = guest::instantiate(
            self.pre.engine(),
            &self.limits,
            self.ticks,
            &self.name,
            |store| self.pre.instantiate(store),
            |b, store| {
                b.wasmq_plugin_filter()
                    .call_configure(store, &self.plugin_config)
            },
        )?;
        Ok(Warm {
            store,
            bindings,
            handles: HashMap::new(),
        })
    }

    fn failed(&self, reason: String) -> EvalError {
        guest::failed(&self.name, reason)
    }

    fn take(&self) -> Result<Warm, EvalError> {
        if self.stats.quarantined() {
            return Err(EvalError::Quarantined(self.name.clone()));
        }
        match self.idle.lock().pop() {
            Some(w) => Ok(w),
            None => self.instantiate().inspect_err(|e| self.count_failure(e)),
        }
    }

    fn give_back(&self, w: Warm) {
        if !self.retired() {
            self.idle.lock().push(w);
        }
    }

    fn count_failure(&self, e: &EvalError) {
        let EvalError::Failed { reason, .. } = e else {
            return;
        };
        self.stats.failure(
            &self.name,
            self.version,
            self.limits.quarantine_after,
            reason,
        );
    }

    /// [`compile`](Self::compile) once per type and expression; later calls answer from a cache.
    pub fn compiled(&self, ty: &str, expression: &str) -> Result<Compiled, EvalError> {
        if let Some(r) = self.compiled.lock().get(ty).and_then(|m| m.get(expression)) {
            return r.clone();
        }
        let r = self.compile(ty, expression);
        if matches!(r, Ok(_) | Err(EvalError::Compile { .. })) {
            let mut c = self.compiled.lock();
            if c.values().map(HashMap::len).sum::<usize>() >= MAX_HANDLES {
                c.clear();
            }
            c.entry(ty.to_string())
                .or_default()
                .insert(expression.to_string(), r.clone());
        }
        r
    }

    /// Compiles `expression` of type `ty` (upper-case), in a warm instance that keeps the
    /// handle for later batches.
    pub fn compile(&self, ty: &str, expression: &str) -> Result<Compiled, EvalError> {
        let mut w = self.take()?;
        match self.handle(&mut w, ty, expression) {
            Ok((_, c)) => {
                self.give_back(w);
                Ok(c)
            }
            Err(e @ EvalError::Compile { .. }) => {
                self.give_back(w);
                Err(e)
            }
            Err(e) => {
                self.count_failure(&e);
                Err(e)
            }
        }
    }

    fn handle(
        &self,
        w: &mut Warm,
        ty: &str,
        expression: &str,
    ) -> Result<(u32, Compiled), EvalError> {
        let g = w.bindings.wasmq_plugin_filter();
        if w.handles.values().map(HashMap::len).sum::<usize>() >= MAX_HANDLES {
            for h in w.handles.drain().flat_map(|(_, m)| m.into_values()) {
                w.store.set_epoch_deadline(self.ticks);
                g.call_release(&mut w.store, h)
                    .map_err(|e| self.failed(format!("release: {}", trap_reason(&e))))?;
            }
        }
        w.store.set_epoch_deadline(self.ticks);
        let r = g
            .call_compile(&mut w.store, ty, expression)
            .map_err(|e| self.failed(format!("compile: {}", trap_reason(&e))))?;
        match r {
            Ok(c) => {
                let compiled = Compiled {
                    prefilter: match c.prefilter {
                        wit_types::Prefilter::None => Prefilter::None,
                        wit_types::Prefilter::All => Prefilter::All,
                        wit_types::Prefilter::TagHashes(h) => {
                            Prefilter::TagHashes(h.into_iter().map(i64::from).collect())
                        }
                    },
                    needs_body: c.needs_body,
                };
                if let Some(old) = w
                    .handles
                    .entry(ty.to_string())
                    .or_default()
                    .insert(expression.to_string(), c.handle)
                {
                    if old != c.handle {
                        w.store.set_epoch_deadline(self.ticks);
                        let _ = g.call_release(&mut w.store, old);
                    }
                }
                Ok((c.handle, compiled))
            }
            Err(e) => Err(EvalError::Compile {
                position: e.position,
                reason: e.reason,
            }),
        }
    }

    /// Evaluates a batch: one bit per message (LSB first). Failures are counted here; the
    /// caller applies the policy.
    pub fn evaluate(
        &self,
        ty: &str,
        expression: &str,
        batch: &BatchEncoder,
    ) -> Result<Vec<u8>, EvalError> {
        let n = batch.count();
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut w = self.take()?;
        let start = Instant::now();
        let r = match w.handles.get(ty).and_then(|m| m.get(expression)) {
            Some(&h) => Ok(h),
            None => self.handle(&mut w, ty, expression).map(|(h, _)| h),
        }
        .and_then(|h| {
            w.store.set_epoch_deadline(self.ticks);
            w.bindings
                .wasmq_plugin_filter()
                .call_evaluate(&mut w.store, h, batch.bytes())
                .map_err(|e| self.failed(format!("evaluate: {}", trap_reason(&e))))
        })
        .and_then(|bits| {
            if bits.len() == n.div_ceil(8) {
                Ok(bits)
            } else {
                Err(self.failed(format!(
                    "evaluate returned {} bytes for {n} messages, expected {}",
                    bits.len(),
                    n.div_ceil(8)
                )))
            }
        });
        match r {
            Ok(bits) => {
                self.stats.success(n, start.elapsed().as_nanos() as u64);
                self.give_back(w);
                Ok(bits)
            }
            Err(e @ EvalError::Compile { .. }) => {
                self.give_back(w);
                Err(e)
            }
            Err(e) => {
                // The instance may be in any state after a trap: drop it.
                self.count_failure(&e);
                Err(e)
            }
        }
    }
}
