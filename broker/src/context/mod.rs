//! The broker context: the state every request processor and background service shares (store,
//! metadata, clients, plugins, and the state of delays, timers, filter bits and transactions),
//! with the helpers they all need. It sits below the processors and services and knows none
//! of them; `crate::processor` routes requests to them and `crate::broker` wires it all up.
//!
//! | file | concept |
//! |---|---|
//! | [`delay`] | delay levels and each level's delivery progress |
//! | [`timer_state`] | which timed messages were delivered |
//! | [`filter_bits`] | match bits of plugin expressions beside the consume queues |
//! | [`txn_table`] | pending half messages |
//! | [`replication`] | slaves and their confirmed offsets (master); where the master is (slave) |

pub mod delay;
pub mod filter_bits;
pub mod replication;
pub mod timer_state;
pub mod txn_table;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::clients::ClientRegistry;
use crate::config::BrokerConfig;
use crate::long_poll::PullHold;
use crate::meta::{ConsumerOffsets, MetaError, TopicConfig, TopicTable};
use crate::namesrv::route_table::AUTO_CREATE_TOPIC;
use crate::namesrv::NameServer;
use crate::protocol::headers::notify_consumer_ids_changed;
use crate::protocol::route::{RegisterBrokerBody, TopicConfigData};
use crate::protocol::{request, response, RemotingCommand};
use crate::queue_locks::QueueLocks;
use crate::store::{MessageStore, StoreError};

pub use delay::{DelayLevels, ScheduleState};
pub use filter_bits::FilterBits;
pub use replication::Replication;
pub use timer_state::TimerState;
pub use txn_table::TxnTable;

/// Topics the broker uses internally; clients may not write them directly.
pub fn is_system_topic(topic: &str) -> bool {
    topic == delay::SCHEDULE_TOPIC
        || topic == AUTO_CREATE_TOPIC
        || topic.starts_with("rmq_sys_")
        || topic.starts_with("RMQ_SYS_")
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Plugin(#[from] crate::plugin::PluginError),
    #[error(transparent)]
    Quota(#[from] crate::flow::QuotaError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Broker {
    pub config: BrokerConfig,
    pub store: Arc<MessageStore>,
    pub topics: TopicTable,
    pub offsets: ConsumerOffsets,
    pub clients: ClientRegistry,
    pub hold: Arc<PullHold>,
    pub locks: QueueLocks,
    /// Address stored in records and message ids (what clients dial).
    pub store_host: SocketAddr,
    /// The embedded NameServer, when this node runs one.
    pub namesrv: Option<Arc<NameServer>>,
    /// Wakes the registration task (a topic changed).
    pub register_now: tokio::sync::Notify,
    pub delay_levels: DelayLevels,
    pub schedule: ScheduleState,
    pub timer: TimerState,
    pub plugins: Arc<crate::plugin::Registry>,
    /// Match bits of plugin expressions, computed behind dispatch.
    pub filter_bits: Arc<FilterBits>,
    /// Pending half messages (transactions).
    pub transactions: TxnTable,
    /// Slaves and their confirmed offsets (master), or where the master is (slave).
    pub replication: Replication,
    /// Back-pressure, quotas and their rejection counters.
    pub flow: crate::flow::FlowControl,
}

impl Broker {
    /// Opens the store and metadata (crash recovery happens here).
    pub fn open(
        config: BrokerConfig,
        namesrv: Option<Arc<NameServer>>,
    ) -> Result<Arc<Broker>, BrokerError> {
        config.validate()?;
        let store_host = config.advertised();
        let store = Arc::new(MessageStore::open(config.store.clone(), store_host)?);
        let meta_dir = config.store.dir.join("config");
        std::fs::create_dir_all(&meta_dir).map_err(|e| StoreError::Io {
            path: meta_dir.clone(),
            source: e,
        })?;
        let topics = TopicTable::open(&meta_dir)?;
        if config.auto_create_topic && topics.get(AUTO_CREATE_TOPIC).is_none() {
            let mut t = TopicConfig::new(AUTO_CREATE_TOPIC, config.default_topic_queue_nums);
            t.perm |= crate::meta::topics::PERM_INHERIT;
            topics.upsert(t)?;
        }
        let offsets = ConsumerOffsets::open(&meta_dir)?;
        let schedule = ScheduleState::open(&meta_dir);
        let timer = TimerState::open(&meta_dir);
        let transactions = TxnTable::open(&meta_dir);
        let delay_levels = DelayLevels::parse(&config.message_delay_levels)
            .map_err(crate::config::ConfigError::Invalid)?;
        let hold = Arc::new(PullHold::default());
        let filter_bits = Arc::new(FilterBits::default());
        store.set_arrival_listener(Arc::new(crate::store::ArrivalListeners(vec![
            hold.clone(),
            filter_bits.clone(),
        ])));
        let plugins = Arc::new(crate::plugin::Registry::open(
            Some(&config.store.dir.join("plugins")),
            config.plugin_max_module_bytes,
        )?);
        if config.load_shipped_plugins {
            for (name, wasm) in crate::plugin::shipped::SHIPPED {
                plugins.ensure(name, wasm)?;
            }
        }
        let replication = Replication::new(&config);
        let flow = crate::flow::FlowControl::open(&config, &meta_dir)?;
        Ok(Arc::new(Broker {
            config,
            store,
            topics,
            offsets,
            clients: ClientRegistry::default(),
            hold,
            locks: QueueLocks::default(),
            store_host,
            namesrv,
            register_now: tokio::sync::Notify::new(),
            delay_levels,
            schedule,
            timer,
            plugins,
            filter_bits,
            transactions,
            replication,
            flow,
        }))
    }

    /// The topic's config for a send, creating it when auto-create is on.
    pub fn topic_for_write(&self, topic: &str) -> Result<Arc<TopicConfig>, (i32, String)> {
        if let Err(e) = crate::meta::topics::validate_topic_name(topic) {
            return Err((response::MESSAGE_ILLEGAL, e.to_string()));
        }
        let t = match self.topics.get(topic) {
            Some(t) => t,
            // Retry and dead-letter topics are always created on demand (RocketMQ's rule).
            None if (self.config.auto_create_topic
                || crate::namesrv::route_table::is_group_topic(topic))
                && topic != AUTO_CREATE_TOPIC =>
            {
                let queues = if crate::namesrv::route_table::is_group_topic(topic) {
                    1
                } else {
                    self.config.default_topic_queue_nums
                };
                let t = self
                    .topics
                    .get_or_create(topic, queues)
                    .map_err(|e| (response::SYSTEM_ERROR, e.to_string()))?;
                tracing::info!(topic, queues = t.write_queue_nums, "topic auto-created");
                self.topics_changed();
                t
            }
            None => {
                return Err((
                    response::TOPIC_NOT_EXIST,
                    format!("topic[{topic}] not exist, apply first please!"),
                ))
            }
        };
        if !t.writable() {
            return Err((
                response::NO_PERMISSION,
                format!("the topic[{topic}] sending message is forbidden"),
            ));
        }
        Ok(t)
    }

    /// Tells NameServers about a topic change now rather than at the next heartbeat.
    pub fn topics_changed(&self) {
        self.register_now.notify_one();
    }

    pub fn notify_consumer_ids_changed(&self, group: &str) {
        for conn in self.clients.consumer_connections(group) {
            let cmd = RemotingCommand::new_request(
                request::NOTIFY_CONSUMER_IDS_CHANGED,
                notify_consumer_ids_changed(group),
            );
            if let Err(e) = conn.send_oneway(cmd) {
                tracing::debug!(group, error = %e, "could not notify a consumer");
            }
        }
    }

    /// What this broker tells NameServers about itself.
    pub fn registration(&self) -> RegisterBrokerBody {
        RegisterBrokerBody {
            cluster: self.config.cluster_name.clone(),
            broker_name: self.config.broker_name.clone(),
            broker_addr: self.store_host.to_string(),
            broker_id: self.config.broker_id,
            ha_server_addr: Some(self.config.ha_advertised().to_string()),
            topics: self
                .topics
                .all()
                .iter()
                .map(|t| {
                    (
                        t.topic_name.clone(),
                        TopicConfigData {
                            read_queue_nums: t.read_queue_nums as i32,
                            write_queue_nums: t.write_queue_nums as i32,
                            perm: t.perm as i32,
                            topic_sys_flag: t.topic_sys_flag as i32,
                        },
                    )
                })
                .collect(),
        }
    }
}
