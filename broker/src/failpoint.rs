//! Crash points for durability tests: `WASMQ_FAILPOINT=<name>` makes the process kill itself
//! with SIGKILL when it reaches the named point, so a test can crash the broker exactly
//! between two writes. `WASMQ_FAILPOINT=<name>=<n>` arms a fault that does not crash: the
//! named point fires on every `n`th pass ([`every_nth`]), e.g. flow control answering a send
//! as if the store were busy. Unset (always, outside tests) either costs one cached lookup.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            std::env::var("WASMQ_FAILPOINT")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .as_deref()
}

/// Kills the process with SIGKILL if `name` is the armed crash point.
pub fn hit(name: &str) {
    if armed() == Some(name) {
        tracing::warn!(failpoint = name, "crash point reached: killing the process");
        let pid = std::process::id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
        // SIGKILL is asynchronous for the signalling process: never go on past the point.
        loop {
            std::thread::park();
        }
    }
}

/// Whether the armed fault `name=<n>` fires on this pass: true on every `n`th call (counted
/// per process from the first), false when another point (or none) is armed.
pub fn every_nth(name: &str) -> bool {
    let Some((armed, n)) = armed().and_then(|a| a.split_once('=')) else {
        return false;
    };
    if armed != name {
        return false;
    }
    static PASSES: AtomicU64 = AtomicU64::new(0);
    let n = n.trim().parse::<u64>().unwrap_or(0).max(1);
    (PASSES.fetch_add(1, Ordering::Relaxed) + 1) % n == 0
}
