//! The messages a bench run may still send or pull (`--count`), shared by every connection:
//! a request claims its messages before it is sent, so a run never goes past `--count`, however
//! many requests are in flight.

use std::sync::atomic::{AtomicU64, Ordering};

pub struct Budget {
    left: AtomicU64,
}

impl Budget {
    /// `None`: unbounded (the run ends by time or by running out of work).
    pub fn new(count: Option<u64>) -> Budget {
        Budget {
            left: AtomicU64::new(count.unwrap_or(u64::MAX)),
        }
    }

    /// Takes up to `want` messages; 0 once nothing is left.
    pub fn claim(&self, want: u64) -> u64 {
        let mut left = self.left.load(Ordering::Relaxed);
        loop {
            let take = want.min(left);
            if take == 0 {
                return 0;
            }
            match self.left.compare_exchange_weak(
                left,
                left - take,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return take,
                Err(now) => left = now,
            }
        }
    }

    /// Gives back messages a request claimed but did not use.
    pub fn release(&self, n: u64) {
        if n > 0 {
            self.left.fetch_add(n, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_never_exceed_the_count() {
        let b = Budget::new(Some(10));
        assert_eq!(b.claim(4), 4);
        assert_eq!(b.claim(4), 4);
        assert_eq!(b.claim(4), 2);
        assert_eq!(b.claim(4), 0);
        b.release(3);
        assert_eq!(b.claim(64), 3);
        assert_eq!(Budget::new(None).claim(1 << 40), 1 << 40);
    }

    #[test]
    fn concurrent_claims_add_up_to_the_count() {
        let b = std::sync::Arc::new(Budget::new(Some(100_003)));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    let mut got = 0;
                    loop {
                        match b.claim(7) {
                            0 => return got,
                            n => got += n,
                        }
                    }
                })
            })
            .collect();
        let total: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 100_003);
    }
}
