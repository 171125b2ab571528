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
const PING_CLIENT: i32 = 9050;
const T: Duration = Duration::from_secs(5);

#[derive(Default)]
struct TestHandler {
    oneways: AtomicUsize,
    disconnects: AtomicUsize,
}

impl RequestHandler for TestHandler {
    fn handle(&self, conn: Arc<Connection>, req: RemotingCommand) -> HandlerFuture<'_> {
        Box::pin(async move {
            if req.is_oneway() {
                self.oneways.fetch_add(1, Ordering::SeqCst);
            }
            let remark = match req.code {
                SLOW => {
                    let ms = req.ext_fields.get_i64("ms").ok().flatten().unwrap_or(300);
                    tokio::time::sleep(Duration::from_millis(ms as u64)).await;
                    "slow".to_string()
                }
                FAST => "fast".to_string(),
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
