//! `wasmq-namesrv`: a standalone NameServer that brokers register with and clients ask for
//! routes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use wasmq::namesrv::{NameServer, NameServerHandler};
use wasmq::net::NetConfig;

#[derive(Parser, Debug)]
#[command(name = "wasmq-namesrv", version, about = "wasmq NameServer")]
struct Args {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:9876")]
    listen: SocketAddr,
}

fn main() -> anyhow::Result<()> {
    wasmq::logging::init();
    let args = Args::parse();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let ns = Arc::new(NameServer::default());
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        tracing::info!(addr = %args.listen, "NameServer listening");
        let (tx, rx) = tokio::sync::watch::channel(false);
        let expirer = ns.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_secs(10));
            loop {
                t.tick().await;
                expirer.expire();
            }
        });
        let server = tokio::spawn(wasmq::net::serve(
            listener,
            Arc::new(NameServerHandler(ns)),
            NetConfig::default(),
            rx,
        ));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let _ = tx.send(true);
        let _ = server.await;
        anyhow::Ok(())
    })
}
