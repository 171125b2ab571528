//! WebAssembly plugins (DESIGN.md §6): filters that consumers subscribe with, transaction
//! checkers and routers bound to topics, run broker-side in a wasmtime sandbox, loaded,
//! upgraded and unloaded while the broker runs.
//!
//! | file | concept |
//! |---|---|
//! | [`error`] | the errors: an operator's request refused, a plugin call that gave no answer |
//! | [`limits`] | per-plugin limits and failure policy, parsed from the operator's `wasmq.*` keys |
//! | [`engine`] | the wasmtime engine: epoch ticker for deadlines, compiled-artifact cache |
//! | [`batch`] | the batch encoding messages cross the boundary in (one buffer per call) |
//! | [`module`] | a module compiled and classified: its [`PluginKind`] by its exports |
//! | [`guest`] | what every plugin kind shares: store limits, linking without WASI, stats, quarantine |
//! | [`pool`] | warm instances of one version: the last one given back kept in a lock-free slot |
//! | [`instance`] | the one instance path: load checks, warm pool, deadline, failure accounting |
//! | [`expr_cache`] | a bounded LRU keyed by (expression type, expression), borrowed lookups |
//! | [`filter`] | one loaded filter version: compiled handles per instance, batch evaluation |
//! | [`txn_checker`] | one loaded transaction check-back handler version |
//! | [`router`] | one loaded router version: where each message of a send request goes |
//! | [`bindings`] | which plugin serves which topic for a per-topic kind (txn-checker, ...); persisted |
//! | [`registry`] | names and expression types to versions; load / upgrade / unload; persisted |
//!
//! Files depend downwards in that table: the kinds on [`instance`] and [`guest`], the
//! [`registry`] on the kinds, and nothing back on the registry. This file only declares and
//! re-exports (the architecture test counts a re-export as no dependency of its own).
//!
//! The contract is `plugin-sdk/wit/plugin.wit`; the guest side is the `wasmq-plugin-sdk` crate.

pub mod batch;
pub mod bindings;
pub mod engine;
pub mod error;
pub mod expr_cache;
pub mod filter;
pub mod guest;
pub mod instance;
pub mod limits;
pub mod module;
pub mod pool;
pub mod registry;
pub mod router;
pub mod shipped;
pub mod txn_checker;

pub use error::{EvalError, PluginError};
pub use filter::{Compiled, LoadedFilter, Prefilter};
pub use limits::{FailurePolicy, PluginLimits};
pub use module::PluginKind;
pub use registry::{Loaded, PluginInfo, Registry};
pub use router::{Destination, LoadedRouter, RouteTarget, RouteVerdict};
pub use txn_checker::{LoadedChecker, TxnMeta, TxnVerdict};

/// ABI major this host speaks (the WIT package version 0.1 -> 1).
pub const ABI_VERSION: u32 = 1;

#[cfg(test)]
mod tests;
