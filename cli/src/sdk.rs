//! The plugin SDK this `wasmq` carries: the files of the `wasmq-plugin-sdk` package
//! (plugin-sdk/, as `cargo package` packs it) compiled into the binary, so `wasmq plugin new`
//! works with only the binary and a Rust toolchain. `write_to` writes them out next to a new
//! crate; `lockfile_for` derives the crate's `Cargo.lock` from the SDK's own, so the crate builds
//! (`--locked`, even `--offline` with a warm cache) with the dependency versions the SDK is
//! tested with.

use std::path::Path;

use anyhow::{Context, Result};

/// Name of the SDK package.
pub const NAME: &str = "wasmq-plugin-sdk";

/// The SDK's manifest (its `version` is [`version`]).
const MANIFEST: &str = include_str!("../../plugin-sdk/Cargo.toml");

/// The SDK's lockfile: the versions of its dependencies CI builds and tests it with.
const LOCK: &str = include_str!("../../plugin-sdk/Cargo.lock");

/// The files a crate needs to build against the SDK (the package less its tests and lockfile),
/// as (path relative to the SDK's root, text): listed by cli/build.rs from plugin-sdk/.
pub const FILES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));

/// The SDK's version (from its manifest).
pub fn version() -> &'static str {
    manifest_value(MANIFEST, "version").expect("plugin-sdk/Cargo.toml has a version")
}

/// The version in the manifest of the SDK at `dir`, if it is one.
pub fn version_at(dir: &Path) -> Option<String> {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    if manifest_value(&manifest, "name") != Some(NAME) {
        return None;
    }
    manifest_value(&manifest, "version").map(str::to_string)
}

/// The plugin ABI the SDK speaks: the WIT package, e.g. `wasmq:plugin@0.1.0`.
pub fn abi() -> &'static str {
    let wit = FILES
        .iter()
        .find(|(p, _)| *p == "wit/plugin.wit")
        .map(|(_, t)| *t)
        .unwrap_or_default();
    wit.lines()
        .find_map(|l| l.trim().strip_prefix("package "))
        .map(|p| p.trim_end_matches(';').trim())
        .unwrap_or("wasmq:plugin")
}

/// Directory, relative to a new crate, its copy of the SDK is written to.
pub fn vendor_dir() -> String {
    format!("vendor/{NAME}-{}", version())
}

/// Writes the SDK's files under `dir`.
pub fn write_to(dir: &Path) -> Result<()> {
    for (rel, text) in FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The embedded SDK's lockfile with the crate `name` added: see [`lockfile_from`].
pub fn lockfile_for(name: &str) -> Option<String> {
    lockfile_from(LOCK, name)
}

/// An SDK's lockfile `lock` with the crate `name` (version 0.1.0, depending on the SDK only)
/// added where Cargo sorts it, so `cargo build --locked` accepts it unchanged. `None` when the
/// lockfile already has a package of that name (Cargo would then qualify names with versions:
/// the crate is written without a lockfile and Cargo makes one).
pub fn lockfile_from(lock: &str, name: &str) -> Option<String> {
    let (head, mut packages) = split_lock(lock);
    if packages.iter().any(|p| package_name(p) == name) {
        return None;
    }
    let at = packages
        .iter()
        .position(|p| package_name(p) >= name)
        .unwrap_or(packages.len());
    packages.insert(
        at,
        format!(
            "[[package]]\nname = \"{name}\"\nversion = \"0.1.0\"\ndependencies = [\n \"{NAME}\",\n]\n"
        ),
    );
    Some(format!("{head}{}", packages.join("\n")))
}

/// The lockfile's header (up to the first `[[package]]`) and its `[[package]]` blocks, each
/// ending in one newline.
fn split_lock(lock: &str) -> (&str, Vec<String>) {
    let (head, rest) = lock.split_at(lock.find("[[package]]").unwrap_or(lock.len()));
    let packages = rest
        .split("\n\n")
        .map(|b| b.trim_end_matches('\n'))
        .filter(|b| !b.is_empty())
        .map(|b| format!("{b}\n"))
        .collect();
    (head, packages)
}

fn package_name(block: &str) -> &str {
    manifest_value(block, "name").unwrap_or_default()
}

/// The string value of the first `key = "..."` line of a TOML text (enough for the
/// `[package]` name and version of the manifests and lockfile entries read here).
fn manifest_value<'a>(toml: &'a str, key: &str) -> Option<&'a str> {
    toml.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        if k.trim() != key {
            return None;
        }
        v.trim().strip_prefix('"')?.strip_suffix('"')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_every_packaged_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk");
        let mut on_disk = vec!["Cargo.toml".to_string(), "README.md".to_string()];
        for d in ["src", "wit"] {
            for e in std::fs::read_dir(root.join(d)).unwrap() {
                on_disk.push(format!("{d}/{}", e.unwrap().file_name().to_string_lossy()));
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(
            embedded, on_disk,
            "cli/src/sdk.rs FILES lists plugin-sdk's files"
        );
    }

    #[test]
    fn version_abi_and_lockfile() {
        assert_eq!(version(), "0.1.0");
        assert!(abi().starts_with("wasmq:plugin@"), "{}", abi());
        assert_eq!(lockfile_for("serde"), None, "a dependency's name");
        let lock = lockfile_for("price-filter").unwrap();
        let blocks = split_lock(&lock).1;
        let names: Vec<&str> = blocks.iter().map(|b| package_name(b)).collect();
        assert!(names.contains(&"price-filter") && names.contains(&NAME));
        assert!(names.windows(2).all(|w| w[0] <= w[1]), "{names:?}");
        assert!(lock.ends_with('\n') && !lock.ends_with("\n\n"));
        assert_eq!(split_lock(&lock).1.len(), split_lock(LOCK).1.len() + 1);
    }
}
