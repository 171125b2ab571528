//! Subscriptions: a consumer group's expression on one topic, and what it resolves to. Every
//! expression type (TAG included) is served by a filter plugin; resolving asks the active
//! version of that plugin for the compiled form (cached per version), so an upgrade takes
//! effect on the next read. A TAG expression compiles to a set of tag hashes tested on
//! consume-queue entries without reading the commit log, as RocketMQ does.

use std::sync::Arc;

use crate::plugin::{EvalError, LoadedFilter, Prefilter, Registry};
use crate::store::MessageFilter;

pub const EXPRESSION_TAG: &str = "TAG";
pub const EXPRESSION_SQL92: &str = "SQL92";

/// Why an expression cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error("no loaded plugin serves expression type {0:?}")]
    UnsupportedType(String),
    #[error("invalid expression: {0}")]
    Invalid(String),
    #[error("{ty} expression does not compile at position {position}: {reason}")]
    Compile {
        ty: String,
        position: u32,
        reason: String,
    },
}

/// A consumer group's subscription to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub topic: String,
    /// Upper-case (`TAG` when the client sent none).
    pub expression_type: String,
    pub expression: String,
    pub sub_version: i64,
}

/// Longest accepted expression.
pub const MAX_EXPRESSION_LEN: usize = 64 * 1024;

/// What a subscription means for a read, now.
pub enum Resolved {
    All,
    /// Exactly the entries with one of these tag hashes.
    TagHashes(Arc<[i64]>),
    /// Evaluate candidates with this plugin version.
    Plugin {
        plugin: Arc<LoadedFilter>,
        needs_body: bool,
    },
    /// The plugin cannot compile the expression now (it traps or is quarantined): its
    /// failure policy decides every batch.
    Failing {
        plugin: Arc<LoadedFilter>,
        error: EvalError,
    },
}

impl Subscription {
    /// Checks `expression` of `expression_type` (empty = TAG, as older clients send) with the
    /// plugin that serves it.
    pub fn parse(
        plugins: &Registry,
        topic: &str,
        expression_type: &str,
        expression: &str,
        sub_version: i64,
    ) -> Result<Subscription, SubscriptionError> {
        let ty = if expression_type.is_empty() {
            EXPRESSION_TAG.to_string()
        } else {
            expression_type.to_ascii_uppercase()
        };
        if expression.len() > MAX_EXPRESSION_LEN {
            return Err(SubscriptionError::Invalid(format!(
                "expression is {} bytes, the limit is {MAX_EXPRESSION_LEN}",
                expression.len()
            )));
        }
        let s = Subscription {
            topic: topic.to_string(),
            expression_type: ty,
            expression: expression.to_string(),
            sub_version,
        };
        s.resolve(plugins)?;
        Ok(s)
    }

    /// Resolves with the active plugin version.
    pub fn resolve(&self, plugins: &Registry) -> Result<Resolved, SubscriptionError> {
        let plugin = plugins
            .for_type(&self.expression_type)
            .ok_or_else(|| SubscriptionError::UnsupportedType(self.expression_type.clone()))?;
        let c = match plugin.compiled(&self.expression_type, &self.expression) {
            Ok(c) => c,
            Err(EvalError::Compile { position, reason }) => {
                return Err(SubscriptionError::Compile {
                    ty: self.expression_type.clone(),
                    position,
                    reason,
                })
            }
            Err(error) => return Ok(Resolved::Failing { plugin, error }),
        };
        Ok(match c.prefilter {
            Prefilter::All => Resolved::All,
            Prefilter::TagHashes(h) => Resolved::TagHashes(h),
            Prefilter::None => Resolved::Plugin {
                plugin,
                needs_body: c.needs_body,
            },
        })
    }
}

/// Tag-hash test on consume-queue entries.
pub struct TagHashes<'a>(pub &'a [i64]);

impl MessageFilter for TagHashes<'_> {
    fn by_tag_hash(&self, h: i64) -> bool {
        self.0.contains(&h)
    }
}
