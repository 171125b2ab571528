//! The `TAG` expression type: RocketMQ's tag subscriptions.
//!
//! Parsing follows RocketMQ's `FilterAPI.buildSubscriptionData` exactly:
//! - the empty expression and `*` (exactly) subscribe to everything: prefilter `all`;
//! - otherwise the expression is split on `||` the way Java's `String.split` does (trailing
//!   empty items dropped; nothing left at all, as in `||`, is an error), each item is trimmed
//!   of characters `<= ' '` (Java's `String.trim`), and empty items are ignored;
//! - the tags' Java `String.hashCode` values form the `tag-hashes` prefilter, which the broker
//!   tests against consume-queue entries without calling the plugin.
//!
//! `matches` is implemented as well (the message's `TAGS` is in the set) for hosts that
//! evaluate anyway; it never needs bodies.

use wasmq_plugin_sdk::{java_string_hash, CompileError, Compiled, Filter, Message};

/// A parsed tag subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagExpression {
    /// `*` or empty: every message.
    All,
    /// Messages whose tag is one of these (sorted, deduplicated). May be empty (` || `),
    /// which matches nothing, as in RocketMQ.
    Tags(Vec<String>),
}

impl TagExpression {
    /// Whether a message with tag `tag` matches.
    pub fn matches_tag(&self, tag: Option<&str>) -> bool {
        match (self, tag) {
            (TagExpression::All, _) => true,
            (TagExpression::Tags(tags), Some(tag)) => {
                tags.binary_search_by(|t| t.as_str().cmp(tag)).is_ok()
            }
            (TagExpression::Tags(_), None) => false,
        }
    }

    /// The tag hashes the broker tests consume-queue entries against (`None` for `All`).
    pub fn hashes(&self) -> Option<Vec<i32>> {
        match self {
            TagExpression::All => None,
            TagExpression::Tags(tags) => {
                let mut hashes: Vec<i32> = tags.iter().map(|t| java_string_hash(t)).collect();
                hashes.sort_unstable();
                hashes.dedup();
                Some(hashes)
            }
        }
    }
}

/// RocketMQ's `SubscriptionData.SUB_ALL`.
pub const SUB_ALL: &str = "*";

/// Parses a tag subscription (see the crate docs for the rules).
pub fn parse(expression: &str) -> Result<TagExpression, CompileError> {
    if expression.is_empty() || expression == SUB_ALL {
        return Ok(TagExpression::All);
    }
    let mut items: Vec<&str> = expression.split("||").collect();
    // Java's String.split drops trailing empty strings; if nothing is left, RocketMQ throws.
    while items.last().is_some_and(|item| item.is_empty()) {
        items.pop();
    }
    if items.is_empty() {
        return Err(CompileError::new(0, "tag expression has no tags"));
    }
    let mut tags: Vec<String> = items
        .into_iter()
        .map(java_trim)
        .filter(|tag| !tag.is_empty())
        .map(str::to_owned)
        .collect();
    tags.sort_unstable();
    tags.dedup();
    Ok(TagExpression::Tags(tags))
}

/// Java's `String.trim`: strips characters up to U+0020 from both ends.
fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

/// The `TAG` filter.
pub struct TagFilter;

impl Filter for TagFilter {
    type Compiled = TagExpression;

    fn expression_types() -> &'static [&'static str] {
        &["TAG"]
    }

    fn compile(_: &str, expression: &str) -> Result<Compiled<TagExpression>, CompileError> {
        let parsed = parse(expression)?;
        Ok(match parsed.hashes() {
            None => Compiled::all(parsed),
            Some(hashes) => Compiled::tag_hashes(parsed, hashes),
        })
    }

    fn matches(expression: &TagExpression, message: &Message<'_>) -> bool {
        expression.matches_tag(message.tags())
    }
}

wasmq_plugin_sdk::export_filter!(TagFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmq_plugin_sdk::glue::evaluate_batch;
    use wasmq_plugin_sdk::{encode_batch, MessageSpec, Prefilter};

    fn tags(list: &[&str]) -> TagExpression {
        TagExpression::Tags(list.iter().map(|t| t.to_string()).collect())
    }

    #[test]
    fn all() {
        assert_eq!(parse(""), Ok(TagExpression::All));
        assert_eq!(parse("*"), Ok(TagExpression::All));
        // Only exactly `*` is SUB_ALL: Java trims ` * ` into the tag `*`.
        assert_eq!(parse(" * "), Ok(tags(&["*"])));
    }

    #[test]
    fn split_and_trim() {
        assert_eq!(parse("TagA"), Ok(tags(&["TagA"])));
        assert_eq!(
            parse("TagA || TagB||TagC"),
            Ok(tags(&["TagA", "TagB", "TagC"]))
        );
        assert_eq!(parse(" TagB ||\tTagA\n"), Ok(tags(&["TagA", "TagB"])));
        assert_eq!(parse("TagA||||TagB||"), Ok(tags(&["TagA", "TagB"])));
        assert_eq!(parse("||TagA"), Ok(tags(&["TagA"])));
        assert_eq!(parse("TagA||TagA"), Ok(tags(&["TagA"])));
        // Splitting is left to right and non-overlapping, as Java's regex split.
        assert_eq!(parse("a|||b"), Ok(tags(&["a", "|b"])));
        assert_eq!(parse("a|b"), Ok(tags(&["a|b"])));
        // Inner spaces stay; only the ends are trimmed.
        assert_eq!(parse(" Tag A "), Ok(tags(&["Tag A"])));
        // Only characters <= U+0020 are trimmed (not U+00A0).
        assert_eq!(parse("\u{a0}x"), Ok(tags(&["\u{a0}x"])));
    }

    #[test]
    fn no_tags() {
        // Java: "||".split("\\|\\|") is empty -> "subString split error".
        assert!(parse("||").is_err());
        assert!(parse("||||").is_err());
        // Blank items are ignored, leaving a subscription that matches nothing.
        assert_eq!(parse(" || "), Ok(tags(&[])));
        assert_eq!(parse(" "), Ok(tags(&[])));
    }

    #[test]
    fn hashes_are_java_hash_codes() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("TagA"), 2_598_919);
        assert_eq!(java_string_hash("TagB"), 2_598_920);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(
            parse("TagB || TagA").unwrap().hashes(),
            Some(vec![2_598_919, 2_598_920])
        );
        // Colliding tags ("Aa" and "BB" hash alike) yield one hash.
        assert_eq!(parse("Aa||BB").unwrap().hashes(), Some(vec![2112]));
        assert_eq!(TagExpression::All.hashes(), None);
    }

    #[test]
    fn compile_prefilters() {
        let c = TagFilter::compile("TAG", "*").unwrap();
        assert_eq!(c.prefilter, Prefilter::All);
        assert!(!c.needs_body);
        let c = TagFilter::compile("TAG", "TagA").unwrap();
        assert_eq!(c.prefilter, Prefilter::TagHashes(vec![2_598_919]));
        assert!(!c.needs_body);
        let e = TagFilter::compile("TAG", "||").unwrap_err();
        assert_eq!(e.position, 0);
    }

    #[test]
    fn matches_by_tag_string() {
        let expr = parse("TagA || TagC").unwrap();
        let specs = [
            MessageSpec {
                topic: "t",
                properties: &[("TAGS", "TagA")],
                ..Default::default()
            },
            MessageSpec {
                topic: "t",
                properties: &[("TAGS", "TagB")],
                ..Default::default()
            },
            MessageSpec {
                topic: "t",
                ..Default::default()
            },
            MessageSpec {
                topic: "t",
                properties: &[("KEYS", "k"), ("TAGS", "TagC")],
                ..Default::default()
            },
        ];
        let batch = encode_batch(&specs);
        let bits = evaluate_batch(&batch, |m| TagFilter::matches(&expr, m)).unwrap();
        assert_eq!(bits.into_bytes(), [0b1001]);
        let bits = evaluate_batch(&batch, |m| TagFilter::matches(&TagExpression::All, m)).unwrap();
        assert_eq!(bits.into_bytes(), [0b1111]);
    }
}
