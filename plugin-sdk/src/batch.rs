//! Zero-copy decoder for batch encoding v1 (see the crate docs for the layout).
//!
//! Every length is checked against the bytes actually present before it is used, so a
//! malformed batch decodes to a [`DecodeError`], never to a panic, an out-of-bounds read or
//! an allocation sized by a number the peer declared.

use core::fmt;

/// Separates a property's name from its value in RocketMQ's stored properties.
pub const NAME_VALUE_SEPARATOR: u8 = 0x01;
/// Ends one property in RocketMQ's stored properties (may be missing after the last one).
pub const PROPERTY_SEPARATOR: u8 = 0x02;
/// The property holding a message's tag.
pub const PROPERTY_TAGS: &str = "TAGS";
/// The property holding a message's keys, separated by [`KEY_SEPARATOR`].
pub const PROPERTY_KEYS: &str = "KEYS";
/// Separates keys inside the `KEYS` property.
pub const KEY_SEPARATOR: char = ' ';

/// Bytes of a message's fixed fields after its `len` field: queue_offset, store_timestamp,
/// topic_len, props_len, body_len.
pub(crate) const FIXED_AFTER_LEN: usize = 8 + 8 + 2 + 4 + 4;
/// Smallest possible encoded message, `len` field included.
pub const MIN_MESSAGE_LEN: usize = 4 + FIXED_AFTER_LEN;

/// Why a batch could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The buffer ends inside a field or a declared length runs past the buffer.
    Truncated,
    /// `count` messages cannot fit in the buffer (each takes at least [`MIN_MESSAGE_LEN`]).
    CountTooLarge,
    /// A field's declared length runs past its message's `len`.
    FieldOverrunsMessage,
    /// The topic is not valid UTF-8.
    InvalidUtf8,
    /// Bytes remain after the `count`-th message.
    TrailingBytes,
}

/// A malformed batch: what is wrong and at which byte offset of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError {
    /// What is wrong.
    pub kind: DecodeErrorKind,
    /// Offset into the batch buffer of the field that is wrong.
    pub offset: usize,
}

impl DecodeError {
    fn new(kind: DecodeErrorKind, offset: usize) -> Self {
        DecodeError { kind, offset }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            DecodeErrorKind::Truncated => "batch truncated",
            DecodeErrorKind::CountTooLarge => "message count larger than the batch can hold",
            DecodeErrorKind::FieldOverrunsMessage => "field runs past its message length",
            DecodeErrorKind::InvalidUtf8 => "topic not valid UTF-8",
            DecodeErrorKind::TrailingBytes => "bytes after the last message",
        };
        write!(f, "{what} at byte {}", self.offset)
    }
}

impl std::error::Error for DecodeError {}

/// One message of a batch, borrowed from the batch buffer (nothing is copied or allocated).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    queue_offset: i64,
    store_timestamp: i64,
    topic: &'a str,
    props: &'a [u8],
    body: &'a [u8],
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("queue_offset", &self.queue_offset)
            .field("store_timestamp", &self.store_timestamp)
            .field("topic", &self.topic)
            .field("properties", &DebugProps(*self))
            .field("body_len", &self.body.len())
            .finish()
    }
}

struct DebugProps<'a>(Message<'a>);

impl fmt::Debug for DebugProps<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.properties()).finish()
    }
}

impl<'a> Message<'a> {
    /// Builds a view from parts (for tests and for hosts that hold messages decoded already).
    /// `props` is RocketMQ's stored form: `name \x01 value \x02` repeated.
    pub fn from_parts(
        queue_offset: i64,
        store_timestamp: i64,
        topic: &'a str,
        props: &'a [u8],
        body: &'a [u8],
    ) -> Self {
        Message {
            queue_offset,
            store_timestamp,
            topic,
            props,
            body,
        }
    }

    /// The topic the message was stored under (for routers: the topic the client sent it to;
    /// for transaction checkers: its real topic).
    #[inline]
    pub fn topic(&self) -> &'a str {
        self.topic
    }

    /// The message's offset in its consume queue. For routers this field carries the
    /// client's queue id instead: read it with [`Message::client_queue_id`].
    #[inline]
    pub fn queue_offset(&self) -> i64 {
        self.queue_offset
    }

    /// When the broker stored the message (milliseconds since the Unix epoch). For routers
    /// this field carries the client's born timestamp: read it with
    /// [`Message::born_timestamp`].
    #[inline]
    pub fn store_timestamp(&self) -> i64 {
        self.store_timestamp
    }

    /// For routers: the queue id the client chose for the message, carried in the
    /// `queue_offset` field (a message being routed is not stored yet, so it has no offset).
    /// `None` when that field does not hold a `u32`. Meaningless for filters and
    /// transaction checkers, whose `queue_offset` is an offset.
    #[inline]
    pub fn client_queue_id(&self) -> Option<u32> {
        u32::try_from(self.queue_offset).ok()
    }

    /// For routers: when the client created the message (milliseconds since the Unix epoch,
    /// by the client's clock), carried in the `store_timestamp` field. Meaningless for
    /// filters and transaction checkers, whose `store_timestamp` is the store time.
    #[inline]
    pub fn born_timestamp(&self) -> i64 {
        self.store_timestamp
    }

    /// The `TAGS` property.
    #[inline]
    pub fn tags(&self) -> Option<&'a str> {
        self.property(PROPERTY_TAGS)
    }

    /// The keys in the `KEYS` property (space-separated; empty items skipped).
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.property(PROPERTY_KEYS)
            .unwrap_or("")
            .split(KEY_SEPARATOR)
            .filter(|k| !k.is_empty())
    }

    /// The value of property `name`, by a linear scan of the stored properties (no allocation,
    /// eight candidate positions per step).
    ///
    /// Follows RocketMQ's reading of the stored form: an item without `\x01`, with an empty name
    /// or with an empty value is not a property; the value runs from the first `\x01` to the
    /// next `\x02` (or the end). Names are unique in what RocketMQ stores; should one repeat,
    /// the first occurrence is returned. A value that is not valid UTF-8 reads as absent.
    pub fn property(&self, name: &str) -> Option<&'a str> {
        let name = name.as_bytes();
        if name.is_empty() || find_separator(name).is_some() {
            return None;
        }
        // A property starts where `name` is followed by \x01 and preceded by \x02 (or the
        // start). Candidates are found a word at a time by testing two bytes per position:
        // the name's first byte at `i` and the \x01 at `i + name.len()`.
        let props = self.props;
        let n = name.len();
        let first = LO * u64::from(name[0]);
        let separator = LO * u64::from(NAME_VALUE_SEPARATOR);
        let mut i = 0;
        while i + n + 8 <= props.len() {
            let a = read_word(props, i) ^ first;
            let b = read_word(props, i + n) ^ separator;
            let mut candidates = zero_bytes(a | b);
            while candidates != 0 {
                let at = i + (candidates.trailing_zeros() / 8) as usize;
                if let Some(value) = self.value_at(at, name) {
                    return value;
                }
                candidates &= candidates - 1;
            }
            i += 8;
        }
        while i + n < props.len() {
            if props[i] == name[0] && props[i + n] == NAME_VALUE_SEPARATOR {
                if let Some(value) = self.value_at(i, name) {
                    return value;
                }
            }
            i += 1;
        }
        None
    }

    /// If property `name` starts at `at` and has a value: `Some(value)` (`Some(None)` when
    /// the value is not UTF-8). `None` when no property with a value starts there.
    #[inline]
    fn value_at(&self, at: usize, name: &[u8]) -> Option<Option<&'a str>> {
        let props = self.props;
        if at > 0 && props[at - 1] != PROPERTY_SEPARATOR {
            return None;
        }
        let rest = &props[at..];
        if rest.get(name.len()) != Some(&NAME_VALUE_SEPARATOR) || !rest.starts_with(name) {
            return None;
        }
        let value = &rest[name.len() + 1..];
        let value = &value[..find_byte(value, PROPERTY_SEPARATOR).unwrap_or(value.len())];
        if value.is_empty() {
            return None;
        }
        Some(core::str::from_utf8(value).ok())
    }

    /// All properties as `(name, value)`, in stored order (see [`Message::property`] for what
    /// counts as a property).
    pub fn properties(&self) -> Properties<'a> {
        Properties { rest: self.props }
    }

    /// The stored properties, as in the commit log: `name \x01 value \x02` repeated.
    #[inline]
    pub fn raw_properties(&self) -> &'a [u8] {
        self.props
    }

    /// The body; empty when the compiled expression (or the router) said it does not need
    /// bodies.
    #[inline]
    pub fn body(&self) -> &'a [u8] {
        self.body
    }
}

/// Iterator over a message's properties; see [`Message::properties`]. Items whose name or
/// value is not valid UTF-8 are skipped.
#[derive(Clone, Debug)]
pub struct Properties<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Properties<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let end = find_byte(self.rest, PROPERTY_SEPARATOR).unwrap_or(self.rest.len());
            let item = &self.rest[..end];
            self.rest = &self.rest[(end + 1).min(self.rest.len())..];
            let Some(split) = find_byte(item, NAME_VALUE_SEPARATOR) else {
                continue;
            };
            let (name, value) = (&item[..split], &item[split + 1..]);
            if name.is_empty() || value.is_empty() {
                continue;
            }
            if let (Ok(name), Ok(value)) = (core::str::from_utf8(name), core::str::from_utf8(value))
            {
                return Some((name, value));
            }
        }
        None
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of every zero byte of `w` is set in the result. A byte just above a zero byte
/// may be flagged too (a borrow), never one below: the lowest flag is always a zero byte, and
/// callers verify the others.
#[inline(always)]
fn zero_bytes(w: u64) -> u64 {
    w.wrapping_sub(LO) & !w & HI
}

/// Little-endian word at `at`; callers guarantee `at + 8 <= bytes.len()`.
#[inline(always)]
fn read_word(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Position of the first `needle` in `haystack`, eight bytes at a time (wasm has 64-bit
/// integers but, without simd128, no wider registers).
#[inline]
fn find_byte(haystack: &[u8], needle: u8) -> Option<usize> {
    let repeated = LO * u64::from(needle);
    let mut chunks = haystack.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let word = read_word(chunk, 0);
        let zeros = zero_bytes(word ^ repeated);
        if zeros != 0 {
            return Some(at + (zeros.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|i| at + i)
}

/// Whether `bytes` holds either property separator.
fn find_separator(bytes: &[u8]) -> Option<usize> {
    bytes
        .iter()
        .position(|&b| b == NAME_VALUE_SEPARATOR || b == PROPERTY_SEPARATOR)
}

/// A batch being decoded: an iterator over its messages.
///
/// Yields `Ok(message)` for each of the `count` messages, then, if bytes remain after them,
/// one `Err(TrailingBytes)`. After any error it yields nothing more.
#[derive(Clone, Debug)]
pub struct Batch<'a> {
    buf: &'a [u8],
    pos: usize,
    count: u32,
    decoded: u32,
    done: bool,
}

impl<'a> Batch<'a> {
    /// Reads the batch header. Fails when the buffer is shorter than the header or when
    /// `count` messages could not possibly fit in it.
    pub fn new(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let count = read_u32(buf, 0)?;
        let room = (buf.len() - 4) / MIN_MESSAGE_LEN;
        if count as usize > room {
            return Err(DecodeError::new(DecodeErrorKind::CountTooLarge, 0));
        }
        Ok(Batch {
            buf,
            pos: 4,
            count,
            decoded: 0,
            done: false,
        })
    }

    /// The number of messages the header declares (bounded by the buffer size).
    #[inline]
    pub fn message_count(&self) -> u32 {
        self.count
    }

    /// Decodes every message, failing on the first error.
    pub fn collect_all(self) -> Result<Vec<Message<'a>>, DecodeError> {
        self.collect()
    }

    fn decode_next(&mut self) -> Result<Message<'a>, DecodeError> {
        let start = self.pos;
        let error = |kind| DecodeError::new(kind, start);
        let (len, rest) = self.buf[start..]
            .split_first_chunk::<4>()
            .ok_or(error(DecodeErrorKind::Truncated))?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > rest.len() {
            return Err(error(DecodeErrorKind::Truncated));
        }
        // From here on every field is cut from `msg`, whose length was just checked, with
        // fixed-size splits the compiler sees through.
        let msg = &rest[..len];
        let overrun = || error(DecodeErrorKind::FieldOverrunsMessage);
        let (fixed, rest) = msg.split_first_chunk::<18>().ok_or_else(overrun)?;
        let (queue_offset, fixed) = fixed.split_first_chunk::<8>().ok_or_else(overrun)?;
        let (store_timestamp, topic_len) = fixed.split_first_chunk::<8>().ok_or_else(overrun)?;
        let topic_len = u16::from_le_bytes(topic_len.first_chunk().copied().ok_or_else(overrun)?);
        let (topic, rest) = split(rest, topic_len as usize).ok_or_else(overrun)?;
        let (props_len, rest) = rest.split_first_chunk::<4>().ok_or_else(overrun)?;
        let (props, rest) =
            split(rest, u32::from_le_bytes(*props_len) as usize).ok_or_else(overrun)?;
        let (body_len, rest) = rest.split_first_chunk::<4>().ok_or_else(overrun)?;
        // Whatever follows the body up to the end of the message is reserved for fields of
        // later minor versions.
        let (body, _reserved) =
            split(rest, u32::from_le_bytes(*body_len) as usize).ok_or_else(overrun)?;
        // Properties are checked for UTF-8 lazily, value by value, as they are read: checking
        // all of them here would cost more than most filters spend on a message.
        let topic = utf8(topic).ok_or(error(DecodeErrorKind::InvalidUtf8))?;
        self.pos = start + 4 + len;
        Ok(Message {
            queue_offset: i64::from_le_bytes(*queue_offset),
            store_timestamp: i64::from_le_bytes(*store_timestamp),
            topic,
            props,
            body,
        })
    }
}

impl<'a> Iterator for Batch<'a> {
    type Item = Result<Message<'a>, DecodeError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.decoded == self.count {
            self.done = true;
            if self.pos != self.buf.len() {
                return Some(Err(DecodeError::new(
                    DecodeErrorKind::TrailingBytes,
                    self.pos,
                )));
            }
            return None;
        }
        let item = self.decode_next();
        match item {
            Ok(_) => self.decoded += 1,
            Err(_) => self.done = true,
        }
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            return (0, Some(0));
        }
        let left = (self.count - self.decoded) as usize;
        (0, Some(left + 1))
    }
}

impl core::iter::FusedIterator for Batch<'_> {}

/// `bytes` split after `len` bytes, if it has that many.
#[inline(always)]
fn split(bytes: &[u8], len: usize) -> Option<(&[u8], &[u8])> {
    (len <= bytes.len()).then(|| bytes.split_at(len))
}

/// `bytes` as UTF-8. Topics are ASCII in practice, and checking that is far cheaper than
/// `str::from_utf8` on short strings (a few wasm instructions instead of ~200).
#[inline]
fn utf8(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        return Some(unsafe { core::str::from_utf8_unchecked(bytes) });
    }
    core::str::from_utf8(bytes).ok()
}

#[inline]
fn read_u32(buf: &[u8], at: usize) -> Result<u32, DecodeError> {
    buf.get(at..)
        .and_then(|rest| rest.first_chunk::<4>())
        .map(|bytes| u32::from_le_bytes(*bytes))
        .ok_or(DecodeError::new(DecodeErrorKind::Truncated, at))
}
