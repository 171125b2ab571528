//! `wasmq-broker`: a broker node, with an embedded NameServer unless told otherwise.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use wasmq::config::{BrokerConfig, BrokerRole};
use wasmq::store::FlushMode;

#[derive(Parser, Debug)]
#[command(
    name = "wasmq-broker",
    version,
    about = "wasmq broker (RocketMQ-compatible), single node by default"
)]
struct Args {
    /// Config file (TOML with [broker] and [store] tables). Default: conf/broker.toml if present.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Broker listen address.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Address clients are told to dial (defaults to --listen).
    #[arg(long)]
    advertise: Option<SocketAddr>,
    /// Embedded NameServer address, or `off`.
    #[arg(long)]
    namesrv_listen: Option<String>,
    /// External NameServers to register with: ADDR[;ADDR...]
    #[arg(long)]
    namesrv: Option<String>,
    /// Store directory (default ./data/store, or $WASMQ_HOME/store).
    #[arg(long)]
    store_dir: Option<PathBuf>,
    /// Flush mode (when a send is acknowledged relative to fdatasync).
    #[arg(long, value_enum)]
    flush: Option<FlushMode>,
    #[arg(long)]
    broker_name: Option<String>,
    /// Commit log segment size in bytes (tests use small segments).
    #[arg(long)]
    segment_size: Option<u64>,
    /// 0 = master; ids above 0 are slaves of the same broker name.
    #[arg(long)]
    broker_id: Option<i64>,
    /// The broker's part in its group.
    #[arg(long, value_enum)]
    role: Option<BrokerRole>,
    /// Where a master listens for slaves (default: the broker port + 1).
    #[arg(long)]
    ha_listen: Option<SocketAddr>,
    /// A slave's master HA address (default: learned from the NameServer).
    #[arg(long)]
    ha_master_addr: Option<String>,
    /// Copies (master included) a sync_master needs before SEND_OK.
    #[arg(long)]
    in_sync_replicas: Option<u32>,
    /// How long a sync_master waits for slaves to confirm a send (ms).
    #[arg(long)]
    slave_timeout_ms: Option<u64>,
    /// The master sends lagging consumers to read from slave 1.
    #[arg(long)]
    slave_read_enable: bool,
}

fn config(args: &Args) -> anyhow::Result<BrokerConfig> {
    let default_file = PathBuf::from("conf/broker.toml");
    let mut cfg = match &args.config {
        Some(p) => BrokerConfig::load(p)?,
        None if default_file.exists() => BrokerConfig::load(&default_file)?,
        None => BrokerConfig::default(),
    };
    if let Some(home) = std::env::var_os("WASMQ_HOME") {
        cfg.store.dir = PathBuf::from(home).join("store");
    }
    if let Some(a) = args.listen {
        cfg.listen = a;
    }
    if let Some(a) = args.advertise {
        cfg.advertised_addr = Some(a);
    }
    if let Some(ns) = &args.namesrv_listen {
        cfg.namesrv_listen = if ns == "off" {
            None
        } else {
            Some(
                ns.parse()
                    .with_context(|| format!("--namesrv-listen {ns:?}"))?,
            )
        };
    }
    if let Some(ns) = &args.namesrv {
        cfg.namesrv_addrs = ns
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
    }
    if let Some(d) = &args.store_dir {
        cfg.store.dir = d.clone();
    }
    if let Some(f) = args.flush {
        cfg.store.flush_mode = f;
    }
    if let Some(n) = &args.broker_name {
        cfg.broker_name = n.clone();
    }
    if let Some(s) = args.segment_size {
        cfg.store.commit_log_segment_size = s;
        cfg.store.max_message_size = cfg.store.max_message_size.min((s / 2) as usize);
    }
    if let Some(id) = args.broker_id {
        cfg.broker_id = id;
    }
    if let Some(r) = args.role {
        cfg.broker_role = r;
    }
    if let Some(a) = args.ha_listen {
        cfg.ha_listen = Some(a);
    }
    if let Some(a) = &args.ha_master_addr {
        cfg.ha_master_addr = Some(a.clone());
    }
    if let Some(n) = args.in_sync_replicas {
        cfg.in_sync_replicas = n;
    }
    if let Some(ms) = args.slave_timeout_ms {
        cfg.slave_timeout_ms = ms;
    }
    if args.slave_read_enable {
        cfg.slave_read_enable = true;
    }
    cfg.validate()?;
    Ok(cfg)
}

fn main() -> anyhow::Result<()> {
    wasmq::logging::init();
    let args = Args::parse();
    let cfg = config(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wasmq-worker")
        .build()?;
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot watch SIGTERM");
                        return;
                    }
                };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
            }
            let _ = tx.send(true);
        });
        wasmq::broker::run(cfg, rx).await
    })?;
    Ok(())
}
