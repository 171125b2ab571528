//! The replication stream's frames (`docs/replication.md` describes the protocol).
//!
//! Every frame is `u32 length` (of what follows, big-endian) + `u8 kind` + the kind's fields,
//! big-endian. A frame longer than [`MAX_FRAME`] or of an unknown kind ends the connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// `WQHA`: the first bytes of a slave's hello.
pub const MAGIC: u32 = 0x5751_4841;
pub const VERSION: u16 = 1;
/// Largest frame accepted: a data frame carries at most one record larger than the batch
/// size, and records are at most a few MiB.
pub const MAX_FRAME: usize = 64 << 20;

const HELLO: u8 = 1;
const REPORT: u8 = 2;
const WELCOME: u8 = 3;
const REFUSE: u8 = 4;
const DATA: u8 = 5;
const HEARTBEAT: u8 = 6;

/// What a slave says first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub broker_name: String,
    pub broker_id: i64,
    /// The replication epoch of the slave's log (0 until failover assigns epochs).
    pub epoch: u64,
    pub segment_size: u64,
    /// The slave holds the log up to here (its max offset).
    pub offset: u64,
}

/// The master's answer to a hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub epoch: u64,
    pub segment_size: u64,
    pub min_offset: u64,
    pub max_offset: u64,
    /// Where the stream starts (the slave's offset, or the master's oldest segment for an
    /// empty slave).
    pub start: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Hello(Hello),
    /// Slave -> master: the offset the slave holds (after appends, and every second).
    Report {
        offset: u64,
    },
    Welcome(Welcome),
    /// Master -> slave: replication refused; the connection closes.
    Refuse(String),
    /// Master -> slave: commit-log bytes at `offset` (whole records, one segment), with
    /// their CRC-32 and the master's log end when sent.
    Data {
        offset: u64,
        master_max: u64,
        crc: u32,
        bytes: Bytes,
    },
    /// Master -> slave, every second when idle: its log end.
    Heartbeat {
        master_max: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes is larger than allowed")]
    TooLarge(usize),
    #[error("bad frame: {0}")]
    Bad(String),
}

fn bad(s: impl Into<String>) -> WireError {
    WireError::Bad(s.into())
}

impl Frame {
    /// Encodes the frame; for `Data`, only the header (the bytes follow it on the wire).
    pub fn encode_header(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u32(0);
        match self {
            Frame::Hello(h) => {
                out.put_u8(HELLO);
                out.put_u32(MAGIC);
                out.put_u16(VERSION);
                out.put_i64(h.broker_id);
                out.put_u64(h.epoch);
                out.put_u64(h.segment_size);
                out.put_u64(h.offset);
                out.put_u16(h.broker_name.len() as u16);
                out.put_slice(h.broker_name.as_bytes());
            }
            Frame::Report { offset } => {
                out.put_u8(REPORT);
                out.put_u64(*offset);
            }
            Frame::Welcome(w) => {
                out.put_u8(WELCOME);
                out.put_u64(w.epoch);
                out.put_u64(w.segment_size);
                out.put_u64(w.min_offset);
                out.put_u64(w.max_offset);
                out.put_u64(w.start);
            }
            Frame::Refuse(reason) => {
                out.put_u8(REFUSE);
                out.put_slice(reason.as_bytes());
            }
            Frame::Data {
                offset,
                master_max,
                crc,
                bytes,
            } => {
                out.put_u8(DATA);
                out.put_u64(*offset);
                out.put_u64(*master_max);
                out.put_u32(*crc);
                let len = out.len() - start - 4 + bytes.len();
                out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
                return;
            }
            Frame::Heartbeat { master_max } => {
                out.put_u8(HEARTBEAT);
                out.put_u64(*master_max);
            }
        }
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// The whole frame (tests; `Data` with its bytes).
    pub fn to_bytes(&self) -> BytesMut {
        let mut b = BytesMut::new();
        self.encode_header(&mut b);
        if let Frame::Data { bytes, .. } = self {
            b.put_slice(bytes);
        }
        b
    }

    /// Decodes one frame's body (after its length).
    pub fn decode(mut b: Bytes) -> Result<Frame, WireError> {
        fn need(b: &Bytes, n: usize, what: &str) -> Result<(), WireError> {
            if b.remaining() < n {
                return Err(bad(format!("{what} frame too short")));
            }
            Ok(())
        }
        need(&b, 1, "empty")?;
        let kind = b.get_u8();
        let f = match kind {
            HELLO => {
                need(&b, 4 + 2 + 8 * 4 + 2, "hello")?;
                let magic = b.get_u32();
                if magic != MAGIC {
                    return Err(bad(format!("bad magic {magic:#x}")));
                }
                let version = b.get_u16();
                if version != VERSION {
                    return Err(bad(format!(
                        "protocol version {version}, expected {VERSION}"
                    )));
                }
                let broker_id = b.get_i64();
                let epoch = b.get_u64();
                let segment_size = b.get_u64();
                let offset = b.get_u64();
                let n = b.get_u16() as usize;
                need(&b, n, "hello")?;
                let name = b.split_to(n);
                let broker_name = String::from_utf8(name.to_vec())
                    .map_err(|_| bad("broker name is not UTF-8"))?;
                Frame::Hello(Hello {
                    broker_name,
                    broker_id,
                    epoch,
                    segment_size,
                    offset,
                })
            }
            REPORT => {
                need(&b, 8, "report")?;
                Frame::Report {
                    offset: b.get_u64(),
                }
            }
            WELCOME => {
                need(&b, 40, "welcome")?;
                Frame::Welcome(Welcome {
                    epoch: b.get_u64(),
                    segment_size: b.get_u64(),
                    min_offset: b.get_u64(),
                    max_offset: b.get_u64(),
                    start: b.get_u64(),
                })
            }
            REFUSE => Frame::Refuse(String::from_utf8_lossy(&b).into_owned()),
            DATA => {
                need(&b, 20, "data")?;
                let offset = b.get_u64();
                let master_max = b.get_u64();
                let crc = b.get_u32();
                Frame::Data {
                    offset,
                    master_max,
                    crc,
                    bytes: b,
                }
            }
            HEARTBEAT => {
                need(&b, 8, "heartbeat")?;
                Frame::Heartbeat {
                    master_max: b.get_u64(),
                }
            }
            k => return Err(bad(format!("unknown frame kind {k}"))),
        };
        Ok(f)
    }
}

/// Reads one frame. Not cancel-safe: use it from one task that owns the read half.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Frame, WireError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len));
    }
    let mut body = BytesMut::zeroed(len);
    r.read_exact(&mut body).await?;
    Frame::decode(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn round_trip(f: Frame) -> Frame {
        let b = f.to_bytes();
        read_frame(&mut &b[..]).await.unwrap()
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let frames = [
            Frame::Hello(Hello {
                broker_name: "broker-a".into(),
                broker_id: 1,
                epoch: 3,
                segment_size: 1 << 20,
                offset: 4096,
            }),
            Frame::Report { offset: 77 },
            Frame::Welcome(Welcome {
                epoch: 3,
                segment_size: 1 << 20,
                min_offset: 0,
                max_offset: 9,
                start: 4,
            }),
            Frame::Refuse("segment size differs".into()),
            Frame::Data {
                offset: 100,
                master_max: 300,
                crc: 0xdead_beef,
                bytes: Bytes::from_static(b"records"),
            },
            Frame::Heartbeat { master_max: 5 },
        ];
        for f in frames {
            assert_eq!(round_trip(f.clone()).await, f);
        }
    }

    #[tokio::test]
    async fn garbage_is_refused() {
        for bytes in [
            &b"\x00\x00\x00\x01\x09"[..],
            b"\x00\x00\x00\x03\x02\x00\x00",
            b"\xff\xff\xff\xff",
            b"\x00\x00\x00\x30\x01GET / HTTP/1.1\r\n\r\n0000000000000000000000000000000",
        ] {
            assert!(read_frame(&mut &bytes[..]).await.is_err(), "{bytes:?}");
        }
        assert!(matches!(
            read_frame(&mut &b""[..]).await,
            Err(WireError::Closed)
        ));
    }
}
