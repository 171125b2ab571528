//! Runs the real third-party clients (npm ali-ons, PyPI rocketmq-client-python) through the
//! scripts in `tests/clients/`, installing them first (`tests/clients/install.sh`, once).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/clients")
}

pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let st = Command::new("bash")
            .arg(clients_dir().join("install.sh"))
            .status()
            .expect("run tests/clients/install.sh");
        assert!(st.success(), "installing the real clients failed");
    });
}

#[derive(Clone, Copy, Debug)]
pub enum Lang {
    Node,
    Python,
}

/// A client process running one job; its stdout is JSON lines.
pub struct ClientProc {
    child: Option<Child>,
    lang: Lang,
}

impl ClientProc {
    pub fn spawn(lang: Lang, job: &Value) -> ClientProc {
        install();
        let dir = clients_dir();
        let mut cmd = match lang {
            Lang::Node => {
                let mut c = Command::new("node");
                c.arg(dir.join("node/client.js"));
                c
            }
            Lang::Python => {
                let mut c = Command::new(dir.join(".venv/bin/python"));
                c.arg(dir.join("python/client.py"));
                c
            }
        };
        let home = std::env::temp_dir().join("wasmq-client-home");
        let _ = std::fs::create_dir_all(&home);
        let child = cmd
            .arg(job.to_string())
            .current_dir(&dir)
            // The C++ client writes its logs under $HOME/logs.
            .env("HOME", &home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start client");
        ClientProc {
            child: Some(child),
            lang,
        }
    }

    /// Waits for the process (bounded by `limit`) and returns its JSON lines.
    pub fn finish(mut self, limit: Duration) -> Vec<Value> {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + limit;
        loop {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("client output");
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines
            .iter()
            .any(|l| l["event"] == "fatal" || l["event"] == "timeout")
        {
            panic!(
                "{:?} client failed: {}\nstderr: {}",
                self.lang,
                text,
                String::from_utf8_lossy(&out.stderr)
                    .chars()
                    .take(4000)
                    .collect::<String>()
            );
        }
        lines
    }
}

impl Drop for ClientProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a job to completion.
pub fn run(lang: Lang, job: Value) -> Vec<Value> {
    ClientProc::spawn(lang, &job).finish(Duration::from_secs(120))
}

pub fn events<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["event"] == kind).collect()
}

/// Waits until a consumer process printed `{"event":"ready"}` is not observable before exit
/// with piped stdout; consumers get a head start instead.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(2500));
}
