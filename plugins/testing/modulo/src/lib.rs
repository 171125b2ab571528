//! The `MOD` expression type, for the broker's configuration and evaluation tests.
//!
//! Configuration: `divisor` (required, an integer >= 1); any other key, a missing or a bad
//! divisor refuses the load. Expression: a property name. A message matches when that
//! property parses as an integer `n` (i64) with `n % divisor == 0`; a missing or non-integer
//! property does not match. Bodies are never needed.

use std::sync::atomic::{AtomicI64, Ordering};

use wasmq_plugin_sdk::{CompileError, Compiled, Filter, Message};

/// The configured divisor; 0 until `configure` succeeds. A plugin instance is
/// single-threaded, so a static is all the configuration storage it needs.
static DIVISOR: AtomicI64 = AtomicI64::new(0);

/// Parses the plugin's settings into the divisor.
pub fn parse_config(config: &[(String, String)]) -> Result<i64, String> {
    let mut divisor = None;
    for (key, value) in config {
        match key.as_str() {
            "divisor" => match value.trim().parse::<i64>() {
                Ok(d) if d >= 1 => divisor = Some(d),
                _ => return Err(format!("divisor must be an integer >= 1, got `{value}`")),
            },
            _ => {
                return Err(format!(
                    "unknown setting `{key}` (MOD takes only `divisor`)"
                ))
            }
        }
    }
    divisor.ok_or_else(|| "missing setting `divisor`".to_owned())
}

/// A compiled `MOD` expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Modulo {
    /// Property holding the number.
    pub property: String,
    /// Divisor captured from the configuration at compile time.
    pub divisor: i64,
}

impl Modulo {
    /// Whether the property's value `value` is a multiple of the divisor.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        value
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|n| n % self.divisor == 0)
    }
}

/// The `MOD` filter.
pub struct ModuloFilter;

impl Filter for ModuloFilter {
    type Compiled = Modulo;

    fn expression_types() -> &'static [&'static str] {
        &["MOD"]
    }

    fn configure(config: &[(String, String)]) -> Result<(), String> {
        DIVISOR.store(parse_config(config)?, Ordering::Relaxed);
        Ok(())
    }

    fn compile(_: &str, expression: &str) -> Result<Compiled<Modulo>, CompileError> {
        let property = expression.trim();
        if property.is_empty() {
            return Err(CompileError::new(0, "expected a property name"));
        }
        let divisor = DIVISOR.load(Ordering::Relaxed);
        if divisor < 1 {
            return Err(CompileError::new(
                0,
                "plugin not configured (missing divisor)",
            ));
        }
        let compiled = Modulo {
            property: property.to_owned(),
            divisor,
        };
        Ok(Compiled::new(compiled).without_body())
    }

    fn matches(modulo: &Modulo, message: &Message<'_>) -> bool {
        modulo.matches_value(message.property(&modulo.property))
    }
}

wasmq_plugin_sdk::export_filter!(ModuloFilter);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn config_rules() {
        assert_eq!(parse_config(&config(&[("divisor", "3")])), Ok(3));
        assert!(parse_config(&config(&[])).is_err());
        assert!(parse_config(&config(&[("divisor", "0")])).is_err());
        assert!(parse_config(&config(&[("divisor", "-2")])).is_err());
        assert!(parse_config(&config(&[("divisor", "x")])).is_err());
        assert!(parse_config(&config(&[("divisor", "2"), ("extra", "1")])).is_err());
    }

    #[test]
    fn matching() {
        let m = Modulo {
            property: "n".into(),
            divisor: 3,
        };
        assert!(m.matches_value(Some("9")));
        assert!(m.matches_value(Some("-6")));
        assert!(m.matches_value(Some("0")));
        assert!(!m.matches_value(Some("10")));
        assert!(!m.matches_value(Some("nine")));
        assert!(!m.matches_value(None));
    }
}
