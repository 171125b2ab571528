//! Store configuration: sizes, flush policy, retention, limits.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{Result, StoreError};

/// When a put is acknowledged relative to the durability of its bytes. Read from
/// `conf/broker.toml` (serde) and from `--flush` (clap), both lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum FlushMode {
    /// A put completes only after its bytes are durable (`fdatasync`); concurrent puts share
    /// one flush (group commit).
    Sync,
    /// A put completes once its bytes are in the page cache; a flusher makes them durable every
    /// `flush_interval_ms`. A process crash loses nothing; an OS crash may lose the last interval.
    Async,
}

/// Storage engine settings. Every field has a documented default; see `conf/broker.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Root directory of the store (commit log, consume queues, index, checkpoint, metadata).
    pub dir: PathBuf,
    /// Size of one commit log segment file in bytes (default 1 GiB).
    pub commit_log_segment_size: u64,
    /// Write zeros over each new commit log segment before use (in the background), so that
    /// a flush after an append writes only data, not filesystem metadata too. Unset: only
    /// under `sync` flush, where every acknowledged put waits for a flush.
    pub commit_log_zero_fill: Option<bool>,
    /// Consume-queue entries per consume-queue file (20 bytes each; default 300,000).
    pub consume_queue_entries_per_file: u64,
    /// Index: hash slots per index file (default 5,000,000).
    pub index_slots: u32,
    /// Index: entries per index file (default 20,000,000).
    pub index_entries: u32,
    pub flush_mode: FlushMode,
    /// Async mode: how often the flusher runs (default 500 ms).
    pub flush_interval_ms: u64,
    /// Sync mode: a put whose flush takes longer than this answers `FlushDiskTimeout` (default 5 s).
    pub sync_flush_timeout_ms: u64,
    /// Unflushed commit-log bytes past which sends wait for the flusher (bounded by
    /// `wait_time_ms_in_send_queue`, then SYSTEM_BUSY). Default 512 MiB.
    pub max_dirty_bytes: u64,
    /// How often the checkpoint file is rewritten with the flushed offsets (default 1 s).
    pub checkpoint_interval_ms: u64,
    /// Largest message body accepted (default 4 MiB).
    pub max_message_size: usize,
    /// Largest properties string accepted (default 32,767, the on-disk i16 limit).
    pub max_properties_size: usize,
    /// Writes are refused with `DiskFull` while the disk holding the store is fuller than this
    /// ratio (default 0.95).
    pub disk_max_used_ratio: f64,
    /// Commit log segments older than this are deleted by retention (default 72 h).
    pub file_reserved_hours: f64,
    /// How often retention and the disk check run (default 10 s).
    pub cleanup_interval_ms: u64,
    /// Recovery normally refuses to start when a record *before* the last valid record of the
    /// log is damaged. `true` truncates the log at the first damaged record instead, dropping
    /// every record after it (an operator's explicit choice).
    pub allow_truncate_on_corruption: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            dir: PathBuf::from("./data/store"),
            commit_log_segment_size: 1 << 30,
            commit_log_zero_fill: None,
            consume_queue_entries_per_file: 300_000,
            index_slots: 5_000_000,
            index_entries: 20_000_000,
            flush_mode: FlushMode::Async,
            flush_interval_ms: 500,
            sync_flush_timeout_ms: 5_000,
            max_dirty_bytes: 512 << 20,
            checkpoint_interval_ms: 1_000,
            max_message_size: 4 * 1024 * 1024,
            max_properties_size: i16::MAX as usize,
            disk_max_used_ratio: 0.95,
            file_reserved_hours: 72.0,
            cleanup_interval_ms: 10_000,
            allow_truncate_on_corruption: false,
        }
    }
}

impl StoreConfig {
    /// A configuration for tests: small segments and index files under `dir`.
    pub fn for_tests(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            dir: dir.into(),
            commit_log_segment_size: 1 << 20,
            consume_queue_entries_per_file: 1024,
            index_slots: 1024,
            index_entries: 4096,
            ..StoreConfig::default()
        }
    }

    /// Whether new commit log segments are zero-filled (see `commit_log_zero_fill`).
    pub fn zero_fill(&self) -> bool {
        self.commit_log_zero_fill
            .unwrap_or(self.flush_mode == FlushMode::Sync)
    }

    /// Checks the settings against each other and against the on-disk format's limits.
    pub fn validate(&self) -> Result<()> {
        let err = |m: String| Err(StoreError::Config(m));
        if self.commit_log_segment_size < 64 * 1024 {
            return err(format!(
                "commit_log_segment_size {} is below the 64 KiB minimum",
                self.commit_log_segment_size
            ));
        }
        let max_record = self.max_message_size as u64 + self.max_properties_size as u64 + 512;
        if max_record > self.commit_log_segment_size {
            return err(format!(
                "a record of max_message_size {} (+ properties) does not fit a segment of {}",
                self.max_message_size, self.commit_log_segment_size
            ));
        }
        if self.max_message_size > i32::MAX as usize / 2 {
            return err("max_message_size must be below 1 GiB".into());
        }
        if self.max_properties_size > i16::MAX as usize {
            return err(format!(
                "max_properties_size must be at most {} (stored as i16)",
                i16::MAX
            ));
        }
        if self.consume_queue_entries_per_file == 0 {
            return err("consume_queue_entries_per_file must be positive".into());
        }
        if self.index_slots == 0 || self.index_entries < 2 {
            return err("index_slots must be positive and index_entries at least 2".into());
        }
        if !(0.0..=1.0).contains(&self.disk_max_used_ratio) {
            return err("disk_max_used_ratio must be within 0..=1".into());
        }
        if self.file_reserved_hours.is_nan() || self.file_reserved_hours <= 0.0 {
            return err("file_reserved_hours must be positive".into());
        }
        if self.flush_interval_ms == 0 || self.checkpoint_interval_ms == 0 {
            return err("flush_interval_ms and checkpoint_interval_ms must be positive".into());
        }
        if self.max_dirty_bytes == 0 {
            return err(
                "max_dirty_bytes must be positive (for sends acknowledged only once flushed, use flush_mode = \"sync\")"
                    .into(),
            );
        }
        Ok(())
    }

    pub(crate) fn sync_flush_timeout(&self) -> Duration {
        Duration::from_millis(self.sync_flush_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_parses_and_matches_defaults() {
        #[derive(Deserialize)]
        struct File {
            store: StoreConfig,
        }
        let text = include_str!("../../../conf/broker.toml");
        let f: File = toml::from_str(text).unwrap();
        f.store.validate().unwrap();
        let d = StoreConfig::default();
        assert_eq!(f.store.commit_log_segment_size, d.commit_log_segment_size);
        assert_eq!(f.store.flush_mode, d.flush_mode);
        assert!(toml::from_str::<StoreConfig>("no_such_key = 1").is_err());
    }

    #[test]
    fn validate_rejects_bad_values() {
        let mut c = StoreConfig::for_tests("/tmp/x");
        c.commit_log_segment_size = 1000;
        assert!(c.validate().is_err());
        let mut c = StoreConfig::for_tests("/tmp/x");
        c.disk_max_used_ratio = 1.5;
        assert!(c.validate().is_err());
        let mut c = StoreConfig::for_tests("/tmp/x");
        c.max_message_size = 2 << 20;
        assert!(c.validate().is_err(), "does not fit a 1 MiB test segment");
        let mut c = StoreConfig::for_tests("/tmp/x");
        c.max_dirty_bytes = 0;
        assert!(c.validate().is_err());
    }
}
