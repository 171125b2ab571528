//! Starts the real `wasmq-broker` binary on free loopback ports in a temp store directory, and
//! stops it by PID (SIGTERM for a clean stop, SIGKILL for a crash) when the test is done.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Request builders and reply decoding shared by the broker tests (and the benches).
pub mod wire;

pub use wire::free_port;

pub struct BrokerProc {
    pub child: Option<Child>,
    pub broker: SocketAddr,
    pub namesrv: SocketAddr,
    pub store_dir: PathBuf,
    pub log: PathBuf,
    extra: Vec<String>,
    /// Environment of the next (re)start, e.g. `WASMQ_FAILPOINT`.
    pub env: Vec<(String, String)>,
    /// Whether `namesrv` is the broker's embedded NameServer (else an external one it
    /// registers with).
    embedded_namesrv: bool,
    segment_size: u64,
}

impl BrokerProc {
    /// Starts a broker with an embedded NameServer; `extra` are more flags (e.g. `--flush sync`).
    pub fn start(store_dir: &Path, extra: &[&str]) -> BrokerProc {
        Self::start_env(store_dir, extra, &[])
    }

    /// As [`start`](Self::start), with environment variables for this first start.
    pub fn start_env(store_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> BrokerProc {
        let mut p = Self::start_stopped(store_dir, extra);
        p.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        p.spawn();
        p
    }

    fn start_stopped(store_dir: &Path, extra: &[&str]) -> BrokerProc {
        BrokerProc {
            child: None,
            broker: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            namesrv: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            store_dir: store_dir.to_path_buf(),
            log: store_dir.with_extension("log"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            embedded_namesrv: true,
            segment_size: 8 << 20,
        }
    }

    /// Starts a broker without an embedded NameServer that registers with the external one at
    /// `namesrv` (`--namesrv-listen off --namesrv ADDR`), with commit-log segments of
    /// `segment_size` bytes; `extra` are more flags (role, broker id, HA address, ...).
    pub fn start_external(
        store_dir: &Path,
        namesrv: SocketAddr,
        segment_size: u64,
        extra: &[&str],
    ) -> BrokerProc {
        let mut p = Self::start_stopped(store_dir, extra);
        p.namesrv = namesrv;
        p.embedded_namesrv = false;
        p.segment_size = segment_size;
        p.spawn();
        p
    }

    /// Waits (bounded) for the process to exit by itself, e.g. at a crash point. Returns
    /// whether it did.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while let Some(c) = self.child.as_mut() {
            if let Ok(Some(_)) = c.try_wait() {
                self.child = None;
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmq-broker"));
        cmd.args(["--listen", &self.broker.to_string()]);
        if self.embedded_namesrv {
            cmd.args(["--namesrv-listen", &self.namesrv.to_string()]);
        } else {
            cmd.args(["--namesrv-listen", "off"])
                .args(["--namesrv", &self.namesrv.to_string()]);
        }
        // A master binds its HA port too (default: broker port + 1, which nobody reserved):
        // give it a free one of its own unless the test chose.
        let is_slave = self.extra.iter().any(|a| a == "slave");
        if !is_slave && !self.extra.iter().any(|a| a == "--ha-listen") {
            cmd.args(["--ha-listen", &format!("127.0.0.1:{}", free_port())]);
        }
        let child = cmd
            .arg("--store-dir")
            .arg(&self.store_dir)
            .args(["--segment-size", &self.segment_size.to_string()])
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start wasmq-broker");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(self.broker).is_ok()
                && (!self.embedded_namesrv || TcpStream::connect(self.namesrv).is_ok())
            {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("broker exited early ({st}); log:\n{}", self.log_text());
                }
            }
            assert!(
                Instant::now() < deadline,
                "broker did not start; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// SIGKILL: a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the running process by its PID.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid();
        assert!(pid > 0, "not running");
        let st = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{signal} {pid} failed");
    }

    /// SIGTERM and wait: a clean stop. Returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts again on the same ports and store.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill first");
        self.spawn();
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        self.kill9();
    }
}
