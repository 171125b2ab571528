//! Limits and failure policy of one plugin. Operators set them at load with reserved
//! `wasmq.*` config keys; every other key is passed to the plugin's `configure`.

use super::error::PluginError;

/// What happens to a batch when the plugin fails on it (trap, timeout, bad output) or is
/// quarantined. Transaction checkers read the same three choices as `commit` (= deliver),
/// `rollback` (= skip) and `unknown` (= hold: ask the producer and check again later); either
/// spelling is accepted for either kind. Routers read them as `keep` (= deliver: the client's
/// choice stands) and `reject` (= skip; hold also rejects: the send fails and nothing is
/// stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Fail open: every message of the batch is delivered.
    Deliver,
    /// Fail closed: no message of the batch is delivered (they are skipped for good).
    Skip,
    /// Nothing is delivered and the consumer does not move past the batch: it is tried again
    /// on a later pull.
    Hold,
}

impl std::str::FromStr for FailurePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "deliver" | "commit" | "keep" => Ok(FailurePolicy::Deliver),
            "skip" | "rollback" | "reject" => Ok(FailurePolicy::Skip),
            "hold" | "unknown" => Ok(FailurePolicy::Hold),
            _ => Err(format!(
                "{s:?} is not a failure policy (deliver, skip, hold; for transaction checkers also commit, rollback, unknown; for routers keep, reject)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLimits {
    /// Wall-clock budget of one call (enforced by epoch interruption).
    pub deadline_ms: u64,
    /// Largest linear memory a plugin instance may grow to.
    pub memory_bytes: usize,
    pub on_failure: FailurePolicy,
    /// Consecutive failures after which the plugin is quarantined (not called any more; the
    /// policy decides every batch) until it is upgraded or reloaded.
    pub quarantine_after: u32,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            deadline_ms: 200,
            memory_bytes: 64 << 20,
            on_failure: FailurePolicy::Hold,
            quarantine_after: 5,
        }
    }
}

/// Prefix of the host's own config keys.
pub const HOST_KEY_PREFIX: &str = "wasmq.";

impl PluginLimits {
    /// Splits `config` into the host's limits and the plugin's own settings.
    #[allow(clippy::type_complexity)]
    pub fn from_config(
        config: &[(String, String)],
    ) -> Result<(PluginLimits, Vec<(String, String)>), PluginError> {
        let mut l = PluginLimits::default();
        let mut rest = Vec::new();
        for (k, v) in config {
            let Some(key) = k.strip_prefix(HOST_KEY_PREFIX) else {
                rest.push((k.clone(), v.clone()));
                continue;
            };
            let bad = |why: &str| PluginError::Config(format!("{k}={v}: {why}"));
            match key {
                "deadline_ms" => {
                    l.deadline_ms = v
                        .parse()
                        .ok()
                        .filter(|d| (1..=60_000).contains(d))
                        .ok_or_else(|| bad("expected 1..60000 milliseconds"))?
                }
                "memory_mb" => {
                    let mb: usize = v
                        .parse()
                        .ok()
                        .filter(|m| (1..=4096).contains(m))
                        .ok_or_else(|| bad("expected 1..4096 MiB"))?;
                    l.memory_bytes = mb << 20;
                }
                "on_failure" => l.on_failure = v.parse().map_err(|e: String| bad(&e))?,
                "quarantine_after" => {
                    l.quarantine_after = v
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| bad("expected a count >= 1"))?
                }
                _ => {
                    return Err(bad(
                        "unknown host key (deadline_ms, memory_mb, on_failure, quarantine_after)",
                    ))
                }
            }
        }
        Ok((l, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn host_keys_are_split_from_plugin_keys() {
        let (l, rest) = PluginLimits::from_config(&[
            kv("wasmq.deadline_ms", "50"),
            kv("divisor", "3"),
            kv("wasmq.on_failure", "skip"),
            kv("wasmq.memory_mb", "8"),
        ])
        .unwrap();
        assert_eq!(l.deadline_ms, 50);
        assert_eq!(l.on_failure, FailurePolicy::Skip);
        assert_eq!(l.memory_bytes, 8 << 20);
        assert_eq!(rest, vec![kv("divisor", "3")]);
    }

    #[test]
    fn bad_host_keys_are_refused() {
        for (k, v) in [
            ("wasmq.deadline_ms", "0"),
            ("wasmq.deadline_ms", "x"),
            ("wasmq.memory_mb", "0"),
            ("wasmq.on_failure", "explode"),
            ("wasmq.quarantine_after", "0"),
            ("wasmq.nonsense", "1"),
        ] {
            let e = PluginLimits::from_config(&[kv(k, v)]).unwrap_err();
            assert!(e.to_string().contains(k), "{e}");
        }
    }
}
