//! An example custom expression type, `JSON`: expressions in the SQL92 selector grammar whose
//! identifiers name top-level fields of the message body parsed as JSON, e.g.
//! `amount > 100 AND region = 'eu'`. Strings compare as strings, numbers and booleans by their
//! JSON text (coerced to the literal's type as SQL92 coerces property values); a missing field,
//! `null`, an object or an array is NULL. A body that is not a JSON object matches nothing.
//! (RocketMQ's identifiers cannot contain dots, so nested fields are not addressable yet.)

use std::borrow::Cow;

use serde_json::Value;
use wasmq_plugin_sdk::{CompileError, Compiled, Filter, Message};
use wasmq_sql92::{Expr, Lookup};

/// A parsed JSON body as a selector's lookup.
pub struct Fields<'a>(pub &'a Value);

impl Lookup for Fields<'_> {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        match self.0.as_object()?.get(name)? {
            Value::String(s) => Some(Cow::Borrowed(s)),
            Value::Number(n) => Some(Cow::Owned(n.to_string())),
            Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            _ => None,
        }
    }
}

/// Whether a body matches.
pub fn matches_body(expr: &Expr, body: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => expr.matches(&Fields(&v)),
        _ => false,
    }
}

pub struct JsonFilter;

impl Filter for JsonFilter {
    type Compiled = Expr;

    fn expression_types() -> &'static [&'static str] {
        &["JSON"]
    }

    fn compile(_: &str, expression: &str) -> Result<Compiled<Expr>, CompileError> {
        wasmq_sql92::compile(expression)
            .map(Compiled::new)
            .map_err(|e| CompileError::new(e.position, e.reason))
    }

    fn matches(expr: &Expr, message: &Message<'_>) -> bool {
        matches_body(expr, message.body())
    }
}

wasmq_plugin_sdk::export_filter!(JsonFilter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let e = wasmq_sql92::compile("amount > 100 AND region = 'eu'").unwrap();
        assert!(matches_body(&e, br#"{"amount": 150, "region": "eu"}"#));
        assert!(!matches_body(&e, br#"{"amount": 50, "region": "eu"}"#));
        assert!(!matches_body(&e, br#"{"amount": 150}"#));
        assert!(!matches_body(&e, b"not json"));
        let e = wasmq_sql92::compile("tier IN ('gold', 'vip') AND ok = TRUE").unwrap();
        assert!(matches_body(&e, br#"{"tier": "vip", "ok": true}"#));
        assert!(!matches_body(
            &e,
            br#"{"tier": {"name": "vip"}, "ok": true}"#
        ));
    }
}
