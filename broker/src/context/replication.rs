//! Replication state shared by the send path, the HA service and the admin requests: on a
//! master, the slaves connected to it and the offset each confirmed (a `sync_master`'s sends
//! wait here for enough copies, sharing acknowledgements the way sync flush shares fsyncs);
//! on a slave, where its master is, how far behind it runs, and which queues clients committed
//! offsets to on it (the metadata sync sends those to the master when it is back).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;

use crate::config::{BrokerConfig, BrokerRole};

/// Where a slave's master is: the address clients dial and its HA address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MasterAddrs {
    pub addr: Option<String>,
    pub ha_addr: String,
}

/// A queue a client committed an offset to on a slave: (group, topic, queue id).
pub type LocalCommit = (String, String, i32);

/// What a `sync_master`'s send learns from waiting for its slaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaWait {
    /// Enough copies hold the message.
    Replicated,
    /// Fewer in-sync slaves than needed: SLAVE_NOT_AVAILABLE, at once.
    NotAvailable,
    /// The in-sync slaves did not confirm within `slave_timeout_ms`: FLUSH_SLAVE_TIMEOUT.
    TimedOut,
}

/// One slave connected to this master.
#[derive(Debug, Clone)]
struct SlaveLink {
    session: u64,
    peer: SocketAddr,
    /// Commit-log offset the slave holds (its last report).
    acked: u64,
    last_report: Instant,
    /// When the slave last held everything the master had.
    caught_up_at: Instant,
}

/// What a slave knows of its link to the master.
#[derive(Debug, Clone, Default)]
struct MasterLink {
    connected: bool,
    /// The master's max offset in its last frame.
    master_max: u64,
    last_contact: Option<Instant>,
    /// Why replication is stopped (divergence, segment size), when it is.
    error: Option<String>,
}

/// A slave as `wasmq cluster` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlaveStatus {
    pub broker_id: i64,
    pub peer: String,
    pub acked_offset: u64,
    pub lag_bytes: u64,
    pub lag_ms: u64,
    pub in_sync: bool,
}

/// The master as a slave sees it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MasterStatus {
    pub addr: Option<String>,
    pub ha_addr: Option<String>,
    pub connected: bool,
    pub master_max_offset: u64,
    pub lag_bytes: u64,
    pub last_contact_ms_ago: Option<u64>,
    pub error: Option<String>,
}

/// HA_STATUS response body: one broker's replication state.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationStatus {
    pub broker_name: String,
    pub broker_id: i64,
    pub role: &'static str,
    pub addr: String,
    pub ha_addr: String,
    pub min_offset: u64,
    pub max_offset: u64,
    pub in_sync_replicas: u32,
    pub slaves: Vec<SlaveStatus>,
    pub master: Option<MasterStatus>,
}

pub struct Replication {
    role: BrokerRole,
    /// Slaves whose confirmation a sync send needs (`in_sync_replicas - 1`).
    needed: usize,
    slave_timeout: Duration,
    max_gap: u64,
    slaves: Mutex<BTreeMap<i64, SlaveLink>>,
    next_session: std::sync::atomic::AtomicU64,
    /// Highest offset held by `needed` in-sync slaves (master side).
    replicated: watch::Sender<u64>,
    /// Where the master is (slave side): from the config or the NameServer's reply.
    master: watch::Sender<Option<MasterAddrs>>,
    link: Mutex<MasterLink>,
    /// Queues clients committed offsets to on this slave since the metadata sync last took
    /// them: group -> topic -> queue ids (nested so that a repeated commit allocates nothing).
    local_commits: Mutex<BTreeMap<String, BTreeMap<String, BTreeSet<i32>>>>,
}

impl Replication {
    pub fn new(config: &BrokerConfig) -> Replication {
        let master = config.ha_master_addr.clone().map(|ha| MasterAddrs {
            addr: None,
            ha_addr: ha,
        });
        Replication {
            role: config.broker_role,
            needed: config.in_sync_replicas.saturating_sub(1) as usize,
            slave_timeout: Duration::from_millis(config.slave_timeout_ms),
            max_gap: config.ha_max_gap_bytes,
            slaves: Mutex::new(BTreeMap::new()),
            next_session: std::sync::atomic::AtomicU64::new(1),
            replicated: watch::channel(0).0,
            master: watch::channel(master).0,
            link: Mutex::new(MasterLink::default()),
            local_commits: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn role(&self) -> BrokerRole {
        self.role
    }

    pub fn is_slave(&self) -> bool {
        self.role.is_slave()
    }

    /// A send on this broker waits for slaves (sync master needing at least one slave).
    pub fn waits_for_slaves(&self) -> bool {
        self.role == BrokerRole::SyncMaster && self.needed > 0
    }

    pub fn slave_timeout(&self) -> Duration {
        self.slave_timeout
    }

    // ---- slave side ----

    /// Records where the master is (the NameServer's reply); a change wakes the HA client.
    /// An address from the configuration is kept.
    pub fn set_master(&self, m: Option<MasterAddrs>) {
        self.master.send_if_modified(|cur| {
            if *cur == m {
                return false;
            }
            if m.is_none() && cur.as_ref().is_some_and(|c| c.addr.is_none()) {
                // Configured (`ha_master_addr`), not learned: the NameServer does not unset it.
                return false;
            }
            if let (Some(c), Some(new)) = (cur.as_ref(), m.as_ref()) {
                if c.addr.is_none() && c.ha_addr != new.ha_addr {
                    return false;
                }
            }
            *cur = m;
            true
        });
    }

    pub fn master(&self) -> Option<MasterAddrs> {
        self.master.borrow().clone()
    }

    pub fn watch_master(&self) -> watch::Receiver<Option<MasterAddrs>> {
        self.master.subscribe()
    }

    /// The slave's link came up, went down, or heard the master's max offset.
    pub fn link_state(&self, connected: bool, master_max: Option<u64>) {
        let mut l = self.link.lock();
        l.connected = connected;
        if let Some(m) = master_max {
            l.master_max = m;
            l.last_contact = Some(Instant::now());
            l.error = None;
        }
    }

    /// Replication stopped for a reason an operator must fix (shown by `wasmq cluster`).
    pub fn link_error(&self, e: Option<String>) {
        self.link.lock().error = e;
    }

    /// A client committed an offset of (group, topic, queue) on this slave (UPDATE_CONSUMER_OFFSET
    /// or a pull's commit flag). Only meaningful on a slave: the commit sites call it behind
    /// `is_slave()`, so a master's commits pay one branch.
    pub fn note_local_commit(&self, group: &str, topic: &str, queue_id: i32) {
        let mut m = self.local_commits.lock();
        let topics = match m.get_mut(group) {
            Some(t) => t,
            None => m.entry(group.to_string()).or_default(),
        };
        match topics.get_mut(topic) {
            Some(q) => {
                q.insert(queue_id);
            }
            None => {
                topics.insert(topic.to_string(), BTreeSet::from([queue_id]));
            }
        }
    }

    /// The queues noted by [`Replication::note_local_commit`] since the last call, in order;
    /// the set is left empty.
    pub fn take_local_commits(&self) -> Vec<LocalCommit> {
        let m = std::mem::take(&mut *self.local_commits.lock());
        m.into_iter()
            .flat_map(|(group, topics)| {
                topics.into_iter().flat_map(move |(topic, queues)| {
                    let group = group.clone();
                    queues
                        .into_iter()
                        .map(move |q| (group.clone(), topic.clone(), q))
                })
            })
            .collect()
    }

    /// Puts taken commits back (the master did not take them; the next round sends them again).
    pub fn put_back_local_commits(&self, commits: impl IntoIterator<Item = LocalCommit>) {
        let mut m = self.local_commits.lock();
        for (group, topic, q) in commits {
            m.entry(group)
                .or_default()
                .entry(topic)
                .or_default()
                .insert(q);
        }
    }

    // ---- master side ----

    /// A slave connected. Refused (with the reason) when a slave of that id is connected already.
    pub fn slave_connected(
        &self,
        broker_id: i64,
        peer: SocketAddr,
        offset: u64,
    ) -> Result<u64, String> {
        let mut s = self.slaves.lock();
        if let Some(old) = s.get(&broker_id) {
            return Err(format!(
                "slave {broker_id} is already connected from {}",
                old.peer
            ));
        }
        let session = self
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = Instant::now();
        s.insert(
            broker_id,
            SlaveLink {
                session,
                peer,
                acked: offset,
                last_report: now,
                caught_up_at: now,
            },
        );
        Ok(session)
    }

    /// The slave's session ended (only that session: a newer one of the same id stays).
    pub fn slave_gone(&self, broker_id: i64, session: u64) {
        let mut s = self.slaves.lock();
        if s.get(&broker_id).is_some_and(|l| l.session == session) {
            s.remove(&broker_id);
        }
    }

    /// A slave reports the offset it holds; `master_max` is the master's log end now.
    pub fn slave_acked(&self, broker_id: i64, session: u64, offset: u64, master_max: u64) {
        let now = Instant::now();
        let mut s = self.slaves.lock();
        if let Some(l) = s.get_mut(&broker_id).filter(|l| l.session == session) {
            l.acked = l.acked.max(offset);
            l.last_report = now;
            if l.acked >= master_max {
                l.caught_up_at = now;
            }
        }
        let r = self.replicated_offset(&s, now, master_max);
        drop(s);
        if let Some(r) = r {
            self.replicated.send_if_modified(|cur| {
                let up = r > *cur;
                if up {
                    *cur = r;
                }
                up
            });
        }
    }

    fn in_sync(&self, l: &SlaveLink, now: Instant, master_max: u64) -> bool {
        master_max.saturating_sub(l.acked) <= self.max_gap
            && now.duration_since(l.last_report) <= self.slave_timeout
    }

    /// The highest offset `needed` in-sync slaves hold, if that many are in sync.
    fn replicated_offset(
        &self,
        s: &BTreeMap<i64, SlaveLink>,
        now: Instant,
        master_max: u64,
    ) -> Option<u64> {
        let mut acks: Vec<u64> = s
            .values()
            .filter(|l| self.in_sync(l, now, master_max))
            .map(|l| l.acked)
            .collect();
        if acks.len() < self.needed || self.needed == 0 {
            return None;
        }
        acks.sort_unstable_by(|a, b| b.cmp(a));
        Some(acks[self.needed - 1])
    }

    /// Waits until `needed` in-sync slaves hold everything up to `end` (a sync master's send).
    pub async fn wait_replicated(&self, end: u64, master_max: u64) -> ReplicaWait {
        if self.needed == 0 {
            return ReplicaWait::Replicated;
        }
        {
            let s = self.slaves.lock();
            let now = Instant::now();
            let n = s
                .values()
                .filter(|l| self.in_sync(l, now, master_max))
                .count();
            if n < self.needed {
                return ReplicaWait::NotAvailable;
            }
        }
        let mut rx = self.replicated.subscribe();
        let done = tokio::time::timeout(self.slave_timeout, async {
            rx.wait_for(|r| *r >= end).await.is_ok()
        })
        .await;
        match done {
            Ok(true) => ReplicaWait::Replicated,
            _ => ReplicaWait::TimedOut,
        }
    }

    /// The replication state as `wasmq cluster` shows it.
    pub fn status(
        &self,
        config: &BrokerConfig,
        min_offset: u64,
        max_offset: u64,
    ) -> ReplicationStatus {
        let now = Instant::now();
        let slaves = self
            .slaves
            .lock()
            .iter()
            .map(|(id, l)| SlaveStatus {
                broker_id: *id,
                peer: l.peer.to_string(),
                acked_offset: l.acked,
                lag_bytes: max_offset.saturating_sub(l.acked),
                lag_ms: if l.acked >= max_offset {
                    0
                } else {
                    now.duration_since(l.caught_up_at).as_millis() as u64
                },
                in_sync: self.in_sync(l, now, max_offset),
            })
            .collect();
        let master = self.is_slave().then(|| {
            let m = self.master();
            let l = self.link.lock().clone();
            MasterStatus {
                addr: m.as_ref().and_then(|m| m.addr.clone()),
                ha_addr: m.map(|m| m.ha_addr),
                connected: l.connected,
                master_max_offset: l.master_max,
                lag_bytes: l.master_max.saturating_sub(max_offset),
                last_contact_ms_ago: l
                    .last_contact
                    .map(|t| now.duration_since(t).as_millis() as u64),
                error: l.error,
            }
        });
        ReplicationStatus {
            broker_name: config.broker_name.clone(),
            broker_id: config.broker_id,
            role: self.role.as_str(),
            addr: config.advertised().to_string(),
            ha_addr: config.ha_advertised().to_string(),
            min_offset,
            max_offset,
            in_sync_replicas: config.in_sync_replicas,
            slaves,
            master,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repl(role: BrokerRole, isr: u32) -> Replication {
        let mut c = BrokerConfig {
            broker_role: role,
            in_sync_replicas: isr,
            slave_timeout_ms: 200,
            ..BrokerConfig::default()
        };
        c.ha_max_gap_bytes = 1000;
        Replication::new(&c)
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    #[tokio::test]
    async fn no_slave_is_not_available_and_a_confirmed_offset_releases_waiters() {
        let r = repl(BrokerRole::SyncMaster, 2);
        assert_eq!(r.wait_replicated(10, 10).await, ReplicaWait::NotAvailable);
        let s = r.slave_connected(1, peer(), 0).unwrap();
        assert!(
            r.slave_connected(1, peer(), 0).is_err(),
            "a second session of the same slave id is refused"
        );
        let r = std::sync::Arc::new(r);
        let w = {
            let r = r.clone();
            tokio::spawn(async move { r.wait_replicated(100, 100).await })
        };
        tokio::task::yield_now().await;
        r.slave_acked(1, s, 50, 100);
        tokio::task::yield_now().await;
        assert!(!w.is_finished());
        r.slave_acked(1, s, 100, 100);
        assert_eq!(w.await.unwrap(), ReplicaWait::Replicated);
        // A silent slave: the wait times out, then it no longer counts as in sync.
        assert_eq!(r.wait_replicated(200, 200).await, ReplicaWait::TimedOut);
        assert_eq!(r.wait_replicated(200, 200).await, ReplicaWait::NotAvailable);
        r.slave_gone(1, s);
        assert!(r.slave_connected(1, peer(), 0).is_ok());
    }

    #[tokio::test]
    async fn far_behind_slaves_are_not_in_sync_and_three_copies_need_two_slaves() {
        let r = repl(BrokerRole::SyncMaster, 3);
        let a = r.slave_connected(1, peer(), 0).unwrap();
        let b = r.slave_connected(2, peer(), 0).unwrap();
        r.slave_acked(1, a, 5000, 5000);
        r.slave_acked(2, b, 3000, 5000);
        // Slave 2 is 2000 bytes behind, over the gap of 1000.
        assert_eq!(
            r.wait_replicated(5000, 5000).await,
            ReplicaWait::NotAvailable
        );
        r.slave_acked(2, b, 5000, 5000);
        assert_eq!(r.wait_replicated(5000, 5000).await, ReplicaWait::Replicated);
        let st = r.status(&BrokerConfig::default(), 0, 6000);
        assert_eq!(st.slaves.len(), 2);
        assert_eq!(st.slaves[0].lag_bytes, 1000);
    }

    #[test]
    fn local_commits_are_taken_once_and_can_be_put_back() {
        let r = repl(BrokerRole::Slave, 1);
        assert!(r.take_local_commits().is_empty());
        r.note_local_commit("g", "T", 1);
        r.note_local_commit("g", "T", 0);
        r.note_local_commit("g", "T", 1);
        r.note_local_commit("g", "U", 0);
        let c = |g: &str, t: &str, q| (g.to_string(), t.to_string(), q);
        let taken = r.take_local_commits();
        assert_eq!(taken, vec![c("g", "T", 0), c("g", "T", 1), c("g", "U", 0)]);
        assert!(r.take_local_commits().is_empty());
        r.note_local_commit("h", "T", 2);
        r.put_back_local_commits(taken);
        assert_eq!(r.take_local_commits().len(), 4);
    }

    #[test]
    fn a_configured_master_is_not_replaced_by_the_namesrv() {
        let c = BrokerConfig {
            broker_role: BrokerRole::Slave,
            broker_id: 1,
            ha_master_addr: Some("127.0.0.1:5".into()),
            ..BrokerConfig::default()
        };
        let r = Replication::new(&c);
        r.set_master(None);
        r.set_master(Some(MasterAddrs {
            addr: Some("127.0.0.1:4".into()),
            ha_addr: "127.0.0.1:9".into(),
        }));
        assert_eq!(r.master().unwrap().ha_addr, "127.0.0.1:5");
        let r = repl(BrokerRole::Slave, 2);
        let m = MasterAddrs {
            addr: Some("127.0.0.1:4".into()),
            ha_addr: "127.0.0.1:9".into(),
        };
        r.set_master(Some(m.clone()));
        assert_eq!(r.master(), Some(m));
        r.set_master(None);
        assert_eq!(r.master(), None);
    }
}
