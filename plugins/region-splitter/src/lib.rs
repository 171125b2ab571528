//! An example router: splits a topic by region. Every message sent to a topic `T` the router
//! is bound to goes to topic `T-<region>` instead, `<region>` being the value of a property
//! the producer sets (`region` by default): `orders` with `region=eu` goes to `orders-eu`.
//!
//! For each message:
//! 1. no region property (or a value that is not UTF-8): **keep** it on `T` (the default), or
//!    **reject** the send request (`missing=reject`);
//! 2. a region that cannot make a topic name: **reject** the send request, with a reason
//!    naming the value. A region must be letters, digits, `_` and `-` only (`[A-Za-z0-9_-]`,
//!    a subset of RocketMQ's topic characters: no `%` or `|`, which RocketMQ reserves for
//!    retry and namespaced topics), and `T-<region>` must be at most 127 bytes long;
//! 3. else **redirect** to `T-<region>`, without a queue: the message keeps the queue id its
//!    producer chose when `T-<region>` has that queue, else the broker takes it modulo that
//!    topic's write queue count.
//!
//! Region values compare exactly (case-sensitive, no trimming): `EU` and `eu` are different
//! topics. The target topics must exist (or be auto-created) and be writable by the
//! producer, as for any redirect. A rejected message fails its whole send request: nothing
//! of the request is stored.
//!
//! Settings (all optional; any other key, a repeated key or an empty value refuses the load):
//!
//! | key        | default  | meaning                                              |
//! |------------|----------|------------------------------------------------------|
//! | `property` | `region` | the property holding the region                      |
//! | `missing`  | `keep`   | without the property: `keep` the message on its topic, or `reject` the request |

use std::cell::RefCell;

use wasmq_plugin_sdk::{Message, Router, Verdict, NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR};

/// Default of `property`.
pub const DEFAULT_PROPERTY: &str = "region";
/// RocketMQ's longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 127;
/// How much of a bad region value a rejection quotes.
const QUOTE_CHARS: usize = 64;

/// What to do with a message without the region property.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Missing {
    /// Leave it on the topic it was sent to.
    #[default]
    Keep,
    /// Refuse its send request.
    Reject,
}

/// The plugin's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The property holding the region.
    pub property: String,
    /// What to do without it.
    pub missing: Missing,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            property: DEFAULT_PROPERTY.to_owned(),
            missing: Missing::Keep,
        }
    }
}

impl Config {
    /// Parses the operator's settings over the defaults.
    pub fn parse(config: &[(String, String)]) -> Result<Config, String> {
        let mut parsed = Config::default();
        let mut seen: Vec<&str> = Vec::new();
        for (key, value) in config {
            if seen.contains(&key.as_str()) {
                return Err(format!("setting `{key}` given twice"));
            }
            match key.as_str() {
                "property" | "missing" if value.is_empty() => {
                    return Err(format!("{key} must not be empty"));
                }
                "property"
                    if value
                        .bytes()
                        .any(|b| b == NAME_VALUE_SEPARATOR || b == PROPERTY_SEPARATOR) =>
                {
                    return Err(format!(
                        "property `{}` contains a property separator (\\x01 or \\x02)",
                        value.escape_debug()
                    ));
                }
                "property" => parsed.property = value.clone(),
                "missing" => {
                    parsed.missing = match value.as_str() {
                        "keep" => Missing::Keep,
                        "reject" => Missing::Reject,
                        _ => {
                            return Err(format!(
                                "missing must be `keep` or `reject`, got `{}`",
                                value.escape_debug()
                            ))
                        }
                    }
                }
                _ => {
                    return Err(format!(
                        "unknown setting `{key}` (known: property, missing)"
                    ))
                }
            }
            seen.push(key);
        }
        Ok(parsed)
    }

    /// The verdict on one message.
    pub fn route(&self, message: &Message<'_>) -> Verdict {
        let Some(region) = message.property(&self.property) else {
            return match self.missing {
                Missing::Keep => Verdict::keep(),
                Missing::Reject => Verdict::reject(format!(
                    "message has no `{}` property (the region router of topic `{}` requires it)",
                    self.property,
                    message.topic()
                )),
            };
        };
        match target_topic(message.topic(), region) {
            Ok(topic) => Verdict::redirect(topic, None),
            Err(reason) => Verdict::reject(format!(
                "region `{}` (property `{}`) {reason}",
                quote(region),
                self.property
            )),
        }
    }
}

/// `<topic>-<region>`, or why it cannot be a topic name.
pub fn target_topic(topic: &str, region: &str) -> Result<String, String> {
    if let Some(bad) = region
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "cannot be part of a topic name: `{}` is not allowed (only letters, digits, _ and -)",
            bad.escape_debug()
        ));
    }
    let len = topic.len() + 1 + region.len();
    if len > MAX_TOPIC_LEN {
        return Err(format!(
            "makes topic `{topic}-...` {len} bytes long; topic names have at most {MAX_TOPIC_LEN}"
        ));
    }
    Ok(format!("{topic}-{region}"))
}

/// The start of a value, escaped, for an error message.
fn quote(value: &str) -> String {
    let mut quoted: String = value
        .chars()
        .take(QUOTE_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().nth(QUOTE_CHARS).is_some() {
        quoted.push_str("...");
    }
    quoted
}

thread_local! {
    /// The configuration in force: a plugin instance is single-threaded, and `configure`
    /// runs once right after instantiation, before any `route`.
    static CONFIG: RefCell<Config> = RefCell::new(Config::default());
}

/// The router exported to the broker.
pub struct RegionSplitter;

impl Router for RegionSplitter {
    fn configure(config: &[(String, String)]) -> Result<(), String> {
        let parsed = Config::parse(config)?;
        CONFIG.set(parsed);
        Ok(())
    }

    fn route(message: &Message<'_>, _write_queues: u32) -> Verdict {
        CONFIG.with_borrow(|config| config.route(message))
    }
}

wasmq_plugin_sdk::export_router!(RegionSplitter);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmq_plugin_sdk::glue::route_batch;
    use wasmq_plugin_sdk::{encode_batch, Batch, BatchBuilder, MessageSpec, Route, Target};

    fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// One message to `topic` per property list, as the broker encodes a send request.
    fn batch(topic: &str, properties: &[&[(&str, &str)]]) -> Vec<u8> {
        let specs: Vec<_> = properties
            .iter()
            .map(|properties| MessageSpec {
                queue_offset: 1,
                store_timestamp: 1_700_000_000_000,
                topic,
                properties,
                body: b"",
            })
            .collect();
        encode_batch(&specs)
    }

    fn routes(config: &Config, bytes: &[u8]) -> Vec<Route> {
        route_batch(bytes, |m| config.route(m))
            .unwrap()
            .into_iter()
            .map(|v| {
                assert!(v.extra.is_empty());
                v.route
            })
            .collect()
    }

    fn redirect(topic: &str) -> Route {
        Route::Redirect(Target::new(topic, None))
    }

    fn rejection(route: &Route) -> &str {
        match route {
            Route::Reject(reason) => reason,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let config = Config::parse(&[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.property, "region");
        assert_eq!(config.missing, Missing::Keep);
    }

    #[test]
    fn splits_by_region() {
        let config = Config::default();
        let bytes = batch(
            "orders",
            &[
                &[("region", "eu")],
                &[("KEYS", "k"), ("region", "us-east_1")],
                &[("region", "EU")],
                &[],
                &[("REGION", "eu")], // names are case-sensitive: missing
            ],
        );
        assert_eq!(
            routes(&config, &bytes),
            [
                redirect("orders-eu"),
                redirect("orders-us-east_1"),
                redirect("orders-EU"),
                Route::Keep,
                Route::Keep,
            ]
        );
    }

    #[test]
    fn bad_regions_are_rejected() {
        let config = Config::default();
        for bad in ["eu west", "eu.west", "eu/west", "a%b", "a|b", "é", "x\ty"] {
            let r = routes(&config, &batch("orders", &[&[("region", bad)]]));
            let reason = rejection(&r[0]);
            assert!(
                reason.contains("cannot be part of a topic name"),
                "{reason}"
            );
            assert!(reason.contains("property `region`"), "{reason}");
        }
        let r = routes(&config, &batch("orders", &[&[("region", "x\ty")]]));
        assert!(rejection(&r[0]).contains("region `x\\ty`"), "{r:?}");
    }

    #[test]
    fn topic_length_limit() {
        let config = Config::default();
        // "orders-" is 7 bytes: a 120-byte region makes exactly 127.
        let longest = "r".repeat(120);
        let too_long = "r".repeat(121);
        let r = routes(
            &config,
            &batch(
                "orders",
                &[&[("region", &longest)], &[("region", &too_long)]],
            ),
        );
        assert_eq!(r[0], redirect(&format!("orders-{longest}")));
        let reason = rejection(&r[1]);
        assert!(reason.contains("128 bytes long"), "{reason}");
        assert!(reason.contains("at most 127"), "{reason}");
        assert!(
            reason.contains("..."),
            "a long value is quoted in part: {reason}"
        );
        assert!(reason.len() < 300, "{reason}");
        // The topic counts: a 127-byte topic has no room for any region.
        let topic = "t".repeat(127);
        let r = routes(&config, &batch(&topic, &[&[("region", "a")]]));
        assert!(rejection(&r[0]).contains("129 bytes long"));
    }

    #[test]
    fn configured_property_and_missing_reject() {
        let config =
            Config::parse(&settings(&[("property", "dc"), ("missing", "reject")])).unwrap();
        let bytes = batch("pay", &[&[("dc", "sh1")], &[("region", "eu")]]);
        let r = routes(&config, &bytes);
        assert_eq!(r[0], redirect("pay-sh1"));
        let reason = rejection(&r[1]);
        assert!(reason.contains("no `dc` property"), "{reason}");
        assert!(reason.contains("topic `pay`"), "{reason}");
        // A value that is not UTF-8 reads as missing.
        let mut builder = BatchBuilder::new();
        builder.push_raw(0, 0, "pay", b"dc\x01\xff\xfe\x02", b"");
        let r = routes(&config, &builder.finish());
        assert!(rejection(&r[0]).contains("no `dc` property"));
        let keep = Config::parse(&settings(&[("missing", "keep")])).unwrap();
        assert_eq!(keep.missing, Missing::Keep);
    }

    #[test]
    fn config_errors() {
        for bad in [
            &[("property", "")][..],
            &[("property", "a\u{1}")],
            &[("missing", "")],
            &[("missing", "drop")],
            &[("missing", "Keep")],
            &[("missing", "keep"), ("missing", "keep")],
            &[("separator", "_")],
        ] {
            assert!(Config::parse(&settings(bad)).is_err(), "{bad:?}");
        }
        let e = Config::parse(&settings(&[("colour", "red")])).unwrap_err();
        assert!(e.contains("unknown setting `colour`"), "{e}");
    }

    #[test]
    fn trait_configure_applies_only_valid_settings() {
        // CONFIG is per thread: this test starts from the defaults.
        let bytes = batch("t", &[&[("zone", "z1")]]);
        let run = || {
            let messages = Batch::new(&bytes).unwrap().collect_all().unwrap();
            RegionSplitter::route(&messages[0], 4).route
        };
        assert!(!RegionSplitter::needs_body());
        assert_eq!(run(), Route::Keep);
        assert!(RegionSplitter::configure(&settings(&[("property", "zone")])).is_ok());
        assert_eq!(run(), redirect("t-z1"));
        assert!(RegionSplitter::configure(&settings(&[("missing", "maybe")])).is_err());
        assert_eq!(run(), redirect("t-z1"));
    }
}
