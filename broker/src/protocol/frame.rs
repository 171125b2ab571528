//! The remoting frame: `[i32 total][i32 type<<24 | header_len][header][body]`, big-endian.
//!
//! `total` counts the bytes after itself (`4 + header_len + body_len`). The decoder validates every declared
//! length against [`FrameCodec::max_frame_len`] *before* reserving memory for it, so a peer that declares a
//! 2 GiB frame costs us nothing but a closed connection. Decoding is incremental: a partial frame leaves the
//! buffer untouched and returns `Ok(None)`. Decoded frames are zero-copy slices (`Bytes`) of the read buffer.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::FrameError;

/// Default maximum frame length (`com.rocketmq.remoting.frameMaxLength`).
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Largest header length the 24-bit field can carry.
pub const MAX_HEADER_LEN: usize = 0x00FF_FFFF;

/// One undecoded frame: the serialize type byte plus header and body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// High byte of the second length word: 0 = JSON, 1 = ROCKETMQ binary.
    pub serialize_type: u8,
    pub header: Bytes,
    pub body: Bytes,
}

/// Incremental frame decoder / encoder with a length limit.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    /// Upper bound for the declared `total` length (bytes after the first length field).
    pub max_frame_len: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
        }
    }
}

impl FrameCodec {
    pub fn new(max_frame_len: usize) -> Self {
        Self { max_frame_len }
    }

    /// Decodes one frame from the front of `buf`. Returns `Ok(None)` when more bytes are needed (after
    /// reserving room for the declared frame, once it has been validated).
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<RawFrame>, FrameError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let declared = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if declared < 4 {
            return Err(FrameError::TooShort {
                declared: declared as i64,
            });
        }
        let total = declared as usize;
        if total > self.max_frame_len {
            return Err(FrameError::TooLarge {
                declared: declared as i64,
                max: self.max_frame_len,
            });
        }
        if buf.len() >= 8 {
            let word = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
            let header_len = (word & MAX_HEADER_LEN as u32) as usize;
            if header_len > total - 4 {
                return Err(FrameError::HeaderOverflow { header_len, total });
            }
        }
        let frame_len = 4 + total;
        if buf.len() < frame_len {
            buf.reserve(frame_len - buf.len());
            return Ok(None);
        }
        let mut frame = buf.split_to(frame_len);
        frame.advance(4);
        let word = frame.get_u32();
        let serialize_type = (word >> 24) as u8;
        let header_len = (word & MAX_HEADER_LEN as u32) as usize;
        let header = frame.split_to(header_len).freeze();
        let body = frame.freeze();
        Ok(Some(RawFrame {
            serialize_type,
            header,
            body,
        }))
    }

    /// Starts a frame in `dst`: writes placeholder length words and returns the frame's start position. Write
    /// the header next, then call [`FrameCodec::finish`].
    pub fn begin(dst: &mut BytesMut) -> usize {
        let start = dst.len();
        dst.put_u64(0);
        start
    }

    /// Completes a frame begun at `start` whose header occupies everything written since: patches the length
    /// words and appends `body`. On error the partial frame is removed from `dst`.
    pub fn finish(
        dst: &mut BytesMut,
        start: usize,
        serialize_type: u8,
        body: &[u8],
    ) -> Result<(), FrameError> {
        Self::finish_header(dst, start, serialize_type, body.len())?;
        dst.put_slice(body);
        Ok(())
    }

    /// Like [`FrameCodec::finish`] but leaves the `body_len` body bytes for the caller to write after `dst`
    /// (so a large body can be written from its own buffer without a copy).
    pub fn finish_header(
        dst: &mut BytesMut,
        start: usize,
        serialize_type: u8,
        body_len: usize,
    ) -> Result<(), FrameError> {
        let header_len = dst.len() - start - 8;
        if header_len > MAX_HEADER_LEN {
            dst.truncate(start);
            return Err(FrameError::HeaderTooLong(header_len));
        }
        let total = 4 + header_len + body_len;
        let Ok(total32) = i32::try_from(total) else {
            dst.truncate(start);
            return Err(FrameError::TooLarge {
                declared: total as i64,
                max: i32::MAX as usize,
            });
        };
        dst[start..start + 4].copy_from_slice(&total32.to_be_bytes());
        let word = ((serialize_type as u32) << 24) | header_len as u32;
        dst[start + 4..start + 8].copy_from_slice(&word.to_be_bytes());
        Ok(())
    }

    /// Encodes a whole frame from a ready header.
    pub fn encode(
        dst: &mut BytesMut,
        serialize_type: u8,
        header: &[u8],
        body: &[u8],
    ) -> Result<(), FrameError> {
        dst.reserve(8 + header.len() + body.len());
        let start = Self::begin(dst);
        dst.put_slice(header);
        Self::finish(dst, start, serialize_type, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(header: &[u8], body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        FrameCodec::encode(&mut b, 0, header, body).unwrap();
        b
    }

    #[test]
    fn round_trip_and_incremental() {
        let codec = FrameCodec::default();
        let whole = frame(b"{\"code\":1}", b"body");
        assert_eq!(&whole[..4], &(4 + 10 + 4i32).to_be_bytes());
        let mut buf = BytesMut::new();
        for (i, b) in whole.iter().enumerate() {
            buf.put_u8(*b);
            let r = codec.decode(&mut buf).unwrap();
            if i + 1 < whole.len() {
                assert!(r.is_none(), "byte {i}");
            } else {
                let f = r.unwrap();
                assert_eq!(&f.header[..], b"{\"code\":1}");
                assert_eq!(&f.body[..], b"body");
                assert_eq!(f.serialize_type, 0);
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn two_frames_in_one_buffer() {
        let codec = FrameCodec::default();
        let mut buf = frame(b"a", b"");
        buf.extend_from_slice(&frame(b"bb", b"c"));
        let mut t = BytesMut::new();
        FrameCodec::encode(&mut t, 1, b"h", b"").unwrap();
        buf.extend_from_slice(&t);
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap().header[..], b"a");
        let f = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!((&f.header[..], &f.body[..]), (&b"bb"[..], &b"c"[..]));
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap().serialize_type, 1);
        assert!(codec.decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn rejects_bad_lengths_before_allocating() {
        let codec = FrameCodec::default();
        let mut huge = BytesMut::from(&i32::MAX.to_be_bytes()[..]);
        assert!(matches!(
            codec.decode(&mut huge),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(huge.capacity() < 1024);
        let mut neg = BytesMut::from(&(-5i32).to_be_bytes()[..]);
        assert!(matches!(
            codec.decode(&mut neg),
            Err(FrameError::TooShort { .. })
        ));
        let mut short = BytesMut::from(&3i32.to_be_bytes()[..]);
        assert!(codec.decode(&mut short).is_err());
        let mut hdr = BytesMut::new();
        hdr.put_i32(10);
        hdr.put_u32(7); // header 7 > 10 - 4
        assert!(matches!(
            codec.decode(&mut hdr),
            Err(FrameError::HeaderOverflow { .. })
        ));
        let small = FrameCodec::new(8);
        let mut b = frame(b"123456789", b"");
        assert!(small.decode(&mut b).is_err());
    }

    #[test]
    fn empty_header_and_body() {
        let codec = FrameCodec::default();
        let mut b = frame(b"", b"");
        let f = codec.decode(&mut b).unwrap().unwrap();
        assert!(f.header.is_empty() && f.body.is_empty());
    }
}
