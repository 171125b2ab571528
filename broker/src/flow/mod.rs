//! Flow control (issue 14): a busy broker pushes back instead of queuing without bound, and
//! operators cap a noisy topic or group. Everything a processor asks goes through
//! [`FlowControl`]; each file holds one concept:
//!
//! | file | concept |
//! |---|---|
//! | [`busy`] | send-side back-pressure: time waited before processing (`[TIMEOUT_CLEAN_QUEUE]`), a store whose append lock is held too long (`[PC_SYNCHRONIZED]`), unflushed bytes past `max_dirty_bytes` |
//! | [`quota`] | token buckets per topic and consumer group (msgs/s, bytes/s), persisted, set at runtime |
//! | [`counters`] | rejections by reason, topic and group, for `wasmq quota list` and metrics |
//!
//! Pull-side bounds: the caps per pull (`pull_max_msgs`, `pull_max_bytes`, applied in
//! `processor::pull`), a group's quota ([`FlowControl::pull_caps`]) and the bound on held long
//! polls ([`FlowControl::hold_pull`]; a held pull keeps its request, parsed subscription and a
//! waiter on its queue's notifier, no message data). Per-connection bounds live in `crate::net` (`NetConfig`).

pub mod busy;
pub mod counters;
pub mod quota;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::config::BrokerConfig;
use crate::store::MessageStore;

pub use counters::{Reason, Rejections};
pub use quota::{QuotaError, Quotas};

/// Why a request is refused: the response code and remark.
pub type Refusal = (i32, String);

pub struct FlowControl {
    /// `flow_control = false` turns every check off (benchmarks compare both).
    pub enabled: bool,
    pub limits: busy::Limits,
    pub quotas: Quotas,
    pub rejections: Rejections,
    /// Sends being processed now (reported in `[TIMEOUT_CLEAN_QUEUE]` remarks).
    pub sends: busy::InProgress,
    max_held_pulls: usize,
    held: Arc<AtomicUsize>,
}

impl FlowControl {
    /// Loads the quotas (configured ones, then those set at runtime, from `dir`).
    pub fn open(config: &BrokerConfig, dir: &std::path::Path) -> Result<FlowControl, QuotaError> {
        Ok(FlowControl {
            enabled: config.flow_control,
            limits: busy::Limits::from_config(config),
            quotas: Quotas::open(dir, &config.quota)?,
            rejections: Rejections::default(),
            sends: busy::InProgress::default(),
            max_held_pulls: config.max_held_pulls,
            held: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Before a send of `msgs` messages (`bytes` of bodies) to `topic` is stored: `Ok`, or
    /// SYSTEM_BUSY with the reason. `received` is when its frame was decoded.
    pub async fn admit_send(
        &self,
        store: &MessageStore,
        topic: &str,
        msgs: usize,
        bytes: usize,
        received: Option<Instant>,
    ) -> Result<(), Refusal> {
        if !self.enabled {
            return Ok(());
        }
        if let Err((reason, r)) = busy::admit(&self.limits, store, received, &self.sends).await {
            self.rejections.count(reason, Some(topic), None);
            return Err(r);
        }
        if let Err(r) = self.quotas.take_topic(topic, msgs, bytes) {
            self.rejections.count(Reason::TopicQuota, Some(topic), None);
            return Err(r);
        }
        Ok(())
    }

    /// A send request is being processed until the guard is dropped (`None` when flow control
    /// is off).
    pub fn send_started(&self) -> Option<busy::InProgressGuard<'_>> {
        self.enabled.then(|| self.sends.enter())
    }

    /// The most a pull by `group` may return now (its quota), within what it asked.
    pub fn pull_caps(&self, group: &str, max_msgs: usize, max_bytes: usize) -> (usize, usize) {
        if !self.enabled {
            return (max_msgs, max_bytes);
        }
        self.quotas.group_allowance(group, max_msgs, max_bytes)
    }

    /// A pull by `group` returned `msgs` messages of `bytes`: charged to its quota.
    pub fn pulled(&self, group: &str, msgs: usize, bytes: usize) {
        if self.enabled && msgs > 0 {
            self.quotas.take_group(group, msgs, bytes);
        }
    }

    /// A held long poll's place, or `None` past `max_held_pulls` (the pull is answered at once).
    pub fn hold_pull(&self) -> Option<HeldPull> {
        if !self.enabled {
            return Some(HeldPull(None));
        }
        let n = self.held.fetch_add(1, Ordering::AcqRel);
        if n >= self.max_held_pulls {
            self.held.fetch_sub(1, Ordering::AcqRel);
            self.rejections.count(Reason::HeldPulls, None, None);
            return None;
        }
        Some(HeldPull(Some(self.held.clone())))
    }

    /// Long polls held now.
    pub fn held_pulls(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

/// A held long poll; its place is freed when dropped.
pub struct HeldPull(Option<Arc<AtomicUsize>>);

impl Drop for HeldPull {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
