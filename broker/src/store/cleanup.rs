//! Retention and the disk guard: deletes commit log segments older than
//! `file_reserved_hours` (or the oldest ones while the disk is fuller than the configured
//! ratio), then the consume-queue and index files that only point into deleted segments.
//! Readers holding a segment keep its mapping valid until they drop it.

use std::time::{Duration, SystemTime};

use super::commit_log::CommitLog;
use super::error::Result;
use super::index::IndexService;
use super::queues::ConsumeQueues;

/// Fraction of the disk holding `dir` that is in use.
pub fn disk_used_ratio(dir: &std::path::Path) -> Option<f64> {
    let s = fs4::statvfs(dir).ok()?;
    if s.total_space() == 0 {
        return None;
    }
    Some(1.0 - s.available_space() as f64 / s.total_space() as f64)
}

/// What one retention pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CleanupReport {
    pub segments_deleted: usize,
    pub queue_files_deleted: usize,
    pub index_files_deleted: usize,
    pub log_min_offset: u64,
}

/// One retention pass at time `now`. `force_oldest` deletes the oldest segment regardless of
/// age (the disk is over its ratio).
pub fn clean(
    log: &CommitLog,
    queues: &ConsumeQueues,
    index: &IndexService,
    reserved: Duration,
    now: SystemTime,
    force_oldest: bool,
) -> Result<CleanupReport> {
    let before = log.segments().len();
    let mut forced = force_oldest;
    let min = log.delete_segments(|seg| {
        let old = seg
            .modified()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age >= reserved);
        if old {
            return true;
        }
        std::mem::take(&mut forced)
    })?;
    let segments_deleted = before - log.segments().len();
    let mut queue_files_deleted = 0;
    if segments_deleted > 0 {
        for cq in queues.all() {
            cq.advance_min(min);
            queue_files_deleted += cq.delete_expired_files()?;
        }
    }
    let index_files_deleted = index.delete_before(min)?;
    Ok(CleanupReport {
        segments_deleted,
        queue_files_deleted,
        index_files_deleted,
        log_min_offset: min,
    })
}
