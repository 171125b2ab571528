//! The real `wasmq-broker` binary driven over the remoting protocol by wasmq's own client:
//! routes, send (single, batch), pull with TAG filtering and long polling, offsets, queries,
//! and bad input (garbage, oversize frames, broken headers, oversize messages).

mod broker_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use broker_support::wire::ext;
use broker_support::BrokerProc;
use bytes::BytesMut;
use wasmq::net::RemotingClient;
use wasmq::protocol::route::TopicRouteData;
use wasmq::protocol::{batch, request, response, ExtFields, RemotingCommand};
use wasmq::store::record::{self, Check, Entry};

const T: Duration = Duration::from_secs(10);

async fn send(
    c: &RemotingClient,
    topic: &str,
    queue: i32,
    tag: &str,
    keys: &str,
    body: &[u8],
) -> RemotingCommand {
    let props = format!("TAGS\u{1}{tag}\u{2}KEYS\u{1}{keys}\u{2}WAIT\u{1}true\u{2}");
    let req = RemotingCommand::new_request(
        request::SEND_MESSAGE_V2,
        ext(&[
            ("a", "PG"),
            ("b", topic),
            ("c", "TBW102"),
            ("d", "4"),
            ("e", &queue.to_string()),
            ("f", "0"),
            ("g", "1700000000000"),
            ("h", "0"),
            ("i", &props),
            ("j", "0"),
            ("k", "false"),
        ]),
    )
    .with_body(body.to_vec());
    c.invoke(req, T).await.expect("send answered")
}

async fn pull(
    c: &RemotingClient,
    topic: &str,
    queue: i32,
    offset: i64,
    expr: &str,
    suspend_ms: i64,
) -> RemotingCommand {
    let flag = if suspend_ms > 0 { "6" } else { "4" };
    let req = RemotingCommand::new_request(
        request::PULL_MESSAGE,
        ext(&[
            ("consumerGroup", "CG"),
            ("topic", topic),
            ("queueId", &queue.to_string()),
            ("queueOffset", &offset.to_string()),
            ("maxMsgNums", "32"),
            ("sysFlag", flag),
            ("commitOffset", "0"),
            ("suspendTimeoutMillis", &suspend_ms.to_string()),
            ("subscription", expr),
            ("subVersion", "1"),
            ("expressionType", "TAG"),
        ]),
    );
    c.invoke(req, Duration::from_secs(40))
        .await
        .expect("pull answered")
}

async fn wait_max_offset(c: &RemotingClient, topic: &str, queue: i32, want: i64) {
    let deadline = Instant::now() + T;
    loop {
        let q = RemotingCommand::new_request(
            request::GET_MAX_OFFSET,
            ext(&[("topic", topic), ("queueId", &queue.to_string())]),
        );
        let r = c.invoke(q, T).await.unwrap();
        if r.ext_fields.get_i64("offset").ok().flatten() == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "max offset never reached {want}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn records(body: &[u8]) -> Vec<(String, Vec<u8>, i64)> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let Ok(Entry::Record(r)) = record::decode(
            rest,
            Check {
                crc: true,
                position: None,
            },
        ) else {
            panic!("bad record in pull body")
        };
        out.push((
            r.property("TAGS").unwrap_or("").to_string(),
            r.body().to_vec(),
            r.queue_offset(),
        ));
        rest = &rest[r.total_size()..];
    }
    out
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn send_pull_filter_long_poll_offsets_queries() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProc::start(&dir.path().join("store"), &["--flush", "sync"]);
    rt().block_on(async {
        let ns = RemotingClient::connect(broker.namesrv).await.unwrap();
        let r = ns
            .invoke(RemotingCommand::new_request(request::GET_ROUTEINFO_BY_TOPIC, ext(&[("topic", "Orders")])), T)
            .await
            .unwrap();
        assert_eq!(r.code, response::SUCCESS, "auto-create routes unknown topics: {:?}", r.remark);
        let route = TopicRouteData::from_json(&r.body).unwrap();
        assert_eq!(route.broker_datas[0].master_addr(), Some(broker.broker.to_string().as_str()));
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        for i in 0..10 {
            let tag = if i % 2 == 0 { "A" } else { "B" };
            let r = send(&c, "Orders", 1, tag, &format!("order-{i}"), format!("body-{i}").as_bytes()).await;
            assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
            assert_eq!(r.ext_fields.get("queueOffset"), Some(i.to_string().as_str()));
            assert_eq!(r.ext_fields.get("msgId").map(|s| s.len()), Some(32));
        }
        // Dispatch into the consume queue follows the append: wait until all ten are visible.
        wait_max_offset(&c, "Orders", 1, 10).await;
        // TAG filter: only A, each once, with offsets advancing past everything scanned.
        let r = pull(&c, "Orders", 1, 0, "A", 0).await;
        assert_eq!(r.code, response::SUCCESS);
        let got = records(&r.body);
        assert_eq!(got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(), ["A"; 5]);
        assert_eq!(got[2].1, b"body-4");
        assert_eq!(r.ext_fields.get("nextBeginOffset"), Some("10"), "past everything scanned");
        assert_eq!(r.ext_fields.get("maxOffset"), Some("10"));
        // Nothing matches from offset 9 on: retry immediately with the offset advanced.
        let r = pull(&c, "Orders", 1, 9, "A", 0).await;
        assert_eq!(r.code, response::PULL_RETRY_IMMEDIATELY);
        assert_eq!(r.ext_fields.get("nextBeginOffset"), Some("10"));
        // Long polling: a held pull is answered as soon as a message lands.
        let c2 = RemotingClient::connect(broker.broker).await.unwrap();
        let started = Instant::now();
        let held = tokio::spawn(async move { pull(&c2, "Orders", 1, 10, "*", 15_000).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!held.is_finished(), "the pull is held");
        // A heartbeat on the same connection is not blocked by the held pull.
        let hb = RemotingCommand::new_request(request::HEART_BEAT, ExtFields::new()).with_body(
            br#"{"clientID":"c1","producerDataSet":[],"consumerDataSet":[{"groupName":"CG","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","subscriptionDataSet":[{"topic":"Orders","subString":"B","tagsSet":["B"],"codeSet":[66],"subVersion":1}]}]}"#.to_vec(),
        );
        assert_eq!(c.invoke(hb, T).await.unwrap().code, response::SUCCESS);
        assert_eq!(send(&c, "Orders", 1, "C", "late", b"late").await.code, response::SUCCESS);
        let r = held.await.unwrap();
        assert_eq!(r.code, response::SUCCESS);
        assert_eq!(records(&r.body)[0].1, b"late");
        assert!(started.elapsed() < Duration::from_secs(10), "woken by the arrival, not the timeout");
        // A held pull with nothing arriving times out with PULL_NOT_FOUND.
        let r = pull(&c, "Orders", 1, 11, "*", 300).await;
        assert_eq!(r.code, response::PULL_NOT_FOUND);
        assert_eq!(r.ext_fields.get("nextBeginOffset"), Some("11"));
        // Without the subscription flag the heartbeat's subscription (tag B) filters.
        let req = RemotingCommand::new_request(
            request::PULL_MESSAGE,
            ext(&[("consumerGroup", "CG"), ("topic", "Orders"), ("queueId", "1"), ("queueOffset", "0"), ("maxMsgNums", "32"), ("sysFlag", "0")]),
        );
        let r = c.invoke(req, T).await.unwrap();
        assert_eq!(records(&r.body).iter().filter(|g| g.0 == "B").count(), 5);
        assert!(records(&r.body).iter().all(|g| g.0 == "B"));
        // Consumer list.
        let r = c
            .invoke(RemotingCommand::new_request(request::GET_CONSUMER_LIST_BY_GROUP, ext(&[("consumerGroup", "CG")])), T)
            .await
            .unwrap();
        assert_eq!(std::str::from_utf8(&r.body).unwrap(), r#"{"consumerIdList":["c1"]}"#);
        // Offsets: a young queue reads from 0; a committed offset is returned.
        let q = |queue: &'static str| {
            RemotingCommand::new_request(
                request::QUERY_CONSUMER_OFFSET,
                ext(&[("consumerGroup", "CG2"), ("topic", "Orders"), ("queueId", queue)]),
            )
        };
        let r = c.invoke(q("1"), T).await.unwrap();
        assert_eq!((r.code, r.ext_fields.get("offset")), (response::SUCCESS, Some("0")));
        let r = c.invoke(q("2"), T).await.unwrap();
        assert_eq!(r.code, response::QUERY_NOT_FOUND, "empty queue: the client applies consumeFromWhere");
        let up = RemotingCommand::new_request(
            request::UPDATE_CONSUMER_OFFSET,
            ext(&[("consumerGroup", "CG2"), ("topic", "Orders"), ("queueId", "1"), ("commitOffset", "7")]),
        );
        assert_eq!(c.invoke(up, T).await.unwrap().code, response::SUCCESS);
        assert_eq!(c.invoke(q("1"), T).await.unwrap().ext_fields.get("offset"), Some("7"));
        // Max / min / earliest / search by time.
        let qh = |code| RemotingCommand::new_request(code, ext(&[("topic", "Orders"), ("queueId", "1")]));
        assert_eq!(c.invoke(qh(request::GET_MAX_OFFSET), T).await.unwrap().ext_fields.get("offset"), Some("11"));
        assert_eq!(c.invoke(qh(request::GET_MIN_OFFSET), T).await.unwrap().ext_fields.get("offset"), Some("0"));
        let r = c.invoke(qh(request::GET_EARLIEST_MSG_STORETIME), T).await.unwrap();
        let first_ts: i64 = r.ext_fields.get("timestamp").unwrap().parse().unwrap();
        let s = RemotingCommand::new_request(
            request::SEARCH_OFFSET_BY_TIMESTAMP,
            ext(&[("topic", "Orders"), ("queueId", "1"), ("timestamp", &first_ts.to_string())]),
        );
        assert_eq!(c.invoke(s, T).await.unwrap().ext_fields.get("offset"), Some("0"));
        // Query by key, view by offset id.
        let qm = RemotingCommand::new_request(
            request::QUERY_MESSAGE,
            ext(&[("topic", "Orders"), ("key", "order-3"), ("maxNum", "32"), ("beginTimestamp", "0"), ("endTimestamp", &i64::MAX.to_string())]),
        );
        let r = c.invoke(qm, T).await.unwrap();
        assert_eq!(r.code, response::SUCCESS);
        assert_eq!(records(&r.body)[0].1, b"body-3");
        let sent = send(&c, "Orders", 0, "V", "view", b"view-me").await;
        let id = sent.ext_fields.get("msgId").unwrap().to_string();
        let (addr, off) = wasmq::protocol::message_id::decode(&id).unwrap();
        assert_eq!(addr, broker.broker);
        let v = RemotingCommand::new_request(request::VIEW_MESSAGE_BY_ID, ext(&[("offset", &off.to_string())]));
        assert_eq!(records(&c.invoke(v, T).await.unwrap().body)[0].1, b"view-me");
        // Batch: three messages, consecutive offsets, comma-joined ids.
        let mut body = Vec::new();
        for i in 0..3 {
            batch::encode_entry(&mut body, 0, format!("b{i}").as_bytes(), format!("TAGS\u{1}Z\u{2}UNIQ_KEY\u{1}U{i}\u{2}").as_bytes()).unwrap();
        }
        let req = RemotingCommand::new_request(
            request::SEND_BATCH_MESSAGE,
            ext(&[("a", "PG"), ("b", "Batch"), ("c", "TBW102"), ("d", "4"), ("e", "2"), ("f", "0"), ("g", "1"), ("h", "0"), ("i", ""), ("j", "0"), ("k", "false"), ("m", "true")]),
        )
        .with_body(body);
        let r = c.invoke(req, T).await.unwrap();
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
        assert_eq!(r.ext_fields.get("msgId").unwrap().split(',').count(), 3);
        let p = pull(&c, "Batch", 2, 0, "*", 5_000).await;
        assert_eq!(records(&p.body).iter().map(|g| g.2).collect::<Vec<_>>(), [0, 1, 2]);
    });
    assert!(
        broker.stop(),
        "clean shutdown on SIGTERM; log:\n{}",
        broker.log_text()
    );
    assert!(
        !dir.path().join("store").join("abort").exists(),
        "clean stop removes the abort marker"
    );
}

fn raw_frame(cmd: &RemotingCommand) -> Vec<u8> {
    let mut b = BytesMut::new();
    cmd.encode(&mut b).unwrap();
    b.to_vec()
}

/// Reads until EOF or error within the timeout: true if the server closed the connection.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn bad_input_gets_errors_and_harms_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("broker.toml");
    std::fs::write(
        &cfg,
        "[broker]\nauto_create_topic = false\n[store]\nmax_message_size = 65536\n",
    )
    .unwrap();
    let mut broker = BrokerProc::start(
        &dir.path().join("store"),
        &["--config", cfg.to_str().unwrap()],
    );
    let rt = rt();
    // A well-behaved client stays connected through all of it.
    let good = rt.block_on(RemotingClient::connect(broker.broker)).unwrap();
    let create = RemotingCommand::new_request(
        request::UPDATE_AND_CREATE_TOPIC,
        ext(&[
            ("topic", "Known"),
            ("readQueueNums", "2"),
            ("writeQueueNums", "2"),
            ("perm", "6"),
        ]),
    );
    assert_eq!(
        rt.block_on(good.invoke(create, T)).unwrap().code,
        response::SUCCESS
    );
    assert_eq!(
        rt.block_on(send(&good, "Known", 0, "A", "k", b"kept")).code,
        response::SUCCESS
    );

    // Garbage bytes.
    let mut s = TcpStream::connect(broker.broker).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(closed_by_server(&mut s), "garbage closes the connection");
    // A declared frame length of 2 GiB.
    let mut s = TcpStream::connect(broker.broker).unwrap();
    s.write_all(&0x7FFF_FFF0u32.to_be_bytes()).unwrap();
    s.write_all(&[0, 0, 0, 10]).unwrap();
    assert!(
        closed_by_server(&mut s),
        "a 2 GiB frame closes the connection"
    );
    // A header that is not JSON.
    let mut s = TcpStream::connect(broker.broker).unwrap();
    let hdr = b"this is not json";
    let mut f = Vec::new();
    f.extend_from_slice(&((4 + hdr.len()) as u32).to_be_bytes());
    f.extend_from_slice(&(hdr.len() as u32).to_be_bytes());
    f.extend_from_slice(hdr);
    s.write_all(&f).unwrap();
    assert!(
        closed_by_server(&mut s),
        "a non-JSON header closes the connection"
    );
    // A truncated frame, then the client goes away.
    let mut s = TcpStream::connect(broker.broker).unwrap();
    let frame = raw_frame(&RemotingCommand::new_request(
        request::HEART_BEAT,
        ExtFields::new(),
    ));
    s.write_all(&frame[..frame.len() / 2]).unwrap();
    drop(s);

    rt.block_on(async {
        // Missing required header field.
        let req = RemotingCommand::new_request(request::PULL_MESSAGE, ext(&[("topic", "Known")]));
        let r = good.invoke(req, T).await.unwrap();
        assert_eq!(r.code, response::SYSTEM_ERROR);
        assert!(r.remark.unwrap().contains("consumerGroup"));
        // Unknown topic with auto-create off.
        let r = send(&good, "Unknown", 0, "A", "k", b"x").await;
        assert_eq!(r.code, response::TOPIC_NOT_EXIST, "{:?}", r.remark);
        let ns = RemotingClient::connect(broker.namesrv).await.unwrap();
        let r = ns
            .invoke(
                RemotingCommand::new_request(
                    request::GET_ROUTEINFO_BY_TOPIC,
                    ext(&[("topic", "Unknown")]),
                ),
                T,
            )
            .await
            .unwrap();
        assert_eq!(r.code, response::TOPIC_NOT_EXIST);
        // A message over the size limit.
        let r = send(&good, "Known", 0, "A", "k", &vec![7u8; 70_000]).await;
        assert_eq!(r.code, response::MESSAGE_ILLEGAL, "{:?}", r.remark);
        // A bad queue id.
        let r = send(&good, "Known", 9, "A", "k", b"x").await;
        assert_eq!(r.code, response::SYSTEM_ERROR);
        // Delays cannot ride in a batch.
        let mut body = Vec::new();
        batch::encode_entry(&mut body, 0, b"d", b"DELAY\x012\x02").unwrap();
        let req = RemotingCommand::new_request(
            request::SEND_BATCH_MESSAGE,
            ext(&[("a", "PG"), ("b", "Known"), ("e", "0"), ("m", "true")]),
        )
        .with_body(body);
        let r = good.invoke(req, T).await.unwrap();
        assert_eq!(r.code, response::MESSAGE_ILLEGAL, "{:?}", r.remark);
        // System topics are not writable by clients.
        for t in ["SCHEDULE_TOPIC_XXXX", "rmq_sys_wheel_timer", "TBW102"] {
            let r = send(&good, t, 0, "A", "k", b"x").await;
            assert_eq!(r.code, response::NO_PERMISSION, "{t}: {:?}", r.remark);
        }
        // An unknown request code.
        let r = good
            .invoke(RemotingCommand::new_request(9999, ExtFields::new()), T)
            .await
            .unwrap();
        assert_eq!(r.code, response::REQUEST_CODE_NOT_SUPPORTED);
        // A malformed batch body.
        let req = RemotingCommand::new_request(
            request::SEND_BATCH_MESSAGE,
            ext(&[("a", "PG"), ("b", "Known"), ("e", "0"), ("m", "true")]),
        )
        .with_body(vec![0, 0, 0, 99, 1, 2, 3]);
        assert_eq!(
            good.invoke(req, T).await.unwrap().code,
            response::MESSAGE_ILLEGAL
        );
        // Still serving, and what was stored is intact (held until dispatch indexed it).
        let r = pull(&good, "Known", 0, 0, "*", 5000).await;
        assert_eq!(r.code, response::SUCCESS);
        let got = records(&r.body);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, b"kept");
    });
    assert!(
        broker.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "broker still running"
    );
    assert!(broker.stop());
}
