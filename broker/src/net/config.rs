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
    /// Stop gathering queued responses into one write once this many bytes are buffered. Default 256 KiB.
    pub write_coalesce_bytes: usize,
    /// Bodies at least this large are written from their own buffer instead of being copied. Default 16 KiB.
    pub write_copy_threshold: usize,
    /// Requests of one connection being handled at once (held long polls included; responses from the
    /// peer are not requests). Past it the connection's reader stops taking requests, so more wait in the
    /// socket and TCP pushes back on the peer. A slot is freed when the response is queued for writing
    /// (for a oneway request, when its handler returns). Default 4096; at least 1.
    pub max_inflight_per_connection: usize,
    /// Requests of one connection handled in a row on its reader's task before the reader yields to
    /// other tasks: a connection flooding the broker with costly requests takes turns with the others.
    /// Default 64; at least 1.
    pub inline_burst: usize,
    /// Bytes queued for writing to one peer (responses and requests to it, header estimate + body).
    /// Past it, whoever queues more waits for the writer; one command larger than the whole bound is
    /// still sent, alone. Default 64 MiB.
    pub max_queued_response_bytes: usize,
    /// Close a connection whose peer accepts no byte for this long while something waits to be
    /// written to it (a peer that reads slowly is never closed by this). `None` disables it (outbound
    /// clients: a server pushing back is not a fault). Default 10 s.
    pub write_stall_timeout: Option<Duration>,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            idle_timeout: Some(Duration::from_secs(120)),
            max_connections: 10_000,
            write_coalesce_bytes: 256 * 1024,
            write_copy_threshold: 16 * 1024,
            max_inflight_per_connection: 4096,
            inline_burst: 64,
            max_queued_response_bytes: 64 << 20,
            write_stall_timeout: Some(Duration::from_secs(10)),
        }
    }
}

impl NetConfig {
    /// Defaults for an outbound client connection: no idle timeout, and a server that stops reading
    /// our requests (it pushes back) does not close the connection; requests time out on their own.
    pub fn client() -> Self {
        Self {
            idle_timeout: None,
            write_stall_timeout: None,
            ..Self::default()
        }
    }
}
