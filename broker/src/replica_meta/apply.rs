//! Applying a master's snapshot to the slave's tables (topics, offsets, delay and timer
//! progress, plugins, bindings), with the registry's and tables' own operations, so each part
//! persists as it does for an operator. What to change comes from `plan.rs`.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::context::Broker;
use crate::meta::{MetaError, TopicConfig};
use crate::plugin::{PluginError, PluginKind};
use crate::processor::replica_meta::{
    read_module, BindingMeta, MetadataSnapshot, PluginMeta, TimerProgress,
};
use crate::store::StoreError;

use super::plan::{diff_bindings, diff_topics, merge_offsets, plan_plugins, PluginStep};

/// Timer entries flagged per lock hold while a slave catches up with the master's flags.
const TIMER_CHUNK: u64 = 1 << 16;

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
    /// The snapshot's version equals the last one applied without failures: nothing applied
    /// (local commits may still have been sent to the master).
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
    /// Queues whose offset, committed by clients on this slave, moved forward on the master
    /// (its HA_MERGE_OFFSETS answer).
    pub offsets_pushed: usize,
}

impl SyncReport {
    /// Whether anything changed, on the slave or (offsets pushed) on the master.
    pub fn changed(&self) -> bool {
        *self
            != SyncReport {
                unchanged: self.unchanged,
                ..SyncReport::default()
            }
    }
}

// ---- the slave's tables as the snapshot shows them ----

pub(crate) fn local_plugins(b: &Broker) -> Vec<PluginMeta> {
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

pub(crate) fn local_bindings(b: &Broker) -> Vec<BindingMeta> {
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

pub(crate) fn local_offsets(b: &Broker) -> BTreeMap<String, BTreeMap<i32, i64>> {
    b.offsets
        .groups()
        .into_iter()
        .map(|(group, topic)| (format!("{topic}@{group}"), b.offsets.of(&group, &topic)))
        .collect()
}

/// A module the slave already holds: in its registry's module store, or shipped.
pub(crate) fn local_module(b: &Broker, sha256: &str) -> Option<Vec<u8>> {
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
pub(crate) fn apply(
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
        // `advance`, not `commit`: a client may have committed a larger one since the read.
        if b.offsets.advance(&u.group, &u.topic, u.queue_id, u.offset) {
            r.offsets_advanced += 1;
        }
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

pub(crate) fn apply_plugins(
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
