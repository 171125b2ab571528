//! Reading the store: a queue's messages from an offset through a filter (pulls), and
//! messages by key within a time range (queries). Reads through a multi-dispatch target
//! present the target's view.

use super::*;

impl MessageStore {
    /// Reads up to `max_msgs` / `max_bytes` of matching messages from a queue.
    pub fn get_messages(
        &self,
        topic: &str,
        queue_id: i32,
        offset: u64,
        max_msgs: usize,
        max_bytes: usize,
        filter: &dyn MessageFilter,
    ) -> GetResult {
        let Some(cq) = self.inner.queues.get(topic, queue_id) else {
            return GetResult {
                status: GetStatus::NoMatchedLogicQueue,
                messages: Vec::new(),
                next_offset: 0,
                min_offset: 0,
                max_offset: 0,
            };
        };
        let (min, max) = (cq.min_offset(), cq.max_offset());
        let mut res = GetResult {
            status: GetStatus::NoMessageInQueue,
            messages: Vec::new(),
            next_offset: offset,
            min_offset: min,
            max_offset: max,
        };
        if max == 0 {
            res.next_offset = 0;
            return res;
        }
        if offset < min {
            res.status = GetStatus::OffsetTooSmall;
            res.next_offset = min;
            return res;
        }
        if offset == max {
            res.status = GetStatus::OffsetOverflowOne;
            return res;
        }
        if offset > max {
            res.status = GetStatus::OffsetOverflowBadly;
            res.next_offset = if min == 0 { min } else { max };
            return res;
        }
        let log = &self.inner.log;
        let log_min = log.min_offset();
        let (mut bytes, mut scanned, mut next, mut found_null) = (0usize, 0usize, offset, false);
        let max_msgs = max_msgs.max(1);
        cq.scan(offset, |off, e: CqEntry| {
            if res.messages.len() >= max_msgs || scanned >= MAX_SCAN {
                return false;
            }
            if !res.messages.is_empty() && bytes + e.size as usize > max_bytes {
                return false;
            }
            scanned += 1;
            if !filter.by_tag_hash(e.tag_hash) || !filter.by_offset(off) {
                next = off + 1;
                return true;
            }
            let Some(rec) = log.read(e.physical_offset, e.size) else {
                if e.physical_offset < log_min {
                    found_null = true;
                    next = off + 1;
                    return true;
                }
                return false; // not published yet
            };
            let check = Check {
                crc: false,
                position: Some(e.physical_offset as i64),
            };
            let mut rebased = None;
            let accepted = match record::decode(&rec, check) {
                Ok(Entry::Record(v)) if v.topic() == topic && v.queue_id() == queue_id => {
                    filter.by_record(&v)
                }
                // Read through an extra dispatch target: present the target's view.
                Ok(Entry::Record(v))
                    if multi_dispatch::is_target(v.properties(), topic, queue_id) =>
                {
                    let ok = filter.by_record(&v);
                    if ok {
                        rebased = Some(multi_dispatch::rebase(&v, topic, queue_id, off));
                    }
                    ok
                }
                Ok(Entry::Record(v)) => {
                    tracing::error!(
                        topic,
                        queue_id,
                        offset = off,
                        record_topic = v.topic(),
                        "consume queue entry points at a record of another queue"
                    );
                    false
                }
                _ => {
                    tracing::error!(
                        topic,
                        queue_id,
                        offset = off,
                        "consume queue entry points at no record"
                    );
                    false
                }
            };
            next = off + 1;
            let rec = rebased.map_or(rec, RecordBytes::owned);
            if accepted {
                bytes += rec.len();
                res.messages.push(FoundMessage {
                    queue_offset: off,
                    bytes: rec,
                });
            }
            true
        });
        res.next_offset = next;
        res.status = if !res.messages.is_empty() {
            GetStatus::Found
        } else if found_null {
            GetStatus::OffsetFoundNull
        } else {
            GetStatus::NoMatchedMessage
        };
        res
    }

    /// Messages of `topic` whose `KEYS` contain `key` (or whose `UNIQ_KEY` is `key`, with
    /// `unique`), stored within `[begin, end]` ms; newest first, at most `max`.
    pub fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        max: usize,
        begin: i64,
        end: i64,
        unique: bool,
    ) -> Vec<RecordBytes> {
        let candidates =
            self.inner
                .index
                .lookup(topic, key, begin, end, max.saturating_mul(4).max(32));
        let mut out: Vec<RecordBytes> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for phys in candidates {
            if out.len() >= max || !seen.insert(phys) {
                continue;
            }
            let Some(rec) = self.view(phys) else { continue };
            let mut rebased = None;
            let ok = match record::decode(
                &rec,
                Check {
                    crc: false,
                    position: Some(phys as i64),
                },
            ) {
                Ok(Entry::Record(v)) => {
                    let ts = v.store_timestamp();
                    let key_ok = ts >= begin
                        && ts <= end
                        && if unique {
                            v.property("UNIQ_KEY") == Some(key)
                        } else {
                            v.property("KEYS")
                                .is_some_and(|ks| ks.split(' ').any(|k| k == key))
                        };
                    if v.topic() == topic {
                        key_ok
                    } else if let Some((_, q, off)) = multi_dispatch::targets(v.properties())
                        .find(|t| t.0 == topic)
                        .filter(|_| key_ok)
                    {
                        // Indexed under an extra target: answer with the target's view.
                        rebased = Some(multi_dispatch::rebase(&v, topic, q, off));
                        true
                    } else {
                        false
                    }
                }
                _ => false,
            };
            if ok {
                out.push(rebased.map_or(rec, RecordBytes::owned));
            }
        }
        out
    }
}
