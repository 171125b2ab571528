//! `wasmq route`: which router plugin decides where messages sent to a topic go.

use anyhow::Result;
use clap::Subcommand;

use crate::rpc::Cluster;

#[derive(Subcommand, Debug)]
pub enum RouteCmd {
    /// Bind a loaded router plugin to a topic (`*`: every topic without its own).
    Bind {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        plugin: String,
    },
    /// Remove a topic's router binding (sends go where clients send them again).
    Unbind {
        #[arg(long)]
        topic: String,
    },
    /// The router bindings of every broker.
    List,
}

const KIND: &str = "router";

pub async fn run(c: &mut Cluster, cmd: RouteCmd) -> Result<()> {
    match cmd {
        RouteCmd::Bind { topic, plugin } => crate::binding::bind(c, KIND, &topic, &plugin).await,
        RouteCmd::Unbind { topic } => crate::binding::unbind(c, KIND, &topic).await,
        RouteCmd::List => crate::binding::list(c, KIND).await,
    }
}
