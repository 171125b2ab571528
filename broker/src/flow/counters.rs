//! Rejections counted by reason, topic and group (read by `wasmq quota list`, exported by the
//! metrics work).

use std::collections::BTreeMap;

use parking_lot::Mutex;
use serde::Serialize;

/// Why flow control refused or trimmed a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// `[TIMEOUT_CLEAN_QUEUE]`: waited too long before being processed.
    QueueTimeout,
    /// `[PC_SYNCHRONIZED]`: the store's append lock held too long.
    PageCacheBusy,
    /// Unflushed bytes stayed above `max_dirty_bytes` for the whole wait.
    DirtyBytes,
    /// A send over its topic's quota.
    TopicQuota,
    /// A pull trimmed by its group's quota.
    GroupQuota,
    /// A long poll answered at once: `max_held_pulls` are held.
    HeldPulls,
}

/// One row of the counters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RejectionCount {
    pub reason: Reason,
    pub topic: Option<String>,
    pub group: Option<String>,
    pub count: u64,
}

/// Reason, topic, group.
type Key = (Reason, Option<String>, Option<String>);

#[derive(Default)]
pub struct Rejections {
    by: Mutex<BTreeMap<Key, u64>>,
}

impl Rejections {
    pub fn count(&self, reason: Reason, topic: Option<&str>, group: Option<&str>) {
        let key = (reason, topic.map(str::to_owned), group.map(str::to_owned));
        *self.by.lock().entry(key).or_default() += 1;
    }

    pub fn snapshot(&self) -> Vec<RejectionCount> {
        self.by
            .lock()
            .iter()
            .map(|((reason, topic, group), n)| RejectionCount {
                reason: *reason,
                topic: topic.clone(),
                group: group.clone(),
                count: *n,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason_topic_and_group() {
        let r = Rejections::default();
        r.count(Reason::TopicQuota, Some("T"), None);
        r.count(Reason::TopicQuota, Some("T"), None);
        r.count(Reason::GroupQuota, None, Some("g"));
        let s = r.snapshot();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].count, 2);
        assert_eq!(s[1].group.as_deref(), Some("g"));
    }
}
