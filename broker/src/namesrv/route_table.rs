//! The NameServer's view of the cluster: which brokers are alive (they re-register every 30 s;
//! an address is dropped when the connection it registered over closes, or after 120 s of
//! silence), where each master's slaves replicate from, and which topics each serves.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::protocol::route::{
    perm, BrokerData, QueueData, RegisterBrokerBody, TopicConfigData, TopicRouteData, MASTER_ID,
};

/// The topic brokers register when they create topics on demand (RocketMQ's `TBW102`).
pub const AUTO_CREATE_TOPIC: &str = "TBW102";

/// `%RETRY%<group>` and `%DLQ%<group>`: created per consumer group with one queue.
pub fn is_group_topic(topic: &str) -> bool {
    topic.starts_with("%RETRY%") || topic.starts_with("%DLQ%")
}

/// One registered address of a broker name (its master, id 0, or a slave).
struct AddrEntry {
    addr: String,
    /// Where it listens for slaves (HA), as it registered it.
    ha_addr: Option<String>,
    seen: Instant,
    /// The NameServer connection it last registered over (`None`: registered in-process by
    /// the broker embedding this NameServer); that connection closing drops the address.
    conn: Option<u64>,
    /// The topics it registered.
    topics: BTreeMap<String, TopicConfigData>,
}

struct BrokerEntry {
    cluster: String,
    /// broker id -> its registration
    addrs: BTreeMap<i64, AddrEntry>,
}

impl BrokerEntry {
    /// The topics routed to this broker name: the master's, or, while it has no master, those
    /// of its lowest-id slave (so consumers can still read from a slave-only broker name).
    fn topics(&self) -> Option<&BTreeMap<String, TopicConfigData>> {
        self.addrs
            .get(&MASTER_ID)
            .or_else(|| self.addrs.values().next())
            .map(|a| &a.topics)
    }

    fn has_master(&self) -> bool {
        self.addrs.contains_key(&MASTER_ID)
    }
}

/// An address dropped because the connection it registered over closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedAddr {
    pub broker_name: String,
    pub broker_id: i64,
    pub addr: String,
}

#[derive(Default)]
pub struct RouteTable {
    brokers: HashMap<String, BrokerEntry>,
    /// Connection id -> (broker name, broker id) registered over it. A hint: an entry whose
    /// address has since registered over another connection (or gone) is skipped on close.
    registrants: HashMap<u64, BTreeSet<(String, i64)>>,
}

impl RouteTable {
    /// Records a registration; `conn` is the connection it came over (`None` in-process).
    pub fn register(&mut self, body: &RegisterBrokerBody, conn: Option<u64>) {
        let e = self
            .brokers
            .entry(body.broker_name.clone())
            .or_insert_with(|| BrokerEntry {
                cluster: body.cluster.clone(),
                addrs: BTreeMap::new(),
            });
        e.cluster = body.cluster.clone();
        e.addrs.insert(
            body.broker_id,
            AddrEntry {
                addr: body.broker_addr.clone(),
                ha_addr: body.ha_server_addr.clone(),
                seen: Instant::now(),
                conn,
                topics: body.topics.clone(),
            },
        );
        if let Some(c) = conn {
            self.registrants
                .entry(c)
                .or_default()
                .insert((body.broker_name.clone(), body.broker_id));
        }
    }

    /// The address and HA address of the master (id 0) of `broker_name`, when registered.
    pub fn master_of(&self, broker_name: &str) -> Option<(String, Option<String>)> {
        self.brokers
            .get(broker_name)?
            .addrs
            .get(&MASTER_ID)
            .map(|a| (a.addr.clone(), a.ha_addr.clone()))
    }

    /// Whether any registration came over connection `conn` (cheap check before `connection_closed`).
    pub fn has_registrant(&self, conn: u64) -> bool {
        self.registrants.contains_key(&conn)
    }

    /// Connection `conn` closed: drops every address whose last registration came over it (an
    /// address registered again over another connection since is kept). Returns those dropped.
    pub fn connection_closed(&mut self, conn: u64) -> Vec<DroppedAddr> {
        let Some(regs) = self.registrants.remove(&conn) else {
            return Vec::new();
        };
        let mut dropped = Vec::new();
        for (name, id) in regs {
            let Some(e) = self.brokers.get_mut(&name) else {
                continue;
            };
            if e.addrs.get(&id).is_some_and(|a| a.conn == Some(conn)) {
                if let Some(a) = e.addrs.remove(&id) {
                    dropped.push(DroppedAddr {
                        broker_name: name.clone(),
                        broker_id: id,
                        addr: a.addr,
                    });
                }
                if e.addrs.is_empty() {
                    self.brokers.remove(&name);
                }
            }
        }
        dropped
    }

    pub fn unregister(&mut self, broker_name: &str, broker_id: i64) {
        if let Some(e) = self.brokers.get_mut(broker_name) {
            e.addrs.remove(&broker_id);
            if e.addrs.is_empty() {
                self.brokers.remove(broker_name);
            }
        }
    }

    /// Drops brokers silent for longer than `expiry`; returns their names.
    pub fn expire(&mut self, expiry: Duration) -> Vec<String> {
        let now = Instant::now();
        let mut gone = Vec::new();
        self.brokers.retain(|name, e| {
            e.addrs.retain(|_, a| now.duration_since(a.seen) <= expiry);
            if e.addrs.is_empty() {
                gone.push(name.clone());
                false
            } else {
                true
            }
        });
        gone
    }

    fn broker_data(name: &str, e: &BrokerEntry) -> BrokerData {
        BrokerData {
            cluster: e.cluster.clone(),
            broker_name: name.to_string(),
            broker_addrs: e
                .addrs
                .iter()
                .map(|(id, a)| (id.to_string(), a.addr.clone()))
                .collect(),
            enable_acting_master: false,
        }
    }

    /// The route of `topic`; a topic no broker has yet is routed to the brokers that create
    /// topics on demand (they registered `TBW102`).
    pub fn route(&self, topic: &str) -> Option<TopicRouteData> {
        let mut route = TopicRouteData::default();
        let add = |route: &mut TopicRouteData,
                   name: &str,
                   e: &BrokerEntry,
                   t: &TopicConfigData,
                   p: i32| {
            route.queue_datas.push(QueueData {
                broker_name: name.to_string(),
                read_queue_nums: t.read_queue_nums,
                write_queue_nums: t.write_queue_nums,
                perm: p,
                topic_sys_flag: t.topic_sys_flag,
            });
            route.broker_datas.push(Self::broker_data(name, e));
        };
        let mut names: Vec<&String> = self.brokers.keys().collect();
        names.sort();
        for name in &names {
            let e = &self.brokers[*name];
            if let Some(t) = e.topics().and_then(|t| t.get(topic)) {
                add(&mut route, name, e, t, t.perm);
            }
        }
        if route.queue_datas.is_empty() && topic != AUTO_CREATE_TOPIC {
            // Only a master creates topics on demand (a slave refuses sends).
            for name in &names {
                let e = &self.brokers[*name];
                if !e.has_master() {
                    continue;
                }
                if let Some(t) = e.topics().and_then(|t| t.get(AUTO_CREATE_TOPIC)) {
                    // Retry and dead-letter topics have one queue (RocketMQ's rule).
                    let one = TopicConfigData {
                        read_queue_nums: 1,
                        write_queue_nums: 1,
                        ..t.clone()
                    };
                    let t = if is_group_topic(topic) { &one } else { t };
                    add(&mut route, name, e, t, perm::READ_WRITE);
                }
            }
        }
        (!route.queue_datas.is_empty()).then_some(route)
    }

    pub fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self
            .brokers
            .values()
            .filter_map(BrokerEntry::topics)
            .flat_map(|t| t.keys().cloned())
            .filter(|t| t != AUTO_CREATE_TOPIC)
            .collect();
        t.sort();
        t.dedup();
        t
    }

    /// `{"brokerAddrTable": {...}, "clusterAddrTable": {...}}` (GET_BROKER_CLUSTER_INFO).
    pub fn cluster_info(&self) -> serde_json::Value {
        let mut brokers = serde_json::Map::new();
        let mut clusters: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, e) in &self.brokers {
            brokers.insert(
                name.clone(),
                serde_json::to_value(Self::broker_data(name, e)).unwrap_or_default(),
            );
            clusters
                .entry(e.cluster.clone())
                .or_default()
                .push(name.clone());
        }
        serde_json::json!({ "brokerAddrTable": brokers, "clusterAddrTable": clusters })
    }

    pub fn delete_topic(&mut self, topic: &str) {
        for a in self.brokers.values_mut().flat_map(|e| e.addrs.values_mut()) {
            a.topics.remove(topic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(name: &str, addr: &str, topics: &[(&str, i32)]) -> RegisterBrokerBody {
        reg_id(name, 0, addr, topics)
    }

    fn reg_id(name: &str, id: i64, addr: &str, topics: &[(&str, i32)]) -> RegisterBrokerBody {
        RegisterBrokerBody {
            cluster: "C".into(),
            broker_name: name.into(),
            broker_addr: addr.into(),
            broker_id: id,
            ha_server_addr: Some(format!("{addr}-ha")),
            topics: topics
                .iter()
                .map(|(t, q)| {
                    (
                        t.to_string(),
                        TopicConfigData {
                            read_queue_nums: *q,
                            write_queue_nums: *q,
                            perm: 6,
                            topic_sys_flag: 0,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn routes_name_every_broker_of_a_topic() {
        let mut t = RouteTable::default();
        t.register(&reg("a", "127.0.0.1:1", &[("T", 4), ("TBW102", 8)]), None);
        t.register(&reg("b", "127.0.0.1:2", &[("T", 2)]), None);
        let r = t.route("T").unwrap();
        assert_eq!(r.queue_datas.len(), 2);
        assert_eq!(r.broker_datas[1].master_addr(), Some("127.0.0.1:2"));
        // Unknown topic: routed to the auto-creating broker.
        let r = t.route("New").unwrap();
        assert_eq!(r.broker_datas.len(), 1);
        assert_eq!(r.queue_datas[0].write_queue_nums, 8);
        assert_eq!(t.topics(), ["T"]);
        t.unregister("a", 0);
        assert!(t.route("New").is_none());
        assert!(t.expire(Duration::ZERO).len() == 1 || t.route("T").is_some());
    }

    #[test]
    fn a_slave_learns_its_masters_addresses_and_routes_list_both() {
        let mut t = RouteTable::default();
        t.register(&reg_id("a", 1, "127.0.0.1:3", &[("T", 2)]), Some(2));
        assert_eq!(t.master_of("a"), None, "no master registered yet");
        t.register(&reg_id("a", 0, "127.0.0.1:1", &[("T", 4)]), Some(1));
        assert_eq!(
            t.master_of("a"),
            Some((
                "127.0.0.1:1".to_string(),
                Some("127.0.0.1:1-ha".to_string())
            ))
        );
        assert_eq!(t.master_of("b"), None);
        let r = t.route("T").unwrap();
        assert_eq!(r.broker_datas.len(), 1);
        let addrs = &r.broker_datas[0].broker_addrs;
        assert_eq!(addrs.get("0").map(String::as_str), Some("127.0.0.1:1"));
        assert_eq!(addrs.get("1").map(String::as_str), Some("127.0.0.1:3"));
        // Queues come from the master's registration, not the slave's.
        assert_eq!(r.queue_datas.len(), 1);
        assert_eq!(r.queue_datas[0].read_queue_nums, 4);
        let info = t.cluster_info();
        assert_eq!(
            info["brokerAddrTable"]["a"]["brokerAddrs"]["1"],
            "127.0.0.1:3"
        );
    }

    #[test]
    fn a_slave_only_broker_name_is_still_routed_for_reads() {
        let mut t = RouteTable::default();
        let mut slave = reg_id("a", 1, "127.0.0.1:3", &[("T", 4), ("TBW102", 8)]);
        slave.topics.get_mut("T").unwrap().perm = perm::READ;
        t.register(&slave, Some(2));
        let r = t.route("T").unwrap();
        assert_eq!(r.queue_datas.len(), 1);
        assert_eq!(
            (r.queue_datas[0].read_queue_nums, r.queue_datas[0].perm),
            (4, perm::READ),
            "the slave's queues, with the perm it registered"
        );
        let b = &r.broker_datas[0];
        assert_eq!(b.master_addr(), None);
        assert_eq!(
            b.broker_addrs.get("1").map(String::as_str),
            Some("127.0.0.1:3")
        );
        assert_eq!(t.topics(), ["T"]);
        // A slave does not create topics: unknown topics are not routed to it.
        assert!(t.route("New").is_none());
        // The master returns: its topics win again.
        t.register(&reg_id("a", 0, "127.0.0.1:1", &[("T", 2)]), Some(1));
        let r = t.route("T").unwrap();
        assert_eq!(
            (r.queue_datas[0].read_queue_nums, r.queue_datas[0].perm),
            (2, 6)
        );
        t.delete_topic("T");
        assert!(t.route("T").is_none());
        assert!(t.topics().is_empty());
    }

    #[test]
    fn a_closed_connection_drops_only_what_was_last_registered_over_it() {
        let mut t = RouteTable::default();
        t.register(&reg_id("a", 0, "127.0.0.1:1", &[("T", 4)]), Some(10));
        t.register(&reg_id("a", 1, "127.0.0.1:3", &[("T", 4)]), Some(11));
        t.register(&reg_id("b", 0, "127.0.0.1:2", &[("T", 4)]), None);
        // The master reconnected and registered again over connection 12.
        t.register(&reg_id("a", 0, "127.0.0.1:1", &[("T", 4)]), Some(12));
        assert!(t.has_registrant(10));
        assert!(!t.has_registrant(99));
        assert!(t.connection_closed(99).is_empty());
        assert!(
            t.connection_closed(10).is_empty(),
            "the old connection closing must not drop the newer registration"
        );
        assert!(!t.has_registrant(10));
        assert!(t.master_of("a").is_some());
        // The slave's connection closes: only the slave goes.
        assert_eq!(
            t.connection_closed(11),
            vec![DroppedAddr {
                broker_name: "a".into(),
                broker_id: 1,
                addr: "127.0.0.1:3".into()
            }]
        );
        let r = t.route("T").unwrap();
        assert_eq!(r.broker_datas[0].broker_addrs.len(), 1);
        // The master's goes: broker name `a` is gone; `b` (registered in-process) stays.
        assert_eq!(t.connection_closed(12).len(), 1);
        assert_eq!(t.master_of("a"), None);
        let r = t.route("T").unwrap();
        assert_eq!(r.broker_datas.len(), 1);
        assert_eq!(r.broker_datas[0].broker_name, "b");
        assert!(t.connection_closed(12).is_empty());
    }
}
