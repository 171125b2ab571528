//! Multi-dispatch: one record in the commit log, indexed in the consume queues of extra
//! targets besides its own topic and queue (router fan-out). The targets and the queue
//! offsets reserved for them at append time travel in the record's `WASMQ_DISPATCH` property
//! (`topic:queue:offset` entries separated by commas; `:` cannot occur in a topic name), so
//! the dispatcher, recovery and consume-queue rebuilds all find them in the record itself.
//!
//! A pull through a target presents the target's view: topic, queue id and queue offset of
//! the record are rewritten into a copy (the reader of the message's own queue gets the
//! mapped bytes, zero-copy).

use std::fmt::Write as _;

use super::record::{self, MessageInput, Placement, RecordView, CRC_TRAILER_LEN};

/// The property carrying the extra targets of a record.
pub const DISPATCH_PROPERTY: &str = "WASMQ_DISPATCH";

/// Most extra targets of one message.
pub const MAX_TARGETS: usize = 32;

/// An extra consume queue a message is indexed in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DispatchTarget {
    pub topic: String,
    pub queue_id: i32,
}

/// Upper bound of the property's length for `targets` (checked before the append lock).
pub fn property_len_bound(targets: &[DispatchTarget]) -> usize {
    DISPATCH_PROPERTY.len()
        + 3
        + targets
            .iter()
            .map(|t| t.topic.len() + 1 + 11 + 1 + 20 + 1)
            .sum::<usize>()
}

/// `props` with the property naming `targets` at their reserved `offsets` appended.
pub fn with_targets(props: &str, targets: &[DispatchTarget], offsets: &[u64]) -> String {
    let mut p = String::with_capacity(props.len() + property_len_bound(targets));
    p.push_str(props);
    if !p.is_empty() && !p.ends_with('\u{2}') {
        p.push('\u{2}');
    }
    p.push_str(DISPATCH_PROPERTY);
    p.push('\u{1}');
    for (i, (t, o)) in targets.iter().zip(offsets).enumerate() {
        if i > 0 {
            p.push(',');
        }
        let _ = write!(p, "{}:{}:{}", t.topic, t.queue_id, o);
    }
    p.push('\u{2}');
    p
}

/// The extra targets of a record: (topic, queue id, queue offset). Malformed entries are
/// skipped.
pub fn targets(props: &str) -> impl Iterator<Item = (&str, i32, u64)> {
    record::property(props, DISPATCH_PROPERTY)
        .unwrap_or("")
        .split(',')
        .filter_map(|e| {
            let mut it = e.rsplitn(3, ':');
            let off = it.next()?.parse().ok()?;
            let q = it.next()?.parse().ok()?;
            let t = it.next()?;
            (!t.is_empty()).then_some((t, q, off))
        })
}

/// Whether `props` name `topic`/`queue_id` as an extra target.
pub fn is_target(props: &str, topic: &str, queue_id: i32) -> bool {
    targets(props).any(|(t, q, _)| t == topic && q == queue_id)
}

/// A copy of the record as seen through an extra target: its topic, queue id and queue
/// offset replaced (everything else, physical offset included, unchanged).
pub fn rebase(v: &RecordView<'_>, topic: &str, queue_id: i32, queue_offset: u64) -> Vec<u8> {
    let props = v.properties();
    // The stored properties end with the checksum trailer, which encoding adds again.
    let user = props
        .len()
        .checked_sub(CRC_TRAILER_LEN)
        .filter(|&n| props[n..].starts_with(record::CRC_PROPERTY))
        .map_or(props, |n| &props[..n]);
    let msg = MessageInput {
        topic,
        queue_id,
        flag: v.flag(),
        sysflag: v.sysflag(),
        born_timestamp: v.born_timestamp(),
        born_host: v.born_host(),
        reconsume_times: v.reconsume_times(),
        prepared_transaction_offset: v.prepared_transaction_offset(),
        body: v.body(),
        properties: user,
    };
    record::encode(
        &msg,
        &Placement {
            queue_offset: queue_offset as i64,
            physical_offset: v.physical_offset(),
            store_timestamp: v.store_timestamp(),
            store_host: v.store_host(),
            body_crc: v.body_crc(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::{Check, Entry};

    #[test]
    fn targets_round_trip_and_rebase_presents_the_target() {
        let t = vec![
            DispatchTarget {
                topic: "A-eu".into(),
                queue_id: 2,
            },
            DispatchTarget {
                topic: "Audit".into(),
                queue_id: 0,
            },
        ];
        let p = with_targets("TAGS\u{1}x\u{2}", &t, &[7, 12345678901]);
        assert!(p.len() <= "TAGS\u{1}x\u{2}".len() + property_len_bound(&t));
        let got: Vec<_> = targets(&p).collect();
        assert_eq!(got, [("A-eu", 2, 7), ("Audit", 0, 12345678901)]);
        assert!(is_target(&p, "Audit", 0));
        assert!(!is_target(&p, "Audit", 1));
        assert_eq!(targets("TAGS\u{1}x\u{2}").count(), 0);
        assert_eq!(targets("WASMQ_DISPATCH\u{1}bad,:1:2,T:x:1\u{2}").count(), 0);

        let msg = MessageInput {
            topic: "Orders",
            queue_id: 1,
            flag: 3,
            sysflag: 0,
            born_timestamp: 11,
            born_host: "10.0.0.1:5".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: b"hello",
            properties: &p,
        };
        let stored = record::encode(
            &msg,
            &Placement {
                queue_offset: 40,
                physical_offset: 9000,
                store_timestamp: 22,
                store_host: "127.0.0.1:10911".parse().unwrap(),
                body_crc: record::body_crc(b"hello"),
            },
        );
        let check = Check {
            crc: true,
            position: None,
        };
        let Ok(Entry::Record(v)) = record::decode(&stored, check) else {
            panic!()
        };
        let copy = rebase(&v, "Audit", 0, 5);
        let Ok(Entry::Record(r)) = record::decode(&copy, check) else {
            panic!("the copy is a valid record with a valid checksum")
        };
        assert_eq!((r.topic(), r.queue_id(), r.queue_offset()), ("Audit", 0, 5));
        assert_eq!(r.physical_offset(), 9000);
        assert_eq!(r.body(), b"hello");
        assert_eq!(r.property("TAGS"), Some("x"));
        assert_eq!(r.properties().matches(record::CRC_PROPERTY).count(), 1);
        assert_eq!(
            (r.flag(), r.born_timestamp(), r.store_timestamp()),
            (3, 11, 22)
        );
    }
}
