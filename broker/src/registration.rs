//! Registration with NameServers: the broker's topics are sent to every configured NameServer
//! (REGISTER_BROKER) at each interval and when a topic changes, and to the embedded one
//! directly. A NameServer that cannot be reached is retried with exponential back-off and
//! jitter (`backon`: from 200 ms up to the registration interval), not only at the next
//! interval, so a restarted NameServer learns the broker's routes within seconds, and a dead
//! one costs one connection attempt per back-off step rather than one per topic change.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;

use crate::context::Broker;
use crate::net::RemotingClient;
use crate::protocol::{request, response, RemotingCommand};

/// One configured NameServer and the state of the link to it.
struct Link {
    addr: String,
    client: Option<RemotingClient>,
    /// Delays before the next attempts while it cannot be reached.
    backoff: Option<ExponentialBackoff>,
    /// No connection attempt before this (a back-off step).
    retry_at: Option<Instant>,
}

/// The links to the configured NameServers.
pub struct NameServerLinks {
    links: Vec<Link>,
    max_delay: Duration,
}

impl NameServerLinks {
    pub fn new(addrs: &[String], interval: Duration) -> NameServerLinks {
        NameServerLinks {
            links: addrs
                .iter()
                .map(|a| Link {
                    addr: a.clone(),
                    client: None,
                    backoff: None,
                    retry_at: None,
                })
                .collect(),
            max_delay: interval.max(Duration::from_millis(200)),
        }
    }

    /// When the earliest back-off step ends (a registration is due then), if any.
    pub fn next_retry(&self) -> Option<Instant> {
        self.links.iter().filter_map(|l| l.retry_at).min()
    }

    /// Registers with the embedded NameServer and every reachable configured one. A link in
    /// back-off is skipped until its step ends.
    pub async fn register_all(&mut self, b: &Broker) {
        let body = b.registration();
        if let Some(ns) = &b.namesrv {
            ns.register(&body);
        }
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let now = Instant::now();
        let max_delay = self.max_delay;
        for l in &mut self.links {
            if l.client.as_ref().is_none_or(|c| c.is_closed()) {
                if l.retry_at.is_some_and(|t| t > now) {
                    continue;
                }
                match RemotingClient::connect(l.addr.as_str()).await {
                    Ok(c) => {
                        l.client = Some(c);
                        l.backoff = None;
                        l.retry_at = None;
                    }
                    Err(e) => {
                        let delay = l
                            .backoff
                            .get_or_insert_with(|| {
                                ExponentialBuilder::new()
                                    .with_min_delay(Duration::from_millis(200))
                                    .with_max_delay(max_delay)
                                    .with_jitter()
                                    .without_max_times()
                                    .build()
                            })
                            .next()
                            .unwrap_or(max_delay);
                        l.retry_at = Some(Instant::now() + delay);
                        tracing::warn!(namesrv = %l.addr, error = %e, retry_in = ?delay, "cannot reach NameServer");
                        continue;
                    }
                }
            }
            let Some(c) = &l.client else { continue };
            let req = RemotingCommand::new_request(request::REGISTER_BROKER, Default::default())
                .with_body(bytes.clone());
            match c.invoke(req, Duration::from_secs(3)).await {
                Ok(r) if r.code == response::SUCCESS => {}
                Ok(r) => {
                    tracing::warn!(namesrv = %l.addr, code = r.code, remark = ?r.remark, "registration refused")
                }
                Err(e) => {
                    tracing::warn!(namesrv = %l.addr, error = %e, "registration failed");
                    l.client = None;
                }
            }
        }
    }
}
