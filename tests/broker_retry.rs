//! Delay levels, consumer send-back into `%RETRY%<group>`, dead letters in `%DLQ%<group>`, and
//! scheduled messages surviving a SIGKILL, against the real broker binary with short levels.

mod broker_support;

use std::time::{Duration, Instant};

use broker_support::wire::{ext, pull_req, records, send_req, Rec};
use broker_support::BrokerProc;
use wasmq::net::RemotingClient;
use wasmq::protocol::{message_id, request, response, RemotingCommand};

const T: Duration = Duration::from_secs(10);

async fn send(c: &RemotingClient, topic: &str, props: &str, body: &str) -> RemotingCommand {
    c.invoke(send_req(topic, 0, props, body.as_bytes()), T)
        .await
        .unwrap()
}

/// Pulls one message from queue 0 of `topic` at `offset`, waiting (long poll, bounded).
async fn pull_one(c: &RemotingClient, topic: &str, offset: i64, wait_ms: i64) -> Option<Rec> {
    let r = c
        .invoke(
            pull_req("G", topic, 0, offset, 1, wait_ms),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    (r.code == response::SUCCESS).then(|| records(&r.body).remove(0))
}

fn config(dir: &std::path::Path) -> String {
    let cfg = dir.join("broker.toml");
    std::fs::write(
        &cfg,
        "[broker]\nmessage_delay_levels = \"300ms 600ms 200ms 200ms 200ms 200ms 200ms 200ms 3s\"\n",
    )
    .unwrap();
    cfg.to_string_lossy().into_owned()
}

async fn send_back(c: &RemotingClient, phys: i64, level: i32, max: i32) -> RemotingCommand {
    let req = RemotingCommand::new_request(
        request::CONSUMER_SEND_MSG_BACK,
        ext(&[
            ("offset", &phys.to_string()),
            ("group", "G"),
            ("delayLevel", &level.to_string()),
            ("maxReconsumeTimes", &max.to_string()),
        ]),
    );
    c.invoke(req, T).await.unwrap()
}

#[test]
fn delay_retry_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let broker = BrokerProc::start(&dir.path().join("store"), &["--config", &cfg]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        // Delay level 2 (600 ms here): not visible before, delivered after, once.
        let sent_at = wasmq::store::commit_log::now_ms();
        let r = send(&c, "Delayed", "DELAY\u{1}2\u{2}TAGS\u{1}d\u{2}", "later").await;
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
        let m = pull_one(&c, "Delayed", 0, 5000)
            .await
            .expect("delivered when due");
        assert_eq!(m.text(), "later");
        assert!(
            m.store_ts - sent_at >= 600,
            "delivered {} ms after the send",
            m.store_ts - sent_at
        );
        assert_eq!(m.topic, "Delayed");
        assert!(m.prop("REAL_TOPIC").is_none() && m.prop("DELAY").is_none());
        assert_eq!(m.prop("TAGS"), Some("d"));
        assert!(
            pull_one(&c, "Delayed", 1, 300).await.is_none(),
            "delivered once"
        );
        // Bad levels: negative is refused; above the count is clamped to the longest.
        let r = send(&c, "Delayed", "DELAY\u{1}-1\u{2}", "bad").await;
        assert_eq!(r.code, response::MESSAGE_ILLEGAL);
        let r = send(&c, "Delayed", "DELAY\u{1}x\u{2}", "bad").await;
        assert_eq!(r.code, response::MESSAGE_ILLEGAL);

        // Send-back: reconsume 1, 2 in %RETRY%G, then the dead-letter queue.
        let r = send(&c, "Work", "TAGS\u{1}w\u{2}", "job").await;
        let (_, mut phys) = message_id::decode(r.ext_fields.get("msgId").unwrap()).unwrap();
        let origin = r.ext_fields.get("msgId").unwrap().to_string();
        for attempt in 1..=2 {
            let r = send_back(&c, phys, 0, 2).await;
            assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
            let m = pull_one(&c, "%RETRY%G", attempt - 1, 5000)
                .await
                .expect("retried");
            assert_eq!((m.text().as_str(), m.reconsume), ("job", attempt as i32));
            assert_eq!(m.prop("RETRY_TOPIC"), Some("Work"));
            assert_eq!(m.prop("ORIGIN_MESSAGE_ID"), Some(origin.as_str()));
            phys = m.phys;
        }
        let r = send_back(&c, phys, 0, 2).await;
        assert_eq!(r.code, response::SUCCESS);
        let m = pull_one(&c, "%DLQ%G", 0, 2000)
            .await
            .expect("dead-lettered");
        assert_eq!((m.text().as_str(), m.reconsume), ("job", 3));
        assert_eq!(m.prop("DLQ_ORIGIN_TOPIC"), Some("Work"));
        assert_eq!(m.prop("DLQ_ORIGIN_MESSAGE_ID"), Some(origin.as_str()));
        assert!(
            pull_one(&c, "%RETRY%G", 2, 300).await.is_none(),
            "no longer retried"
        );
        // A negative level goes straight to the DLQ; an unknown offset is refused.
        let r = send(&c, "Work", "", "poison").await;
        let (_, p) = message_id::decode(r.ext_fields.get("msgId").unwrap()).unwrap();
        assert_eq!(send_back(&c, p, -1, 16).await.code, response::SUCCESS);
        assert_eq!(
            pull_one(&c, "%DLQ%G", 1, 2000).await.unwrap().text(),
            "poison"
        );
        assert_eq!(
            send_back(&c, 1 << 40, 0, 16).await.code,
            response::SYSTEM_ERROR
        );
    });
}

#[test]
fn scheduled_messages_survive_sigkill_and_arrive_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut broker = BrokerProc::start(
        &dir.path().join("store"),
        &["--config", &cfg, "--flush", "sync"],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        // Level 9 = 3 s: still parked when the broker dies; level 1 = 300 ms: some delivered.
        for i in 0..20 {
            let level = if i % 2 == 0 { 9 } else { 1 };
            let r = send(
                &c,
                "Parked",
                &format!("DELAY\u{1}{level}\u{2}"),
                &format!("p{i}"),
            )
            .await;
            assert_eq!(r.code, response::SUCCESS);
        }
        // Failed messages pending in the retry topic (level 9 = 3 s) when the broker dies.
        for i in 0..5 {
            let r = send(&c, "Failing", "", &format!("f{i}")).await;
            let (_, phys) = message_id::decode(r.ext_fields.get("msgId").unwrap()).unwrap();
            assert_eq!(send_back(&c, phys, 9, 16).await.code, response::SUCCESS);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
    broker.kill9();
    broker.restart();
    rt.block_on(async {
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.len() < 20 && Instant::now() < deadline {
            if let Some(m) = pull_one(&c, "Parked", got.len() as i64, 5000).await {
                got.push(m.text());
            }
        }
        // Nothing more arrives: the scheduler delivered each exactly once.
        assert!(
            pull_one(&c, "Parked", 20, 1500).await.is_none(),
            "a message was delivered twice"
        );
        got.sort();
        let mut want: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
        want.sort();
        assert_eq!(got, want);
        let mut retried = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while retried.len() < 5 && Instant::now() < deadline {
            if let Some(m) = pull_one(&c, "%RETRY%G", retried.len() as i64, 5000).await {
                assert_eq!(m.reconsume, 1);
                retried.push(m.text());
            }
        }
        assert!(
            pull_one(&c, "%RETRY%G", 5, 1500).await.is_none(),
            "a retry was delivered twice"
        );
        retried.sort();
        assert_eq!(retried, ["f0", "f1", "f2", "f3", "f4"]);
    });
}
