//! Argument parsing shared by several commands.

/// A `k=v` argument (`--property`, `--config`): split at the first `=`, so values may hold `=`.
pub(crate) fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected k=v, got {s:?}"))
}

/// A `--count`: a whole number of at least 1 (0 or a negative count is refused, not read as
/// "nothing" or "everything").
pub(crate) fn parse_count(s: &str) -> Result<u64, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= 1 => u64::try_from(n).map_err(|_| format!("{s} is too large")),
        Ok(0) => Err("a count of 0 is nothing to do: give 1 or more".to_string()),
        Ok(_) => Err(format!("a count cannot be negative ({s}): give 1 or more")),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// Where a group without committed offsets starts reading (`consume --from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The first message still stored.
    First,
    /// After the last message (only what arrives from now on).
    Last,
    /// The first message stored at or after this time (ms since the epoch).
    Timestamp(i64),
}

pub(crate) fn parse_from(s: &str) -> Result<StartFrom, String> {
    match s {
        "first" => Ok(StartFrom::First),
        "last" => Ok(StartFrom::Last),
        ts => ts
            .parse::<i64>()
            .ok()
            .filter(|&t| t >= 0)
            .map(StartFrom::Timestamp)
            .ok_or_else(|| format!("expected first, last or a timestamp in ms, got {s:?}")),
    }
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

    #[test]
    fn counts_are_one_or_more() {
        assert_eq!(parse_count("1"), Ok(1));
        assert_eq!(parse_count("32"), Ok(32));
        assert!(parse_count("0").unwrap_err().contains("nothing to do"));
        assert!(parse_count("-3")
            .unwrap_err()
            .contains("cannot be negative"));
        assert!(parse_count("three").is_err());
        assert!(parse_count("99999999999999999999999").is_err());
    }

    #[test]
    fn from_is_first_last_or_a_timestamp() {
        assert_eq!(parse_from("first"), Ok(StartFrom::First));
        assert_eq!(parse_from("last"), Ok(StartFrom::Last));
        assert_eq!(
            parse_from("1700000000000"),
            Ok(StartFrom::Timestamp(1700000000000))
        );
        assert!(parse_from("yesterday").is_err());
        assert!(parse_from("-5").is_err());
    }
}
