//! Transactional vs plain sends, side by side in one run, against an in-process broker
//! (loopback, 1 KiB bodies, 4 queues per topic, one connection per sender):
//!
//! - plain: SEND_MESSAGE_V2, waiting for each reply;
//! - txn: a half message (sysflag PREPARED, TRAN_MSG, PGROUP), waiting for its reply, then
//!   END_TRANSACTION commit sent oneway, as Java and C++ producers do;
//!
//! with 1 and 16 senders in flight, under `async` and `sync` flush (one broker per mode).
//! Figures per case: messages per second as acknowledged to the senders ("ack"), and up to
//! the moment the topics hold every message ("settled": since END is oneway, commits can trail
//! the senders); the senders' latency percentiles (txn: half send + END); and txn/plain ratios.
//! Each case ends by checking the topic holds exactly the messages sent (committed) and that
//! no half message is left pending.
//!
//! `WASMQ_BENCH_SECS` (default 3) bounds each case's sending, `WASMQ_BENCH_COUNT` (default
//! 2,000,000) its message count; `WASMQ_BENCH_SMOKE=1` shrinks everything to a few seconds
//! in all (CI runs it that way; its figures are not meaningful).
//! Run: `cargo bench -p wasmq-broker --bench txn`.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{ext, micros, pct, smoke, BenchBroker, SendReq, RPC, SETTLE_LIMIT};
use wasmq::net::{NetError, RemotingClient};
use wasmq::protocol::{message_id, request, response, RemotingCommand};
use wasmq::store::FlushMode;

const QUEUES: usize = 4;
const BODY: usize = 1024;
const GROUP: &str = "PG_BENCH_TXN";
const COMMIT: i32 = 8;

/// `WASMQ_BENCH_SECS`: seconds of sending per case.
fn secs() -> f64 {
    support::secs(3.0, 0.3)
}

/// `WASMQ_BENCH_COUNT`: most messages per case.
fn max_count() -> usize {
    support::max_count(2_000_000, 300)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Txn,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Plain => "plain send",
            Kind::Txn => "txn half+END",
        }
    }
}

/// A send as a producer makes it; `Txn` adds the half-message flags and properties.
fn send_req(kind: Kind, topic: &str, queue: usize, uniq: &str, body: &[u8]) -> RemotingCommand {
    let (sysflag, props) = match kind {
        Kind::Plain => (0, format!("UNIQ_KEY\u{1}{uniq}\u{2}WAIT\u{1}true\u{2}")),
        Kind::Txn => (
            4,
            format!(
                "TRAN_MSG\u{1}true\u{2}PGROUP\u{1}{GROUP}\u{2}UNIQ_KEY\u{1}{uniq}\u{2}WAIT\u{1}true\u{2}"
            ),
        ),
    };
    SendReq::new(topic, queue as i32, &props)
        .group(GROUP)
        .sysflag(sysflag)
        .request(body.to_vec())
}

/// The END_TRANSACTION commit for a half message, from its send reply.
fn end_req(reply: &RemotingCommand) -> RemotingCommand {
    let id = reply.ext_fields.get("msgId").expect("msgId in the reply");
    let offset = message_id::decode(id).expect("offset message id").1;
    let queue_offset = reply
        .ext_fields
        .get("queueOffset")
        .expect("queueOffset in the reply");
    RemotingCommand::new_request(
        request::END_TRANSACTION,
        ext(&[
            ("producerGroup", GROUP),
            ("tranStateTableOffset", queue_offset),
            ("commitLogOffset", &offset.to_string()),
            ("commitOrRollback", &COMMIT.to_string()),
            ("fromTransactionCheck", "false"),
            ("msgId", ""),
        ]),
    )
}

/// Sends oneway; a full outbound queue (the peer not reading yet) is retried, bounded.
async fn oneway(c: &RemotingClient, cmd: RemotingCommand) {
    let deadline = Instant::now() + RPC;
    loop {
        match c.invoke_oneway(cmd.clone()) {
            Ok(()) => return,
            Err(NetError::QueueFull) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            Err(e) => panic!("END_TRANSACTION not sent: {e}"),
        }
    }
}

async fn pending(c: &RemotingClient) -> usize {
    let r = c
        .invoke(
            RemotingCommand::new_request(request::TXN_LIST, ext(&[])),
            RPC,
        )
        .await
        .unwrap();
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    serde_json::from_slice::<Vec<serde_json::Value>>(&r.body)
        .unwrap()
        .len()
}

struct Figures {
    sent: usize,
    ack_rate: f64,
    settled_rate: f64,
    settle_ms: f64,
    p50_us: f64,
    p99_us: f64,
    half_p50_us: f64,
}

/// One case: `senders` connections sending `kind` to a fresh topic for at most `secs` and
/// `count` messages, then waiting (bounded) until the topic holds exactly what was sent.
async fn run_case(
    addr: SocketAddr,
    admin: &RemotingClient,
    topic: &str,
    kind: Kind,
    senders: usize,
    secs: f64,
    count: usize,
) -> Figures {
    // No dirty pages of the previous case competing with this one's writes and fsyncs.
    support::sync_disks_async().await;
    support::create_topic(admin, topic, QUEUES).await;
    let mut conns = Vec::new();
    for _ in 0..senders {
        conns.push(RemotingClient::connect(addr).await.unwrap());
    }
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(s, c)| {
            let topic = topic.to_string();
            // `count` in all, spread over the senders.
            let per_sender = count / senders + usize::from(s < count % senders);
            tokio::spawn(async move {
                let body = vec![b'a' + (s % 26) as u8; BODY];
                let mut lat = Vec::with_capacity(per_sender.min(1 << 20));
                let mut half = Vec::with_capacity(per_sender.min(1 << 20));
                let mut n = 0usize;
                while n < per_sender && Instant::now() < until {
                    let uniq = format!("7F0000010000{s:04X}{n:016X}");
                    let req = send_req(kind, &topic, (s + n) % QUEUES, &uniq, &body);
                    let t = Instant::now();
                    let r = c.invoke(req, RPC).await.unwrap();
                    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
                    if kind == Kind::Txn {
                        half.push(micros(t.elapsed()));
                        oneway(&c, end_req(&r)).await;
                    }
                    lat.push(micros(t.elapsed()));
                    n += 1;
                }
                // Keep the connection until its oneway ENDs are read: the topic check below
                // waits for them.
                (n, lat, half, c)
            })
        })
        .collect();
    let mut sent = 0;
    let mut lat = Vec::new();
    let mut half = Vec::new();
    let mut keep = Vec::new();
    for t in tasks {
        let (n, l, h, c) = t.await.unwrap();
        sent += n;
        lat.extend(l);
        half.extend(h);
        keep.push(c);
    }
    let acked = started.elapsed();
    // Settle: every commit stored and dispatched (bounded).
    support::settle(admin, topic, QUEUES, sent as u64).await;
    let settled = started.elapsed();
    if kind == Kind::Txn {
        // A commit stores the real message, then its op entry: wait (bounded) for the last.
        let mut left = pending(admin).await;
        while left > 0 {
            assert!(
                started.elapsed() < acked + SETTLE_LIMIT,
                "{topic}: {left} half messages left pending"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
            left = pending(admin).await;
        }
    }
    let have = support::stored(admin, topic, QUEUES).await;
    assert_eq!(have, sent as u64, "{topic}: more messages than were sent");
    drop(keep);
    lat.sort_unstable();
    half.sort_unstable();
    Figures {
        sent,
        ack_rate: sent as f64 / acked.as_secs_f64(),
        settled_rate: sent as f64 / settled.as_secs_f64(),
        settle_ms: (settled - acked).as_secs_f64() * 1e3,
        p50_us: pct(&lat, 0.50),
        p99_us: pct(&lat, 0.99),
        half_p50_us: pct(&half, 0.50),
    }
}

struct Row {
    mode: &'static str,
    senders: usize,
    plain: Figures,
    txn: Figures,
}

fn run_mode(mode: FlushMode, name: &'static str, rows: &mut Vec<Row>) {
    let broker = BenchBroker::start(mode, |cfg| {
        // The check loop never fires during a case: every half message is ended at once.
        cfg.transaction_timeout_ms = 600_000;
        cfg.transaction_check_interval_ms = 600_000;
    });
    let addr = broker.addr;
    let (secs, count) = (secs(), max_count());
    broker.block_on(async {
        let admin = broker.client().await;
        // Warm up both paths (connections, topic tables, page cache of the first segment).
        let warm = (secs / 5.0).min(0.5);
        for kind in [Kind::Plain, Kind::Txn] {
            let topic = format!("Warm{kind:?}");
            run_case(addr, &admin, &topic, kind, 4, warm, count.min(2_000)).await;
        }
        for senders in [1usize, 16] {
            let plain = run_case(
                addr,
                &admin,
                &format!("Plain-{name}-{senders}"),
                Kind::Plain,
                senders,
                secs,
                count,
            )
            .await;
            let txn = run_case(
                addr,
                &admin,
                &format!("Txn-{name}-{senders}"),
                Kind::Txn,
                senders,
                secs,
                count,
            )
            .await;
            for (kind, f) in [(Kind::Plain, &plain), (Kind::Txn, &txn)] {
                println!(
                    "{name:<6} {senders:>9} {:<13} {:>9} {:>11.0} {:>13.0} {:>9.1} {:>9.0} {:>9.0} {:>11}",
                    kind.label(),
                    f.sent,
                    f.ack_rate,
                    f.settled_rate,
                    f.settle_ms,
                    f.p50_us,
                    f.p99_us,
                    if kind == Kind::Txn {
                        format!("{:.0}", f.half_p50_us)
                    } else {
                        "-".into()
                    },
                );
            }
            rows.push(Row {
                mode: name,
                senders,
                plain,
                txn,
            });
        }
    });
    broker.stop();
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    println!(
        "wasmq txn benchmark: in-process broker over loopback, {BODY} B bodies, {QUEUES} queues, \
         up to {} s and {} messages per case{}",
        secs(),
        max_count(),
        if smoke() {
            " (smoke: figures not meaningful)"
        } else {
            ""
        }
    );
    println!(
        "ack = msgs/s acknowledged to the senders; settled = msgs/s until the topic holds all of \
         them (txn: END is oneway, commits trail); latency per message as the sender sees it \
         (txn: half send + oneway END)"
    );
    println!();
    println!(
        "{:<6} {:>9} {:<13} {:>9} {:>11} {:>13} {:>9} {:>9} {:>9} {:>11}",
        "flush",
        "in-flight",
        "case",
        "messages",
        "ack msg/s",
        "settled msg/s",
        "settle ms",
        "p50 us",
        "p99 us",
        "half p50 us"
    );
    let mut rows = Vec::new();
    run_mode(FlushMode::Async, "async", &mut rows);
    run_mode(FlushMode::Sync, "sync", &mut rows);
    println!();
    println!("txn / plain (throughput: higher is better, 1.0 = as fast as plain sends; latency: lower is better)");
    println!(
        "{:<6} {:>9} {:>10} {:>14} {:>10} {:>10}",
        "flush", "in-flight", "ack msg/s", "settled msg/s", "p50", "p99"
    );
    for r in &rows {
        let ratio = |t: f64, p: f64| if p > 0.0 { t / p } else { 0.0 };
        println!(
            "{:<6} {:>9} {:>9.2}x {:>13.2}x {:>9.2}x {:>9.2}x",
            r.mode,
            r.senders,
            ratio(r.txn.ack_rate, r.plain.ack_rate),
            ratio(r.txn.settled_rate, r.plain.settled_rate),
            ratio(r.txn.p50_us, r.plain.p50_us),
            ratio(r.txn.p99_us, r.plain.p99_us),
        );
    }
    println!("every case: the topic held exactly the messages sent (committed), none left pending");
}
