//! An example router: sends every message with the same key to the same queue, broker-side,
//! whatever queue its producer picked. This is what RocketMQ producers do client-side with
//! `SelectMessageQueueByHash` for ordered messages; with this router a producer that sends
//! plainly (round robin) gets the same per-key ordering.
//!
//! For each message of a send request to a topic with `n` write queues:
//! 1. the **key** is the value of the configured `property`, or, by default, the first token
//!    of the `KEYS` property (keys are separated by spaces);
//! 2. if the message has no key: **keep** (the queue the client chose);
//! 3. else **queue** `|h % n|`, where `h` is Java's `String.hashCode` of the key (32-bit,
//!    over UTF-16 code units; [`java_string_hash`]) and `%` Java's remainder. That is the
//!    queue `SelectMessageQueueByHash` picks from a list of `n` queues with the key as its
//!    argument, so producers hashing client-side and this router agree.
//!
//! The hash is stable: it depends on the key and `n` only (not on the broker, the plugin
//! instance or the time), so a key's queue changes only when the topic's write queue count
//! does.
//!
//! Settings (optional; any other key, a repeated key or an empty value refuses the load):
//!
//! | key        | default           | meaning                                                  |
//! |------------|-------------------|----------------------------------------------------------|
//! | `property` | (first `KEYS` token) | property whose whole value is the key, e.g. `order_id`; `property=KEYS` hashes the whole `KEYS` value |

use std::cell::RefCell;

use wasmq_plugin_sdk::{
    java_string_hash, Message, Router, Verdict, NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR,
};

/// Where a message's key comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum KeySource {
    /// The first space-separated token of `KEYS` (the default).
    #[default]
    FirstKey,
    /// The whole value of this property.
    Property(String),
}

impl KeySource {
    /// The key of `message`, if it has one.
    pub fn key<'a>(&self, message: &Message<'a>) -> Option<&'a str> {
        match self {
            KeySource::FirstKey => message.keys().next(),
            KeySource::Property(name) => message.property(name),
        }
    }
}

/// Parses the operator's settings. Unknown or repeated keys and empty or unusable values are
/// errors.
pub fn parse_config(config: &[(String, String)]) -> Result<KeySource, String> {
    let mut source = KeySource::default();
    let mut seen = false;
    for (key, value) in config {
        match key.as_str() {
            "property" if seen => return Err("setting `property` given twice".into()),
            "property" if value.is_empty() => {
                return Err(
                    "property must not be empty (omit it to hash the first KEYS token)".into(),
                )
            }
            "property"
                if value
                    .bytes()
                    .any(|b| b == NAME_VALUE_SEPARATOR || b == PROPERTY_SEPARATOR) =>
            {
                return Err(format!(
                    "property `{}` contains a property separator (\\x01 or \\x02)",
                    value.escape_debug()
                ))
            }
            "property" => {
                source = KeySource::Property(value.clone());
                seen = true;
            }
            _ => return Err(format!("unknown setting `{key}` (known: property)")),
        }
    }
    Ok(source)
}

/// The queue for `key` among `write_queues` queues: `|h % n|` with `h` Java's hash of the
/// key, as RocketMQ's `SelectMessageQueueByHash` computes it. `None` when there are no
/// queues.
pub fn queue_for(key: &str, write_queues: u32) -> Option<u32> {
    if write_queues == 0 {
        return None;
    }
    // In i64 so that every u32 queue count works; for counts up to i32::MAX this is Java's
    // `int` arithmetic exactly.
    let h = i64::from(java_string_hash(key));
    Some((h % i64::from(write_queues)).unsigned_abs() as u32)
}

/// The verdict on one message.
pub fn route(source: &KeySource, message: &Message<'_>, write_queues: u32) -> Verdict {
    match source.key(message).and_then(|k| queue_for(k, write_queues)) {
        Some(queue) => Verdict::queue(queue),
        None => Verdict::keep(),
    }
}

thread_local! {
    /// The configuration in force: a plugin instance is single-threaded, and `configure`
    /// runs once right after instantiation, before any `route`.
    static SOURCE: RefCell<KeySource> = const { RefCell::new(KeySource::FirstKey) };
}

/// The router exported to the broker.
pub struct HashRouter;

impl Router for HashRouter {
    fn configure(config: &[(String, String)]) -> Result<(), String> {
        let parsed = parse_config(config)?;
        SOURCE.set(parsed);
        Ok(())
    }

    fn route(message: &Message<'_>, write_queues: u32) -> Verdict {
        SOURCE.with_borrow(|source| route(source, message, write_queues))
    }
}

wasmq_plugin_sdk::export_router!(HashRouter);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmq_plugin_sdk::glue::route_batch;
    use wasmq_plugin_sdk::{encode_batch, Batch, MessageSpec, Route};

    fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// One message per property list, as the broker encodes a send request (queue id 3).
    fn batch(properties: &[&[(&str, &str)]]) -> Vec<u8> {
        let specs: Vec<_> = properties
            .iter()
            .map(|properties| MessageSpec {
                queue_offset: 3,
                store_timestamp: 1_700_000_000_000,
                topic: "orders",
                properties,
                body: b"",
            })
            .collect();
        encode_batch(&specs)
    }

    fn routes(source: &KeySource, bytes: &[u8], write_queues: u32) -> Vec<Route> {
        route_batch(bytes, |m| route(source, m, write_queues))
            .unwrap()
            .into_iter()
            .map(|v| {
                assert!(v.extra.is_empty());
                v.route
            })
            .collect()
    }

    #[test]
    fn java_compatible_queues() {
        // Java: "123".hashCode() = 48690, "234".hashCode() = 49683,
        // "order-1".hashCode() = -1207111310 (negative: |h % n|).
        assert_eq!(java_string_hash("123"), 48690);
        assert_eq!(java_string_hash("order-1"), -1_207_111_310);
        assert_eq!(queue_for("123", 10), Some(0));
        assert_eq!(queue_for("234", 10), Some(3));
        assert_eq!(queue_for("order-1", 8), Some(6)); // -1207111310 % 8 = -6
        assert_eq!(queue_for("order-1", 1), Some(0));
        assert_eq!(queue_for("x", 0), None);
        // Java's extreme: "polygenelubricants".hashCode() == Integer.MIN_VALUE.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(queue_for("polygenelubricants", 7), Some(2)); // |-2147483648 % 7| = 2
        assert_eq!(queue_for("polygenelubricants", u32::MAX), Some(1 << 31));
        for n in 1..64 {
            for key in ["", "a", "order-1", "polygenelubricants", "日本"] {
                assert!(queue_for(key, n).unwrap() < n);
            }
        }
    }

    #[test]
    fn default_hashes_the_first_key() {
        let source = parse_config(&[]).unwrap();
        assert_eq!(source, KeySource::FirstKey);
        let bytes = batch(&[
            &[("KEYS", "123")],
            &[("KEYS", "123 other keys")],
            &[("KEYS", "  234  123")], // empty tokens are skipped
            &[("KEYS", "order-1"), ("order_id", "123")],
            &[("order_id", "123")], // no KEYS: keep
            &[],
        ]);
        assert_eq!(
            routes(&source, &bytes, 10),
            [
                Route::Queue(0),
                Route::Queue(0),
                Route::Queue(3),
                Route::Queue(queue_for("order-1", 10).unwrap()),
                Route::Keep,
                Route::Keep,
            ]
        );
    }

    #[test]
    fn configured_property() {
        let source = parse_config(&settings(&[("property", "order_id")])).unwrap();
        let bytes = batch(&[
            &[("order_id", "234"), ("KEYS", "123")],
            &[("KEYS", "123")], // the property is missing: keep, KEYS is not a fallback
            &[("order_id", "a b")], // the whole value
        ]);
        assert_eq!(
            routes(&source, &bytes, 10),
            [
                Route::Queue(3),
                Route::Keep,
                Route::Queue(queue_for("a b", 10).unwrap()),
            ]
        );
        let whole_keys = parse_config(&settings(&[("property", "KEYS")])).unwrap();
        assert_eq!(
            routes(&whole_keys, &batch(&[&[("KEYS", "a b")]]), 10),
            [Route::Queue(queue_for("a b", 10).unwrap())]
        );
    }

    #[test]
    fn same_key_same_queue_across_batches() {
        let source = KeySource::FirstKey;
        let one = routes(&source, &batch(&[&[("KEYS", "k-42")]]), 16);
        let key: &[(&str, &str)] = &[("KEYS", "k-42")];
        let many = routes(&source, &batch(&[key; 5]), 16);
        assert!(many.iter().all(|r| *r == one[0]));
        // No queues to choose from (not a writable topic): keep.
        assert_eq!(
            routes(&source, &batch(&[&[("KEYS", "k-42")]]), 0),
            [Route::Keep]
        );
    }

    #[test]
    fn config_errors() {
        for bad in [
            &[("property", "")][..],
            &[("property", "a\u{1}b")],
            &[("property", "a\u{2}")],
            &[("property", "a"), ("property", "b")],
            &[("Property", "a")],
            &[("modulo", "4")],
        ] {
            assert!(parse_config(&settings(bad)).is_err(), "{bad:?}");
        }
        let e = parse_config(&settings(&[("colour", "red")])).unwrap_err();
        assert!(e.contains("unknown setting `colour`"), "{e}");
    }

    #[test]
    fn trait_configure_applies_only_valid_settings() {
        // CONFIG is per thread: this test starts from the default.
        let bytes = batch(&[&[("KEYS", "123"), ("order_id", "234")]]);
        let run = || {
            let messages = Batch::new(&bytes).unwrap().collect_all().unwrap();
            HashRouter::route(&messages[0], 10).route
        };
        assert!(!HashRouter::needs_body());
        assert_eq!(run(), Route::Queue(0));
        assert!(HashRouter::configure(&settings(&[("property", "order_id")])).is_ok());
        assert_eq!(run(), Route::Queue(3));
        assert!(HashRouter::configure(&settings(&[("property", "")])).is_err());
        assert_eq!(run(), Route::Queue(3));
        assert!(HashRouter::configure(&[]).is_ok());
        assert_eq!(run(), Route::Queue(0));
    }
}
