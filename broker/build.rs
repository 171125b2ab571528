//! Builds the guest plugins (`plugins/`, its own workspace) as wasm32-wasip2 components, so
//! `cargo run` / `cargo test` of the broker always have the shipped filters to embed and the
//! test plugins to load. Installs the wasm target with rustup when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .parent()
        .expect("broker/ is inside the workspace")
        .to_path_buf();
    for d in ["plugins", "plugin-sdk", "sql92"] {
        watch(&root.join(d));
    }
    let target_dir = root.join("target").join("wasm-plugins");
    let out = target_dir.join(TARGET).join("release");
    println!("cargo:rerun-if-env-changed=WASMQ_PLUGINS_PREBUILT");
    // Development switch: use the plugins as last built (e.g. while editing them).
    if std::env::var_os("WASMQ_PLUGINS_PREBUILT").is_some() {
        println!("cargo:rustc-env=WASMQ_PLUGINS_DIR={}", out.display());
        return;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    ensure_target();
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(root.join("plugins").join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings are for the host, not for the guests.
    for v in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(v);
    }
    let status = cmd.status().expect("cannot run cargo to build the plugins");
    if !status.success() {
        panic!(
            "building the wasm plugins failed ({status}); run: cargo build --release --target {TARGET} --manifest-path plugins/Cargo.toml"
        );
    }
    println!("cargo:rustc-env=WASMQ_PLUGINS_DIR={}", out.display());
}

fn watch(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            watch(&p);
        } else {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
}

fn ensure_target() {
    let sysroot = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(s) = sysroot {
        if Path::new(&s).join("lib/rustlib").join(TARGET).exists() {
            return;
        }
    }
    println!(
        "cargo:warning=installing the {TARGET} target with rustup (needed to build the plugins)"
    );
    let ok = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        panic!("the {TARGET} target is missing and `rustup target add {TARGET}` failed");
    }
}
