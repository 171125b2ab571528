//! The one instance path every kind of plugin runs on: the checks a module goes through before
//! it is activated, the fields every loaded version has, and the call path (quarantine check,
//! a warm instance from the pool or a new one, deadline, timing, success or failure accounting,
//! the instance given back or dropped).
//!
//! A kind is a [`World`]: the WIT world's generated bindings plus the four guest functions every
//! world exports alike (instantiate, `configure`, `abi-version`, and the link step). Its file
//! then holds only what is its own: the `bindgen!` module, the WIT-to-host conversions, the
//! self-test and the typed calls, each written as a closure over a [`Warm`] instance passed to
//! [`Versioned::call`].
//!
//! A kind's loaded type (`LoadedFilter`, ...) wraps a [`Versioned`] and dereferences to it, so
//! callers keep reading `plugin.name`, `plugin.limits` or `plugin.stats` and calling
//! `plugin.retire()` on every kind. `Deref` on a non-pointer is a trade-off: it is used here
//! only to share read-only fields and the common methods, never to fake inheritance of
//! behaviour a kind overrides.

use std::time::Instant;

use wasmtime::component::InstancePre;
use wasmtime::{Engine, Store};

use super::engine::PluginEngine;
use super::error::{EvalError, PluginError};
use super::guest::{self, GuestState, Stats};
use super::limits::PluginLimits;
use super::module::{Module, PluginKind};
use super::pool::Pool;

/// One WIT world a kind of plugin implements, as the host sees it.
pub trait World: Sized + 'static {
    /// The kind of plugin this world makes (its export is [`PluginKind::export`]).
    const KIND: PluginKind;
    /// The generated bindings of one instance (`bindgen!`'s `FooPlugin`).
    type Bindings: Send;
    /// The generated pre-instantiated component (`bindgen!`'s `FooPluginPre`).
    type Pre: Send + Sync;
    /// State a warm instance keeps besides its store (e.g. a filter's compiled handles).
    type Extra: Default + Send;

    /// Checks the linked component against the world and prepares instantiation.
    fn pre(pre: InstancePre<GuestState>) -> wasmtime::Result<Self::Pre>;
    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<GuestState>,
    ) -> wasmtime::Result<Self::Bindings>;
    /// The guest's `configure` with the operator's plugin keys (`wasmq.*` ones left out).
    fn configure(
        bindings: &Self::Bindings,
        store: &mut Store<GuestState>,
        config: &[(String, String)],
    ) -> wasmtime::Result<Result<(), String>>;
    /// The guest's `abi-version`.
    fn abi_version(
        bindings: &Self::Bindings,
        store: &mut Store<GuestState>,
    ) -> wasmtime::Result<u32>;
}

/// One instance of a plugin version: its own store (memory cap, deadline) and bindings.
pub struct Warm<W: World> {
    pub(super) store: Store<GuestState>,
    pub(super) bindings: W::Bindings,
    pub(super) extra: W::Extra,
    ticks: u64,
}

impl<W: World> Warm<W> {
    /// The bindings and the store with the deadline armed again: every guest call goes
    /// through this, so each gets the plugin's whole budget.
    pub(super) fn armed(&mut self) -> (&W::Bindings, &mut Store<GuestState>) {
        self.store.set_epoch_deadline(self.ticks);
        (&self.bindings, &mut self.store)
    }
}

/// One loaded version of a plugin of world `W`: what every kind has (identity, config, limits,
/// stats) and its pool of warm instances.
pub struct Versioned<W: World> {
    pub name: String,
    pub version: u64,
    pub sha256: String,
    pub size: usize,
    /// The operator's config as given (host `wasmq.*` keys included), persisted as is.
    pub config: Vec<(String, String)>,
    pub limits: PluginLimits,
    pub stats: Stats,
    /// The keys passed to the guest's `configure`.
    plugin_config: Vec<(String, String)>,
    pre: W::Pre,
    engine: Engine,
    /// The deadline of one call, in epoch ticks.
    ticks: u64,
    pool: Pool<Warm<W>>,
}

impl<W: World> Versioned<W> {
    /// Validates a compiled module as a plugin of world `W`: its limits from `config`, the
    /// export, the link (no WASI), a first instance (`configure`d: an error there is the
    /// operator's config), its ABI version, then the kind's `self_test` on that instance,
    /// which is kept warm afterwards. Returns what the self-test found out.
    pub(super) fn load<T>(
        engine: &PluginEngine,
        name: &str,
        version: u64,
        module: &Module,
        config: Vec<(String, String)>,
        self_test: impl FnOnce(&mut Warm<W>) -> Result<T, PluginError>,
    ) -> Result<(Self, T), PluginError> {
        let (limits, plugin_config) = PluginLimits::from_config(&config)?;
        let export = W::KIND.export();
        guest::check_export(&module.exports, export)?;
        let pre = W::pre(guest::link(engine, &module.component)?)
            .map_err(|e| PluginError::Invalid(format!("does not export {export}: {e:#}")))?;
        let v = Versioned {
            name: name.to_string(),
            version,
            sha256: module.sha256.clone(),
            size: module.size,
            config,
            ticks: PluginEngine::ticks(limits.deadline_ms),
            limits,
            stats: Stats::default(),
            plugin_config,
            pre,
            engine: engine.engine().clone(),
            pool: Pool::default(),
        };
        let mut w = v.instantiate().map_err(guest::load_error)?;
        let (b, store) = w.armed();
        guest::check_abi(W::abi_version(b, store))?;
        let found = self_test(&mut w)?;
        v.pool.give_back(Box::new(w));
        Ok((v, found))
    }

    /// A new instance: fresh store, component instantiated, `configure`d.
    fn instantiate(&self) -> Result<Warm<W>, EvalError> {
        let (store, bindings) = guest::instantiate(
            &self.engine,
            &self.limits,
            self.ticks,
            &self.name,
            |store| W::instantiate(&self.pre, store),
            |b, store| W::configure(b, store, &self.plugin_config),
        )?;
        Ok(Warm {
            store,
            bindings,
            extra: W::Extra::default(),
            ticks: self.ticks,
        })
    }

    /// Runs `f` on a warm instance as one call over a batch of `messages` messages, counted in
    /// the stats. A quarantined version is not called. On success the instance goes back to
    /// the pool; on a failure it is dropped (it may be in any state after a trap: the next
    /// call builds a fresh one) and the failure is counted, the caller applying the policy.
    pub(super) fn call<T>(
        &self,
        messages: usize,
        f: impl FnOnce(&mut Warm<W>) -> Result<T, EvalError>,
    ) -> Result<T, EvalError> {
        self.run(Some(messages), f)
    }

    /// As [`call`](Self::call), for a call that is not over a batch (a filter's compile): not
    /// counted in calls, messages or time, and its success does not end a run of failures.
    pub(super) fn call_uncounted<T>(
        &self,
        f: impl FnOnce(&mut Warm<W>) -> Result<T, EvalError>,
    ) -> Result<T, EvalError> {
        self.run(None, f)
    }

    fn run<T>(
        &self,
        messages: Option<usize>,
        f: impl FnOnce(&mut Warm<W>) -> Result<T, EvalError>,
    ) -> Result<T, EvalError> {
        if self.stats.quarantined() {
            return Err(EvalError::Quarantined(self.name.clone()));
        }
        let mut w = self
            .pool
            .take(|| self.instantiate().inspect_err(|e| self.count_failure(e)))?;
        let start = Instant::now();
        match f(&mut w) {
            Ok(v) => {
                if let Some(n) = messages {
                    self.stats.success(n, start.elapsed().as_nanos() as u64);
                }
                self.pool.give_back(w);
                Ok(v)
            }
            // The consumer's expression, not the plugin: the instance is fine.
            Err(e @ EvalError::Compile { .. }) => {
                self.pool.give_back(w);
                Err(e)
            }
            Err(e) => {
                // The instance may be in any state after a trap: drop it.
                self.count_failure(&e);
                Err(e)
            }
        }
    }

    /// A failure of this plugin (a trap, a timeout, a bad result).
    pub(super) fn failed(&self, reason: String) -> EvalError {
        guest::failed(&self.name, reason)
    }

    /// Counts a failure (one found by the caller too, e.g. a verdict the broker cannot
    /// apply); quarantines after `quarantine_after` in a row. Other errors are not failures.
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

    /// Marks this version replaced or unloaded: no instance is kept any more (a batch in
    /// flight finishes on the instance it has).
    pub fn retire(&self) {
        self.pool.retire();
    }

    pub fn retired(&self) -> bool {
        self.pool.retired()
    }
}

/// Implements [`World`] for a `bindgen!` world: every world's instantiate, `configure` and
/// `abi-version` are the same calls under the world's own generated names.
macro_rules! world {
    ($world:ident, $kind:ident, $bindings:ident, $pre:ident, $extra:ty, $iface:ident) => {
        impl $crate::plugin::instance::World for $world {
            const KIND: $crate::plugin::module::PluginKind =
                $crate::plugin::module::PluginKind::$kind;
            type Bindings = wit::$bindings;
            type Pre = wit::$pre<$crate::plugin::guest::GuestState>;
            type Extra = $extra;

            fn pre(
                pre: wasmtime::component::InstancePre<$crate::plugin::guest::GuestState>,
            ) -> wasmtime::Result<Self::Pre> {
                wit::$pre::new(pre)
            }

            fn instantiate(
                pre: &Self::Pre,
                store: &mut wasmtime::Store<$crate::plugin::guest::GuestState>,
            ) -> wasmtime::Result<Self::Bindings> {
                pre.instantiate(store)
            }

            fn configure(
                b: &Self::Bindings,
                store: &mut wasmtime::Store<$crate::plugin::guest::GuestState>,
                config: &[(String, String)],
            ) -> wasmtime::Result<Result<(), String>> {
                b.$iface().call_configure(store, config)
            }

            fn abi_version(
                b: &Self::Bindings,
                store: &mut wasmtime::Store<$crate::plugin::guest::GuestState>,
            ) -> wasmtime::Result<u32> {
                b.$iface().call_abi_version(store)
            }
        }
    };
}
pub(super) use world;
