//! `wasmq`: the command-line tool for a wasmq (or RocketMQ-protocol) cluster: topics, send,
//! consume, queries, consumer offsets, replication status, quotas and load generation. Every
//! command takes `--namesrv`.

mod args;
mod bench;
mod binding;
mod cluster;
mod commands;
mod consume;
mod message;
mod plugin;
mod quota;
mod route;
mod rpc;
/// The plugin SDK this binary carries (written into new crates).
mod sdk;
mod txn;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "wasmq", version, about = "wasmq command-line tool")]
pub struct Cli {
    /// NameServer address.
    #[arg(long, global = true, default_value = "127.0.0.1:9876")]
    pub namesrv: String,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create, list, show the route of, or delete topics.
    Topic {
        #[command(subcommand)]
        cmd: TopicCmd,
    },
    /// Send messages.
    Send(commands::SendArgs),
    /// Consume messages with a group (pull), printing each.
    Consume(consume::ConsumeArgs),
    /// Look messages up by key, unique key or offset message id.
    Query(commands::QueryArgs),
    /// A group's committed offsets, max offsets and lag per queue; `offsets reset` rewinds.
    Offsets(commands::OffsetsArgs),
    /// Dead letters of a consumer group: list them or resend them to their original topic.
    Dlq {
        #[command(subcommand)]
        cmd: commands::DlqCmd,
    },
    /// WebAssembly plugins (filters, txn-checkers, routers): load, upgrade, unload, list, test, new.
    Plugin {
        #[command(subcommand)]
        cmd: plugin::PluginCmd,
    },
    /// Router plugins bound to topics: bind, unbind, list.
    Route {
        #[command(subcommand)]
        cmd: route::RouteCmd,
    },
    /// Transactions: pending half messages, txn-checker bindings, operator commit/rollback.
    Txn {
        #[command(subcommand)]
        cmd: txn::TxnCmd,
    },
    /// Broker groups: each broker's id, role, addresses and commit-log offset; per slave the
    /// offset it holds, its lag in bytes and time, and whether it is in sync.
    Cluster(cluster::ClusterArgs),
    /// Quotas per topic (sends) and consumer group (pulls), msgs/s and bytes/s: set, list
    /// (with current rates and rejections), remove.
    Quota {
        #[command(subcommand)]
        cmd: quota::QuotaCmd,
    },
    /// Load generators printing msgs/s, MB/s and latency percentiles.
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum TopicCmd {
    Create {
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 4)]
        queues: u32,
        /// Permission bits: 2 write, 4 read, 6 both.
        #[arg(long, default_value_t = 6)]
        perm: u32,
    },
    List,
    Route {
        #[arg(long)]
        topic: String,
    },
    Delete {
        #[arg(long)]
        topic: String,
    },
}

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(commands::run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
