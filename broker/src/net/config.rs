//! Tunables of the remoting transport.

use std::time::Duration;

use crate::protocol::DEFAULT_MAX_FRAME_LEN;

/// Transport settings shared by the server and outbound clients.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Largest accepted frame (declared length after the first length word). Default 16 MiB.
    pub max_frame_len: usize,
    /// Close a connection that sent no complete frame for this long. `None` disables it.
    /// Default 120 s (clients heartbeat every 30 s).
    pub idle_timeout: Option<Duration>,
    /// Connections beyond this many are closed right after accept. Default 10 000.
    pub max_connections: usize,
    /// Capacity of each connection's outbound queue (responses and broker->client requests). Default 4096.
    pub write_queue: usize,
    /// Stop gathering queued responses into one write once this many bytes are buffered. Default 256 KiB.
    pub write_coalesce_bytes: usize,
    /// Bodies at least this large are written from their own buffer instead of being copied. Default 16 KiB.
    pub write_copy_threshold: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            idle_timeout: Some(Duration::from_secs(120)),
            max_connections: 10_000,
            write_queue: 4096,
            write_coalesce_bytes: 256 * 1024,
            write_copy_threshold: 16 * 1024,
        }
    }
}

impl NetConfig {
    /// Defaults for an outbound client connection: no idle timeout.
    pub fn client() -> Self {
        Self {
            idle_timeout: None,
            ..Self::default()
        }
    }
}
