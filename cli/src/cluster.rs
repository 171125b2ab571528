//! `wasmq cluster`: the broker groups the NameServer knows (GET_BROKER_CLUSTER_INFO) and the
//! replication state each broker reports (HA_STATUS): role, addresses and commit-log offset;
//! per slave of a master its confirmed offset, lag and whether it counts as in sync; for a
//! slave its link to the master. A broker that does not answer is shown as unreachable.

use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use wasmq::net::RemotingClient;
use wasmq::protocol::{request, response, ExtFields, RemotingCommand};

use crate::rpc::Cluster;

/// How long one broker may take to connect and answer before it is shown as unreachable.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// Print each broker's status as JSON (one line per broker).
    #[arg(long)]
    pub json: bool,
}

/// One broker address the NameServer lists, and what it answered.
#[derive(Debug)]
struct Member {
    cluster: String,
    broker_name: String,
    broker_id: i64,
    addr: String,
    /// Its HA_STATUS body, or why there is none.
    status: Result<Value, String>,
}

pub async fn run(c: &mut Cluster, a: ClusterArgs) -> Result<()> {
    let r = c
        .namesrv_call(RemotingCommand::new_request(
            request::GET_BROKER_CLUSTER_INFO,
            ExtFields::new(),
        ))
        .await?;
    let info: Value = serde_json::from_slice(&r.body)?;
    let listed = listed_brokers(&info);
    if listed.is_empty() {
        bail!("no broker is registered with the NameServer");
    }
    let mut asks = JoinSet::new();
    for (i, (_, _, _, addr)) in listed.iter().enumerate() {
        let addr = addr.clone();
        asks.spawn(async move { (i, ha_status(&addr).await) });
    }
    let mut answers: Vec<Option<Result<Value, String>>> = vec![None; listed.len()];
    while let Some(done) = asks.join_next().await {
        match done {
            Ok((i, s)) => answers[i] = Some(s),
            Err(e) => bail!("a status request failed: {e}"),
        }
    }
    let members: Vec<Member> = listed
        .into_iter()
        .zip(answers)
        .map(|((cluster, broker_name, broker_id, addr), s)| Member {
            cluster,
            broker_name,
            broker_id,
            addr,
            status: s.unwrap_or_else(|| Err("not asked".to_string())),
        })
        .collect();
    if a.json {
        for m in &members {
            println!("{}", member_json(m));
        }
    } else {
        print!("{}", render(&members));
    }
    Ok(())
}

/// (cluster, broker name, broker id, address) of every address in the cluster info, sorted.
fn listed_brokers(info: &Value) -> Vec<(String, String, i64, String)> {
    let mut out = Vec::new();
    for (name, b) in info["brokerAddrTable"].as_object().into_iter().flatten() {
        let cluster = b["cluster"].as_str().unwrap_or("").to_string();
        for (id, addr) in b["brokerAddrs"].as_object().into_iter().flatten() {
            let (Ok(id), Some(addr)) = (id.parse::<i64>(), addr.as_str()) else {
                continue;
            };
            out.push((cluster.clone(), name.clone(), id, addr.to_string()));
        }
    }
    out.sort();
    out
}

/// Asks one broker for its replication state.
async fn ha_status(addr: &str) -> Result<Value, String> {
    let ask = async {
        let c = RemotingClient::connect(addr)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let r = c
            .invoke(
                RemotingCommand::new_request(request::HA_STATUS, ExtFields::new()),
                STATUS_TIMEOUT,
            )
            .await;
        c.close();
        let r = r.map_err(|e| format!("no answer: {e}"))?;
        if r.code != response::SUCCESS {
            return Err(match r.remark.as_deref().map(str::trim) {
                Some(reason) if !reason.is_empty() => {
                    format!("no replication status: {reason}")
                }
                _ => format!("no replication status (response code {})", r.code),
            });
        }
        serde_json::from_slice(&r.body).map_err(|e| format!("unreadable status: {e}"))
    };
    tokio::time::timeout(STATUS_TIMEOUT, ask)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {STATUS_TIMEOUT:?}")))
}

fn member_json(m: &Member) -> Value {
    let mut v = json!({
        "cluster": m.cluster,
        "brokerName": m.broker_name,
        "brokerId": m.broker_id,
        "addr": m.addr,
        "reachable": m.status.is_ok(),
    });
    match &m.status {
        Ok(s) => v["status"] = s.clone(),
        Err(e) => v["error"] = Value::String(e.clone()),
    }
    v
}

/// A JSON number as text, `-` when absent.
fn num(v: &Value) -> String {
    match v.as_u64() {
        Some(n) => n.to_string(),
        None => v.as_i64().map_or("-".to_string(), |n| n.to_string()),
    }
}

fn yes_no(v: &Value) -> &'static str {
    if v.as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    }
}

/// The table: per broker group its cluster and name, then a row per broker with the lines
/// about its slaves (master) or its master (slave) beneath.
fn render(members: &[Member]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut group: Option<(&str, &str)> = None;
    for m in members {
        if group != Some((&m.cluster, &m.broker_name)) {
            if group.is_some() {
                out.push('\n');
            }
            group = Some((&m.cluster, &m.broker_name));
            let _ = writeln!(out, "cluster {}  broker {}", m.cluster, m.broker_name);
            let _ = writeln!(
                out,
                "  {:>3}  {:<12}  {:<22}  {:<22}  {:>14}",
                "ID", "ROLE", "ADDRESS", "HA ADDRESS", "MAX OFFSET"
            );
        }
        let s = match &m.status {
            Ok(s) => s,
            Err(e) => {
                let _ = writeln!(
                    out,
                    "  {:>3}  {:<12}  {:<22}  {:<22}  {:>14}",
                    m.broker_id, "unreachable", m.addr, "-", "-"
                );
                let _ = writeln!(out, "       error: {e}");
                continue;
            }
        };
        let _ = writeln!(
            out,
            "  {:>3}  {:<12}  {:<22}  {:<22}  {:>14}",
            m.broker_id,
            s["role"].as_str().unwrap_or("?"),
            m.addr,
            s["haAddr"].as_str().unwrap_or("-"),
            num(&s["maxOffset"]),
        );
        if s["role"].as_str() == Some("slave") {
            let ms = &s["master"];
            let ha = ms["haAddr"]
                .as_str()
                .unwrap_or("unknown (no master registered)");
            let state = if ms["connected"].as_bool() == Some(true) {
                "connected"
            } else {
                "not connected"
            };
            let mut line = format!(
                "       master {ha}: {state}, lag {} bytes",
                num(&ms["lagBytes"])
            );
            if let Some(ago) = ms["lastContactMsAgo"].as_u64() {
                let _ = write!(line, ", last heard {ago} ms ago");
            }
            if let Some(e) = ms["error"].as_str() {
                let _ = write!(line, ", error: {e}");
            }
            let _ = writeln!(out, "{line}");
            continue;
        }
        let slaves = s["slaves"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if slaves.is_empty() {
            let _ = writeln!(out, "       no slave connected");
        }
        for sl in slaves {
            let _ = writeln!(
                out,
                "       slave {} from {}: acked {}, lag {} bytes / {} ms, in sync: {}",
                num(&sl["brokerId"]),
                sl["peer"].as_str().unwrap_or("?"),
                num(&sl["ackedOffset"]),
                num(&sl["lagBytes"]),
                num(&sl["lagMs"]),
                yes_no(&sl["inSync"]),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: i64, addr: &str, status: Result<Value, String>) -> Member {
        Member {
            cluster: "C".into(),
            broker_name: "broker-a".into(),
            broker_id: id,
            addr: addr.into(),
            status,
        }
    }

    #[test]
    fn cluster_info_lists_every_id_sorted() {
        let info = json!({
            "brokerAddrTable": {
                "b": {"cluster": "C", "brokerName": "b", "brokerAddrs": {"0": "h:3"}},
                "a": {"cluster": "C", "brokerName": "a", "brokerAddrs": {"1": "h:2", "0": "h:1"}}
            },
            "clusterAddrTable": {"C": ["a", "b"]}
        });
        let l = listed_brokers(&info);
        let ids: Vec<(&str, i64, &str)> = l
            .iter()
            .map(|(_, n, id, a)| (n.as_str(), *id, a.as_str()))
            .collect();
        assert_eq!(ids, [("a", 0, "h:1"), ("a", 1, "h:2"), ("b", 0, "h:3")]);
    }

    #[test]
    fn rows_show_slaves_the_master_link_and_unreachable_brokers() {
        let master = json!({
            "brokerName": "broker-a", "brokerId": 0, "role": "sync_master",
            "addr": "127.0.0.1:1", "haAddr": "127.0.0.1:2", "minOffset": 0, "maxOffset": 5000,
            "inSyncReplicas": 2,
            "slaves": [{"brokerId": 1, "peer": "127.0.0.1:9", "ackedOffset": 4000,
                        "lagBytes": 1000, "lagMs": 12, "inSync": true}],
            "master": null
        });
        let slave = json!({
            "brokerName": "broker-a", "brokerId": 1, "role": "slave",
            "addr": "127.0.0.1:3", "haAddr": "127.0.0.1:4", "minOffset": 0, "maxOffset": 4000,
            "inSyncReplicas": 2, "slaves": [],
            "master": {"addr": "127.0.0.1:1", "haAddr": "127.0.0.1:2", "connected": false,
                       "masterMaxOffset": 5000, "lagBytes": 1000, "lastContactMsAgo": null,
                       "error": "segment sizes differ"}
        });
        let t = render(&[
            member(0, "127.0.0.1:1", Ok(master)),
            member(1, "127.0.0.1:3", Ok(slave)),
            member(2, "127.0.0.1:5", Err("cannot connect: refused".into())),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "cluster C  broker broker-a");
        let row: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            row,
            ["0", "sync_master", "127.0.0.1:1", "127.0.0.1:2", "5000"]
        );
        assert!(
            lines[3].contains(
                "slave 1 from 127.0.0.1:9: acked 4000, lag 1000 bytes / 12 ms, in sync: yes"
            ),
            "{t}"
        );
        assert!(lines[4].starts_with("    1  slave "), "{t}");
        assert!(
            lines[5].contains(
                "master 127.0.0.1:2: not connected, lag 1000 bytes, error: segment sizes differ"
            ),
            "{t}"
        );
        let row: Vec<&str> = lines[6].split_whitespace().collect();
        assert_eq!(row, ["2", "unreachable", "127.0.0.1:5", "-", "-"]);
        assert!(lines[7].contains("error: cannot connect: refused"), "{t}");
        let j = member_json(&member(2, "127.0.0.1:5", Err("x".into())));
        assert_eq!(j["reachable"], false);
        assert_eq!(j["error"], "x");
    }
}
