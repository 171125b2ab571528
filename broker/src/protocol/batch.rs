//! The batch body of SEND_BATCH_MESSAGE (320) and SEND_MESSAGE_V2 with `m=true` (REMOTING.md §8):
//! entries of `i32 total_size | i32 magic | i32 body_crc | i32 flag | i32 body_len | body | i16 props_len |
//! props`. Decoding borrows from the body and bounds-checks every length; a truncated or inconsistent
//! entry is an error, never a panic.

use super::error::BodyError;

/// Fixed bytes of an entry besides body and properties.
const FIXED: usize = 4 * 5 + 2;

/// One message of a batch, borrowed from the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchEntry<'a> {
    pub flag: i32,
    pub body: &'a [u8],
    /// Raw properties (`k\x01v\x02...`).
    pub properties: &'a [u8],
}

impl<'a> BatchEntry<'a> {
    /// The properties as text.
    pub fn properties_str(&self) -> Result<&'a str, BodyError> {
        std::str::from_utf8(self.properties)
            .map_err(|e| BodyError::MalformedProperties(e.valid_up_to()))
    }
}

/// Iterator over batch entries; yields one error and then stops on a malformed entry.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Iterates the entries of a batch body.
pub fn iter(buf: &[u8]) -> BatchIter<'_> {
    BatchIter { buf, pos: 0 }
}

/// Decodes a whole batch body.
pub fn decode(buf: &[u8]) -> Result<Vec<BatchEntry<'_>>, BodyError> {
    iter(buf).collect()
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<'a> BatchIter<'a> {
    fn entry(&self) -> Result<(BatchEntry<'a>, usize), BodyError> {
        let at = self.pos;
        let rest = &self.buf[at..];
        if rest.len() < FIXED {
            return Err(BodyError::Truncated {
                what: "batch entry header",
                at,
                need: FIXED,
                have: rest.len(),
            });
        }
        let total = be_i32(rest, 0);
        let total = usize::try_from(total)
            .ok()
            .filter(|&t| t >= FIXED)
            .ok_or_else(|| inconsistent(at, format!("total_size {total}")))?;
        if total > rest.len() {
            return Err(BodyError::Truncated {
                what: "batch entry",
                at,
                need: total,
                have: rest.len(),
            });
        }
        let entry = &rest[..total];
        let flag = be_i32(entry, 12);
        let body_len = be_i32(entry, 16);
        let body_len = usize::try_from(body_len)
            .ok()
            .filter(|&b| b <= total - FIXED)
            .ok_or_else(|| inconsistent(at, format!("body_len {body_len} in entry of {total}")))?;
        let body = &entry[20..20 + body_len];
        let p = 20 + body_len;
        let props_len = i16::from_be_bytes([entry[p], entry[p + 1]]);
        let props_len = usize::try_from(props_len)
            .ok()
            .filter(|&l| p + 2 + l == total)
            .ok_or_else(|| {
                inconsistent(
                    at,
                    format!("props_len {props_len} with body_len {body_len} in entry of {total}"),
                )
            })?;
        let properties = &entry[p + 2..p + 2 + props_len];
        Ok((
            BatchEntry {
                flag,
                body,
                properties,
            },
            total,
        ))
    }
}

fn inconsistent(at: usize, detail: String) -> BodyError {
    BodyError::Inconsistent {
        what: "batch entry",
        at,
        detail,
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<BatchEntry<'a>, BodyError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        match self.entry() {
            Ok((e, len)) => {
                self.pos += len;
                Some(Ok(e))
            }
            Err(err) => {
                self.pos = self.buf.len();
                Some(Err(err))
            }
        }
    }
}

/// Appends one entry to a batch body (magic and body CRC are written as 0, as clients do).
pub fn encode_entry(
    dst: &mut Vec<u8>,
    flag: i32,
    body: &[u8],
    properties: &[u8],
) -> Result<(), BodyError> {
    let props_len = i16::try_from(properties.len()).map_err(|_| BodyError::TooLong {
        what: "batch entry properties",
        len: properties.len(),
    })?;
    let total = FIXED + body.len() + properties.len();
    let total32 = i32::try_from(total).map_err(|_| BodyError::TooLong {
        what: "batch entry",
        len: total,
    })?;
    dst.reserve(total);
    dst.extend_from_slice(&total32.to_be_bytes());
    dst.extend_from_slice(&0i32.to_be_bytes());
    dst.extend_from_slice(&0i32.to_be_bytes());
    dst.extend_from_slice(&flag.to_be_bytes());
    dst.extend_from_slice(&(body.len() as i32).to_be_bytes());
    dst.extend_from_slice(body);
    dst.extend_from_slice(&props_len.to_be_bytes());
    dst.extend_from_slice(properties);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut b = Vec::new();
        encode_entry(&mut b, 0, b"hello", b"UNIQ_KEY\x01A\x02").unwrap();
        encode_entry(&mut b, 7, b"", b"").unwrap();
        encode_entry(&mut b, -1, &[0xff; 300], b"KEYS\x01k\x02").unwrap();
        b
    }

    #[test]
    fn round_trip() {
        let b = sample();
        let v = decode(&b).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].body, b"hello");
        assert_eq!(v[0].properties_str().unwrap(), "UNIQ_KEY\x01A\x02");
        assert_eq!((v[1].flag, v[1].body.len()), (7, 0));
        assert_eq!(v[2].body.len(), 300);
        assert!(decode(&[]).unwrap().is_empty());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = sample();
        let ends: Vec<usize> = {
            let v = decode(&b).unwrap();
            let mut at = 0;
            v.iter()
                .map(|e| {
                    at += FIXED + e.body.len() + e.properties.len();
                    at
                })
                .collect()
        };
        for cut in 1..b.len() {
            let r = decode(&b[..cut]);
            assert_eq!(r.is_ok(), ends.contains(&cut), "cut {cut}");
        }
    }

    #[test]
    fn inconsistent_lengths() {
        let mut b = sample();
        // body_len larger than the entry
        b[16..20].copy_from_slice(&1000i32.to_be_bytes());
        assert!(matches!(decode(&b), Err(BodyError::Inconsistent { .. })));
        let mut b = sample();
        b[16..20].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(decode(&b).is_err());
        let mut b = sample();
        b[0..4].copy_from_slice(&(-22i32).to_be_bytes());
        assert!(decode(&b).is_err());
        let mut b = sample();
        b[0..4].copy_from_slice(&3i32.to_be_bytes());
        assert!(decode(&b).is_err());
        // Random bytes never panic.
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let len = (x % 64) as usize;
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                x = x.wrapping_mul(1103515245).wrapping_add(12345);
                v.push((x >> 16) as u8 % 40);
            }
            let _ = decode(&v);
        }
    }
}
