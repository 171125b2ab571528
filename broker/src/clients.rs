//! Connected clients by group: producers (for transaction check-backs) and consumers (their
//! members, for rebalancing, and their subscriptions, for filtering pulls). Membership changes
//! are announced to the group with NOTIFY_CONSUMER_IDS_CHANGED.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use crate::net::Connection;
use crate::subscription::Subscription;

#[derive(Clone)]
pub struct ClientChannel {
    pub client_id: String,
    pub conn: Arc<Connection>,
    pub last_seen: Instant,
    /// The client's language (from its heartbeat): some pushes differ per language.
    pub language: crate::protocol::LanguageCode,
}

/// How a consumer group consumes (from its heartbeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerInfo {
    pub consume_type: String,
    pub message_model: String,
    pub consume_from_where: String,
}

#[derive(Default)]
pub struct ConsumerGroup {
    pub info: ConsumerInfo,
    pub members: HashMap<String, ClientChannel>,
    pub subscriptions: HashMap<String, Arc<Subscription>>,
}

#[derive(Default)]
pub struct ClientRegistry {
    consumers: RwLock<HashMap<String, ConsumerGroup>>,
    producers: RwLock<HashMap<String, HashMap<String, ClientChannel>>>,
}

impl ClientRegistry {
    /// Records a consumer's heartbeat. Returns true when the group's membership changed.
    pub fn register_consumer(
        &self,
        group: &str,
        client_id: &str,
        conn: &Arc<Connection>,
        language: crate::protocol::LanguageCode,
        info: ConsumerInfo,
        subs: Vec<Subscription>,
    ) -> bool {
        let mut groups = self.consumers.write();
        let g = groups.entry(group.to_string()).or_default();
        g.info = info;
        let now = Instant::now();
        let changed = match g.members.get_mut(client_id) {
            Some(c) => {
                let moved = c.conn.id() != conn.id();
                c.conn = conn.clone();
                c.last_seen = now;
                c.language = language;
                moved
            }
            None => {
                g.members.insert(
                    client_id.to_string(),
                    ClientChannel {
                        client_id: client_id.to_string(),
                        conn: conn.clone(),
                        last_seen: now,
                        language,
                    },
                );
                true
            }
        };
        for s in subs {
            let keep = g.subscriptions.get(&s.topic).is_some_and(|old| {
                old.sub_version > s.sub_version && old.expression == s.expression
            });
            if !keep {
                g.subscriptions.insert(s.topic.clone(), Arc::new(s));
            }
        }
        changed
    }

    pub fn register_producer(&self, group: &str, client_id: &str, conn: &Arc<Connection>) {
        let mut p = self.producers.write();
        p.entry(group.to_string()).or_default().insert(
            client_id.to_string(),
            ClientChannel {
                client_id: client_id.to_string(),
                conn: conn.clone(),
                last_seen: Instant::now(),
                language: crate::protocol::LanguageCode::Other,
            },
        );
    }

    /// Registers `conn` as a live producer of `group` unless it already is one: a connection
    /// that sends a half message can answer check-backs even before its first heartbeat
    /// (some clients heartbeat only every 30 s, and only to brokers they already knew).
    pub fn note_producer_connection(&self, group: &str, conn: &Arc<Connection>) {
        let known = self
            .producers
            .read()
            .get(group)
            .is_some_and(|m| m.values().any(|c| c.conn.id() == conn.id()));
        if !known {
            self.register_producer(group, &format!("conn-{}", conn.id()), conn);
        }
    }

    /// Removes a client from a consumer group. Returns true if it was a member.
    pub fn unregister_consumer(&self, group: &str, client_id: &str) -> bool {
        let mut groups = self.consumers.write();
        let Some(g) = groups.get_mut(group) else {
            return false;
        };
        let removed = g.members.remove(client_id).is_some();
        if g.members.is_empty() {
            groups.remove(group);
        }
        removed
    }

    pub fn unregister_producer(&self, group: &str, client_id: &str) {
        let mut p = self.producers.write();
        if let Some(m) = p.get_mut(group) {
            m.remove(client_id);
            if m.is_empty() {
                p.remove(group);
            }
        }
    }

    /// Drops every client on a closed connection, or silent longer than `expiry`. Returns the
    /// consumer groups whose membership changed.
    pub fn sweep(&self, closed_conn: Option<u64>, expiry: Duration) -> Vec<String> {
        let now = Instant::now();
        let gone = |c: &ClientChannel| {
            Some(c.conn.id()) == closed_conn
                || c.conn.is_closed()
                || now.duration_since(c.last_seen) > expiry
        };
        let mut changed = Vec::new();
        {
            let mut groups = self.consumers.write();
            groups.retain(|name, g| {
                let before = g.members.len();
                g.members.retain(|_, c| !gone(c));
                if g.members.len() != before {
                    changed.push(name.clone());
                }
                !g.members.is_empty()
            });
        }
        self.producers.write().retain(|_, m| {
            m.retain(|_, c| !gone(c));
            !m.is_empty()
        });
        changed
    }

    /// Sorted client ids of a consumer group (clients sort again; we keep it stable).
    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .consumers
            .read()
            .get(group)
            .map(|g| g.members.keys().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    pub fn consumer_connections(&self, group: &str) -> Vec<Arc<Connection>> {
        self.consumers
            .read()
            .get(group)
            .map(|g| g.members.values().map(|c| c.conn.clone()).collect())
            .unwrap_or_default()
    }

    /// Members of a consumer group with their connections and languages.
    pub fn consumer_channels(&self, group: &str) -> Vec<ClientChannel> {
        self.consumers
            .read()
            .get(group)
            .map(|g| g.members.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn producer_connections(&self, group: &str) -> Vec<Arc<Connection>> {
        self.producers
            .read()
            .get(group)
            .map(|m| m.values().map(|c| c.conn.clone()).collect())
            .unwrap_or_default()
    }

    pub fn subscription(&self, group: &str, topic: &str) -> Option<Arc<Subscription>> {
        self.consumers
            .read()
            .get(group)?
            .subscriptions
            .get(topic)
            .cloned()
    }

    /// Every distinct subscription of the online groups.
    pub fn all_subscriptions(&self) -> Vec<Arc<Subscription>> {
        let mut out: Vec<Arc<Subscription>> = Vec::new();
        for g in self.consumers.read().values() {
            for s in g.subscriptions.values() {
                if !out.iter().any(|o| {
                    o.topic == s.topic
                        && o.expression_type == s.expression_type
                        && o.expression == s.expression
                }) {
                    out.push(s.clone());
                }
            }
        }
        out
    }

    /// `group/topic (TYPE)` of every subscription with one of these expression types.
    pub fn subscriptions_of_types(&self, types: &[String]) -> Vec<String> {
        let mut out: Vec<String> = self
            .consumers
            .read()
            .iter()
            .flat_map(|(g, c)| {
                c.subscriptions
                    .values()
                    .filter(|s| types.contains(&s.expression_type))
                    .map(move |s| format!("{g}/{} ({})", s.topic, s.expression_type))
            })
            .collect();
        out.sort();
        out
    }

    pub fn consumer_info(&self, group: &str) -> Option<ConsumerInfo> {
        self.consumers.read().get(group).map(|g| g.info.clone())
    }

    pub fn is_online(&self, group: &str) -> bool {
        self.consumers.read().contains_key(group)
    }
}
