//! Subscriptions and the built-in TAG filter: `*` or `tagA || tagB`, tested first on the tag
//! hash in the consume-queue entry (no commit-log read for non-matching tags), then exactly on
//! the record's `TAGS` property (hash collisions).

use crate::store::record::tag_hash;
use crate::store::{MessageFilter, RecordView};

pub const EXPRESSION_TAG: &str = "TAG";
pub const EXPRESSION_SQL92: &str = "SQL92";

/// Why an expression cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error("expression type {0:?} is not supported by this broker")]
    UnsupportedType(String),
    #[error("invalid expression: {0}")]
    Invalid(String),
}

/// A consumer group's subscription to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub topic: String,
    pub expression_type: String,
    pub expression: String,
    pub sub_version: i64,
    pub filter: TagFilter,
}

/// Longest accepted expression.
pub const MAX_EXPRESSION_LEN: usize = 64 * 1024;

impl Subscription {
    /// Parses `expression` of `expression_type` (empty type = TAG, as older clients send).
    pub fn parse(
        topic: &str,
        expression_type: &str,
        expression: &str,
        sub_version: i64,
    ) -> Result<Subscription, SubscriptionError> {
        let ty = if expression_type.is_empty() {
            EXPRESSION_TAG
        } else {
            expression_type
        };
        if expression.len() > MAX_EXPRESSION_LEN {
            return Err(SubscriptionError::Invalid(format!(
                "expression is {} bytes, the limit is {MAX_EXPRESSION_LEN}",
                expression.len()
            )));
        }
        if !ty.eq_ignore_ascii_case(EXPRESSION_TAG) {
            return Err(SubscriptionError::UnsupportedType(ty.to_string()));
        }
        Ok(Subscription {
            topic: topic.to_string(),
            expression_type: EXPRESSION_TAG.to_string(),
            expression: expression.to_string(),
            sub_version,
            filter: TagFilter::parse(expression),
        })
    }
}

/// The TAG expression compiled to tag strings and their hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFilter {
    /// `None` = every message (`*` or empty).
    tags: Option<Vec<(String, i64)>>,
}

impl TagFilter {
    pub fn all() -> TagFilter {
        TagFilter { tags: None }
    }

    pub fn parse(expr: &str) -> TagFilter {
        let e = expr.trim();
        if e.is_empty() || e == "*" {
            return TagFilter::all();
        }
        let mut tags: Vec<(String, i64)> = Vec::new();
        for t in e.split("||").map(str::trim).filter(|t| !t.is_empty()) {
            if !tags.iter().any(|(x, _)| x == t) {
                tags.push((t.to_string(), tag_hash(t)));
            }
        }
        if tags.is_empty() {
            return TagFilter::all();
        }
        TagFilter { tags: Some(tags) }
    }

    pub fn is_all(&self) -> bool {
        self.tags.is_none()
    }

    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.tags.iter().flatten().map(|(t, _)| t.as_str())
    }

    pub fn tag_hashes(&self) -> impl Iterator<Item = i64> + '_ {
        self.tags.iter().flatten().map(|(_, h)| *h)
    }
}

impl MessageFilter for TagFilter {
    fn by_tag_hash(&self, h: i64) -> bool {
        match &self.tags {
            None => true,
            Some(tags) => tags.iter().any(|(_, th)| *th == h),
        }
    }

    fn by_record(&self, r: &RecordView<'_>) -> bool {
        match &self.tags {
            None => true,
            Some(tags) => {
                let tag = r.property("TAGS").unwrap_or("");
                tags.iter().any(|(t, _)| t == tag)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_expressions() {
        assert!(TagFilter::parse("*").is_all());
        assert!(TagFilter::parse("").is_all());
        assert!(TagFilter::parse(" || ").is_all());
        let f = TagFilter::parse("TagA || TagB ||TagA");
        assert_eq!(f.tags().collect::<Vec<_>>(), ["TagA", "TagB"]);
        assert!(f.by_tag_hash(tag_hash("TagB")));
        assert!(!f.by_tag_hash(tag_hash("TagC")));
        assert!(
            !f.by_tag_hash(0),
            "untagged messages do not match a tag list"
        );
    }

    #[test]
    fn types() {
        assert!(Subscription::parse("T", "", "a", 0).is_ok());
        assert!(Subscription::parse("T", "tag", "a", 0).is_ok());
        assert!(matches!(
            Subscription::parse("T", "SQL92", "a > 1", 0),
            Err(SubscriptionError::UnsupportedType(_))
        ));
        assert!(Subscription::parse("T", "TAG", &"a".repeat(MAX_EXPRESSION_LEN + 1), 0).is_err());
    }
}
