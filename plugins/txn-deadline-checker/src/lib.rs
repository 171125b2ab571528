//! An example transaction check-back plugin: settles half messages by a property the
//! producer sets and by their age.
//!
//! For each half message the broker finds due for a check:
//! 1. if its property `commit_property` equals `commit_value`: **commit** (the producer marked
//!    the business operation done when it sent the message);
//! 2. else if it is at least `deadline_ms` old: **rollback** (the operation did not finish in
//!    time; the producer is not asked again);
//! 3. else **unknown**: the broker asks the producer group as usual and checks again later.
//!
//! Settings (all optional; any other key refuses the load):
//!
//! | key               | default         | meaning                                          |
//! |-------------------|-----------------|--------------------------------------------------|
//! | `deadline_ms`     | `60000`         | age in ms from which an unmarked message rolls back; an integer >= 1 |
//! | `commit_property` | `BUSINESS_DONE` | property marking a message to commit; not empty  |
//! | `commit_value`    | `true`          | value of that property that commits; not empty   |
//!
//! Values compare exactly (case-sensitive, no trimming). Empty names and values are refused
//! because RocketMQ's property encoding cannot carry them: they would never match.

use std::cell::RefCell;

use wasmq_plugin_sdk::{Message, TxnChecker, TxnMeta, TxnVerdict};

/// Default of `deadline_ms`: one minute.
pub const DEFAULT_DEADLINE_MS: u64 = 60_000;
/// Default of `commit_property`.
pub const DEFAULT_COMMIT_PROPERTY: &str = "BUSINESS_DONE";
/// Default of `commit_value`.
pub const DEFAULT_COMMIT_VALUE: &str = "true";

/// The plugin's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Age in milliseconds from which a half message not marked for commit rolls back.
    pub deadline_ms: u64,
    /// Property marking a half message to commit.
    pub commit_property: String,
    /// Value of `commit_property` that commits.
    pub commit_value: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            deadline_ms: DEFAULT_DEADLINE_MS,
            commit_property: DEFAULT_COMMIT_PROPERTY.to_owned(),
            commit_value: DEFAULT_COMMIT_VALUE.to_owned(),
        }
    }
}

impl Config {
    /// Parses the operator's settings over the defaults. Unknown or repeated keys, a
    /// `deadline_ms` that is not an integer >= 1 and empty property names or values are
    /// errors.
    pub fn parse(config: &[(String, String)]) -> Result<Config, String> {
        let mut parsed = Config::default();
        let mut seen: Vec<&str> = Vec::new();
        for (key, value) in config {
            if seen.contains(&key.as_str()) {
                return Err(format!("setting `{key}` given twice"));
            }
            match key.as_str() {
                "deadline_ms" => {
                    parsed.deadline_ms = match value.trim().parse::<u64>() {
                        Ok(ms) if ms >= 1 => ms,
                        _ => {
                            return Err(format!(
                                "deadline_ms must be an integer >= 1 (milliseconds), got `{value}`"
                            ))
                        }
                    }
                }
                "commit_property" | "commit_value" if value.is_empty() => {
                    return Err(format!("{key} must not be empty"));
                }
                "commit_property" => parsed.commit_property = value.clone(),
                "commit_value" => parsed.commit_value = value.clone(),
                _ => {
                    return Err(format!(
                    "unknown setting `{key}` (known: deadline_ms, commit_property, commit_value)"
                ))
                }
            }
            seen.push(key);
        }
        Ok(parsed)
    }

    /// The verdict on one half message.
    pub fn verdict(&self, message: &Message<'_>, meta: TxnMeta) -> TxnVerdict {
        if message.property(&self.commit_property) == Some(self.commit_value.as_str()) {
            TxnVerdict::Commit
        } else if meta.age_ms >= self.deadline_ms {
            TxnVerdict::Rollback
        } else {
            TxnVerdict::Unknown
        }
    }
}

thread_local! {
    /// The configuration in force: a plugin instance is single-threaded, and `configure`
    /// runs once right after instantiation, before any `check`.
    static CONFIG: RefCell<Config> = RefCell::new(Config::default());
}

/// The checker exported to the broker.
pub struct DeadlineChecker;

impl TxnChecker for DeadlineChecker {
    fn configure(config: &[(String, String)]) -> Result<(), String> {
        let parsed = Config::parse(config)?;
        CONFIG.set(parsed);
        Ok(())
    }

    fn check(message: &Message<'_>, meta: TxnMeta) -> TxnVerdict {
        CONFIG.with_borrow(|config| config.verdict(message, meta))
    }
}

wasmq_plugin_sdk::export_txn_checker!(DeadlineChecker);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmq_plugin_sdk::glue::check_batch;
    use wasmq_plugin_sdk::{encode_batch, Batch, CheckError, MessageSpec};

    fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn meta(age_ms: u64) -> TxnMeta {
        TxnMeta { age_ms, checks: 0 }
    }

    /// One half message per property list, as the broker sends them.
    fn batch(properties: &[&[(&str, &str)]]) -> Vec<u8> {
        let specs: Vec<_> = properties
            .iter()
            .enumerate()
            .map(|(i, properties)| MessageSpec {
                queue_offset: i as i64,
                store_timestamp: 1_700_000_000_000,
                topic: "orders",
                properties,
                body: b"{\"order\":1}",
            })
            .collect();
        encode_batch(&specs)
    }

    fn verdicts(config: &Config, bytes: &[u8], meta: &[TxnMeta]) -> Vec<TxnVerdict> {
        check_batch(bytes, meta, |m, meta| config.verdict(m, meta)).unwrap()
    }

    #[test]
    fn defaults() {
        let config = Config::parse(&[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.deadline_ms, 60_000);
        assert_eq!(config.commit_property, "BUSINESS_DONE");
        assert_eq!(config.commit_value, "true");
    }

    #[test]
    fn every_branch_with_defaults() {
        let config = Config::default();
        let bytes = batch(&[
            // Marked done: commit, young or old.
            &[("PGROUP", "pg"), ("BUSINESS_DONE", "true")],
            &[("BUSINESS_DONE", "true"), ("UNIQ_KEY", "u2")],
            // Not marked (or marked otherwise): rollback once at the deadline ...
            &[("UNIQ_KEY", "u3")],
            &[("BUSINESS_DONE", "false")],
            &[("BUSINESS_DONE", "TRUE")],
            // ... unknown before it.
            &[("BUSINESS_DONE", "false")],
            &[],
        ]);
        let ages = [
            meta(0),
            meta(10_000_000),
            meta(60_000),
            meta(60_001),
            meta(u64::MAX),
            meta(59_999),
            meta(0),
        ];
        assert_eq!(
            verdicts(&config, &bytes, &ages),
            [
                TxnVerdict::Commit,
                TxnVerdict::Commit,
                TxnVerdict::Rollback,
                TxnVerdict::Rollback,
                TxnVerdict::Rollback,
                TxnVerdict::Unknown,
                TxnVerdict::Unknown,
            ]
        );
    }

    #[test]
    fn configured_property_value_and_deadline() {
        let config = Config::parse(&settings(&[
            ("deadline_ms", " 500 "),
            ("commit_property", "paid"),
            ("commit_value", "yes"),
        ]))
        .unwrap();
        assert_eq!(config.deadline_ms, 500);
        let bytes = batch(&[
            &[("paid", "yes")],
            &[("BUSINESS_DONE", "true")], // the default property no longer commits
            &[("paid", "true")],
            &[("paid", "no")],
        ]);
        assert_eq!(
            verdicts(&config, &bytes, &[meta(1), meta(499), meta(500), meta(499)]),
            [
                TxnVerdict::Commit,
                TxnVerdict::Unknown,
                TxnVerdict::Rollback,
                TxnVerdict::Unknown,
            ]
        );
    }

    #[test]
    fn config_errors() {
        for bad in [
            &[("deadline_ms", "0")][..],
            &[("deadline_ms", "-5")],
            &[("deadline_ms", "1.5")],
            &[("deadline_ms", "")],
            &[("deadline_ms", "60s")],
            &[("deadline_ms", "99999999999999999999999")],
            &[("commit_property", "")],
            &[("commit_value", "")],
            &[("deadline", "1000")],
            &[("DEADLINE_MS", "1000")],
            &[("deadline_ms", "1"), ("deadline_ms", "2")],
        ] {
            assert!(Config::parse(&settings(bad)).is_err(), "{bad:?}");
        }
        let e = Config::parse(&settings(&[("colour", "red")])).unwrap_err();
        assert!(e.contains("unknown setting `colour`"), "{e}");
        let e = Config::parse(&settings(&[("deadline_ms", "0")])).unwrap_err();
        assert!(e.contains("deadline_ms"), "{e}");
    }

    #[test]
    fn trait_configure_applies_only_valid_settings() {
        // Tests run on several threads: CONFIG is per thread, so this one starts from the
        // defaults.
        let young_unmarked = batch(&[&[("UNIQ_KEY", "u")]]);
        let run = |age| {
            let bytes = &young_unmarked;
            let messages = Batch::new(bytes).unwrap().collect_all().unwrap();
            DeadlineChecker::check(&messages[0], meta(age))
        };
        assert_eq!(run(1_000), TxnVerdict::Unknown);
        assert!(DeadlineChecker::configure(&settings(&[("deadline_ms", "100")])).is_ok());
        assert_eq!(run(1_000), TxnVerdict::Rollback);
        // A refused configuration leaves the previous one in force.
        assert!(DeadlineChecker::configure(&settings(&[("deadline_ms", "x")])).is_err());
        assert_eq!(run(1_000), TxnVerdict::Rollback);
        assert_eq!(run(99), TxnVerdict::Unknown);
    }

    #[test]
    fn malformed_batch_or_meta_length_is_an_error() {
        let config = Config::default();
        let bytes = batch(&[&[], &[]]);
        let check = |bytes: &[u8], meta: &[TxnMeta]| {
            check_batch(bytes, meta, |m, meta| config.verdict(m, meta))
        };
        assert!(matches!(
            check(&bytes, &[meta(0)]),
            Err(CheckError::MetaLength {
                messages: 2,
                meta: 1
            })
        ));
        assert!(matches!(
            check(&bytes[..bytes.len() - 1], &[meta(0), meta(0)]),
            Err(CheckError::Decode(_))
        ));
        assert_eq!(check(&batch(&[]), &[]).unwrap(), []);
    }
}
