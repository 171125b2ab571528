//! Topic configurations: queue counts and permissions per topic (`topics.json`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::{load_json, store_json, MetaError};

pub const PERM_INHERIT: u32 = 1;
pub const PERM_WRITE: u32 = 2;
pub const PERM_READ: u32 = 4;

/// Longest topic name (the stored record's 1-byte length).
pub const MAX_TOPIC_LEN: usize = 127;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopicConfig {
    pub topic_name: String,
    pub read_queue_nums: u32,
    pub write_queue_nums: u32,
    pub perm: u32,
    #[serde(default)]
    pub topic_sys_flag: u32,
    #[serde(default)]
    pub order: bool,
}

impl TopicConfig {
    pub fn new(name: &str, queues: u32) -> TopicConfig {
        TopicConfig {
            topic_name: name.to_string(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: PERM_READ | PERM_WRITE,
            topic_sys_flag: 0,
            order: false,
        }
    }
    pub fn writable(&self) -> bool {
        self.perm & PERM_WRITE != 0
    }
    pub fn readable(&self) -> bool {
        self.perm & PERM_READ != 0
    }
}

/// RocketMQ's rule: 1..=127 characters of `[%|a-zA-Z0-9_-]`.
pub fn validate_topic_name(name: &str) -> Result<(), MetaError> {
    let bad = |reason| {
        Err(MetaError::InvalidTopic {
            name: name.chars().take(200).collect(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_TOPIC_LEN {
        return bad("longer than 127 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
    {
        return bad("only letters, digits, %, |, _ and - are allowed");
    }
    Ok(())
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TopicsFile {
    topic_config_table: HashMap<String, TopicConfig>,
}

pub struct TopicTable {
    path: PathBuf,
    map: RwLock<HashMap<String, Arc<TopicConfig>>>,
}

impl TopicTable {
    pub fn open(dir: &Path) -> Result<TopicTable, MetaError> {
        let path = dir.join("topics.json");
        let file: TopicsFile = load_json(&path)?.unwrap_or_default();
        let map = file
            .topic_config_table
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect();
        Ok(TopicTable {
            path,
            map: RwLock::new(map),
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<TopicConfig>> {
        self.map.read().get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<TopicConfig>> {
        let mut v: Vec<_> = self.map.read().values().cloned().collect();
        v.sort_by(|a, b| a.topic_name.cmp(&b.topic_name));
        v
    }

    /// Creates or replaces a topic and persists the table before returning.
    pub fn upsert(&self, cfg: TopicConfig) -> Result<Arc<TopicConfig>, MetaError> {
        validate_topic_name(&cfg.topic_name)?;
        let cfg = Arc::new(cfg);
        let mut map = self.map.write();
        map.insert(cfg.topic_name.clone(), cfg.clone());
        self.persist(&map)?;
        Ok(cfg)
    }

    /// Returns the topic, creating it with `queues` queues if missing.
    pub fn get_or_create(&self, name: &str, queues: u32) -> Result<Arc<TopicConfig>, MetaError> {
        if let Some(t) = self.get(name) {
            return Ok(t);
        }
        validate_topic_name(name)?;
        let mut map = self.map.write();
        if let Some(t) = map.get(name) {
            return Ok(t.clone());
        }
        let cfg = Arc::new(TopicConfig::new(name, queues));
        map.insert(name.to_string(), cfg.clone());
        self.persist(&map)?;
        Ok(cfg)
    }

    pub fn delete(&self, name: &str) -> Result<bool, MetaError> {
        let mut map = self.map.write();
        let existed = map.remove(name).is_some();
        if existed {
            self.persist(&map)?;
        }
        Ok(existed)
    }

    fn persist(&self, map: &HashMap<String, Arc<TopicConfig>>) -> Result<(), MetaError> {
        let file = TopicsFile {
            topic_config_table: map
                .iter()
                .map(|(k, v)| (k.clone(), (**v).clone()))
                .collect(),
        };
        store_json(&self.path, &file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_topic_name("TopicTest").is_ok());
        assert!(validate_topic_name("%RETRY%group_1").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"x".repeat(128)).is_err());
    }

    #[test]
    fn persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let t = TopicTable::open(dir.path()).unwrap();
        t.upsert(TopicConfig::new("A", 8)).unwrap();
        t.get_or_create("B", 4).unwrap();
        assert_eq!(t.get_or_create("A", 1).unwrap().read_queue_nums, 8);
        assert!(t.upsert(TopicConfig::new("bad name", 1)).is_err());
        drop(t);
        let t = TopicTable::open(dir.path()).unwrap();
        assert_eq!(t.all().len(), 2);
        assert_eq!(t.get("B").unwrap().write_queue_nums, 4);
        assert!(t.delete("B").unwrap());
        drop(t);
        let t = TopicTable::open(dir.path()).unwrap();
        assert!(t.get("B").is_none());
    }
}
