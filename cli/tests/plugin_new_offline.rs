//! `wasmq plugin new` with only the `wasmq` binary: the binary alone (copied into an empty
//! directory, run there with HOME pointing at it) writes a crate that carries its SDK and a
//! lockfile, mentions nothing of the repository the binary was built in, builds offline and
//! `--locked`, and loads into a broker.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every file under `dir` (skipping `target/`), with its text.
fn files(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            if p.file_name().unwrap() != "target" {
                files(&p, out);
            }
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
            out.push((p, text));
        }
    }
}

/// CARGO_HOME / RUSTUP_HOME as the toolchain running the test has them (HOME changes below).
fn tool_home(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME or CARGO_HOME/RUSTUP_HOME"))
            .join(default)
    })
}

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn plugin_new_with_only_the_binary_builds_offline_and_loads() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let bin = home.join("wasmq");
    std::fs::copy(env!("CARGO_BIN_EXE_wasmq"), &bin).unwrap();
    let (cargo_home, rustup_home) = (
        tool_home("CARGO_HOME", ".cargo"),
        tool_home("RUSTUP_HOME", ".rustup"),
    );
    let wasmq = |args: &[&str]| {
        Command::new(&bin)
            .args(args)
            .current_dir(home)
            .env("HOME", home)
            .env("CARGO_HOME", &cargo_home)
            .env("RUSTUP_HOME", &rustup_home)
            .output()
            .unwrap()
    };
    let out = wasmq(&["plugin", "new", "price-filter", "--kind", "filter"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = home.join("price-filter");
    let sdk_dir = "vendor/wasmq-plugin-sdk-0.1.0";
    for f in [
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        "src/lib.rs",
        &format!("{sdk_dir}/Cargo.toml"),
        &format!("{sdk_dir}/src/lib.rs"),
        &format!("{sdk_dir}/wit/plugin.wit"),
    ] {
        assert!(root.join(f).is_file(), "{f}");
    }
    let mut written = Vec::new();
    files(&root, &mut written);
    for (path, text) in &written {
        assert!(
            !text.contains(repo.to_str().unwrap()),
            "{} names the repository {}",
            path.display(),
            repo.display()
        );
        assert!(
            !text.contains("{{"),
            "{}: unfilled placeholder",
            path.display()
        );
    }
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(&format!("path = \"{sdk_dir}\"")),
        "{manifest}"
    );
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains("wasmq 0.1.0") && readme.contains("wasmq:plugin@0.1.0"),
        "{readme}"
    );

    // Bad input is refused, saying why; nothing is overwritten.
    let again = wasmq(&["plugin", "new", "price-filter"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let not_sdk = wasmq(&["plugin", "new", "other", "--sdk", "."]);
    assert!(!not_sdk.status.success());
    assert!(
        String::from_utf8_lossy(&not_sdk.stderr).contains("is not the wasmq plugin SDK"),
        "{}",
        String::from_utf8_lossy(&not_sdk.stderr)
    );
    assert!(!home.join("other").exists());

    // It builds offline with the lockfile as written, in a target directory of its own (about
    // 20 s: wit-bindgen's macro crates and the crate; the registry cache is CARGO_HOME's).
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = Command::new(&cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .args(["--offline", "--locked", "--quiet"])
        .current_dir(&root)
        .env("HOME", home)
        .env("CARGO_HOME", &cargo_home)
        .env("RUSTUP_HOME", &rustup_home)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "offline --locked build failed: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    let wasm = root.join("target/wasm32-wasip2/release/price_filter.wasm");
    assert!(wasm.is_file(), "{}", wasm.display());

    // A broker validates it against the filter world and lists it.
    let broker_bin = PathBuf::from(env!("CARGO_BIN_EXE_wasmq")).with_file_name("wasmq-broker");
    assert!(
        broker_bin.exists(),
        "{}: cargo test --workspace builds it",
        broker_bin.display()
    );
    let (b, ns) = (free(), free());
    let store = tempfile::tempdir().unwrap();
    let _broker = Broker(
        Command::new(broker_bin)
            .args([
                "--listen",
                &b.to_string(),
                "--namesrv-listen",
                &ns.to_string(),
            ])
            .arg("--store-dir")
            .arg(store.path())
            .args(["--segment-size", "4194304"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(ns).is_err() || TcpStream::connect(b).is_err() {
        assert!(Instant::now() < deadline, "broker did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ns = ns.to_string();
    let load = wasmq(&[
        "--namesrv",
        &ns,
        "plugin",
        "load",
        "--name",
        "price-filter",
        "--file",
        wasm.to_str().unwrap(),
    ]);
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let list = wasmq(&["--namesrv", &ns, "plugin", "list"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("price-filter ") && l.contains("filter")),
        "{listed}"
    );
}
