//! The plugins built with the broker (by `build.rs`, from `plugins/`): the shipped filters
//! embedded in the binary and loaded at start, and where the other built plugins are.

use std::path::PathBuf;

/// Directory of the built components (`<crate_name>.wasm`).
pub const PLUGINS_DIR: &str = env!("WASMQ_PLUGINS_DIR");

pub const TAG_FILTER: &[u8] =
    include_bytes!(concat!(env!("WASMQ_PLUGINS_DIR"), "/tag_filter.wasm"));
pub const SQL92_FILTER: &[u8] =
    include_bytes!(concat!(env!("WASMQ_PLUGINS_DIR"), "/sql92_filter.wasm"));

/// Loaded at start unless the registry has a plugin of that name.
pub const SHIPPED: [(&str, &[u8]); 2] =
    [("tag-filter", TAG_FILTER), ("sql92-filter", SQL92_FILTER)];

/// Path of a built plugin by crate name (`json-filter`, `misbehave`, ...).
pub fn path(crate_name: &str) -> PathBuf {
    PathBuf::from(PLUGINS_DIR).join(format!("{}.wasm", crate_name.replace('-', "_")))
}
