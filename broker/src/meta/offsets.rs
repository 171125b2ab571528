//! Consumer offsets: per group, topic and queue, the next queue offset the group will consume
//! (`consumerOffset.json`, RocketMQ's `topic@group` keys). Commits update memory; the table is
//! persisted by [`ConsumerOffsets::persist_if_dirty`] (periodically and at shutdown).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::{load_json, store_json, MetaError};

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct OffsetsFile {
    offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
}

fn key(group: &str, topic: &str) -> String {
    format!("{topic}@{group}")
}

pub struct ConsumerOffsets {
    path: PathBuf,
    table: RwLock<HashMap<String, BTreeMap<i32, i64>>>,
    dirty: AtomicBool,
    persist_lock: Mutex<()>,
}

impl ConsumerOffsets {
    pub fn open(dir: &Path) -> Result<ConsumerOffsets, MetaError> {
        let path = dir.join("consumerOffset.json");
        let file: OffsetsFile = load_json(&path)?.unwrap_or_default();
        Ok(ConsumerOffsets {
            path,
            table: RwLock::new(file.offset_table.into_iter().collect()),
            dirty: AtomicBool::new(false),
            persist_lock: Mutex::new(()),
        })
    }

    pub fn commit(&self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        let k = key(group, topic);
        let mut t = self.table.write();
        let q = t.entry(k).or_default();
        if q.get(&queue_id) != Some(&offset) {
            q.insert(queue_id, offset);
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// Commits `offset` only where it is larger than the one held (or none is held), under one
    /// lock hold, so a concurrent commit is never lowered (replication merges offsets this
    /// way). Whether the offset moved.
    pub fn advance(&self, group: &str, topic: &str, queue_id: i32, offset: i64) -> bool {
        let k = key(group, topic);
        let mut t = self.table.write();
        let q = t.entry(k).or_default();
        if q.get(&queue_id).is_some_and(|&have| have >= offset) {
            return false;
        }
        q.insert(queue_id, offset);
        self.dirty.store(true, Ordering::Release);
        true
    }

    pub fn query(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.table
            .read()
            .get(&key(group, topic))?
            .get(&queue_id)
            .copied()
    }

    /// Offsets of a group on a topic, by queue.
    pub fn of(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        self.table
            .read()
            .get(&key(group, topic))
            .cloned()
            .unwrap_or_default()
    }

    /// Every (group, topic) with committed offsets.
    pub fn groups(&self) -> Vec<(String, String)> {
        self.table
            .read()
            .keys()
            .filter_map(|k| {
                let (t, g) = k.rsplit_once('@')?;
                Some((g.to_string(), t.to_string()))
            })
            .collect()
    }

    /// Writes the table if anything changed since the last write.
    pub fn persist_if_dirty(&self) -> Result<bool, MetaError> {
        let _one = self.persist_lock.lock();
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(false);
        }
        let file = OffsetsFile {
            offset_table: self
                .table
                .read()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        if let Err(e) = store_json(&self.path, &file) {
            self.dirty.store(true, Ordering::Release);
            return Err(e);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_query_persist() {
        let dir = tempfile::tempdir().unwrap();
        let o = ConsumerOffsets::open(dir.path()).unwrap();
        assert_eq!(o.query("g", "t", 0), None);
        o.commit("g", "t", 0, 5);
        o.commit("g", "t", 3, 9);
        o.commit("g2", "t", 0, 1);
        assert_eq!(o.query("g", "t", 3), Some(9));
        assert!(o.persist_if_dirty().unwrap());
        assert!(!o.persist_if_dirty().unwrap());
        drop(o);
        let o = ConsumerOffsets::open(dir.path()).unwrap();
        assert_eq!(o.query("g", "t", 0), Some(5));
        assert_eq!(o.of("g", "t").len(), 2);
        assert_eq!(o.groups().len(), 2);
    }

    #[test]
    fn advance_never_lowers() {
        let dir = tempfile::tempdir().unwrap();
        let o = ConsumerOffsets::open(dir.path()).unwrap();
        assert!(o.advance("g", "t", 0, 5));
        assert!(o.persist_if_dirty().unwrap());
        assert!(!o.advance("g", "t", 0, 5));
        assert!(!o.advance("g", "t", 0, 4));
        assert!(
            !o.persist_if_dirty().unwrap(),
            "nothing moved, nothing to write"
        );
        assert!(o.advance("g", "t", 0, 6));
        assert_eq!(o.query("g", "t", 0), Some(6));
    }
}
