//! Broker metadata persisted beside the store: topic configs and consumer offsets. Both are
//! small JSON files replaced atomically (write temp, fsync, rename, fsync dir).

pub mod offsets;
pub mod topics;

pub use offsets::ConsumerOffsets;
pub use topics::{TopicConfig, TopicTable};

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {source}")]
    Parse {
        path: std::path::PathBuf,
        source: serde_json::Error,
    },
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic { name: String, reason: &'static str },
}

/// Reads a JSON file, `None` if it does not exist.
fn load_json<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> Result<Option<T>, MetaError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| MetaError::Parse {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(MetaError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn store_json<T: serde::Serialize>(path: &std::path::Path, v: &T) -> Result<(), MetaError> {
    let bytes = serde_json::to_vec_pretty(v).map_err(|source| MetaError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(crate::store::checkpoint::write_atomically(path, &bytes)?)
}
