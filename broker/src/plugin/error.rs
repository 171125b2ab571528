//! The errors of the plugin host: [`PluginError`] for what an operator does (load, upgrade,
//! unload, bind) and [`EvalError`] for a call into a loaded plugin. Every other file of the
//! plugin host uses them, so they live apart from the code that raises them.

/// Why an operator's request on the plugin registry was refused.
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
    #[error("plugin {name:?} is in use: the new version no longer serves expression type {types} used by {users}; use --force to upgrade anyway")]
    UpgradeDropsTypesInUse {
        name: String,
        types: String,
        users: String,
    },
    #[error("expression type {ty} is already served by plugin {name:?}")]
    TypeTaken { ty: String, name: String },
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Why a call into a loaded plugin gave no answer; the caller applies the plugin's
/// [`FailurePolicy`](super::FailurePolicy) (a compile error excepted: that one is the consumer's).
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
