//! `wasmq txn`: pending transactional (half) messages on every broker, the txn-checker plugin
//! bound to each topic, and an operator's commit or rollback of a half message.

use anyhow::{bail, Result};
use clap::Subcommand;
use wasmq::protocol::{request, RemotingCommand};

use crate::rpc::{ext, Cluster};

#[derive(Subcommand, Debug)]
pub enum TxnCmd {
    /// Pending half messages: offset, topic, queue, producer group, age, checks, state.
    List {
        #[arg(long)]
        topic: Option<String>,
        /// Print the brokers' JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bind a loaded txn-checker plugin to a topic (`*`: every topic without its own).
    Bind {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        plugin: String,
    },
    /// Remove a topic's txn-checker binding.
    Unbind {
        #[arg(long)]
        topic: String,
    },
    /// The txn-checker bindings of every broker.
    Bindings,
    /// Commit a pending half message by its commit log offset (as `txn list` shows it).
    Commit(ResolveArgs),
    /// Roll back a pending half message by its commit log offset.
    Rollback(ResolveArgs),
}

#[derive(clap::Args, Debug)]
pub struct ResolveArgs {
    #[arg(long)]
    offset: u64,
    /// The broker holding it (needed when the cluster has several).
    #[arg(long)]
    broker: Option<String>,
}

const KIND: &str = "txn-checker";

pub async fn run(c: &mut Cluster, cmd: TxnCmd) -> Result<()> {
    match cmd {
        TxnCmd::List { topic, json } => list(c, topic.as_deref(), json).await,
        TxnCmd::Bind { topic, plugin } => crate::binding::bind(c, KIND, &topic, &plugin).await,
        TxnCmd::Unbind { topic } => crate::binding::unbind(c, KIND, &topic).await,
        TxnCmd::Bindings => crate::binding::list(c, KIND).await,
        TxnCmd::Commit(a) => resolve(c, a, "commit").await,
        TxnCmd::Rollback(a) => resolve(c, a, "rollback").await,
    }
}

async fn list(c: &mut Cluster, topic: Option<&str>, json: bool) -> Result<()> {
    for b in c.brokers().await? {
        let mut fields = vec![];
        if let Some(t) = topic {
            fields.push(("topic", t));
        }
        let r = c
            .call_ok(
                &b,
                RemotingCommand::new_request(request::TXN_LIST, ext(&fields)),
            )
            .await?;
        let v: serde_json::Value = serde_json::from_slice(&r.body)?;
        if json {
            println!("{}", serde_json::json!({ "broker": b, "pending": v }));
            continue;
        }
        let rows = v.as_array().cloned().unwrap_or_default();
        println!("broker {b}: {} pending", rows.len());
        if rows.is_empty() {
            continue;
        }
        println!(
            "{:>12} {:<24} {:>5} {:<20} {:>10} {:>6} {:<9} {:<20} UNIQ_KEY",
            "OFFSET", "TOPIC", "QUEUE", "GROUP", "AGE_MS", "CHECKS", "STATE", "CHECKER"
        );
        for p in rows {
            let state = if p["kept"].as_bool() == Some(true) {
                "kept"
            } else if p["inDoubt"].as_bool() == Some(true) {
                "restored"
            } else {
                "pending"
            };
            // A JSON value's Display ignores widths: numbers are formatted as strings first.
            println!(
                "{:>12} {:<24} {:>5} {:<20} {:>10} {:>6} {:<9} {:<20} {}",
                p["offset"].to_string(),
                p["topic"].as_str().unwrap_or(""),
                p["queueId"].to_string(),
                p["group"].as_str().unwrap_or(""),
                p["ageMs"].to_string(),
                p["checks"].to_string(),
                state,
                p["checker"].as_str().unwrap_or("-"),
                p["uniqKey"].as_str().unwrap_or(""),
            );
        }
    }
    Ok(())
}

async fn resolve(c: &mut Cluster, a: ResolveArgs, action: &str) -> Result<()> {
    let broker = match a.broker {
        Some(b) => b,
        None => {
            let all = c.brokers().await?;
            match all.as_slice() {
                [one] => one.clone(),
                _ => bail!(
                    "the cluster has {} brokers: say which one holds offset {} with --broker",
                    all.len(),
                    a.offset
                ),
            }
        }
    };
    let offset = a.offset.to_string();
    let req = RemotingCommand::new_request(
        request::TXN_RESOLVE,
        ext(&[("offset", &offset), ("action", action)]),
    );
    let r = c.call_ok(&broker, req).await?;
    println!(
        "{action} of offset {} on {broker}: {}",
        a.offset,
        r.remark.unwrap_or_default()
    );
    Ok(())
}
