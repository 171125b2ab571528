//! Delivery at arbitrary times (TIMER_DELAY_MS, TIMER_DELIVER_MS, __STARTDELIVERTIME) against
//! the real broker binary: on time, once, across a SIGKILL, and the bad-input rules.

mod broker_support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use broker_support::wire::{pull_req, records, send_req};
use broker_support::BrokerProc;
use wasmq::net::RemotingClient;
use wasmq::protocol::{response, RemotingCommand};
use wasmq::store::commit_log::now_ms;

const T: Duration = Duration::from_secs(10);

async fn send(c: &RemotingClient, topic: &str, props: &str, body: &str) -> RemotingCommand {
    c.invoke(send_req(topic, 0, props, body.as_bytes()), T)
        .await
        .unwrap()
}

/// Reads queue 0 of `topic` until `n` messages arrived (bounded by `limit`), then lingers
/// briefly for duplicates. Returns body -> (store time, times seen).
async fn collect(
    c: &RemotingClient,
    topic: &str,
    n: usize,
    limit: Duration,
) -> HashMap<String, (i64, usize)> {
    let mut got: HashMap<String, (i64, usize)> = HashMap::new();
    let mut offset = 0i64;
    let deadline = Instant::now() + limit;
    let mut lingering = false;
    while Instant::now() < deadline {
        let wait = if lingering { 800 } else { 500 };
        let r = c
            .invoke(pull_req("G", topic, 0, offset, 32, wait), T)
            .await
            .unwrap();
        if r.code == response::SUCCESS {
            for m in records(&r.body) {
                got.entry(m.text()).or_insert((m.store_ts, 0)).1 += 1;
                offset += 1;
            }
        } else if lingering {
            break;
        }
        if offset as usize >= n {
            lingering = true;
        }
    }
    got
}

#[test]
fn timed_messages_arrive_on_time_once_and_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProc::start(&dir.path().join("store"), &["--flush", "sync"]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut due: HashMap<String, i64> = HashMap::new();
    rt.block_on(async {
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        // Bad input: too far ahead or not a number is refused; a past time is delivered now.
        let r = send(&c, "Timed", "TIMER_DELAY_SEC\u{1}999999999\u{2}", "far").await;
        assert_eq!(r.code, response::MESSAGE_ILLEGAL, "{:?}", r.remark);
        let r = send(&c, "Timed", "TIMER_DELAY_MS\u{1}soon\u{2}", "nan").await;
        assert_eq!(r.code, response::MESSAGE_ILLEGAL);
        let now = now_ms();
        let past = format!("TIMER_DELIVER_MS\u{1}{}\u{2}", now - 60_000);
        assert_eq!(
            send(&c, "Timed", &past, "past").await.code,
            response::SUCCESS
        );
        due.insert("past".into(), now);
        // 40 messages at scattered times in the next 0.3-2.5 s, in no particular order.
        for i in 0..40u64 {
            let delay = 300 + (i * 7919) % 2200;
            let props = match i % 3 {
                0 => format!("TIMER_DELAY_MS\u{1}{delay}\u{2}"),
                1 => format!("TIMER_DELIVER_MS\u{1}{}\u{2}", now_ms() + delay as i64),
                _ => format!("__STARTDELIVERTIME\u{1}{}\u{2}", now_ms() + delay as i64),
            };
            due.insert(format!("t{i}"), now_ms() + delay as i64);
            assert_eq!(
                send(&c, "Timed", &props, &format!("t{i}")).await.code,
                response::SUCCESS
            );
        }
        let got = collect(&c, "Timed", 41, Duration::from_secs(20)).await;
        assert_eq!(got.len(), 41, "every timed message delivered");
        for (body, (stored, n)) in &got {
            assert_eq!(*n, 1, "{body} delivered once");
            let want = due[body];
            assert!(
                *stored >= want - 5,
                "{body} delivered {} ms early",
                want - stored
            );
            assert!(
                *stored <= want + 1500,
                "{body} delivered {} ms late",
                stored - want
            );
        }
        // Park more for after a crash: due in 1-3 s; kill the broker after 1.2 s.
        for i in 0..30u64 {
            let props = format!("TIMER_DELAY_MS\u{1}{}\u{2}", 1000 + (i * 104729) % 2000);
            assert_eq!(
                send(&c, "Crash", &props, &format!("c{i}")).await.code,
                response::SUCCESS
            );
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
    });
    broker.kill9();
    broker.restart();
    rt.block_on(async {
        let c = RemotingClient::connect(broker.broker).await.unwrap();
        let got = collect(&c, "Crash", 30, Duration::from_secs(20)).await;
        assert_eq!(got.len(), 30, "all delivered after the restart");
        assert!(
            got.values().all(|v| v.1 == 1),
            "none delivered twice: {got:?}"
        );
    });
    assert!(broker.stop());
}
