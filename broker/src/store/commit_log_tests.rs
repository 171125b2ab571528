use super::*;

pub(crate) fn msg<'a>(topic: &'a str, qid: i32, body: &'a [u8]) -> MessageInput<'a> {
    MessageInput {
        topic,
        queue_id: qid,
        flag: 0,
        sysflag: 0,
        born_timestamp: 1,
        born_host: "127.0.0.1:1".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body,
        properties: "",
    }
}

fn append(log: &CommitLog, m: MessageInput<'_>) -> Appended {
    let mut out = Vec::new();
    log.append(&[m], &[record::body_crc(m.body)], 1 << 20, 32767, &mut out)
        .unwrap();
    out[0]
}

fn open(dir: &Path, from: u64) -> Result<(CommitLog, LogRecovery)> {
    CommitLog::open(
        dir,
        64 * 1024,
        true,
        "127.0.0.1:10911".parse().unwrap(),
        from,
        false,
    )
}

#[test]
fn segments_roll_with_blank_filler() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), 0).unwrap();
    let body = vec![7u8; 1000];
    let mut all = Vec::new();
    for i in 0..200 {
        let a = append(&log, msg("T", i % 3, &body));
        all.push(a);
    }
    assert!(log.segments().len() >= 3, "rolled into several segments");
    // Queue offsets are consecutive per queue.
    for q in 0..3 {
        let offs: Vec<u64> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as i32 % 3 == q)
            .map(|(_, a)| a.queue_offset)
            .collect();
        assert_eq!(offs, (0..offs.len() as u64).collect::<Vec<_>>());
    }
    // No record spans a segment boundary, and every record reads back.
    for a in &all {
        assert_eq!(
            a.physical_offset / 65536,
            (a.physical_offset + a.size as u64 - 1) / 65536
        );
        let r = log.read(a.physical_offset, a.size).unwrap();
        let Ok(Entry::Record(v)) = record::decode(
            &r,
            Check {
                crc: true,
                position: Some(a.physical_offset as i64),
            },
        ) else {
            panic!("bad record")
        };
        assert_eq!(v.body(), &body[..]);
    }
    // Walking the log visits every record in order.
    let mut pos = 0;
    let mut seen = 0;
    loop {
        match log.read_at(pos) {
            LogEntry::Record(r) => {
                assert_eq!(pos, all[seen].physical_offset);
                pos += r.len() as u64;
                seen += 1;
            }
            LogEntry::Skip(next) => pos = next,
            LogEntry::End => break,
        }
    }
    assert_eq!(seen, all.len());
    log.flush().unwrap();
    let end = log.max_offset();
    drop(log);
    let (log, rec) = open(dir.path(), 0).unwrap();
    assert_eq!(rec.end, end);
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(log.max_offset(), end);
}

#[test]
fn illegal_message_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), 0).unwrap();
    let big = vec![0u8; 2000];
    let mut out = Vec::new();
    let ok = msg("T", 0, b"x");
    let bad = msg("T", 0, &big);
    let r = log.append(&[ok, bad], &[0, 0], 1000, 100, &mut out);
    assert!(matches!(r, Err(AppendError::Illegal(_))));
    assert!(out.is_empty());
    assert_eq!(log.max_offset(), 0);
}

#[test]
fn damage_before_valid_records_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), 0).unwrap();
    let mut recs = Vec::new();
    for _ in 0..10 {
        recs.push(append(&log, msg("T", 0, b"0123456789")));
    }
    let victim = recs[4];
    drop(log);
    // Flip a body byte of record 4.
    let path = dir.path().join(super::super::mapped_file::file_name(0));
    let mut data = std::fs::read(&path).unwrap();
    data[victim.physical_offset as usize + 90] ^= 0xFF;
    std::fs::write(&path, &data).unwrap();
    match open(dir.path(), 0) {
        Err(StoreError::Corruption { file, offset, .. }) => {
            assert_eq!(file, path);
            assert_eq!(offset, victim.physical_offset);
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok((_, r)) => panic!("opened a damaged log: {r:?}"),
    }
    // The operator override truncates at the damage.
    let (log, rec) = CommitLog::open(
        dir.path(),
        64 * 1024,
        false,
        "127.0.0.1:1".parse().unwrap(),
        0,
        true,
    )
    .unwrap();
    assert_eq!(rec.end, victim.physical_offset);
    assert!(rec.dropped_after_corruption.is_some());
    assert_eq!(log.max_offset(), victim.physical_offset);
}

#[test]
fn last_nonzero_finds_the_end() {
    let mut v = vec![0u8; 1000];
    assert_eq!(last_nonzero(&v), None);
    v[0] = 1;
    assert_eq!(last_nonzero(&v), Some(0));
    v[777] = 1;
    assert_eq!(last_nonzero(&v), Some(777));
}

#[test]
fn zero_fill_of_the_next_segment_is_paced_by_the_active_one_until_needed() {
    let dir = tempfile::tempdir().unwrap();
    let seg = 48 << 20;
    let (log, _) = CommitLog::open(
        dir.path(),
        seg,
        true,
        "127.0.0.1:1".parse().unwrap(),
        0,
        false,
    )
    .unwrap();
    // The first segment (nothing active yet) is prepared unpaced; the first append takes it
    // and starts the next one, which may zero 2 x 0% + 1/16 of itself and then must wait.
    let a = append(&log, msg("T", 0, b"x"));
    assert_eq!(a.physical_offset, 0);
    let finished = || {
        log.writer
            .lock()
            .next
            .as_ref()
            .is_some_and(|p| p.handle.is_finished())
    };
    let t = std::time::Instant::now();
    while t.elapsed() < std::time::Duration::from_millis(1500) {
        assert!(!finished(), "the next segment was zeroed ahead of its pace");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!dir
        .path()
        .join(super::super::mapped_file::file_name(seg))
        .exists());
    // Needed now (a roll, or here the wait before measuring): finished at full speed.
    log.wait_prepared();
    assert!(dir
        .path()
        .join(super::super::mapped_file::file_name(seg))
        .exists());
}

#[test]
fn an_abandoned_preparation_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let seg = 48 << 20;
    let (log, _) = CommitLog::open(
        dir.path(),
        seg,
        true,
        "127.0.0.1:1".parse().unwrap(),
        0,
        false,
    )
    .unwrap();
    append(&log, msg("T", 0, b"x"));
    // The next segment waits for the active one to fill; shutdown does not wait for it.
    log.abandon_prepared();
    let name = super::super::mapped_file::file_name(seg);
    assert!(!dir.path().join(&name).exists());
    assert!(!dir.path().join(format!("{name}.tmp")).exists());
    // The next roll creates it then.
    let body = vec![1u8; 1 << 20];
    for _ in 0..48 {
        append(&log, msg("T", 0, &body));
    }
    assert!(dir.path().join(&name).exists());
}
