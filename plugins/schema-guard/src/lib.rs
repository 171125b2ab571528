//! An example router that validates instead of routing: it refuses send requests whose
//! message bodies are not JSON objects with the fields the operator requires, so malformed
//! messages never reach the topic. Valid messages are kept where their producer sent them.
//!
//! For each message (the router asks for bodies: `needs-body` is true):
//! 1. the body must be UTF-8 JSON (RFC 8259, as `serde_json` reads it: no comments, no
//!    trailing commas, nothing after the value), else **reject**
//!    `body is not valid JSON: <what and where>`;
//! 2. it must be an object, else **reject** `body is a JSON array, not an object` (or string,
//!    number, boolean, null);
//! 3. it must have every required top-level field, with any value (`null` included), else
//!    **reject** `missing required field "<name>"` (the first missing one, in the configured
//!    order);
//! 4. else **keep**.
//!
//! One rejected message fails its whole send request: nothing of the request is stored and
//! the producer gets the reason. Bodies are checked in one streaming pass without building a
//! document tree: field values are validated and skipped.
//!
//! Bodies are checked as stored: a body the producer compressed (RocketMQ clients compress
//! large bodies, flagged in the message's sysflag) is not JSON to this router.
//!
//! Settings (optional; any other key or a repeated key refuses the load):
//!
//! | key        | default | meaning                                                       |
//! |------------|---------|---------------------------------------------------------------|
//! | `required` | (none)  | comma-separated top-level field names, e.g. `id,amount,currency`; spaces around names are ignored, empty names (`a,,b`) are refused, repeats count once. Empty: any JSON object passes |

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, Deserialize as _, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use wasmq_plugin_sdk::{Message, Router, Verdict};

/// The plugin's settings: the required top-level fields, in configured order, each once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    /// Required field names.
    pub required: Vec<String>,
}

impl Schema {
    /// Parses the operator's settings.
    pub fn parse(config: &[(String, String)]) -> Result<Schema, String> {
        let mut schema = Schema::default();
        let mut seen = false;
        for (key, value) in config {
            match key.as_str() {
                "required" if seen => return Err("setting `required` given twice".into()),
                "required" => {
                    seen = true;
                    if value.trim().is_empty() {
                        continue;
                    }
                    for name in value.split(',').map(str::trim) {
                        if name.is_empty() {
                            return Err(format!(
                                "required: empty field name in `{}` (expected names separated by commas)",
                                value.escape_debug()
                            ));
                        }
                        if !schema.required.iter().any(|r| r == name) {
                            schema.required.push(name.to_owned());
                        }
                    }
                }
                _ => return Err(format!("unknown setting `{key}` (known: required)")),
            }
        }
        Ok(schema)
    }

    /// Checks one body: `Err(reason)` says why it is refused.
    pub fn check(&self, body: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(body).map_err(|e| {
            format!(
                "body is not valid JSON: not UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            )
        })?;
        let Some(first) = text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .bytes()
            .next()
        else {
            return Err("body is not valid JSON: the body is empty".into());
        };
        if first != b'{' {
            // Not an object: say whether it is JSON at all.
            let mut de = serde_json::Deserializer::from_str(text);
            return match IgnoredAny::deserialize(&mut de).and_then(|_| de.end()) {
                Ok(()) => Err(format!("body is a JSON {}, not an object", kind(first))),
                Err(e) => Err(format!("body is not valid JSON: {e}")),
            };
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let found = Fields {
            required: &self.required,
        }
        .deserialize(&mut de)
        .and_then(|found| de.end().map(|()| found))
        .map_err(|e| format!("body is not valid JSON: {e}"))?;
        match found.iter().position(|f| !f) {
            Some(i) => Err(format!(
                "missing required field \"{}\"",
                self.required[i].escape_debug()
            )),
            None => Ok(()),
        }
    }

    /// The verdict on one message.
    pub fn route(&self, message: &Message<'_>) -> Verdict {
        match self.check(message.body()) {
            Ok(()) => Verdict::keep(),
            Err(reason) => Verdict::reject(reason),
        }
    }
}

/// What a JSON value starting with byte `first` is (`first` is not `{`).
fn kind(first: u8) -> &'static str {
    match first {
        b'[' => "array",
        b'"' => "string",
        b't' | b'f' => "boolean",
        b'n' => "null",
        _ => "number",
    }
}

/// Reads a JSON object and reports which required fields it has (`found[i]` for
/// `required[i]`), validating and skipping every value.
struct Fields<'s> {
    required: &'s [String],
}

impl<'de> DeserializeSeed<'de> for Fields<'_> {
    type Value = Vec<bool>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Vec<bool>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Fields<'_> {
    type Value = Vec<bool>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<bool>, A::Error> {
        let mut found = vec![false; self.required.len()];
        while let Some(index) = map.next_key_seed(Key {
            required: self.required,
        })? {
            if let Some(i) = index {
                found[i] = true;
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(found)
    }
}

/// Reads an object key (unescaped by the parser, without allocating when it has no escapes)
/// and answers its index among the required fields.
struct Key<'s> {
    required: &'s [String],
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Option<usize>, E> {
        Ok(self.required.iter().position(|r| r == name))
    }
}

thread_local! {
    /// The configuration in force: a plugin instance is single-threaded, and `configure`
    /// runs once right after instantiation, before any `route`.
    static SCHEMA: RefCell<Schema> = const { RefCell::new(Schema { required: Vec::new() }) };
}

/// The router exported to the broker.
pub struct SchemaGuard;

impl Router for SchemaGuard {
    fn configure(config: &[(String, String)]) -> Result<(), String> {
        let parsed = Schema::parse(config)?;
        SCHEMA.set(parsed);
        Ok(())
    }

    fn needs_body() -> bool {
        true
    }

    fn route(message: &Message<'_>, _write_queues: u32) -> Verdict {
        SCHEMA.with_borrow(|schema| schema.route(message))
    }
}

wasmq_plugin_sdk::export_router!(SchemaGuard);

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

    fn schema(required: &str) -> Schema {
        Schema::parse(&settings(&[("required", required)])).unwrap()
    }

    /// One message per body, as the broker encodes a send request for a router that needs
    /// bodies.
    fn batch(bodies: &[&[u8]]) -> Vec<u8> {
        let specs: Vec<_> = bodies
            .iter()
            .map(|body| MessageSpec {
                queue_offset: 0,
                store_timestamp: 1_700_000_000_000,
                topic: "payments",
                properties: &[("KEYS", "k")],
                body,
            })
            .collect();
        encode_batch(&specs)
    }

    fn rejection(schema: &Schema, body: &[u8]) -> String {
        match schema.check(body) {
            Err(reason) => reason,
            Ok(()) => panic!("accepted {:?}", String::from_utf8_lossy(body)),
        }
    }

    #[test]
    fn config() {
        assert_eq!(Schema::parse(&[]).unwrap(), Schema::default());
        assert_eq!(schema(""), Schema::default());
        assert_eq!(schema("  "), Schema::default());
        assert_eq!(schema("id").required, ["id"]);
        assert_eq!(
            schema(" id , amount,currency,id ").required,
            ["id", "amount", "currency"]
        );
        for bad in [
            &[("required", "a,,b")][..],
            &[("required", "a,")],
            &[("required", ",a")],
            &[("required", "a"), ("required", "b")],
            &[("fields", "a")],
            &[("Required", "a")],
        ] {
            assert!(Schema::parse(&settings(bad)).is_err(), "{bad:?}");
        }
        let e = Schema::parse(&settings(&[("colour", "red")])).unwrap_err();
        assert!(e.contains("unknown setting `colour`"), "{e}");
    }

    #[test]
    fn valid_objects_pass() {
        let s = schema("id,amount");
        for body in [
            &br#"{"id": 1, "amount": 2}"#[..],
            br#"{"amount": null, "id": {"nested": [1, 2, {"x": "y"}]}, "extra": true}"#,
            b" \n\t{\"id\":\"\",\"amount\":-1.5e3}\r\n ",
            br#"{"id": 1, "id": 2, "amount": [], "unicode": "\u00e9\ud83d\ude00 \u00fc"}"#,
            "{\"id\": \"日本\", \"amount\": 0}".as_bytes(),
            br#"{"\u0069d": 1, "amount": 2}"#, // an escaped key is unescaped first
        ] {
            assert_eq!(s.check(body), Ok(()), "{:?}", String::from_utf8_lossy(body));
        }
        // No required fields: any object.
        assert_eq!(Schema::default().check(b"{}"), Ok(()));
    }

    #[test]
    fn missing_fields_are_named_in_order() {
        let s = schema("id,amount,currency");
        assert_eq!(
            rejection(&s, br#"{"id": 1}"#),
            r#"missing required field "amount""#
        );
        assert_eq!(
            rejection(&s, br#"{"currency": "EUR", "amount": 1}"#),
            r#"missing required field "id""#
        );
        // Nested fields do not count, nor do differently cased ones.
        assert_eq!(
            rejection(
                &s,
                br#"{"id": 1, "amount": 1, "x": {"currency": "EUR"}, "Currency": 1}"#
            ),
            r#"missing required field "currency""#
        );
        assert_eq!(
            rejection(&schema("a\"b"), b"{}"),
            r#"missing required field "a\"b""#
        );
    }

    #[test]
    fn invalid_json_is_rejected() {
        let s = schema("id");
        for body in [
            &b""[..],
            b"   ",
            b"{",
            b"{\"id\": 1",
            b"{\"id\": 1,}",
            b"{\"id\": [1, 2,]}",
            b"{\"id\": 01}",
            b"{\"id\": 1.}",
            b"{\"id\": \"\\x\"}",
            b"{\"id\": \"\\u12\"}",
            b"{\"id\": \"a\nb\"}",
            b"{\"id\": tru}",
            b"{id: 1}",
            b"{\"id\": 1} {}",
            b"{\"id\": 1} x",
            b"{'id': 1}",
            b"{\"id\": 1 /* c */}",
            b"{\"id\": \"\xff\"}",
            b"\xef\xbb\xbf{\"id\": 1}", // a byte order mark is not JSON
            b"[1,",
            b"nul",
        ] {
            let reason = rejection(&s, body);
            assert!(
                reason.starts_with("body is not valid JSON: "),
                "{:?}: {reason}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            rejection(&s, b""),
            "body is not valid JSON: the body is empty"
        );
        assert!(
            rejection(&s, b"{\"id\": \"\xff\"}").contains("not UTF-8 (invalid byte at offset 8)")
        );
        assert!(rejection(&s, b"{\"id\": 1,}").contains("line 1 column"));
    }

    #[test]
    fn non_objects_are_rejected() {
        let s = Schema::default();
        for (body, kind) in [
            (&b"[]"[..], "array"),
            (b" [1, {\"id\": 1}]", "array"),
            (b"\"id\"", "string"),
            (b"12", "number"),
            (b"-1", "number"),
            (b"true", "boolean"),
            (b"false", "boolean"),
            (b"null", "null"),
        ] {
            assert_eq!(
                rejection(&s, body),
                format!("body is a JSON {kind}, not an object")
            );
        }
    }

    #[test]
    fn deep_nesting_is_no_problem() {
        let s = schema("id");
        let deep = format!(
            "{{\"id\": {}1{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(s.check(deep.as_bytes()), Ok(()));
        let unclosed = format!("{{\"id\": {}", "[".repeat(100_000));
        assert!(rejection(&s, unclosed.as_bytes()).starts_with("body is not valid JSON"));
    }

    #[test]
    fn verdicts_per_message() {
        let s = schema("id");
        let bytes = batch(&[br#"{"id": 1}"#, b"[]", br#"{"x": 1}"#, b"nope"]);
        let verdicts = route_batch(&bytes, |m| s.route(m)).unwrap();
        let routes: Vec<_> = verdicts
            .into_iter()
            .map(|v| {
                assert!(v.extra.is_empty());
                v.route
            })
            .collect();
        assert_eq!(routes[0], Route::Keep);
        assert!(matches!(&routes[1], Route::Reject(r) if r.contains("array")));
        assert!(matches!(&routes[2], Route::Reject(r) if r == "missing required field \"id\""));
        assert!(matches!(&routes[3], Route::Reject(r) if r.starts_with("body is not valid JSON")));
    }

    #[test]
    fn trait_configure_applies_only_valid_settings() {
        // SCHEMA is per thread: this test starts from the default (no required fields).
        let bytes = batch(&[br#"{"a": 1}"#]);
        let run = || {
            let messages = Batch::new(&bytes).unwrap().collect_all().unwrap();
            SchemaGuard::route(&messages[0], 4).route
        };
        assert!(SchemaGuard::needs_body());
        assert_eq!(run(), Route::Keep);
        assert!(SchemaGuard::configure(&settings(&[("required", "a,b")])).is_ok());
        assert!(matches!(run(), Route::Reject(r) if r.contains("\"b\"")));
        assert!(SchemaGuard::configure(&settings(&[("required", "a,,")])).is_err());
        assert!(matches!(run(), Route::Reject(_)));
        assert!(SchemaGuard::configure(&settings(&[("required", "a")])).is_ok());
        assert_eq!(run(), Route::Keep);
    }
}
