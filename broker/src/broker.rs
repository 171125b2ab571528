//! The broker: owns the store, metadata and client registry, routes each request to its
//! processor, and runs the background tasks (NameServer registration, client expiry, offset
//! persistence). [`run`] starts a node: the broker listener and, by default, an embedded
//! NameServer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clients::ClientRegistry;
use crate::config::BrokerConfig;
use crate::long_poll::PullHold;
use crate::meta::{ConsumerOffsets, MetaError, TopicConfig, TopicTable};
use crate::namesrv::route_table::AUTO_CREATE_TOPIC;
use crate::namesrv::{NameServer, NameServerHandler};
use crate::net::{Connection, HandlerFuture, NetConfig, RemotingClient, RequestHandler};
use crate::processor::{admin, consumer, end_transaction, pull, query, send, send_back, txn_admin};
use crate::protocol::headers::notify_consumer_ids_changed;
use crate::protocol::route::{RegisterBrokerBody, TopicConfigData};
use crate::protocol::{request, response, RemotingCommand};
use crate::queue_locks::QueueLocks;
use crate::schedule::{DelayLevels, ScheduleState};
use crate::store::{MessageStore, StoreError};

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
    namesrv: Option<Arc<NameServer>>,
    register_now: tokio::sync::Notify,
    pub delay_levels: DelayLevels,
    pub schedule: ScheduleState,
    pub timer: crate::timer::TimerState,
    pub plugins: Arc<crate::plugin::Registry>,
    /// Match bits of plugin expressions, computed behind dispatch.
    pub filter_bits: Arc<crate::filter_bits::FilterBits>,
    /// Pending half messages (transactions).
    pub transactions: crate::transaction::TxnTable,
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
        let timer = crate::timer::TimerState::open(&meta_dir);
        let transactions = crate::transaction::TxnTable::open(&meta_dir);
        let delay_levels = DelayLevels::parse(&config.message_delay_levels)
            .map_err(crate::config::ConfigError::Invalid)?;
        let hold = Arc::new(PullHold::default());
        let filter_bits = Arc::new(crate::filter_bits::FilterBits::default());
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

    fn registration(&self) -> RegisterBrokerBody {
        RegisterBrokerBody {
            cluster: self.config.cluster_name.clone(),
            broker_name: self.config.broker_name.clone(),
            broker_addr: self.store_host.to_string(),
            broker_id: 0,
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

    async fn register_all(&self, clients: &mut [(String, Option<RemotingClient>)]) {
        let body = self.registration();
        if let Some(ns) = &self.namesrv {
            ns.register(&body);
        }
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        for (addr, client) in clients.iter_mut() {
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                *client = RemotingClient::connect(addr.as_str()).await.ok();
            }
            let Some(c) = client else {
                tracing::warn!(namesrv = %addr, "cannot reach NameServer");
                continue;
            };
            let req = RemotingCommand::new_request(request::REGISTER_BROKER, Default::default())
                .with_body(bytes.clone());
            match c.invoke(req, Duration::from_secs(3)).await {
                Ok(r) if r.code == response::SUCCESS => {}
                Ok(r) => {
                    tracing::warn!(namesrv = %addr, code = r.code, remark = ?r.remark, "registration refused")
                }
                Err(e) => {
                    tracing::warn!(namesrv = %addr, error = %e, "registration failed");
                    *client = None;
                }
            }
        }
    }

    /// Background work until shutdown.
    async fn tasks(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut ns_clients: Vec<(String, Option<RemotingClient>)> = self
            .config
            .namesrv_addrs
            .iter()
            .map(|a| (a.clone(), None))
            .collect();
        let register_every = Duration::from_millis(self.config.register_interval_ms);
        let mut register = tokio::time::interval(register_every);
        let mut sweep = tokio::time::interval(Duration::from_secs(10));
        let mut persist = tokio::time::interval(Duration::from_millis(
            self.config.offset_persist_interval_ms,
        ));
        let expiry = Duration::from_millis(self.config.client_expiry_ms);
        loop {
            tokio::select! {
                _ = until_true(&mut shutdown) => break,
                _ = register.tick() => self.register_all(&mut ns_clients).await,
                _ = self.register_now.notified() => self.register_all(&mut ns_clients).await,
                _ = sweep.tick() => {
                    for g in self.clients.sweep(None, expiry) {
                        self.notify_consumer_ids_changed(&g);
                    }
                    if let Some(ns) = &self.namesrv {
                        ns.expire();
                    }
                }
                _ = persist.tick() => {
                    if let Err(e) = self.offsets.persist_if_dirty() {
                        tracing::error!(error = %e, "persisting consumer offsets failed");
                    }
                }
            }
        }
    }

    /// Flushes and closes everything (after the listeners stopped).
    pub fn shutdown(&self) -> Result<(), BrokerError> {
        self.offsets.persist_if_dirty()?;
        crate::transaction::check::persist(self);
        self.store.shutdown()?;
        Ok(())
    }
}

/// The broker as a remoting request handler.
pub struct BrokerHandler(pub Arc<Broker>);

impl RequestHandler for BrokerHandler {
    fn handle(&self, conn: Arc<Connection>, req: RemotingCommand) -> HandlerFuture<'_> {
        Box::pin(async move {
            let b = &*self.0;
            let resp = match req.code {
                request::SEND_MESSAGE
                | request::SEND_MESSAGE_V2
                | request::SEND_BATCH_MESSAGE
                | request::SEND_REPLY_MESSAGE
                | request::SEND_REPLY_MESSAGE_V2 => send::send(b, &conn, &req).await,
                request::PULL_MESSAGE => pull::pull(b, &req).await,
                request::END_TRANSACTION => end_transaction::end_transaction(b, &req).await?,
                request::TXN_LIST | request::TXN_RESOLVE => txn_admin::handle(b, &req).await,
                request::CONSUMER_SEND_MSG_BACK => send_back::send_back(b, &conn, &req).await,
                request::HEART_BEAT => consumer::heartbeat(b, &conn, &req),
                request::UNREGISTER_CLIENT => consumer::unregister(b, &req),
                request::GET_CONSUMER_LIST_BY_GROUP => consumer::consumer_list(b, &req),
                request::QUERY_CONSUMER_OFFSET => consumer::query_offset(b, &req),
                request::UPDATE_CONSUMER_OFFSET => consumer::update_offset(b, &req),
                request::LOCK_BATCH_MQ => consumer::lock(b, &req),
                request::UNLOCK_BATCH_MQ => consumer::unlock(b, &req),
                request::CHECK_CLIENT_CONFIG => consumer::check_client_config(b, &req),
                request::GET_MAX_OFFSET => query::max_offset(b, &req),
                request::GET_MIN_OFFSET => query::min_offset(b, &req),
                request::GET_EARLIEST_MSG_STORETIME => query::earliest_store_time(b, &req),
                request::SEARCH_OFFSET_BY_TIMESTAMP => query::search_offset(b, &req),
                request::VIEW_MESSAGE_BY_ID => query::view_by_id(b, &req),
                request::QUERY_MESSAGE => query::query_message(b, &req),
                request::UPDATE_AND_CREATE_TOPIC => admin::create_topic(b, &req),
                request::DELETE_TOPIC_IN_BROKER => admin::delete_topic(b, &req),
                request::GET_ALL_TOPIC_CONFIG => admin::all_topic_config(b, &req),
                request::INVOKE_BROKER_TO_RESET_OFFSET => admin::reset_offset(b, &req),
                request::PLUGIN_LOAD
                | request::PLUGIN_UPGRADE
                | request::PLUGIN_UNLOAD
                | request::PLUGIN_LIST
                | request::PLUGIN_TEST
                | request::PLUGIN_BIND
                | request::PLUGIN_UNBIND
                | request::PLUGIN_BINDINGS => {
                    // Loading compiles a module (milliseconds to seconds): off the reactor.
                    let b2 = self.0.clone();
                    let r2 = req.clone();
                    match tokio::task::spawn_blocking(move || {
                        crate::processor::plugin_admin::handle(&b2, &r2)
                    })
                    .await
                    {
                        Ok(r) => r,
                        Err(e) => RemotingCommand::response_to(
                            &req,
                            response::SYSTEM_ERROR,
                            Some(format!("plugin request failed: {e}")),
                        ),
                    }
                }
                // One process answers NameServer requests on the broker port too, so a client
                // pointed at either address works.
                request::GET_ROUTEINFO_BY_TOPIC
                | request::GET_BROKER_CLUSTER_INFO
                | request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER
                | request::GET_KV_CONFIG
                    if b.namesrv.is_some() =>
                {
                    let ns = NameServerHandler(b.namesrv.clone().expect("checked"));
                    return ns.handle(conn, req).await;
                }
                _ => RemotingCommand::not_supported(&req),
            };
            Some(resp)
        })
    }

    fn on_disconnect(&self, conn: &Arc<Connection>) {
        let b = &self.0;
        let expiry = Duration::from_millis(b.config.client_expiry_ms);
        for g in b.clients.sweep(Some(conn.id()), expiry) {
            tracing::info!(group = %g, "consumer connection closed");
            b.notify_consumer_ids_changed(&g);
        }
    }
}

/// Resolves once the flag is true (or its sender is gone).
async fn until_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, BrokerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BrokerError::Bind { addr, source })
}

/// Runs a node until `shutdown` turns true: the broker, and the embedded NameServer unless it is
/// disabled. Returns after a clean shutdown (listeners stopped, offsets and store flushed).
pub async fn run(
    config: BrokerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), BrokerError> {
    let namesrv = config
        .namesrv_listen
        .map(|_| Arc::new(NameServer::default()));
    let broker_listener = bind(config.listen).await?;
    let ns_listener = match config.namesrv_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let broker = Broker::open(config, namesrv.clone())?;
    // Pending transactions are rebuilt from the half and op topics before any request.
    if !broker.store.wait_dispatched(Duration::from_secs(120)).await {
        tracing::warn!("dispatch did not catch up within 120 s; rebuilding transactions anyway");
    }
    let pending = broker
        .transactions
        .recover(&broker.store, broker.config.transaction_timeout_ms);
    if pending > 0 {
        tracing::info!(
            pending,
            "pending transactions restored; they will be checked"
        );
    }
    // The embedded NameServer knows this broker before either port answers, so a client that
    // can connect also finds a route.
    if let Some(ns) = &broker.namesrv {
        ns.register(&broker.registration());
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = Vec::new();
    if let (Some(l), Some(ns)) = (ns_listener, namesrv) {
        tracing::info!(addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "NameServer listening");
        servers.push(tokio::spawn(crate::net::serve(
            l,
            Arc::new(NameServerHandler(ns)),
            NetConfig::default(),
            stop_rx.clone(),
        )));
    }
    tracing::info!(addr = %broker.config.listen, broker = %broker.config.broker_name,
        flush = ?broker.config.store.flush_mode, "broker listening");
    servers.push(tokio::spawn(crate::net::serve(
        broker_listener,
        Arc::new(BrokerHandler(broker.clone())),
        NetConfig::default(),
        stop_rx.clone(),
    )));
    let tasks = tokio::spawn(broker.clone().tasks(stop_rx.clone()));
    let mut schedulers = vec![
        tokio::spawn(crate::timer::run(broker.clone(), stop_rx.clone())),
        tokio::spawn(crate::transaction::check::run(
            broker.clone(),
            stop_rx.clone(),
        )),
    ];
    for level in 1..=broker.delay_levels.count() {
        let delay = broker.delay_levels.delay(level).unwrap_or_default();
        schedulers.push(tokio::spawn(crate::schedule::run_level(
            broker.clone(),
            level,
            delay,
            stop_rx.clone(),
        )));
    }
    let bits_thread = {
        let b = broker.clone();
        std::thread::Builder::new()
            .name("filter-bits".into())
            .spawn(move || crate::filter_bits::run(b))
            .ok()
    };
    until_true(&mut shutdown).await;
    tracing::info!("shutting down: closing listeners");
    broker.filter_bits.stop();
    if let Some(t) = bits_thread {
        let _ = t.join();
    }
    let _ = stop_tx.send(true);
    for s in servers {
        let _ = s.await;
    }
    let _ = tasks.await;
    for s in schedulers {
        let _ = s.await;
    }
    broker.shutdown()?;
    tracing::info!("broker stopped cleanly");
    Ok(())
}
