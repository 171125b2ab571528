//! Errors of the storage layer.

use std::path::PathBuf;

/// Everything that can go wrong opening, recovering or operating the store.
///
/// Per-message outcomes of a put (oversized message, disk full, flush timeout) are not errors
/// but a [`PutStatus`](super::PutStatus): the store keeps serving after them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store directory {0} is locked by another process")]
    Locked(PathBuf),
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// Data that was valid once is damaged somewhere other than the tail of the log.
    #[error("corruption in {file} at offset {offset}: {reason}")]
    Corruption {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("store is read-only: {0}")]
    ReadOnly(String),
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Adds the path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| StoreError::io(path, e))
    }
}
