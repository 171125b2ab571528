//! Talking to the cluster: routes from the NameServer, then requests to brokers.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use wasmq::net::RemotingClient;
use wasmq::protocol::route::TopicRouteData;
use wasmq::protocol::{request, response, ExtFields, RemotingCommand};

pub const TIMEOUT: Duration = Duration::from_secs(60);

pub fn ext(pairs: &[(&str, &str)]) -> ExtFields {
    let mut e = ExtFields::new();
    for (k, v) in pairs {
        e.insert(k, v);
    }
    e
}

/// Connections to the NameServer and to brokers, opened on demand.
pub struct Cluster {
    namesrv: String,
    conns: HashMap<String, RemotingClient>,
}

impl Cluster {
    pub fn new(namesrv: &str) -> Cluster {
        Cluster {
            namesrv: namesrv.to_string(),
            conns: HashMap::new(),
        }
    }

    pub async fn conn(&mut self, addr: &str) -> Result<&RemotingClient> {
        if self.conns.get(addr).is_none_or(|c| c.is_closed()) {
            let c = RemotingClient::connect(addr)
                .await
                .with_context(|| format!("cannot connect to {addr}"))?;
            self.conns.insert(addr.to_string(), c);
        }
        self.conns
            .get(addr)
            .ok_or_else(|| anyhow!("no connection to {addr}"))
    }

    /// Sends `req` to `addr`; a non-SUCCESS answer is returned as is (callers decide).
    pub async fn call(&mut self, addr: &str, req: RemotingCommand) -> Result<RemotingCommand> {
        let c = self.conn(addr).await?;
        c.invoke(req, TIMEOUT)
            .await
            .with_context(|| format!("request to {addr} failed"))
    }

    /// Like `call`, but a non-SUCCESS code is an error carrying the broker's reason (its
    /// remark; the response code only when the broker gave no reason).
    pub async fn call_ok(&mut self, addr: &str, req: RemotingCommand) -> Result<RemotingCommand> {
        let r = self.call(addr, req).await?;
        if r.code != response::SUCCESS {
            match r.remark.as_deref().map(str::trim) {
                Some(reason) if !reason.is_empty() => bail!("{addr}: {reason}"),
                _ => bail!("{addr} refused the request (response code {})", r.code),
            }
        }
        Ok(r)
    }

    pub async fn namesrv_call(&mut self, req: RemotingCommand) -> Result<RemotingCommand> {
        let ns = self.namesrv.clone();
        self.call_ok(&ns, req).await
    }

    pub async fn route(&mut self, topic: &str) -> Result<TopicRouteData> {
        let r = self
            .namesrv_call(RemotingCommand::new_request(
                request::GET_ROUTEINFO_BY_TOPIC,
                ext(&[("topic", topic)]),
            ))
            .await?;
        TopicRouteData::from_json(&r.body).context("bad route JSON")
    }

    /// (broker address, queue id) for every read (or write) queue of a topic. Writes go to a
    /// group's master; reads too, or to its first slave while the master is gone (as RocketMQ
    /// clients do).
    pub async fn queues(&mut self, topic: &str, write: bool) -> Result<Vec<(String, i32)>> {
        let route = self.route(topic).await?;
        let mut out = Vec::new();
        for q in &route.queue_datas {
            let Some(group) = route
                .broker_datas
                .iter()
                .find(|b| b.broker_name == q.broker_name)
            else {
                continue;
            };
            let slave = || {
                group
                    .broker_addrs
                    .iter()
                    .filter_map(|(id, a)| Some((id.parse::<i64>().ok()?, a.as_str())))
                    .filter(|(id, _)| *id > 0)
                    .min()
                    .map(|(_, a)| a)
            };
            let addr = match group.master_addr() {
                Some(a) => a,
                None if !write => match slave() {
                    Some(a) => a,
                    None => continue,
                },
                None => continue,
            };
            let n = if write {
                q.write_queue_nums
            } else {
                q.read_queue_nums
            };
            for id in 0..n {
                out.push((addr.to_string(), id));
            }
        }
        if out.is_empty() && write && !route.queue_datas.is_empty() {
            bail!("topic {topic} has no writable queue: no broker serving it has a master (slaves take no writes)");
        }
        if out.is_empty() {
            bail!("topic {topic} has no queues");
        }
        Ok(out)
    }

    /// Master addresses of every broker (GET_BROKER_CLUSTER_INFO).
    pub async fn brokers(&mut self) -> Result<Vec<String>> {
        let r = self
            .namesrv_call(RemotingCommand::new_request(
                request::GET_BROKER_CLUSTER_INFO,
                ExtFields::new(),
            ))
            .await?;
        let v: serde_json::Value = serde_json::from_slice(&r.body)?;
        let mut out: Vec<String> = v["brokerAddrTable"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|b| b["brokerAddrs"]["0"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        if out.is_empty() {
            bail!("no broker is registered with the NameServer");
        }
        Ok(out)
    }
}

/// A request's i64 response field.
pub fn field_i64(r: &RemotingCommand, key: &'static str) -> Result<i64> {
    r.ext_fields
        .get_i64(key)?
        .ok_or_else(|| anyhow!("response lacks {key}"))
}
