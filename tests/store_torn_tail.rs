//! Torn-tail recovery: the last segment is cut at many byte positions inside its last
//! records, with and without garbage appended after the cut, with its last page zeroed, and
//! with the consume queues deleted. Recovery must always land exactly on the last valid
//! record, rebuild the consume queues to match, and keep accepting appends.

mod store_support;

use std::path::{Path, PathBuf};

use rand::{Rng, RngCore};
use store_support::*;
use wasmq::store::checkpoint::{Checkpoint, CheckpointFile};
use wasmq::store::{FlushMode, MessageStore, StoreError};

#[derive(Clone, Copy, Debug)]
enum Damage {
    Cut,
    CutAndGarbage,
    ZeroLastPage,
    CutAndDeleteConsumeQueues,
}

struct Pristine {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    /// (start, end, ack) of every record, in log order.
    records: Vec<(u64, u64, Ack)>,
    last_segment: PathBuf,
    last_segment_base: u64,
}

fn build() -> Pristine {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = MessageStore::open(config(&dir, FlushMode::Async), host()).unwrap();
    // Enough to fill a few 256 KiB segments and leave a partly filled last one.
    for i in 0..700u32 {
        let id = format!("m{i}");
        let (b, p) = (body(&id), props(&id));
        let r = rt.block_on(store.put(&[input(TOPICS[(i % 2) as usize], (i % 3) as i32, &b, &p)]));
        assert!(r.status.is_ok());
    }
    let mut records = Vec::new();
    store.for_each_record(|pos, v| {
        records.push((
            pos,
            pos + v.total_size() as u64,
            Ack {
                id: v.property("ID").unwrap().to_string(),
                topic: v.topic().to_string(),
                queue_id: v.queue_id(),
                queue_offset: v.queue_offset() as u64,
                phys: pos,
            },
        ))
    });
    let seg = 256 * 1024;
    let last_end = records.last().unwrap().1;
    let base = (last_end - 1) / seg * seg;
    assert!(
        records.iter().filter(|r| r.0 >= base).count() >= 6,
        "several records in the last segment"
    );
    drop(store);
    let last_segment = dir.join("commitlog").join(format!("{base:020}"));
    assert!(last_segment.exists());
    Pristine {
        _tmp: tmp,
        dir,
        records,
        last_segment,
        last_segment_base: base,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else if e.file_name() != "lock" {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Damages a copy of the store and returns its directory and the offset recovery must find.
fn damage(
    p: &Pristine,
    work: &Path,
    kind: Damage,
    at: u64,
    rng: &mut impl RngCore,
) -> (PathBuf, u64) {
    let dir = work.join("store");
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&p.dir, &dir);
    let seg = dir
        .join("commitlog")
        .join(p.last_segment.file_name().unwrap());
    let mut data = std::fs::read(&seg).unwrap();
    let rel = at.saturating_sub(p.last_segment_base) as usize;
    let cut_at = match kind {
        Damage::Cut | Damage::CutAndDeleteConsumeQueues => {
            data.truncate(rel);
            at
        }
        Damage::CutAndGarbage => {
            data.truncate(rel);
            let mut g = vec![0u8; rng.random_range(1..3000)];
            rng.fill_bytes(&mut g);
            data.extend_from_slice(&g);
            at
        }
        Damage::ZeroLastPage => {
            let last_end = p.records.last().unwrap().1;
            let page = (last_end - 1) / 4096 * 4096;
            let from = (page - p.last_segment_base) as usize;
            data[from..from + 4096].iter_mut().for_each(|b| *b = 0);
            page
        }
    };
    std::fs::write(&seg, &data).unwrap();
    if matches!(kind, Damage::CutAndDeleteConsumeQueues) {
        std::fs::remove_dir_all(dir.join("consumequeue")).unwrap();
    }
    // A crash: abort marker present, checkpoint lagging behind the damaged tail.
    std::fs::write(dir.join("abort"), b"").unwrap();
    let cp_at = p.records.iter().rev().nth(8).unwrap().0;
    CheckpointFile::new(&dir)
        .store(&Checkpoint {
            log_flushed: cp_at.min(cut_at),
            dispatched: cp_at.min(cut_at),
        })
        .unwrap();
    // The last valid record is the last one that ends at or before the damage.
    let expected = p
        .records
        .iter()
        .take_while(|r| r.1 <= cut_at)
        .last()
        .map(|r| r.1)
        .unwrap_or(0);
    (dir, expected)
}

fn check(p: &Pristine, dir: &Path, expected: u64, what: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let surviving: Vec<Ack> = p
        .records
        .iter()
        .filter(|r| r.1 <= expected)
        .map(|r| r.2.clone())
        .collect();
    {
        let store = MessageStore::open(config(dir, FlushMode::Async), host())
            .unwrap_or_else(|e| panic!("{what}: recovery failed: {e}"));
        assert_eq!(store.log_max_offset(), expected, "{what}: recovery end");
        verify(&store, &surviving).unwrap_or_else(|e| panic!("{what}: {e}"));
        // The log keeps going from there.
        let (b, pr) = (body("after"), props("after"));
        let r = rt.block_on(store.put(&[input(TOPICS[0], 0, &b, &pr)]));
        assert!(r.status.is_ok());
        assert_eq!(
            r.appended[0].physical_offset, expected,
            "{what}: next append position"
        );
    }
    // And a second recovery (after a clean stop) finds no false corruption.
    let store = MessageStore::open(config(dir, FlushMode::Async), host())
        .unwrap_or_else(|e| panic!("{what}: second open failed: {e}"));
    assert!(store.log_max_offset() > expected);
    verify(&store, &surviving).unwrap_or_else(|e| panic!("{what} (reopened): {e}"));
}

#[test]
fn recovery_lands_on_the_last_valid_record() {
    let p = build();
    let work = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    let last3_start = p.records[p.records.len() - 3].0;
    let last_end = p.records.last().unwrap().1;
    let mut cases = 0;
    // Every 31st byte inside the last three records, plus positions around each boundary.
    let mut positions: Vec<u64> = (last3_start..=last_end).step_by(31).collect();
    for r in &p.records[p.records.len() - 3..] {
        positions.extend([r.0, r.0 + 1, r.0 + 4, r.0 + 8, r.1 - 1, r.1]);
    }
    positions.sort();
    positions.dedup();
    for &at in &positions {
        for kind in [Damage::Cut, Damage::CutAndGarbage] {
            let (dir, expected) = damage(&p, work.path(), kind, at, &mut rng);
            check(&p, &dir, expected, &format!("{kind:?} at {at}"));
            cases += 1;
        }
    }
    for &at in positions.iter().step_by(9) {
        let (dir, expected) = damage(
            &p,
            work.path(),
            Damage::CutAndDeleteConsumeQueues,
            at,
            &mut rng,
        );
        check(
            &p,
            &dir,
            expected,
            &format!("cut at {at}, consume queues deleted"),
        );
        cases += 1;
    }
    let (dir, expected) = damage(&p, work.path(), Damage::ZeroLastPage, 0, &mut rng);
    check(&p, &dir, expected, "last page zeroed");
    cases += 1;
    eprintln!("torn tail: {cases} damaged copies recovered exactly");
}

#[test]
fn damage_followed_by_valid_records_refuses_to_start() {
    let p = build();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("store");
    copy_dir(&p.dir, &dir);
    // Flip one body byte of a record in the middle of the last segment.
    let victim = p.records.iter().rev().nth(3).unwrap();
    let seg = dir
        .join("commitlog")
        .join(p.last_segment.file_name().unwrap());
    let mut data = std::fs::read(&seg).unwrap();
    let rel = (victim.0 - p.last_segment_base) as usize + 100;
    data[rel] ^= 0x5A;
    std::fs::write(&seg, &data).unwrap();
    CheckpointFile::new(&dir)
        .store(&Checkpoint {
            log_flushed: p.last_segment_base,
            dispatched: p.last_segment_base,
        })
        .unwrap();
    match MessageStore::open(config(&dir, FlushMode::Async), host()) {
        Err(StoreError::Corruption {
            file,
            offset,
            reason,
        }) => {
            assert_eq!(file, seg);
            assert_eq!(offset, victim.0 - p.last_segment_base);
            assert!(reason.contains("valid record follows"), "{reason}");
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("opened a store with damage before valid records"),
    }
    // The operator switch truncates there instead.
    let mut cfg = config(&dir, FlushMode::Async);
    cfg.allow_truncate_on_corruption = true;
    let store = MessageStore::open(cfg, host()).unwrap();
    assert_eq!(store.log_max_offset(), victim.0);
    let surviving: Vec<Ack> = p
        .records
        .iter()
        .filter(|r| r.1 <= victim.0)
        .map(|r| r.2.clone())
        .collect();
    verify(&store, &surviving).unwrap();
}
