//! Building blocks of [`export_filter!`](crate::export_filter),
//! [`export_txn_checker!`](crate::export_txn_checker) and
//! [`export_router!`](crate::export_router), public so that a plugin can implement the raw
//! WIT interface ([`bindings`](crate::bindings),
//! [`txn_checker_bindings`](crate::txn_checker_bindings),
//! [`router_bindings`](crate::router_bindings)) itself and still reuse them.

use crate::batch::{Batch, DecodeError, Message};
use crate::bindings::wasmq::plugin::types as wit;
use crate::bitset::MatchBits;
use crate::filter::{CompileError, Compiled, Filter, Prefilter};
use crate::router::{Route, Router, Target, Verdict};
use crate::router_bindings::exports::wasmq::plugin::router as wit_router;
use crate::txn::{CheckError, TxnChecker, TxnMeta, TxnVerdict};
use crate::txn_checker_bindings::exports::wasmq::plugin::txn_checker as wit_txn;

const INDEX_BITS: u32 = 20;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
const GENERATION_MASK: u32 = u32::MAX >> INDEX_BITS;
/// Most expressions one instance holds compiled at once.
pub const MAX_HANDLES: usize = 1 << INDEX_BITS;

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// Compiled expressions by handle: a slab whose handles carry a generation, so a handle used
/// after `release` is not mistaken for the expression that reused its slot.
///
/// Handle layout: low 20 bits slot index, high 12 bits generation.
pub struct HandleTable<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
}

impl<T> Default for HandleTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> HandleTable<T> {
    /// An empty table (`const` so it can initialise a static).
    pub const fn new() -> Self {
        HandleTable {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Stores `value`; `None` when [`MAX_HANDLES`] are live.
    pub fn insert(&mut self, value: T) -> Option<u32> {
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.generation = (slot.generation + 1) & GENERATION_MASK;
            slot.value = Some(value);
            return Some(slot.generation << INDEX_BITS | index);
        }
        if self.slots.len() >= MAX_HANDLES {
            return None;
        }
        let index = self.slots.len() as u32;
        self.slots.push(Slot {
            generation: 0,
            value: Some(value),
        });
        Some(index)
    }

    /// The value behind a live handle.
    #[inline]
    pub fn get(&self, handle: u32) -> Option<&T> {
        let slot = self.slots.get((handle & INDEX_MASK) as usize)?;
        if slot.generation != handle >> INDEX_BITS {
            return None;
        }
        slot.value.as_ref()
    }

    /// Forgets a handle; unknown or stale handles are ignored.
    pub fn remove(&mut self, handle: u32) -> Option<T> {
        let index = handle & INDEX_MASK;
        let slot = self.slots.get_mut(index as usize)?;
        if slot.generation != handle >> INDEX_BITS {
            return None;
        }
        let value = slot.value.take()?;
        self.free.push(index);
        Some(value)
    }

    /// Live handles.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether no handle is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `F::expression_types()` as the WIT wants it.
pub fn expression_types<F: Filter>() -> Vec<String> {
    F::expression_types()
        .iter()
        .map(|t| (*t).to_owned())
        .collect()
}

/// Refuses expression types `F` does not serve, then runs `F::compile`.
pub fn compile_expression<F: Filter>(
    expression_type: &str,
    expression: &str,
) -> Result<Compiled<F::Compiled>, CompileError> {
    if !F::expression_types().contains(&expression_type) {
        return Err(CompileError::new(
            0,
            format!("expression type `{expression_type}` is not served by this plugin"),
        ));
    }
    F::compile(expression_type, expression)
}

/// Stores a compiled expression and describes it to the host.
pub fn register<T>(
    table: &mut HandleTable<T>,
    compiled: Compiled<T>,
) -> Result<wit::Compiled, wit::CompileError> {
    let Compiled {
        value,
        prefilter,
        needs_body,
    } = compiled;
    let handle = table.insert(value).ok_or_else(|| wit::CompileError {
        position: 0,
        reason: format!("too many compiled expressions (at most {MAX_HANDLES})"),
    })?;
    Ok(wit::Compiled {
        handle,
        prefilter: to_wit_prefilter(prefilter),
        needs_body,
    })
}

/// SDK prefilter to WIT prefilter.
pub fn to_wit_prefilter(prefilter: Prefilter) -> wit::Prefilter {
    match prefilter {
        Prefilter::None => wit::Prefilter::None,
        Prefilter::All => wit::Prefilter::All,
        Prefilter::TagHashes(hashes) => wit::Prefilter::TagHashes(hashes),
    }
}

/// SDK compile error to WIT compile error.
pub fn to_wit_compile_error(error: CompileError) -> wit::CompileError {
    wit::CompileError {
        position: error.position,
        reason: error.reason,
    }
}

/// Decodes `batch` once and asks `matches` about each message, in order. Any malformed part
/// fails the whole batch (no partial result).
#[inline]
pub fn evaluate_batch<'a>(
    batch: &'a [u8],
    mut matches: impl FnMut(&Message<'a>) -> bool,
) -> Result<MatchBits, DecodeError> {
    let batch = Batch::new(batch)?;
    let mut bits = MatchBits::new(batch.message_count() as usize);
    for (i, message) in batch.enumerate() {
        if matches(&message?) {
            bits.set(i);
        }
    }
    Ok(bits)
}

/// The WIT `evaluate`: match bits for `batch`, or an empty list (a bad result for the host)
/// when the handle is unknown or the batch malformed.
pub fn evaluate<F: Filter>(table: &HandleTable<F::Compiled>, handle: u32, batch: &[u8]) -> Vec<u8> {
    let Some(compiled) = table.get(handle) else {
        return Vec::new();
    };
    match evaluate_batch(batch, |message| F::matches(compiled, message)) {
        Ok(bits) => bits.into_bytes(),
        Err(_) => Vec::new(),
    }
}

/// Decodes `batch` once and asks `check` about each message with its `meta` entry, in order:
/// one verdict per message. Fails, with no partial result, when the batch is malformed or
/// `meta` does not have exactly one entry per message.
///
/// `meta` may be SDK [`TxnMeta`]s or the WIT ones the raw interface receives.
#[inline]
pub fn check_batch<'a, M>(
    batch: &'a [u8],
    meta: &[M],
    mut check: impl FnMut(&Message<'a>, TxnMeta) -> TxnVerdict,
) -> Result<Vec<TxnVerdict>, CheckError>
where
    M: Copy + Into<TxnMeta>,
{
    let batch = Batch::new(batch)?;
    let messages = batch.message_count();
    if meta.len() != messages as usize {
        return Err(CheckError::MetaLength {
            messages,
            meta: meta.len(),
        });
    }
    let mut verdicts = Vec::with_capacity(meta.len());
    let mut meta = meta.iter();
    for message in batch {
        let message = message?;
        // `meta` has exactly `messages` entries and the batch yields at most that many.
        let Some(&m) = meta.next() else {
            break;
        };
        verdicts.push(check(&message, m.into()));
    }
    Ok(verdicts)
}

/// The WIT `check`: one verdict per message from `C::check`. Panics (a trap for the host,
/// which counts the call as failed) when the batch is malformed or `meta` does not have one
/// entry per message.
pub fn check<C: TxnChecker>(batch: &[u8], meta: &[wit_txn::TxnMeta]) -> Vec<wit_txn::TxnVerdict> {
    match check_batch(batch, meta, C::check) {
        Ok(verdicts) => verdicts.into_iter().map(to_wit_verdict).collect(),
        Err(error) => panic!("wasmq txn-checker: {error}"),
    }
}

/// SDK verdict to WIT verdict.
#[inline]
pub fn to_wit_verdict(verdict: TxnVerdict) -> wit_txn::TxnVerdict {
    match verdict {
        TxnVerdict::Unknown => wit_txn::TxnVerdict::Unknown,
        TxnVerdict::Commit => wit_txn::TxnVerdict::Commit,
        TxnVerdict::Rollback => wit_txn::TxnVerdict::Rollback,
    }
}

impl From<wit_txn::TxnMeta> for TxnMeta {
    #[inline]
    fn from(meta: wit_txn::TxnMeta) -> Self {
        TxnMeta {
            age_ms: meta.age_ms,
            checks: meta.checks,
        }
    }
}

impl From<TxnVerdict> for wit_txn::TxnVerdict {
    #[inline]
    fn from(verdict: TxnVerdict) -> Self {
        to_wit_verdict(verdict)
    }
}

/// Decodes `batch` once and asks `route` about each message, in order: one verdict per
/// message. Fails, with no partial result, when the batch is malformed.
#[inline]
pub fn route_batch<'a>(
    batch: &'a [u8],
    mut route: impl FnMut(&Message<'a>) -> Verdict,
) -> Result<Vec<Verdict>, DecodeError> {
    let batch = Batch::new(batch)?;
    let mut verdicts = Vec::with_capacity(batch.message_count() as usize);
    for message in batch {
        verdicts.push(route(&message?));
    }
    Ok(verdicts)
}

/// The WIT `route`: one verdict per message from `R::route`. Panics (a trap for the host,
/// which counts the call as failed) when the batch is malformed.
pub fn route<R: Router>(write_queues: u32, batch: &[u8]) -> Vec<wit_router::Verdict> {
    match route_batch(batch, |message| R::route(message, write_queues)) {
        Ok(verdicts) => verdicts.into_iter().map(to_wit_router_verdict).collect(),
        Err(error) => panic!("wasmq router: malformed batch: {error}"),
    }
}

/// SDK router verdict to WIT router verdict.
#[inline]
pub fn to_wit_router_verdict(verdict: Verdict) -> wit_router::Verdict {
    wit_router::Verdict {
        route: to_wit_destination(verdict.route),
        extra: verdict.extra.into_iter().map(to_wit_target).collect(),
    }
}

/// SDK route to WIT `destination`.
#[inline]
pub fn to_wit_destination(route: Route) -> wit_router::Destination {
    match route {
        Route::Keep => wit_router::Destination::Keep,
        Route::Queue(queue) => wit_router::Destination::Queue(queue),
        Route::Redirect(target) => wit_router::Destination::Redirect(to_wit_target(target)),
        Route::Reject(reason) => wit_router::Destination::Reject(reason),
    }
}

/// SDK target to WIT target.
#[inline]
pub fn to_wit_target(target: Target) -> wit_router::Target {
    wit_router::Target {
        topic: target.topic,
        queue: target.queue,
    }
}

impl From<Verdict> for wit_router::Verdict {
    #[inline]
    fn from(verdict: Verdict) -> Self {
        to_wit_router_verdict(verdict)
    }
}

impl From<Route> for wit_router::Destination {
    #[inline]
    fn from(route: Route) -> Self {
        to_wit_destination(route)
    }
}

impl From<Target> for wit_router::Target {
    #[inline]
    fn from(target: Target) -> Self {
        to_wit_target(target)
    }
}

/// WIT router verdicts back to SDK ones (for tests of plugins that implement the raw
/// interface).
impl From<wit_router::Verdict> for Verdict {
    fn from(verdict: wit_router::Verdict) -> Self {
        Verdict {
            route: verdict.route.into(),
            extra: verdict.extra.into_iter().map(Target::from).collect(),
        }
    }
}

impl From<wit_router::Destination> for Route {
    fn from(route: wit_router::Destination) -> Self {
        match route {
            wit_router::Destination::Keep => Route::Keep,
            wit_router::Destination::Queue(queue) => Route::Queue(queue),
            wit_router::Destination::Redirect(target) => Route::Redirect(target.into()),
            wit_router::Destination::Reject(reason) => Route::Reject(reason),
        }
    }
}

impl From<wit_router::Target> for Target {
    fn from(target: wit_router::Target) -> Self {
        Target {
            topic: target.topic,
            queue: target.queue,
        }
    }
}
