//! What a sync round changes, decided without touching a table or the network: the slave's
//! state and the master's snapshot in, the changes out (tested in `tests.rs` without a broker).

use std::collections::{BTreeMap, BTreeSet};

use crate::context::replication::{LocalCommit, MasterAddrs};
use crate::meta::TopicConfig;
use crate::plugin::PluginKind;
use crate::processor::replica_meta::{BindingMeta, PluginMeta};

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

/// The offsets to send the master (HA_MERGE_OFFSETS): of the queues clients committed on this
/// slave since the last round (`commits`), those where the slave (`slave`, after the round's
/// merge) is ahead of the master's snapshot (`master`); a queue the master has no offset for
/// counts as behind. Offsets the master holds lower but that no client committed here (an
/// operator's reset on the master, which the slave's own table keeps the larger of) are not
/// sent, so the reset stands.
pub fn offsets_to_push(
    commits: &[LocalCommit],
    slave: &BTreeMap<String, BTreeMap<i32, i64>>,
    master: &BTreeMap<String, BTreeMap<i32, i64>>,
) -> Vec<OffsetUpdate> {
    commits
        .iter()
        .filter_map(|(group, topic, queue_id)| {
            let key = format!("{topic}@{group}");
            let mine = *slave.get(&key)?.get(queue_id)?;
            let theirs = master.get(&key).and_then(|q| q.get(queue_id));
            theirs.is_none_or(|&t| mine > t).then(|| OffsetUpdate {
                group: group.clone(),
                topic: topic.clone(),
                queue_id: *queue_id,
                offset: mine,
            })
        })
        .collect()
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

/// A master HA address that is not `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("master address {0:?} is not HOST:PORT")]
pub struct BadAddress(pub String);

/// The master's remoting address: the one learned from the NameServer, else the HA address's
/// port minus 1 (the HA port defaults to the broker port + 1).
pub fn remoting_addr(m: &MasterAddrs) -> Result<String, BadAddress> {
    if let Some(a) = &m.addr {
        return Ok(a.clone());
    }
    let bad = || BadAddress(m.ha_addr.clone());
    let (host, port) = m.ha_addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port < 2 {
        return Err(bad());
    }
    Ok(format!("{host}:{}", port - 1))
}
