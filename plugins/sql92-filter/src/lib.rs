//! The `SQL92` expression type: RocketMQ's SQL92 message selector (`color = 'red' AND n > 5`,
//! BETWEEN, IN, IS NULL, ...) over a message's properties, user and system (`TAGS`, `KEYS`).
//! The grammar and the evaluation rules are the `wasmq-sql92` library, the same code the
//! broker's benchmarks run natively. Bodies are never needed.

use std::borrow::Cow;

use wasmq_plugin_sdk::{CompileError, Compiled, Filter, Message};
use wasmq_sql92::{Expr, Lookup};

/// A message's properties as the selector sees them.
pub struct Properties<'a, 'm>(pub &'a Message<'m>);

impl Lookup for Properties<'_, '_> {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        self.0.property(name).map(Cow::Borrowed)
    }
}

pub struct Sql92Filter;

impl Filter for Sql92Filter {
    type Compiled = Expr;

    fn expression_types() -> &'static [&'static str] {
        &["SQL92"]
    }

    fn compile(_: &str, expression: &str) -> Result<Compiled<Expr>, CompileError> {
        wasmq_sql92::compile(expression)
            .map(|e| Compiled::new(e).without_body())
            .map_err(|e| CompileError::new(e.position, e.reason))
    }

    fn matches(expr: &Expr, message: &Message<'_>) -> bool {
        expr.matches(&Properties(message))
    }
}

wasmq_plugin_sdk::export_filter!(Sql92Filter);
