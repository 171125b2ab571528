//! The [`Filter`] trait a plugin implements, and what `compile` returns.

use core::fmt;

use crate::batch::Message;

/// A message filter serving one or more expression types.
///
/// Implement it on a unit struct and export it with [`export_filter!`](crate::export_filter).
/// All functions are associated functions: a plugin instance is single-threaded and keeps any
/// state (such as its configuration) in statics.
pub trait Filter: 'static {
    /// An expression after compilation: whatever makes [`Filter::matches`] fast.
    type Compiled: 'static;

    /// The expression types served, upper-case by convention, e.g. `&["SQL92"]`.
    fn expression_types() -> &'static [&'static str];

    /// Receives the operator's `key=value` settings once after instantiation; an error
    /// refuses the load (or upgrade) with that message. The default accepts anything.
    fn configure(config: &[(String, String)]) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// Compiles a consumer's expression. `expression_type` is one of
    /// [`Filter::expression_types`] (the SDK refuses others before calling this).
    fn compile(
        expression_type: &str,
        expression: &str,
    ) -> Result<Compiled<Self::Compiled>, CompileError>;

    /// Whether `message` matches. Called once per message of each evaluated batch.
    fn matches(compiled: &Self::Compiled, message: &Message<'_>) -> bool;
}

/// What the broker may decide without calling `evaluate` (mirror of the WIT `prefilter`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Prefilter {
    /// Every message must be evaluated.
    #[default]
    None,
    /// The expression matches every message.
    All,
    /// The expression matches exactly the messages whose tag hash (Java `String.hashCode` of
    /// the `TAGS` property, see [`java_string_hash`](crate::java_string_hash)) is in the set.
    TagHashes(Vec<i32>),
}

/// A compiled expression with what the broker needs to know about it.
#[derive(Clone, Debug)]
pub struct Compiled<T> {
    /// The plugin's compiled form, handed back to [`Filter::matches`].
    pub value: T,
    /// What the broker may decide alone.
    pub prefilter: Prefilter,
    /// Whether [`Message::body`] is needed; when false the broker sends bodies empty.
    pub needs_body: bool,
}

impl<T> Compiled<T> {
    /// Evaluated for every message, bodies included: the safe default. Call
    /// [`Compiled::without_body`] when the filter reads only properties: it saves the broker
    /// from reading and copying bodies.
    pub fn new(value: T) -> Self {
        Compiled {
            value,
            prefilter: Prefilter::None,
            needs_body: true,
        }
    }

    /// Matches every message: the broker never calls `evaluate` for it.
    pub fn all(value: T) -> Self {
        Compiled {
            value,
            prefilter: Prefilter::All,
            needs_body: false,
        }
    }

    /// Matches exactly the messages whose tag hash is in `hashes`: decided by the broker from
    /// consume-queue entries.
    pub fn tag_hashes(value: T, hashes: Vec<i32>) -> Self {
        Compiled {
            value,
            prefilter: Prefilter::TagHashes(hashes),
            needs_body: false,
        }
    }

    /// Bodies are not needed (they arrive empty).
    pub fn without_body(mut self) -> Self {
        self.needs_body = false;
        self
    }

    /// Replaces the prefilter.
    pub fn with_prefilter(mut self, prefilter: Prefilter) -> Self {
        self.prefilter = prefilter;
        self
    }
}

/// Why an expression does not compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    /// Byte offset into the expression where the problem is.
    pub position: u32,
    /// What is wrong, for the consumer's operator.
    pub reason: String,
}

impl CompileError {
    /// An error at byte `position` of the expression.
    pub fn new(position: usize, reason: impl Into<String>) -> Self {
        CompileError {
            position: u32::try_from(position).unwrap_or(u32::MAX),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at position {}", self.reason, self.position)
    }
}

impl std::error::Error for CompileError {}
