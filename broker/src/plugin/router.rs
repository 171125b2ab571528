//! One loaded version of a router plugin (WIT world `router-plugin`): warm instances and one
//! typed call per send request, deciding where each message goes before anything is stored
//! (see [`crate::routing`] for how verdicts are checked and applied).

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
        world: "router-plugin",
        path: "../plugin-sdk/wit",
    });
}

use wit::exports::wasmq::plugin::router as wit_router;

/// The export a router must have.
pub const ROUTER_EXPORT: &str = "wasmq:plugin/router@0.1.0";

/// A destination named by a router: a topic and maybe a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTarget {
    pub topic: String,
    pub queue: Option<u32>,
}

/// Where a router sends the message itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Keep,
    Queue(u32),
    Redirect(RouteTarget),
    Reject(String),
}

/// A router's decision on one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteVerdict {
    pub route: Destination,
    pub extra: Vec<RouteTarget>,
}

struct Warm {
    store: Store<GuestState>,
    bindings: wit::RouterPlugin,
}

pub struct LoadedRouter {
    pub name: String,
    pub version: u64,
    pub sha256: String,
    pub size: usize,
    /// The operator's config as given (host `wasmq.*` keys included), persisted as is.
    pub config: Vec<(String, String)>,
    pub limits: PluginLimits,
    /// Whether `route` wants message bodies (asked at load).
    pub needs_body: bool,
    plugin_config: Vec<(String, String)>,
    pre: wit::RouterPluginPre<GuestState>,
    ticks: u64,
    pool: Pool<Warm>,
    pub stats: Stats,
}

fn target(t: wit_router::Target) -> RouteTarget {
    RouteTarget {
        topic: t.topic,
        queue: t.queue,
    }
}

impl LoadedRouter {
    /// Validates and activates a module: header, exports, ABI version, config, and a
    /// self-test (an empty batch must give no verdicts).
    pub fn load(
        engine: &PluginEngine,
        name: &str,
        version: u64,
        wasm: &[u8],
        config: Vec<(String, String)>,
    ) -> Result<Arc<LoadedRouter>, PluginError> {
        let m = super::registry::Module::compile(engine, wasm)?;
        Self::from_module(engine, name, version, &m, config)
    }

    /// As [`load`](Self::load), from a module already compiled.
    pub fn from_module(
        engine: &PluginEngine,
        name: &str,
        version: u64,
        module: &super::registry::Module,
        config: Vec<(String, String)>,
    ) -> Result<Arc<LoadedRouter>, PluginError> {
        let (limits, plugin_config) = PluginLimits::from_config(&config)?;
        guest::check_export(&module.exports, ROUTER_EXPORT)?;
        let pre = wit::RouterPluginPre::new(guest::link(engine, &module.component)?)
            .map_err(|e| PluginError::Invalid(format!("does not export {ROUTER_EXPORT}: {e:#}")))?;
        let mut r = LoadedRouter {
            name: name.to_string(),
            version,
            sha256: module.sha256.clone(),
            size: module.size,
            config,
            ticks: PluginEngine::ticks(limits.deadline_ms),
            limits,
            needs_body: false,
            plugin_config,
            pre,
            pool: Pool::default(),
            stats: Stats::default(),
        };
        let mut w = r.instantiate().map_err(guest::load_error)?;
        let g = w.bindings.wasmq_plugin_router();
        let fail = |what: &str, e: wasmtime::Error| {
            PluginError::Invalid(format!("self-test {what}: {}", trap_reason(&e)))
        };
        w.store.set_epoch_deadline(r.ticks);
        guest::check_abi(g.call_abi_version(&mut w.store))?;
        w.store.set_epoch_deadline(r.ticks);
        r.needs_body = g
            .call_needs_body(&mut w.store)
            .map_err(|e| fail("needs-body", e))?;
        w.store.set_epoch_deadline(r.ticks);
        let out = g
            .call_route(&mut w.store, 1, BatchEncoder::new().bytes())
            .map_err(|e| fail("route of an empty batch", e))?;
        if !out.is_empty() {
            return Err(PluginError::Invalid(format!(
                "self-test: an empty batch gave {} verdicts, expected 0",
                out.len()
            )));
        }
        r.pool.give_back(w);
        Ok(Arc::new(r))
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
                b.wasmq_plugin_router()
                    .call_configure(store, &self.plugin_config)
            },
        )?;
        Ok(Warm { store, bindings })
    }

    /// Counts a failure found by the caller (a verdict the broker cannot apply).
    pub fn count_failure(&self, e: &EvalError) {
        if let EvalError::Failed { reason, .. } = e {
            self.stats.failure(
                &self.name,
                self.version,
                self.limits.quarantine_after,
                reason,
            );
        }
    }

    /// Routes the messages of one send request to a topic with `write_queues` queues: one
    /// verdict each. A trap, timeout or wrong number of verdicts is counted and returned as a
    /// failure; the caller applies the plugin's policy.
    pub fn route(
        &self,
        write_queues: u32,
        batch: &BatchEncoder,
    ) -> Result<Vec<RouteVerdict>, EvalError> {
        let n = batch.count();
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
        w.store.set_epoch_deadline(self.ticks);
        let r = w
            .bindings
            .wasmq_plugin_router()
            .call_route(&mut w.store, write_queues, batch.bytes())
            .map_err(|e| self.failed(format!("route: {}", trap_reason(&e))))
            .and_then(|v| {
                if v.len() == n {
                    Ok(v)
                } else {
                    Err(self.failed(format!(
                        "route returned {} verdicts for {n} messages",
                        v.len()
                    )))
                }
            });
        match r {
            Ok(v) => {
                self.stats.success(n, start.elapsed().as_nanos() as u64);
                self.pool.give_back(w);
                Ok(v.into_iter()
                    .map(|v| RouteVerdict {
                        route: match v.route {
                            wit_router::Destination::Keep => Destination::Keep,
                            wit_router::Destination::Queue(q) => Destination::Queue(q),
                            wit_router::Destination::Redirect(t) => {
                                Destination::Redirect(target(t))
                            }
                            wit_router::Destination::Reject(r) => Destination::Reject(r),
                        },
                        extra: v.extra.into_iter().map(target).collect(),
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
