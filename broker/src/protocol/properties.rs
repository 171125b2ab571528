//! Message properties: `key \x01 value \x02` pairs (REMOTING.md §7, §11), and the well-known keys
//! (`MessageConst`). Parsing borrows from the input; a missing final `\x02` is tolerated, a non-empty pair
//! without `\x01` is an error.

use super::error::BodyError;

/// Separator between a key and its value.
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Terminator after each pair.
pub const PROPERTY_SEPARATOR: char = '\u{2}';

pub const KEYS: &str = "KEYS";
pub const TAGS: &str = "TAGS";
pub const WAIT: &str = "WAIT";
pub const DELAY: &str = "DELAY";
pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
pub const REAL_TOPIC: &str = "REAL_TOPIC";
pub const REAL_QID: &str = "REAL_QID";
pub const TRAN_MSG: &str = "TRAN_MSG";
pub const PGROUP: &str = "PGROUP";
pub const MIN_OFFSET: &str = "MIN_OFFSET";
pub const MAX_OFFSET: &str = "MAX_OFFSET";
pub const BUYER_ID: &str = "BUYER_ID";
pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
pub const TRANSFER_FLAG: &str = "TRANSFER_FLAG";
pub const CORRECTION_FLAG: &str = "CORRECTION_FLAG";
pub const MQ2_FLAG: &str = "MQ2_FLAG";
pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
pub const MSG_REGION: &str = "MSG_REGION";
pub const TRACE_ON: &str = "TRACE_ON";
pub const UNIQ_KEY: &str = "UNIQ_KEY";
pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
pub const CONSUME_START_TIME: &str = "CONSUME_START_TIME";
pub const TRAN_PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";
pub const TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
pub const TRANSACTION_ID: &str = "__transactionId__";
pub const INSTANCE_ID: &str = "INSTANCE_ID";
pub const CORRELATION_ID: &str = "CORRELATION_ID";
pub const REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
pub const TTL: &str = "TTL";
pub const ARRIVE_TIME: &str = "ARRIVE_TIME";
pub const PUSH_REPLY_TIME: &str = "PUSH_REPLY_TIME";
pub const CLUSTER: &str = "CLUSTER";
pub const MSG_TYPE: &str = "MSG_TYPE";
pub const POP_CK: &str = "POP_CK";
pub const FIRST_POP_TIME: &str = "1ST_POP_TIME";
pub const SHARDING_KEY: &str = "__SHARDINGKEY";
pub const INNER_MULTI_DISPATCH: &str = "INNER_MULTI_DISPATCH";
pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
pub const TIMER_OUT_MS: &str = "TIMER_OUT_MS";
pub const DLQ_ORIGIN_TOPIC: &str = "DLQ_ORIGIN_TOPIC";
pub const DLQ_ORIGIN_MESSAGE_ID: &str = "DLQ_ORIGIN_MESSAGE_ID";
/// Aliyun/ali-ons: absolute delivery time in ms.
pub const START_DELIVER_TIME: &str = "__STARTDELIVERTIME";
/// Aliyun/ali-ons sharding key.
pub const ALIYUN_SHARDING_KEY: &str = "__SHARDING_KEY";

/// Iterator over `(key, value)` pairs of a property string.
#[derive(Debug, Clone)]
pub struct PropertiesIter<'a> {
    rest: &'a str,
    pos: usize,
}

/// Iterates the pairs of `props`; yields an error (then stops) at a pair without a `\x01`.
pub fn iter(props: &str) -> PropertiesIter<'_> {
    PropertiesIter {
        rest: props,
        pos: 0,
    }
}

impl<'a> Iterator for PropertiesIter<'a> {
    type Item = Result<(&'a str, &'a str), BodyError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (pair, rest, consumed) = match self.rest.find(PROPERTY_SEPARATOR) {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..], i + 1),
                None => (self.rest, "", self.rest.len()),
            };
            let at = self.pos;
            self.rest = rest;
            self.pos += consumed;
            if pair.is_empty() {
                continue; // tolerate stray separators
            }
            return Some(match pair.split_once(NAME_VALUE_SEPARATOR) {
                Some(kv) => Ok(kv),
                None => {
                    self.rest = "";
                    Err(BodyError::MalformedProperties(at))
                }
            });
        }
    }
}

/// Parses all pairs.
pub fn parse(props: &str) -> Result<Vec<(&str, &str)>, BodyError> {
    iter(props).collect()
}

/// The value of `key` (the last one if repeated); malformed input yields what precedes the damage.
pub fn get_property<'a>(props: &'a str, key: &str) -> Option<&'a str> {
    let mut found = None;
    for kv in iter(props) {
        match kv {
            Ok((k, v)) if k == key => found = Some(v),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    found
}

fn check_text(what: &'static str, s: &str) -> Result<(), BodyError> {
    match s.find([NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR]) {
        Some(at) => Err(BodyError::Inconsistent {
            what,
            at,
            detail: "contains a property separator (\\x01 or \\x02)".into(),
        }),
        None => Ok(()),
    }
}

/// Appends one pair to `out`.
pub fn push_pair(out: &mut String, key: &str, value: &str) -> Result<(), BodyError> {
    check_text("property key", key)?;
    check_text("property value", value)?;
    out.reserve(key.len() + value.len() + 2);
    out.push_str(key);
    out.push(NAME_VALUE_SEPARATOR);
    out.push_str(value);
    out.push(PROPERTY_SEPARATOR);
    Ok(())
}

/// Encodes pairs into a property string.
pub fn encode<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<String, BodyError> {
    let mut out = String::new();
    for (k, v) in pairs {
        push_pair(&mut out, k, v)?;
    }
    Ok(out)
}

/// A copy of `props` with `key` set to `value` (replacing every existing `key`, appended at the end).
pub fn set_property(props: &str, key: &str, value: &str) -> Result<String, BodyError> {
    let mut out = remove_property(props, key)?;
    push_pair(&mut out, key, value)?;
    Ok(out)
}

/// A copy of `props` without `key`.
pub fn remove_property(props: &str, key: &str) -> Result<String, BodyError> {
    let mut out = String::with_capacity(props.len() + 32);
    for kv in iter(props) {
        let (k, v) = kv?;
        if k != key {
            out.push_str(k);
            out.push(NAME_VALUE_SEPARATOR);
            out.push_str(v);
            out.push(PROPERTY_SEPARATOR);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_get() {
        let p = "UNIQ_KEY\u{1}C0A8\u{2}KEYS\u{1}order-77\u{2}WAIT\u{1}true\u{2}TAGS\u{1}TagQ\u{2}";
        let v = parse(p).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(get_property(p, KEYS), Some("order-77"));
        assert_eq!(get_property(p, TAGS), Some("TagQ"));
        assert_eq!(get_property(p, DELAY), None);
        // Missing trailing separator, empty value, stray separators.
        let q = "\u{2}A\u{1}\u{2}\u{2}B\u{1}x=y";
        assert_eq!(parse(q).unwrap(), vec![("A", ""), ("B", "x=y")]);
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn malformed() {
        assert_eq!(
            parse("A\u{1}1\u{2}oops\u{2}B\u{1}2\u{2}"),
            Err(BodyError::MalformedProperties(4))
        );
        assert_eq!(get_property("A\u{1}1\u{2}oops\u{2}B\u{1}2", "A"), Some("1"));
        assert_eq!(get_property("A\u{1}1\u{2}oops\u{2}B\u{1}2", "B"), None);
        assert!(remove_property("junk", "A").is_err());
    }

    #[test]
    fn encode_set_remove() {
        let p = encode([(TAGS, "a"), (KEYS, "k1 k2")]).unwrap();
        assert_eq!(p, "TAGS\u{1}a\u{2}KEYS\u{1}k1 k2\u{2}");
        let p2 = set_property(&p, TAGS, "b").unwrap();
        assert_eq!(p2, "KEYS\u{1}k1 k2\u{2}TAGS\u{1}b\u{2}");
        let p3 = remove_property(&p2, KEYS).unwrap();
        assert_eq!(p3, "TAGS\u{1}b\u{2}");
        assert!(set_property(&p, "bad\u{1}", "x").is_err());
        assert!(encode([("k", "v\u{2}")]).is_err());
    }
}
