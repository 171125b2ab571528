//! The checkpoint: how far the commit log and the dispatched structures (consume queues,
//! index) are known durable. Advanced only after the flush it describes; rewritten by
//! write-temp + fsync + rename, so a crash leaves either the old or the new one.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::{IoContext, Result};
use super::mapped_file::sync_dir;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Commit log bytes below this offset are durable.
    pub log_flushed: u64,
    /// Consume-queue and index entries for records below this offset are durable.
    pub dispatched: u64,
}

const MAGIC: &[u8; 8] = b"WQCKPT01";
const LEN: usize = 8 + 8 + 8 + 4;

impl Checkpoint {
    fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..8].copy_from_slice(MAGIC);
        b[8..16].copy_from_slice(&self.log_flushed.to_be_bytes());
        b[16..24].copy_from_slice(&self.dispatched.to_be_bytes());
        let crc = crc32fast::hash(&b[..24]);
        b[24..28].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Checkpoint> {
        if b.len() != LEN || &b[0..8] != MAGIC {
            return None;
        }
        let crc = u32::from_be_bytes([b[24], b[25], b[26], b[27]]);
        if crc != crc32fast::hash(&b[..24]) {
            return None;
        }
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[8..16]);
        let log_flushed = u64::from_be_bytes(x);
        x.copy_from_slice(&b[16..24]);
        Some(Checkpoint {
            log_flushed,
            dispatched: u64::from_be_bytes(x),
        })
    }
}

pub struct CheckpointFile {
    path: PathBuf,
}

impl CheckpointFile {
    pub fn new(dir: &Path) -> CheckpointFile {
        CheckpointFile {
            path: dir.join("checkpoint"),
        }
    }

    /// The stored checkpoint; a missing or unreadable one is all zeros (recovery then verifies
    /// the whole log, which is slow but safe).
    pub fn load(&self) -> Result<Checkpoint> {
        match std::fs::read(&self.path) {
            Ok(b) => Ok(Checkpoint::decode(&b).unwrap_or_else(|| {
                tracing::warn!(path = %self.path.display(), "checkpoint unreadable; verifying the whole log");
                Checkpoint::default()
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Checkpoint::default()),
            Err(e) => Err(super::error::StoreError::io(&self.path, e)),
        }
    }

    pub fn store(&self, cp: &Checkpoint) -> Result<()> {
        write_atomically(&self.path, &cp.encode())
    }
}

/// Replaces `path` with `data` so that a crash leaves either the old or the new content.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp).at(&tmp)?;
        f.write_all(data).at(&tmp)?;
        f.sync_all().at(&tmp)?;
    }
    std::fs::rename(&tmp, path).at(path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let f = CheckpointFile::new(dir.path());
        assert_eq!(f.load().unwrap(), Checkpoint::default());
        let cp = Checkpoint {
            log_flushed: 123456,
            dispatched: 1234,
        };
        f.store(&cp).unwrap();
        assert_eq!(f.load().unwrap(), cp);
        let mut raw = std::fs::read(dir.path().join("checkpoint")).unwrap();
        raw[10] ^= 1;
        std::fs::write(dir.path().join("checkpoint"), raw).unwrap();
        assert_eq!(f.load().unwrap(), Checkpoint::default());
    }
}
