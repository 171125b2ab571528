//! WebAssembly plugins (DESIGN.md §6): filters that consumers subscribe with, transaction
//! checkers and routers bound to topics, run broker-side in a wasmtime sandbox, loaded,
//! upgraded and unloaded while the broker runs.
//!
//! | file | concept |
//! |---|---|
//! | [`limits`] | per-plugin limits and failure policy, parsed from the operator's `wasmq.*` keys |
//! | [`engine`] | the wasmtime engine: epoch ticker for deadlines, compiled-artifact cache |
//! | [`batch`] | the batch encoding messages cross the boundary in (one buffer per call) |
//! | [`guest`] | what every plugin kind shares: store limits, linking without WASI, stats, quarantine |
//! | [`filter`] | one loaded filter version: warm instances, typed calls, failure accounting |
//! | [`txn_checker`] | one loaded transaction check-back handler version |
//! | [`router`] | one loaded router version: where each message of a send request goes |
//! | [`bindings`] | which plugin serves which topic for a per-topic kind (txn-checker, ...); persisted |
//! | [`registry`] | names and expression types to versions; load / upgrade / unload; persisted |
//!
//! The contract is `plugin-sdk/wit/plugin.wit`; the guest side is the `wasmq-plugin-sdk` crate.

pub mod batch;
pub mod bindings;
pub mod engine;
pub mod filter;
pub mod guest;
pub mod limits;
pub mod registry;
pub mod router;
pub mod shipped;
pub mod txn_checker;

pub use filter::{Compiled, EvalError, LoadedFilter, Prefilter};
pub use limits::{FailurePolicy, PluginLimits};
pub use registry::{Loaded, PluginInfo, PluginKind, Registry};
pub use router::{Destination, LoadedRouter, RouteTarget, RouteVerdict};
pub use txn_checker::{LoadedChecker, TxnMeta, TxnVerdict};

/// ABI major this host speaks (the WIT package version 0.1 -> 1).
pub const ABI_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin {0:?} is not loaded")]
    NotFound(String),
    #[error("plugin {0:?} is already loaded (use upgrade to replace it)")]
    Exists(String),
    #[error("invalid plugin name {0:?}: use 1-64 characters of [A-Za-z0-9._-]")]
    BadName(String),
    #[error("invalid plugin: {0}")]
    Invalid(String),
    #[error("invalid plugin config: {0}")]
    Config(String),
    #[error("plugin {name:?} is in use ({users}); use --force to unload anyway")]
    InUse { name: String, users: String },
    #[error("expression type {ty} is already served by plugin {name:?}")]
    TypeTaken { ty: String, name: String },
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests;
