//! Argument parsing shared by several commands.

/// A `k=v` argument (`--property`, `--config`): split at the first `=`, so values may hold `=`.
pub(crate) fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected k=v, got {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_splits_at_the_first_equals() {
        assert_eq!(parse_kv("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_kv("k="), Ok(("k".into(), String::new())));
        assert!(parse_kv("novalue").is_err());
    }
}
