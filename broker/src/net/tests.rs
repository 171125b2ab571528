//! End-to-end tests of the transport over loopback TCP.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::*;
use crate::protocol::{response, ExtFields, FrameCodec, RemotingCommand};

const SLOW: i32 = 9001;
const FAST: i32 = 9002;
const CALLBACK: i32 = 9003;
const BIG: i32 = 9004;
/// Keeps its worker thread busy for `us` microseconds without yielding (CPU-bound work).
const SPIN: i32 = 9005;
const PING_CLIENT: i32 = 9050;
const T: Duration = Duration::from_secs(5);

#[derive(Default)]
struct TestHandler {
    oneways: AtomicUsize,
    disconnects: AtomicUsize,
    /// Requests handled (entered `handle`).
    handled: AtomicUsize,
    /// SLOW requests running now, and the most ever at once.
    active: AtomicUsize,
    peak: AtomicUsize,
    /// The most bytes ever queued for a peer, seen when a request arrived.
    peak_queued: AtomicUsize,
    /// The tasks FAST requests ran on.
    fast_tasks: parking_lot::Mutex<std::collections::HashSet<tokio::task::Id>>,
}

impl RequestHandler for TestHandler {
    fn handle(&self, conn: Arc<Connection>, req: RemotingCommand) -> HandlerFuture<'_> {
        Box::pin(async move {
            self.handled.fetch_add(1, Ordering::SeqCst);
            self.peak_queued
                .fetch_max(conn.queued_bytes(), Ordering::SeqCst);
            if req.is_oneway() {
                self.oneways.fetch_add(1, Ordering::SeqCst);
            }
            let remark = match req.code {
                SLOW => {
                    let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
                    self.peak.fetch_max(now, Ordering::SeqCst);
                    let ms = req.ext_fields.get_i64("ms").ok().flatten().unwrap_or(300);
                    tokio::time::sleep(Duration::from_millis(ms as u64)).await;
                    self.active.fetch_sub(1, Ordering::SeqCst);
                    "slow".to_string()
                }
                SPIN => {
                    let us = req.ext_fields.get_i64("us").ok().flatten().unwrap_or(200);
                    std::thread::sleep(Duration::from_micros(us as u64));
                    "spun".to_string()
                }
                BIG => {
                    let kib = req.ext_fields.get_i64("kib").ok().flatten().unwrap_or(64);
                    return Some(
                        RemotingCommand::response_to(&req, response::SUCCESS, None)
                            .with_body(vec![b'x'; kib as usize * 1024]),
                    );
                }
                FAST => {
                    if let Some(id) = tokio::task::try_id() {
                        self.fast_tasks.lock().insert(id);
                    }
                    "fast".to_string()
                }
                CALLBACK => {
                    let ask = RemotingCommand::new_request(PING_CLIENT, ExtFields::new());
                    match conn.request(ask, T).await {
                        Ok(r) => format!("client said {}", r.remark.unwrap_or_default()),
                        Err(e) => format!("error {e}"),
                    }
                }
                _ => return Some(RemotingCommand::not_supported(&req)),
            };
            // Always answers, even oneway requests: the transport must drop those.
            Some(
                RemotingCommand::response_to(&req, response::SUCCESS, Some(remark))
                    .with_body(req.body.clone()),
            )
        })
    }

    fn on_disconnect(&self, _conn: &Arc<Connection>) {
        self.disconnects.fetch_add(1, Ordering::SeqCst);
    }
}

struct ClientHandler;

impl RequestHandler for ClientHandler {
    fn handle(&self, _conn: Arc<Connection>, req: RemotingCommand) -> HandlerFuture<'_> {
        Box::pin(async move {
            Some(RemotingCommand::response_to(
                &req,
                response::SUCCESS,
                Some("pong".into()),
            ))
        })
    }
}

/// Answers "pong" after 100 ms, so requests sent meanwhile are ahead of the answer on the wire.
struct LateClientHandler;

impl RequestHandler for LateClientHandler {
    fn handle(&self, _conn: Arc<Connection>, req: RemotingCommand) -> HandlerFuture<'_> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some(RemotingCommand::response_to(
                &req,
                response::SUCCESS,
                Some("pong".into()),
            ))
        })
    }
}

async fn start(config: NetConfig) -> (std::net::SocketAddr, Arc<TestHandler>, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(TestHandler::default());
    let (tx, rx) = watch::channel(false);
    tokio::spawn(serve(listener, handler.clone(), config, rx));
    (addr, handler, tx)
}

fn req(code: i32) -> RemotingCommand {
    RemotingCommand::new_request(code, ExtFields::new())
}

async fn read_frame(s: &mut TcpStream) -> Option<RemotingCommand> {
    let codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    loop {
        if let Some(f) = codec.decode(&mut buf).unwrap() {
            return Some(RemotingCommand::decode(f).unwrap());
        }
        let n = tokio::time::timeout(T, s.read_buf(&mut buf))
            .await
            .expect("read timed out")
            .ok()?;
        if n == 0 {
            return None;
        }
    }
}

async fn expect_eof(s: &mut TcpStream) {
    let mut b = [0u8; 64];
    let n = tokio::time::timeout(T, s.read(&mut b))
        .await
        .expect("connection was not closed");
    assert!(matches!(n, Ok(0) | Err(_)), "expected EOF, got {n:?}");
}

#[tokio::test]
async fn slow_request_does_not_block_fast_one() {
    let (addr, _h, _stop) = start(NetConfig::default()).await;
    let client = RemotingClient::connect(addr).await.unwrap();
    let mut slow = req(SLOW);
    slow.ext_fields.insert("ms", "400");
    let slow_fut = client.invoke(slow, T);
    let fast_fut = async {
        let r = client.invoke(req(FAST), T).await.unwrap();
        (r, tokio::time::Instant::now())
    };
    let (slow_r, (fast_r, fast_done)) = tokio::join!(slow_fut, fast_fut);
    let slow_done = tokio::time::Instant::now();
    assert_eq!(slow_r.unwrap().remark.as_deref(), Some("slow"));
    assert_eq!(fast_r.remark.as_deref(), Some("fast"));
    assert!(slow_done.duration_since(fast_done) > Duration::from_millis(200));

    // Many concurrent requests on one connection, each answered to its own opaque.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..200 {
        let conn = client.connection().clone();
        set.spawn(async move {
            let r = conn
                .request(req(FAST).with_body(format!("b{i}")), T)
                .await
                .unwrap();
            assert_eq!(&r.body[..], format!("b{i}").as_bytes());
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let nope = client.invoke(req(77), T).await.unwrap();
    assert_eq!(nope.code, response::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(
        nope.remark.as_deref(),
        Some("request type 77 not supported")
    );
}

#[tokio::test]
async fn requests_that_do_not_wait_are_handled_on_the_reader_and_answered_in_one_write() {
    let (addr, h, _stop) = start(NetConfig::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // 200 requests in one write: each handled on the connection's reader task (no task of its
    // own), the responses of one read written together, in request order.
    s.write_all(&encode_all((0..200).map(|_| req(FAST)), 1))
        .await
        .unwrap();
    let got = read_frames(&mut s, 200).await;
    let opaques: Vec<i32> = got.iter().map(|r| r.opaque).collect();
    assert_eq!(opaques, (1..=200).collect::<Vec<_>>());
    assert!(got.iter().all(|r| r.remark.as_deref() == Some("fast")));
    assert_eq!(
        h.fast_tasks.lock().len(),
        1,
        "FAST requests ran on several tasks"
    );
    // A request that waits goes on in a task of its own; the ones after it are not held up.
    let mut batch = encode_all([slow(300)], 1000);
    batch.extend_from_slice(&encode_all((0..10).map(|_| req(FAST)), 1001));
    s.write_all(&batch).await.unwrap();
    let first = read_frames(&mut s, 10).await;
    assert!(
        first.iter().all(|r| r.opaque > 1000),
        "the SLOW one came first"
    );
    let last = read_frames(&mut s, 1).await;
    assert_eq!(last[0].opaque, 1000);
}

#[tokio::test]
async fn oneway_gets_no_reply() {
    let (addr, h, _stop) = start(NetConfig::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = BytesMut::new();
    let mut ow = req(FAST);
    ow.opaque = 1;
    ow.mark_oneway();
    ow.encode(&mut buf).unwrap();
    let mut normal = req(FAST);
    normal.opaque = 2;
    normal.encode(&mut buf).unwrap();
    s.write_all(&buf).await.unwrap();
    let r = read_frame(&mut s).await.unwrap();
    assert_eq!(r.opaque, 2);
    assert!(r.is_response());
    assert_eq!(h.oneways.load(Ordering::SeqCst), 1);
    // Nothing else arrives.
    let mut b = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), s.read(&mut b))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn huge_frame_and_garbage_close_only_that_connection() {
    let (addr, h, _stop) = start(NetConfig::default()).await;
    let client = RemotingClient::connect(addr).await.unwrap();

    let mut huge = TcpStream::connect(addr).await.unwrap();
    huge.write_all(&0x7fff_ffffi32.to_be_bytes()).await.unwrap();
    huge.write_all(&[0, 0, 0, 10]).await.unwrap();
    expect_eof(&mut huge).await;

    let mut http = TcpStream::connect(addr).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    expect_eof(&mut http).await;

    // A well-framed frame with a garbage header.
    let mut bad = TcpStream::connect(addr).await.unwrap();
    let mut buf = BytesMut::new();
    FrameCodec::encode(&mut buf, 0, b"{not json", b"").unwrap();
    bad.write_all(&buf).await.unwrap();
    expect_eof(&mut bad).await;

    // Unknown serialize type.
    let mut st = TcpStream::connect(addr).await.unwrap();
    let mut buf = BytesMut::new();
    FrameCodec::encode(&mut buf, 9, b"{}", b"").unwrap();
    st.write_all(&buf).await.unwrap();
    expect_eof(&mut st).await;

    let r = client.invoke(req(FAST), T).await.unwrap();
    assert_eq!(r.code, response::SUCCESS);
    assert!(!client.is_closed());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(h.disconnects.load(Ordering::SeqCst) >= 4);
}

#[tokio::test]
async fn server_to_client_request() {
    let (addr, _h, _stop) = start(NetConfig::default()).await;
    let client =
        RemotingClient::connect_with(addr, NetConfig::client(), Some(Arc::new(ClientHandler)))
            .await
            .unwrap();
    let r = client.invoke(req(CALLBACK), T).await.unwrap();
    assert_eq!(r.remark.as_deref(), Some("client said pong"));

    // Without a client handler the server's request is answered "not supported".
    let plain = RemotingClient::connect(addr).await.unwrap();
    let r = plain.invoke(req(CALLBACK), T).await.unwrap();
    assert!(
        r.remark
            .as_deref()
            .unwrap()
            .contains("client said request type"),
        "{r:?}"
    );
}

#[tokio::test]
async fn idle_timeout_and_connection_limit() {
    let config = NetConfig {
        idle_timeout: Some(Duration::from_millis(150)),
        max_connections: 1,
        ..NetConfig::default()
    };
    let (addr, _h, _stop) = start(config).await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mut second = TcpStream::connect(addr).await.unwrap();
    expect_eof(&mut second).await;
    // The first one idles out.
    expect_eof(&mut first).await;
    // Its slot is released.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let client = RemotingClient::connect(addr).await.unwrap();
    assert!(client.invoke(req(FAST), T).await.is_ok());
}

#[tokio::test]
async fn shutdown_closes_connections_and_fails_pending() {
    let (addr, _h, stop) = start(NetConfig::default()).await;
    let client = RemotingClient::connect(addr).await.unwrap();
    let mut slow = req(SLOW);
    slow.ext_fields.insert("ms", "5000");
    let pending = client.invoke(slow, T);
    let stopper = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send_replace(true);
    };
    let (r, ()) = tokio::join!(pending, stopper);
    assert!(matches!(r, Err(NetError::ConnectionClosed)), "{r:?}");
    tokio::time::timeout(T, client.connection().closed())
        .await
        .unwrap();
    assert!(client.invoke(req(FAST), T).await.is_err());
}

#[tokio::test]
async fn request_timeout() {
    let (addr, _h, _stop) = start(NetConfig::default()).await;
    let client = RemotingClient::connect(addr).await.unwrap();
    let mut slow = req(SLOW);
    slow.ext_fields.insert("ms", "1000");
    let r = client.invoke(slow, Duration::from_millis(50)).await;
    assert!(matches!(r, Err(NetError::Timeout(_))));
    // The late response is discarded and the connection keeps working.
    assert!(client.invoke(req(FAST), T).await.is_ok());
}

/// Rough throughput check (not a timed test): `cargo test --release -- --ignored throughput --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    let (addr, _h, _stop) = start(NetConfig::default()).await;
    let per_task = 20_000;
    let conns = 4;
    let in_flight = 16;
    let started = std::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let client = Arc::new(RemotingClient::connect(addr).await.unwrap());
        for _ in 0..in_flight {
            let client = client.clone();
            set.spawn(async move {
                for _ in 0..per_task / in_flight {
                    client.invoke(req(FAST), T).await.unwrap();
                }
            });
        }
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let n = conns * per_task;
    let secs = started.elapsed().as_secs_f64();
    println!("{n} requests in {secs:.2}s = {:.0} req/s", n as f64 / secs);
}

// ------------------------------------------------------------ per-connection bounds

/// Encodes requests with opaques `first..` into one buffer.
fn encode_all(reqs: impl IntoIterator<Item = RemotingCommand>, first: i32) -> BytesMut {
    let mut buf = BytesMut::new();
    for (i, mut r) in reqs.into_iter().enumerate() {
        r.opaque = first + i as i32;
        r.encode(&mut buf).unwrap();
    }
    buf
}

fn slow(ms: u64) -> RemotingCommand {
    let mut r = req(SLOW);
    r.ext_fields.insert("ms", &ms.to_string());
    r
}

fn big(kib: usize) -> RemotingCommand {
    let mut r = req(BIG);
    r.ext_fields.insert("kib", &kib.to_string());
    r
}

/// Reads frames until `n` have arrived (bounded by `T` per read).
async fn read_frames(s: &mut TcpStream, n: usize) -> Vec<RemotingCommand> {
    let codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    while out.len() < n {
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            out.push(RemotingCommand::decode(f).unwrap());
        }
        if out.len() >= n {
            break;
        }
        let got = tokio::time::timeout(T, s.read_buf(&mut buf))
            .await
            .expect("read timed out")
            .unwrap();
        assert!(got > 0, "closed after {} of {n} frames", out.len());
    }
    out
}

async fn wait_until(what: &str, limit: Duration, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn inflight_bound_caps_requests_handled_at_once() {
    let config = NetConfig {
        max_inflight_per_connection: 4,
        ..NetConfig::default()
    };
    let (addr, h, _stop) = start(config).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let started = tokio::time::Instant::now();
    s.write_all(&encode_all((0..40).map(|_| slow(50)), 1))
        .await
        .unwrap();
    let mut got: Vec<i32> = read_frames(&mut s, 40)
        .await
        .iter()
        .map(|r| {
            assert_eq!(r.remark.as_deref(), Some("slow"));
            r.opaque
        })
        .collect();
    got.sort_unstable();
    assert_eq!(got, (1..=40).collect::<Vec<_>>());
    assert_eq!(h.peak.load(Ordering::SeqCst), 4, "4 slots, 40 requests");
    // 40 requests of 50 ms, 4 at a time.
    assert!(started.elapsed() >= Duration::from_millis(480));

    // Another connection has slots of its own.
    let mut other = TcpStream::connect(addr).await.unwrap();
    other
        .write_all(&encode_all((0..8).map(|_| slow(300)), 1))
        .await
        .unwrap();
    let client = RemotingClient::connect(addr).await.unwrap();
    wait_until("4 slow requests running", T, || {
        h.active.load(Ordering::SeqCst) == 4
    })
    .await;
    let fast = tokio::time::Instant::now();
    client.invoke(req(FAST), T).await.unwrap();
    assert!(fast.elapsed() < Duration::from_millis(250));
    assert_eq!(read_frames(&mut other, 8).await.len(), 8);
}

#[tokio::test]
async fn responses_from_the_peer_pass_while_every_slot_is_taken() {
    let config = NetConfig {
        max_inflight_per_connection: 2,
        ..NetConfig::default()
    };
    let (addr, _h, _stop) = start(config).await;
    let client =
        RemotingClient::connect_with(addr, NetConfig::client(), Some(Arc::new(LateClientHandler)))
            .await
            .unwrap();
    // Two CALLBACKs take both slots and wait for the client's answers, which arrive (100 ms later)
    // behind the FAST requests waiting for a slot: the reader must read past those to get them.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..7 {
        let conn = client.connection().clone();
        set.spawn(async move {
            let code = if i < 2 { CALLBACK } else { FAST };
            conn.request(req(code), Duration::from_secs(3)).await
        });
        if i < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let started = tokio::time::Instant::now();
    let mut remarks = Vec::new();
    while let Some(r) = set.join_next().await {
        remarks.push(r.unwrap().unwrap().remark.unwrap_or_default());
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        remarks.iter().filter(|r| *r == "client said pong").count(),
        2
    );
    assert_eq!(remarks.iter().filter(|r| *r == "fast").count(), 5);
}

#[tokio::test]
async fn oneway_flood_is_bounded_by_the_same_slots() {
    let config = NetConfig {
        max_inflight_per_connection: 4,
        ..NetConfig::default()
    };
    let (addr, h, _stop) = start(config).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let flood = (0..200).map(|_| {
        let mut r = slow(5);
        r.mark_oneway();
        r
    });
    let mut buf = encode_all(flood, 1);
    let mut last = req(FAST);
    last.opaque = 1000;
    last.encode(&mut buf).unwrap();
    s.write_all(&buf).await.unwrap();
    // Only the normal request is answered, after the oneways ahead of it got a slot.
    let r = read_frames(&mut s, 1).await.remove(0);
    assert_eq!((r.opaque, r.remark.as_deref()), (1000, Some("fast")));
    wait_until("every oneway handled", T, || {
        h.oneways.load(Ordering::SeqCst) == 200
    })
    .await;
    assert_eq!(h.peak.load(Ordering::SeqCst), 4);
    let mut b = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(100), s.read(&mut b))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn queued_bytes_bound_makes_responses_wait_for_a_slow_reader() {
    let config = NetConfig {
        max_queued_response_bytes: 256 * 1024,
        write_stall_timeout: Some(Duration::from_secs(2)),
        ..NetConfig::default()
    };
    let (addr, h, _stop) = start(config).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // 128 responses of 64 KiB (8 MiB) and one of 1 MiB, larger than the whole bound: it goes alone.
    let mut reqs: Vec<RemotingCommand> = (0..128).map(|_| big(64)).collect();
    reqs.push(big(1024));
    s.write_all(&encode_all(reqs, 1)).await.unwrap();
    // Read slowly: 64 KiB every 5 ms (about 12 MiB/s), slower than the server produces.
    let codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    let mut bodies = Vec::new();
    let deadline = tokio::time::Instant::now() + T;
    while bodies.len() < 129 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of 129",
            bodies.len()
        );
        let mut chunk = vec![0u8; 64 * 1024];
        let n = tokio::time::timeout(T, s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            bodies.push(RemotingCommand::decode(f).unwrap().body.len());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(bodies.iter().filter(|&&b| b == 64 * 1024).count(), 128);
    assert_eq!(bodies.iter().filter(|&&b| b == 1024 * 1024).count(), 1);
    assert_eq!(
        h.disconnects.load(Ordering::SeqCst),
        0,
        "a slow reader is not closed"
    );
    // Never more than the bound queued (one 1 MiB response alone may take all of it).
    assert!(h.peak_queued.load(Ordering::SeqCst) <= 256 * 1024);
}

#[tokio::test]
async fn peer_that_never_reads_is_closed_and_stops_being_read() {
    let config = NetConfig {
        max_inflight_per_connection: 8,
        max_queued_response_bytes: 1 << 20,
        write_stall_timeout: Some(Duration::from_millis(300)),
        ..NetConfig::default()
    };
    let (addr, h, _stop) = start(config).await;
    let client = RemotingClient::connect(addr).await.unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    // 400 responses of 64 KiB (25 MiB): more than socket buffers, the bound and the slots hold.
    let flood = encode_all((0..400).map(|_| big(64)), 1);
    let started = tokio::time::Instant::now();
    let writer = tokio::spawn(async move {
        // The server stops reading at some point; the write may fail once it closes.
        let r = s.write_all(&flood).await;
        (s, r)
    });
    wait_until("the non-reading peer closed", T, || {
        h.disconnects.load(Ordering::SeqCst) == 1
    })
    .await;
    let closed_after = started.elapsed();
    assert!(
        closed_after >= Duration::from_millis(300),
        "{closed_after:?}"
    );
    let handled = h.handled.load(Ordering::SeqCst);
    assert!(
        handled < 400,
        "the server kept reading: {handled} requests handled"
    );
    assert!(h.peak_queued.load(Ordering::SeqCst) <= 1 << 20);
    let (mut s, _) = tokio::time::timeout(T, writer).await.unwrap().unwrap();
    // What it reads now ends in EOF or a reset.
    let mut sink = vec![0u8; 1 << 20];
    let deadline = tokio::time::Instant::now() + T;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "not closed");
        match tokio::time::timeout(T, s.read(&mut sink)).await.unwrap() {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // The other connection is fine.
    assert!(client.invoke(req(FAST), T).await.is_ok());
}

/// The worst latency of 20 sequential FAST requests on one connection while another connection
/// floods CPU-bound requests (4,000 of 300 µs, 1.2 s of work).
async fn latency_beside_a_cpu_flood(inline_burst: usize) -> Duration {
    let config = NetConfig {
        inline_burst,
        ..NetConfig::default()
    };
    let (addr, h, _stop) = start(config).await;
    let client = RemotingClient::connect(addr).await.unwrap();
    let mut flooder = TcpStream::connect(addr).await.unwrap();
    let flood = encode_all(
        (0..4000).map(|_| {
            let mut r = req(SPIN);
            r.ext_fields.insert("us", "300");
            r
        }),
        1,
    );
    flooder.write_all(&flood).await.unwrap();
    wait_until("the flood is being handled", T, || {
        h.handled.load(Ordering::SeqCst) > 20
    })
    .await;
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let started = tokio::time::Instant::now();
        client.invoke(req(FAST), T).await.unwrap();
        worst = worst.max(started.elapsed());
    }
    assert!(
        h.handled.load(Ordering::SeqCst) < 4000 + 20,
        "the flood was over before the FAST requests were"
    );
    worst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_burst_makes_a_flooding_connection_take_turns() {
    // The flooding connection's reader handles 8 requests of 300 µs and yields: the FAST ones wait
    // about that (0.5 ms measured). Without the yield (inline_burst 100 000) its reader held a worker
    // for the whole flood and the worst FAST request took ~275 ms.
    let worst = latency_beside_a_cpu_flood(8).await;
    assert!(worst < Duration::from_millis(200), "worst {worst:?}");
}
