//! The table of consume queues by topic and queue id.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use super::consume_queue::ConsumeQueue;
use super::error::{IoContext, Result, StoreError};

/// File under the consume-queue root listing every queue (`topic TAB queue id` per line).
const MANIFEST: &str = "manifest";

type Table = HashMap<Arc<str>, Vec<Option<Arc<ConsumeQueue>>>>;

pub struct ConsumeQueues {
    root: PathBuf,
    entries_per_file: u64,
    table: RwLock<Table>,
}

impl ConsumeQueues {
    /// Opens every queue under `root` (`<topic>/<queue id>/`), fixed against the log's bounds.
    pub fn open(
        root: &Path,
        entries_per_file: u64,
        log_min: u64,
        log_end: u64,
    ) -> Result<ConsumeQueues> {
        std::fs::create_dir_all(root).at(root)?;
        let mut table: Table = HashMap::new();
        for t in std::fs::read_dir(root).at(root)? {
            let t = t.at(root)?;
            let topic = t.file_name().to_string_lossy().into_owned();
            if !t.file_type().at(&t.path())?.is_dir() {
                continue;
            }
            for q in std::fs::read_dir(t.path()).at(&t.path())? {
                let q = q.at(&t.path())?;
                let name = q.file_name().to_string_lossy().into_owned();
                let qid: i32 = name.parse().map_err(|_| StoreError::Corruption {
                    file: q.path(),
                    offset: 0,
                    reason: "consume queue directory is not a queue id".into(),
                })?;
                let cq = ConsumeQueue::open(root, &topic, qid, entries_per_file, log_min, log_end)?;
                let v = table.entry(topic.as_str().into()).or_default();
                if v.len() <= qid as usize {
                    v.resize(qid as usize + 1, None);
                }
                v[qid as usize] = Some(Arc::new(cq));
            }
        }
        Ok(ConsumeQueues {
            root: root.to_path_buf(),
            entries_per_file,
            table: RwLock::new(table),
        })
    }

    pub fn get(&self, topic: &str, queue_id: i32) -> Option<Arc<ConsumeQueue>> {
        if queue_id < 0 {
            return None;
        }
        self.table
            .read()
            .get(topic)?
            .get(queue_id as usize)?
            .clone()
    }

    pub fn get_or_create(&self, topic: &str, queue_id: i32) -> Result<Arc<ConsumeQueue>> {
        if let Some(cq) = self.get(topic, queue_id) {
            return Ok(cq);
        }
        let mut t = self.table.write();
        let v = t.entry(topic.into()).or_default();
        if v.len() <= queue_id as usize {
            v.resize(queue_id as usize + 1, None);
        }
        if let Some(cq) = &v[queue_id as usize] {
            return Ok(cq.clone());
        }
        let cq = Arc::new(ConsumeQueue::open(
            &self.root,
            topic,
            queue_id,
            self.entries_per_file,
            0,
            u64::MAX,
        )?);
        v[queue_id as usize] = Some(cq.clone());
        self.write_manifest(&t)?;
        Ok(cq)
    }

    /// Records which queues exist (rewritten when a queue is created, which is rare), so a
    /// queue whose directory disappears is noticed and rebuilt on the next open.
    fn write_manifest(&self, t: &Table) -> Result<()> {
        let mut s = String::new();
        for (topic, v) in t.iter() {
            for (qid, q) in v.iter().enumerate() {
                if q.is_some() {
                    s.push_str(&format!("{topic}\t{qid}\n"));
                }
            }
        }
        super::checkpoint::write_atomically(&self.root.join(MANIFEST), s.as_bytes())
    }

    /// Queues the manifest lists that have no directory any more.
    pub fn missing_from_manifest(&self) -> Vec<(Arc<str>, i32)> {
        let text = std::fs::read_to_string(self.root.join(MANIFEST)).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let (t, q) = l.split_once('\t')?;
                Some((t, q.parse::<i32>().ok()?))
            })
            .filter(|(t, q)| self.get(t, *q).is_none())
            .map(|(t, q)| (Arc::<str>::from(t), q))
            .collect()
    }

    /// Deletes a queue's files and starts it empty (before a rebuild from the log).
    pub fn reset(&self, topic: &str, queue_id: i32) -> Result<Arc<ConsumeQueue>> {
        let dir = self.root.join(topic).join(queue_id.to_string());
        if let Some(v) = self.table.write().get_mut(topic) {
            if let Some(slot) = v.get_mut(queue_id as usize) {
                *slot = None;
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&dir, e)),
        }
        self.get_or_create(topic, queue_id)
    }

    pub fn all(&self) -> Vec<Arc<ConsumeQueue>> {
        self.table
            .read()
            .values()
            .flat_map(|v| v.iter().flatten().cloned())
            .collect()
    }

    /// Next queue offset of every queue, for the commit log's counters.
    pub fn offset_table(&self) -> HashMap<Box<str>, Vec<u64>> {
        self.table
            .read()
            .iter()
            .map(|(t, v)| {
                let offs = v
                    .iter()
                    .map(|q| q.as_ref().map(|q| q.max_offset()).unwrap_or(0));
                (Box::<str>::from(&**t), offs.collect())
            })
            .collect()
    }

    /// Queue ids that exist for `topic`.
    pub fn queue_ids(&self, topic: &str) -> Vec<i32> {
        self.table
            .read()
            .get(topic)
            .map(|v| {
                v.iter()
                    .enumerate()
                    .filter(|(_, q)| q.is_some())
                    .map(|(i, _)| i as i32)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn flush(&self) -> std::io::Result<()> {
        for cq in self.all() {
            cq.flush()?;
        }
        Ok(())
    }
}
