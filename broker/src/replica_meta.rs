//! A slave's copy of its master's metadata (issue 12). Every 10 s, and whenever the master's
//! address changes, a slave asks its master for HA_METADATA (`processor::replica_meta`) and
//! makes its own tables equal to it, so that it evaluates the same filter expressions and could
//! take the master's place:
//!
//! - topic configs: upserted, and those the master no longer has removed (the master's table
//!   wins, as RocketMQ's slave replaces its `topics.json`); a change re-registers the slave;
//! - consumer offsets: per queue the larger of the master's and the slave's. Consumers commit
//!   offsets on the slave while the master is down; those never go back;
//! - delay-level progress and the timer's delivered flags: the master's (only the master runs
//!   delay delivery, timer delivery and transaction checks; the slave keeps their progress so
//!   it could continue them);
//! - the plugin registry (name, version, module sha256, config) and the per-topic bindings:
//!   modules the slave lacks are fetched by sha256 (HA_PLUGIN_MODULE), then loaded, upgraded
//!   and unloaded through the registry's own operations, which persist as they do for an
//!   operator. Versions match because the registry numbers them: a plugin at version 3 on the
//!   master is loaded and upgraded twice.
//!
//! The master's remoting address is `MasterAddrs::addr` (from the NameServer). With only
//! `ha_master_addr` configured it is derived: the HA address's port minus 1, since the HA port
//! defaults to the broker port + 1 (`BrokerConfig::ha_listen_addr`). A master whose HA port is
//! configured otherwise must be learned from the NameServer.
//!
//! [`sync_once`] is one round; [`run`] repeats it. The diffing is pure ([`diff_topics`],
//! [`merge_offsets`], [`plan_plugins`], [`diff_bindings`]) and tested without a network.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::context::replication::MasterAddrs;
use crate::context::Broker;
use crate::meta::{MetaError, TopicConfig};
use crate::net::{NetConfig, NetError, RemotingClient};
use crate::plugin::{PluginError, PluginKind};
use crate::processor::replica_meta::{
    read_module, BindingMeta, MetadataSnapshot, PluginMeta, TimerProgress,
};
use crate::protocol::{request, response, ExtFields, RemotingCommand};
use crate::store::StoreError;

/// How often a slave copies its master's metadata.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
const MODULE_TIMEOUT: Duration = Duration::from_secs(30);
/// Timer entries flagged per lock hold while a slave catches up with the master's flags.
const TIMER_CHUNK: u64 = 1 << 16;

/// Why one round of the metadata copy failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaMetaError {
    #[error("master address {0:?} is not HOST:PORT")]
    BadAddress(String),
    #[error("cannot reach master {master}: {source}")]
    Connect { master: String, source: NetError },
    #[error("cannot reach master {master}: no connection within 3 s")]
    ConnectTimeout { master: String },
    #[error("master {master} did not answer {what}: {source}")]
    Request {
        master: String,
        what: &'static str,
        source: NetError,
    },
    #[error("master {master} refused {what} (code {code}): {remark}")]
    Refused {
        master: String,
        what: &'static str,
        code: i32,
        remark: String,
    },
    #[error("master {master} sent metadata that does not parse: {source}")]
    Decode {
        master: String,
        source: serde_json::Error,
    },
    #[error("{master} is broker {theirs:?}, this slave belongs to {ours:?}: nothing copied")]
    OtherGroup {
        master: String,
        theirs: String,
        ours: String,
    },
    #[error("master {master} sent module {expected} whose sha256 is {actual}")]
    ModuleMismatch {
        master: String,
        expected: String,
        actual: String,
    },
    #[error("metadata from master {master} applied with {} failure(s): {}", .failures.len(), join(.failures))]
    Apply {
        master: String,
        /// What was applied nonetheless.
        report: Box<SyncReport>,
        failures: Vec<ApplyFailure>,
    },
}

impl ReplicaMetaError {
    /// The master could not be reached (rather than answering something wrong).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ReplicaMetaError::Connect { .. }
                | ReplicaMetaError::ConnectTimeout { .. }
                | ReplicaMetaError::Request { .. }
        )
    }
}

fn join(f: &[ApplyFailure]) -> String {
    f.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One part of a snapshot the slave could not apply (the rest is applied; the next round
/// tries again).
#[derive(Debug, thiserror::Error)]
pub enum ApplyFailure {
    #[error("topic {topic}: {source}")]
    Topic { topic: String, source: MetaError },
    #[error("consumer offsets: {0}")]
    Offsets(MetaError),
    #[error("delay level {level}: {source}")]
    Delay { level: i32, source: StoreError },
    #[error("timer progress: {0}")]
    Timer(StoreError),
    #[error("plugin {name}: {source}")]
    Plugin { name: String, source: PluginError },
    #[error("{} binding of topic {topic} to {plugin}: {source}", .kind.as_str())]
    Binding {
        kind: PluginKind,
        topic: String,
        plugin: String,
        source: PluginError,
    },
    #[error("removing the {} binding of topic {topic}: {source}", .kind.as_str())]
    Unbind {
        kind: PluginKind,
        topic: String,
        source: PluginError,
    },
}

/// What one round changed on the slave.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    /// The snapshot's version equals the last one applied without failures: nothing done.
    pub unchanged: bool,
    pub topics_upserted: usize,
    pub topics_removed: usize,
    /// Queues whose offset moved forward to the master's.
    pub offsets_advanced: usize,
    pub delay_levels_changed: usize,
    /// Timer entries newly flagged delivered.
    pub timer_entries_marked: u64,
    pub modules_fetched: usize,
    pub plugins_loaded: usize,
    pub plugins_upgraded: usize,
    pub plugins_unloaded: usize,
    pub bindings_changed: usize,
}

impl SyncReport {
    /// Whether anything on the slave changed.
    pub fn changed(&self) -> bool {
        *self
            != SyncReport {
                unchanged: self.unchanged,
                ..SyncReport::default()
            }
    }
}

// ---- the pure part: what to change ----

/// Topic changes that make the slave's table equal to the master's.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TopicDiff {
    pub upsert: Vec<TopicConfig>,
    pub remove: Vec<String>,
}

pub fn diff_topics(
    slave: &BTreeMap<String, TopicConfig>,
    master: &BTreeMap<String, TopicConfig>,
) -> TopicDiff {
    TopicDiff {
        upsert: master
            .iter()
            .filter(|(name, t)| slave.get(*name) != Some(*t))
            .map(|(_, t)| t.clone())
            .collect(),
        remove: slave
            .keys()
            .filter(|name| !master.contains_key(*name))
            .cloned()
            .collect(),
    }
}

/// One queue's offset to raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetUpdate {
    pub group: String,
    pub topic: String,
    pub queue_id: i32,
    pub offset: i64,
}

/// The offsets (tables keyed `topic@group`) where the master is ahead of the slave: the merge
/// takes the larger per queue, so an offset never moves back, and groups or queues only the
/// slave knows stay as they are.
pub fn merge_offsets(
    slave: &BTreeMap<String, BTreeMap<i32, i64>>,
    master: &BTreeMap<String, BTreeMap<i32, i64>>,
) -> Vec<OffsetUpdate> {
    let mut out = Vec::new();
    for (key, queues) in master {
        // Topic names cannot hold '@' (`validate_topic_name`); group names might.
        let Some((topic, group)) = key.split_once('@') else {
            continue;
        };
        let mine = slave.get(key);
        for (&queue_id, &offset) in queues {
            let ahead = match mine.and_then(|q| q.get(&queue_id)) {
                Some(&have) => offset > have,
                None => true,
            };
            if ahead {
                out.push(OffsetUpdate {
                    group: group.to_string(),
                    topic: topic.to_string(),
                    queue_id,
                    offset,
                });
            }
        }
    }
    out
}

/// One registry operation on the slave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginStep {
    /// Unload (forced: the master no longer has it, or has another plugin of that name).
    Unload { name: String },
    /// Upgrade `times` times to the master's module and config (the last one reaches the
    /// master's version).
    Upgrade { target: PluginMeta, times: u64 },
    /// Load, then upgrade `target.version - 1` times.
    Load { target: PluginMeta },
}

/// The registry operations that make the slave's plugins equal to the master's, unloads first,
/// then upgrades, then loads (so a type a plugin gives up is free for the one taking it).
/// A plugin that cannot be reached by upgrades (another kind, a lower master version, or the
/// same version with other contents) is unloaded and loaded again.
pub fn plan_plugins(slave: &[PluginMeta], master: &[PluginMeta]) -> Vec<PluginStep> {
    let mine: BTreeMap<&str, &PluginMeta> = slave.iter().map(|p| (p.name.as_str(), p)).collect();
    let theirs: BTreeSet<&str> = master.iter().map(|p| p.name.as_str()).collect();
    let mut unloads: Vec<PluginStep> = slave
        .iter()
        .filter(|p| !theirs.contains(p.name.as_str()))
        .map(|p| PluginStep::Unload {
            name: p.name.clone(),
        })
        .collect();
    let mut upgrades = Vec::new();
    let mut loads = Vec::new();
    for m in master {
        match mine.get(m.name.as_str()) {
            None => loads.push(PluginStep::Load { target: m.clone() }),
            Some(s) if *s == m => {}
            Some(s) if s.kind == m.kind && s.version < m.version => {
                upgrades.push(PluginStep::Upgrade {
                    target: m.clone(),
                    times: m.version - s.version,
                })
            }
            Some(_) => {
                unloads.push(PluginStep::Unload {
                    name: m.name.clone(),
                });
                loads.push(PluginStep::Load { target: m.clone() });
            }
        }
    }
    unloads.extend(upgrades);
    unloads.extend(loads);
    unloads
}

/// Binding changes that make the slave's bindings equal to the master's.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BindingDiff {
    /// (kind, topic) bindings to drop.
    pub unbind: Vec<(PluginKind, String)>,
    /// Bindings to set (replacing one of the same kind and topic).
    pub bind: Vec<BindingMeta>,
}

pub fn diff_bindings(slave: &[BindingMeta], master: &[BindingMeta]) -> BindingDiff {
    let key = |b: &BindingMeta| (b.kind, b.topic.clone());
    let mine: BTreeMap<(PluginKind, String), &str> =
        slave.iter().map(|b| (key(b), b.plugin.as_str())).collect();
    let theirs: BTreeSet<(PluginKind, String)> = master.iter().map(key).collect();
    BindingDiff {
        unbind: mine
            .keys()
            .filter(|k| !theirs.contains(*k))
            .cloned()
            .collect(),
        bind: master
            .iter()
            .filter(|b| mine.get(&key(b)) != Some(&b.plugin.as_str()))
            .cloned()
            .collect(),
    }
}

/// The master's remoting address: the one learned from the NameServer, else the HA address's
/// port minus 1 (the HA port defaults to the broker port + 1).
pub fn remoting_addr(m: &MasterAddrs) -> Result<String, ReplicaMetaError> {
    if let Some(a) = &m.addr {
        return Ok(a.clone());
    }
    let bad = || ReplicaMetaError::BadAddress(m.ha_addr.clone());
    let (host, port) = m.ha_addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port < 2 {
        return Err(bad());
    }
    Ok(format!("{host}:{}", port - 1))
}

// ---- the slave's tables as the snapshot shows them ----

fn local_plugins(b: &Broker) -> Vec<PluginMeta> {
    b.plugins
        .list()
        .into_iter()
        .filter_map(|p| {
            Some(PluginMeta {
                kind: p.kind.parse().ok()?,
                name: p.name,
                version: p.version,
                sha256: p.sha256,
                config: p.config,
            })
        })
        .collect()
}

fn local_bindings(b: &Broker) -> Vec<BindingMeta> {
    b.plugins
        .bindings()
        .into_iter()
        .map(|(kind, topic, plugin)| BindingMeta {
            kind,
            topic,
            plugin,
        })
        .collect()
}

fn local_offsets(b: &Broker) -> BTreeMap<String, BTreeMap<i32, i64>> {
    b.offsets
        .groups()
        .into_iter()
        .map(|(group, topic)| (format!("{topic}@{group}"), b.offsets.of(&group, &topic)))
        .collect()
}

/// A module the slave already holds: in its registry's module store, or shipped.
fn local_module(b: &Broker, sha256: &str) -> Option<Vec<u8>> {
    if let Ok(wasm) = read_module(b, sha256) {
        return Some(wasm);
    }
    crate::plugin::shipped::SHIPPED
        .iter()
        .find(|(_, wasm)| crate::plugin::engine::sha256_hex(wasm) == sha256)
        .map(|(_, wasm)| wasm.to_vec())
}

// ---- applying a snapshot ----

/// Makes the slave's tables equal to the snapshot; `modules` holds the bytes of every module
/// the plugin steps need. Runs file writes and module compiles: call it off the reactor.
fn apply(
    b: &Broker,
    snap: &MetadataSnapshot,
    modules: &HashMap<String, Vec<u8>>,
) -> (SyncReport, Vec<ApplyFailure>) {
    let mut r = SyncReport::default();
    let mut failures = Vec::new();

    let mine: BTreeMap<String, TopicConfig> = b
        .topics
        .all()
        .iter()
        .map(|t| (t.topic_name.clone(), (**t).clone()))
        .collect();
    let d = diff_topics(&mine, &snap.topic_config_table);
    for t in d.upsert {
        let topic = t.topic_name.clone();
        match b.topics.upsert(t) {
            Ok(_) => r.topics_upserted += 1,
            Err(source) => failures.push(ApplyFailure::Topic { topic, source }),
        }
    }
    for topic in d.remove {
        match b.topics.delete(&topic) {
            Ok(_) => r.topics_removed += 1,
            Err(source) => failures.push(ApplyFailure::Topic { topic, source }),
        }
    }
    if r.topics_upserted + r.topics_removed > 0 {
        b.topics_changed();
    }

    for u in merge_offsets(&local_offsets(b), &snap.offset_table) {
        b.offsets.commit(&u.group, &u.topic, u.queue_id, u.offset);
        r.offsets_advanced += 1;
    }
    if let Err(e) = b.offsets.persist_if_dirty() {
        failures.push(ApplyFailure::Offsets(e));
    }

    for (&level, &offset) in &snap.delay_offset_table {
        if b.schedule.offset(level) != offset {
            match b.schedule.advance(level, offset) {
                Ok(()) => r.delay_levels_changed += 1,
                Err(source) => failures.push(ApplyFailure::Delay { level, source }),
            }
        }
    }

    match apply_timer(b, &snap.timer) {
        Ok(n) => r.timer_entries_marked = n,
        Err(e) => failures.push(ApplyFailure::Timer(e)),
    }

    apply_plugins(b, &snap.plugins, modules, &mut r, &mut failures);

    let d = diff_bindings(&local_bindings(b), &snap.bindings);
    for (kind, topic) in d.unbind {
        match b.plugins.unbind(kind, &topic) {
            Ok(_) => r.bindings_changed += 1,
            Err(source) => failures.push(ApplyFailure::Unbind {
                kind,
                topic,
                source,
            }),
        }
    }
    for x in d.bind {
        match b.plugins.bind(x.kind, &x.topic, &x.plugin) {
            Ok(()) => r.bindings_changed += 1,
            Err(source) => failures.push(ApplyFailure::Binding {
                kind: x.kind,
                topic: x.topic,
                plugin: x.plugin,
                source,
            }),
        }
    }
    (r, failures)
}

/// Flags delivered every timer entry the master flagged (its flags only ever get set, and the
/// slave delivers nothing itself, so the union is the master's state). Returns how many
/// entries were newly flagged.
fn apply_timer(b: &Broker, m: &TimerProgress) -> Result<u64, StoreError> {
    let mut marked = 0;
    // Everything below the master's low-water mark, a chunk per lock hold.
    let mut cursor = 0;
    loop {
        let mut d = b.timer.delivered();
        let start = d.low().max(cursor);
        if start >= m.low {
            break;
        }
        let end = m.low.min(start + TIMER_CHUNK);
        for off in start..end {
            if !d.is_set(off) {
                d.set(off);
                marked += 1;
            }
        }
        cursor = end;
    }
    {
        let mut d = b.timer.delivered();
        for off in m.delivered_above_low() {
            if !d.is_set(off) {
                d.set(off);
                marked += 1;
            }
        }
    }
    if marked > 0 {
        b.timer.persist()?;
    }
    Ok(marked)
}

fn apply_plugins(
    b: &Broker,
    master: &[PluginMeta],
    modules: &HashMap<String, Vec<u8>>,
    r: &mut SyncReport,
    failures: &mut Vec<ApplyFailure>,
) {
    let users = |types: &[String]| b.clients.subscriptions_of_types(types);
    let unload = |name: &str| b.plugins.unload(name, true, users);
    let mut pending = Vec::new();
    for step in plan_plugins(&local_plugins(b), master) {
        match step {
            PluginStep::Unload { name } => match unload(&name) {
                Ok(()) => r.plugins_unloaded += 1,
                Err(PluginError::NotFound(_)) => {}
                Err(source) => failures.push(ApplyFailure::Plugin { name, source }),
            },
            other => pending.push(other),
        }
    }
    // An upgrade or load may need an expression type another pending step frees: retry
    // while steps succeed; when none does, reload a stuck upgraded plugin (which frees its
    // types) and go on.
    loop {
        let mut progressed = false;
        let mut stuck = Vec::new();
        for step in pending {
            match plugin_step(b, &step, modules) {
                Ok(()) => {
                    progressed = true;
                    match step {
                        PluginStep::Load { .. } => r.plugins_loaded += 1,
                        _ => r.plugins_upgraded += 1,
                    }
                }
                Err(PluginError::TypeTaken { .. }) => stuck.push(step),
                Err(source) => failures.push(ApplyFailure::Plugin {
                    name: step_name(&step).to_string(),
                    source,
                }),
            }
        }
        if stuck.is_empty() {
            return;
        }
        if !progressed {
            let Some(i) = stuck
                .iter()
                .position(|s| matches!(s, PluginStep::Upgrade { .. }))
            else {
                for step in stuck {
                    let name = step_name(&step).to_string();
                    if let Err(source) = plugin_step(b, &step, modules) {
                        failures.push(ApplyFailure::Plugin { name, source });
                    }
                }
                return;
            };
            let PluginStep::Upgrade { target, .. } = stuck.remove(i) else {
                unreachable!("position found an upgrade")
            };
            match unload(&target.name) {
                Ok(()) => {
                    r.plugins_unloaded += 1;
                    stuck.push(PluginStep::Load { target });
                }
                Err(source) => failures.push(ApplyFailure::Plugin {
                    name: target.name,
                    source,
                }),
            }
        }
        pending = stuck;
    }
}

fn step_name(s: &PluginStep) -> &str {
    match s {
        PluginStep::Unload { name } => name,
        PluginStep::Upgrade { target, .. } | PluginStep::Load { target } => &target.name,
    }
}

fn plugin_step(
    b: &Broker,
    step: &PluginStep,
    modules: &HashMap<String, Vec<u8>>,
) -> Result<(), PluginError> {
    let (target, load, times) = match step {
        PluginStep::Unload { .. } => return Ok(()),
        PluginStep::Upgrade { target, times } => (target, false, *times),
        PluginStep::Load { target } => (target, true, target.version.saturating_sub(1)),
    };
    let wasm = modules
        .get(&target.sha256)
        .ok_or_else(|| PluginError::Invalid(format!("module {} was not fetched", target.sha256)))?;
    if load {
        b.plugins.load(&target.name, wasm, target.config.clone())?;
    }
    for _ in 0..times {
        b.plugins.upgrade_checked(
            &target.name,
            wasm,
            Some(target.config.clone()),
            true,
            |types| b.clients.subscriptions_of_types(types),
        )?;
    }
    Ok(())
}

/// Runs `f` (file writes, module compiles) without stalling the other tasks of a
/// multi-threaded runtime; inline on a current-thread runtime (tests).
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

// ---- talking to the master ----

/// One slave's link to its master across rounds: the connection, and the version of the last
/// snapshot applied without failures.
#[derive(Default)]
struct Syncer {
    link: Option<(String, RemotingClient)>,
    applied: Option<(String, String)>,
}

impl Syncer {
    async fn client(
        &mut self,
        b: &Broker,
        master: &str,
    ) -> Result<&RemotingClient, ReplicaMetaError> {
        let reuse = self
            .link
            .as_ref()
            .is_some_and(|(a, c)| a == master && !c.is_closed());
        if !reuse {
            self.link = None;
            let config = NetConfig {
                // A module of the largest size the registry takes, plus the frame's header.
                max_frame_len: NetConfig::client()
                    .max_frame_len
                    .max(b.config.plugin_max_module_bytes + (1 << 20)),
                ..NetConfig::client()
            };
            let c = tokio::time::timeout(
                CONNECT_TIMEOUT,
                RemotingClient::connect_with(master, config, None),
            )
            .await
            .map_err(|_| ReplicaMetaError::ConnectTimeout {
                master: master.to_string(),
            })?
            .map_err(|source| ReplicaMetaError::Connect {
                master: master.to_string(),
                source,
            })?;
            self.link = Some((master.to_string(), c));
        }
        Ok(&self.link.as_ref().expect("connected above").1)
    }

    async fn call(
        &mut self,
        b: &Broker,
        master: &str,
        what: &'static str,
        req: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, ReplicaMetaError> {
        let resp = match self.client(b, master).await?.invoke(req, timeout).await {
            Ok(r) => r,
            Err(source) => {
                // A fresh connection next time.
                self.link = None;
                return Err(ReplicaMetaError::Request {
                    master: master.to_string(),
                    what,
                    source,
                });
            }
        };
        if resp.code != response::SUCCESS {
            return Err(ReplicaMetaError::Refused {
                master: master.to_string(),
                what,
                code: resp.code,
                remark: resp.remark.unwrap_or_default(),
            });
        }
        Ok(resp)
    }

    async fn sync(&mut self, b: &Broker, master: &str) -> Result<SyncReport, ReplicaMetaError> {
        let resp = self
            .call(
                b,
                master,
                "HA_METADATA",
                RemotingCommand::new_request(request::HA_METADATA, ExtFields::new()),
                METADATA_TIMEOUT,
            )
            .await?;
        let snap: MetadataSnapshot =
            serde_json::from_slice(&resp.body).map_err(|source| ReplicaMetaError::Decode {
                master: master.to_string(),
                source,
            })?;
        if snap.broker_name != b.config.broker_name {
            return Err(ReplicaMetaError::OtherGroup {
                master: master.to_string(),
                theirs: snap.broker_name,
                ours: b.config.broker_name.clone(),
            });
        }
        if self
            .applied
            .as_ref()
            .is_some_and(|(a, v)| a == master && *v == snap.version)
        {
            return Ok(SyncReport {
                unchanged: true,
                ..SyncReport::default()
            });
        }
        // The modules the plugin steps need: the slave's own, else the master's.
        let mut modules: HashMap<String, Vec<u8>> = HashMap::new();
        let mut fetched = 0;
        let needed: BTreeSet<String> = plan_plugins(&local_plugins(b), &snap.plugins)
            .into_iter()
            .filter_map(|s| match s {
                PluginStep::Upgrade { target, .. } | PluginStep::Load { target } => {
                    Some(target.sha256)
                }
                PluginStep::Unload { .. } => None,
            })
            .collect();
        for sha in needed {
            if let Some(wasm) = local_module(b, &sha) {
                modules.insert(sha, wasm);
                continue;
            }
            let mut f = ExtFields::new();
            f.insert("sha256", &sha);
            let resp = self
                .call(
                    b,
                    master,
                    "HA_PLUGIN_MODULE",
                    RemotingCommand::new_request(request::HA_PLUGIN_MODULE, f),
                    MODULE_TIMEOUT,
                )
                .await?;
            let actual = crate::plugin::engine::sha256_hex(&resp.body);
            if actual != sha {
                return Err(ReplicaMetaError::ModuleMismatch {
                    master: master.to_string(),
                    expected: sha,
                    actual,
                });
            }
            modules.insert(sha, resp.body.to_vec());
            fetched += 1;
        }
        let (mut report, failures) = blocking(|| apply(b, &snap, &modules));
        report.modules_fetched = fetched;
        if !failures.is_empty() {
            self.applied = None;
            return Err(ReplicaMetaError::Apply {
                master: master.to_string(),
                report: Box::new(report),
                failures,
            });
        }
        self.applied = Some((master.to_string(), snap.version));
        Ok(report)
    }
}

/// One round: fetches the metadata of the master at `master_addr` (its remoting address) and
/// applies it to `b`. On [`ReplicaMetaError::Apply`] the parts that could be applied are.
pub async fn sync_once(b: &Broker, master_addr: &str) -> Result<SyncReport, ReplicaMetaError> {
    Syncer::default().sync(b, master_addr).await
}

/// The last round's outcome, to log state changes once rather than every round.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Start,
    NoMaster,
    Synced(String),
    Unreachable(String),
    Failed(String),
}

async fn until_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// A slave's metadata copy until `shutdown` turns true: a round every [`SYNC_INTERVAL`] and
/// whenever the master's address changes. Returns at once on a master.
pub async fn run(b: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    if !b.replication.is_slave() {
        return;
    }
    let mut master_rx = b.replication.watch_master();
    let mut watching = true;
    let mut tick = tokio::time::interval(SYNC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut syncer = Syncer::default();
    let mut last = Outcome::Start;
    loop {
        tokio::select! {
            _ = until_true(&mut shutdown) => break,
            _ = tick.tick() => {}
            r = master_rx.changed(), if watching => {
                if r.is_err() {
                    watching = false;
                    continue;
                }
                tick.reset();
            }
        }
        let master = b.replication.master();
        let outcome = match master.as_ref().map(remoting_addr) {
            None => Outcome::NoMaster,
            Some(Err(e)) => Outcome::Failed(e.to_string()),
            Some(Ok(addr)) => {
                let r = tokio::select! {
                    _ = until_true(&mut shutdown) => break,
                    r = syncer.sync(&b, &addr) => r,
                };
                match r {
                    Ok(report) => {
                        if report.changed() {
                            tracing::info!(master = %addr, ?report, "metadata copied from the master");
                        }
                        Outcome::Synced(addr)
                    }
                    Err(e) if e.is_unreachable() => {
                        if last != Outcome::Unreachable(addr.clone()) {
                            tracing::warn!(master = %addr, error = %e, "metadata sync: master unreachable; retrying every 10 s");
                        }
                        Outcome::Unreachable(addr)
                    }
                    Err(e) => Outcome::Failed(format!("{e}")),
                }
            }
        };
        if outcome != last {
            match &outcome {
                Outcome::NoMaster => {
                    tracing::info!("metadata sync: waiting for the master's address")
                }
                Outcome::Synced(addr) => {
                    tracing::info!(master = %addr, "metadata sync with the master is up")
                }
                Outcome::Failed(e) => tracing::error!(error = %e, "metadata sync failed"),
                Outcome::Unreachable(_) | Outcome::Start => {}
            }
        }
        last = outcome;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BrokerConfig, BrokerRole};
    use crate::plugin::shipped;
    use crate::processor::BrokerHandler;
    use crate::store::StoreConfig;

    fn offsets(rows: &[(&str, i32, i64)]) -> BTreeMap<String, BTreeMap<i32, i64>> {
        let mut m: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
        for (k, q, o) in rows {
            m.entry(k.to_string()).or_default().insert(*q, *o);
        }
        m
    }

    #[test]
    fn offsets_merge_to_the_larger_per_queue_and_never_move_back() {
        let slave = offsets(&[
            ("T@g", 0, 15), // committed on the slave while the master was down
            ("T@g", 1, 7),
            ("T@g", 2, 3), // a queue only the slave knows
            ("U@only-slave", 0, 4),
        ]);
        let master = offsets(&[
            ("T@g", 0, 10),
            ("T@g", 1, 20),
            ("T@g", 3, 1),
            ("T@g@x", 0, 5), // a group name with '@'
            ("V@g", 0, 0),
        ]);
        let up = merge_offsets(&slave, &master);
        let got: Vec<(&str, &str, i32, i64)> = up
            .iter()
            .map(|u| (u.group.as_str(), u.topic.as_str(), u.queue_id, u.offset))
            .collect();
        assert_eq!(
            got,
            vec![
                ("g", "T", 1, 20),
                ("g", "T", 3, 1),
                ("g@x", "T", 0, 5),
                ("g", "V", 0, 0),
            ]
        );
        // Applying the updates and merging again changes nothing.
        let mut merged = slave.clone();
        for u in up {
            merged
                .entry(format!("{}@{}", u.topic, u.group))
                .or_default()
                .insert(u.queue_id, u.offset);
        }
        assert!(merge_offsets(&merged, &master).is_empty());
        assert_eq!(merged["T@g"][&0], 15, "the slave's newer offset stays");
        assert_eq!(merged["U@only-slave"][&0], 4);
    }

    #[test]
    fn topics_follow_the_master() {
        let t = |n: &str, q: u32| (n.to_string(), TopicConfig::new(n, q));
        let slave = BTreeMap::from([t("A", 4), t("B", 4), t("Gone", 1)]);
        let master = BTreeMap::from([t("A", 4), t("B", 8), t("New", 2)]);
        let d = diff_topics(&slave, &master);
        assert_eq!(
            d.upsert
                .iter()
                .map(|t| t.topic_name.as_str())
                .collect::<Vec<_>>(),
            vec!["B", "New"]
        );
        assert_eq!(d.remove, vec!["Gone".to_string()]);
        assert_eq!(diff_topics(&master, &master), TopicDiff::default());
    }

    fn meta(name: &str, version: u64, sha: &str, kind: PluginKind) -> PluginMeta {
        PluginMeta {
            name: name.into(),
            version,
            sha256: sha.into(),
            kind,
            config: Vec::new(),
        }
    }

    #[test]
    fn plugin_plan_unloads_then_upgrades_then_loads() {
        use PluginKind::*;
        let same = meta("same", 2, "s", Filter);
        let slave = vec![
            same.clone(),
            meta("behind", 1, "a", Filter),
            meta("gone", 1, "g", Filter),
            meta("other-kind", 1, "k", Filter),
            meta("reloaded", 5, "r", Router),
            meta("diverged", 2, "d", Filter),
        ];
        let mut cfg = meta("behind", 4, "b", Filter);
        cfg.config = vec![("k".into(), "v".into())];
        let master = vec![
            same,
            cfg.clone(),
            meta("other-kind", 1, "k2", TxnChecker),
            meta("reloaded", 1, "r", Router),
            meta("diverged", 2, "d2", Filter),
            meta("new", 3, "n", Filter),
        ];
        let plan = plan_plugins(&slave, &master);
        let unload = |n: &str| PluginStep::Unload { name: n.into() };
        let load = |m: &PluginMeta| PluginStep::Load { target: m.clone() };
        assert_eq!(
            plan,
            vec![
                unload("gone"),
                unload("other-kind"),
                unload("reloaded"),
                unload("diverged"),
                PluginStep::Upgrade {
                    target: cfg,
                    times: 3
                },
                load(&master[2]),
                load(&master[3]),
                load(&master[4]),
                load(&master[5]),
            ]
        );
        assert!(plan_plugins(&master, &master).is_empty());
    }

    #[test]
    fn bindings_follow_the_master() {
        let bm = |kind, topic: &str, plugin: &str| BindingMeta {
            kind,
            topic: topic.into(),
            plugin: plugin.into(),
        };
        let slave = vec![
            bm(PluginKind::TxnChecker, "*", "old"),
            bm(PluginKind::Router, "A", "hr"),
            bm(PluginKind::Router, "B", "hr"),
        ];
        let master = vec![
            bm(PluginKind::TxnChecker, "*", "new"),
            bm(PluginKind::Router, "A", "hr"),
            bm(PluginKind::Router, "C", "hr"),
        ];
        let d = diff_bindings(&slave, &master);
        assert_eq!(d.unbind, vec![(PluginKind::Router, "B".to_string())]);
        assert_eq!(d.bind, vec![master[0].clone(), master[2].clone()]);
        assert_eq!(diff_bindings(&master, &master), BindingDiff::default());
    }

    #[test]
    fn the_remoting_address_is_learned_or_one_below_the_ha_port() {
        let m = |addr: Option<&str>, ha: &str| MasterAddrs {
            addr: addr.map(str::to_string),
            ha_addr: ha.into(),
        };
        assert_eq!(
            remoting_addr(&m(Some("10.0.0.1:10911"), "10.0.0.1:20000")).unwrap(),
            "10.0.0.1:10911"
        );
        assert_eq!(
            remoting_addr(&m(None, "10.0.0.1:10912")).unwrap(),
            "10.0.0.1:10911"
        );
        assert_eq!(
            remoting_addr(&m(None, "master.local:10912")).unwrap(),
            "master.local:10911"
        );
        for bad in ["10.0.0.1", "10.0.0.1:x", ":10912", "h:1"] {
            assert!(
                matches!(
                    remoting_addr(&m(None, bad)),
                    Err(ReplicaMetaError::BadAddress(_))
                ),
                "{bad}"
            );
        }
    }

    fn open(dir: &std::path::Path, role: BrokerRole, name: &str) -> Arc<Broker> {
        Broker::open(open_config(dir, role, name), None).unwrap()
    }

    fn open_config(dir: &std::path::Path, role: BrokerRole, name: &str) -> BrokerConfig {
        BrokerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            namesrv_listen: None,
            broker_name: name.into(),
            broker_role: role,
            broker_id: if role.is_slave() { 1 } else { 0 },
            store: StoreConfig {
                max_message_size: 64 << 10,
                ..StoreConfig::for_tests(dir)
            },
            ..BrokerConfig::default()
        }
    }

    fn wasm(name: &str) -> Vec<u8> {
        std::fs::read(shipped::path(name)).unwrap()
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    /// Two filters that swapped modules on the master (each expression type moves to the
    /// other plugin): neither upgrade can go first, so one plugin is reloaded.
    #[test]
    fn plugins_that_swapped_expression_types_are_reloaded() {
        let d = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            load_shipped_plugins: false,
            ..open_config(d.path(), BrokerRole::Slave, "broker-a")
        };
        let b = Broker::open(config, None).unwrap();
        let (json, modulo) = (wasm("json-filter"), wasm("modulo"));
        b.plugins.load("a", &json, vec![]).unwrap();
        b.plugins
            .load("b", &modulo, vec![kv("divisor", "2")])
            .unwrap();
        let sha = crate::plugin::engine::sha256_hex;
        let mut target = vec![
            meta("a", 2, &sha(&modulo), PluginKind::Filter),
            meta("b", 2, &sha(&json), PluginKind::Filter),
        ];
        target[0].config = vec![kv("divisor", "3")];
        let modules = HashMap::from([(sha(&json), json), (sha(&modulo), modulo)]);
        let (mut r, mut failures) = (SyncReport::default(), Vec::new());
        apply_plugins(&b, &target, &modules, &mut r, &mut failures);
        assert!(failures.is_empty(), "{}", join(&failures));
        assert_eq!(local_plugins(&b), target);
        assert_eq!(b.plugins.for_type("JSON").unwrap().name, "b");
        assert_eq!(b.plugins.for_type("MOD").unwrap().name, "a");
        assert_eq!(
            (r.plugins_unloaded, r.plugins_loaded, r.plugins_upgraded),
            (1, 1, 1)
        );
    }

    /// A master served on loopback, a slave that copies it: topics, offsets (larger wins),
    /// delay and timer progress, plugins (version, config, a module it lacks) and bindings.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slave_copies_its_master() {
        let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let master = open(md.path(), BrokerRole::AsyncMaster, "broker-a");
        let slave = open(sd.path(), BrokerRole::Slave, "broker-a");

        master.topics.upsert(TopicConfig::new("Orders", 8)).unwrap();
        slave.topics.upsert(TopicConfig::new("Orders", 2)).unwrap();
        slave.topics.upsert(TopicConfig::new("Gone", 1)).unwrap();
        master.offsets.commit("g", "Orders", 0, 10);
        master.offsets.commit("g", "Orders", 1, 20);
        slave.offsets.commit("g", "Orders", 0, 15);
        slave.offsets.commit("g", "Orders", 2, 3);
        master.schedule.advance(3, 42).unwrap();
        {
            let mut d = master.timer.delivered();
            for off in (0..70).chain([100]) {
                d.set(off);
            }
        }
        let p = &master.plugins;
        p.load("json", &wasm("json-filter"), vec![]).unwrap();
        p.upgrade("json", &wasm("json-filter"), Some(vec![kv("a", "1")]))
            .unwrap();
        p.load(
            "deadline",
            &wasm("txn-deadline-checker"),
            vec![kv("deadline_ms", "1000")],
        )
        .unwrap();
        p.load("hr", &wasm("hash-router"), vec![]).unwrap();
        p.bind(PluginKind::TxnChecker, "*", "deadline").unwrap();
        p.bind(PluginKind::Router, "Orders", "hr").unwrap();
        p.unload("sql92-filter", true, |_| Vec::new()).unwrap();
        // The slave has a plugin the master never had, bound to a topic.
        slave
            .plugins
            .load("local-hr", &wasm("hash-router"), vec![])
            .unwrap();
        slave
            .plugins
            .bind(PluginKind::Router, "Gone", "local-hr")
            .unwrap();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, stop_rx) = watch::channel(false);
        let server = tokio::spawn(crate::net::serve(
            listener,
            Arc::new(BrokerHandler(master.clone())),
            NetConfig::default(),
            stop_rx,
        ));

        let r = sync_once(&slave, &addr).await.unwrap();
        assert_eq!((r.topics_upserted, r.topics_removed), (1, 1), "{r:?}");
        assert_eq!(r.offsets_advanced, 1, "{r:?}");
        assert_eq!(r.delay_levels_changed, 1, "{r:?}");
        // Below the master's low-water mark (64), 64..70, and 100.
        assert_eq!(r.timer_entries_marked, 71, "{r:?}");
        assert_eq!(
            (r.plugins_loaded, r.plugins_unloaded, r.bindings_changed),
            (3, 2, 2),
            "{r:?}"
        );
        // json-filter and txn-deadline-checker; the slave holds hash-router's module already.
        assert_eq!(r.modules_fetched, 2, "{r:?}");

        let names = |b: &Broker| {
            b.topics
                .all()
                .iter()
                .map(|t| (**t).clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&slave), names(&master));
        assert_eq!(
            slave.offsets.of("g", "Orders"),
            BTreeMap::from([(0, 15), (1, 20), (2, 3)])
        );
        assert_eq!(
            master.offsets.of("g", "Orders")[&0],
            10,
            "the master is not written"
        );
        assert_eq!(slave.schedule.offset(3), 42);
        assert_eq!(slave.timer.low_water(), 64);
        assert!(slave.timer.delivered().is_set(69) && slave.timer.delivered().is_set(100));
        assert!(!slave.timer.delivered().is_set(99));
        assert_eq!(local_plugins(&slave), local_plugins(&master));
        assert_eq!(
            local_plugins(&slave)
                .iter()
                .find(|p| p.name == "json")
                .unwrap()
                .version,
            2
        );
        assert_eq!(local_bindings(&slave), local_bindings(&master));
        assert!(slave.plugins.router_for("Orders").is_some());
        assert!(slave.plugins.txn_checker_for("Any").is_some());

        // Nothing new: a second round changes nothing.
        let again = sync_once(&slave, &addr).await.unwrap();
        assert!(!again.changed(), "{again:?}");

        // An upgrade on the master is an upgrade on the slave.
        p.upgrade("json", &wasm("json-filter"), Some(vec![kv("a", "2")]))
            .unwrap();
        let r = sync_once(&slave, &addr).await.unwrap();
        assert_eq!((r.plugins_upgraded, r.modules_fetched), (1, 0), "{r:?}");
        assert_eq!(local_plugins(&slave), local_plugins(&master));

        // What the registry and the topic table persisted survives a restart of the slave.
        let topics = crate::meta::TopicTable::open(&sd.path().join("config")).unwrap();
        assert!(topics.get("Gone").is_none() && topics.get("Orders").unwrap().read_queue_nums == 8);
        let reg = crate::plugin::Registry::open(
            Some(&sd.path().join("plugins")),
            crate::plugin::registry::DEFAULT_MAX_MODULE_BYTES,
        )
        .unwrap();
        assert_eq!(reg.list().len(), local_plugins(&master).len());
        assert_eq!(reg.bindings().len(), 2);

        // A module the master does not hold is refused clearly.
        let c = RemotingClient::connect(&addr).await.unwrap();
        let mut f = ExtFields::new();
        f.insert("sha256", &"0".repeat(64));
        let resp = c
            .invoke(
                RemotingCommand::new_request(request::HA_PLUGIN_MODULE, f),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(resp.code, response::SYSTEM_ERROR);
        assert!(resp.remark.unwrap_or_default().contains("no active plugin"));

        // A slave of another broker group copies nothing.
        let od = tempfile::tempdir().unwrap();
        let other = open(od.path(), BrokerRole::Slave, "broker-b");
        let e = sync_once(&other, &addr).await.unwrap_err();
        assert!(matches!(e, ReplicaMetaError::OtherGroup { .. }), "{e}");
        assert!(other.topics.get("Orders").is_none());

        // `run` on a slave that knows only its master's HA address (the broker port + 1).
        let rd = tempfile::tempdir().unwrap();
        let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
        let config = BrokerConfig {
            ha_master_addr: Some(format!("127.0.0.1:{}", port + 1)),
            ..open_config(rd.path(), BrokerRole::Slave, "broker-a")
        };
        let runner = Broker::open(config, None).unwrap();
        let (stop_run, stop_run_rx) = watch::channel(false);
        let task = tokio::spawn(run(runner.clone(), stop_run_rx));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while local_bindings(&runner) != local_bindings(&master) {
            assert!(std::time::Instant::now() < deadline, "run copied nothing");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(names(&runner), names(&master));
        let _ = stop_run.send(true);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();

        // An unreachable master is reported as such.
        let _ = stop.send(true);
        server.await.unwrap().unwrap();
        let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone_addr = gone.local_addr().unwrap().to_string();
        drop(gone);
        let e = sync_once(&slave, &gone_addr).await.unwrap_err();
        assert!(e.is_unreachable(), "{e}");
        assert!(e.to_string().contains(&gone_addr), "{e}");
    }
}
