//! Which offsets a `bench consume` connection pulls next, with several pulls in flight.
//!
//! Each queue's backlog is the offset range [min, max) read when the run starts. A pull asks for
//! a range [from, from + len) of one queue (`maxMsgNums` = len); ranges handed out never overlap,
//! so pulls in flight may go to different queues or to consecutive ranges of one queue. A reply
//! covers [from, nextBeginOffset): only messages whose queue offset lies there are counted (so no
//! message is counted twice), and what the broker did not return (its per-pull caps) becomes a
//! gap that is pulled again before new ranges. A range whose messages are gone (deleted by
//! retention) is dropped and its claim given back to the [`Budget`](super::budget::Budget).

/// One pull to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pull {
    /// Index of the queue in the plan.
    pub slot: usize,
    pub queue: i32,
    pub from: i64,
    pub len: u32,
}

impl Pull {
    pub fn end(&self) -> i64 {
        self.from + self.len as i64
    }

    /// Whether a returned message at `offset` belongs to this pull's reply covering
    /// [from, next_begin): the only messages a pull may count.
    pub fn counts(&self, offset: i64, next_begin: i64) -> bool {
        offset >= self.from && offset < self.end().min(next_begin)
    }
}

/// How a pull ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Messages (none or some) up to `next_begin` were returned.
    Got { next_begin: i64 },
    /// Nothing there: the range is gone up to `next_begin` (all of it when `None`).
    Gone { next_begin: Option<i64> },
}

struct QueueRange {
    queue: i32,
    /// First offset not yet handed out.
    next: i64,
    /// The queue's max offset when the run started: nothing at or past it is pulled.
    end: i64,
    /// Ranges handed out that the broker did not return in full, to pull again.
    gaps: Vec<(i64, i64)>,
    outstanding: usize,
}

impl QueueRange {
    fn has_work(&self) -> bool {
        !self.gaps.is_empty() || self.next < self.end
    }
}

/// The pulls of one connection.
pub struct Plan {
    queues: Vec<QueueRange>,
    batch: u32,
    rr: usize,
    outstanding: usize,
}

impl Plan {
    /// `queues`: (queue id, first offset, max offset) each; `batch`: most messages per pull.
    pub fn new(queues: Vec<(i32, i64, i64)>, batch: u32) -> Plan {
        Plan {
            queues: queues
                .into_iter()
                .map(|(queue, min, max)| QueueRange {
                    queue,
                    next: min,
                    end: max.max(min),
                    gaps: Vec::new(),
                    outstanding: 0,
                })
                .collect(),
            batch: batch.max(1),
            rr: 0,
            outstanding: 0,
        }
    }

    /// Pulls in flight.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// The next pull: a gap first, else the next range of the queue with the fewest pulls in
    /// flight (round robin among equals). `claim(n)` grants up to `n` messages of the run's
    /// budget (a gap was claimed when first handed out). `None`: nothing to pull now.
    pub fn next(&mut self, claim: impl FnOnce(u64) -> u64) -> Option<Pull> {
        let n = self.queues.len();
        let slot = (0..n)
            .map(|i| (self.rr + i) % n)
            .filter(|&i| self.queues[i].has_work())
            .min_by_key(|&i| (self.queues[i].gaps.is_empty(), self.queues[i].outstanding))?;
        self.rr = (slot + 1) % n;
        let q = &mut self.queues[slot];
        let (from, len) = if let Some((from, end)) = q.gaps.pop() {
            (from, (end - from) as u32)
        } else {
            let want = (q.end - q.next).min(self.batch as i64) as u64;
            let got = claim(want);
            if got == 0 {
                return None;
            }
            let from = q.next;
            q.next += got as i64;
            (from, got as u32)
        };
        q.outstanding += 1;
        self.outstanding += 1;
        Some(Pull {
            slot,
            queue: q.queue,
            from,
            len,
        })
    }

    /// Records how `pull` ended; returns the messages of its claim to give back (a range that
    /// is gone). What the reply did not cover is pulled again.
    pub fn finished(&mut self, pull: &Pull, outcome: Outcome) -> u64 {
        let q = &mut self.queues[pull.slot];
        q.outstanding -= 1;
        self.outstanding -= 1;
        let end = pull.end();
        match outcome {
            Outcome::Got { next_begin } if next_begin > pull.from => {
                if next_begin < end {
                    q.gaps.push((next_begin, end));
                }
                0
            }
            // No progress at all: drop the range rather than ask for it forever.
            Outcome::Got { .. } | Outcome::Gone { next_begin: None } => pull.len as u64,
            Outcome::Gone {
                next_begin: Some(n),
            } => {
                if n > pull.from && n < end {
                    q.gaps.push((n, end));
                    (n - pull.from) as u64
                } else {
                    pull.len as u64
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(n: u64) -> impl FnOnce(u64) -> u64 {
        move |w| w.min(n)
    }

    #[test]
    fn ranges_in_flight_never_overlap_and_cover_the_backlog() {
        // One queue, four pulls in flight: consecutive ranges.
        let mut p = Plan::new(vec![(0, 10, 110)], 32);
        let pulls: Vec<Pull> = (0..4).filter_map(|_| p.next(all(u64::MAX))).collect();
        let ranges: Vec<(i64, u32)> = pulls.iter().map(|x| (x.from, x.len)).collect();
        assert_eq!(ranges, vec![(10, 32), (42, 32), (74, 32), (106, 4)]);
        assert!(p.next(all(u64::MAX)).is_none());
        assert_eq!(p.outstanding(), 4);
        // The broker capped the second pull at 20: the rest is pulled again, once.
        assert_eq!(p.finished(&pulls[1], Outcome::Got { next_begin: 62 }), 0);
        let again = p.next(all(u64::MAX)).unwrap();
        assert_eq!((again.from, again.len), (62, 12));
        for x in [pulls[0], pulls[2], pulls[3], again] {
            p.finished(
                &x,
                Outcome::Got {
                    next_begin: x.end(),
                },
            );
        }
        assert_eq!(p.outstanding(), 0);
        assert!(p.next(all(u64::MAX)).is_none());
    }

    #[test]
    fn pulls_spread_over_queues_before_stacking_on_one() {
        let mut p = Plan::new(vec![(0, 0, 100), (1, 0, 100), (2, 0, 100)], 10);
        let qs: Vec<i32> = (0..6)
            .map(|_| p.next(all(u64::MAX)).unwrap().queue)
            .collect();
        assert_eq!(qs, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn only_offsets_inside_the_reply_count() {
        let x = Pull {
            slot: 0,
            queue: 0,
            from: 100,
            len: 10,
        };
        assert!(!x.counts(99, 110));
        assert!(x.counts(100, 110) && x.counts(109, 110));
        assert!(!x.counts(110, 120));
        // Capped reply: past next_begin belongs to the gap's pull.
        assert!(!x.counts(105, 105));
    }

    #[test]
    fn the_budget_limits_ranges_and_gone_ranges_give_it_back() {
        let mut p = Plan::new(vec![(0, 0, 1000)], 64);
        let mut left = 100u64;
        let mut claim = |w: u64| {
            let t = w.min(left);
            left -= t;
            t
        };
        let a = p.next(&mut claim).unwrap();
        let b = p.next(&mut claim).unwrap();
        assert_eq!((a.len, b.len), (64, 36));
        assert!(p.next(&mut claim).is_none());
        // Retention removed up to 80: 16 of b's 36 are gone, the rest is pulled again.
        assert_eq!(
            p.finished(
                &b,
                Outcome::Gone {
                    next_begin: Some(80)
                }
            ),
            16
        );
        let c = p.next(&mut claim).unwrap();
        assert_eq!((c.from, c.len), (80, 20));
        assert_eq!(p.finished(&a, Outcome::Got { next_begin: 64 }), 0);
        assert_eq!(p.finished(&c, Outcome::Gone { next_begin: None }), 20);
        assert_eq!(p.outstanding(), 0);
    }

    #[test]
    fn an_empty_queue_is_never_pulled() {
        let mut p = Plan::new(vec![(0, 5, 5), (1, 7, 3)], 32);
        assert!(p.next(all(u64::MAX)).is_none());
    }
}
