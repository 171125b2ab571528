//! A module compiled and classified, before it is activated as one kind of plugin: its content
//! hash, size, compiled component and exports, and the [`PluginKind`] its exports make it.
//!
//! The export names of every kind live here (not in the kind files) so that both the registry
//! and the kinds can name them without the kinds depending on the registry.

use serde::{Deserialize, Serialize};
use wasmtime::component::Component;

use super::engine::{self, PluginEngine};
use super::error::PluginError;

/// The export a filter plugin must have.
pub const FILTER_EXPORT: &str = "wasmq:plugin/filter@0.1.0";

/// The export a transaction checker must have.
pub const TXN_CHECKER_EXPORT: &str = "wasmq:plugin/txn-checker@0.1.0";

/// The export a router must have.
pub const ROUTER_EXPORT: &str = "wasmq:plugin/router@0.1.0";

/// The kinds of plugin, by the WIT world they implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    Filter,
    TxnChecker,
    Router,
}

impl PluginKind {
    /// Every kind, in the order a module's exports are matched against them.
    pub const ALL: [PluginKind; 3] = [
        PluginKind::Filter,
        PluginKind::TxnChecker,
        PluginKind::Router,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Filter => "filter",
            PluginKind::TxnChecker => "txn-checker",
            PluginKind::Router => "router",
        }
    }

    /// The interface a plugin of this kind exports.
    pub const fn export(self) -> &'static str {
        match self {
            PluginKind::Filter => FILTER_EXPORT,
            PluginKind::TxnChecker => TXN_CHECKER_EXPORT,
            PluginKind::Router => ROUTER_EXPORT,
        }
    }
}

impl std::str::FromStr for PluginKind {
    type Err = PluginError;
    fn from_str(s: &str) -> Result<Self, PluginError> {
        match s {
            "filter" => Ok(PluginKind::Filter),
            "txn-checker" => Ok(PluginKind::TxnChecker),
            "router" => Ok(PluginKind::Router),
            _ => Err(PluginError::Invalid(format!(
                "unknown plugin kind {s:?} (filter, txn-checker, router)"
            ))),
        }
    }
}

/// A module compiled (or taken from the compile cache) and its exports, before it is
/// activated as one kind of plugin.
pub struct Module {
    pub sha256: String,
    pub size: usize,
    pub component: Component,
    pub exports: Vec<String>,
}

impl Module {
    /// Checks the header and compiles (cached by content hash).
    pub fn compile(engine: &PluginEngine, wasm: &[u8]) -> Result<Module, PluginError> {
        engine::check_header(wasm)?;
        let sha256 = engine::sha256_hex(wasm);
        let component = engine.compile(&sha256, wasm)?;
        let exports = component
            .component_type()
            .exports(engine.engine())
            .map(|(n, _)| n.to_string())
            .collect();
        Ok(Module {
            sha256,
            size: wasm.len(),
            component,
            exports,
        })
    }

    /// The kind of plugin the module is, from its exports (any version of a kind's interface
    /// counts: the kind's load then explains a version mismatch precisely).
    pub fn kind(&self) -> Result<PluginKind, PluginError> {
        let has = |export: &str| {
            let family = export.split('@').next().unwrap_or(export);
            self.exports
                .iter()
                .any(|n| n.split('@').next() == Some(family))
        };
        PluginKind::ALL
            .into_iter()
            .find(|k| has(k.export()))
            .ok_or_else(|| {
                PluginError::Invalid(format!(
                    "exports neither {FILTER_EXPORT} nor {TXN_CHECKER_EXPORT} nor {ROUTER_EXPORT} (it exports: {})",
                    if self.exports.is_empty() {
                        "nothing".to_string()
                    } else {
                        self.exports.join(", ")
                    }
                ))
            })
    }
}
