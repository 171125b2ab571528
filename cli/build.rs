//! Lists the plugin SDK's files for cli/src/sdk.rs to embed (`$OUT_DIR/sdk_files.rs`): the
//! package's manifest and README, `src/**/*.rs` and `wit/*.wit`, so a file added to the SDK is
//! carried without editing the CLI.

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let sdk = manifest
        .parent()
        .expect("cli/ is inside the workspace")
        .join("plugin-sdk");
    let mut files = vec!["Cargo.toml".to_string(), "README.md".to_string()];
    collect(&sdk, "src", "rs", &mut files);
    collect(&sdk, "wit", "wit", &mut files);
    files.sort();
    let mut out = String::from("&[\n");
    for f in &files {
        let abs = sdk.join(f);
        println!("cargo:rerun-if-changed={}", abs.display());
        out.push_str(&format!(
            "    ({f:?}, include_str!({:?})),\n",
            abs.display().to_string()
        ));
    }
    out.push_str("]\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("sdk_files.rs");
    std::fs::write(dest, out).expect("write sdk_files.rs");
}

/// Files under `sdk/rel` ending in `.ext`, as paths relative to `sdk` with `/` separators.
/// Directories are watched too, so adding or removing a file reruns this script.
fn collect(sdk: &Path, rel: &str, ext: &str, files: &mut Vec<String>) {
    let dir = sdk.join(rel);
    println!("cargo:rerun-if-changed={}", dir.display());
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let sub = format!("{rel}/{name}");
        if e.path().is_dir() {
            collect(sdk, &sub, ext, files);
        } else if name.ends_with(&format!(".{ext}")) {
            files.push(sub);
        }
    }
}
