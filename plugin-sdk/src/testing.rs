//! Helpers for a plugin's own unit tests, run natively with `cargo test`: describe messages
//! with [`TestMessage`], run the plugin over them the way the broker does, and get plain
//! answers back.
//!
//! ```
//! use wasmq_plugin_sdk::testing::{check, TestMessage};
//! use wasmq_plugin_sdk::{CompileError, Compiled, Filter, Message};
//!
//! /// Matches messages whose `price` property is above the expression's number.
//! struct Price;
//!
//! impl Filter for Price {
//!     type Compiled = f64;
//!     fn expression_types() -> &'static [&'static str] {
//!         &["PRICE"]
//!     }
//!     fn compile(_: &str, expression: &str) -> Result<Compiled<f64>, CompileError> {
//!         let limit = expression
//!             .trim()
//!             .parse()
//!             .map_err(|_| CompileError::new(0, "expected a number"))?;
//!         Ok(Compiled::new(limit).without_body())
//!     }
//!     fn matches(limit: &f64, message: &Message<'_>) -> bool {
//!         message
//!             .property("price")
//!             .and_then(|p| p.parse::<f64>().ok())
//!             .is_some_and(|p| p > *limit)
//!     }
//! }
//!
//! let messages = [
//!     TestMessage::new("Orders").property("price", "12.5"),
//!     TestMessage::new("Orders").property("price", "7"),
//!     TestMessage::new("Orders"),
//! ];
//! // Expression types match case-insensitively, as on the broker.
//! assert_eq!(check::<Price>("price", "10", &messages), Ok(vec![true, false, false]));
//! assert!(check::<Price>("PRICE", "ten", &messages).is_err());
//! ```

use crate::encode::{encode_batch, MessageSpec};
use crate::filter::{CompileError, Filter, Prefilter};
use crate::glue;
use crate::hash::java_string_hash;
use crate::router::{Router, Verdict};
use crate::txn::{TxnChecker, TxnMeta, TxnVerdict};
use crate::PROPERTY_TAGS;

/// One message as a test describes it. Queue offsets default to the message's index in the
/// slice given to [`check`], [`route`] or [`check_txn`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestMessage {
    /// Topic name.
    pub topic: String,
    /// Properties in order (user and system ones alike: `TAGS`, `KEYS`, ...).
    pub properties: Vec<(String, String)>,
    /// Body (the broker sends it empty to plugins that do not ask for bodies).
    pub body: Vec<u8>,
    /// Offset in the consume queue; `None`: the index in the slice.
    pub queue_offset: Option<i64>,
    /// Store time, ms since the Unix epoch.
    pub store_timestamp: i64,
}

impl TestMessage {
    /// A message of `topic` with no properties and an empty body.
    pub fn new(topic: &str) -> Self {
        TestMessage {
            topic: topic.to_string(),
            ..TestMessage::default()
        }
    }

    /// Adds a property.
    pub fn property(mut self, name: &str, value: &str) -> Self {
        self.properties.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the tag (the `TAGS` property).
    pub fn tag(self, tag: &str) -> Self {
        self.property(PROPERTY_TAGS, tag)
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the queue offset.
    pub fn queue_offset(mut self, offset: i64) -> Self {
        self.queue_offset = Some(offset);
        self
    }

    fn tag_value(&self) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == PROPERTY_TAGS)
            .map(|(_, v)| v.as_str())
    }
}

/// The batch encoding the broker would send for `messages` (bodies left out unless
/// `with_bodies`).
fn encode(messages: &[TestMessage], with_bodies: bool) -> Vec<u8> {
    let props: Vec<Vec<(&str, &str)>> = messages
        .iter()
        .map(|m| {
            m.properties
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        })
        .collect();
    let specs: Vec<MessageSpec<'_>> = messages
        .iter()
        .zip(&props)
        .enumerate()
        .map(|(i, (m, p))| MessageSpec {
            queue_offset: m.queue_offset.unwrap_or(i as i64),
            store_timestamp: m.store_timestamp,
            topic: &m.topic,
            properties: p,
            body: if with_bodies { &m.body } else { &[] },
        })
        .collect();
    encode_batch(&specs)
}

/// Whether each message matches `expression` of `expression_type` under filter `F`, decided
/// as the broker decides: the prefilter first (`all`, or the tag-hash set), otherwise `F::matches`
/// over one batch. `Err` is the expression's compile error (the consumer's parse error).
/// `expression_type` matches the plugin's types case-insensitively, as on the broker.
pub fn check<F: Filter>(
    expression_type: &str,
    expression: &str,
    messages: &[TestMessage],
) -> Result<Vec<bool>, CompileError> {
    let ty = F::expression_types()
        .iter()
        .find(|t| t.eq_ignore_ascii_case(expression_type))
        .copied()
        .unwrap_or(expression_type);
    let compiled = glue::compile_expression::<F>(ty, expression)?;
    Ok(match &compiled.prefilter {
        Prefilter::All => vec![true; messages.len()],
        Prefilter::TagHashes(hashes) => messages
            .iter()
            .map(|m| {
                m.tag_value()
                    .is_some_and(|t| hashes.contains(&java_string_hash(t)))
            })
            .collect(),
        Prefilter::None => {
            let batch = encode(messages, compiled.needs_body);
            let bits = glue::evaluate_batch(&batch, |m| F::matches(&compiled.value, m))
                .unwrap_or_else(|e| panic!("the SDK's own batch encoding must decode: {e}"));
            (0..messages.len()).map(|i| bits.get(i)).collect()
        }
    })
}

/// Router `R`'s verdict on each message of one send request to a topic with `write_queues`
/// write queues (bodies included only if `R::needs_body`).
pub fn route<R: Router>(write_queues: u32, messages: &[TestMessage]) -> Vec<Verdict> {
    let batch = encode(messages, R::needs_body());
    glue::route_batch(&batch, |m| R::route(m, write_queues))
        .unwrap_or_else(|e| panic!("the SDK's own batch encoding must decode: {e}"))
}

/// Checker `C`'s verdict on each half message, with what the broker knows of it.
pub fn check_txn<C: TxnChecker>(messages: &[(TestMessage, TxnMeta)]) -> Vec<TxnVerdict> {
    let (msgs, meta): (Vec<TestMessage>, Vec<TxnMeta>) = messages.iter().cloned().unzip();
    let batch = encode(&msgs, true);
    glue::check_batch(&batch, &meta, |m, meta| C::check(m, meta))
        .unwrap_or_else(|e| panic!("the SDK's own batch encoding must decode: {e}"))
}
