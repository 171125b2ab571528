//! A standalone `wasmq-namesrv` with two `wasmq-broker`s registering with it: routes name both
//! brokers, and a message sent to each is readable from it.

mod broker_support;

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker_support::free_port;
use wasmq::net::RemotingClient;
use wasmq::protocol::route::TopicRouteData;
use wasmq::protocol::{request, response, ExtFields, RemotingCommand};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(a: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(a).is_err() {
        assert!(Instant::now() < deadline, "{a} never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start_namesrv(ns: SocketAddr) -> Kill {
    let k = Kill(
        Command::new(env!("CARGO_BIN_EXE_wasmq-namesrv"))
            .args(["--listen", &ns.to_string()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(ns);
    k
}

/// A broker without an embedded NameServer, registering with `ns`.
fn start_broker(addr: SocketAddr, ns: SocketAddr, name: &str, dir: &std::path::Path) -> Kill {
    let k = Kill(
        Command::new(env!("CARGO_BIN_EXE_wasmq-broker"))
            .args(["--listen", &addr.to_string(), "--namesrv-listen", "off"])
            .args(["--namesrv", &ns.to_string()])
            .args(["--broker-name", name, "--segment-size", "4194304"])
            .args(["--ha-listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--store-dir")
            .arg(dir.join(name))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(addr);
    k
}

#[test]
fn two_brokers_register_with_a_standalone_namesrv() {
    let dir = tempfile::tempdir().unwrap();
    let ns: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _ns = start_namesrv(ns);
    let mut brokers = Vec::new();
    let mut addrs = Vec::new();
    for name in ["broker-a", "broker-b"] {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        brokers.push(start_broker(addr, ns, name, dir.path()));
        addrs.push(addr);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = RemotingClient::connect(ns).await.unwrap();
        // Brokers register at start; wait (bounded) until both are in the route.
        let deadline = Instant::now() + Duration::from_secs(30);
        let route = loop {
            let mut e = ExtFields::new();
            e.insert("topic", "SharedTopic");
            let r = c
                .invoke(
                    RemotingCommand::new_request(request::GET_ROUTEINFO_BY_TOPIC, e),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            if r.code == response::SUCCESS {
                let route = TopicRouteData::from_json(&r.body).unwrap();
                if route.broker_datas.len() == 2 {
                    break route;
                }
            }
            assert!(
                Instant::now() < deadline,
                "both brokers never appeared in the route"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut named: Vec<String> = route
            .broker_datas
            .iter()
            .map(|b| b.master_addr().unwrap().to_string())
            .collect();
        named.sort();
        let mut want: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        want.sort();
        assert_eq!(named, want);
        // Each broker accepts a send for the topic it was routed.
        for a in &addrs {
            let b = RemotingClient::connect(*a).await.unwrap();
            let mut e = ExtFields::new();
            for (k, v) in [("a", "PG"), ("b", "SharedTopic"), ("e", "0"), ("i", "")] {
                e.insert(k, v);
            }
            let r = b
                .invoke(
                    RemotingCommand::new_request(request::SEND_MESSAGE_V2, e)
                        .with_body(b"x".to_vec()),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
        }
        // After the sends both brokers report the topic itself (not just TBW102).
        let r = c
            .invoke(
                RemotingCommand::new_request(request::GET_BROKER_CLUSTER_INFO, ExtFields::new()),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        let info: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            info["clusterAddrTable"]["DefaultCluster"]
                .as_array()
                .map(|a| a.len()),
            Some(2)
        );
    });
}

/// A broker whose NameServer is not up yet retries with back-off (not only at the 30 s
/// registration interval): once the NameServer starts, the broker's route appears within
/// seconds.
#[test]
fn a_broker_started_before_its_namesrv_registers_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let ns: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _broker = start_broker(addr, ns, "broker-a", dir.path());
    // Its first registrations fail: nothing listens yet.
    std::thread::sleep(Duration::from_millis(1500));
    let _ns = start_namesrv(ns);
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = RemotingClient::connect(ns).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = c
                .invoke(
                    RemotingCommand::new_request(
                        request::GET_BROKER_CLUSTER_INFO,
                        ExtFields::new(),
                    ),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            let info: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            if info["clusterAddrTable"]["DefaultCluster"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the broker did not register within 15 s of the NameServer starting (interval is 30 s)"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    eprintln!(
        "registered {:?} after the NameServer started",
        started.elapsed()
    );
}
