//! Wiring: [`run`] starts a node (the broker listener and, by default, an embedded NameServer),
//! spawns the background services (delay levels, timer, transaction checks, filter bits,
//! NameServer registration, client expiry, offset persistence) and shuts it all down cleanly.
//! The shared state is `crate::context::Broker`; requests are routed by
//! `crate::processor::BrokerHandler`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::BrokerConfig;
pub use crate::context::{Broker, BrokerError};
use crate::namesrv::{NameServer, NameServerHandler};
use crate::net::NetConfig;
use crate::processor::BrokerHandler;
use crate::registration::NameServerLinks;

/// Background housekeeping until shutdown: NameServer registration, client expiry, offset
/// persistence.
async fn tasks(b: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let register_every = Duration::from_millis(b.config.register_interval_ms);
    let mut links = NameServerLinks::new(&b.config.namesrv_addrs, register_every);
    let mut register = tokio::time::interval(register_every);
    let mut sweep = tokio::time::interval(Duration::from_secs(10));
    let mut persist =
        tokio::time::interval(Duration::from_millis(b.config.offset_persist_interval_ms));
    let expiry = Duration::from_millis(b.config.client_expiry_ms);
    loop {
        let retry = links.next_retry();
        tokio::select! {
            _ = until_true(&mut shutdown) => break,
            _ = register.tick() => links.register_all(&b).await,
            _ = b.register_now.notified() => links.register_all(&b).await,
            _ = sleep_until(retry), if retry.is_some() => links.register_all(&b).await,
            _ = sweep.tick() => {
                for g in b.clients.sweep(None, expiry) {
                    b.notify_consumer_ids_changed(&g);
                }
                if let Some(ns) = &b.namesrv {
                    ns.expire();
                }
            }
            _ = persist.tick() => {
                if let Err(e) = b.offsets.persist_if_dirty() {
                    tracing::error!(error = %e, "persisting consumer offsets failed");
                }
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await
    }
}

/// Flushes and closes everything (after the listeners stopped).
fn close(b: &Broker) -> Result<(), BrokerError> {
    b.offsets.persist_if_dirty()?;
    crate::transaction::check::persist(b);
    b.store.shutdown()?;
    Ok(())
}

/// Resolves once the flag is true (or its sender is gone).
async fn until_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Transport settings of the broker listener: the per-connection bounds from the config
/// (`flow_control = false` lifts the in-flight, inline-burst and queued-bytes bounds, not the
/// stall timeout).
fn broker_net_config(c: &BrokerConfig) -> NetConfig {
    let mut net = NetConfig {
        max_inflight_per_connection: c.max_inflight_per_connection,
        max_queued_response_bytes: c.max_queued_response_bytes,
        write_stall_timeout: Some(Duration::from_millis(c.write_stall_timeout_ms)),
        ..NetConfig::default()
    };
    if !c.flow_control {
        net.max_inflight_per_connection = usize::MAX;
        net.inline_burst = usize::MAX;
        net.max_queued_response_bytes = usize::MAX;
    }
    net
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
    let ha_listener = if config.broker_role.is_slave() {
        None
    } else {
        Some(bind(config.ha_listen_addr()).await?)
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
        broker_net_config(&broker.config),
        stop_rx.clone(),
    )));
    let tasks = tokio::spawn(self::tasks(broker.clone(), stop_rx.clone()));
    let mut schedulers = Vec::new();
    match ha_listener {
        Some(l) => {
            tracing::info!(addr = %broker.config.ha_listen_addr(), role = broker.config.broker_role.as_str(), "HA listening for slaves");
            schedulers.push(tokio::spawn(crate::ha::master::serve(
                broker.clone(),
                l,
                stop_rx.clone(),
            )));
        }
        None => {
            schedulers.push(tokio::spawn(crate::ha::slave::run(
                broker.clone(),
                stop_rx.clone(),
            )));
            schedulers.push(tokio::spawn(crate::replica_meta::run(
                broker.clone(),
                stop_rx.clone(),
            )));
        }
    }
    // Only a master delivers delayed and timed messages and checks transactions.
    let master = !broker.replication.is_slave();
    if master {
        schedulers.push(tokio::spawn(crate::timer::run(
            broker.clone(),
            stop_rx.clone(),
        )));
        schedulers.push(tokio::spawn(crate::transaction::check::run(
            broker.clone(),
            stop_rx.clone(),
        )));
    }
    for level in (1..=broker.delay_levels.count()).filter(|_| master) {
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
    close(&broker)?;
    tracing::info!("broker stopped cleanly");
    Ok(())
}
