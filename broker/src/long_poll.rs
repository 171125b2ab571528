//! Long polling: pulls that find nothing wait here until the dispatcher reports new entries on
//! their queue (or their timeout passes). Dispatch (the appender's thread, or the dispatcher
//! thread) calls [`PullHold::on_arrival`] directly; waiters are tokio tasks.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::store::ArrivalListener;

/// One notifier per queue: by topic, then queue id (looked up by `&str`, no key built per
/// arrival).
type Waiters = HashMap<Arc<str>, HashMap<i32, Arc<Notify>>>;

#[derive(Default)]
pub struct PullHold {
    queues: Mutex<Waiters>,
}

impl PullHold {
    /// The notifier for a queue. Create the `notified()` future *before* re-checking the queue,
    /// so an arrival between the check and the wait is not missed.
    pub fn notifier(&self, topic: &str, queue_id: i32) -> Arc<Notify> {
        let mut q = self.queues.lock();
        if let Some(n) = q.get(topic).and_then(|t| t.get(&queue_id)) {
            return n.clone();
        }
        let n = Arc::new(Notify::new());
        q.entry(topic.into())
            .or_default()
            .insert(queue_id, n.clone());
        n
    }
}

impl ArrivalListener for PullHold {
    /// Wakes the pulls held on the queue; a queue nobody ever waited on costs a map lookup.
    fn on_arrival(&self, topic: &str, queue_id: i32, _max_offset: u64) {
        let n = self
            .queues
            .lock()
            .get(topic)
            .and_then(|t| t.get(&queue_id))
            .cloned();
        if let Some(n) = n {
            n.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn arrival_wakes_waiters_of_that_queue_only() {
        let hold = Arc::new(PullHold::default());
        let n = hold.notifier("T", 1);
        let other = hold.notifier("T", 2);
        let waiting = n.notified();
        let not_woken = other.notified();
        tokio::pin!(waiting);
        tokio::pin!(not_woken);
        waiting.as_mut().enable();
        not_woken.as_mut().enable();
        hold.on_arrival("T", 1, 5);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiting)
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), not_woken)
                .await
                .is_err()
        );
    }
}
