//! Queue locks for orderly consumers (LOCK_BATCH_MQ / UNLOCK_BATCH_MQ): one client of a group
//! owns a queue at a time; a lock expires unless renewed (clients renew every 20 s).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long a lock lasts without renewal (RocketMQ's `rebalanceLockMaxLiveTime`).
pub const LOCK_LEASE: Duration = Duration::from_secs(60);

type Key = (String, String, i32); // (group, topic, queue id)

#[derive(Default)]
pub struct QueueLocks {
    locks: Mutex<HashMap<Key, (String, Instant)>>,
}

impl QueueLocks {
    /// Locks (or renews) each queue for `client`; returns the queues it now holds.
    pub fn lock(&self, group: &str, client: &str, queues: &[(String, i32)]) -> Vec<(String, i32)> {
        let now = Instant::now();
        let mut locks = self.locks.lock();
        let mut ok = Vec::new();
        for (topic, qid) in queues {
            let key = (group.to_string(), topic.clone(), *qid);
            let free = match locks.get(&key) {
                None => true,
                Some((owner, at)) => owner == client || now.duration_since(*at) > LOCK_LEASE,
            };
            if free {
                locks.insert(key, (client.to_string(), now));
                ok.push((topic.clone(), *qid));
            }
        }
        ok
    }

    pub fn unlock(&self, group: &str, client: &str, queues: &[(String, i32)]) {
        let mut locks = self.locks.lock();
        for (topic, qid) in queues {
            let key = (group.to_string(), topic.clone(), *qid);
            if locks.get(&key).is_some_and(|(o, _)| o == client) {
                locks.remove(&key);
            }
        }
    }

    /// Releases every lock a client holds in a group (it left).
    pub fn release_client(&self, group: &str, client: &str) {
        self.locks
            .lock()
            .retain(|(g, _, _), (o, _)| !(g == group && o == client));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_owner_per_queue() {
        let l = QueueLocks::default();
        let q = vec![("T".to_string(), 0), ("T".to_string(), 1)];
        assert_eq!(l.lock("g", "c1", &q).len(), 2);
        assert!(l.lock("g", "c2", &q).is_empty());
        assert_eq!(l.lock("other", "c2", &q).len(), 2, "groups are independent");
        l.unlock("g", "c2", &q[..1]);
        assert!(
            l.lock("g", "c2", &q[..1]).is_empty(),
            "only the owner unlocks"
        );
        l.unlock("g", "c1", &q[..1]);
        assert_eq!(l.lock("g", "c2", &q[..1]).len(), 1);
        l.release_client("g", "c1");
        assert_eq!(l.lock("g", "c2", &q).len(), 2);
    }
}
