//! The timer's persisted state: which timer-queue entries were delivered, as a bitmap from a
//! low-water mark on (`config/timer.bits`). The timer task (`crate::timer`) reads and sets it.

use parking_lot::Mutex;

/// Delivered flags from the low-water mark on (bit i = entry `low + i`).
pub struct Delivered {
    low: u64,
    bits: Vec<u64>,
    dirty: bool,
}

impl Delivered {
    /// Entries below this are all delivered.
    pub fn low(&self) -> u64 {
        self.low
    }

    pub fn is_set(&self, off: u64) -> bool {
        if off < self.low {
            return true;
        }
        let i = (off - self.low) as usize;
        self.bits
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn set(&mut self, off: u64) {
        if off < self.low {
            return;
        }
        let i = (off - self.low) as usize;
        if self.bits.len() <= i / 64 {
            self.bits.resize(i / 64 + 1, 0);
        }
        self.bits[i / 64] |= 1 << (i % 64);
        // Advance the low-water mark over whole delivered words.
        let full = self.bits.iter().take_while(|w| **w == u64::MAX).count();
        if full > 0 {
            self.bits.drain(..full);
            self.low += full as u64 * 64;
        }
        self.dirty = true;
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + self.bits.len() * 8);
        v.extend_from_slice(&self.low.to_be_bytes());
        for w in &self.bits {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v
    }

    fn decode(b: &[u8]) -> Option<Delivered> {
        if b.len() < 8 || (b.len() - 8) % 8 != 0 {
            return None;
        }
        let word = |c: &[u8]| u64::from_be_bytes(c.try_into().unwrap_or([0; 8]));
        Some(Delivered {
            low: word(&b[..8]),
            bits: b[8..].chunks_exact(8).map(word).collect(),
            dirty: false,
        })
    }
}

pub struct TimerState {
    path: std::path::PathBuf,
    delivered: Mutex<Delivered>,
}

impl TimerState {
    pub fn open(dir: &std::path::Path) -> TimerState {
        let path = dir.join("timer.bits");
        let delivered = std::fs::read(&path)
            .ok()
            .and_then(|b| Delivered::decode(&b))
            .unwrap_or(Delivered {
                low: 0,
                bits: Vec::new(),
                dirty: false,
            });
        TimerState {
            path,
            delivered: Mutex::new(delivered),
        }
    }

    pub fn persist(&self) -> Result<(), crate::store::StoreError> {
        let bytes = {
            let mut d = self.delivered.lock();
            if !d.dirty {
                return Ok(());
            }
            d.dirty = false;
            d.encode()
        };
        crate::store::checkpoint::write_atomically(&self.path, &bytes)
    }

    /// Entries not yet delivered start here.
    pub fn low_water(&self) -> u64 {
        self.delivered.lock().low
    }

    /// Bytes of delivered flags held (for the memory figures).
    pub fn bitmap_bytes(&self) -> usize {
        self.delivered.lock().bits.len() * 8
    }

    /// The delivered flags (the timer task reads and sets them under this lock).
    pub fn delivered(&self) -> parking_lot::MutexGuard<'_, Delivered> {
        self.delivered.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_bitmap_advances_and_round_trips() {
        let mut d = Delivered {
            low: 0,
            bits: Vec::new(),
            dirty: false,
        };
        for off in (0..200).rev() {
            if off != 70 {
                d.set(off);
            }
        }
        assert_eq!(
            d.low, 64,
            "the first word is complete; 70 is missing from the second"
        );
        assert!(d.is_set(10) && d.is_set(150) && !d.is_set(70) && !d.is_set(300));
        let back = Delivered::decode(&d.encode()).unwrap();
        assert_eq!((back.low, back.bits.clone()), (d.low, d.bits.clone()));
        d.set(70);
        assert_eq!(d.low, 192);
    }
}
