//! One loaded version of a filter plugin (WIT world `filter-plugin`): expressions compiled by
//! the plugin into handles that each warm instance keeps, batches evaluated to one bit per
//! message, and a cache of compile results so a subscription resolves without a call.
//!
//! The instance path (pool, deadline, failure accounting, quarantine) is the shared one of
//! [`super::instance`]: a trap, a timeout or a bad result never escapes as a panic, the
//! instance that failed is dropped, and the caller applies the plugin's
//! [`FailurePolicy`](super::FailurePolicy).

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

use parking_lot::Mutex;

use super::batch::BatchEncoder;
use super::engine::PluginEngine;
use super::error::{EvalError, PluginError};
use super::expr_cache::ExprCache;
use super::guest::trap_reason;
use super::instance::{Versioned, Warm};
use super::module::Module;

mod wit {
    wasmtime::component::bindgen!({
        world: "filter-plugin",
        path: "../plugin-sdk/wit",
    });
}

use wit::wasmq::plugin::types as wit_types;

/// Largest number of expression types one plugin may serve.
const MAX_TYPES: usize = 16;

/// Compiled handles one warm instance keeps before it releases them all; also the size of the
/// compile-result cache.
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

/// Handles of one warm instance by expression type, then expression (looked up without
/// allocating).
type Handles = HashMap<String, HashMap<String, u32>>;

/// The world `filter-plugin`.
pub struct FilterWorld;

super::instance::world!(
    FilterWorld,
    Filter,
    FilterPlugin,
    FilterPluginPre,
    Handles,
    wasmq_plugin_filter
);

pub struct LoadedFilter {
    plugin: Versioned<FilterWorld>,
    /// The expression types served (upper-case, sorted).
    pub expression_types: Vec<String>,
    /// Compile results by type and expression (a consumer's errors included, so a bad
    /// expression in every pull costs one lookup); least recently used evicted first.
    compiled: Mutex<ExprCache<Result<Compiled, EvalError>>>,
}

/// Name, version, config, limits, stats, `retire` and `count_failure` are the shared ones.
impl Deref for LoadedFilter {
    type Target = Versioned<FilterWorld>;
    fn deref(&self) -> &Self::Target {
        &self.plugin
    }
}

impl LoadedFilter {
    /// Validates and activates a compiled module (see `Versioned::load`): export, ABI
    /// version, config, and a self-test of the expression types it names.
    pub fn from_module(
        engine: &PluginEngine,
        name: &str,
        version: u64,
        module: &Module,
        config: Vec<(String, String)>,
    ) -> Result<Arc<LoadedFilter>, PluginError> {
        let (plugin, expression_types) =
            Versioned::load(engine, name, version, module, config, self_test)?;
        Ok(Arc::new(LoadedFilter {
            plugin,
            expression_types,
            compiled: Mutex::new(ExprCache::new(MAX_HANDLES)),
        }))
    }

    pub fn serves(&self, ty: &str) -> bool {
        self.expression_types.iter().any(|t| t == ty)
    }

    /// [`compile`](Self::compile) once per type and expression; later calls answer from a cache.
    pub fn compiled(&self, ty: &str, expression: &str) -> Result<Compiled, EvalError> {
        if let Some(r) = self.compiled.lock().get(ty, expression) {
            return r;
        }
        let r = self.compile(ty, expression);
        if matches!(r, Ok(_) | Err(EvalError::Compile { .. })) {
            self.compiled.lock().put(ty, expression, r.clone());
        }
        r
    }

    /// Compiles `expression` of type `ty` (upper-case), in a warm instance that keeps the
    /// handle for later batches.
    pub fn compile(&self, ty: &str, expression: &str) -> Result<Compiled, EvalError> {
        self.call_uncounted(|w| self.handle(w, ty, expression).map(|(_, c)| c))
    }

    /// Compiles in `w` and keeps the handle there (released when the instance holds too many).
    fn handle(
        &self,
        w: &mut Warm<FilterWorld>,
        ty: &str,
        expression: &str,
    ) -> Result<(u32, Compiled), EvalError> {
        if w.extra.values().map(HashMap::len).sum::<usize>() >= MAX_HANDLES {
            for h in std::mem::take(&mut w.extra)
                .into_values()
                .flat_map(HashMap::into_values)
            {
                let (b, store) = w.armed();
                b.wasmq_plugin_filter()
                    .call_release(store, h)
                    .map_err(|e| self.failed(format!("release: {}", trap_reason(&e))))?;
            }
        }
        let (b, store) = w.armed();
        let r = b
            .wasmq_plugin_filter()
            .call_compile(store, ty, expression)
            .map_err(|e| self.failed(format!("compile: {}", trap_reason(&e))))?;
        let c = r.map_err(|e| EvalError::Compile {
            position: e.position,
            reason: e.reason,
        })?;
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
        let old = w
            .extra
            .entry(ty.to_string())
            .or_default()
            .insert(expression.to_string(), c.handle);
        if let Some(old) = old.filter(|&old| old != c.handle) {
            let (b, store) = w.armed();
            let _ = b.wasmq_plugin_filter().call_release(store, old);
        }
        Ok((c.handle, compiled))
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
        self.call(n, |w| {
            let h = match w.extra.get(ty).and_then(|m| m.get(expression)) {
                Some(&h) => h,
                None => self.handle(w, ty, expression)?.0,
            };
            let (b, store) = w.armed();
            let bits = b
                .wasmq_plugin_filter()
                .call_evaluate(store, h, batch.bytes())
                .map_err(|e| self.failed(format!("evaluate: {}", trap_reason(&e))))?;
            if bits.len() == n.div_ceil(8) {
                Ok(bits)
            } else {
                Err(self.failed(format!(
                    "evaluate returned {} bytes for {n} messages, expected {}",
                    bits.len(),
                    n.div_ceil(8)
                )))
            }
        })
    }
}

/// The expression types the plugin names, checked; then compiling an empty expression of each
/// must not trap (an error is fine), and a handle it returns must evaluate an empty batch to
/// an empty bitset.
fn self_test(w: &mut Warm<FilterWorld>) -> Result<Vec<String>, PluginError> {
    let (b, store) = w.armed();
    let mut types = b
        .wasmq_plugin_filter()
        .call_expression_types(store)
        .map_err(|e| {
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
    for t in &types {
        let (b, store) = w.armed();
        let r = b
            .wasmq_plugin_filter()
            .call_compile(store, t, "")
            .map_err(|e| {
                PluginError::Invalid(format!("self-test compile({t}, \"\"): {}", trap_reason(&e)))
            })?;
        if let Ok(c) = r {
            let (b, store) = w.armed();
            let out = b
                .wasmq_plugin_filter()
                .call_evaluate(store, c.handle, BatchEncoder::new().bytes())
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
            let (b, store) = w.armed();
            let _ = b.wasmq_plugin_filter().call_release(store, c.handle);
        }
    }
    Ok(types)
}
