//! kill -9 of the real broker under `sync` flush: producers send concurrently, the broker is
//! killed with SIGKILL mid-stream and restarted on the same store, and a consumer then
//! receives every message whose send returned SEND_OK (checked by body), each once per queue.

mod broker_support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker_support::wire::{ext, pull_req, records};
use broker_support::BrokerProc;
use wasmq::net::RemotingClient;
use wasmq::protocol::{request, response, RemotingCommand};

#[test]
fn acknowledged_sends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProc::start(&dir.path().join("store"), &["--flush", "sync"]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let addr = broker.broker;
    // Create the topic first so every producer sees four queues.
    rt.block_on(async {
        let c = RemotingClient::connect(addr).await.unwrap();
        let req = RemotingCommand::new_request(
            request::UPDATE_AND_CREATE_TOPIC,
            ext(&[
                ("topic", "CrashTopic"),
                ("readQueueNums", "4"),
                ("writeQueueNums", "4"),
                ("perm", "6"),
            ]),
        );
        assert_eq!(
            c.invoke(req, Duration::from_secs(5)).await.unwrap().code,
            response::SUCCESS
        );
    });
    let producers: Vec<_> = (0..8)
        .map(|p| {
            let acked = acked.clone();
            rt.spawn(async move {
                let Ok(c) = RemotingClient::connect(addr).await else {
                    return;
                };
                // Bounded: the kill ends it long before.
                for i in 0..100_000 {
                    let body = format!("p{p}-m{i}");
                    let req = RemotingCommand::new_request(
                        request::SEND_MESSAGE_V2,
                        ext(&[
                            ("a", "PG"),
                            ("b", "CrashTopic"),
                            ("e", &(i % 4).to_string()),
                            ("i", "WAIT\u{1}true\u{2}"),
                        ]),
                    )
                    .with_body(body.clone().into_bytes());
                    match c.invoke(req, Duration::from_secs(5)).await {
                        Ok(r) if r.code == response::SUCCESS => acked.lock().unwrap().push(body),
                        _ => return,
                    }
                }
            })
        })
        .collect();
    // Kill once a good number of sends were acknowledged (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 2000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    broker.kill9();
    for p in producers {
        let _ = rt.block_on(p);
    }
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(
        acked.len() >= 100,
        "producers got acknowledgements before the kill"
    );
    broker.restart();
    let got = rt.block_on(async {
        let c = RemotingClient::connect(addr).await.unwrap();
        let mut got: Vec<String> = Vec::new();
        for q in 0..4 {
            let mut offset = 0i64;
            loop {
                let req = pull_req("CG", "CrashTopic", q, offset, 32, 0);
                let r = c.invoke(req, Duration::from_secs(10)).await.unwrap();
                if r.code != response::SUCCESS {
                    break;
                }
                for m in records(&r.body) {
                    assert_eq!(
                        m.queue_offset, offset,
                        "queue {q} offsets are dense, no duplicates"
                    );
                    got.push(m.text());
                    offset += 1;
                }
            }
        }
        got
    });
    let got_set: HashSet<&String> = got.iter().collect();
    assert_eq!(got_set.len(), got.len(), "no message stored twice");
    let lost: Vec<&String> = acked.iter().filter(|a| !got_set.contains(a)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        broker.log_text().contains("crashed=true"),
        "recovery saw the crash"
    );
    eprintln!(
        "kill -9: {} acknowledged sends, {} messages after restart, none lost",
        acked.len(),
        got.len()
    );
    assert!(broker.stop());
}
