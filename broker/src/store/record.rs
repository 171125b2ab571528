//! The stored-message record: RocketMQ's on-disk layout (magic V1), which is also what a PULL
//! reply carries, so reads copy stored bytes without re-encoding.
//!
//! ```text
//! off size field                      off  size field
//!   0   4  total_size                  48 8|20 born_host (ipv4+port | ipv6+port)
//!   4   4  magic (V1)                   .    8  store_timestamp
//!   8   4  body_crc (crc32 & 0x7fff..)  .  8|20 store_host
//!  12   4  queue_id                     .    4  reconsume_times
//!  16   4  flag                         .    8  prepared_transaction_offset
//!  20   8  queue_offset                 .  4+n  body_len + body
//!  28   8  physical_offset              .  1+n  topic_len (i8) + topic
//!  36   4  sysflag                      .  2+n  properties_len (i16) + properties
//!  40   8  born_timestamp
//! ```
//! A segment ends with a blank record (`total_size`, [`BLANK_MAGIC`]) when the next record does
//! not fit. The writer stores `total_size` last, so a record torn by a crash has size 0.
//!
//! RocketMQ's body CRC covers only the body. So that recovery can tell a complete record from a
//! torn or garbage-filled one, the store ends every record's properties with a whole-record
//! checksum property, as RocketMQ 5 does with `enabledAppendPropCRC`:
//! `__CRC32#` 0x01 ten decimal digits 0x02, the CRC32 of the record from the magic up to the
//! digits. Clients see it as one more property.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Magic of a V1 record (1-byte topic length).
pub const MAGIC_V1: i32 = -626843481; // 0xDAA320A7
/// Magic of the filler that closes a segment whose remaining space is too small.
pub const BLANK_MAGIC: i32 = -875286124; // 0xCBD43194
/// Smallest space a blank filler needs (total size + magic).
pub const BLANK_MIN: usize = 8;

pub const SYSFLAG_COMPRESSED: i32 = 0x1;
pub const SYSFLAG_MULTI_TAGS: i32 = 0x2;
pub const SYSFLAG_TXN_MASK: i32 = 0xC;
pub const SYSFLAG_TXN_PREPARED: i32 = 0x4;
pub const SYSFLAG_TXN_COMMIT: i32 = 0x8;
pub const SYSFLAG_TXN_ROLLBACK: i32 = 0xC;
pub const SYSFLAG_BORNHOST_V6: i32 = 0x10;
pub const SYSFLAG_STOREHOST_V6: i32 = 0x20;

/// Longest topic a V1 record can carry (i8 length).
pub const MAX_TOPIC_LEN: usize = 127;

/// Name of the whole-record checksum property (RocketMQ's `MessageConst.PROPERTY_CRC32`).
pub const CRC_PROPERTY: &str = "__CRC32#";
/// `__CRC32#` 0x01 + 10 digits + 0x02.
pub const CRC_TRAILER_LEN: usize = 8 + 1 + 10 + 1;

/// Stored length of `props`: a missing final separator is added, then the checksum trailer.
fn stored_props_len(props: &str) -> usize {
    let sep = usize::from(!props.is_empty() && !props.ends_with('\u{2}'));
    props.len() + sep + CRC_TRAILER_LEN
}

const OFF_QUEUE_OFFSET: usize = 20;
const OFF_PHYS_OFFSET: usize = 28;
const OFF_SYSFLAG: usize = 36;
const OFF_BORN_TS: usize = 40;
const OFF_BORN_HOST: usize = 48;

/// What a producer hands the store for one message. The store fills in queue offset, physical
/// offset, store timestamp and store host.
#[derive(Debug, Clone, Copy)]
pub struct MessageInput<'a> {
    pub topic: &'a str,
    pub queue_id: i32,
    pub flag: i32,
    pub sysflag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: &'a [u8],
    /// `key 0x01 value 0x02 ...`
    pub properties: &'a str,
}

/// Why a message cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("topic is empty")]
    EmptyTopic,
    #[error("topic is {0} bytes, the limit is {MAX_TOPIC_LEN}")]
    TopicTooLong(usize),
    #[error("topic contains a control character")]
    TopicInvalid,
    #[error("body is {len} bytes, the limit is {max}")]
    BodyTooLarge { len: usize, max: usize },
    #[error("properties are {len} bytes, the limit is {max}")]
    PropertiesTooLarge { len: usize, max: usize },
    #[error("queue id {0} is negative")]
    NegativeQueueId(i32),
}

/// Body CRC as RocketMQ stores it: crc32 (IEEE) with the sign bit cleared.
pub fn body_crc(body: &[u8]) -> i32 {
    (crc32fast::hash(body) & 0x7FFF_FFFF) as i32
}

/// Java `String.hashCode` of a tag, as consume queues store it (sign-extended to i64).
pub fn tag_hash(tag: &str) -> i64 {
    let mut h: i32 = 0;
    for unit in tag.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    h as i64
}

fn host_len(addr: &SocketAddr) -> usize {
    match addr.ip() {
        IpAddr::V4(_) => 8,
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => 8,
        IpAddr::V6(_) => 20,
    }
}

fn is_v6(addr: &SocketAddr) -> bool {
    host_len(addr) == 20
}

/// Size of the encoded record for `msg` with the given store host.
pub fn encoded_len(msg: &MessageInput<'_>, store_host: &SocketAddr) -> usize {
    4 + 4
        + 4
        + 4
        + 4
        + 8
        + 8
        + 4
        + 8
        + host_len(&msg.born_host)
        + 8
        + host_len(store_host)
        + 4
        + 8
        + 4
        + msg.body.len()
        + 1
        + msg.topic.len()
        + 2
        + stored_props_len(msg.properties)
}

/// Checks the message against the format's and the configuration's limits.
pub fn validate(
    msg: &MessageInput<'_>,
    max_body: usize,
    max_props: usize,
) -> Result<(), RecordError> {
    if msg.topic.is_empty() {
        return Err(RecordError::EmptyTopic);
    }
    if msg.topic.len() > MAX_TOPIC_LEN {
        return Err(RecordError::TopicTooLong(msg.topic.len()));
    }
    if msg.topic.bytes().any(|b| b < 0x20) {
        return Err(RecordError::TopicInvalid);
    }
    if msg.body.len() > max_body {
        return Err(RecordError::BodyTooLarge {
            len: msg.body.len(),
            max: max_body,
        });
    }
    if stored_props_len(msg.properties) > max_props.min(i16::MAX as usize) {
        return Err(RecordError::PropertiesTooLarge {
            len: msg.properties.len(),
            max: max_props,
        });
    }
    if msg.queue_id < 0 {
        return Err(RecordError::NegativeQueueId(msg.queue_id));
    }
    Ok(())
}

/// Fields the store assigns while appending.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    pub queue_offset: i64,
    pub physical_offset: i64,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub body_crc: i32,
}

struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }
    fn i32(&mut self, v: i32) {
        self.put(&v.to_be_bytes())
    }
    fn i64(&mut self, v: i64) {
        self.put(&v.to_be_bytes())
    }
    fn host(&mut self, addr: &SocketAddr) {
        match addr.ip() {
            IpAddr::V4(v4) => self.put(&v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.put(&v4.octets()),
                None => self.put(&v6.octets()),
            },
        }
        self.i32(addr.port() as i32);
    }
}

/// Encodes `msg` into `buf`, which must be exactly [`encoded_len`] bytes. The total-size field
/// is written last, so a reader (or recovery after a crash) never sees a half-written record
/// with a plausible size. The message must have passed [`validate`].
pub fn encode_into(buf: &mut [u8], msg: &MessageInput<'_>, at: &Placement) {
    let total = buf.len();
    let mut sysflag = msg.sysflag & !(SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6);
    if is_v6(&msg.born_host) {
        sysflag |= SYSFLAG_BORNHOST_V6;
    }
    if is_v6(&at.store_host) {
        sysflag |= SYSFLAG_STOREHOST_V6;
    }
    let mut w = Writer { buf, pos: 4 };
    w.i32(MAGIC_V1);
    w.i32(at.body_crc);
    w.i32(msg.queue_id);
    w.i32(msg.flag);
    w.i64(at.queue_offset);
    w.i64(at.physical_offset);
    w.i32(sysflag);
    w.i64(msg.born_timestamp);
    w.host(&msg.born_host);
    w.i64(at.store_timestamp);
    w.host(&at.store_host);
    w.i32(msg.reconsume_times);
    w.i64(msg.prepared_transaction_offset);
    w.i32(msg.body.len() as i32);
    w.put(msg.body);
    w.put(&[msg.topic.len() as u8]);
    w.put(msg.topic.as_bytes());
    w.put(&(stored_props_len(msg.properties) as i16).to_be_bytes());
    w.put(msg.properties.as_bytes());
    if !msg.properties.is_empty() && !msg.properties.ends_with('\u{2}') {
        w.put(&[2]);
    }
    w.put(CRC_PROPERTY.as_bytes());
    w.put(&[1]);
    let crc = crc32fast::hash(&w.buf[4..w.pos]);
    let mut digits = [b'0'; 10];
    let mut v = crc;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    w.put(&digits);
    w.put(&[2]);
    debug_assert_eq!(w.pos, total);
    std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
    w.buf[0..4].copy_from_slice(&(total as i32).to_be_bytes());
}

/// Encodes into a fresh vector (tests, tools).
pub fn encode(msg: &MessageInput<'_>, at: &Placement) -> Vec<u8> {
    let mut v = vec![0u8; encoded_len(msg, &at.store_host)];
    encode_into(&mut v, msg, at);
    v
}

/// Why bytes at a position are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("bad magic {0:#x}")]
    BadMagic(i32),
    #[error("bad total size {0}")]
    BadSize(i32),
    #[error("field lengths disagree with total size {total} (computed {computed})")]
    SizeMismatch { total: usize, computed: usize },
    #[error("body crc mismatch: stored {stored}, computed {computed}")]
    Crc { stored: i32, computed: i32 },
    #[error("physical offset field {field} does not match position {position}")]
    WrongPosition { field: i64, position: i64 },
    #[error("malformed topic or properties")]
    Malformed,
    #[error("record checksum property missing")]
    MissingRecordCrc,
    #[error("record checksum mismatch: stored {stored}, computed {computed}")]
    RecordCrc { stored: u32, computed: u32 },
}

/// What sits at a position of the log.
#[derive(Debug)]
pub enum Entry<'a> {
    Record(RecordView<'a>),
    /// End-of-segment filler: skip to the next segment.
    Blank,
}

/// A borrowed, validated view of one stored record.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub bytes: &'a [u8],
    body_start: usize,
    body_len: usize,
    topic_start: usize,
    topic_len: usize,
    props_start: usize,
    props_len: usize,
    store_ts_off: usize,
    reconsume_off: usize,
}

fn be_i32(b: &[u8], off: usize) -> i32 {
    i32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn be_i64(b: &[u8], off: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    i64::from_be_bytes(a)
}

/// Reads the total-size field, if 4 bytes are there.
pub fn peek_size(buf: &[u8]) -> Option<i32> {
    (buf.len() >= 4).then(|| be_i32(buf, 0))
}

/// How strictly [`decode`] checks a record.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// Verify the body CRC (recovery does; reads of known-good offsets may skip it).
    pub crc: bool,
    /// The physical offset the record must claim (recovery knows where it is reading).
    pub position: Option<i64>,
}

/// Decodes and validates the entry at the start of `buf` (which may extend past it).
pub fn decode(buf: &[u8], check: Check) -> Result<Entry<'_>, DecodeError> {
    if buf.len() < 8 {
        return Err(DecodeError::Truncated {
            need: 8,
            have: buf.len(),
        });
    }
    let total = be_i32(buf, 0);
    let magic = be_i32(buf, 4);
    if magic == BLANK_MAGIC {
        if total < BLANK_MIN as i32 || total as usize > buf.len() {
            return Err(DecodeError::BadSize(total));
        }
        return Ok(Entry::Blank);
    }
    if magic != MAGIC_V1 {
        return Err(DecodeError::BadMagic(magic));
    }
    // Fixed fields with IPv4 hosts, empty body, a 1-byte topic, no properties.
    if total < 88 + 1 + 1 + 2 {
        return Err(DecodeError::BadSize(total));
    }
    let total = total as usize;
    if total > buf.len() {
        return Err(DecodeError::Truncated {
            need: total,
            have: buf.len(),
        });
    }
    let b = &buf[..total];
    let sysflag = be_i32(b, OFF_SYSFLAG);
    let born_len = if sysflag & SYSFLAG_BORNHOST_V6 != 0 {
        20
    } else {
        8
    };
    let store_len = if sysflag & SYSFLAG_STOREHOST_V6 != 0 {
        20
    } else {
        8
    };
    let store_ts_off = OFF_BORN_HOST + born_len;
    let reconsume_off = store_ts_off + 8 + store_len;
    let body_len_off = reconsume_off + 4 + 8;
    let mismatch = |computed: usize| DecodeError::SizeMismatch { total, computed };
    if body_len_off + 4 > total {
        return Err(mismatch(body_len_off + 4));
    }
    let body_len = be_i32(b, body_len_off);
    if body_len < 0 {
        return Err(mismatch(0));
    }
    let body_start = body_len_off + 4;
    let topic_len_off = body_start + body_len as usize;
    if topic_len_off + 1 > total {
        return Err(mismatch(topic_len_off + 1));
    }
    let topic_len = b[topic_len_off] as i8;
    if topic_len <= 0 {
        return Err(DecodeError::Malformed);
    }
    let topic_start = topic_len_off + 1;
    let props_len_off = topic_start + topic_len as usize;
    if props_len_off + 2 > total {
        return Err(mismatch(props_len_off + 2));
    }
    let props_len = i16::from_be_bytes([b[props_len_off], b[props_len_off + 1]]);
    if props_len < 0 {
        return Err(DecodeError::Malformed);
    }
    let props_start = props_len_off + 2;
    let end = props_start + props_len as usize;
    if end != total {
        return Err(mismatch(end));
    }
    let view = RecordView {
        bytes: b,
        body_start,
        body_len: body_len as usize,
        topic_start,
        topic_len: topic_len as usize,
        props_start,
        props_len: props_len as usize,
        store_ts_off,
        reconsume_off,
    };
    if let Some(position) = check.position {
        let field = view.physical_offset();
        if field != position {
            return Err(DecodeError::WrongPosition { field, position });
        }
    }
    if check.crc {
        let stored = be_i32(b, 8);
        let computed = body_crc(view.body());
        if stored != computed {
            return Err(DecodeError::Crc { stored, computed });
        }
        // Topic and properties are outside the CRC: check their shape so a torn tail that
        // left zeros there is caught.
        if std::str::from_utf8(view.topic_bytes()).is_err()
            || view.topic_bytes().iter().any(|&c| c < 0x20)
            || !properties_well_formed(view.properties_bytes())
        {
            return Err(DecodeError::Malformed);
        }
        verify_record_crc(b)?;
    }
    Ok(Entry::Record(view))
}

/// Checks the whole-record checksum trailer at the end of `rec` (a complete record).
fn verify_record_crc(rec: &[u8]) -> Result<(), DecodeError> {
    let n = rec.len();
    if n < 4 + CRC_TRAILER_LEN {
        return Err(DecodeError::Malformed);
    }
    let trailer = &rec[n - CRC_TRAILER_LEN..];
    if &trailer[..8] != CRC_PROPERTY.as_bytes() || trailer[8] != 1 || trailer[19] != 2 {
        return Err(DecodeError::MissingRecordCrc);
    }
    let mut stored: u64 = 0;
    for &d in &trailer[9..19] {
        if !d.is_ascii_digit() {
            return Err(DecodeError::MissingRecordCrc);
        }
        stored = stored * 10 + (d - b'0') as u64;
    }
    let computed = crc32fast::hash(&rec[4..n - 11]);
    if stored != computed as u64 {
        return Err(DecodeError::RecordCrc {
            stored: stored as u32,
            computed,
        });
    }
    Ok(())
}

/// `k 0x01 v 0x02` pairs, each key non-empty, as UTF-8.
fn properties_well_formed(p: &[u8]) -> bool {
    // NUL never appears in properties clients send; a torn tail leaves zeros.
    if memchr::memchr(0, p).is_some() || std::str::from_utf8(p).is_err() {
        return false;
    }
    let mut rest = p;
    while !rest.is_empty() {
        let Some(sep) = memchr::memchr(1, rest) else {
            return false;
        };
        if sep == 0 {
            return false;
        }
        let after = &rest[sep + 1..];
        match memchr::memchr(2, after) {
            Some(end) => rest = &after[end + 1..],
            // RocketMQ clients may omit the final separator.
            None => return !after.contains(&1),
        }
    }
    true
}

impl<'a> RecordView<'a> {
    pub fn total_size(&self) -> usize {
        self.bytes.len()
    }
    pub fn queue_id(&self) -> i32 {
        be_i32(self.bytes, 12)
    }
    pub fn flag(&self) -> i32 {
        be_i32(self.bytes, 16)
    }
    pub fn body_crc(&self) -> i32 {
        be_i32(self.bytes, 8)
    }
    pub fn queue_offset(&self) -> i64 {
        be_i64(self.bytes, OFF_QUEUE_OFFSET)
    }
    pub fn physical_offset(&self) -> i64 {
        be_i64(self.bytes, OFF_PHYS_OFFSET)
    }
    pub fn sysflag(&self) -> i32 {
        be_i32(self.bytes, OFF_SYSFLAG)
    }
    pub fn born_timestamp(&self) -> i64 {
        be_i64(self.bytes, OFF_BORN_TS)
    }
    pub fn born_host(&self) -> SocketAddr {
        read_host(
            self.bytes,
            OFF_BORN_HOST,
            self.sysflag() & SYSFLAG_BORNHOST_V6 != 0,
        )
    }
    pub fn store_timestamp(&self) -> i64 {
        be_i64(self.bytes, self.store_ts_off)
    }
    pub fn store_host(&self) -> SocketAddr {
        read_host(
            self.bytes,
            self.store_ts_off + 8,
            self.sysflag() & SYSFLAG_STOREHOST_V6 != 0,
        )
    }
    pub fn reconsume_times(&self) -> i32 {
        be_i32(self.bytes, self.reconsume_off)
    }
    pub fn prepared_transaction_offset(&self) -> i64 {
        be_i64(self.bytes, self.reconsume_off + 4)
    }
    pub fn body(&self) -> &'a [u8] {
        &self.bytes[self.body_start..self.body_start + self.body_len]
    }
    pub fn topic_bytes(&self) -> &'a [u8] {
        &self.bytes[self.topic_start..self.topic_start + self.topic_len]
    }
    /// The topic; an invalid UTF-8 topic (never written by this store) reads as "".
    pub fn topic(&self) -> &'a str {
        std::str::from_utf8(self.topic_bytes()).unwrap_or("")
    }
    pub fn properties_bytes(&self) -> &'a [u8] {
        &self.bytes[self.props_start..self.props_start + self.props_len]
    }
    pub fn properties(&self) -> &'a str {
        std::str::from_utf8(self.properties_bytes()).unwrap_or("")
    }
    /// Value of one property, scanning `k 0x01 v 0x02` pairs.
    pub fn property(&self, key: &str) -> Option<&'a str> {
        property(self.properties(), key)
    }
}

/// Looks up `key` in a `k 0x01 v 0x02` properties string.
pub fn property<'p>(props: &'p str, key: &str) -> Option<&'p str> {
    for pair in props.split('\u{2}') {
        if let Some((k, v)) = pair.split_once('\u{1}') {
            if k == key {
                return Some(v);
            }
        }
    }
    None
}

fn read_host(b: &[u8], off: usize, v6: bool) -> SocketAddr {
    if v6 {
        let mut o = [0u8; 16];
        o.copy_from_slice(&b[off..off + 16]);
        SocketAddr::new(IpAddr::from(o), be_i32(b, off + 16) as u16)
    } else {
        let ip = Ipv4Addr::new(b[off], b[off + 1], b[off + 2], b[off + 3]);
        SocketAddr::new(IpAddr::V4(ip), be_i32(b, off + 4) as u16)
    }
}

/// Writes the header of a blank end-of-segment filler `len` bytes long (at least
/// [`BLANK_MIN`]) into `buf`: the bytes after the header are not part of it.
pub fn encode_blank_header(buf: &mut [u8; BLANK_MIN], len: usize) {
    buf[0..4].copy_from_slice(&(len as i32).to_be_bytes());
    buf[4..8].copy_from_slice(&BLANK_MAGIC.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(body: &'a [u8], props: &'a str) -> MessageInput<'a> {
        MessageInput {
            topic: "TopicTest",
            queue_id: 3,
            flag: 7,
            sysflag: SYSFLAG_COMPRESSED,
            born_timestamp: 1_700_000_000_123,
            born_host: "10.1.2.3:5555".parse().unwrap(),
            reconsume_times: 2,
            prepared_transaction_offset: 99,
            body,
            properties: props,
        }
    }

    fn place(body: &[u8]) -> Placement {
        Placement {
            queue_offset: 41,
            physical_offset: 4096,
            store_timestamp: 1_700_000_000_456,
            store_host: "127.0.0.1:10911".parse().unwrap(),
            body_crc: body_crc(body),
        }
    }

    const CHECK: Check = Check {
        crc: true,
        position: Some(4096),
    };

    #[test]
    fn round_trip() {
        let body = b"hello world";
        let props = "TAGS\u{1}TagA\u{2}KEYS\u{1}k1 k2\u{2}";
        let msg = sample(body, props);
        let at = place(body);
        let bytes = encode(&msg, &at);
        assert_eq!(bytes.len(), encoded_len(&msg, &at.store_host));
        let Entry::Record(r) = decode(&bytes, CHECK).unwrap() else {
            panic!("not a record")
        };
        assert_eq!(r.total_size(), bytes.len());
        assert_eq!(r.queue_id(), 3);
        assert_eq!(r.flag(), 7);
        assert_eq!(r.queue_offset(), 41);
        assert_eq!(r.physical_offset(), 4096);
        assert_eq!(r.sysflag(), SYSFLAG_COMPRESSED);
        assert_eq!(r.born_timestamp(), 1_700_000_000_123);
        assert_eq!(r.born_host(), msg.born_host);
        assert_eq!(r.store_timestamp(), 1_700_000_000_456);
        assert_eq!(r.store_host(), at.store_host);
        assert_eq!(r.reconsume_times(), 2);
        assert_eq!(r.prepared_transaction_offset(), 99);
        assert_eq!(r.body(), body);
        assert_eq!(r.topic(), "TopicTest");
        assert!(r.properties().starts_with(props));
        assert!(r.property(CRC_PROPERTY).is_some_and(|d| d.len() == 10));
        assert_eq!(r.property("TAGS"), Some("TagA"));
        assert_eq!(r.property("KEYS"), Some("k1 k2"));
        assert_eq!(r.property("NOPE"), None);
        assert_eq!(r.body_crc(), body_crc(body));
    }

    #[test]
    fn ipv6_hosts_round_trip() {
        let body = b"x";
        let mut msg = sample(body, "");
        msg.born_host = "[2001:db8::1]:1234".parse().unwrap();
        let mut at = place(body);
        at.store_host = "[2001:db8::2]:10911".parse().unwrap();
        let bytes = encode(&msg, &at);
        let Entry::Record(r) = decode(&bytes, CHECK).unwrap() else {
            panic!()
        };
        assert_eq!(r.born_host(), msg.born_host);
        assert_eq!(r.store_host(), at.store_host);
        assert_eq!(r.sysflag() & 0x30, 0x30);
        assert_eq!(r.body(), body);
    }

    #[test]
    fn layout_matches_rocketmq_offsets() {
        let body = b"abc";
        let bytes = encode(&sample(body, ""), &place(body));
        assert_eq!(be_i32(&bytes, 4), MAGIC_V1);
        assert_eq!(be_i64(&bytes, 28), 4096);
        // born host v4 at 48, store ts at 56, store host at 64, reconsume at 72, txn at 76,
        // body length at 84.
        assert_eq!(be_i64(&bytes, 56), 1_700_000_000_456);
        assert_eq!(&bytes[64..68], &[127, 0, 0, 1]);
        assert_eq!(be_i32(&bytes, 84), 3);
        assert_eq!(&bytes[88..91], b"abc");
        assert_eq!(bytes[91], 9);
    }

    #[test]
    fn crc_detects_body_change() {
        let body = b"payload";
        let mut bytes = encode(&sample(body, ""), &place(body));
        bytes[90] ^= 0x40;
        assert!(matches!(
            decode(&bytes, CHECK),
            Err(DecodeError::Crc { .. })
        ));
    }

    #[test]
    fn wrong_position_detected() {
        let body = b"payload";
        let bytes = encode(&sample(body, ""), &place(body));
        let check = Check {
            crc: true,
            position: Some(8192),
        };
        assert!(matches!(
            decode(&bytes, check),
            Err(DecodeError::WrongPosition { .. })
        ));
    }

    #[test]
    fn every_truncation_is_detected() {
        let body = vec![0xAB; 300];
        let props = "UNIQ_KEY\u{1}ABCDEF\u{2}TAGS\u{1}t\u{2}";
        let bytes = encode(&sample(&body, props), &place(&body));
        for cut in 0..bytes.len() {
            assert!(
                decode(&bytes[..cut], CHECK).is_err(),
                "cut at {cut} accepted"
            );
            // A torn write: the prefix is there, the rest is zeros (preallocated file).
            let mut torn = bytes[..cut].to_vec();
            torn.resize(bytes.len() + 64, 0);
            if cut < 4 {
                // total size itself torn: the writer stores it last, so a real torn record
                // has size 0; a partial size is garbage either way.
                continue;
            }
            assert!(decode(&torn, CHECK).is_err(), "torn at {cut} accepted");
        }
        assert!(decode(&bytes, CHECK).is_ok());
    }

    #[test]
    fn zero_size_is_rejected() {
        let zeros = [0u8; 256];
        assert!(decode(&zeros, CHECK).is_err());
    }

    #[test]
    fn validate_limits() {
        let big = vec![0u8; 101];
        let mut m = sample(&big, "");
        assert!(matches!(
            validate(&m, 100, 100),
            Err(RecordError::BodyTooLarge { .. })
        ));
        m.body = b"ok";
        let long = "t".repeat(128);
        m.topic = &long;
        assert_eq!(validate(&m, 100, 100), Err(RecordError::TopicTooLong(128)));
        m.topic = "";
        assert_eq!(validate(&m, 100, 100), Err(RecordError::EmptyTopic));
        m.topic = "a\u{1}b";
        assert_eq!(validate(&m, 100, 100), Err(RecordError::TopicInvalid));
        m.topic = "ok";
        let props = "k\u{1}".to_string() + &"v".repeat(200);
        m.properties = &props;
        assert!(matches!(
            validate(&m, 100, 100),
            Err(RecordError::PropertiesTooLarge { .. })
        ));
        m.properties = "";
        m.queue_id = -1;
        assert_eq!(
            validate(&m, 100, 100),
            Err(RecordError::NegativeQueueId(-1))
        );
    }

    #[test]
    fn tag_hash_matches_java() {
        // Values of "TagA".hashCode() etc. in Java.
        assert_eq!(tag_hash("TagA"), 2598919);
        assert_eq!(tag_hash(""), 0);
        assert_eq!(tag_hash("hello"), 99162322);
        // Overflow wraps like Java's int arithmetic.
        assert_eq!(tag_hash("a much longer tag value"), {
            let mut h: i32 = 0;
            for c in "a much longer tag value".chars() {
                h = h.wrapping_mul(31).wrapping_add(c as i32);
            }
            h as i64
        });
    }

    #[test]
    fn blank_filler() {
        let mut buf = vec![0u8; 40];
        let mut header = [0u8; BLANK_MIN];
        encode_blank_header(&mut header, buf.len());
        buf[..BLANK_MIN].copy_from_slice(&header);
        assert!(matches!(decode(&buf, CHECK), Ok(Entry::Blank)));
    }

    #[test]
    fn properties_shape() {
        assert!(properties_well_formed(b""));
        assert!(properties_well_formed(b"a\x01b\x02"));
        assert!(properties_well_formed(b"a\x01b"));
        assert!(!properties_well_formed(b"\x01b\x02"));
        assert!(!properties_well_formed(b"ab"));
        assert!(!properties_well_formed(b"a\x01b\x02\x00\x00"));
        assert!(!properties_well_formed(b"a\x01b\x00"));
    }
}

#[cfg(test)]
mod crc_tests {
    use super::*;

    fn rec(props: &str) -> Vec<u8> {
        let m = MessageInput {
            topic: "T",
            queue_id: 0,
            flag: 0,
            sysflag: 0,
            born_timestamp: 5,
            born_host: "127.0.0.1:1".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: b"body",
            properties: props,
        };
        let at = Placement {
            queue_offset: 0,
            physical_offset: 0,
            store_timestamp: 6,
            store_host: "127.0.0.1:2".parse().unwrap(),
            body_crc: body_crc(b"body"),
        };
        encode(&m, &at)
    }

    const CHECK: Check = Check {
        crc: true,
        position: Some(0),
    };

    #[test]
    fn any_changed_byte_outside_the_size_is_detected() {
        let r = rec("TAGS\u{1}a\u{2}KEYS\u{1}k");
        assert!(decode(&r, CHECK).is_ok());
        for i in 4..r.len() {
            for x in [1u8, 0x80, 0xFF] {
                let mut d = r.clone();
                d[i] ^= x;
                assert!(decode(&d, CHECK).is_err(), "flip {x:#x} at {i} accepted");
            }
        }
    }

    #[test]
    fn missing_final_separator_is_added() {
        let r = rec("KEYS\u{1}k");
        let Entry::Record(v) = decode(&r, CHECK).unwrap() else {
            panic!()
        };
        assert!(v.properties().starts_with("KEYS\u{1}k\u{2}__CRC32#\u{1}"));
        assert_eq!(v.property("KEYS"), Some("k"));
        let r = rec("");
        let Entry::Record(v) = decode(&r, CHECK).unwrap() else {
            panic!()
        };
        assert!(v.properties().starts_with("__CRC32#\u{1}"));
    }
}
