use std::time::{Duration, SystemTime};

use super::*;
use crate::store::record::tag_hash;

fn host() -> SocketAddr {
    "127.0.0.1:10911".parse().unwrap()
}

fn input<'a>(topic: &'a str, qid: i32, body: &'a [u8], props: &'a str) -> MessageInput<'a> {
    MessageInput {
        topic,
        queue_id: qid,
        flag: 0,
        sysflag: 0,
        born_timestamp: 1,
        born_host: "127.0.0.1:5000".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body,
        properties: props,
    }
}

fn cfg(dir: &std::path::Path, mode: FlushMode) -> StoreConfig {
    StoreConfig {
        flush_mode: mode,
        commit_log_segment_size: 64 * 1024,
        max_message_size: 16 * 1024,
        ..StoreConfig::for_tests(dir)
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

struct TagFilter(i64, &'static str);
impl MessageFilter for TagFilter {
    fn by_tag_hash(&self, h: i64) -> bool {
        h == self.0
    }
    fn by_record(&self, r: &RecordView<'_>) -> bool {
        r.property("TAGS") == Some(self.1)
    }
}

#[test]
fn put_get_filter_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = MessageStore::open(cfg(dir.path(), FlushMode::Sync), host()).unwrap();
    for i in 0..100 {
        let body = format!("body-{i}");
        let tag = if i % 2 == 0 { "A" } else { "B" };
        let props = format!("TAGS\u{1}{tag}\u{2}KEYS\u{1}k{i} all\u{2}UNIQ_KEY\u{1}U{i}\u{2}");
        let r = rt.block_on(store.put(&[input("T", i % 4, body.as_bytes(), &props)]));
        assert_eq!(r.status, PutStatus::Ok);
        assert_eq!(r.appended[0].queue_offset, (i / 4) as u64);
    }
    assert!(rt.block_on(store.wait_dispatched(Duration::from_secs(5))));
    assert_eq!(store.max_offset("T", 1), 25);
    let all = store.get_messages("T", 1, 0, 32, 1 << 20, &AcceptAll);
    assert_eq!(all.status, GetStatus::Found);
    assert_eq!(all.messages.len(), 25);
    assert_eq!(all.next_offset, 25);
    // Queue 0 holds even i only: all tag A.
    let b = store.get_messages("T", 0, 0, 32, 1 << 20, &TagFilter(tag_hash("B"), "B"));
    assert_eq!(b.status, GetStatus::NoMatchedMessage);
    assert_eq!(b.next_offset, 25);
    let a = store.get_messages("T", 0, 3, 5, 1 << 20, &TagFilter(tag_hash("A"), "A"));
    assert_eq!(a.messages.len(), 5);
    assert_eq!(a.messages[0].queue_offset, 3);
    assert_eq!(a.next_offset, 8);
    // Offsets out of range.
    assert_eq!(
        store
            .get_messages("T", 0, 25, 5, 1 << 20, &AcceptAll)
            .status,
        GetStatus::OffsetOverflowOne
    );
    assert_eq!(
        store
            .get_messages("T", 0, 99, 5, 1 << 20, &AcceptAll)
            .status,
        GetStatus::OffsetOverflowBadly
    );
    assert_eq!(
        store
            .get_messages("Nope", 0, 0, 5, 1 << 20, &AcceptAll)
            .status,
        GetStatus::NoMatchedLogicQueue
    );
    // max_bytes keeps at least one message.
    assert_eq!(
        store
            .get_messages("T", 0, 0, 32, 1, &AcceptAll)
            .messages
            .len(),
        1
    );
    // Index lookups.
    let hits = store.query_by_key("T", "k42", 10, 0, i64::MAX, false);
    assert_eq!(hits.len(), 1);
    let Ok(Entry::Record(v)) = record::decode(
        &hits[0],
        Check {
            crc: true,
            position: None,
        },
    ) else {
        panic!()
    };
    assert_eq!(v.body(), b"body-42");
    assert_eq!(
        store.query_by_key("T", "all", 7, 0, i64::MAX, false).len(),
        7
    );
    assert_eq!(
        store.query_by_key("T", "U17", 10, 0, i64::MAX, true).len(),
        1
    );
    assert!(store
        .query_by_key("T", "U17", 10, 0, i64::MAX, false)
        .is_empty());
    assert!(store
        .query_by_key("Other", "k42", 10, 0, i64::MAX, false)
        .is_empty());
    // View by offset.
    let first = &all.messages[0];
    let off = first.bytes.as_ref();
    let Ok(Entry::Record(v)) = record::decode(
        off,
        Check {
            crc: true,
            position: None,
        },
    ) else {
        panic!()
    };
    assert!(store.view(v.physical_offset() as u64).is_some());
    assert!(store.view(v.physical_offset() as u64 + 1).is_none());
    let end = store.log_max_offset();
    store.shutdown().unwrap();
    drop(store);
    assert!(!dir.path().join("abort").exists());
    let store = MessageStore::open(cfg(dir.path(), FlushMode::Sync), host()).unwrap();
    assert!(!store.recovery().crashed);
    assert_eq!(store.log_max_offset(), end);
    assert_eq!(store.max_offset("T", 3), 25);
    // Queue offsets continue where they were.
    let r = rt.block_on(store.put(&[input("T", 3, b"more", "")]));
    assert_eq!(r.appended[0].queue_offset, 25);
}

#[test]
fn second_open_of_a_locked_dir_fails() {
    let dir = tempfile::tempdir().unwrap();
    let _store = MessageStore::open(cfg(dir.path(), FlushMode::Async), host()).unwrap();
    assert!(matches!(
        MessageStore::open(cfg(dir.path(), FlushMode::Async), host()),
        Err(StoreError::Locked(_))
    ));
}

#[test]
fn illegal_messages_get_a_status() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = MessageStore::open(cfg(dir.path(), FlushMode::Async), host()).unwrap();
    let big = vec![0u8; 16 * 1024 + 1];
    let r = rt.block_on(store.put(&[input("T", 0, &big, "")]));
    assert!(
        matches!(r.status, PutStatus::MessageIllegal(_)),
        "{:?}",
        r.status
    );
    let long = "x".repeat(200);
    let r = rt.block_on(store.put(&[input(&long, 0, b"x", "")]));
    assert!(matches!(r.status, PutStatus::MessageIllegal(_)));
    let r = rt.block_on(store.put(&[input("T", -1, b"x", "")]));
    assert!(matches!(r.status, PutStatus::MessageIllegal(_)));
    assert_eq!(store.log_max_offset(), 0, "nothing written");
}

#[test]
fn search_by_time_and_earliest() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = MessageStore::open(cfg(dir.path(), FlushMode::Async), host()).unwrap();
    let mut times = Vec::new();
    for i in 0..6 {
        let r = rt.block_on(store.put(&[input("T", 0, b"x", "")]));
        times.push(r.appended[0].store_timestamp);
        if i == 2 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(rt.block_on(store.wait_dispatched(Duration::from_secs(5))));
    assert_eq!(store.earliest_store_time("T", 0), Some(times[0]));
    assert_eq!(store.search_offset("T", 0, times[3], Boundary::Lower), 3);
    assert_eq!(
        store.search_offset("T", 0, times[3] - 1, Boundary::Upper),
        2
    );
    assert_eq!(store.search_offset("T", 0, 0, Boundary::Lower), 0);
    assert_eq!(store.search_offset("T", 0, i64::MAX, Boundary::Lower), 6);
}

#[test]
fn retention_deletes_old_segments_and_their_entries() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = MessageStore::open(cfg(dir.path(), FlushMode::Async), host()).unwrap();
    let body = vec![1u8; 4000];
    for _ in 0..60 {
        let r = rt.block_on(store.put(&[input("T", 0, &body, "KEYS\u{1}k\u{2}")]));
        assert!(r.status.is_ok());
    }
    assert!(rt.block_on(store.wait_dispatched(Duration::from_secs(5))));
    let segs = store.log_segment_count();
    assert!(segs >= 4);
    // A reader holding a record from the first segment keeps it readable after deletion.
    let held = store
        .get_messages("T", 0, 0, 1, 1 << 20, &AcceptAll)
        .messages
        .remove(0);
    let later = SystemTime::now() + Duration::from_secs(200 * 3600);
    let rep = store.clean_now(later).unwrap();
    assert_eq!(rep.segments_deleted, segs - 1, "all but the active segment");
    assert!(store.min_offset("T", 0) > 0);
    let g = store.get_messages("T", 0, 0, 1, 1 << 20, &AcceptAll);
    assert_eq!(g.status, GetStatus::OffsetTooSmall);
    assert_eq!(g.next_offset, store.min_offset("T", 0));
    let g = store.get_messages("T", 0, g.next_offset, 100, 1 << 20, &AcceptAll);
    assert_eq!(g.status, GetStatus::Found);
    assert_eq!(held.bytes.len(), held.bytes.as_ref().len());
    assert!(record::decode(
        &held.bytes,
        Check {
            crc: true,
            position: None
        }
    )
    .is_ok());
    // Nothing recent is deleted.
    assert_eq!(
        store.clean_now(SystemTime::now()).unwrap().segments_deleted,
        0
    );
    // Reopen agrees.
    let min = store.min_offset("T", 0);
    drop(store);
    let store = MessageStore::open(cfg(dir.path(), FlushMode::Async), host()).unwrap();
    assert_eq!(store.min_offset("T", 0), min);
    assert_eq!(store.max_offset("T", 0), 60);
}

#[test]
fn disk_full_ratio_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut c = cfg(dir.path(), FlushMode::Async);
    c.disk_max_used_ratio = 0.0;
    let store = MessageStore::open(c, host()).unwrap();
    let r = rt.block_on(store.put(&[input("T", 0, b"x", "")]));
    assert_eq!(r.status, PutStatus::DiskFull);
    assert_eq!(store.log_max_offset(), 0);
}

#[test]
fn flush_failure_turns_the_store_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = MessageStore::open(cfg(dir.path(), FlushMode::Sync), host()).unwrap();
    assert!(rt
        .block_on(store.put(&[input("T", 0, b"ok", "")]))
        .status
        .is_ok());
    store.inject_flush_failure();
    let r = rt.block_on(store.put(&[input("T", 0, b"after", "")]));
    assert_eq!(
        r.status,
        PutStatus::FlushDiskTimeout,
        "not acknowledged as durable"
    );
    let r = rt.block_on(store.put(&[input("T", 0, b"refused", "")]));
    assert!(
        matches!(r.status, PutStatus::ServiceUnavailable(_)),
        "{:?}",
        r.status
    );
    assert!(store.read_only_reason().unwrap().contains("flush failed"));
    drop(store);
    assert!(
        dir.path().join("abort").exists(),
        "a read-only shutdown is not clean"
    );
}

#[test]
fn sync_group_commit_serves_concurrent_puts() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(MessageStore::open(cfg(dir.path(), FlushMode::Sync), host()).unwrap());
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..8 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    let body = format!("{t}-{i}");
                    let r = s.put(&[input("G", t, body.as_bytes(), "")]).await;
                    assert!(r.status.is_ok());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    assert!(rt.block_on(store.wait_dispatched(Duration::from_secs(5))));
    for q in 0..8 {
        assert_eq!(store.max_offset("G", q), 50);
    }
}

#[test]
fn batch_put_is_consecutive() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = MessageStore::open(cfg(dir.path(), FlushMode::Async), host()).unwrap();
    let msgs: Vec<_> = (0..10).map(|_| input("B", 2, b"m", "")).collect();
    let r = rt.block_on(store.put(&msgs));
    assert!(r.status.is_ok());
    let offs: Vec<u64> = r.appended.iter().map(|a| a.queue_offset).collect();
    assert_eq!(offs, (0..10).collect::<Vec<_>>());
}

#[test]
fn lost_consume_queue_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    {
        let store = MessageStore::open(cfg(dir.path(), FlushMode::Async), host()).unwrap();
        for i in 0..40 {
            let props = format!("TAGS\u{1}t{}\u{2}", i % 3);
            let r = rt.block_on(store.put(&[input("R", i % 2, b"x", &props)]));
            assert!(r.status.is_ok());
        }
    }
    std::fs::remove_dir_all(dir.path().join("consumequeue").join("R").join("1")).unwrap();
    let store = MessageStore::open(cfg(dir.path(), FlushMode::Async), host()).unwrap();
    assert_eq!(store.min_offset("R", 1), 0);
    assert_eq!(store.max_offset("R", 1), 20);
    let g = store.get_messages("R", 1, 0, 100, 1 << 20, &AcceptAll);
    assert_eq!(g.messages.len(), 20);
    let cq = store.consume_queue("R", 1).unwrap();
    assert_eq!(cq.get(0).unwrap().tag_hash, tag_hash("t1"));
    // New appends continue the rebuilt queue.
    let r = rt.block_on(store.put(&[input("R", 1, b"y", "")]));
    assert_eq!(r.appended[0].queue_offset, 20);
}

fn target(topic: &str, queue_id: i32) -> DispatchTarget {
    DispatchTarget {
        topic: topic.into(),
        queue_id,
    }
}

fn read_all(store: &MessageStore, topic: &str, q: i32) -> Vec<(String, i32, i64, i64, Vec<u8>)> {
    let g = store.get_messages(topic, q, 0, 100, 1 << 20, &AcceptAll);
    g.messages
        .iter()
        .map(|m| {
            let Ok(Entry::Record(v)) = record::decode(
                &m.bytes,
                Check {
                    crc: true,
                    position: None,
                },
            ) else {
                panic!("bad record")
            };
            (
                v.topic().to_string(),
                v.queue_id(),
                v.queue_offset(),
                v.physical_offset(),
                v.body().to_vec(),
            )
        })
        .collect()
}

#[test]
fn multi_dispatch_stores_once_and_reads_through_each_target() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let phys;
    {
        let store = MessageStore::open(cfg(dir.path(), FlushMode::Async), host()).unwrap();
        // Something already in a target queue, so its offsets differ from the primary's.
        rt.block_on(store.put(&[input("Audit", 0, b"older", "")]));
        let before = store.log_max_offset();
        let r = rt.block_on(store.put_dispatched(
            &[
                input("Orders", 1, b"fanned", "TAGS\u{1}t\u{2}KEYS\u{1}k1\u{2}"),
                input("Orders", 1, b"plain", ""),
            ],
            &[vec![target("Audit", 0), target("Orders-eu", 2)], vec![]],
        ));
        assert_eq!(r.status, PutStatus::Ok);
        phys = r.appended[0].physical_offset as i64;
        // Stored once: two records for two messages.
        let grew = store.log_max_offset() - before;
        assert_eq!(
            grew,
            (r.appended[0].size + r.appended[1].size) as u64,
            "one record per message"
        );
        assert!(rt.block_on(store.wait_dispatched(Duration::from_secs(5))));
        assert_eq!(
            read_all(&store, "Orders", 1),
            [
                ("Orders".into(), 1, 0, phys, b"fanned".to_vec()),
                (
                    "Orders".into(),
                    1,
                    1,
                    r.appended[1].physical_offset as i64,
                    b"plain".to_vec()
                )
            ]
        );
        let audit = read_all(&store, "Audit", 0);
        assert_eq!(audit.len(), 2);
        assert_eq!(audit[1], ("Audit".into(), 0, 1, phys, b"fanned".to_vec()));
        assert_eq!(
            read_all(&store, "Orders-eu", 2),
            [("Orders-eu".into(), 2, 0, phys, b"fanned".to_vec())]
        );
        // Keys are indexed under each target topic too; tag hashes carried over.
        assert_eq!(
            store
                .query_by_key("Orders-eu", "k1", 4, 0, i64::MAX, false)
                .len(),
            1
        );
        let cq = store.consume_queue("Orders-eu", 2).unwrap();
        assert_eq!(cq.get(0).unwrap().tag_hash, tag_hash("t"));
        // Bad targets are refused before anything is written.
        let end = store.log_max_offset();
        let r = rt.block_on(store.put_dispatched(
            &[input("Orders", 0, b"x", "")],
            &[vec![target("Bad topic\u{1}", 0)]],
        ));
        assert!(
            matches!(r.status, PutStatus::MessageIllegal(_)),
            "{:?}",
            r.status
        );
        let r = rt.block_on(store.put_dispatched(
            &[input("Orders", 0, b"x", "")],
            &[vec![target("Audit", -1)]],
        ));
        assert!(matches!(r.status, PutStatus::MessageIllegal(_)));
        assert_eq!(store.log_max_offset(), end);
    }
    // After a restart (and with a target's queue files lost) every view is rebuilt.
    std::fs::remove_dir_all(dir.path().join("consumequeue").join("Orders-eu")).unwrap();
    let store = MessageStore::open(cfg(dir.path(), FlushMode::Async), host()).unwrap();
    assert_eq!(
        read_all(&store, "Orders-eu", 2),
        [("Orders-eu".into(), 2, 0, phys, b"fanned".to_vec())]
    );
    assert_eq!(read_all(&store, "Audit", 0).len(), 2);
    let r = rt.block_on(store.put_dispatched(
        &[input("Orders", 1, b"again", "")],
        &[vec![target("Orders-eu", 2)]],
    ));
    assert_eq!(r.status, PutStatus::Ok);
    assert!(rt.block_on(store.wait_dispatched(Duration::from_secs(5))));
    let eu = read_all(&store, "Orders-eu", 2);
    assert_eq!(eu.len(), 2);
    assert_eq!((eu[1].2, eu[1].4.as_slice()), (1, &b"again"[..]));
}

/// Copies `master`'s log into `slave` the way the HA stream does: whole-record chunks of at
/// most `max` bytes from the slave's end.
fn replicate(master: &MessageStore, slave: &MessageStore, max: usize) -> usize {
    let mut frames = 0;
    while let Ok(Some(b)) = master.read_replica(slave.log_max_offset(), max) {
        slave.append_replica(slave.log_max_offset(), &b).unwrap();
        frames += 1;
    }
    frames
}

fn segment_bytes(store: &MessageStore) -> Vec<(String, Vec<u8>)> {
    let dir = store.dir().join("commitlog");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap())
        // A segment being prepared in the background is `<name>.tmp` until it is complete.
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".tmp"))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_slave_copy_is_byte_identical_with_the_same_queue_offsets() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rt = rt();
    let master = MessageStore::open(cfg(a.path(), FlushMode::Async), host()).unwrap();
    let slave = MessageStore::open(cfg(b.path(), FlushMode::Async), host()).unwrap();
    // ~3 segments of 64 KiB, records of varying sizes so segment ends get fillers.
    for i in 0..300 {
        let body = vec![b'x'; 100 + (i * 37) % 900];
        let r = rt.block_on(master.put(&[input("T", (i % 3) as i32, &body, "")]));
        assert!(r.status.is_ok());
        if i % 50 == 0 {
            replicate(&master, &slave, 4096);
        }
    }
    assert!(replicate(&master, &slave, 4096) > 0);
    assert_eq!(slave.log_max_offset(), master.log_max_offset());
    assert!(master.log_segment_count() >= 3);
    // Byte-identical up to the master's end (the slave's spare segment aside).
    let (m, s) = (segment_bytes(&master), segment_bytes(&slave));
    let end = master.log_max_offset();
    for (name, bytes) in m.iter().filter(|(n, _)| n.parse::<u64>().unwrap() < end) {
        let other = s
            .iter()
            .find(|(n, _)| n == name)
            .expect("same segment names");
        assert!(bytes == &other.1, "segment {name} differs");
    }
    assert!(rt.block_on(slave.wait_dispatched(Duration::from_secs(10))));
    assert!(rt.block_on(master.wait_dispatched(Duration::from_secs(10))));
    for q in 0..3 {
        assert_eq!(slave.max_offset("T", q), master.max_offset("T", q));
        assert_eq!(slave.max_offset("T", q), 100);
    }
    let got = slave.get_messages("T", 1, 99, 1, 1 << 20, &AcceptAll);
    assert_eq!(got.messages.len(), 1);
    // What does not continue the log exactly is refused, and nothing is appended.
    let end = slave.log_max_offset();
    let more = rt.block_on(master.put(&[input("T", 0, b"next", "")]));
    assert!(more.status.is_ok());
    let chunk = master.read_replica(end, 1 << 20).unwrap().unwrap();
    let e = slave
        .append_replica(end + 1, &chunk)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&end.to_string()) && e.contains(&(end + 1).to_string()),
        "{e}"
    );
    let e = slave
        .append_replica(end, &chunk[1..])
        .unwrap_err()
        .to_string();
    assert!(e.contains("not whole records"), "{e}");
    assert!(slave.append_replica(end, b"garbage!garbage!").is_err());
    assert_eq!(slave.log_max_offset(), end);
    slave.append_replica(end, &chunk).unwrap();
    assert_eq!(slave.log_max_offset(), master.log_max_offset());
    // An offset outside the master's log is an error naming its bounds.
    assert_eq!(
        master
            .read_replica(master.log_max_offset() + 1, 10)
            .unwrap_err(),
        (0, master.log_max_offset())
    );
}

#[test]
fn an_empty_slave_starts_at_the_masters_oldest_segment() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rt = rt();
    let master = MessageStore::open(cfg(a.path(), FlushMode::Async), host()).unwrap();
    for i in 0..200 {
        let body = vec![b'y'; 900];
        assert!(rt
            .block_on(master.put(&[input("T", i % 2, &body, "")]))
            .status
            .is_ok());
    }
    // Retention takes the first segment.
    let before = master.log_min_offset();
    master.inner.log.delete_segments(|s| s.base() == 0).unwrap();
    let min = master.log_min_offset();
    assert!(min > before);
    let slave = MessageStore::open(cfg(b.path(), FlushMode::Async), host()).unwrap();
    // A slave's first segment must start on a boundary.
    let first = master.read_replica(min, 1 << 20).unwrap().unwrap();
    let e = slave
        .append_replica(min + 1, &first)
        .unwrap_err()
        .to_string();
    assert!(e.contains("segment boundary"), "{e}");
    slave.append_replica(min, &first).unwrap();
    replicate(&master, &slave, 1 << 20);
    assert_eq!(slave.log_max_offset(), master.log_max_offset());
    assert_eq!(slave.log_min_offset(), min);
    assert!(rt.block_on(slave.wait_dispatched(Duration::from_secs(10))));
    for q in 0..2 {
        assert_eq!(slave.max_offset("T", q), 100);
        assert!(slave.min_offset("T", q) > 0);
        let got = slave.get_messages("T", q, slave.min_offset("T", q), 4, 1 << 20, &AcceptAll);
        assert_eq!(got.messages.len(), 4);
    }
    // Reopened, the slave keeps its log and queues; the first segment file is the master's.
    drop(slave);
    let slave = MessageStore::open(cfg(b.path(), FlushMode::Async), host()).unwrap();
    assert_eq!(slave.log_min_offset(), min);
    assert_eq!(slave.max_offset("T", 0), 100);
    assert!(!b
        .path()
        .join("commitlog")
        .join(crate::store::mapped_file::file_name(0))
        .exists());
}

#[test]
fn an_async_append_is_dispatched_before_it_returns() {
    // Async flush: the appender dispatches its own records (no dispatcher wake-up per append,
    // no delay before a pull sees the message).
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(cfg(dir.path(), FlushMode::Async), host()).unwrap();
    for i in 0..50u64 {
        store.append(&[input("D", 0, b"m", "")]).unwrap();
        assert_eq!(store.max_offset("D", 0), i + 1, "visible at once");
        assert_eq!(store.dispatched_offset(), store.log_max_offset());
    }
    // Concurrent appenders share passes; none is lost.
    std::thread::scope(|s| {
        for q in 1..5 {
            let store = &store;
            s.spawn(move || {
                for _ in 0..200 {
                    store.append(&[input("D", q, b"m", "")]).unwrap();
                }
            });
        }
    });
    assert!(rt().block_on(store.wait_dispatched(Duration::from_secs(10))));
    for q in 1..5 {
        assert_eq!(store.max_offset("D", q), 200);
    }
}
