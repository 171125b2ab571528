//! One loaded version of a router plugin (WIT world `router-plugin`): one typed call per send
//! request on the shared instance path of [`super::instance`], deciding where each message goes before anything is stored
//! (see [`crate::routing`] for how verdicts are checked and applied).

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
        world: "router-plugin",
        path: "../plugin-sdk/wit",
    });
}

use wit::exports::wasmq::plugin::router as wit_router;

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

/// The world `router-plugin`.
pub struct RouterWorld;

super::instance::world!(
    RouterWorld,
    Router,
    RouterPlugin,
    RouterPluginPre,
    (),
    wasmq_plugin_router
);

pub struct LoadedRouter {
    plugin: Versioned<RouterWorld>,
    /// Whether `route` wants message bodies (asked at load).
    pub needs_body: bool,
}

/// Name, version, config, limits, stats, `retire` and `count_failure` are the shared ones.
impl Deref for LoadedRouter {
    type Target = Versioned<RouterWorld>;
    fn deref(&self) -> &Self::Target {
        &self.plugin
    }
}

fn target(t: wit_router::Target) -> RouteTarget {
    RouteTarget {
        topic: t.topic,
        queue: t.queue,
    }
}

fn verdict(v: wit_router::Verdict) -> RouteVerdict {
    RouteVerdict {
        route: match v.route {
            wit_router::Destination::Keep => Destination::Keep,
            wit_router::Destination::Queue(q) => Destination::Queue(q),
            wit_router::Destination::Redirect(t) => Destination::Redirect(target(t)),
            wit_router::Destination::Reject(r) => Destination::Reject(r),
        },
        extra: v.extra.into_iter().map(target).collect(),
    }
}

impl LoadedRouter {
    /// Validates and activates a compiled module (see `Versioned::load`): export, ABI
    /// version, config, and a self-test (an empty batch must give no verdicts).
    pub fn from_module(
        engine: &PluginEngine,
        name: &str,
        version: u64,
        module: &Module,
        config: Vec<(String, String)>,
    ) -> Result<Arc<LoadedRouter>, PluginError> {
        let (plugin, needs_body) =
            Versioned::load(engine, name, version, module, config, self_test)?;
        Ok(Arc::new(LoadedRouter { plugin, needs_body }))
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
        let v = self.call(n, |w| {
            let (b, store) = w.armed();
            let v = b
                .wasmq_plugin_router()
                .call_route(store, write_queues, batch.bytes())
                .map_err(|e| self.failed(format!("route: {}", trap_reason(&e))))?;
            if v.len() == n {
                Ok(v)
            } else {
                Err(self.failed(format!(
                    "route returned {} verdicts for {n} messages",
                    v.len()
                )))
            }
        })?;
        Ok(v.into_iter().map(verdict).collect())
    }
}

/// Whether the router wants bodies; an empty batch must give no verdicts.
fn self_test(w: &mut Warm<RouterWorld>) -> Result<bool, PluginError> {
    let fail = |what: &str, e: wasmtime::Error| {
        PluginError::Invalid(format!("self-test {what}: {}", trap_reason(&e)))
    };
    let (b, store) = w.armed();
    let needs_body = b
        .wasmq_plugin_router()
        .call_needs_body(store)
        .map_err(|e| fail("needs-body", e))?;
    let (b, store) = w.armed();
    let out = b
        .wasmq_plugin_router()
        .call_route(store, 1, BatchEncoder::new().bytes())
        .map_err(|e| fail("route of an empty batch", e))?;
    if !out.is_empty() {
        return Err(PluginError::Invalid(format!(
            "self-test: an empty batch gave {} verdicts, expected 0",
            out.len()
        )));
    }
    Ok(needs_body)
}
