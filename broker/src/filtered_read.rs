//! Reads for a subscription: `*` and TAG expressions are decided on consume-queue entries by
//! the store; other expressions read candidates from the store and evaluate them with the
//! plugin in batches (one call per [`BATCH`] candidates), keeping the reply within the pull's
//! message and byte limits. A failing plugin's policy decides a batch: deliver it, skip it, or
//! hold (the reply stops before it, and the consumer comes back for it later).

use std::sync::Arc;

use crate::context::FilterBits;
use crate::plugin::batch::{bit, BatchEncoder};
use crate::plugin::{EvalError, FailurePolicy, LoadedFilter};
use crate::store::record::{self, Check, Entry};
use crate::store::{AcceptAll, GetResult, GetStatus, MessageStore};
use crate::subscription::{Resolved, Subscription, SubscriptionError, TagHashes};

/// Candidates per plugin call.
pub const BATCH: usize = 128;
/// Candidate bytes read per call.
const BATCH_BYTES: usize = 4 << 20;
/// Candidates one read evaluates at most before it answers (with what matched so far).
const MAX_SCAN: usize = 16 * 1024;

/// A pull's bounds.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    pub max_msgs: usize,
    pub max_bytes: usize,
}

/// Reads the messages of `topic`/`queue_id` from `offset` that `sub` selects.
pub fn read(
    store: &MessageStore,
    plugins: &crate::plugin::Registry,
    bits: &FilterBits,
    sub: &Subscription,
    queue_id: i32,
    offset: u64,
    limits: ReadLimits,
) -> Result<GetResult, SubscriptionError> {
    let (topic, max_msgs, max_bytes) = (&sub.topic, limits.max_msgs.max(1), limits.max_bytes);
    let limits = ReadLimits {
        max_msgs,
        max_bytes,
    };
    Ok(match sub.resolve(plugins)? {
        Resolved::All => {
            store.get_messages(topic, queue_id, offset, max_msgs, max_bytes, &AcceptAll)
        }
        Resolved::TagHashes(h) => {
            store.get_messages(topic, queue_id, offset, max_msgs, max_bytes, &TagHashes(&h))
        }
        Resolved::Plugin { plugin, needs_body } => evaluate(
            store,
            &plugin,
            Some(bits),
            sub,
            (queue_id, offset),
            limits,
            needs_body,
            |enc| plugin.evaluate(&sub.expression_type, &sub.expression, enc),
        ),
        Resolved::Failing { plugin, error } => evaluate(
            store,
            &plugin,
            None,
            sub,
            (queue_id, offset),
            limits,
            false,
            |_| Err(error.clone()),
        ),
    })
}

#[allow(clippy::too_many_arguments)]
fn evaluate(
    store: &MessageStore,
    plugin: &Arc<LoadedFilter>,
    bits: Option<&FilterBits>,
    sub: &Subscription,
    (queue_id, offset): (i32, u64),
    limits: ReadLimits,
    needs_body: bool,
    mut eval: impl FnMut(&BatchEncoder) -> Result<Vec<u8>, EvalError>,
) -> GetResult {
    let mut res: Option<GetResult> = None;
    let mut enc = BatchEncoder::new();
    let (mut at, mut scanned, mut bytes, mut held) = (offset, 0usize, 0usize, false);
    'read: loop {
        // Offsets the dispatch-side bits cover are decided without reading the record.
        let covered = bits.and_then(|b| {
            b.covered(
                &sub.topic,
                queue_id,
                &sub.expression_type,
                &sub.expression,
                at,
            )
        });
        let got = match &covered {
            Some(c) => store.get_messages(&sub.topic, queue_id, at, BATCH, BATCH_BYTES, c),
            None => store.get_messages(&sub.topic, queue_id, at, BATCH, BATCH_BYTES, &AcceptAll),
        };
        let Some(r) = res.as_mut() else {
            if got.status != GetStatus::Found {
                return got; // offset errors, empty queue, nothing matched in covered range
            }
            res = Some(GetResult {
                status: GetStatus::NoMatchedMessage,
                messages: Vec::new(),
                next_offset: at,
                min_offset: got.min_offset,
                max_offset: got.max_offset,
            });
            continue;
        };
        r.max_offset = r.max_offset.max(got.max_offset);
        if got.status != GetStatus::Found {
            if got.status == GetStatus::NoMatchedMessage || got.status == GetStatus::OffsetFoundNull
            {
                at = at.max(got.next_offset);
            }
            break;
        }
        let is_covered = |off: u64| covered.as_ref().is_some_and(|c| c.covers(off));
        enc.clear();
        for m in got.messages.iter().filter(|m| !is_covered(m.queue_offset)) {
            if let Ok(Entry::Record(v)) = record::decode(
                &m.bytes,
                Check {
                    crc: false,
                    position: None,
                },
            ) {
                enc.push_record(&v, needs_body);
            } else {
                // Cannot happen for bytes the store returned; keep positions aligned.
                enc.push(m.queue_offset as i64, 0, b"", b"", b"");
            }
        }
        let bits = if enc.count() == 0 {
            Some(Vec::new())
        } else {
            match eval(&enc) {
                Ok(bits) => Some(bits),
                Err(e) => match plugin.limits.on_failure {
                    FailurePolicy::Deliver => None,
                    FailurePolicy::Skip => Some(vec![0; enc.count().div_ceil(8)]),
                    FailurePolicy::Hold => {
                        if !matches!(e, EvalError::Quarantined(_)) {
                            tracing::debug!(error = %e, topic = %sub.topic, queue_id, offset = at, "filter failed; holding the batch");
                        }
                        held = true;
                        break;
                    }
                },
            }
        };
        let n = got.messages.len();
        let mut j = 0; // index among the evaluated messages
        for m in got.messages.into_iter() {
            let matched = if is_covered(m.queue_offset) {
                true // passed the bits
            } else {
                j += 1;
                bits.as_deref().is_none_or(|b| bit(b, j - 1))
            };
            if !matched {
                at = m.queue_offset + 1;
                continue;
            }
            if r.messages.len() >= limits.max_msgs
                || (!r.messages.is_empty() && bytes + m.bytes.len() > limits.max_bytes)
            {
                at = m.queue_offset; // the next pull starts with it
                break 'read;
            }
            bytes += m.bytes.len();
            at = m.queue_offset + 1;
            r.messages.push(m);
        }
        at = at.max(got.next_offset);
        scanned += n;
        if r.messages.len() >= limits.max_msgs || scanned >= MAX_SCAN || at >= got.max_offset {
            break;
        }
    }
    let mut r = res.expect("set before the first evaluation");
    r.next_offset = at;
    r.status = if !r.messages.is_empty() {
        GetStatus::Found
    } else if held {
        // Nothing to hand out until the plugin works again: answer "nothing new" at the
        // same offset, so a long-polling consumer waits instead of spinning.
        GetStatus::OffsetOverflowOne
    } else {
        GetStatus::NoMatchedMessage
    };
    r
}
