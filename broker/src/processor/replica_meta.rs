//! The master's side of the metadata a slave copies (issue 12): HA_METADATA answers one JSON
//! snapshot of everything a slave needs to evaluate the same subscriptions and to take the
//! master's place (topic configs, consumer offsets, delay and timer progress, the plugin
//! registry and its bindings); HA_PLUGIN_MODULE answers one plugin module by its sha256;
//! HA_MERGE_OFFSETS takes the other direction: offsets clients committed on a slave while the
//! master was away, each committed here only where it is larger (an offset never moves back).
//!
//! The snapshot types live here and `crate::replica_meta` (the slave's sync task) reads them.
//! The broker keeps no subscription-group configs (RocketMQ's `subscriptionGroup.json`): live
//! consumer groups are per connection, so the snapshot has no such section.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::context::Broker;
use crate::meta::TopicConfig;
use crate::plugin::PluginKind;
use crate::protocol::{response, RemotingCommand};

use super::{ok, reply};

/// One plugin of the registry as the slave must reproduce it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginMeta {
    pub name: String,
    pub version: u64,
    pub sha256: String,
    pub kind: PluginKind,
    pub config: Vec<(String, String)>,
}

/// One per-topic binding (transaction checker or router).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingMeta {
    pub kind: PluginKind,
    pub topic: String,
    pub plugin: String,
}

/// The timer's delivered flags: every entry below `low` is delivered; bit `i` of word `i / 64`
/// of `words` stands for entry `low + i`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimerProgress {
    pub low: u64,
    pub words: Vec<u64>,
}

impl TimerProgress {
    /// The entries at or above `low` flagged delivered, in order.
    pub fn delivered_above_low(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(move |(w, bits)| {
            (0..64u64)
                .filter(move |b| bits & (1 << b) != 0)
                .map(move |b| self.low + w as u64 * 64 + b)
        })
    }
}

/// HA_METADATA's response body. Every map is ordered, so the same state serialises to the
/// same bytes and `version` (the sha256 of the snapshot serialised with an empty `version`)
/// changes only when something in it did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetadataSnapshot {
    pub version: String,
    /// Name of the master's broker group and its id (a slave checks it copies its own group).
    pub broker_name: String,
    pub broker_id: i64,
    /// Topic configs by name.
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    /// `topic@group` -> queue id -> next offset to consume (RocketMQ's `consumerOffset.json`).
    pub offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
    /// Delay level -> delivery progress in `SCHEDULE_TOPIC_XXXX` queue `level - 1`.
    pub delay_offset_table: BTreeMap<i32, u64>,
    pub timer: TimerProgress,
    /// The registry's active plugins, by name.
    pub plugins: Vec<PluginMeta>,
    pub bindings: Vec<BindingMeta>,
}

impl MetadataSnapshot {
    /// The sha256 of the snapshot with an empty `version`.
    pub fn content_hash(&self) -> String {
        let mut c = self.clone();
        c.version.clear();
        crate::plugin::engine::sha256_hex(&serde_json::to_vec(&c).unwrap_or_default())
    }

    /// Sets `version` to the content hash.
    pub fn sealed(mut self) -> MetadataSnapshot {
        self.version = self.content_hash();
        self
    }
}

/// HA_MERGE_OFFSETS's request body: offsets clients committed on a slave, in the snapshot's
/// `offsetTable` shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeOffsets {
    /// `topic@group` -> queue id -> offset.
    pub offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
}

/// HA_MERGE_OFFSETS's response body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergedOffsets {
    /// Queues whose offset moved forward.
    pub moved: usize,
}

/// The timer's delivered flags, read under its lock.
fn timer_progress(b: &Broker) -> TimerProgress {
    // The word count first: `bitmap_bytes` takes the same lock. Bits set in between show up
    // one word further, hence the margin; anything later is in the next snapshot.
    let words = b.timer.bitmap_bytes() / 8 + 1;
    let d = b.timer.delivered();
    let low = d.low();
    let mut out: Vec<u64> = (0..words as u64)
        .map(|w| {
            (0..64u64)
                .filter(|bit| d.is_set(low + w * 64 + bit))
                .fold(0u64, |acc, bit| acc | 1 << bit)
        })
        .collect();
    drop(d);
    while out.last() == Some(&0) {
        out.pop();
    }
    TimerProgress { low, words: out }
}

/// The master's metadata now.
pub fn snapshot(b: &Broker) -> MetadataSnapshot {
    let topic_config_table = b
        .topics
        .all()
        .iter()
        .map(|t| (t.topic_name.clone(), (**t).clone()))
        .collect();
    let offset_table = b
        .offsets
        .groups()
        .into_iter()
        .map(|(group, topic)| {
            let queues = b.offsets.of(&group, &topic);
            (format!("{topic}@{group}"), queues)
        })
        .filter(|(_, q)| !q.is_empty())
        .collect();
    let delay_offset_table = (1..=b.delay_levels.count())
        .map(|level| (level, b.schedule.offset(level)))
        .collect();
    let plugins = b
        .plugins
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
        .collect();
    let mut bindings: Vec<BindingMeta> = b
        .plugins
        .bindings()
        .into_iter()
        .map(|(kind, topic, plugin)| BindingMeta {
            kind,
            topic,
            plugin,
        })
        .collect();
    bindings.sort();
    MetadataSnapshot {
        version: String::new(),
        broker_name: b.config.broker_name.clone(),
        broker_id: b.config.broker_id,
        topic_config_table,
        offset_table,
        delay_offset_table,
        timer: timer_progress(b),
        plugins,
        bindings,
    }
    .sealed()
}

/// Where the registry keeps a module (`<store>/plugins/modules/<sha256>.wasm`, the layout
/// `plugin::Registry` documents; `Broker::open` puts the registry in `<store>/plugins`).
/// `None` unless `sha256` is 64 lower-case hex digits (no path from a request).
pub fn module_file(b: &Broker, sha256: &str) -> Option<PathBuf> {
    let hex = sha256.len() == 64
        && sha256
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    hex.then(|| {
        b.config
            .store
            .dir
            .join("plugins")
            .join("modules")
            .join(format!("{sha256}.wasm"))
    })
}

/// A module the registry holds, checked against its hash.
pub fn read_module(b: &Broker, sha256: &str) -> Result<Vec<u8>, String> {
    let Some(path) = module_file(b, sha256) else {
        return Err(format!(
            "{sha256:?} is not a sha256 (64 lower-case hex digits)"
        ));
    };
    let wasm = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let actual = crate::plugin::engine::sha256_hex(&wasm);
    if actual != sha256 {
        return Err(format!(
            "{} holds a module whose sha256 is {actual}",
            path.display()
        ));
    }
    Ok(wasm)
}

/// HA_METADATA: the snapshot as JSON.
pub fn metadata(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    match serde_json::to_vec(&snapshot(b)) {
        Ok(body) => RemotingCommand::response_to(req, response::SUCCESS, None).with_body(body),
        Err(e) => reply(
            req,
            response::SYSTEM_ERROR,
            format!("cannot encode the metadata: {e}"),
        ),
    }
}

/// HA_PLUGIN_MODULE: the bytes of an active plugin's module, by `sha256`.
pub fn plugin_module(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let Some(sha) = req.ext_fields.get("sha256") else {
        return reply(req, response::SYSTEM_ERROR, "sha256 is required");
    };
    if !b.plugins.list().iter().any(|p| p.sha256 == sha) {
        return reply(
            req,
            response::SYSTEM_ERROR,
            format!("no active plugin has module sha256 {sha}"),
        );
    }
    match read_module(b, sha) {
        Ok(wasm) => RemotingCommand::response_to(req, response::SUCCESS, None).with_body(wasm),
        Err(e) => reply(
            req,
            response::SYSTEM_ERROR,
            format!("module {sha} cannot be read: {e}"),
        ),
    }
}

/// HA_MERGE_OFFSETS (on a master; a slave refuses it): commits each offset of the body only
/// where it is larger than the one held, so an offset never moves back; entries of topics this
/// broker does not have (deleted meanwhile) or negative offsets are skipped. What moved is
/// persisted before the answer, as an operator's reset is: the slave forgets what the master
/// took.
pub fn merge_offsets(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    if b.replication.is_slave() {
        return reply(
            req,
            response::SERVICE_NOT_AVAILABLE,
            super::send::slave_refusal(b),
        );
    }
    let body: MergeOffsets = match serde_json::from_slice(&req.body) {
        Ok(x) => x,
        Err(e) => {
            return reply(
                req,
                response::SYSTEM_ERROR,
                format!("bad HA_MERGE_OFFSETS body: {e}"),
            )
        }
    };
    let mut moved = 0;
    for (key, queues) in &body.offset_table {
        // Topic names cannot hold '@' (`validate_topic_name`); group names might.
        let Some((topic, group)) = key.split_once('@') else {
            continue;
        };
        if group.is_empty() || b.topics.get(topic).is_none() {
            continue;
        }
        for (&queue_id, &offset) in queues {
            if offset >= 0 && b.offsets.advance(group, topic, queue_id, offset) {
                moved += 1;
            }
        }
    }
    if moved > 0 {
        if let Err(e) = b.offsets.persist_if_dirty() {
            return reply(req, response::SYSTEM_ERROR, e.to_string());
        }
        tracing::info!(moved, "consumer offsets committed on a slave merged");
    }
    match serde_json::to_vec(&MergedOffsets { moved }) {
        Ok(body) => ok(req).with_body(body),
        Err(e) => reply(req, response::SYSTEM_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(dir: &std::path::Path, role: crate::config::BrokerRole) -> std::sync::Arc<Broker> {
        let config = crate::config::BrokerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            namesrv_listen: None,
            broker_role: role,
            broker_id: if role.is_slave() { 1 } else { 0 },
            load_shipped_plugins: false,
            store: crate::store::StoreConfig {
                max_message_size: 64 << 10,
                ..crate::store::StoreConfig::for_tests(dir)
            },
            ..crate::config::BrokerConfig::default()
        };
        Broker::open(config, None).unwrap()
    }

    fn merge_request(json: &str) -> RemotingCommand {
        RemotingCommand::new_request(
            crate::protocol::request::HA_MERGE_OFFSETS,
            crate::protocol::ExtFields::new(),
        )
        .with_body(json.as_bytes().to_vec())
    }

    #[test]
    fn merging_offsets_never_lowers_and_a_slave_refuses() {
        use crate::config::BrokerRole;
        let d = tempfile::tempdir().unwrap();
        let b = broker(d.path(), BrokerRole::AsyncMaster);
        b.topics.upsert(TopicConfig::new("T", 4)).unwrap();
        b.offsets.commit("g", "T", 0, 10);
        b.offsets.commit("g", "T", 1, 20);
        let body = r#"{"offsetTable": {
            "T@g": {"0": 15, "1": 5, "2": 7, "3": -1},
            "T@g@x": {"0": 4},
            "Gone@g": {"0": 3},
            "T@": {"0": 1},
            "nogroup": {"0": 1}
        }}"#;
        let resp = merge_offsets(&b, &merge_request(body));
        assert_eq!(resp.code, response::SUCCESS, "{:?}", resp.remark);
        let merged: MergedOffsets = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(merged.moved, 3);
        assert_eq!(
            b.offsets.of("g", "T"),
            BTreeMap::from([(0, 15), (1, 20), (2, 7)]),
            "queue 1 is not lowered, a negative offset is not taken"
        );
        assert_eq!(b.offsets.query("g@x", "T", 0), Some(4));
        assert!(
            b.offsets.of("g", "Gone").is_empty(),
            "unknown topic skipped"
        );
        // Persisted before the answer.
        let on_disk = crate::meta::ConsumerOffsets::open(&d.path().join("config")).unwrap();
        assert_eq!(on_disk.query("g", "T", 0), Some(15));
        // The same again moves nothing.
        let resp = merge_offsets(&b, &merge_request(body));
        let merged: MergedOffsets = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(merged.moved, 0);
        // A body that does not parse.
        let resp = merge_offsets(&b, &merge_request("{"));
        assert_eq!(resp.code, response::SYSTEM_ERROR);

        let sd = tempfile::tempdir().unwrap();
        let slave = broker(sd.path(), BrokerRole::Slave);
        slave.topics.upsert(TopicConfig::new("T", 4)).unwrap();
        let resp = merge_offsets(&slave, &merge_request(body));
        assert_eq!(resp.code, response::SERVICE_NOT_AVAILABLE);
        assert!(resp.remark.unwrap_or_default().contains("is a slave"));
        assert!(slave.offsets.of("g", "T").is_empty());
    }

    #[test]
    fn timer_progress_lists_delivered_entries() {
        let t = TimerProgress {
            low: 128,
            words: vec![0b101, 1 << 63],
        };
        assert_eq!(
            t.delivered_above_low().collect::<Vec<_>>(),
            vec![128, 130, 128 + 127]
        );
    }

    #[test]
    fn snapshot_round_trips_and_its_version_follows_the_content() {
        let mut s = MetadataSnapshot {
            broker_name: "broker-a".into(),
            ..MetadataSnapshot::default()
        };
        s.topic_config_table
            .insert("T".into(), TopicConfig::new("T", 4));
        s.offset_table
            .insert("T@g".into(), BTreeMap::from([(0, 5), (3, 9)]));
        s.delay_offset_table.insert(3, 17);
        s.timer = TimerProgress {
            low: 64,
            words: vec![6],
        };
        s.plugins.push(PluginMeta {
            name: "json-filter".into(),
            version: 2,
            sha256: "ab".repeat(32),
            kind: PluginKind::Filter,
            config: vec![("k".into(), "v".into())],
        });
        s.bindings.push(BindingMeta {
            kind: PluginKind::TxnChecker,
            topic: "*".into(),
            plugin: "deadline".into(),
        });
        let s = s.sealed();
        assert_eq!(s.version.len(), 64);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""kind":"txn-checker""#), "{json}");
        assert!(
            json.contains(r#""offsetTable":{"T@g":{"0":5,"3":9}}"#),
            "{json}"
        );
        let back: MetadataSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.content_hash(), s.version);
        let mut changed = back.clone();
        changed.offset_table.get_mut("T@g").unwrap().insert(0, 6);
        assert_ne!(changed.content_hash(), s.version);
    }
}
