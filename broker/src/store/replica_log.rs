//! The commit log as replication sees it: a master reads published bytes in whole records,
//! never across a segment; a slave appends them at exactly its own end, so its segments are
//! byte-identical to the master's and roll at the same boundaries.

use std::sync::atomic::Ordering;

use super::{CommitLog, RecordBytes, Src};
use crate::store::error::StoreError;
use crate::store::record::{self, Check, DecodeError, Entry};

/// Why a slave refused bytes from its master. Nothing was appended.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaAppendError {
    #[error("replicated bytes start at offset {theirs} but this log ends at {ours}: the logs diverged or a frame was lost")]
    NotContinuous { ours: u64, theirs: u64 },
    #[error("replicated bytes at {offset} ({len} bytes) cross the segment boundary at {boundary} (segment size {segment_size}): the master's segment size differs")]
    CrossesSegment {
        offset: u64,
        len: usize,
        boundary: u64,
        segment_size: u64,
    },
    #[error("an empty log can only start at a segment boundary; the master sent offset {offset} (segment size {segment_size})")]
    Unaligned { offset: u64, segment_size: u64 },
    #[error("replicated bytes at {offset} are not whole records: {reason}")]
    NotRecords { offset: u64, reason: String },
    #[error("writing replicated bytes failed: {0}")]
    Write(StoreError),
}

/// How many bytes of `avail` (published bytes of one segment starting at `offset`, with
/// `left_in_segment` bytes to the segment's end) make whole records up to about `max`: at
/// least the first record, however large; a filler counts to the segment's end.
pub fn whole_records(avail: &[u8], offset: u64, left_in_segment: u64, max: usize) -> usize {
    let mut n = 0usize;
    while n < avail.len() {
        let rest = &avail[n..];
        let size = match record::decode(
            rest,
            Check {
                crc: false,
                position: Some((offset + n as u64) as i64),
            },
        ) {
            Ok(Entry::Record(r)) => r.total_size(),
            // The filler (or fewer than its header's bytes) runs to the segment's end.
            Ok(Entry::Blank) | Err(DecodeError::Truncated { .. })
                if (rest.len() as u64) == left_in_segment - n as u64 =>
            {
                rest.len()
            }
            _ => break,
        };
        if n > 0 && n + size > max {
            break;
        }
        n += size;
    }
    n
}

impl CommitLog {
    /// Published bytes from `offset`, whole records only, about `max` bytes at most, within
    /// the segment holding `offset` (zero-copy). `None` when nothing is published there yet;
    /// `Err` with the log's bounds when `offset` is outside them.
    pub fn read_replica(&self, offset: u64, max: usize) -> Result<Option<RecordBytes>, (u64, u64)> {
        let (min, end) = (self.min_offset(), self.max_offset());
        if offset < min || offset > end {
            return Err((min, end));
        }
        let Some(seg) = self.segment_for(offset) else {
            return Ok(None);
        };
        let pos = offset - seg.base();
        // Bytes a segment published before the log's end moved past them (an append in
        // progress) are not sent yet: the stream never runs ahead of `max_offset`.
        let published = seg.wrote().min(end.saturating_sub(seg.base()));
        if pos >= published {
            return Ok(None);
        }
        let avail = seg.read(pos, (published - pos) as usize).unwrap_or(&[]);
        let len = whole_records(avail, offset, seg.size() - pos, max);
        if len == 0 {
            return Ok(None);
        }
        Ok(Some(RecordBytes(Src::Mapped { seg, pos, len })))
    }

    /// Appends bytes replicated from the master at `offset`, which must be this log's end.
    /// They must be whole records (or a segment's filler) within one segment; a new segment
    /// starts at exactly the master's boundary. Queue-offset counters follow the records.
    pub fn append_replica(&self, offset: u64, data: &[u8]) -> Result<(), ReplicaAppendError> {
        let mut w = self.lock_for_append();
        let end = match &w.active {
            Some(s) => s.base() + s.wrote(),
            None => {
                if offset % self.segment_size != 0 {
                    return Err(ReplicaAppendError::Unaligned {
                        offset,
                        segment_size: self.segment_size,
                    });
                }
                offset
            }
        };
        if offset != end {
            return Err(ReplicaAppendError::NotContinuous {
                ours: end,
                theirs: offset,
            });
        }
        if data.is_empty() {
            return Ok(());
        }
        let boundary = (offset / self.segment_size + 1) * self.segment_size;
        if offset + data.len() as u64 > boundary {
            return Err(ReplicaAppendError::CrossesSegment {
                offset,
                len: data.len(),
                boundary,
                segment_size: self.segment_size,
            });
        }
        // Check the records before anything is written.
        let mut queues: Vec<(&str, i32, u64, i64)> = Vec::new();
        let mut n = 0usize;
        while n < data.len() {
            let at = offset + n as u64;
            let rest = &data[n..];
            match record::decode(
                rest,
                Check {
                    crc: false,
                    position: Some(at as i64),
                },
            ) {
                Ok(Entry::Record(r)) => {
                    queues.push((
                        r.topic(),
                        r.queue_id(),
                        r.queue_offset() as u64,
                        r.store_timestamp(),
                    ));
                    n += r.total_size();
                }
                Ok(Entry::Blank) | Err(DecodeError::Truncated { .. })
                    if at + rest.len() as u64 == boundary =>
                {
                    n = data.len();
                }
                Ok(Entry::Blank) => {
                    return Err(ReplicaAppendError::NotRecords {
                        offset: at,
                        reason: format!(
                            "a filler that ends at {} before the segment end {boundary}",
                            at + rest.len() as u64
                        ),
                    })
                }
                Err(e) => {
                    return Err(ReplicaAppendError::NotRecords {
                        offset: at,
                        reason: e.to_string(),
                    })
                }
            }
        }
        let needs_segment = w.active.as_ref().is_none_or(|s| s.is_full());
        if needs_segment {
            let base = offset;
            if let Some(s) = &w.active {
                debug_assert_eq!(s.end(), base);
            }
            self.roll_to(&mut w, base).map_err(|e| match e {
                super::RollError::Write(e) | super::RollError::Segment(e) => {
                    ReplicaAppendError::Write(e)
                }
            })?;
        }
        let seg = w.active.clone().expect("a segment at the offset");
        let pos = offset - seg.base();
        // Frames are large (up to the master's batch): one `pwrite` costs less than stores
        // through the mapping, which fault each page of a segment not yet warmed.
        seg.write_at(pos, data)
            .map_err(|e| ReplicaAppendError::Write(StoreError::io(seg.path(), e)))?;
        seg.publish(pos + data.len() as u64);
        for (topic, qid, qo, ts) in queues {
            let v = match w.queue_offsets.get_mut(topic) {
                Some(v) => v,
                None => w.queue_offsets.entry(topic.into()).or_default(),
            };
            let q = qid.max(0) as usize;
            if v.len() <= q {
                v.resize(q + 1, 0);
            }
            v[q] = v[q].max(qo + 1);
            w.last_store_ts = w.last_store_ts.max(ts);
        }
        self.max_offset
            .store(seg.base() + seg.wrote(), Ordering::Release);
        Ok(())
    }
}
