//! The NameServer's view of the cluster: which brokers are alive (they re-register every 30 s
//! and expire after 120 s of silence) and which topics each serves.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::protocol::route::{
    perm, BrokerData, QueueData, RegisterBrokerBody, TopicConfigData, TopicRouteData,
};

/// The topic brokers register when they create topics on demand (RocketMQ's `TBW102`).
pub const AUTO_CREATE_TOPIC: &str = "TBW102";

/// `%RETRY%<group>` and `%DLQ%<group>`: created per consumer group with one queue.
pub fn is_group_topic(topic: &str) -> bool {
    topic.starts_with("%RETRY%") || topic.starts_with("%DLQ%")
}

struct BrokerEntry {
    cluster: String,
    /// broker id -> (address, last registration)
    addrs: BTreeMap<i64, (String, Instant)>,
    topics: BTreeMap<String, TopicConfigData>,
}

#[derive(Default)]
pub struct RouteTable {
    brokers: HashMap<String, BrokerEntry>,
}

impl RouteTable {
    pub fn register(&mut self, body: &RegisterBrokerBody) {
        let e = self
            .brokers
            .entry(body.broker_name.clone())
            .or_insert_with(|| BrokerEntry {
                cluster: body.cluster.clone(),
                addrs: BTreeMap::new(),
                topics: BTreeMap::new(),
            });
        e.cluster = body.cluster.clone();
        e.addrs
            .insert(body.broker_id, (body.broker_addr.clone(), Instant::now()));
        if body.broker_id == 0 {
            e.topics = body.topics.clone();
        }
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
            e.addrs
                .retain(|_, (_, seen)| now.duration_since(*seen) <= expiry);
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
                .map(|(id, (a, _))| (id.to_string(), a.clone()))
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
            if let Some(t) = e.topics.get(topic) {
                add(&mut route, name, e, t, t.perm);
            }
        }
        if route.queue_datas.is_empty() && topic != AUTO_CREATE_TOPIC {
            for name in &names {
                let e = &self.brokers[*name];
                if let Some(t) = e.topics.get(AUTO_CREATE_TOPIC) {
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
            .flat_map(|e| e.topics.keys().cloned())
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
        for e in self.brokers.values_mut() {
            e.topics.remove(topic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(name: &str, addr: &str, topics: &[(&str, i32)]) -> RegisterBrokerBody {
        RegisterBrokerBody {
            cluster: "C".into(),
            broker_name: name.into(),
            broker_addr: addr.into(),
            broker_id: 0,
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
        t.register(&reg("a", "127.0.0.1:1", &[("T", 4), ("TBW102", 8)]));
        t.register(&reg("b", "127.0.0.1:2", &[("T", 2)]));
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
}
