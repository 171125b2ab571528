//! `RemotingClient`: an outbound connection (CLI, broker -> NameServer) with requests multiplexed by opaque.
//! Requests the peer sends us on it (e.g. NOTIFY_CONSUMER_IDS_CHANGED) go to an optional handler.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::watch;

use super::config::NetConfig;
use super::connection::{new_connection, Connection};
use super::driver::drive;
use super::error::NetError;
use super::handler::{NotSupportedHandler, RequestHandler};
use crate::protocol::RemotingCommand;

/// An outbound remoting connection. Dropping it closes the connection.
pub struct RemotingClient {
    conn: Arc<Connection>,
    _shutdown: watch::Sender<bool>,
}

impl RemotingClient {
    /// Connects with client defaults; peer requests are answered REQUEST_CODE_NOT_SUPPORTED.
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Self, NetError> {
        Self::connect_with(addr, NetConfig::client(), None).await
    }

    /// Connects with `config`; requests from the peer go to `handler` (default: not supported).
    pub async fn connect_with(
        addr: impl ToSocketAddrs,
        config: NetConfig,
        handler: Option<Arc<dyn RequestHandler>>,
    ) -> Result<Self, NetError> {
        let stream = TcpStream::connect(addr).await?;
        let (conn, rx) = new_connection(&stream, &config)?;
        let handler = handler.unwrap_or_else(|| Arc::new(NotSupportedHandler));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        tokio::spawn(drive(
            conn.clone(),
            stream,
            rx,
            handler,
            config,
            shutdown_rx,
        ));
        Ok(Self {
            conn,
            _shutdown: shutdown_tx,
        })
    }

    /// Sends `cmd` as a request and waits for the response.
    pub async fn invoke(
        &self,
        cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, NetError> {
        self.conn.request(cmd, timeout).await
    }

    /// Sends `cmd` as a oneway request.
    pub fn invoke_oneway(&self, cmd: RemotingCommand) -> Result<(), NetError> {
        self.conn.send_oneway(cmd)
    }

    /// The underlying connection (id, addresses, closed state).
    pub fn connection(&self) -> &Arc<Connection> {
        &self.conn
    }

    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    pub fn close(&self) {
        self.conn.close();
    }
}

impl Drop for RemotingClient {
    fn drop(&mut self) {
        self.conn.close();
    }
}
