//! The filter-bits thread: follows dispatch and evaluates each new batch of a queue once per
//! distinct subscribed plugin expression, filling the tables of [`FilterBits`] (the state, in
//! the broker context) that pulls use to skip non-matching entries.

use std::sync::Arc;
use std::time::Duration;

use crate::context::filter_bits::Key;
pub use crate::context::filter_bits::{Bits, Covered, FilterBits, MAX_BITS};
use crate::context::Broker;
use crate::plugin::batch::{bit, BatchEncoder};
use crate::store::record::{self, Check, Entry};
use crate::store::{AcceptAll, GetStatus};
use crate::subscription::Resolved;

/// Batches one queue and expression may take per pass (fairness across them).
const BATCHES_PER_PASS: usize = 64;

/// The thread: waits for arrivals (or a subscription change, checked every second) and
/// evaluates what is new.
pub fn run(b: Arc<Broker>) {
    let fb = b.filter_bits.clone();
    let mut enc = BatchEncoder::new();
    let mut more = false;
    while !fb.is_stopped() {
        if !more && !fb.wait(Duration::from_secs(1)) {
            break;
        }
        more = pass(&b, &fb, &mut enc);
    }
}

/// One round over every subscribed expression; true when some queue has more to evaluate.
fn pass(b: &Broker, fb: &FilterBits, enc: &mut BatchEncoder) -> bool {
    let mut active: Vec<Key> = Vec::new();
    let mut more = false;
    for s in b.clients.all_subscriptions() {
        let Ok(Resolved::Plugin { plugin, needs_body }) = s.resolve(&b.plugins) else {
            continue;
        };
        // Every queue of the topic, including ones nothing was written to yet.
        let queues = b
            .topics
            .get(&s.topic)
            .map(|t| t.read_queue_nums as i32)
            .unwrap_or(0);
        for q in 0..queues {
            let key = Key {
                topic: s.topic.clone(),
                queue_id: q,
                ty: s.expression_type.clone(),
                expression: s.expression.clone(),
            };
            let cq = b.store.consume_queue(&s.topic, q);
            let max = || cq.as_ref().map_or(0, |c| c.max_offset());
            let table = fb.table(&key, max);
            active.push(key);
            for round in 0..=BATCHES_PER_PASS {
                let end = table.lock().end();
                if end >= max() {
                    break;
                }
                if round == BATCHES_PER_PASS {
                    more = true;
                    break;
                }
                let got = b.store.get_messages(
                    &s.topic,
                    q,
                    end,
                    crate::filtered_read::BATCH,
                    4 << 20,
                    &AcceptAll,
                );
                if !matches!(got.status, GetStatus::Found | GetStatus::OffsetFoundNull)
                    || got.next_offset <= end
                {
                    break;
                }
                enc.clear();
                for m in &got.messages {
                    match record::decode(
                        &m.bytes,
                        Check {
                            crc: false,
                            position: None,
                        },
                    ) {
                        Ok(Entry::Record(v)) => enc.push_record(&v, needs_body),
                        _ => enc.push(m.queue_offset as i64, 0, b"", b"", b""),
                    }
                }
                let Ok(bits) = plugin.evaluate(&s.expression_type, &s.expression, enc) else {
                    break; // the pull path applies the plugin's policy to what is not covered
                };
                let mut t = table.lock();
                if t.end() != end {
                    break; // cannot happen with one thread; be safe
                }
                // Offsets with no message (removed entries) never match.
                let mut found = got.messages.iter().enumerate().peekable();
                for off in end..got.next_offset {
                    let matched = match found.peek() {
                        Some((i, m)) if m.queue_offset == off => {
                            let r = bit(&bits, *i);
                            found.next();
                            r
                        }
                        _ => false,
                    };
                    t.push(matched);
                }
            }
        }
    }
    fb.retain(&active);
    more
}
