//! Delay levels (RocketMQ's scheduled messages): each level's delivery progress, persisted in `config/delayOffset.json`. The per-level delivery
//! tasks (`crate::schedule`) advance it.

use std::collections::BTreeMap;

use parking_lot::Mutex;

pub use crate::config::DelayLevels;

/// Where delayed messages wait: queue `level - 1`.
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";

/// Per-level progress, persisted.
pub struct ScheduleState {
    path: std::path::PathBuf,
    offsets: Mutex<BTreeMap<i32, u64>>,
}

impl ScheduleState {
    pub fn open(dir: &std::path::Path) -> ScheduleState {
        let path = dir.join("delayOffset.json");
        let offsets = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<BTreeMap<i32, u64>>(&b).ok())
            .unwrap_or_default();
        ScheduleState {
            path,
            offsets: Mutex::new(offsets),
        }
    }

    pub fn offset(&self, level: i32) -> u64 {
        self.offsets.lock().get(&level).copied().unwrap_or(0)
    }

    pub fn advance(&self, level: i32, next: u64) -> Result<(), crate::store::StoreError> {
        let snapshot = {
            let mut o = self.offsets.lock();
            o.insert(level, next);
            o.clone()
        };
        let bytes = serde_json::to_vec(&snapshot).unwrap_or_default();
        crate::store::checkpoint::write_atomically(&self.path, &bytes)
    }
}
