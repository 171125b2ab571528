//! What every kind of plugin shares on the host side: the per-instance store with its memory
//! cap and deadline, the link step that grants no WASI, the export check, call statistics and
//! the failure accounting that ends in quarantine. (Warm instances wait in [`super::pool`].)

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use parking_lot::Mutex;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};

use super::engine::PluginEngine;
use super::error::{EvalError, PluginError};
use super::limits::PluginLimits;
use super::ABI_VERSION;

/// Host state of one guest instance: only its resource limits.
pub struct GuestState {
    limits: StoreLimits,
}

/// A fresh store for one instance: memory capped, deadline armed (epoch interruption).
pub(super) fn new_store(engine: &Engine, limits: &PluginLimits, ticks: u64) -> Store<GuestState> {
    let limits = StoreLimitsBuilder::new()
        .memory_size(limits.memory_bytes)
        .instances(8)
        .tables(8)
        .memories(4)
        .trap_on_grow_failure(true)
        .build();
    let mut store = Store::new(engine, GuestState { limits });
    store.limiter(|s| &mut s.limits);
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();
    store
}

/// Links a component with no WASI granted: whatever the guest imports (its std's `wasi:*`
/// calls) traps.
pub(super) fn link(
    engine: &PluginEngine,
    component: &Component,
) -> Result<InstancePre<GuestState>, PluginError> {
    let mut linker: Linker<GuestState> = Linker::new(engine.engine());
    linker
        .define_unknown_imports_as_traps(component)
        .map_err(|e| PluginError::Invalid(format!("cannot link: {e:#}")))?;
    linker
        .instantiate_pre(component)
        .map_err(|e| PluginError::Invalid(format!("cannot link: {e:#}")))
}

/// A failure of plugin `name` (a trap, a timeout, a bad result).
pub(super) fn failed(name: &str, reason: String) -> EvalError {
    EvalError::Failed {
        name: name.to_string(),
        reason,
    }
}

/// A new instance of a plugin version: a fresh store (limits, deadline), the component
/// instantiated by `make`, then `configure`d with the operator's settings.
pub(super) fn instantiate<B>(
    engine: &Engine,
    limits: &PluginLimits,
    ticks: u64,
    name: &str,
    make: impl FnOnce(&mut Store<GuestState>) -> wasmtime::Result<B>,
    configure: impl FnOnce(&B, &mut Store<GuestState>) -> wasmtime::Result<Result<(), String>>,
) -> Result<(Store<GuestState>, B), EvalError> {
    let mut store = new_store(engine, limits, ticks);
    let bindings =
        make(&mut store).map_err(|e| failed(name, format!("instantiate: {}", trap_reason(&e))))?;
    store.set_epoch_deadline(ticks);
    match configure(&bindings, &mut store) {
        Ok(Ok(())) => Ok((store, bindings)),
        Ok(Err(msg)) => Err(failed(name, format!("{CONFIGURE}{msg}"))),
        Err(e) => Err(failed(name, format!("{CONFIGURE}{}", trap_reason(&e)))),
    }
}

const CONFIGURE: &str = "configure: ";

/// Why a load fails when its first instance does: a `configure` error is the operator's
/// config, anything else fails the self-test.
pub(super) fn load_error(e: EvalError) -> PluginError {
    match e {
        EvalError::Failed { reason, .. } if reason.starts_with(CONFIGURE) => {
            PluginError::Config(reason[CONFIGURE.len()..].to_string())
        }
        e => PluginError::Invalid(format!("self-test: {e}")),
    }
}

/// Checks the ABI version a plugin reported from `abi-version`.
pub(super) fn check_abi(abi: wasmtime::Result<u32>) -> Result<(), PluginError> {
    let abi = abi
        .map_err(|e| PluginError::Invalid(format!("self-test abi-version: {}", trap_reason(&e))))?;
    if abi != ABI_VERSION {
        return Err(PluginError::Invalid(format!(
            "plugin ABI version {abi}, this broker speaks {ABI_VERSION} (wasmq:plugin@0.1): rebuild it with a matching wasmq-plugin-sdk"
        )));
    }
    Ok(())
}

/// A readable reason for a failed call.
pub(super) fn trap_reason(e: &wasmtime::Error) -> String {
    if let Some(t) = e.downcast_ref::<wasmtime::Trap>() {
        match t {
            wasmtime::Trap::Interrupt => "deadline exceeded (interrupted)".to_string(),
            wasmtime::Trap::StackOverflow => "stack overflow".to_string(),
            other => format!("trap: {other}"),
        }
    } else {
        format!("{e:#}")
    }
}

/// Checks that `names` include `export` (e.g. `wasmq:plugin/filter@0.1.0`), explaining a
/// version mismatch of the same interface precisely.
pub(super) fn check_export(names: &[String], export: &str) -> Result<(), PluginError> {
    if names.iter().any(|n| n == export) {
        return Ok(());
    }
    let family = export.split('@').next().unwrap_or(export);
    if let Some(other) = names.iter().find(|n| n.split('@').next() == Some(family)) {
        return Err(PluginError::Invalid(format!(
            "exports {other}, this broker speaks {export}: rebuild it with a matching wasmq-plugin-sdk"
        )));
    }
    Err(PluginError::Invalid(format!(
        "does not export {export} (it exports: {})",
        if names.is_empty() {
            "nothing".to_string()
        } else {
            names.join(", ")
        }
    )))
}

/// Calls, messages, time and failures of one plugin version; quarantine after too many
/// consecutive failures.
#[derive(Debug, Default)]
pub struct Stats {
    pub calls: AtomicU64,
    pub messages: AtomicU64,
    pub nanos: AtomicU64,
    pub failures: AtomicU64,
    consecutive: AtomicU32,
    quarantined: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl Stats {
    pub fn quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    /// A call over `messages` messages that succeeded in `nanos`.
    pub(super) fn success(&self, messages: usize, nanos: u64) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.messages.fetch_add(messages as u64, Ordering::Relaxed);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
        self.consecutive.store(0, Ordering::Relaxed);
    }

    /// Counts a failure of plugin `name`; quarantines it after `quarantine_after` in a row.
    pub(super) fn failure(&self, name: &str, version: u64, quarantine_after: u32, reason: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock() = Some(reason.to_string());
        let n = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= quarantine_after && !self.quarantined.swap(true, Ordering::Relaxed) {
            tracing::error!(plugin = %name, version, failures = n, last = %reason,
                "plugin quarantined after repeated failures: its policy now decides every batch; upgrade or reload it");
        } else {
            tracing::warn!(plugin = %name, version, %reason, "plugin call failed");
        }
    }
}
