//! A slave's copy of its master's metadata (issue 12). Every 10 s, and whenever the master's
//! address changes, a slave asks its master for HA_METADATA (`processor::replica_meta`) and
//! makes its own tables equal to it, so that it evaluates the same filter expressions and could
//! take the master's place:
//!
//! - topic configs: upserted, and those the master no longer has removed (the master's table
//!   wins, as RocketMQ's slave replaces its `topics.json`); a change re-registers the slave;
//! - consumer offsets: per queue the larger of the master's and the slave's. Consumers commit
//!   offsets on the slave while the master is down; those never go back. The other direction:
//!   the slave notes which queues clients committed on it (`Replication::note_local_commit`),
//!   and after applying a snapshot sends the master (HA_MERGE_OFFSETS) those of them where it
//!   is ahead of the snapshot; the master commits each only where it is larger. Noted queues
//!   that are not ahead are forgotten, and queues no client committed here are never sent, so
//!   an operator's reset on the master (which the slave's own table does not follow) stands.
//!   What the master does not confirm is kept for the next round;
//! - delay-level progress and the timer's delivered flags: the master's (only the master runs
//!   delay delivery, timer delivery and transaction checks; the slave keeps their progress so
//!   it could continue them);
//! - the plugin registry (name, version, module sha256, config) and the per-topic bindings:
//!   modules the slave lacks are fetched by sha256 (HA_PLUGIN_MODULE), then loaded, upgraded
//!   and unloaded through the registry's own operations, which persist as they do for an
//!   operator. Versions match because the registry numbers them: a plugin at version 3 on the
//!   master is loaded and upgraded twice.
//!
//! The master's remoting address is `MasterAddrs::addr` (from the NameServer). With only
//! `ha_master_addr` configured it is derived: the HA address's port minus 1, since the HA port
//! defaults to the broker port + 1 (`BrokerConfig::ha_listen_addr`). A master whose HA port is
//! configured otherwise must be learned from the NameServer.
//!
//! [`sync_once`] is one round; [`run`] repeats it. The diffing is pure ([`diff_topics`],
//! [`merge_offsets`], [`offsets_to_push`], [`plan_plugins`], [`diff_bindings`]) and tested
//! without a network.
//!
//! | file | concept |
//! |---|---|
//! | `mod.rs` | the round: errors, talking to the master, [`sync_once`], [`run`] |
//! | [`plan`] | what to change, decided from the slave's state and the snapshot (pure) |
//! | [`apply`] | applying a snapshot to the slave's tables; [`SyncReport`], [`ApplyFailure`] |
//! | `tests.rs` | the unit tests and an in-process master/slave round |

pub mod apply;
pub mod plan;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::context::replication::{LocalCommit, Replication};
use crate::context::Broker;
use crate::net::{NetConfig, NetError, RemotingClient};
use crate::processor::replica_meta::{MergeOffsets, MergedOffsets, MetadataSnapshot};
use crate::protocol::{request, response, ExtFields, RemotingCommand};

use apply::{apply, local_module, local_offsets, local_plugins};

pub use apply::{ApplyFailure, SyncReport};
pub use plan::{
    diff_bindings, diff_topics, merge_offsets, offsets_to_push, plan_plugins, remoting_addr,
    BadAddress, BindingDiff, OffsetUpdate, PluginStep, TopicDiff,
};

/// How often a slave copies its master's metadata.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
const MODULE_TIMEOUT: Duration = Duration::from_secs(30);
const MERGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why one round of the metadata copy failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaMetaError {
    #[error("cannot reach master {master}: {source}")]
    Connect { master: String, source: NetError },
    #[error("cannot reach master {master}: no connection within 3 s")]
    ConnectTimeout { master: String },
    #[error("master {master} did not answer {what}: {source}")]
    Request {
        master: String,
        what: &'static str,
        source: NetError,
    },
    #[error("master {master} refused {what} (code {code}): {remark}")]
    Refused {
        master: String,
        what: &'static str,
        code: i32,
        remark: String,
    },
    #[error("master {master} sent metadata that does not parse: {source}")]
    Decode {
        master: String,
        source: serde_json::Error,
    },
    #[error("{master} is broker {theirs:?}, this slave belongs to {ours:?}: nothing copied")]
    OtherGroup {
        master: String,
        theirs: String,
        ours: String,
    },
    #[error("master {master} sent module {expected} whose sha256 is {actual}")]
    ModuleMismatch {
        master: String,
        expected: String,
        actual: String,
    },
    #[error("metadata from master {master} applied with {} failure(s): {}", .failures.len(), join(.failures))]
    Apply {
        master: String,
        /// What was applied nonetheless.
        report: Box<SyncReport>,
        failures: Vec<ApplyFailure>,
    },
}

impl ReplicaMetaError {
    /// The master could not be reached (rather than answering something wrong).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ReplicaMetaError::Connect { .. }
                | ReplicaMetaError::ConnectTimeout { .. }
                | ReplicaMetaError::Request { .. }
        )
    }
}

fn join(f: &[ApplyFailure]) -> String {
    f.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Runs `f` (file writes, module compiles) without stalling the other tasks of a
/// multi-threaded runtime; inline on a current-thread runtime (tests).
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

// ---- talking to the master ----

/// One slave's link to its master across rounds: the connection, and the version of the last
/// snapshot applied without failures.
#[derive(Default)]
struct Syncer {
    link: Option<(String, RemotingClient)>,
    applied: Option<(String, String)>,
}

impl Syncer {
    async fn client(
        &mut self,
        b: &Broker,
        master: &str,
    ) -> Result<&RemotingClient, ReplicaMetaError> {
        let reuse = self
            .link
            .as_ref()
            .is_some_and(|(a, c)| a == master && !c.is_closed());
        if !reuse {
            self.link = None;
            let config = NetConfig {
                // A module of the largest size the registry takes, plus the frame's header.
                max_frame_len: NetConfig::client()
                    .max_frame_len
                    .max(b.config.plugin_max_module_bytes + (1 << 20)),
                ..NetConfig::client()
            };
            let c = tokio::time::timeout(
                CONNECT_TIMEOUT,
                RemotingClient::connect_with(master, config, None),
            )
            .await
            .map_err(|_| ReplicaMetaError::ConnectTimeout {
                master: master.to_string(),
            })?
            .map_err(|source| ReplicaMetaError::Connect {
                master: master.to_string(),
                source,
            })?;
            self.link = Some((master.to_string(), c));
        }
        Ok(&self.link.as_ref().expect("connected above").1)
    }

    async fn call(
        &mut self,
        b: &Broker,
        master: &str,
        what: &'static str,
        req: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, ReplicaMetaError> {
        let resp = match self.client(b, master).await?.invoke(req, timeout).await {
            Ok(r) => r,
            Err(source) => {
                // A fresh connection next time.
                self.link = None;
                return Err(ReplicaMetaError::Request {
                    master: master.to_string(),
                    what,
                    source,
                });
            }
        };
        if resp.code != response::SUCCESS {
            return Err(ReplicaMetaError::Refused {
                master: master.to_string(),
                what,
                code: resp.code,
                remark: resp.remark.unwrap_or_default(),
            });
        }
        Ok(resp)
    }

    /// HA_METADATA: the master's snapshot, checked to be of this slave's broker group.
    async fn snapshot(
        &mut self,
        b: &Broker,
        master: &str,
    ) -> Result<MetadataSnapshot, ReplicaMetaError> {
        let resp = self
            .call(
                b,
                master,
                "HA_METADATA",
                RemotingCommand::new_request(request::HA_METADATA, ExtFields::new()),
                METADATA_TIMEOUT,
            )
            .await?;
        let snap: MetadataSnapshot =
            serde_json::from_slice(&resp.body).map_err(|source| ReplicaMetaError::Decode {
                master: master.to_string(),
                source,
            })?;
        if snap.broker_name != b.config.broker_name {
            return Err(ReplicaMetaError::OtherGroup {
                master: master.to_string(),
                theirs: snap.broker_name,
                ours: b.config.broker_name.clone(),
            });
        }
        Ok(snap)
    }

    /// The modules the snapshot's plugin steps need: the slave's own, else the master's
    /// (HA_PLUGIN_MODULE). With how many were fetched.
    async fn modules(
        &mut self,
        b: &Broker,
        master: &str,
        snap: &MetadataSnapshot,
    ) -> Result<(HashMap<String, Vec<u8>>, usize), ReplicaMetaError> {
        let mut modules: HashMap<String, Vec<u8>> = HashMap::new();
        let mut fetched = 0;
        let needed: BTreeSet<String> = plan_plugins(&local_plugins(b), &snap.plugins)
            .into_iter()
            .filter_map(|s| match s {
                PluginStep::Upgrade { target, .. } | PluginStep::Load { target } => {
                    Some(target.sha256)
                }
                PluginStep::Unload { .. } => None,
            })
            .collect();
        for sha in needed {
            if let Some(wasm) = local_module(b, &sha) {
                modules.insert(sha, wasm);
                continue;
            }
            let mut f = ExtFields::new();
            f.insert("sha256", &sha);
            let resp = self
                .call(
                    b,
                    master,
                    "HA_PLUGIN_MODULE",
                    RemotingCommand::new_request(request::HA_PLUGIN_MODULE, f),
                    MODULE_TIMEOUT,
                )
                .await?;
            let actual = crate::plugin::engine::sha256_hex(&resp.body);
            if actual != sha {
                return Err(ReplicaMetaError::ModuleMismatch {
                    master: master.to_string(),
                    expected: sha,
                    actual,
                });
            }
            modules.insert(sha, resp.body.to_vec());
            fetched += 1;
        }
        Ok((modules, fetched))
    }

    /// Sends the master (HA_MERGE_OFFSETS) the offsets clients committed on this slave that are
    /// ahead of its snapshot's `master_offsets`; the other noted queues are forgotten. Returns
    /// how many the master moved. What it does not confirm goes back into the set, also when
    /// the round is dropped at shutdown.
    async fn push_local_commits(
        &mut self,
        b: &Broker,
        master: &str,
        master_offsets: &BTreeMap<String, BTreeMap<i32, i64>>,
    ) -> Result<usize, ReplicaMetaError> {
        let commits = b.replication.take_local_commits();
        if commits.is_empty() {
            return Ok(0);
        }
        let ahead = offsets_to_push(&commits, &local_offsets(b), master_offsets);
        if ahead.is_empty() {
            return Ok(0);
        }
        let mut unconfirmed = Unconfirmed {
            r: &b.replication,
            commits: ahead
                .iter()
                .map(|u| (u.group.clone(), u.topic.clone(), u.queue_id))
                .collect(),
        };
        let mut body = MergeOffsets::default();
        for u in ahead {
            body.offset_table
                .entry(format!("{}@{}", u.topic, u.group))
                .or_default()
                .insert(u.queue_id, u.offset);
        }
        let req = RemotingCommand::new_request(request::HA_MERGE_OFFSETS, ExtFields::new())
            .with_body(serde_json::to_vec(&body).expect("a map of strings and numbers encodes"));
        let resp = self
            .call(b, master, "HA_MERGE_OFFSETS", req, MERGE_TIMEOUT)
            .await?;
        // SUCCESS: the master holds them (an answer that does not parse counts nothing moved).
        unconfirmed.commits.clear();
        let merged: MergedOffsets = serde_json::from_slice(&resp.body).unwrap_or_default();
        Ok(merged.moved)
    }

    /// One round: the snapshot, applied unless it is the one applied last; then the local
    /// commits that are ahead of it, sent to the master.
    async fn sync(&mut self, b: &Broker, master: &str) -> Result<SyncReport, ReplicaMetaError> {
        let snap = self.snapshot(b, master).await?;
        let unchanged = self
            .applied
            .as_ref()
            .is_some_and(|(a, v)| a == master && *v == snap.version);
        let (mut report, failures) = if unchanged {
            let r = SyncReport {
                unchanged: true,
                ..SyncReport::default()
            };
            (r, Vec::new())
        } else {
            let (modules, fetched) = self.modules(b, master, &snap).await?;
            let (mut r, failures) = blocking(|| apply(b, &snap, &modules));
            r.modules_fetched = fetched;
            (r, failures)
        };
        // After the merge the slave holds at least the master's offsets: what it holds above
        // them, for queues clients committed here, goes to the master.
        let pushed = self.push_local_commits(b, master, &snap.offset_table).await;
        if !failures.is_empty() {
            self.applied = None;
            // A failed push put its offsets back; the next round retries both.
            report.offsets_pushed = pushed.unwrap_or(0);
            return Err(ReplicaMetaError::Apply {
                master: master.to_string(),
                report: Box::new(report),
                failures,
            });
        }
        self.applied = Some((master.to_string(), snap.version));
        report.offsets_pushed = pushed?;
        Ok(report)
    }
}

/// Local commits taken from the set and not yet confirmed by the master: put back when dropped
/// (a failed request, or a round dropped at shutdown).
struct Unconfirmed<'a> {
    r: &'a Replication,
    commits: Vec<LocalCommit>,
}

impl Drop for Unconfirmed<'_> {
    fn drop(&mut self) {
        if !self.commits.is_empty() {
            self.r
                .put_back_local_commits(std::mem::take(&mut self.commits));
        }
    }
}

/// One round: fetches the metadata of the master at `master_addr` (its remoting address),
/// applies it to `b`, then sends the master the offsets clients committed on `b` that are ahead
/// of it. On [`ReplicaMetaError::Apply`] the parts that could be applied are.
pub async fn sync_once(b: &Broker, master_addr: &str) -> Result<SyncReport, ReplicaMetaError> {
    Syncer::default().sync(b, master_addr).await
}

/// The last round's outcome, to log state changes once rather than every round.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Start,
    NoMaster,
    Synced(String),
    Unreachable(String),
    Failed(String),
}

async fn until_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// A slave's metadata copy until `shutdown` turns true: a round every [`SYNC_INTERVAL`] and
/// whenever the master's address changes. Returns at once on a master.
pub async fn run(b: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    if !b.replication.is_slave() {
        return;
    }
    let mut master_rx = b.replication.watch_master();
    let mut watching = true;
    let mut tick = tokio::time::interval(SYNC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut syncer = Syncer::default();
    let mut last = Outcome::Start;
    loop {
        tokio::select! {
            _ = until_true(&mut shutdown) => break,
            _ = tick.tick() => {}
            r = master_rx.changed(), if watching => {
                if r.is_err() {
                    watching = false;
                    continue;
                }
                tick.reset();
            }
        }
        let master = b.replication.master();
        let outcome = match master.as_ref().map(remoting_addr) {
            None => Outcome::NoMaster,
            Some(Err(e)) => Outcome::Failed(e.to_string()),
            Some(Ok(addr)) => {
                let r = tokio::select! {
                    _ = until_true(&mut shutdown) => break,
                    r = syncer.sync(&b, &addr) => r,
                };
                match r {
                    Ok(report) => {
                        if report.changed() {
                            tracing::info!(master = %addr, ?report, "metadata copied from the master");
                        }
                        Outcome::Synced(addr)
                    }
                    Err(e) if e.is_unreachable() => {
                        if last != Outcome::Unreachable(addr.clone()) {
                            tracing::warn!(master = %addr, error = %e, "metadata sync: master unreachable; retrying every 10 s");
                        }
                        Outcome::Unreachable(addr)
                    }
                    Err(e) => Outcome::Failed(format!("{e}")),
                }
            }
        };
        if outcome != last {
            match &outcome {
                Outcome::NoMaster => {
                    tracing::info!("metadata sync: waiting for the master's address")
                }
                Outcome::Synced(addr) => {
                    tracing::info!(master = %addr, "metadata sync with the master is up")
                }
                Outcome::Failed(e) => tracing::error!(error = %e, "metadata sync failed"),
                Outcome::Unreachable(_) | Outcome::Start => {}
            }
        }
        last = outcome;
    }
}
