//! The batch encoding (v1) messages cross into a plugin in; the guest side decodes it in
//! `wasmq-plugin-sdk`. All integers little-endian:
//!
//! ```text
//! batch   := count:u32 message{count}
//! message := len:u32 (bytes after this field) queue_offset:i64 store_timestamp:i64
//!            topic_len:u16 topic props_len:u32 props body_len:u32 body
//! ```
//! `props` are the stored properties as they are in the commit log (`name 0x01 value 0x02`);
//! `body` is empty unless the compiled expression asked for bodies.

use crate::store::record::RecordView;

/// Builds one batch; reusable (`clear`) so the pull path does not allocate per call.
#[derive(Debug, Default)]
pub struct BatchEncoder {
    buf: Vec<u8>,
    count: u32,
}

impl BatchEncoder {
    pub fn new() -> BatchEncoder {
        let mut e = BatchEncoder::default();
        e.clear();
        e
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.buf.extend_from_slice(&0u32.to_le_bytes());
        self.count = 0;
    }

    pub fn count(&self) -> usize {
        self.count as usize
    }

    /// Appends one message.
    pub fn push(
        &mut self,
        queue_offset: i64,
        store_timestamp: i64,
        topic: &[u8],
        props: &[u8],
        body: &[u8],
    ) {
        let topic = &topic[..topic.len().min(u16::MAX as usize)];
        let len = 8 + 8 + 2 + topic.len() + 4 + props.len() + 4 + body.len();
        let b = &mut self.buf;
        b.reserve(4 + len);
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b.extend_from_slice(&queue_offset.to_le_bytes());
        b.extend_from_slice(&store_timestamp.to_le_bytes());
        b.extend_from_slice(&(topic.len() as u16).to_le_bytes());
        b.extend_from_slice(topic);
        b.extend_from_slice(&(props.len() as u32).to_le_bytes());
        b.extend_from_slice(props);
        b.extend_from_slice(&(body.len() as u32).to_le_bytes());
        b.extend_from_slice(body);
        self.count += 1;
        self.buf[..4].copy_from_slice(&self.count.to_le_bytes());
    }

    /// Appends a stored record (body only when `with_body`).
    pub fn push_record(&mut self, r: &RecordView<'_>, with_body: bool) {
        let body: &[u8] = if with_body { r.body() } else { &[] };
        self.push(
            r.queue_offset(),
            r.store_timestamp(),
            r.topic_bytes(),
            r.properties_bytes(),
            body,
        );
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Whether bit `i` of a result bitset is set (LSB first).
pub fn bit(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let mut e = BatchEncoder::new();
        e.push(7, 9, b"T", b"a\x01b\x02", b"xy");
        e.push(8, 10, b"", b"", b"");
        let b = e.bytes();
        assert_eq!(&b[..4], &2u32.to_le_bytes());
        let len = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
        assert_eq!(len, 8 + 8 + 2 + 1 + 4 + 4 + 4 + 2);
        assert_eq!(&b[8..16], &7i64.to_le_bytes());
        assert_eq!(&b[16..24], &9i64.to_le_bytes());
        assert_eq!(&b[24..26], &1u16.to_le_bytes());
        assert_eq!(b[26], b'T');
        assert_eq!(b.len(), 4 + 4 + len + 4 + 26);
        e.clear();
        assert_eq!(e.bytes(), &0u32.to_le_bytes());
    }

    #[test]
    fn bits() {
        let bits = [0b0000_0101u8, 0b1];
        assert!(bit(&bits, 0) && !bit(&bits, 1) && bit(&bits, 2) && bit(&bits, 8));
        assert!(!bit(&bits, 16));
    }
}
