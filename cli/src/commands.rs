//! The commands other than `bench`.

use anyhow::{bail, Context, Result};
use clap::Args;
use wasmq::protocol::{request, response, ExtFields, RemotingCommand};

use crate::args::{parse_count, parse_kv};
use crate::message::{describe, for_each, properties, send_request, uniq_key};
use crate::rpc::{ext, field_i64, Cluster};
use crate::{Cli, Cmd, TopicCmd};

#[derive(Args, Debug)]
pub struct SendArgs {
    #[arg(long)]
    pub topic: String,
    #[arg(long)]
    pub tag: Option<String>,
    /// Space-separated keys.
    #[arg(long)]
    pub keys: Option<String>,
    /// User property k=v (repeatable).
    #[arg(long = "property", value_parser = parse_kv)]
    pub properties: Vec<(String, String)>,
    /// Message body (with --count: that many copies of it).
    #[arg(long)]
    pub body: Option<String>,
    /// Number of messages (default 1): copies of --body, or generated bodies of --size bytes.
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true)]
    pub count: Option<u64>,
    /// Size of generated bodies in bytes (without --body).
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Queue id (default: round robin over the route's write queues, from a random one).
    #[arg(long)]
    pub queue: Option<i32>,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    #[arg(long)]
    pub topic: Option<String>,
    #[arg(long)]
    pub key: Option<String>,
    #[arg(long)]
    pub unique_key: Option<String>,
    /// Offset message id (32 hex characters).
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct OffsetsArgs {
    #[command(subcommand)]
    pub cmd: Option<OffsetsCmd>,
    #[arg(long)]
    pub group: Option<String>,
    #[arg(long)]
    pub topic: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum OffsetsCmd {
    /// Reset a group's committed offsets (its consumers must be stopped) to the first message
    /// stored at or after --timestamp (ms), or to --to-offset on every queue.
    Reset {
        #[arg(long)]
        group: String,
        #[arg(long)]
        topic: String,
        #[arg(long, conflicts_with = "to_offset")]
        timestamp: Option<i64>,
        #[arg(long)]
        to_offset: Option<i64>,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum DlqCmd {
    /// Print the dead letters of a group with their origin.
    List {
        #[arg(long)]
        group: String,
    },
    /// Send dead letters back to their original topic (all, or the one with --id).
    Resend {
        #[arg(long)]
        group: String,
        /// Offset message id of one dead letter (as `dlq list` prints it).
        #[arg(long)]
        id: Option<String>,
    },
}

pub async fn run(cli: Cli) -> Result<()> {
    let mut c = Cluster::new(&cli.namesrv);
    match cli.cmd {
        Cmd::Topic { cmd } => topic(&mut c, cmd).await,
        Cmd::Send(a) => send(&mut c, a).await,
        Cmd::Consume(a) => crate::consume::run(&mut c, a).await,
        Cmd::Query(a) => query(&mut c, a).await,
        Cmd::Offsets(a) => match a.cmd {
            Some(OffsetsCmd::Reset {
                group,
                topic,
                timestamp,
                to_offset,
            }) => reset_offsets(&mut c, &group, &topic, timestamp, to_offset).await,
            None => {
                let (Some(group), Some(topic)) = (a.group, a.topic) else {
                    bail!("--group and --topic are required");
                };
                offsets(&mut c, &group, &topic).await
            }
        },
        Cmd::Dlq { cmd } => dlq(&mut c, cmd).await,
        Cmd::Plugin { cmd } => crate::plugin::run(&mut c, cmd).await,
        Cmd::Txn { cmd } => crate::txn::run(&mut c, cmd).await,
        Cmd::Route { cmd } => crate::route::run(&mut c, cmd).await,
        Cmd::Cluster(a) => crate::cluster::run(&mut c, a).await,
        Cmd::Quota { cmd } => crate::quota::run(&mut c, cmd).await,
        Cmd::Bench { cmd } => crate::bench::run(&cli.namesrv, cmd).await,
    }
}

async fn topic(c: &mut Cluster, cmd: TopicCmd) -> Result<()> {
    match cmd {
        TopicCmd::Create {
            topic,
            queues,
            perm,
        } => {
            for b in c.brokers().await? {
                let q = queues.to_string();
                let req = RemotingCommand::new_request(
                    request::UPDATE_AND_CREATE_TOPIC,
                    ext(&[
                        ("topic", &topic),
                        ("readQueueNums", &q),
                        ("writeQueueNums", &q),
                        ("perm", &perm.to_string()),
                    ]),
                );
                c.call_ok(&b, req).await?;
                println!("created {topic} with {queues} queues on {b}");
            }
        }
        TopicCmd::List => {
            let r = c
                .namesrv_call(RemotingCommand::new_request(
                    request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
                    ExtFields::new(),
                ))
                .await?;
            let v: serde_json::Value = serde_json::from_slice(&r.body)?;
            for t in v["topicList"].as_array().into_iter().flatten() {
                println!("{}", t.as_str().unwrap_or(""));
            }
        }
        TopicCmd::Route { topic } => {
            let r = c.route(&topic).await?;
            println!("{}", String::from_utf8_lossy(&r.to_json()));
        }
        TopicCmd::Delete { topic } => {
            for b in c.brokers().await? {
                c.call_ok(
                    &b,
                    RemotingCommand::new_request(
                        request::DELETE_TOPIC_IN_BROKER,
                        ext(&[("topic", &topic)]),
                    ),
                )
                .await?;
            }
            c.namesrv_call(RemotingCommand::new_request(
                request::DELETE_TOPIC_IN_NAMESRV,
                ext(&[("topic", &topic)]),
            ))
            .await?;
            println!("deleted {topic}");
        }
    }
    Ok(())
}

async fn send(c: &mut Cluster, a: SendArgs) -> Result<()> {
    let queues = c.queues(&a.topic, true).await?;
    let n = a.count.unwrap_or(1);
    // Round robin from a random queue, so that runs of one message spread over the queues.
    let first = rand::random_range(0..queues.len());
    let mut failures = 0;
    for i in 0..n {
        let (addr, q) = match a.queue {
            Some(q) => (queues[0].0.clone(), q),
            None => queues[(first + i as usize) % queues.len()].clone(),
        };
        let body = match &a.body {
            Some(b) => b.clone().into_bytes(),
            None => {
                let mut b = format!("message-{i}-").into_bytes();
                b.resize(a.size.max(b.len()), b'x');
                b
            }
        };
        let uniq = uniq_key(i);
        let props = properties(a.tag.as_deref(), a.keys.as_deref(), &a.properties, &uniq);
        let r = c
            .call(&addr, send_request(&a.topic, q, &props, body, false))
            .await?;
        if r.code == response::SUCCESS {
            println!(
                "SEND_OK msgId={} uniqKey={uniq} queue={} offset={}",
                r.ext_fields.get("msgId").unwrap_or(""),
                r.ext_fields.get("queueId").unwrap_or(""),
                r.ext_fields.get("queueOffset").unwrap_or("")
            );
        } else {
            failures += 1;
            println!(
                "FAILED code={} remark={}",
                r.code,
                r.remark.unwrap_or_default()
            );
        }
    }
    if failures > 0 {
        bail!("{failures} of {n} sends failed");
    }
    Ok(())
}

async fn query(c: &mut Cluster, a: QueryArgs) -> Result<()> {
    if let Some(id) = &a.id {
        let (addr, offset) =
            wasmq::protocol::message_id::decode(id).context("not an offset message id")?;
        let r = c
            .call_ok(
                &addr.to_string(),
                RemotingCommand::new_request(
                    request::VIEW_MESSAGE_BY_ID,
                    ext(&[("offset", &offset.to_string())]),
                ),
            )
            .await?;
        for_each(&r.body, |m| println!("{}", describe(m)))?;
        return Ok(());
    }
    let topic = a
        .topic
        .as_deref()
        .context("--topic is required with --key / --unique-key")?;
    let (key, unique) = match (&a.key, &a.unique_key) {
        (Some(k), None) => (k.as_str(), false),
        (None, Some(u)) => (u.as_str(), true),
        _ => bail!("give one of --key, --unique-key or --id"),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis()
        .to_string();
    let mut found = 0;
    for b in c.brokers().await? {
        let mut e = ext(&[
            ("topic", topic),
            ("key", key),
            ("maxNum", "32"),
            ("beginTimestamp", "0"),
            ("endTimestamp", &now),
        ]);
        if unique {
            e.insert("_UNIQUE_KEY_QUERY", "true");
        }
        let r = c
            .call(&b, RemotingCommand::new_request(request::QUERY_MESSAGE, e))
            .await?;
        if r.code == response::SUCCESS {
            found += for_each(&r.body, |m| println!("{}", describe(m)))?;
        }
    }
    if found == 0 {
        bail!("no message found for {key}");
    }
    Ok(())
}

async fn reset_offsets(
    c: &mut Cluster,
    group: &str,
    topic: &str,
    ts: Option<i64>,
    to: Option<i64>,
) -> Result<()> {
    if ts.is_none() && to.is_none() {
        bail!("give --timestamp MS or --to-offset N");
    }
    let mut brokers: Vec<String> = c
        .queues(topic, false)
        .await?
        .into_iter()
        .map(|q| q.0)
        .collect();
    brokers.dedup();
    for b in brokers {
        let mut e = ext(&[("topic", topic), ("group", group), ("isForce", "true")]);
        if let Some(t) = ts {
            e.insert_display("timestamp", t);
        }
        if let Some(o) = to {
            e.insert_display("offset", o);
        }
        let r = c
            .call_ok(
                &b,
                RemotingCommand::new_request(request::INVOKE_BROKER_TO_RESET_OFFSET, e),
            )
            .await?;
        println!("{b}: {}", String::from_utf8_lossy(&r.body));
    }
    Ok(())
}

/// Dead letters of `group`: (broker, record bytes) for every message of `%DLQ%<group>`.
async fn dead_letters(c: &mut Cluster, group: &str) -> Result<Vec<(String, bytes::Bytes)>> {
    let topic = format!("%DLQ%{group}");
    let mut out = Vec::new();
    for (addr, q) in c.queues(&topic, false).await? {
        let mut offset = 0i64;
        loop {
            let req = RemotingCommand::new_request(
                request::PULL_MESSAGE,
                ext(&[
                    ("consumerGroup", "wasmq-dlq"),
                    ("topic", &topic),
                    ("queueId", &q.to_string()),
                    ("queueOffset", &offset.to_string()),
                    ("maxMsgNums", "32"),
                    ("sysFlag", "4"),
                    ("subscription", "*"),
                ]),
            );
            let r = c.call(&addr, req).await?;
            if r.code != response::SUCCESS {
                break;
            }
            let mut rest = r.body.clone();
            while !rest.is_empty() {
                let n = match wasmq::store::record::peek_size(&rest) {
                    Some(n) if n > 0 && n as usize <= rest.len() => n as usize,
                    _ => bail!("undecodable record in the reply"),
                };
                out.push((addr.clone(), rest.split_to(n)));
            }
            offset = field_i64(&r, "nextBeginOffset")?;
        }
    }
    Ok(out)
}

async fn dlq(c: &mut Cluster, cmd: DlqCmd) -> Result<()> {
    use wasmq::protocol::properties;
    match cmd {
        DlqCmd::List { group } => {
            for (_, rec) in dead_letters(c, &group).await? {
                for_each(&rec, |m| {
                    println!(
                        "{} reconsumeTimes={} originTopic={} originMsgId={}",
                        describe(m),
                        m.reconsume_times(),
                        m.property("DLQ_ORIGIN_TOPIC").unwrap_or(""),
                        m.property("DLQ_ORIGIN_MESSAGE_ID").unwrap_or("")
                    )
                })?;
            }
        }
        DlqCmd::Resend { group, id } => {
            let mut sent = 0;
            for (addr, rec) in dead_letters(c, &group).await? {
                let mut todo = Vec::new();
                for_each(&rec, |m| {
                    let mid =
                        wasmq::protocol::message_id::encode(m.store_host(), m.physical_offset());
                    if id.as_deref().is_some_and(|want| want != mid) {
                        return;
                    }
                    let topic = m
                        .property("DLQ_ORIGIN_TOPIC")
                        .or(m.property("RETRY_TOPIC"))
                        .unwrap_or("")
                        .to_string();
                    let mut props = String::new();
                    for (k, v) in properties::iter(m.properties()).flatten() {
                        if !matches!(
                            k,
                            "DLQ_ORIGIN_TOPIC"
                                | "DLQ_ORIGIN_MESSAGE_ID"
                                | "RETRY_TOPIC"
                                | "ORIGIN_MESSAGE_ID"
                                | "__CRC32#"
                                | "REAL_TOPIC"
                                | "REAL_QID"
                                | "DELAY"
                        ) {
                            let _ = properties::push_pair(&mut props, k, v);
                        }
                    }
                    todo.push((topic, props, m.body().to_vec(), mid));
                })?;
                for (topic, props, body, mid) in todo {
                    if topic.is_empty() {
                        println!("skipped {mid}: no original topic recorded");
                        continue;
                    }
                    let r = c
                        .call_ok(&addr, send_request(&topic, 0, &props, body, false))
                        .await?;
                    println!(
                        "resent {mid} to {topic} as {}",
                        r.ext_fields.get("msgId").unwrap_or("")
                    );
                    sent += 1;
                }
            }
            if sent == 0 {
                bail!("no dead letter resent");
            }
        }
    }
    Ok(())
}

async fn offsets(c: &mut Cluster, group: &str, topic: &str) -> Result<()> {
    let queues = c.queues(topic, false).await?;
    let mut rows = Vec::new();
    for (addr, q) in &queues {
        let qs = q.to_string();
        let r = c
            .call(
                addr,
                RemotingCommand::new_request(
                    request::QUERY_CONSUMER_OFFSET,
                    ext(&[
                        ("consumerGroup", group),
                        ("topic", topic),
                        ("queueId", &qs),
                        ("setZeroIfNotFound", "false"),
                    ]),
                ),
            )
            .await?;
        let committed = if r.code == response::SUCCESS {
            Some(field_i64(&r, "offset")?)
        } else {
            None
        };
        let m = c
            .call_ok(
                addr,
                RemotingCommand::new_request(
                    request::GET_MAX_OFFSET,
                    ext(&[("topic", topic), ("queueId", &qs)]),
                ),
            )
            .await?;
        rows.push((addr, q, committed, field_i64(&m, "offset")?));
    }
    if rows.iter().all(|r| r.2.is_none()) {
        bail!(
            "group {group} has no committed offset on topic {topic} \
             (unknown group, or it never consumed {topic})"
        );
    }
    let (mut total_lag, mut total_committed) = (0i64, 0i64);
    println!(
        "{:<24} {:>6} {:>12} {:>12} {:>10}",
        "broker", "queue", "committed", "max", "lag"
    );
    for (addr, q, committed, max) in rows {
        // A queue without a committed offset is read from its start by this group.
        let lag = (max - committed.unwrap_or(0)).max(0);
        total_lag += lag;
        total_committed += committed.unwrap_or(0);
        let committed = committed.map_or("-".to_string(), |c| c.to_string());
        println!("{addr:<24} {q:>6} {committed:>12} {max:>12} {lag:>10}");
    }
    println!("total committed={total_committed} lag={total_lag}");
    Ok(())
}
