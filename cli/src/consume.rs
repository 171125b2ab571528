//! `wasmq consume`: a one-shot consumer of a group. It subscribes (heartbeat), starts each queue
//! at the group's committed offset (or `--from`), pulls no more than it still needs, prints, and
//! commits per queue exactly past what it printed, so an interrupted or `--count`-limited run
//! never moves the group past a message nobody saw (RocketMQ's at-least-once promise).

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use wasmq::protocol::{request, response, ExtFields, RemotingCommand};

use crate::args::{parse_count, parse_from, StartFrom};
use crate::message::{describe, describe_with_properties, for_each};
use crate::rpc::{ext, field_i64, Cluster};

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    #[arg(long)]
    pub topic: String,
    #[arg(long)]
    pub group: String,
    /// Expression type: TAG, SQL92 or a plugin's type.
    #[arg(long = "type", default_value = "TAG")]
    pub expr_type: String,
    #[arg(long, default_value = "*")]
    pub expr: String,
    /// Where a group without committed offsets starts: first (the oldest stored message), last
    /// (only what arrives from now on) or a timestamp in ms. A group with committed offsets
    /// always resumes from them.
    #[arg(long, default_value = "first", value_parser = parse_from)]
    pub from: StartFrom,
    /// Stop after this many messages; the group's offsets then move exactly past the messages
    /// printed. Without --count: print what is there and stop once every queue is drained.
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true)]
    pub count: Option<u64>,
    /// Give up after this many ms (with --count: fail if fewer arrived).
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Print every property of each message (user and system: what a filter sees) as
    /// `properties={k=v,...}` before the body.
    #[arg(long)]
    pub show_properties: bool,
}

fn heartbeat(client_id: &str, group: &str, topic: &str, ty: &str, expr: &str) -> RemotingCommand {
    let body = serde_json::json!({
        "clientID": client_id,
        "producerDataSet": [],
        "consumerDataSet": [{
            "groupName": group, "consumeType": "CONSUME_ACTIVELY", "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET", "unitMode": false,
            "subscriptionDataSet": [{"topic": topic, "subString": expr, "expressionType": ty,
                "tagsSet": [], "codeSet": [], "subVersion": 1, "classFilterMode": false}]
        }]
    });
    RemotingCommand::new_request(request::HEART_BEAT, ExtFields::new())
        .with_body(body.to_string().into_bytes())
}

/// Where a queue's reading starts: the group's committed offset (and `true`), or per `--from`.
async fn start_offset(c: &mut Cluster, addr: &str, a: &ConsumeArgs, q: i32) -> Result<(i64, bool)> {
    let qs = q.to_string();
    let committed = c
        .call(
            addr,
            RemotingCommand::new_request(
                request::QUERY_CONSUMER_OFFSET,
                ext(&[
                    ("consumerGroup", &a.group),
                    ("topic", &a.topic),
                    ("queueId", &qs),
                    ("setZeroIfNotFound", "false"),
                ]),
            ),
        )
        .await?;
    if committed.code == response::SUCCESS {
        return Ok((field_i64(&committed, "offset")?, true));
    }
    let req = match a.from {
        StartFrom::First => RemotingCommand::new_request(
            request::GET_MIN_OFFSET,
            ext(&[("topic", &a.topic), ("queueId", &qs)]),
        ),
        StartFrom::Last => RemotingCommand::new_request(
            request::GET_MAX_OFFSET,
            ext(&[("topic", &a.topic), ("queueId", &qs)]),
        ),
        StartFrom::Timestamp(ts) => RemotingCommand::new_request(
            request::SEARCH_OFFSET_BY_TIMESTAMP,
            ext(&[
                ("topic", &a.topic),
                ("queueId", &qs),
                ("timestamp", &ts.to_string()),
            ]),
        ),
    };
    let r = c.call_ok(addr, req).await?;
    Ok((field_i64(&r, "offset")?, false))
}

/// One queue of a `consume` run.
struct QueueRead {
    addr: String,
    queue: i32,
    /// The group's committed offset when the run started (None: it had none).
    committed: Option<i64>,
    /// Where the next pull starts.
    next: i64,
    /// What the run commits: exactly past what it printed (and past what the broker's filter
    /// skipped before that).
    commit: i64,
}

/// Why a `consume` run ended.
enum Ended {
    Count,
    Drained,
    TimedOut,
}

/// Pulls and prints until --count messages are printed, the queues are drained (no --count)
/// or the timeout; `got` counts what was printed, `queues[i].commit` moves past it.
async fn pull_and_print(
    c: &mut Cluster,
    a: &ConsumeArgs,
    queues: &mut [QueueRead],
    got: &mut u64,
) -> Result<Ended> {
    const MAX_PULL: u64 = 32;
    let deadline = Instant::now() + Duration::from_millis(a.timeout_ms);
    // Consecutive passes over all queues that found nothing new.
    let mut idle_passes = 0;
    while Instant::now() < deadline {
        let mut progressed = false;
        for st in queues.iter_mut() {
            // Ask for no more than is still wanted, so nothing is pulled that is not printed.
            let left = a.count.map_or(MAX_PULL, |n| n.saturating_sub(*got));
            if left == 0 {
                return Ok(Ended::Count);
            }
            let req = RemotingCommand::new_request(
                request::PULL_MESSAGE,
                ext(&[
                    ("consumerGroup", &a.group),
                    ("topic", &a.topic),
                    ("queueId", &st.queue.to_string()),
                    ("queueOffset", &st.next.to_string()),
                    ("maxMsgNums", &left.min(MAX_PULL).to_string()),
                    ("sysFlag", "4"),
                    ("commitOffset", "0"),
                    ("suspendTimeoutMillis", "0"),
                    ("subscription", &a.expr),
                    ("expressionType", &a.expr_type),
                    ("subVersion", "1"),
                ]),
            );
            let r = c.call(&st.addr, req).await?;
            match r.code {
                response::SUCCESS => {
                    let (before, next) = (st.next, field_i64(&r, "nextBeginOffset")?);
                    let (mut printed, mut all) = (None, true);
                    for_each(&r.body, |m| {
                        if a.count.is_some_and(|n| *got >= n) {
                            all = false;
                            return;
                        }
                        if a.show_properties {
                            println!("{}", describe_with_properties(m));
                        } else {
                            println!("{}", describe(m));
                        }
                        *got += 1;
                        printed = Some(m.queue_offset());
                    })?;
                    if all {
                        // Everything this pull returned was printed: its nextBeginOffset also
                        // skips what the filter left out after the last one.
                        st.commit = next;
                        st.next = next;
                    } else if let Some(last) = printed {
                        // Stopped inside the pull: the rest is for the next run.
                        st.commit = last + 1;
                        st.next = last + 1;
                    }
                    progressed |= printed.is_some() || st.next != before;
                }
                response::PULL_RETRY_IMMEDIATELY | response::PULL_OFFSET_MOVED => {
                    // Nothing matched up to nextBeginOffset, or the offset was out of the
                    // queue's range: move there, as RocketMQ consumers do.
                    let next = field_i64(&r, "nextBeginOffset")?;
                    progressed |= next != st.next;
                    st.next = next;
                    st.commit = next;
                }
                response::PULL_NOT_FOUND => {}
                response::SUBSCRIPTION_PARSE_FAILED => {
                    bail!(
                        "the broker refused the expression: {}",
                        r.remark.unwrap_or_default()
                    )
                }
                code => bail!(
                    "pull answered code {code}: {}",
                    r.remark.unwrap_or_default()
                ),
            }
        }
        if a.count.is_some_and(|n| *got >= n) {
            return Ok(Ended::Count);
        }
        if progressed {
            idle_passes = 0;
        } else {
            idle_passes += 1;
            // Without --count, drained means nothing new on two passes 100 ms apart (a message
            // acknowledged a moment ago may not be indexed yet).
            if a.count.is_none() && idle_passes >= 2 {
                return Ok(Ended::Drained);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(Ended::TimedOut)
}

/// `wasmq consume`: subscribe, pull and print, then commit exactly past what was printed.
pub async fn run(c: &mut Cluster, a: ConsumeArgs) -> Result<()> {
    let routes = c.queues(&a.topic, false).await?;
    let client_id = format!("wasmq-cli@{}", std::process::id());
    let mut brokers: Vec<String> = routes.iter().map(|q| q.0.clone()).collect();
    brokers.dedup();
    for b in &brokers {
        c.call_ok(
            b,
            heartbeat(&client_id, &a.group, &a.topic, &a.expr_type, &a.expr),
        )
        .await?;
    }
    let mut queues = Vec::new();
    for (addr, q) in routes {
        let (start, committed) = start_offset(c, &addr, &a, q).await?;
        queues.push(QueueRead {
            addr,
            queue: q,
            committed: committed.then_some(start),
            next: start,
            commit: start,
        });
    }
    let mut got = 0u64;
    let ended = pull_and_print(c, &a, &mut queues, &mut got).await;
    // Commit what was printed even when a later pull failed (at-least-once: nothing printed
    // is committed twice, nothing unprinted is committed at all).
    let mut committed = Vec::new();
    let mut commit_error = None;
    for st in &queues {
        let label = if brokers.len() > 1 {
            format!("{} queue {}", st.addr, st.queue)
        } else {
            format!("queue {}", st.queue)
        };
        if st.committed == Some(st.commit) {
            committed.push(format!("{label}={} (unchanged)", st.commit));
            continue;
        }
        let req = RemotingCommand::new_request(
            request::UPDATE_CONSUMER_OFFSET,
            ext(&[
                ("consumerGroup", &a.group),
                ("topic", &a.topic),
                ("queueId", &st.queue.to_string()),
                ("commitOffset", &st.commit.to_string()),
            ]),
        );
        match c.call_ok(&st.addr, req).await {
            Ok(_) => committed.push(format!("{label}={}", st.commit)),
            Err(e) => {
                committed.push(format!("{label}=<not committed>"));
                commit_error.get_or_insert(e);
            }
        }
    }
    for b in &brokers {
        let _ = c
            .call(
                b,
                RemotingCommand::new_request(
                    request::UNREGISTER_CLIENT,
                    ext(&[("clientID", &client_id), ("consumerGroup", &a.group)]),
                ),
            )
            .await;
    }
    let why = match &ended {
        Ok(Ended::Count) => "stopped at --count",
        Ok(Ended::Drained) => "queues drained",
        Ok(Ended::TimedOut) => "timed out",
        Err(_) => "failed",
    };
    let on = match brokers.as_slice() {
        [one] => format!(" on {one}"),
        _ => String::new(),
    };
    eprintln!(
        "consumed {got} message{} ({why}); group {} offsets{on}: {}",
        if got == 1 { "" } else { "s" },
        a.group,
        committed.join(", ")
    );
    let ended = ended?;
    if let Some(e) = commit_error {
        return Err(e.context("committing the consumed offsets failed"));
    }
    if let (Ended::TimedOut, Some(n)) = (ended, a.count) {
        bail!("timed out after {got} of {n} messages");
    }
    Ok(())
}
