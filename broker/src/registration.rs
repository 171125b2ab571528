//! Registration with NameServers: the broker's topics are sent to every configured NameServer
//! (REGISTER_BROKER) at each interval and when a topic changes, and to the embedded one
//! directly. A NameServer that cannot be reached is retried with exponential back-off and
//! jitter (`backon`: from 200 ms up to the registration interval), not only at the next
//! interval, so a restarted NameServer learns the broker's routes within seconds, and a dead
//! one costs one connection attempt per back-off step rather than one per topic change.
//!
//! A slave learns where its master is from the answers: the master's address and HA address
//! when a NameServer knows the master of its broker name, none when the NameServers that
//! answered know no master (it is gone).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;

use crate::context::replication::MasterAddrs;
use crate::context::Broker;
use crate::net::RemotingClient;
use crate::protocol::route::RegisterBrokerResult;
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

/// Exponential back-off with jitter from `min` up to `max`, without end.
fn backoff(min: Duration, max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

/// What the NameServers' answers to one round of registrations say about the master.
#[derive(Debug, Default)]
struct MasterAnswers {
    /// Some NameServer answered, so "no master" is known, not just unheard of.
    answered: bool,
    /// The first master named (address and HA address both given).
    master: Option<MasterAddrs>,
}

impl MasterAnswers {
    /// Takes one answer into account; `authoritative`: its silence about a master counts.
    fn note(&mut self, r: &RegisterBrokerResult, authoritative: bool) {
        self.answered |= authoritative;
        if self.master.is_none() {
            if let (Some(addr), Some(ha)) = (&r.master_addr, &r.ha_server_addr) {
                self.answered = true;
                self.master = Some(MasterAddrs {
                    addr: Some(addr.clone()),
                    ha_addr: ha.clone(),
                });
            }
        }
    }
}

/// The links to the configured NameServers.
pub struct NameServerLinks {
    links: Vec<Link>,
    max_delay: Duration,
    /// A slave whose NameServers named no master asks again with back-off (a slave started
    /// before its master learns of it within seconds, not at the next interval).
    master_backoff: Option<ExponentialBackoff>,
    master_retry_at: Option<Instant>,
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
            master_backoff: None,
            master_retry_at: None,
        }
    }

    /// When the earliest back-off step ends (a registration is due then), if any: of a link
    /// that cannot connect, or of a slave still asking for its master.
    pub fn next_retry(&self) -> Option<Instant> {
        self.links
            .iter()
            .filter_map(|l| l.retry_at)
            .chain(self.master_retry_at)
            .min()
    }

    /// Registers with the embedded NameServer and every reachable configured one. A link in
    /// back-off is skipped until its step ends.
    pub async fn register_all(&mut self, b: &Broker) {
        let body = b.registration();
        let mut answers = MasterAnswers::default();
        if let Some(ns) = &b.namesrv {
            // The embedded NameServer usually knows only this broker: when NameServers are
            // configured, its silence about a master does not unset one they named.
            answers.note(&ns.register(&body), self.links.is_empty());
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
                            .get_or_insert_with(|| backoff(Duration::from_millis(200), max_delay))
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
                Ok(r) if r.code == response::SUCCESS => {
                    match serde_json::from_slice::<RegisterBrokerResult>(&r.body) {
                        Ok(result) => answers.note(&result, true),
                        Err(e) => {
                            tracing::warn!(namesrv = %l.addr, error = %e, "unreadable registration answer")
                        }
                    }
                }
                Ok(r) => {
                    tracing::warn!(namesrv = %l.addr, code = r.code, remark = ?r.remark, "registration refused")
                }
                Err(e) => {
                    tracing::warn!(namesrv = %l.addr, error = %e, "registration failed");
                    l.client = None;
                }
            }
        }
        let asked = b.namesrv.is_some() || !self.links.is_empty();
        if b.replication.is_slave() && asked && answers.master.is_none() {
            let delay = self
                .master_backoff
                .get_or_insert_with(|| backoff(Duration::from_millis(500), max_delay))
                .next()
                .unwrap_or(max_delay);
            self.master_retry_at = Some(Instant::now() + delay);
        } else {
            self.master_backoff = None;
            self.master_retry_at = None;
        }
        if b.replication.is_slave() && answers.answered {
            let before = b.replication.master();
            b.replication.set_master(answers.master);
            let now = b.replication.master();
            if now != before {
                match &now {
                    Some(m) => tracing::info!(
                        master = m.addr.as_deref().unwrap_or("-"),
                        ha = %m.ha_addr,
                        "master learned from the NameServer"
                    ),
                    None => tracing::warn!("the NameServers know no master of this broker name"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(master: Option<&str>, ha: Option<&str>) -> RegisterBrokerResult {
        RegisterBrokerResult {
            master_addr: master.map(String::from),
            ha_server_addr: ha.map(String::from),
            expire_millis: None,
        }
    }

    #[test]
    fn a_named_master_wins_and_only_authoritative_silence_unsets_it() {
        let mut a = MasterAnswers::default();
        a.note(&result(None, None), false);
        assert!(
            !a.answered,
            "the embedded NameServer's silence alone says nothing"
        );
        a.note(&result(None, None), true);
        assert!(a.answered && a.master.is_none());
        a.note(&result(Some("127.0.0.1:1"), Some("127.0.0.1:2")), true);
        a.note(&result(Some("127.0.0.1:5"), Some("127.0.0.1:6")), true);
        let m = a.master.unwrap();
        assert_eq!(
            (m.addr.as_deref(), m.ha_addr.as_str()),
            (Some("127.0.0.1:1"), "127.0.0.1:2")
        );
        // A master without an HA address cannot be replicated from.
        let mut a = MasterAnswers::default();
        a.note(&result(Some("127.0.0.1:1"), None), false);
        assert!(!a.answered && a.master.is_none());
    }
}
