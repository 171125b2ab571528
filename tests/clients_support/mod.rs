//! Runs the real third-party clients (npm ali-ons, PyPI rocketmq-client-python) through the
//! scripts in `tests/clients/`, installing them first (`tests/clients/install.sh`, once).

#![allow(dead_code)]

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Once};
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

/// A client process running one job; its stdout is JSON lines (read as they come, so a chatty
/// client never blocks on a full pipe).
pub struct ClientProc(LiveClient);

fn command(lang: Lang, job: &Value) -> Command {
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
    cmd.arg(job.to_string())
        .current_dir(&dir)
        // The C++ client writes its logs under $HOME/logs.
        .env("HOME", &home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

impl ClientProc {
    pub fn spawn(lang: Lang, job: &Value) -> ClientProc {
        ClientProc(LiveClient::spawn(lang, job))
    }

    /// Waits for the process (bounded by `limit`) and returns its JSON lines.
    pub fn finish(self, limit: Duration) -> Vec<Value> {
        self.0.finish(limit)
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

/// A client process whose JSON lines are read as they come (a consumer watched while the
/// test changes the cluster around it). Killed by PID when dropped.
pub struct LiveClient {
    child: Option<Child>,
    lang: Lang,
    lines: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl LiveClient {
    pub fn spawn(lang: Lang, job: &Value) -> LiveClient {
        let mut child = command(lang, job).spawn().expect("start client");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let l = lines.clone();
        let e = stderr.clone();
        let readers = vec![
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        l.lock().unwrap().push(v);
                    }
                }
            }),
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                    let mut e = e.lock().unwrap();
                    if e.len() < 16_000 {
                        e.push_str(&line);
                        e.push('\n');
                    }
                }
            }),
        ];
        LiveClient {
            child: Some(child),
            lang,
            lines,
            stderr,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The JSON lines printed so far.
    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (bounded) until the lines printed so far satisfy `done`; whether they did.
    pub fn wait_until(&self, limit: Duration, done: impl Fn(&[Value]) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if done(&self.lines.lock().unwrap()) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit (killed after `limit`) and returns all its lines; panics
    /// on a `fatal` or `timeout` event, as [`ClientProc::finish`] does.
    pub fn finish(mut self, limit: Duration) -> Vec<Value> {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + limit;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let lines = self.lines();
        if lines
            .iter()
            .any(|l| l["event"] == "fatal" || l["event"] == "timeout")
        {
            panic!(
                "{:?} client failed: {lines:?}\nstderr: {}",
                self.lang,
                self.stderr()
            );
        }
        lines
    }
}

impl Drop for LiveClient {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
