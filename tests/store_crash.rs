//! Crash test: a writer child process is killed with SIGKILL at random moments, many times.
//! After each kill the store is reopened (crash recovery) and checked: every put the child
//! reported acknowledged is readable with the same bytes; no record appears twice in a consume
//! queue; consume queues agree with the commit log.
//!
//! Scope: process crashes (SIGKILL). The page cache survives them, so this proves the
//! recovery logic (torn tails, re-dispatch, checkpoints), not the disk's behaviour on power
//! loss; `sync` mode's fdatasync before acknowledging is what covers that.
//!
//! The child is this test binary re-run with `--ignored --exact child_writer`; it learns its
//! job from environment variables. `WASMQ_CRASH_CYCLES` sets the number of sync-mode kills
//! (default 20).

mod store_support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use store_support::*;
use wasmq::store::{FlushMode, MessageStore};

const ENV_DIR: &str = "WASMQ_CRASH_DIR";
const ENV_MODE: &str = "WASMQ_CRASH_MODE";
const ENV_ACKS: &str = "WASMQ_CRASH_ACKS";
const ENV_CYCLE: &str = "WASMQ_CRASH_CYCLE";

fn mode_name(m: FlushMode) -> &'static str {
    match m {
        FlushMode::Sync => "sync",
        FlushMode::Async => "async",
    }
}

fn read_acks(path: &std::path::Path) -> Vec<Ack> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(Ack::parse)
        .collect()
}

/// The writer. Not a test by itself: the parent runs it in a child process.
#[test]
#[ignore = "run by the crash tests as a child process"]
fn child_writer() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let mode = if std::env::var(ENV_MODE).as_deref() == Ok("async") {
        FlushMode::Async
    } else {
        FlushMode::Sync
    };
    let cycle: u32 = std::env::var(ENV_CYCLE).unwrap().parse().unwrap();
    let acks = read_acks(std::path::Path::new(&std::env::var(ENV_ACKS).unwrap()));
    let store =
        std::sync::Arc::new(MessageStore::open(config(dir.as_ref(), mode), host()).unwrap());
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    // Recovery of the previous crash must hold every invariant before we write more.
    match verify(&store, &acks) {
        Ok(n) => {
            let mut o = out.lock().unwrap();
            // Own line: libtest has printed "test child_writer ... " without a newline.
            let line = format!("\nVERIFIED {n} {}\n", store.recovery().redispatched);
            o.write_all(line.as_bytes()).unwrap();
            o.flush().unwrap();
        }
        Err(e) => {
            eprintln!("VERIFY FAILED after crash recovery: {e}");
            std::process::exit(3);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..6u32 {
            let store = store.clone();
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                // Bounded: the parent kills us long before this ends.
                for seq in 0..200_000u32 {
                    let id = format!("c{cycle}w{w}s{seq}");
                    let topic = TOPICS[(seq % 2) as usize];
                    let qid = ((seq / 2) % QUEUES as u32) as i32;
                    let b = body(&id);
                    let p = props(&id);
                    let batch = if seq % 7 == 0 { 3 } else { 1 };
                    let ids: Vec<String> = (0..batch).map(|k| format!("{id}b{k}")).collect();
                    let bodies: Vec<Vec<u8>> = ids
                        .iter()
                        .map(|i| if batch == 1 { b.clone() } else { body(i) })
                        .collect();
                    let propss: Vec<String> = ids
                        .iter()
                        .map(|i| if batch == 1 { p.clone() } else { props(i) })
                        .collect();
                    let ids: Vec<String> = if batch == 1 { vec![id.clone()] } else { ids };
                    let msgs: Vec<_> = (0..ids.len())
                        .map(|k| input(topic, qid, &bodies[k], &propss[k]))
                        .collect();
                    let r = store.put(&msgs).await;
                    if !r.status.is_ok() {
                        eprintln!("put failed: {:?}", r.status);
                        std::process::exit(4);
                    }
                    let mut lines = String::new();
                    for (k, a) in r.appended.iter().enumerate() {
                        lines.push_str(
                            &Ack {
                                id: ids[k].clone(),
                                topic: topic.to_string(),
                                queue_id: qid,
                                queue_offset: a.queue_offset,
                                phys: a.physical_offset,
                            }
                            .line(),
                        );
                    }
                    let mut o = out.lock().unwrap();
                    o.write_all(lines.as_bytes()).unwrap();
                    o.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

fn run_cycles(mode: FlushMode, cycles: u32) {
    let dir = tempfile::tempdir().unwrap();
    let acks_path = dir.path().join("acks.txt");
    let store_dir = dir.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    let mut total_acks = 0usize;
    let mut redispatched_total = 0u64;
    for cycle in 0..cycles {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_DIR, &store_dir)
            .env(ENV_MODE, mode_name(mode))
            .env(ENV_ACKS, &acks_path)
            .env(ENV_CYCLE, cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for the child's post-recovery verification.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut verified = false;
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) if l.starts_with("VERIFIED") => {
                    let n: u64 = l
                        .split(' ')
                        .nth(2)
                        .and_then(|x| x.parse().ok())
                        .unwrap_or(0);
                    redispatched_total += n;
                    verified = true;
                    break;
                }
                Ok(_) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(st)) = child.try_wait() {
                        panic!("cycle {cycle}: child exited before verifying: {st}");
                    }
                }
                Err(_) => break,
            }
        }
        assert!(
            verified,
            "cycle {cycle}: child did not verify the recovered store"
        );
        // Once it has acknowledged something (a signal, not a guess: a loaded machine can take
        // longer than the random window for the first sync flush), let it write for a random
        // while, then SIGKILL it mid-stream.
        let mut new: Vec<String> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while new.is_empty() && Instant::now() < deadline {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
                if l.starts_with("ACK ") {
                    new.push(l);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(30..250)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "child was killed");
        reader.join().unwrap();
        new.extend(rx.try_iter().filter(|l| l.starts_with("ACK ")));
        assert!(!new.is_empty(), "cycle {cycle}: child acknowledged nothing");
        total_acks += new.len();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&acks_path)
            .unwrap();
        for l in &new {
            writeln!(f, "{l}").unwrap();
        }
    }
    // Final recovery and check in this process.
    let acks = read_acks(&acks_path);
    assert_eq!(acks.len(), total_acks);
    let store = MessageStore::open(config(&store_dir, mode), host()).unwrap();
    assert!(store.recovery().crashed, "the abort marker shows the crash");
    let records = verify(&store, &acks).unwrap_or_else(|e| panic!("final verify: {e}"));
    assert!(records >= acks.len());
    eprintln!(
        "{} mode: {cycles} kills, {} acknowledged puts verified, {records} records in the log, {redispatched_total} re-dispatched in recovery",
        mode_name(mode),
        acks.len()
    );
}

#[test]
fn sigkill_during_sync_writes_loses_no_acknowledged_message() {
    let cycles = std::env::var("WASMQ_CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(20);
    run_cycles(FlushMode::Sync, cycles);
}

#[test]
fn sigkill_during_async_writes_recovers_cleanly() {
    run_cycles(FlushMode::Async, 6);
}
