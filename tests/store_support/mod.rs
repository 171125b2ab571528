//! Shared by the store's cross-process tests: deterministic messages and the invariant check
//! run after every recovery.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;

use wasmq::store::record::{self, Check, Entry};
use wasmq::store::{AcceptAll, FlushMode, MessageInput, MessageStore, StoreConfig};

pub const TOPICS: [&str; 2] = ["CrashA", "CrashB"];
pub const QUEUES: i32 = 4;

pub fn host() -> SocketAddr {
    "127.0.0.1:10911".parse().unwrap()
}

pub fn config(dir: &std::path::Path, mode: FlushMode) -> StoreConfig {
    StoreConfig {
        flush_mode: mode,
        commit_log_segment_size: 256 * 1024,
        consume_queue_entries_per_file: 256,
        index_slots: 512,
        index_entries: 2048,
        flush_interval_ms: 20,
        checkpoint_interval_ms: 50,
        max_message_size: 64 * 1024,
        ..StoreConfig::for_tests(dir)
    }
}

/// Body of message `id`: a few hundred deterministic bytes.
pub fn body(id: &str) -> Vec<u8> {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in id.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    let len = 1 + (h % 1800) as usize;
    (0..len)
        .map(|i| (h.rotate_left((i % 64) as u32) as u8) ^ (i as u8))
        .collect()
}

pub fn props(id: &str) -> String {
    format!(
        "ID\u{1}{id}\u{2}KEYS\u{1}{id}\u{2}TAGS\u{1}t{}\u{2}",
        id.len() % 3
    )
}

pub fn input<'a>(topic: &'a str, qid: i32, body: &'a [u8], props: &'a str) -> MessageInput<'a> {
    MessageInput {
        topic,
        queue_id: qid,
        flag: 0,
        sysflag: 0,
        born_timestamp: 1,
        born_host: "127.0.0.1:4000".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body,
        properties: props,
    }
}

/// An acknowledged put as the writer reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub id: String,
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: u64,
    pub phys: u64,
}

impl Ack {
    pub fn line(&self) -> String {
        format!(
            "ACK {} {} {} {} {}\n",
            self.id, self.topic, self.queue_id, self.queue_offset, self.phys
        )
    }
    pub fn parse(line: &str) -> Option<Ack> {
        let mut it = line.strip_prefix("ACK ")?.split(' ');
        Some(Ack {
            id: it.next()?.to_string(),
            topic: it.next()?.to_string(),
            queue_id: it.next()?.parse().ok()?,
            queue_offset: it.next()?.parse().ok()?,
            phys: it.next()?.trim().parse().ok()?,
        })
    }
}

/// Checks, on a freshly recovered store: every ack is readable with its bytes at its queue
/// position; no consume queue holds a record twice; consume queues and the log agree exactly.
/// Returns the number of records in the log.
pub fn verify(store: &MessageStore, acks: &[Ack]) -> Result<usize, String> {
    // Every acknowledged message, through its consume queue, with the same bytes.
    for a in acks {
        let cq = store
            .consume_queue(&a.topic, a.queue_id)
            .ok_or_else(|| format!("queue of {a:?} missing"))?;
        let g = store.get_messages(
            &a.topic,
            a.queue_id,
            a.queue_offset,
            1,
            usize::MAX,
            &AcceptAll,
        );
        let m = g
            .messages
            .first()
            .filter(|m| m.queue_offset == a.queue_offset)
            .ok_or_else(|| {
                format!(
                    "acked message {a:?} not readable (status {:?}, max {})",
                    g.status,
                    cq.max_offset()
                )
            })?;
        let Ok(Entry::Record(v)) = record::decode(
            &m.bytes,
            Check {
                crc: true,
                position: Some(a.phys as i64),
            },
        ) else {
            return Err(format!(
                "acked message {a:?} is not a valid record at its offset"
            ));
        };
        if v.property("ID") != Some(a.id.as_str()) || v.body() != body(&a.id).as_slice() {
            return Err(format!("acked message {a:?} has different bytes"));
        }
    }
    // The log, record by record, against the consume queues.
    let mut records = 0usize;
    let mut per_queue: HashMap<(String, i32), u64> = HashMap::new();
    let mut err = None;
    store.for_each_record(|pos, v| {
        records += 1;
        let key = (v.topic().to_string(), v.queue_id());
        *per_queue.entry(key).or_default() += 1;
        let qo = v.queue_offset() as u64;
        match store
            .consume_queue(v.topic(), v.queue_id())
            .and_then(|cq| cq.get(qo))
        {
            Some(e) if e.physical_offset == pos && e.size as usize == v.total_size() => {}
            other => {
                err.get_or_insert(format!(
                    "record at {pos} ({} q{} #{qo}) has consume queue entry {other:?}",
                    v.topic(),
                    v.queue_id()
                ));
            }
        }
        if let Some(id) = v.property("ID") {
            if v.body() != body(id).as_slice() {
                err.get_or_insert(format!("record at {pos} ({id}) has a wrong body"));
            }
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    // Every consume queue: exactly one entry per record, strictly increasing offsets.
    for cq in store.consume_queues() {
        let mut last: Option<u64> = None;
        let mut n = 0u64;
        let mut bad = None;
        cq.scan(0, |off, e| {
            n += 1;
            if last.is_some_and(|l| e.physical_offset <= l) {
                bad = Some(format!(
                    "{} q{} entry {off} repeats or reorders the log",
                    cq.topic(),
                    cq.queue_id()
                ));
                return false;
            }
            last = Some(e.physical_offset);
            true
        });
        if let Some(b) = bad {
            return Err(b);
        }
        let expect = per_queue
            .get(&(cq.topic().to_string(), cq.queue_id()))
            .copied()
            .unwrap_or(0);
        if n != expect || cq.min_offset() != 0 || cq.max_offset() != expect {
            return Err(format!(
                "{} q{}: {n} entries, min {} max {}, but the log has {expect} records",
                cq.topic(),
                cq.queue_id(),
                cq.min_offset(),
                cq.max_offset()
            ));
        }
    }
    Ok(records)
}
