//! Broker configuration: `conf/broker.toml`, overridden by command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::StoreConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Broker settings (`[broker]`), with the store's (`[store]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Address the broker listens on (default `127.0.0.1:10911`).
    pub listen: SocketAddr,
    /// Address published in routes and stored in message ids; defaults to `listen`.
    pub advertised_addr: Option<SocketAddr>,
    /// Embedded NameServer address (default `127.0.0.1:9876`); `None` disables it.
    pub namesrv_listen: Option<SocketAddr>,
    /// External NameServers to register with (`host:port`).
    pub namesrv_addrs: Vec<String>,
    pub broker_name: String,
    pub cluster_name: String,
    /// Create a topic on first route request or send when it does not exist (default true).
    pub auto_create_topic: bool,
    /// Queues of an auto-created topic (default 4).
    pub default_topic_queue_nums: u32,
    /// How long a held pull waits at most, whatever the client asks (default 30 s).
    pub max_long_poll_ms: u64,
    /// Heartbeat to external NameServers every this many ms (default 30 s).
    pub register_interval_ms: u64,
    /// A client silent for this long is dropped from its groups (default 120 s).
    pub client_expiry_ms: u64,
    /// Consumer offsets are written to disk this often (default 5 s).
    pub offset_persist_interval_ms: u64,
    /// Delay of each level, level 1 first (RocketMQ's `messageDelayLevel`).
    pub message_delay_levels: String,
    /// Reconsume attempts before a message goes to `%DLQ%<group>` when the client does not say
    /// (default 16).
    pub max_reconsume_times: i32,
    /// Timed messages (`TIMER_DELIVER_MS`, `TIMER_DELAY_SEC`, ...) may be at most this far
    /// ahead (default 3 days, RocketMQ's `timerMaxDelaySec`); later ones are refused.
    pub timer_max_delay_secs: u64,
    /// Load the shipped filter plugins (`tag-filter`, `sql92-filter`) at start when the
    /// registry has no plugin of that name (default true).
    pub load_shipped_plugins: bool,
    /// Largest plugin module accepted by `plugin load` / `upgrade` (default 16 MiB).
    pub plugin_max_module_bytes: usize,
    /// A half message unresolved this long after it was stored is checked (default 6 s,
    /// RocketMQ's `transactionTimeOut`; its `CHECK_IMMUNITY_TIME_IN_SECONDS` can lengthen it).
    pub transaction_timeout_ms: u64,
    /// Time between two checks of the same half message (default 30 s).
    pub transaction_check_interval_ms: u64,
    /// Checks of one half message before the final action (default 15).
    pub transaction_check_max: u32,
    /// What happens after the last check: `discard` (default) or `keep` for an operator.
    pub transaction_final_action: FinalAction,
    /// 0 = the master of its broker group; ids above 0 are slaves (RocketMQ's `brokerId`).
    pub broker_id: i64,
    /// `async_master` (default), `sync_master` or `slave`.
    pub broker_role: BrokerRole,
    /// Where the master listens for slaves (default: the broker port + 1).
    pub ha_listen: Option<SocketAddr>,
    /// A slave's master HA address; otherwise learned from the NameServer's registration reply.
    pub ha_master_addr: Option<String>,
    /// Copies (master included) that must hold a message before a `sync_master` answers
    /// SEND_OK (default 2).
    pub in_sync_replicas: u32,
    /// How long a `sync_master` waits for slaves to confirm a send (default 3 s).
    pub slave_timeout_ms: u64,
    /// A slave further behind than this does not count as in sync (default 256 MiB).
    pub ha_max_gap_bytes: u64,
    /// The master tells consumers that lag far behind to read from slave 1 (default false).
    pub slave_read_enable: bool,
    /// Flow control on (default); off for benchmarks that compare both.
    pub flow_control: bool,
    /// A send that waited longer than this before being processed is answered SYSTEM_BUSY
    /// (`[TIMEOUT_CLEAN_QUEUE]`, default 200 ms).
    pub wait_time_ms_in_send_queue: u64,
    /// A send that finds the commit log's append lock held longer than this is answered
    /// SYSTEM_BUSY (`[PC_SYNCHRONIZED]`, default 1000 ms).
    pub os_page_cache_busy_timeout_ms: u64,
    /// Long polls held at once; beyond it pulls are answered at once (default 100 000).
    pub max_held_pulls: usize,
    /// Most messages one pull returns, whatever the client asks (default 1024; clients ask 32
    /// unless told otherwise; RocketMQ's `maxTransferCountOnMessageInMemory` is 32).
    pub pull_max_msgs: usize,
    /// Most bytes of records one pull returns, whatever the client asks (default 4 MiB; a pull
    /// that does not say gets 256 KiB, RocketMQ's `maxTransferBytesOnMessageInMemory`). The
    /// first message is returned whatever its size, so no message is ever too big to consume.
    pub pull_max_bytes: usize,
    /// Requests of one connection handled at once, held long polls included; more wait in the
    /// socket (TCP back-pressure). Default 4096: a client process holds one pull per queue it
    /// consumes on this broker over one connection, so the bound sits well above that.
    pub max_inflight_per_connection: usize,
    /// Bytes of responses queued for one peer and not yet written; past it responses wait for
    /// the peer to read (default 64 MiB).
    pub max_queued_response_bytes: usize,
    /// A peer that accepts no byte of its pending responses for this long is disconnected
    /// (default 10 s).
    pub write_stall_timeout_ms: u64,
    /// Quotas per topic or consumer group (`[[quota]]` tables at the top level of the file).
    #[serde(skip)]
    pub quota: Vec<QuotaConfig>,
    pub store: StoreConfig,
}

/// One configured quota (`[[quota]]`): `topic` or `group`, and its rates.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub msgs_per_sec: Option<u64>,
    #[serde(default)]
    pub bytes_per_sec: Option<u64>,
}

/// The part a broker plays in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum BrokerRole {
    /// Answers a send once stored locally; slaves follow asynchronously.
    AsyncMaster,
    /// Answers SEND_OK once `in_sync_replicas` copies hold the message.
    SyncMaster,
    /// Replicates from its master; serves reads, refuses writes.
    Slave,
}

impl BrokerRole {
    pub fn is_slave(self) -> bool {
        self == BrokerRole::Slave
    }
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerRole::AsyncMaster => "async_master",
            BrokerRole::SyncMaster => "sync_master",
            BrokerRole::Slave => "slave",
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: "127.0.0.1:10911".parse().expect("literal address"),
            advertised_addr: None,
            namesrv_listen: Some("127.0.0.1:9876".parse().expect("literal address")),
            namesrv_addrs: Vec::new(),
            broker_name: "broker-a".into(),
            cluster_name: "DefaultCluster".into(),
            auto_create_topic: true,
            default_topic_queue_nums: 4,
            max_long_poll_ms: 30_000,
            register_interval_ms: 30_000,
            client_expiry_ms: 120_000,
            offset_persist_interval_ms: 5_000,
            message_delay_levels: "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
                .into(),
            max_reconsume_times: 16,
            timer_max_delay_secs: 3 * 24 * 3600,
            load_shipped_plugins: true,
            plugin_max_module_bytes: crate::plugin::registry::DEFAULT_MAX_MODULE_BYTES,
            transaction_timeout_ms: 6_000,
            transaction_check_interval_ms: 30_000,
            transaction_check_max: 15,
            transaction_final_action: FinalAction::Discard,
            broker_id: 0,
            broker_role: BrokerRole::AsyncMaster,
            ha_listen: None,
            ha_master_addr: None,
            in_sync_replicas: 2,
            slave_timeout_ms: 3_000,
            ha_max_gap_bytes: 256 << 20,
            slave_read_enable: false,
            flow_control: true,
            wait_time_ms_in_send_queue: 200,
            os_page_cache_busy_timeout_ms: 1000,
            max_held_pulls: 100_000,
            pull_max_msgs: 1024,
            pull_max_bytes: 4 << 20,
            max_inflight_per_connection: 4096,
            max_queued_response_bytes: 64 << 20,
            write_stall_timeout_ms: 10_000,
            quota: Vec::new(),
            store: StoreConfig::default(),
        }
    }
}

impl BrokerConfig {
    pub fn load(path: &Path) -> Result<BrokerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parses a config file's text: `[broker]` and `[store]` tables.
    pub fn parse(text: &str) -> Result<BrokerConfig, toml::de::Error> {
        #[derive(Deserialize, Default)]
        #[serde(default, deny_unknown_fields)]
        struct File {
            broker: Option<toml::Table>,
            store: Option<StoreConfig>,
            quota: Vec<QuotaConfig>,
        }
        let f: File = toml::from_str(text)?;
        let mut cfg: BrokerConfig = match f.broker {
            Some(t) => t.try_into()?,
            None => BrokerConfig::default(),
        };
        if let Some(s) = f.store {
            cfg.store = s;
        }
        cfg.quota = f.quota;
        Ok(cfg)
    }

    pub fn advertised(&self) -> SocketAddr {
        self.advertised_addr.unwrap_or(self.listen)
    }

    /// The HA listen address: `ha_listen`, or the broker port + 1.
    pub fn ha_listen_addr(&self) -> SocketAddr {
        self.ha_listen.unwrap_or_else(|| {
            let mut a = self.listen;
            a.set_port(self.listen.port().wrapping_add(1));
            a
        })
    }

    /// The HA address slaves are told to dial (the advertised host, the HA port).
    pub fn ha_advertised(&self) -> SocketAddr {
        let ha = self.ha_listen_addr();
        if ha.ip().is_unspecified() {
            SocketAddr::new(self.advertised().ip(), ha.port())
        } else {
            ha
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.store
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if self.broker_name.is_empty() || self.cluster_name.is_empty() {
            return Err(ConfigError::Invalid(
                "broker_name and cluster_name must not be empty".into(),
            ));
        }
        if !(1..=1024).contains(&self.default_topic_queue_nums) {
            return Err(ConfigError::Invalid(
                "default_topic_queue_nums must be within 1..=1024".into(),
            ));
        }
        DelayLevels::parse(&self.message_delay_levels)
            .map_err(|e| ConfigError::Invalid(format!("message_delay_levels: {e}")))?;
        if self.transaction_timeout_ms == 0
            || self.transaction_check_interval_ms < 100
            || self.transaction_check_max == 0
        {
            return Err(ConfigError::Invalid(
                "transaction_timeout_ms must be > 0, transaction_check_interval_ms >= 100 and transaction_check_max >= 1".into(),
            ));
        }
        match (self.broker_role, self.broker_id) {
            (BrokerRole::Slave, id) if id <= 0 => {
                return Err(ConfigError::Invalid(format!(
                    "a slave needs broker_id > 0 (broker_id = {id}; 0 is the master)"
                )))
            }
            (BrokerRole::AsyncMaster | BrokerRole::SyncMaster, id) if id != 0 => {
                return Err(ConfigError::Invalid(format!(
                    "a master has broker_id 0 (broker_id = {id}); use broker_role = \"slave\" for ids above 0"
                )))
            }
            _ => {}
        }
        if self.in_sync_replicas == 0 || self.slave_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "in_sync_replicas must be >= 1 and slave_timeout_ms > 0".into(),
            ));
        }
        if let Some(a) = &self.ha_master_addr {
            if a.parse::<SocketAddr>().is_err() {
                return Err(ConfigError::Invalid(format!(
                    "ha_master_addr {a:?} is not HOST:PORT"
                )));
            }
        }
        if self.max_inflight_per_connection == 0
            || self.max_queued_response_bytes < 64 * 1024
            || self.write_stall_timeout_ms < 100
        {
            return Err(ConfigError::Invalid(
                "max_inflight_per_connection must be >= 1, max_queued_response_bytes >= 65536 and write_stall_timeout_ms >= 100".into(),
            ));
        }
        if self.wait_time_ms_in_send_queue == 0 || self.os_page_cache_busy_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "wait_time_ms_in_send_queue and os_page_cache_busy_timeout_ms must be positive (0 would refuse every send)".into(),
            ));
        }
        if !(1..=PULL_MAX_MSGS_LIMIT).contains(&self.pull_max_msgs) {
            return Err(ConfigError::Invalid(format!(
                "pull_max_msgs must be within 1..={PULL_MAX_MSGS_LIMIT} (pull_max_msgs = {})",
                self.pull_max_msgs
            )));
        }
        if !(1..=PULL_MAX_BYTES_LIMIT).contains(&self.pull_max_bytes) {
            return Err(ConfigError::Invalid(format!(
                "pull_max_bytes must be within 1..={PULL_MAX_BYTES_LIMIT}: a pull reply must fit a client's 16 MiB frame (pull_max_bytes = {})",
                self.pull_max_bytes
            )));
        }
        if self.advertised().ip().is_unspecified() {
            return Err(ConfigError::Invalid(
                "listening on an unspecified address needs advertised_addr (clients dial it)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Largest `pull_max_msgs` accepted.
pub const PULL_MAX_MSGS_LIMIT: usize = 65_536;
/// Largest `pull_max_bytes` accepted: a reply (header, and one record that may exceed the cap)
/// must stay below the 16 MiB frame RocketMQ clients accept.
pub const PULL_MAX_BYTES_LIMIT: usize = 15 << 20;

/// The configured delay of each level (level 1 is index 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayLevels(Vec<Duration>);

impl DelayLevels {
    /// Parses `"1s 5s 10s 30s 1m ... 2h"`: whitespace-separated durations as `humantime`
    /// reads them (`500ms`, `1s`, `1m`, `2h`, `1d`, ...), each with a unit.
    pub fn parse(s: &str) -> Result<DelayLevels, String> {
        let v = s
            .split_whitespace()
            .map(|tok| {
                humantime::parse_duration(tok).map_err(|e| format!("bad delay level {tok:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if v.is_empty() || v.len() > 64 {
            return Err("between 1 and 64 delay levels are needed".into());
        }
        Ok(DelayLevels(v))
    }

    pub fn count(&self) -> i32 {
        self.0.len() as i32
    }

    pub fn delay(&self, level: i32) -> Option<Duration> {
        (level >= 1)
            .then(|| self.0.get(level as usize - 1).copied())
            .flatten()
    }
}

/// What happens to a half message after the last allowed check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinalAction {
    /// Dropped (an op entry `discard` is written), as RocketMQ does.
    Discard,
    /// Left pending, no longer checked, for an operator (`wasmq txn commit|rollback`).
    Keep,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_parses() {
        let c = BrokerConfig::parse(include_str!("../../conf/broker.toml")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.listen, BrokerConfig::default().listen);
        assert!(BrokerConfig::parse("[broker]\nnope = 1").is_err());
        assert!(BrokerConfig::parse("[nope]").is_err());
    }

    #[test]
    fn flow_control_keys_are_checked() {
        let c = BrokerConfig::parse(
            "[broker]\npull_max_msgs = 32\npull_max_bytes = 262144\nwait_time_ms_in_send_queue = 10\n[store]\nmax_dirty_bytes = 1048576",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!((c.pull_max_msgs, c.pull_max_bytes), (32, 262_144));
        assert_eq!(c.wait_time_ms_in_send_queue, 10);
        assert_eq!(c.store.max_dirty_bytes, 1 << 20);
        for bad in [
            "pull_max_msgs = 0",
            "pull_max_msgs = 65537",
            "pull_max_bytes = 0",
            "pull_max_bytes = 16777216",
            "wait_time_ms_in_send_queue = 0",
            "os_page_cache_busy_timeout_ms = 0",
        ] {
            let c = BrokerConfig::parse(&format!("[broker]\n{bad}")).unwrap();
            assert!(c.validate().is_err(), "{bad} accepted");
        }
        assert!(BrokerConfig::parse("[broker]\npull_max_msgs = -1").is_err());
        let c = BrokerConfig::parse("[store]\nmax_dirty_bytes = 0").unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn levels_parse() {
        let l = DelayLevels::parse("1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h")
            .unwrap();
        assert_eq!(l.count(), 18);
        assert_eq!(l.delay(2), Some(Duration::from_secs(5)));
        assert_eq!(l.delay(5), Some(Duration::from_secs(60)));
        assert_eq!(l.delay(18), Some(Duration::from_secs(7200)));
        assert_eq!(l.delay(0), None);
        assert_eq!(l.delay(19), None);
        let l = DelayLevels::parse("250ms 1d").unwrap();
        assert_eq!(l.delay(1), Some(Duration::from_millis(250)));
        assert_eq!(l.delay(2), Some(Duration::from_secs(86_400)));
        assert!(DelayLevels::parse("1x").is_err());
        assert!(DelayLevels::parse("5").is_err(), "a unit is required");
        assert!(DelayLevels::parse("").is_err());
    }
}
