//! Remoting header codec: ns per decode and per encode of the headers on the hot path.
//!
//! Four headers, each in JSON (serialize type 0) and ROCKETMQ binary (type 1):
//!
//! - `send_v2_req`: SEND_MESSAGE_V2 (310) as the Java client sends it (fastjson: keys sorted, every extField a
//!   string, 14 letter fields a..n, the properties with their `\u0001`/`\u0002` separators escaped);
//! - `send_resp`: its SUCCESS answer as the broker writes it (msgId, queueId, queueOffset, MSG_REGION, TRACE_ON);
//! - `pull_req`: PULL_MESSAGE (11) as the Java client sends it (12 fields);
//! - `pull_resp`: its answer (suggestWhichBrokerId, nextBeginOffset, minOffset, maxOffset).
//!
//! Decode = `RemotingCommand::decode` of the header bytes (the broker's side for requests, the client's for
//! responses); encode = `encode_header` into a reused buffer (the client's side for requests, the broker's for
//! responses). The binary headers are what `encode_header` writes for the same commands.
//!
//! Times are this thread's CPU time (`/proc/thread-self/schedstat`; wall time where it is missing), so other
//! work on the machine inflates them less. Each figure is the median of `WASMQ_BENCH_ROUNDS` rounds (default 5) of `WASMQ_BENCH_SECS` seconds
//! (default 0.2) each. `WASMQ_BENCH_SMOKE=1` runs one round of a few ms per figure (CI; figures not
//! meaningful); `WASMQ_BENCH_ONLY=<text>` runs the headers whose name contains it (`send_v2_req/json`). Run:
//! `cargo bench -p wasmq-broker --bench protocol`.

mod support;

use std::hint::black_box;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use support::{env_or, median, secs, smoke};
use wasmq::protocol::headers::{PullMessageResponseHeader, SendMessageResponseHeader};
use wasmq::protocol::{request, FrameCodec, RawFrame, RemotingCommand, SerializeType};

/// SEND_MESSAGE_V2 from the Java client 4.9 (fastjson output, one line).
const SEND_V2_JAVA: &str = concat!(
    r#"{"code":310,"extFields":{"a":"PG_BENCH","b":"TopicBench","c":"TBW102","d":"4","e":"3","f":"0","#,
    r#""g":"1733280000123","h":"0","i":"TAGS\u0001TagA\u0002KEYS\u0001order-77\u0002WAIT\u0001true\u0002"#,
    r#"UNIQ_KEY\u00017F0000010C6418B4AAC2A2F6D7B80000\u0002","j":"0","k":"false","l":"16","m":"false","#,
    r#""n":"broker-a"},"flag":0,"language":"JAVA","opaque":4711,"serializeTypeCurrentRPC":"JSON","version":475}"#
);

/// PULL_MESSAGE from the Java client 4.9.
const PULL_JAVA: &str = concat!(
    r#"{"code":11,"extFields":{"commitOffset":"1200","consumerGroup":"CG_BENCH","expressionType":"TAG","#,
    r#""maxMsgBytes":"2147483647","maxMsgNums":"32","queueId":"3","queueOffset":"1234","sysFlag":"3","#,
    r#""subVersion":"1733280000456","subscription":"TagA || TagB","suspendTimeoutMillis":"15000","#,
    r#""topic":"TopicBench"},"flag":0,"language":"JAVA","opaque":4712,"serializeTypeCurrentRPC":"JSON","#,
    r#""version":475}"#
);

fn request_of(json: &str) -> RemotingCommand {
    decode(0, Bytes::copy_from_slice(json.as_bytes()))
}

fn send_response() -> RemotingCommand {
    let req = request_of(SEND_V2_JAVA);
    let mut resp = RemotingCommand::response_to(&req, 0, None);
    SendMessageResponseHeader {
        msg_id: "7F00000100002A9F00000000B2D05E00",
        queue_id: 3,
        queue_offset: 1_234_567,
        transaction_id: None,
        region: Some("DefaultRegion"),
        trace_on: Some(true),
    }
    .write_to(&mut resp.ext_fields);
    resp
}

fn pull_response() -> RemotingCommand {
    let req = request_of(PULL_JAVA);
    let mut resp = RemotingCommand::response_to(&req, 0, None);
    PullMessageResponseHeader {
        suggest_which_broker_id: 0,
        next_begin_offset: 1266,
        min_offset: 0,
        max_offset: 1_000_000,
    }
    .write_to(&mut resp.ext_fields);
    resp
}

fn decode(serialize_type: u8, header: Bytes) -> RemotingCommand {
    RemotingCommand::decode(RawFrame {
        serialize_type,
        header,
        body: Bytes::new(),
    })
    .expect("bench header decodes")
}

/// The header bytes `cmd` encodes to in `ty`.
fn header_of(cmd: &RemotingCommand, ty: SerializeType) -> Bytes {
    let mut cmd = cmd.clone();
    cmd.serialize_type = ty;
    let mut buf = BytesMut::new();
    cmd.encode(&mut buf).unwrap();
    FrameCodec::default()
        .decode(&mut buf)
        .unwrap()
        .unwrap()
        .header
}

/// This thread's time on a CPU so far, in ns (`/proc/thread-self/schedstat`), when the kernel reports it:
/// with other work on the machine, wall time would count the time this thread waits for a CPU.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Mean ns per call of `f` (CPU time of this thread where available, else wall time) over about `secs`
/// seconds of wall time (batches of 256 calls).
fn ns_per(secs: f64, mut f: impl FnMut()) -> f64 {
    for _ in 0..64 {
        f();
    }
    let start = Instant::now();
    let cpu_start = cpu_ns();
    let mut calls = 0u64;
    loop {
        for _ in 0..256 {
            f();
        }
        calls += 256;
        let el = start.elapsed().as_secs_f64();
        if el >= secs {
            let ns = match (cpu_start, cpu_ns()) {
                // The kernel updates it at scheduler events: a very short run may see no change.
                (Some(a), Some(b)) if b > a => (b - a) as f64,
                _ => el * 1e9,
            };
            return ns / calls as f64;
        }
    }
}

struct Case {
    name: String,
    ty: SerializeType,
    header: Bytes,
    cmd: RemotingCommand,
}

fn cases() -> Vec<Case> {
    let send = request_of(SEND_V2_JAVA);
    assert_eq!(send.code, request::SEND_MESSAGE_V2);
    assert_eq!(send.ext_fields.len(), 14);
    let pull = request_of(PULL_JAVA);
    assert_eq!(pull.code, request::PULL_MESSAGE);
    let named = [
        ("send_v2_req", send, Some(SEND_V2_JAVA)),
        ("send_resp", send_response(), None),
        ("pull_req", pull, Some(PULL_JAVA)),
        ("pull_resp", pull_response(), None),
    ];
    let mut out = Vec::new();
    for (name, cmd, wire) in named {
        for ty in [SerializeType::Json, SerializeType::RocketMq] {
            // JSON requests as the Java client writes them; everything else as wasmq encodes it.
            let header = match (ty, wire) {
                (SerializeType::Json, Some(text)) => Bytes::from_static(text.as_bytes()),
                _ => header_of(&cmd, ty),
            };
            let mut cmd = decode(ty as u8, header.clone());
            cmd.serialize_type = ty;
            out.push(Case {
                name: format!(
                    "{name}/{}",
                    if ty == SerializeType::Json {
                        "json"
                    } else {
                        "binary"
                    }
                ),
                ty,
                header,
                cmd,
            });
        }
    }
    out
}

fn main() {
    let per = secs(0.2, 0.002);
    let rounds: usize = if smoke() {
        1
    } else {
        env_or("WASMQ_BENCH_ROUNDS", 5)
    };
    let cases = cases();
    println!("remoting header codec: median of {rounds} rounds of {per} s per figure, ns per call");
    println!(
        "{:<22} {:>6} {:>10} {:>10}",
        "header", "bytes", "decode", "encode"
    );
    let mut buf = BytesMut::with_capacity(4096);
    let only = std::env::var("WASMQ_BENCH_ONLY").unwrap_or_default();
    for c in cases.iter().filter(|c| c.name.contains(&only)) {
        let mut dec = Vec::with_capacity(rounds);
        let mut enc = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            dec.push(ns_per(per, || {
                black_box(decode(c.ty as u8, black_box(c.header.clone())));
            }));
            enc.push(ns_per(per, || {
                buf.clear();
                black_box(&c.cmd).encode_header(&mut buf).unwrap();
                black_box(&buf);
            }));
        }
        println!(
            "{:<22} {:>6} {:>10.1} {:>10.1}",
            c.name,
            c.header.len(),
            median(&dec),
            median(&enc),
        );
        // The command encodes back to a header that decodes to the same command.
        let mut back = decode(c.ty as u8, header_of(&c.cmd, c.ty));
        back.serialize_type = c.ty;
        assert_eq!(back, c.cmd, "{}", c.name);
    }
}
