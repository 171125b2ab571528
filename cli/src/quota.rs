//! `wasmq quota`: quotas per topic (sends) and consumer group (pulls), in messages/s and
//! bytes/s, on each broker: set or replace one at runtime, list them with their current rates
//! and the flow-control rejection counters, remove one. Each broker enforces its own.
//!
//! A change is first checked on every broker it goes to (a dry run), and made only when all
//! accept it: bad input changes nothing anywhere.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde_json::Value;
use wasmq::flow::quota::{parse_rate, MAX_BYTES_PER_SEC, MAX_MSGS_PER_SEC};
use wasmq::protocol::{request, response, ExtFields, RemotingCommand};

use crate::rpc::{ext, Cluster};

#[derive(Subcommand, Debug)]
pub enum QuotaCmd {
    /// Set (or replace) the quota of a topic or consumer group: --msgs-per-sec, --bytes-per-sec
    /// or both. A topic's quota goes to the brokers serving it, a group's to every broker.
    /// It persists across restarts and overrides a `[[quota]]` of the config file.
    Set(SetArgs),
    /// The quotas of every broker: rates, source (config or runtime), the current rates (last
    /// whole second) and the rejections counted by reason, topic and group.
    List {
        /// Print each broker's JSON (one line per broker).
        #[arg(long)]
        json: bool,
    },
    /// Remove the runtime quota of a topic or group. A configured one of the same name then
    /// applies again; one set only by `[[quota]]` in the config file is not removed (edit the
    /// file).
    Remove(RemoveArgs),
}

/// A topic or a consumer group: exactly one.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// A topic: its sends are limited.
    #[arg(long)]
    topic: Option<String>,
    /// A consumer group: its pulls are limited.
    #[arg(long)]
    group: Option<String>,
}

impl Target {
    fn field(&self) -> (&'static str, &str) {
        match (&self.topic, &self.group) {
            (Some(t), _) => ("topic", t),
            (None, Some(g)) => ("group", g),
            // clap requires exactly one.
            (None, None) => ("topic", ""),
        }
    }
}

#[derive(Args, Debug)]
pub struct SetArgs {
    #[command(flatten)]
    target: Target,
    /// Messages per second (1 to 1000000000).
    #[arg(long, value_parser = msgs_rate, allow_negative_numbers = true)]
    msgs_per_sec: Option<u64>,
    /// Bytes per second (1 to 1000000000000): message bodies for a topic, stored messages for a
    /// group.
    #[arg(long, value_parser = bytes_rate, allow_negative_numbers = true)]
    bytes_per_sec: Option<u64>,
    /// Only this broker (default: every broker serving the topic, every broker for a group).
    #[arg(long)]
    broker: Option<String>,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    #[command(flatten)]
    target: Target,
    /// Only this broker (default: every broker that has it).
    #[arg(long)]
    broker: Option<String>,
}

fn rate(what: &str, s: &str, max: u64) -> Result<u64, String> {
    parse_rate(what, s, max).map_err(|e| e.reason())
}

fn msgs_rate(s: &str) -> Result<u64, String> {
    rate("messages per second", s, MAX_MSGS_PER_SEC)
}

fn bytes_rate(s: &str) -> Result<u64, String> {
    rate("bytes per second", s, MAX_BYTES_PER_SEC)
}

pub async fn run(c: &mut Cluster, cmd: QuotaCmd) -> Result<()> {
    match cmd {
        QuotaCmd::Set(a) => set(c, a).await,
        QuotaCmd::List { json } => list(c, json).await,
        QuotaCmd::Remove(a) => remove(c, a).await,
    }
}

/// The masters serving `topic`, by its route.
async fn topic_brokers(c: &mut Cluster, topic: &str) -> Result<Vec<String>> {
    let mut addrs: Vec<String> = match c.queues(topic, true).await {
        Ok(q) => q.into_iter().map(|(addr, _)| addr).collect(),
        Err(e) => bail!("topic {topic} has no route ({e:#}): create it first"),
    };
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

fn remark(r: &RemotingCommand) -> String {
    match r.remark.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => format!("response code {}", r.code),
    }
}

async fn set(c: &mut Cluster, a: SetArgs) -> Result<()> {
    if a.msgs_per_sec.is_none() && a.bytes_per_sec.is_none() {
        bail!("give --msgs-per-sec, --bytes-per-sec or both");
    }
    let (key, name) = a.target.field();
    let brokers = match (&a.broker, key) {
        (Some(b), _) => vec![b.clone()],
        (None, "topic") => topic_brokers(c, name).await?,
        (None, _) => c.brokers().await?,
    };
    let (m, b) = (
        a.msgs_per_sec.map(|n| n.to_string()),
        a.bytes_per_sec.map(|n| n.to_string()),
    );
    let fields = |dry: bool| {
        let mut e = ext(&[(key, name)]);
        if let Some(m) = &m {
            e.insert("msgsPerSec", m);
        }
        if let Some(b) = &b {
            e.insert("bytesPerSec", b);
        }
        if dry {
            e.insert("dryRun", "true");
        }
        e
    };
    // Every broker must accept it before any changes.
    for addr in &brokers {
        let r = c
            .call(
                addr,
                RemotingCommand::new_request(request::QUOTA_SET, fields(true)),
            )
            .await?;
        if r.code != response::SUCCESS {
            bail!("{addr}: {} (nothing changed)", remark(&r));
        }
    }
    for addr in &brokers {
        let r = c
            .call_ok(
                addr,
                RemotingCommand::new_request(request::QUOTA_SET, fields(false)),
            )
            .await?;
        println!("{addr}: {}", remark(&r));
    }
    Ok(())
}

async fn remove(c: &mut Cluster, a: RemoveArgs) -> Result<()> {
    let (key, name) = a.target.field();
    let brokers = match &a.broker {
        Some(b) => vec![b.clone()],
        None => c.brokers().await?,
    };
    let req = |dry: bool| {
        let mut e = ext(&[(key, name)]);
        if dry {
            e.insert("dryRun", "true");
        }
        RemotingCommand::new_request(request::QUOTA_REMOVE, e)
    };
    let mut holding = Vec::new();
    let mut not_set = None;
    for addr in &brokers {
        let r = c.call(addr, req(true)).await?;
        match r.code {
            response::SUCCESS => holding.push(addr.clone()),
            response::QUERY_NOT_FOUND => not_set = Some(remark(&r)),
            _ => bail!("{addr}: {} (nothing changed)", remark(&r)),
        }
    }
    if holding.is_empty() {
        bail!(
            "{}",
            not_set.unwrap_or_else(|| format!("no quota is set on {key} {name}"))
        );
    }
    for addr in &holding {
        let r = c.call_ok(addr, req(false)).await?;
        println!("{addr}: {}", remark(&r));
    }
    Ok(())
}

async fn list(c: &mut Cluster, json: bool) -> Result<()> {
    for addr in c.brokers().await? {
        let r = c
            .call_ok(
                &addr,
                RemotingCommand::new_request(request::QUOTA_LIST, ExtFields::new()),
            )
            .await?;
        let mut v: Value = serde_json::from_slice(&r.body)?;
        if json {
            v["broker"] = Value::String(addr.clone());
            println!("{v}");
        } else {
            print!("{}", render(&addr, &v));
        }
    }
    Ok(())
}

/// A JSON number as text, `-` when absent.
fn num(v: &Value) -> String {
    v.as_u64().map_or("-".to_string(), |n| n.to_string())
}

/// One broker's quotas and rejection counters as tables.
fn render(addr: &str, v: &Value) -> String {
    let quotas = v["quotas"].as_array().cloned().unwrap_or_default();
    let rejections = v["rejections"].as_array().cloned().unwrap_or_default();
    let noun = if quotas.len() == 1 { "quota" } else { "quotas" };
    let mut out = format!("broker {addr}: {} {noun}", quotas.len());
    if v["flowControl"].as_bool() == Some(false) {
        out.push_str(" (flow_control = false: not enforced)");
    }
    out.push('\n');
    if !quotas.is_empty() {
        out.push_str(&format!(
            "{:<6} {:<32} {:>10} {:>14} {:<8} {:>10} {:>14} {:>10}\n",
            "KIND", "NAME", "MSGS/S", "BYTES/S", "SOURCE", "NOW MSGS/S", "NOW BYTES/S", "REJECTED"
        ));
    }
    for q in &quotas {
        let (kind, name) = (q["kind"].as_str().unwrap_or(""), &q["name"]);
        let (reason, field) = match kind {
            "group" => ("group_quota", "group"),
            _ => ("topic_quota", "topic"),
        };
        let rejected: u64 = rejections
            .iter()
            .filter(|r| r["reason"] == reason && &r[field] == name)
            .filter_map(|r| r["count"].as_u64())
            .sum();
        let source = match (q["source"].as_str(), q["overrides"].is_object()) {
            (Some("runtime"), true) => "runtime*",
            (Some(s), _) => s,
            (None, _) => "-",
        };
        out.push_str(&format!(
            "{:<6} {:<32} {:>10} {:>14} {:<8} {:>10} {:>14} {:>10}\n",
            kind,
            name.as_str().unwrap_or(""),
            num(&q["msgsPerSec"]),
            num(&q["bytesPerSec"]),
            source,
            num(&q["current"]["msgsPerSec"]),
            num(&q["current"]["bytesPerSec"]),
            rejected
        ));
    }
    if quotas.iter().any(|q| q["overrides"].is_object()) {
        out.push_str("runtime*: overrides a [[quota]] of the config file\n");
    }
    if rejections.is_empty() {
        out.push_str("no rejections\n");
    } else {
        out.push_str(&format!(
            "{:<16} {:<32} {:<32} {:>10}\n",
            "REJECTED FOR", "TOPIC", "GROUP", "COUNT"
        ));
        for r in &rejections {
            out.push_str(&format!(
                "{:<16} {:<32} {:<32} {:>10}\n",
                r["reason"].as_str().unwrap_or(""),
                r["topic"].as_str().unwrap_or("-"),
                r["group"].as_str().unwrap_or("-"),
                num(&r["count"])
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_whole_positive_and_sane() {
        assert_eq!(msgs_rate("1000"), Ok(1000));
        assert!(msgs_rate("-1").unwrap_err().contains("more than 0"));
        assert!(msgs_rate("0").unwrap_err().contains("more than 0"));
        assert!(msgs_rate("2000000000")
            .unwrap_err()
            .contains("at most 1000000000"));
        assert!(bytes_rate("1.5").unwrap_err().contains("whole number"));
        assert_eq!(bytes_rate("1000000000000"), Ok(MAX_BYTES_PER_SEC));
    }

    #[test]
    fn the_table_sums_each_quota_s_rejections() {
        let v = serde_json::json!({
            "flowControl": true,
            "quotas": [
                {"kind": "topic", "name": "T", "msgsPerSec": 1000, "bytesPerSec": null,
                 "source": "runtime", "overrides": {"kind": "topic", "name": "T", "msgsPerSec": 5},
                 "current": {"msgsPerSec": 998, "bytesPerSec": 12000}},
                {"kind": "group", "name": "G", "msgsPerSec": null, "bytesPerSec": 4096,
                 "source": "config", "overrides": null,
                 "current": {"msgsPerSec": 3, "bytesPerSec": 4000}}
            ],
            "rejections": [
                {"reason": "topic_quota", "topic": "T", "group": null, "count": 7},
                {"reason": "group_quota", "topic": "T", "group": "G", "count": 2},
                {"reason": "queue_timeout", "topic": "T", "group": null, "count": 1}
            ]
        });
        let t = render("b:1", &v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "broker b:1: 2 quotas");
        let row = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            row(lines[2]),
            ["topic", "T", "1000", "-", "runtime*", "998", "12000", "7"]
        );
        assert_eq!(
            row(lines[3]),
            ["group", "G", "-", "4096", "config", "3", "4000", "2"]
        );
        assert!(t.contains("queue_timeout"));
    }
}
