//! The result of `evaluate`: one bit per message.

/// Bytes needed for `count` match bits: `ceil(count / 8)`.
#[inline]
pub const fn bitset_len(count: usize) -> usize {
    count.div_ceil(8)
}

/// Match bits for a batch: bit `i` is byte `i / 8`, bit `i % 8`, least significant first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchBits {
    bytes: Vec<u8>,
    count: usize,
}

impl MatchBits {
    /// `count` bits, all clear.
    pub fn new(count: usize) -> Self {
        MatchBits {
            bytes: vec![0; bitset_len(count)],
            count,
        }
    }

    /// Reads bits returned by a plugin; `None` when `bytes` is not exactly `bitset_len(count)`
    /// long (which the host counts as a bad result).
    pub fn from_bytes(bytes: Vec<u8>, count: usize) -> Option<Self> {
        (bytes.len() == bitset_len(count)).then_some(MatchBits { bytes, count })
    }

    /// Number of messages covered.
    #[inline]
    pub fn count(&self) -> usize {
        self.count
    }

    /// Marks message `i` as matching.
    ///
    /// # Panics
    /// When `i >= count`.
    #[inline]
    pub fn set(&mut self, i: usize) {
        assert!(i < self.count, "bit {i} out of {}", self.count);
        self.bytes[i / 8] |= 1 << (i % 8);
    }

    /// Whether message `i` matches (`false` past the end).
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        i < self.count && self.bytes[i / 8] & (1 << (i % 8)) != 0
    }

    /// Indexes of matching messages, ascending.
    pub fn iter_set(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.count).filter(|&i| self.get(i))
    }

    /// The bytes to return from `evaluate`.
    #[inline]
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The bytes, borrowed.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}
