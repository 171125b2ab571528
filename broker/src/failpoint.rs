//! Crash points for durability tests: `WASMQ_FAILPOINT=<name>` makes the process kill itself
//! with SIGKILL when it reaches the named point, so a test can crash the broker exactly
//! between two writes. Unset (always, outside tests) it costs one cached lookup.

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
