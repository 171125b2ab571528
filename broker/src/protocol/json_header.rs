//! The JSON header's text, fast: a hand-written scanner for the shape clients send, and the string and integer
//! writers of the encoder.
//!
//! [`decode`] reads the header objects real clients write (Java's fastjson, Go's encoding/json, C++, ali-ons,
//! the Rust-port client and wasmq itself): the known top-level fields in any order, unknown ones with scalar
//! values, extField values as strings, plain integers, booleans or null, strings with any JSON escapes, any
//! JSON whitespace. Keys and values are written straight into the [`ExtFields`] arena, which is sized once
//! from the header's length (no growth, no per-field allocation). Anything else (fractions, exponents, numbers
//! of more than 18 digits, `-0`, nested values of unknown fields, duplicate top-level fields, escaped top-level
//! keys, lone surrogates, malformed JSON) gives `None`, and the caller decodes the header with serde, which
//! then decides: the result for every input this scanner accepts is the one serde gives, and malformed input
//! gets serde's error.

use bytes::{BufMut, BytesMut};

use super::codes::LanguageCode;
use super::ext_fields::ExtFields;

/// The fields of a JSON header.
#[derive(Debug)]
pub(super) struct Header {
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: ExtFields,
}

/// Decodes a JSON header of the usual shape; `None` for anything the scanner leaves to serde (see the module
/// doc).
pub(super) fn decode(header: &[u8]) -> Option<Header> {
    // One UTF-8 check for the whole header (serde checks each string it keeps); the scanner then slices it.
    let text = std::str::from_utf8(header).ok()?;
    let mut s = Scan {
        s: text,
        b: header,
        i: 0,
    };
    s.eat(b'{')?;
    let mut h = Header {
        code: 0,
        language: LanguageCode::default(),
        version: 0,
        opaque: 0,
        flag: 0,
        remark: None,
        ext_fields: ExtFields::new(),
    };
    let mut seen = 0u8;
    if s.eat(b'}').is_none() {
        loop {
            s.eat(b'"')?;
            let (key, escaped) = s.raw_str()?;
            if escaped {
                return None;
            }
            s.eat(b':')?;
            s.ws();
            let bit = match key {
                "code" => {
                    h.code = s.i32()?;
                    1
                }
                "language" => {
                    h.language = s.language()?;
                    2
                }
                "version" => {
                    h.version = s.i32()?;
                    4
                }
                "opaque" => {
                    h.opaque = s.i32()?;
                    8
                }
                "flag" => {
                    h.flag = s.i32()?;
                    16
                }
                "remark" => {
                    h.remark = s.remark()?;
                    32
                }
                "extFields" => {
                    h.ext_fields = s.ext_fields()?;
                    64
                }
                _ => {
                    s.skip_scalar()?;
                    0
                }
            };
            if seen & bit != 0 {
                return None; // serde reports a duplicate field
            }
            seen |= bit;
            if s.eat(b',').is_some() {
                continue;
            }
            s.eat(b'}')?;
            break;
        }
    }
    s.ws();
    (s.i == header.len()).then_some(h)
}

/// A cursor over the header's bytes. Every method returns `None` for what it does not handle.
struct Scan<'a> {
    /// The header, as text and as bytes.
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    /// Skips JSON whitespace.
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// Skips whitespace, then consumes `c`.
    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// Consumes `word` (a literal: `true`, `false`, `null`) if it is next.
    #[inline]
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// After an opening quote: the string's raw text (escapes not decoded) and whether it has escapes; consumes
    /// the closing quote. `None` for a control character or a missing closing quote.
    fn raw_str(&mut self) -> Option<(&'a str, bool)> {
        let start = self.i;
        let mut j = start;
        let mut escaped = false;
        loop {
            // Eight bytes at a time: straight to the first that needs a look.
            if let Some(w) = self.b.get(j..j + 8) {
                let m = special(u64::from_le_bytes([
                    w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
                ]));
                if m == 0 {
                    j += 8;
                    continue;
                }
                j += (m.trailing_zeros() / 8) as usize;
            }
            match *self.b.get(j)? {
                b'"' => break,
                b'\\' => {
                    // The escaped byte is never the closing quote; the escape is checked when decoded.
                    escaped = true;
                    j += 2;
                }
                0..=0x1f => return None,
                _ => j += 1,
            }
        }
        // Both ends are ASCII bytes (after the opening quote, at the closing one).
        let s = self.s.get(start..j)?;
        self.i = j + 1;
        Some((s, escaped))
    }

    /// A plain JSON integer: its text and value. `None` for fractions, exponents, leading zeros, `-0` (serde
    /// reads it as a float) and more than 18 digits.
    fn int(&mut self) -> Option<(&'a str, i64)> {
        let start = self.i;
        let neg = self.b.get(self.i) == Some(&b'-');
        if neg {
            self.i += 1;
        }
        let digits = self.i;
        let mut v: i64 = 0;
        while let Some(&c @ b'0'..=b'9') = self.b.get(self.i) {
            if self.i - digits == 18 {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
            self.i += 1;
        }
        let n = self.i - digits;
        if n == 0 || (n > 1 && self.b[digits] == b'0') || (neg && v == 0) {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.b.get(self.i) {
            return None;
        }
        let text = self.s.get(start..self.i)?;
        Some((text, if neg { -v } else { v }))
    }

    fn i32(&mut self) -> Option<i32> {
        let (_, v) = self.int()?;
        i32::try_from(v).ok()
    }

    /// `language`: a name, an ordinal or null.
    fn language(&mut self) -> Option<LanguageCode> {
        match *self.b.get(self.i)? {
            b'"' => {
                self.i += 1;
                let (name, escaped) = self.raw_str()?;
                if escaped {
                    return None;
                }
                Some(language_named(name))
            }
            b'n' => self.literal(b"null").map(|()| LanguageCode::default()),
            _ => self.int().map(|(_, v)| LanguageCode::from_ordinal(v)),
        }
    }

    /// `remark`: a string or null.
    fn remark(&mut self) -> Option<Option<String>> {
        match *self.b.get(self.i)? {
            b'"' => {
                self.i += 1;
                let (raw, escaped) = self.raw_str()?;
                if !escaped {
                    return Some(Some(raw.to_owned()));
                }
                let mut s = String::with_capacity(raw.len());
                unescape(raw, &mut s)?;
                Some(Some(s))
            }
            _ => self.literal(b"null").map(|()| None),
        }
    }

    /// The value of an unknown top-level field: a string, integer, boolean or null.
    fn skip_scalar(&mut self) -> Option<()> {
        match *self.b.get(self.i)? {
            b'"' => {
                self.i += 1;
                let (raw, escaped) = self.raw_str()?;
                if escaped {
                    // Accept only what serde would: decode the escapes into a scratch string.
                    unescape(raw, &mut String::with_capacity(raw.len()))?;
                }
                Some(())
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.int().map(|_| ()),
        }
    }

    /// `extFields`: null or an object of scalars, written into one arena sized from the rest of the header.
    fn ext_fields(&mut self) -> Option<ExtFields> {
        match *self.b.get(self.i)? {
            b'n' => return self.literal(b"null").map(|()| ExtFields::new()),
            b'{' => self.i += 1,
            _ => return None,
        }
        // Decoded text is never longer than its JSON form.
        let mut m = ExtFields::with_text_capacity(self.b.len() - self.i, 16);
        if self.eat(b'}').is_some() {
            return Some(m);
        }
        loop {
            self.eat(b'"')?;
            let key_start = m.text_len();
            let (key, escaped) = self.raw_str()?;
            push_text(m.text_mut(), key, escaped)?;
            self.eat(b':')?;
            self.ws();
            let val_start = m.text_len();
            let present = match *self.b.get(self.i)? {
                b'"' => {
                    self.i += 1;
                    let (val, escaped) = self.raw_str()?;
                    push_text(m.text_mut(), val, escaped)?;
                    true
                }
                b't' => {
                    self.literal(b"true")?;
                    m.text_mut().push_str("true");
                    true
                }
                b'f' => {
                    self.literal(b"false")?;
                    m.text_mut().push_str("false");
                    true
                }
                b'n' => {
                    self.literal(b"null")?;
                    false
                }
                _ => {
                    // A plain integer's text is what serde writes for its value.
                    let (text, _) = self.int()?;
                    m.text_mut().push_str(text);
                    true
                }
            };
            if present {
                m.push_written(key_start, val_start);
            } else {
                // null: the field is absent (an earlier value of the same key stays).
                m.text_mut().truncate(key_start);
            }
            if self.eat(b',').is_some() {
                continue;
            }
            self.eat(b'}')?;
            return Some(m);
        }
    }
}

/// Appends a string's text, decoding its escapes if it has any.
#[inline]
fn push_text(dst: &mut String, raw: &str, escaped: bool) -> Option<()> {
    if escaped {
        unescape(raw, dst)
    } else {
        dst.push_str(raw);
        Some(())
    }
}

/// A mask with the high bit of each byte of `w` (little-endian) that is `"`, `\` or a control character (below
/// 0x20) set: zero when there is none, and the lowest bit set marks the first one (bits above it may be set
/// for bytes that are not).
#[inline]
fn special(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let quote = zero_byte(w ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(w ^ (ONES * u64::from(b'\\')));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    quote | backslash | control
}

/// Appends the text of a string literal's raw content `raw` to `dst`, decoding its escapes. `None` for an
/// invalid escape or a lone surrogate (serde rejects both).
fn unescape(raw: &str, dst: &mut String) -> Option<()> {
    let b = raw.as_bytes();
    let mut run = 0;
    let mut i = 0;
    // Escapes are close together in headers (properties' separators): a plain loop beats a memchr call.
    while let Some(off) = b[i..].iter().position(|&c| c == b'\\') {
        let at = i + off;
        dst.push_str(&raw[run..at]);
        i = at + 2;
        let c = match *b.get(at + 1)? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = hex4(b.get(i..i + 4)?)?;
                i += 4;
                match hi {
                    0xD800..=0xDBFF => {
                        if b.get(i..i + 2)? != b"\\u" {
                            return None;
                        }
                        let lo = hex4(b.get(i + 2..i + 6)?)?;
                        if !(0xDC00..=0xDFFF).contains(&lo) {
                            return None;
                        }
                        i += 6;
                        char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                    }
                    0xDC00..=0xDFFF => return None,
                    _ => char::from_u32(hi)?,
                }
            }
            _ => return None,
        };
        dst.push(c);
        run = i;
    }
    dst.push_str(&raw[run..]);
    Some(())
}

fn hex4(d: &[u8]) -> Option<u32> {
    d.iter().try_fold(0u32, |acc, &c| {
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        Some(acc << 4 | u32::from(v))
    })
}

/// The language of a JSON `language` name: the exact names clients send without a search, anything else as
/// [`LanguageCode::parse`] reads it.
fn language_named(name: &str) -> LanguageCode {
    match name {
        "JAVA" => LanguageCode::Java,
        "CPP" => LanguageCode::Cpp,
        "GO" => LanguageCode::Go,
        "RUST" => LanguageCode::Rust,
        "PYTHON" => LanguageCode::Python,
        "DOTNET" => LanguageCode::Dotnet,
        "NODE_JS" => LanguageCode::NodeJs,
        _ => LanguageCode::parse(name),
    }
}

// ---------------------------------------------------------------- writing

/// Whether `s` has a character [`write_json_str`] escapes.
pub(super) fn needs_escape(s: &str) -> bool {
    let mut words = s.as_bytes().chunks_exact(8);
    for w in words.by_ref() {
        if special(u64::from_le_bytes([
            w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
        ])) != 0
        {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b == b'"' || b == b'\\' || b < 0x20)
}

/// Writes `s` as a JSON string literal (with quotes), escaping `"`, `\` and control characters.
pub(crate) fn write_json_str(dst: &mut BytesMut, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    dst.reserve(s.len() + 2);
    dst.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(w) = bytes.get(i..i + 8) {
            let m = special(u64::from_le_bytes([
                w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
            ]));
            if m == 0 {
                i += 8;
                continue;
            }
            i += (m.trailing_zeros() / 8) as usize;
        }
        let b = bytes[i];
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => {
                i += 1;
                continue;
            }
        };
        dst.put_slice(&bytes[run..i]);
        i += 1;
        run = i;
        if esc.is_empty() {
            dst.put_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]);
        } else {
            dst.put_slice(esc);
        }
    }
    dst.put_slice(&bytes[run..]);
    dst.put_u8(b'"');
}

/// Writes `v` in decimal.
pub(super) fn put_int(dst: &mut BytesMut, v: i64) {
    let mut buf = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        dst.put_u8(b'-');
    }
    dst.put_slice(&buf[i..]);
}
