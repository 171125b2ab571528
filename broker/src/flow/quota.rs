//! Quotas per topic and consumer group: token buckets of messages/s and bytes/s, from
//! `[[quota]]` in `conf/broker.toml` and set at runtime (`wasmq quota set|list|remove`),
//! persisted in the config directory.
//!
//! - A bucket holds one second's worth of its rate (a burst is at most one second of it) and
//!   refills continuously with the time elapsed.
//! - A send takes all its messages (and body bytes) at once or is refused whole, with
//!   SYSTEM_BUSY naming the quota. A send bigger than one second's worth passes only when the
//!   bucket is full and leaves it in debt, so it is neither refused forever nor over the rate.
//! - A pull is allowed what its group's buckets hold ([`Quotas::group_allowance`]) and charged
//!   what it returned ([`Quotas::take_group`]); concurrent pulls may leave the bucket in debt,
//!   which the next pulls wait out, so the rate over time is the quota.
//! - `set` replaces a topic's or group's quota whole (rates not given are unlimited), with
//!   full buckets.
//! - Configured quotas apply unless one set at runtime for the same topic or group overrides
//!   it. `remove` drops a runtime quota (the configured one of that name, if any, applies
//!   again); a quota that only the config file sets is not removed at runtime (the answer says
//!   to edit the file), so nothing reappears by surprise at the next start.
//! - `quotas.json` in the config directory holds the runtime quotas (replaced atomically); a
//!   change is written before it applies, so a failed write changes nothing.
//! - Each broker enforces its own quotas: a topic on two brokers gets the rate on each.
//!
//! Lookups are lock-light: one atomic flag per kind when no quota of that kind exists, else a
//! read-locked map lookup by `&str` (no allocation) and one small mutex per quota.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::Refusal;
use crate::config::QuotaConfig;
use crate::protocol::response;
use crate::store::StoreError;

/// The most messages per second a quota may name (more is surely a typo).
pub const MAX_MSGS_PER_SEC: u64 = 1_000_000_000;
/// The most bytes per second a quota may name (1 TB/s).
pub const MAX_BYTES_PER_SEC: u64 = 1_000_000_000_000;
/// Longest consumer group name (RocketMQ's limit).
const MAX_GROUP_LEN: usize = 255;
/// The runtime quotas, in the config directory.
pub const FILE_NAME: &str = "quotas.json";

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("invalid quota: {0}")]
    Invalid(String),
    #[error("no quota is set on {kind} {name}")]
    NotSet { kind: Kind, name: String },
    #[error(
        "the quota on {kind} {name} is set by [[quota]] in the broker's config file: remove it \
         there and restart (`quota set` overrides it at runtime)"
    )]
    Configured { kind: Kind, name: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error("cannot save the quotas: {0}")]
    Persist(#[from] StoreError),
}

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Sends to a topic.
    Topic,
    /// Pulls by a consumer group.
    Group,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Topic => "topic",
            Kind::Group => "group",
        })
    }
}

/// Where a quota comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `[[quota]]` in the config file.
    Config,
    /// `wasmq quota set` (persisted in `quotas.json`).
    Runtime,
}

/// A valid quota: a topic or group and at least one rate, each within `1..=MAX_*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    pub kind: Kind,
    pub name: String,
    #[serde(default)]
    pub msgs_per_sec: Option<u64>,
    #[serde(default)]
    pub bytes_per_sec: Option<u64>,
}

impl Quota {
    /// Checks the name and rates.
    pub fn new(
        kind: Kind,
        name: &str,
        msgs_per_sec: Option<u64>,
        bytes_per_sec: Option<u64>,
    ) -> Result<Quota, QuotaError> {
        check_name(kind, name)?;
        if msgs_per_sec.is_none() && bytes_per_sec.is_none() {
            return Err(QuotaError::Invalid(format!(
                "the quota on {kind} {name} names no rate: give messages per second, bytes per \
                 second or both"
            )));
        }
        if let Some(m) = msgs_per_sec {
            check_rate("messages per second", m.into(), MAX_MSGS_PER_SEC)?;
        }
        if let Some(b) = bytes_per_sec {
            check_rate("bytes per second", b.into(), MAX_BYTES_PER_SEC)?;
        }
        Ok(Quota {
            kind,
            name: name.to_string(),
            msgs_per_sec,
            bytes_per_sec,
        })
    }

    /// A `[[quota]]` table: exactly one of `topic` and `group`.
    pub fn from_config(c: &QuotaConfig) -> Result<Quota, QuotaError> {
        let (kind, name) = match (&c.topic, &c.group) {
            (Some(t), None) => (Kind::Topic, t),
            (None, Some(g)) => (Kind::Group, g),
            _ => {
                return Err(QuotaError::Invalid(
                    "a [[quota]] names exactly one of topic and group".into(),
                ))
            }
        };
        Quota::new(kind, name, c.msgs_per_sec, c.bytes_per_sec)
    }

    fn key(&self) -> Key {
        (self.kind, self.name.clone())
    }

    /// `1000 msgs/s, 1048576 bytes/s`.
    pub fn rates(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.msgs_per_sec {
            parts.push(format!("{m} msgs/s"));
        }
        if let Some(b) = self.bytes_per_sec {
            parts.push(format!("{b} bytes/s"));
        }
        parts.join(", ")
    }
}

/// Parses a rate given as text (an admin request's field, a CLI argument): a whole number
/// above 0 and at most `max`. `what` names it in the error (`messages per second`).
pub fn parse_rate(what: &str, text: &str, max: u64) -> Result<u64, QuotaError> {
    let t = text.trim();
    let n: i128 = t
        .parse()
        .map_err(|_| QuotaError::Invalid(format!("{what} must be a whole number, got {t:?}")))?;
    check_rate(what, n, max)?;
    Ok(n as u64)
}

fn check_rate(what: &str, n: i128, max: u64) -> Result<(), QuotaError> {
    if n <= 0 {
        return Err(QuotaError::Invalid(format!(
            "{what} must be more than 0, got {n}"
        )));
    }
    if n > i128::from(max) {
        return Err(QuotaError::Invalid(format!(
            "{what} of {n} is beyond any real rate: at most {max}"
        )));
    }
    Ok(())
}

fn check_name(kind: Kind, name: &str) -> Result<(), QuotaError> {
    match kind {
        Kind::Topic => crate::meta::topics::validate_topic_name(name)
            .map_err(|e| QuotaError::Invalid(e.to_string())),
        Kind::Group => {
            let shown: String = name.chars().take(200).collect();
            let reason = if name.is_empty() {
                "empty"
            } else if name.len() > MAX_GROUP_LEN {
                "longer than 255 characters"
            } else if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
            {
                "only letters, digits, %, |, _ and - are allowed"
            } else {
                return Ok(());
            };
            Err(QuotaError::Invalid(format!(
                "invalid group name {shown:?}: {reason}"
            )))
        }
    }
}

type Key = (Kind, String);

impl QuotaError {
    /// What is wrong, without the `invalid quota: ` prefix of [`QuotaError::Invalid`].
    pub fn reason(&self) -> String {
        match self {
            QuotaError::Invalid(r) => r.clone(),
            other => other.to_string(),
        }
    }
}

/// A quota as `quota list` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaStatus {
    #[serde(flatten)]
    pub quota: Quota,
    pub source: Source,
    /// A runtime quota that overrides a configured one: the configured one (it applies again
    /// after `quota remove`).
    pub overrides: Option<Quota>,
    /// What passed over the last whole second.
    pub current: Rates,
}

/// Messages and bytes per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rates {
    pub msgs_per_sec: u64,
    pub bytes_per_sec: u64,
}

/// What a `remove` did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The configured quota that applies again, if any.
    pub restored: Option<Quota>,
}

/// `quotas.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct QuotaFile {
    quotas: Vec<Quota>,
}

pub struct Quotas {
    path: PathBuf,
    configured: BTreeMap<Key, Quota>,
    /// The runtime quotas, as `quotas.json` holds them; its lock also serialises changes.
    runtime: Mutex<BTreeMap<Key, Quota>>,
    topics: Table,
    groups: Table,
}

impl Quotas {
    /// The configured quotas, overridden by the runtime ones saved in `dir`.
    pub fn open(dir: &Path, configured: &[QuotaConfig]) -> Result<Quotas, QuotaError> {
        let mut conf = BTreeMap::new();
        for (i, c) in configured.iter().enumerate() {
            let q = Quota::from_config(c).map_err(|e| {
                QuotaError::Invalid(format!(
                    "[[quota]] number {} in the config file: {}",
                    i + 1,
                    e.reason()
                ))
            })?;
            if conf.insert(q.key(), q.clone()).is_some() {
                return Err(QuotaError::Invalid(format!(
                    "[[quota]] number {}: {} {} has a quota already",
                    i + 1,
                    q.kind,
                    q.name
                )));
            }
        }
        let path = dir.join(FILE_NAME);
        let runtime = load(&path)?;
        let q = Quotas {
            path,
            configured: conf,
            runtime: Mutex::new(BTreeMap::new()),
            topics: Table::default(),
            groups: Table::default(),
        };
        let now = Instant::now();
        for c in q.configured.values() {
            if !runtime.contains_key(&c.key()) {
                q.install(c.clone(), Source::Config, now);
            }
        }
        for r in runtime.values() {
            q.install(r.clone(), Source::Runtime, now);
        }
        *q.runtime.lock() = runtime;
        Ok(q)
    }

    fn table(&self, kind: Kind) -> &Table {
        match kind {
            Kind::Topic => &self.topics,
            Kind::Group => &self.groups,
        }
    }

    fn install(&self, q: Quota, source: Source, now: Instant) {
        let (kind, name) = (q.kind, q.name.clone());
        self.table(kind)
            .put(&name, Some(Arc::new(Limiter::new(q, source, now))));
    }

    /// Sets (or replaces) the runtime quota of its topic or group, saved before it applies;
    /// `dry_run` only says whether it would be accepted. Returns the quota it replaced.
    pub fn set(&self, q: Quota, dry_run: bool) -> Result<Option<Quota>, QuotaError> {
        let mut runtime = self.runtime.lock();
        let key = q.key();
        let before = runtime
            .get(&key)
            .or_else(|| self.configured.get(&key))
            .cloned();
        if dry_run {
            return Ok(before);
        }
        let mut next = runtime.clone();
        next.insert(key, q.clone());
        self.save(&next)?;
        *runtime = next;
        self.install(q, Source::Runtime, Instant::now());
        Ok(before)
    }

    /// Removes the runtime quota of a topic or group (see the module's rules); `dry_run` only
    /// says whether it would.
    pub fn remove(&self, kind: Kind, name: &str, dry_run: bool) -> Result<Removed, QuotaError> {
        let mut runtime = self.runtime.lock();
        let key = (kind, name.to_string());
        if !runtime.contains_key(&key) {
            return Err(if self.configured.contains_key(&key) {
                QuotaError::Configured {
                    kind,
                    name: name.to_string(),
                }
            } else {
                QuotaError::NotSet {
                    kind,
                    name: name.to_string(),
                }
            });
        }
        let restored = self.configured.get(&key).cloned();
        if dry_run {
            return Ok(Removed { restored });
        }
        let mut next = runtime.clone();
        next.remove(&key);
        self.save(&next)?;
        *runtime = next;
        match &restored {
            Some(c) => self.install(c.clone(), Source::Config, Instant::now()),
            None => self.table(kind).put(name, None),
        }
        Ok(Removed { restored })
    }

    fn save(&self, runtime: &BTreeMap<Key, Quota>) -> Result<(), QuotaError> {
        let file = QuotaFile {
            quotas: runtime.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|source| QuotaError::Parse {
            path: self.path.clone(),
            source,
        })?;
        crate::store::checkpoint::write_atomically(&self.path, &bytes)?;
        Ok(())
    }

    /// Every quota in force, topics then groups, by name.
    pub fn list(&self) -> Vec<QuotaStatus> {
        let now = Instant::now();
        let mut out = Vec::new();
        for t in [&self.topics, &self.groups] {
            let mut rows: Vec<QuotaStatus> = t
                .map
                .read()
                .values()
                .map(|l| QuotaStatus {
                    quota: l.quota.clone(),
                    source: l.source,
                    overrides: match l.source {
                        Source::Runtime => self.configured.get(&l.quota.key()).cloned(),
                        Source::Config => None,
                    },
                    current: l.state.lock().meter.rates(now),
                })
                .collect();
            rows.sort_by(|a, b| a.quota.name.cmp(&b.quota.name));
            out.extend(rows);
        }
        out
    }

    /// Takes `msgs`/`bytes` from the topic's buckets, or SYSTEM_BUSY naming the quota.
    pub fn take_topic(&self, topic: &str, msgs: usize, bytes: usize) -> Result<(), Refusal> {
        self.take_topic_at(Instant::now(), topic, msgs, bytes)
    }

    fn take_topic_at(
        &self,
        now: Instant,
        topic: &str,
        msgs: usize,
        bytes: usize,
    ) -> Result<(), Refusal> {
        match self
            .topics
            .with(topic, |l| l.take_whole(now, msgs as u64, bytes as u64))
        {
            None | Some(Ok(())) => Ok(()),
            Some(Err(over)) => Err((
                response::SYSTEM_BUSY,
                format!(
                    "[TOPIC_QUOTA]broker busy, topic {topic} is over its quota of {over}, try \
                     again later"
                ),
            )),
        }
    }

    /// What the group's buckets allow now, within `max_msgs`/`max_bytes`: `(0, _)` or
    /// `(_, 0)` when a bucket is empty (see [`group_ready_in`](Self::group_ready_in)).
    pub fn group_allowance(
        &self,
        group: &str,
        max_msgs: usize,
        max_bytes: usize,
    ) -> (usize, usize) {
        self.group_allowance_at(Instant::now(), group, max_msgs, max_bytes)
    }

    fn group_allowance_at(
        &self,
        now: Instant,
        group: &str,
        max_msgs: usize,
        max_bytes: usize,
    ) -> (usize, usize) {
        self.groups
            .with(group, |l| l.allowance(now, max_msgs, max_bytes))
            .unwrap_or((max_msgs, max_bytes))
    }

    /// How long until the group's buckets allow at least one message (zero without a quota).
    pub fn group_ready_in(&self, group: &str) -> Duration {
        let now = Instant::now();
        self.groups
            .with(group, |l| l.ready_in(now))
            .unwrap_or(Duration::ZERO)
    }

    /// Charges a pull to the group's buckets.
    pub fn take_group(&self, group: &str, msgs: usize, bytes: usize) {
        self.take_group_at(Instant::now(), group, msgs, bytes);
    }

    fn take_group_at(&self, now: Instant, group: &str, msgs: usize, bytes: usize) {
        self.groups
            .with(group, |l| l.charge(now, msgs as u64, bytes as u64));
    }
}

/// Reads `quotas.json` (none yet: no runtime quota), checking each entry.
fn load(path: &Path) -> Result<BTreeMap<Key, Quota>, QuotaError> {
    let file: QuotaFile = match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|source| QuotaError::Parse {
            path: path.to_path_buf(),
            source,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => QuotaFile::default(),
        Err(source) => {
            return Err(QuotaError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut out = BTreeMap::new();
    for q in file.quotas {
        let q = Quota::new(q.kind, &q.name, q.msgs_per_sec, q.bytes_per_sec).map_err(|e| {
            QuotaError::BadFile {
                path: path.to_path_buf(),
                reason: e.reason(),
            }
        })?;
        if let Some(dup) = out.insert(q.key(), q) {
            return Err(QuotaError::BadFile {
                path: path.to_path_buf(),
                reason: format!("{} {} is listed twice", dup.kind, dup.name),
            });
        }
    }
    Ok(out)
}

/// The quotas of one kind by name.
#[derive(Default)]
struct Table {
    /// False while the map is empty: a request then costs one atomic load.
    any: AtomicBool,
    map: RwLock<HashMap<Box<str>, Arc<Limiter>>>,
}

impl Table {
    fn with<R>(&self, name: &str, f: impl FnOnce(&Limiter) -> R) -> Option<R> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.map.read().get(name).map(|l| f(l))
    }

    fn put(&self, name: &str, limiter: Option<Arc<Limiter>>) {
        let mut m = self.map.write();
        match limiter {
            Some(l) => {
                m.insert(name.into(), l);
            }
            None => {
                m.remove(name);
            }
        }
        self.any.store(!m.is_empty(), Ordering::Release);
    }
}

/// Which rate a refused send is over.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Over {
    Msgs(u64),
    Bytes(u64),
}

impl fmt::Display for Over {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Over::Msgs(n) => write!(f, "{n} msgs/s"),
            Over::Bytes(n) => write!(f, "{n} bytes/s"),
        }
    }
}

/// One quota's buckets and meter.
struct Limiter {
    quota: Quota,
    source: Source,
    state: Mutex<LimiterState>,
}

struct LimiterState {
    /// When the buckets were last refilled.
    at: Instant,
    msgs: Option<Bucket>,
    bytes: Option<Bucket>,
    meter: Meter,
}

impl Limiter {
    fn new(quota: Quota, source: Source, now: Instant) -> Limiter {
        let state = LimiterState {
            at: now,
            msgs: quota.msgs_per_sec.map(Bucket::full),
            bytes: quota.bytes_per_sec.map(Bucket::full),
            meter: Meter::new(now),
        };
        Limiter {
            quota,
            source,
            state: Mutex::new(state),
        }
    }

    /// Takes `msgs` and `bytes` from both buckets, or neither.
    fn take_whole(&self, now: Instant, msgs: u64, bytes: u64) -> Result<(), Over> {
        let mut s = self.state.lock();
        s.refill(now);
        if let Some(b) = &s.msgs {
            if !b.admits(msgs as f64) {
                return Err(Over::Msgs(b.rate as u64));
            }
        }
        if let Some(b) = &s.bytes {
            if !b.admits(bytes as f64) {
                return Err(Over::Bytes(b.rate as u64));
            }
        }
        s.charge(now, msgs, bytes);
        Ok(())
    }

    fn allowance(&self, now: Instant, max_msgs: usize, max_bytes: usize) -> (usize, usize) {
        let mut s = self.state.lock();
        s.refill(now);
        let cap = |b: &Option<Bucket>, max: usize| {
            b.as_ref().map_or(max, |b| {
                usize::try_from(b.whole()).unwrap_or(usize::MAX).min(max)
            })
        };
        (cap(&s.msgs, max_msgs), cap(&s.bytes, max_bytes))
    }

    fn ready_in(&self, now: Instant) -> Duration {
        let mut s = self.state.lock();
        s.refill(now);
        [&s.msgs, &s.bytes]
            .into_iter()
            .flatten()
            .map(Bucket::ready_in)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    fn charge(&self, now: Instant, msgs: u64, bytes: u64) {
        let mut s = self.state.lock();
        s.refill(now);
        s.charge(now, msgs, bytes);
    }
}

impl LimiterState {
    fn refill(&mut self, now: Instant) {
        if now <= self.at {
            return;
        }
        let secs = (now - self.at).as_secs_f64();
        self.at = now;
        for b in [&mut self.msgs, &mut self.bytes].into_iter().flatten() {
            b.refill(secs);
        }
    }

    fn charge(&mut self, now: Instant, msgs: u64, bytes: u64) {
        if let Some(b) = &mut self.msgs {
            b.tokens -= msgs as f64;
        }
        if let Some(b) = &mut self.bytes {
            b.tokens -= bytes as f64;
        }
        self.meter.add(now, msgs, bytes);
    }
}

/// A token bucket of one second's worth of `rate`. Tokens go below zero (debt) when a request
/// bigger than the bucket passes, or pulls charged after the fact took more than it held.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    rate: f64,
    tokens: f64,
}

impl Bucket {
    fn full(rate: u64) -> Bucket {
        Bucket {
            rate: rate as f64,
            tokens: rate as f64,
        }
    }

    fn refill(&mut self, secs: f64) {
        self.tokens = (self.tokens + self.rate * secs).min(self.rate);
    }

    /// Whether `n` may be taken at once: when it is there, or, for more than the bucket can
    /// ever hold, when the bucket is full.
    fn admits(&self, n: f64) -> bool {
        self.tokens >= n || (n > self.rate && self.tokens >= self.rate)
    }

    /// Whole tokens now (0 in debt).
    fn whole(&self) -> u64 {
        self.tokens.max(0.0).floor() as u64
    }

    /// Until at least one whole token is there.
    fn ready_in(&self) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }
}

/// Messages and bytes per whole second since the quota applies; the last complete second is
/// the current rate.
struct Meter {
    start: Instant,
    /// Whole seconds since `start` of the window being counted.
    window: u64,
    cur: Rates,
    prev: Rates,
}

impl Meter {
    fn new(now: Instant) -> Meter {
        Meter {
            start: now,
            window: 0,
            cur: Rates::default(),
            prev: Rates::default(),
        }
    }

    fn roll(&mut self, now: Instant) {
        let w = now.saturating_duration_since(self.start).as_secs();
        if w > self.window {
            self.prev = if w == self.window + 1 {
                self.cur
            } else {
                Rates::default()
            };
            self.cur = Rates::default();
            self.window = w;
        }
    }

    fn add(&mut self, now: Instant, msgs: u64, bytes: u64) {
        self.roll(now);
        self.cur.msgs_per_sec += msgs;
        self.cur.bytes_per_sec += bytes;
    }

    fn rates(&mut self, now: Instant) -> Rates {
        self.roll(now);
        self.prev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, msgs: Option<u64>, bytes: Option<u64>) -> QuotaConfig {
        QuotaConfig {
            topic: Some(name.into()),
            group: None,
            msgs_per_sec: msgs,
            bytes_per_sec: bytes,
        }
    }

    fn group(name: &str, msgs: Option<u64>, bytes: Option<u64>) -> QuotaConfig {
        QuotaConfig {
            topic: None,
            group: Some(name.into()),
            msgs_per_sec: msgs,
            bytes_per_sec: bytes,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Sends of one message each at `now` until one is refused: how many passed.
    fn drain(q: &Quotas, now: Instant, topic: &str) -> usize {
        let mut n = 0;
        while q.take_topic_at(now, topic, 1, 10).is_ok() {
            n += 1;
            assert!(n < 10_000_000, "never refused");
        }
        n
    }

    #[test]
    fn a_bucket_holds_one_second_and_refills_with_time() {
        let d = tempfile::tempdir().unwrap();
        let q = Quotas::open(d.path(), &[topic("T", Some(1000), None)]).unwrap();
        let t0 = Instant::now();
        // The burst is one second's worth, however long the bucket sat idle.
        assert_eq!(drain(&q, t0 + Duration::from_secs(30), "T"), 1000);
        let t1 = t0 + Duration::from_secs(30);
        // 250 ms later: 250 more.
        assert_eq!(drain(&q, t1 + ms(250), "T"), 250);
        // Over ten seconds of steady asking, ten seconds' worth.
        let mut passed = 0;
        for i in 1..=1000u64 {
            passed += drain(&q, t1 + ms(250) + ms(i * 10), "T");
        }
        assert!((9_999..=10_000).contains(&passed), "{passed}");
        // Another topic has no quota.
        for _ in 0..5000 {
            q.take_topic_at(t1, "Other", 1, 10).unwrap();
        }
    }

    #[test]
    fn a_refusal_names_the_quota() {
        let d = tempfile::tempdir().unwrap();
        let conf = [topic("T", Some(5), None), topic("U", None, Some(100))];
        let q = Quotas::open(d.path(), &conf).unwrap();
        let now = Instant::now();
        q.take_topic_at(now, "T", 5, 10).unwrap();
        let (code, remark) = q.take_topic_at(now, "T", 1, 10).unwrap_err();
        assert_eq!(code, response::SYSTEM_BUSY);
        assert_eq!(
            remark,
            "[TOPIC_QUOTA]broker busy, topic T is over its quota of 5 msgs/s, try again later"
        );
        q.take_topic_at(now, "U", 1, 60).unwrap();
        let (_, remark) = q.take_topic_at(now, "U", 1, 60).unwrap_err();
        assert!(remark.contains("over its quota of 100 bytes/s"), "{remark}");
    }

    #[test]
    fn a_batch_is_taken_whole_or_refused_whole() {
        let d = tempfile::tempdir().unwrap();
        let q = Quotas::open(d.path(), &[topic("T", Some(100), Some(1000))]).unwrap();
        let now = Instant::now();
        q.take_topic_at(now, "T", 60, 100).unwrap();
        // 40 msgs left: a batch of 50 is refused and takes nothing...
        assert!(q.take_topic_at(now, "T", 50, 100).is_err());
        // ...so a batch of 40 still passes, and then nothing does.
        q.take_topic_at(now, "T", 40, 100).unwrap();
        assert!(q.take_topic_at(now, "T", 1, 1).is_err());
        // Over the bytes, the messages are not taken either.
        let later = now + Duration::from_secs(1);
        q.take_topic_at(later, "T", 1, 600).unwrap();
        assert!(q.take_topic_at(later, "T", 10, 500).is_err());
        q.take_topic_at(later, "T", 99, 400).unwrap();
        assert!(q.take_topic_at(later, "T", 1, 0).is_err());
    }

    #[test]
    fn a_send_bigger_than_the_bucket_passes_when_full_and_leaves_debt() {
        let d = tempfile::tempdir().unwrap();
        let q = Quotas::open(d.path(), &[topic("T", None, Some(1000))]).unwrap();
        let now = Instant::now();
        // 4000 bytes at 1000 bytes/s pass on a full bucket and leave 3 s of debt.
        q.take_topic_at(now, "T", 1, 4000).unwrap();
        assert!(q.take_topic_at(now + ms(2900), "T", 1, 1).is_err());
        q.take_topic_at(now + ms(3100), "T", 1, 10).unwrap();
        // The next big one waits for a full bucket again.
        assert!(q.take_topic_at(now + ms(3200), "T", 1, 4000).is_err());
        q.take_topic_at(now + ms(4100), "T", 1, 4000).unwrap();
    }

    #[test]
    fn a_group_is_allowed_what_its_buckets_hold_and_charged_after() {
        let d = tempfile::tempdir().unwrap();
        let q = Quotas::open(d.path(), &[group("G", Some(100), None)]).unwrap();
        let now = Instant::now();
        assert_eq!(q.group_allowance_at(now, "G", 32, 4096), (32, 4096));
        assert_eq!(q.group_allowance_at(now, "other", 32, 4096), (32, 4096));
        // Pulls are charged after the fact: concurrent ones may take more than the bucket
        // held, and the debt is waited out by the next ones.
        q.take_group_at(now, "G", 90, 0);
        assert_eq!(q.group_allowance_at(now, "G", 32, 4096), (10, 4096));
        q.take_group_at(now, "G", 30, 0);
        assert_eq!(q.group_allowance_at(now, "G", 32, 4096).0, 0);
        assert_eq!(q.group_allowance_at(now + ms(200), "G", 32, 4096).0, 0);
        assert_eq!(q.group_allowance_at(now + ms(210), "G", 32, 4096).0, 1);
        assert_eq!(q.group_allowance_at(now + ms(2000), "G", 32, 4096).0, 32);
        assert_eq!(
            q.group_allowance_at(now + ms(2000), "G", 500, 4096).0,
            100,
            "never more than one second's worth"
        );
    }

    #[test]
    fn group_ready_in_is_the_time_to_one_token() {
        let d = tempfile::tempdir().unwrap();
        let q = Quotas::open(d.path(), &[group("G", Some(10), Some(1000))]).unwrap();
        assert_eq!(q.group_ready_in("G"), Duration::ZERO);
        assert_eq!(q.group_ready_in("none"), Duration::ZERO);
        q.take_group("G", 11, 0);
        let w = q.group_ready_in("G");
        assert!(w > ms(150) && w <= ms(200), "{w:?}");
        q.take_group("G", 0, 3000);
        let w = q.group_ready_in("G");
        assert!(
            w > ms(1900) && w <= ms(2002),
            "the bytes bucket decides: {w:?}"
        );
    }

    #[test]
    fn the_meter_reports_the_last_whole_second() {
        let now = Instant::now();
        let mut m = Meter::new(now);
        m.add(now, 5, 50);
        assert_eq!(m.rates(now + ms(500)), Rates::default());
        m.add(now + ms(900), 5, 50);
        m.add(now + ms(1100), 1, 1);
        assert_eq!(
            m.rates(now + ms(1500)),
            Rates {
                msgs_per_sec: 10,
                bytes_per_sec: 100
            }
        );
        assert_eq!(
            m.rates(now + ms(2500)).msgs_per_sec,
            1,
            "the second after holds one"
        );
        assert_eq!(m.rates(now + ms(9000)), Rates::default(), "idle: zero");
    }

    #[test]
    fn configured_quotas_come_from_quota_tables() {
        // The example of conf/broker.toml, uncommented, after the [store] table.
        let text = "[store]\nflush_mode = \"async\"\n\n[[quota]]\ntopic = \"Orders\"\n\
                    msgs_per_sec = 1000\nbytes_per_sec = 1048576\n\n[[quota]]\n\
                    group = \"billing\"\nmsgs_per_sec = 500\n";
        let cfg = crate::config::BrokerConfig::parse(text).unwrap();
        let d = tempfile::tempdir().unwrap();
        let q = Quotas::open(d.path(), &cfg.quota).unwrap();
        let rates: Vec<(Kind, String, String)> = q
            .list()
            .into_iter()
            .map(|s| (s.quota.kind, s.quota.name.clone(), s.quota.rates()))
            .collect();
        assert_eq!(
            rates,
            [
                (
                    Kind::Topic,
                    "Orders".to_string(),
                    "1000 msgs/s, 1048576 bytes/s".to_string()
                ),
                (Kind::Group, "billing".to_string(), "500 msgs/s".to_string())
            ]
        );
        let bad = "[[quota]]\ntopic = \"T\"\nmsgs_per_sec = -1\n";
        assert!(crate::config::BrokerConfig::parse(bad).is_err());
        let bad = "[[quota]]\ntopic = \"T\"\nmsg_per_sec = 1\n";
        assert!(crate::config::BrokerConfig::parse(bad).is_err());
    }

    #[test]
    fn runtime_quotas_persist_and_override_configured_ones() {
        let d = tempfile::tempdir().unwrap();
        let conf = [topic("T", Some(1000), None), group("G", None, Some(5000))];
        let q = Quotas::open(d.path(), &conf).unwrap();
        let listed = q.list();
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().all(|s| s.source == Source::Config));
        // Override T, add U.
        let t = Quota::new(Kind::Topic, "T", Some(10), None).unwrap();
        let before = q.set(t.clone(), false).unwrap();
        assert_eq!(before.and_then(|b| b.msgs_per_sec), Some(1000));
        q.set(
            Quota::new(Kind::Topic, "U", None, Some(1 << 20)).unwrap(),
            false,
        )
        .unwrap();
        drop(q);

        let q = Quotas::open(d.path(), &conf).unwrap();
        let listed = q.list();
        let names: Vec<(&str, Source)> = listed
            .iter()
            .map(|s| (s.quota.name.as_str(), s.source))
            .collect();
        assert_eq!(
            names,
            [
                ("T", Source::Runtime),
                ("U", Source::Runtime),
                ("G", Source::Config)
            ]
        );
        assert_eq!(listed[0].quota, t);
        assert_eq!(
            listed[0].overrides.as_ref().and_then(|c| c.msgs_per_sec),
            Some(1000)
        );
        let now = Instant::now();
        assert_eq!(drain(&q, now, "T"), 10, "the runtime quota is enforced");

        // Removing the override brings the configured quota back; the configured one itself
        // is not removed at runtime; removing what is not there says so.
        let r = q.remove(Kind::Topic, "T", false).unwrap();
        assert_eq!(r.restored.and_then(|c| c.msgs_per_sec), Some(1000));
        assert_eq!(drain(&q, now, "T"), 1000);
        assert!(matches!(
            q.remove(Kind::Topic, "T", false),
            Err(QuotaError::Configured { .. })
        ));
        assert!(matches!(
            q.remove(Kind::Group, "nobody", false),
            Err(QuotaError::NotSet { .. })
        ));
        let r = q.remove(Kind::Topic, "U", true).unwrap();
        assert_eq!(r.restored, None);
        assert_eq!(q.list().len(), 3, "a dry run changes nothing");
        q.remove(Kind::Topic, "U", false).unwrap();
        assert_eq!(q.list().len(), 2);
        drop(q);
        let q = Quotas::open(d.path(), &conf).unwrap();
        assert!(q.list().iter().all(|s| s.source == Source::Config));
    }

    #[test]
    fn a_failed_save_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let q = Quotas::open(d.path(), &[]).unwrap();
        // The temporary file's place is taken by a directory: the write fails.
        std::fs::create_dir(d.path().join("quotas.tmp")).unwrap();
        let t = Quota::new(Kind::Topic, "T", Some(10), None).unwrap();
        assert!(matches!(q.set(t, false), Err(QuotaError::Persist(_))));
        assert!(q.list().is_empty());
        assert!(q.take_topic("T", 1000, 0).is_ok());
    }

    #[test]
    fn bad_quotas_are_refused_with_the_reason() {
        let bad = |c: QuotaConfig| Quota::from_config(&c).unwrap_err().to_string();
        assert!(bad(topic("T", None, None)).contains("names no rate"));
        assert!(bad(topic("T", Some(0), None)).contains("more than 0, got 0"));
        assert!(bad(group("G", Some(MAX_MSGS_PER_SEC + 1), None)).contains("at most 1000000000"));
        assert!(bad(topic("T", Some(1), Some(MAX_BYTES_PER_SEC + 1))).contains("bytes per second"));
        assert!(bad(topic("bad topic", Some(1), None)).contains("invalid topic name"));
        assert!(bad(group("", Some(1), None)).contains("empty"));
        let both = QuotaConfig {
            topic: Some("T".into()),
            group: Some("G".into()),
            msgs_per_sec: Some(1),
            bytes_per_sec: None,
        };
        assert!(bad(both).contains("exactly one of topic and group"));
        assert!(Quota::from_config(&topic("T", Some(MAX_MSGS_PER_SEC), None)).is_ok());

        let p = |s: &str| parse_rate("messages per second", s, MAX_MSGS_PER_SEC);
        assert_eq!(p(" 1000 ").unwrap(), 1000);
        assert!(p("-5")
            .unwrap_err()
            .to_string()
            .contains("more than 0, got -5"));
        assert!(p("1e3").unwrap_err().to_string().contains("whole number"));
        assert!(p("99999999999999999999999999")
            .unwrap_err()
            .to_string()
            .contains("at most"));

        let d = tempfile::tempdir().unwrap();
        let e = Quotas::open(
            d.path(),
            &[topic("T", Some(1), None), topic("T", Some(2), None)],
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("has a quota already"), "{e}");
        let e = Quotas::open(d.path(), &[topic("T", Some(0), None)])
            .err()
            .unwrap();
        assert!(e.to_string().contains("[[quota]] number 1"), "{e}");
        std::fs::write(
            d.path().join(FILE_NAME),
            r#"{"quotas":[{"kind":"topic","name":"T","msgsPerSec":0}]}"#,
        )
        .unwrap();
        let e = Quotas::open(d.path(), &[]).err().unwrap();
        assert!(e.to_string().contains("quotas.json"), "{e}");
    }
}
