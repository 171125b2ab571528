//! `RemotingCommand`: one decoded request or response, with its JSON or ROCKETMQ-binary header codec.
//!
//! Decoding is lenient where real clients differ (REMOTING.md §3): unknown header fields are ignored,
//! `language` may be a name or an ordinal, extField values may be strings, numbers or booleans, `remark` may
//! be null. Encoding is strict where clients are picky: every extField value is emitted as a JSON string, and
//! a response uses the serialize type of its request.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

use super::codes::{response, LanguageCode};
use super::error::CommandError;
use super::ext_fields::ExtFields;
use super::frame::{FrameCodec, RawFrame};
use super::json_header::{self, put_int, write_json_str};

/// Flag bit 0: the command is a response.
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit 1: the sender expects no reply.
pub const FLAG_ONEWAY: i32 = 2;

/// The `version` wasmq reports in the commands it originates (V4_9_4, so Java peers send standard JSON).
pub const WASMQ_VERSION: i32 = 395;

/// Header encoding, the high byte of the frame's second length word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum SerializeType {
    #[default]
    Json = 0,
    RocketMq = 1,
}

impl SerializeType {
    pub fn from_byte(b: u8) -> Result<Self, CommandError> {
        match b {
            0 => Ok(Self::Json),
            1 => Ok(Self::RocketMq),
            other => Err(CommandError::UnknownSerializeType(other)),
        }
    }
}

/// A remoting request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotingCommand {
    /// Request code for requests, response code for responses.
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: ExtFields,
    pub body: Bytes,
    pub serialize_type: SerializeType,
    /// When the frame was decoded (requests read by the server; not on the wire).
    pub received_at: Option<std::time::Instant>,
}

impl RemotingCommand {
    /// A new request (flag 0) from wasmq. The opaque is assigned when it is sent.
    pub fn new_request(code: i32, ext_fields: ExtFields) -> Self {
        Self {
            code,
            language: LanguageCode::Rust,
            version: WASMQ_VERSION,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields,
            body: Bytes::new(),
            serialize_type: SerializeType::Json,
            received_at: None,
        }
    }

    /// A response to `req`: same opaque and serialize type, RESPONSE flag set, empty ext fields and body.
    pub fn response_to(req: &RemotingCommand, code: i32, remark: Option<String>) -> Self {
        Self {
            code,
            language: LanguageCode::Rust,
            version: WASMQ_VERSION,
            opaque: req.opaque,
            flag: FLAG_RESPONSE,
            remark,
            ext_fields: ExtFields::new(),
            body: Bytes::new(),
            serialize_type: req.serialize_type,
            received_at: None,
        }
    }

    /// The `REQUEST_CODE_NOT_SUPPORTED` (3) answer clients expect for codes we do not handle.
    pub fn not_supported(req: &RemotingCommand) -> Self {
        Self::response_to(
            req,
            response::REQUEST_CODE_NOT_SUPPORTED,
            Some(format!("request type {} not supported", req.code)),
        )
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn with_ext_fields(mut self, ext_fields: ExtFields) -> Self {
        self.ext_fields = ext_fields;
        self
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    pub fn mark_oneway(&mut self) {
        self.flag |= FLAG_ONEWAY;
    }

    /// Decodes the header of a frame; the body is taken as is (zero-copy).
    pub fn decode(frame: RawFrame) -> Result<Self, CommandError> {
        let serialize_type = SerializeType::from_byte(frame.serialize_type)?;
        let mut cmd = match serialize_type {
            SerializeType::Json => decode_json(&frame.header)?,
            SerializeType::RocketMq => decode_binary(&frame.header)?,
        };
        cmd.serialize_type = serialize_type;
        cmd.body = frame.body;
        Ok(cmd)
    }

    /// Appends this command as one frame to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), CommandError> {
        dst.reserve(self.body.len());
        self.encode_header(dst)?;
        dst.put_slice(&self.body);
        Ok(())
    }

    /// Appends the frame's length words and header to `dst`; the caller must write `self.body` right after.
    pub fn encode_header(&self, dst: &mut BytesMut) -> Result<(), CommandError> {
        let remark = self.remark.as_ref().map_or(0, String::len);
        dst.reserve(160 + remark + self.ext_fields.text_len() + self.ext_fields.len() * 8);
        let start = FrameCodec::begin(dst);
        match self.serialize_type {
            SerializeType::Json => encode_json(self, dst),
            SerializeType::RocketMq => encode_binary(self, dst),
        }
        FrameCodec::finish_header(dst, start, self.serialize_type as u8, self.body.len())?;
        Ok(())
    }
}

// ---------------------------------------------------------------- JSON

#[derive(Deserialize)]
struct JsonHeader {
    #[serde(default)]
    code: i32,
    #[serde(default)]
    language: LanguageField,
    #[serde(default)]
    version: i32,
    #[serde(default)]
    opaque: i32,
    #[serde(default)]
    flag: i32,
    #[serde(default)]
    remark: Option<String>,
    #[serde(default, rename = "extFields")]
    ext_fields: ExtFields,
}

#[derive(Default)]
struct LanguageField(LanguageCode);

impl<'de> Deserialize<'de> for LanguageField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LanguageField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a language name or ordinal")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LanguageField, E> {
                Ok(LanguageField(LanguageCode::parse(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LanguageField, E> {
                Ok(LanguageField(LanguageCode::from_ordinal(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LanguageField, E> {
                Ok(LanguageField(LanguageCode::from_ordinal(
                    i64::try_from(v).unwrap_or(-1),
                )))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LanguageField, E> {
                Ok(LanguageField::default())
            }
        }
        d.deserialize_any(V)
    }
}

fn decode_json(header: &[u8]) -> Result<RemotingCommand, CommandError> {
    if let Some(h) = json_header::decode(header) {
        return Ok(RemotingCommand {
            code: h.code,
            language: h.language,
            version: h.version,
            opaque: h.opaque,
            flag: h.flag,
            remark: h.remark,
            ext_fields: h.ext_fields,
            body: Bytes::new(),
            serialize_type: SerializeType::Json,
            received_at: None,
        });
    }
    decode_json_serde(header)
}

/// The general JSON decoder: everything the fast path leaves (unusual shapes, malformed input).
pub(super) fn decode_json_serde(header: &[u8]) -> Result<RemotingCommand, CommandError> {
    let h: JsonHeader = serde_json::from_slice(header)?;
    Ok(RemotingCommand {
        code: h.code,
        language: h.language.0,
        version: h.version,
        opaque: h.opaque,
        flag: h.flag,
        remark: h.remark,
        ext_fields: h.ext_fields,
        body: Bytes::new(),
        serialize_type: SerializeType::Json,
        received_at: None,
    })
}

fn encode_json(cmd: &RemotingCommand, dst: &mut BytesMut) {
    dst.put_slice(b"{\"code\":");
    put_int(dst, cmd.code as i64);
    dst.put_slice(b",\"language\":\"");
    dst.put_slice(cmd.language.name().as_bytes());
    dst.put_slice(b"\",\"version\":");
    put_int(dst, cmd.version as i64);
    dst.put_slice(b",\"opaque\":");
    put_int(dst, cmd.opaque as i64);
    dst.put_slice(b",\"flag\":");
    put_int(dst, cmd.flag as i64);
    dst.put_slice(b",\"remark\":");
    match &cmd.remark {
        Some(r) => write_json_str(dst, r),
        None => dst.put_slice(b"null"),
    }
    dst.put_slice(b",\"extFields\":{");
    // One look at all the text for characters to escape (responses have none): without any, each field is
    // copied as is.
    let plain = !json_header::needs_escape(cmd.ext_fields.text());
    for (i, (k, v)) in cmd.ext_fields.iter().enumerate() {
        if i > 0 {
            dst.put_u8(b',');
        }
        if plain {
            dst.put_u8(b'"');
            dst.put_slice(k.as_bytes());
            dst.put_slice(b"\":\"");
            dst.put_slice(v.as_bytes());
            dst.put_u8(b'"');
        } else {
            write_json_str(dst, k);
            dst.put_u8(b':');
            write_json_str(dst, v);
        }
    }
    dst.put_slice(b"},\"serializeTypeCurrentRPC\":\"JSON\"}");
}

// ---------------------------------------------------------------- ROCKETMQ binary

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CommandError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(CommandError::Binary(what))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn i16(&mut self, what: &'static str) -> Result<i16, CommandError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, CommandError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn len32(&mut self, what: &'static str) -> Result<usize, CommandError> {
        usize::try_from(self.i32(what)?).map_err(|_| CommandError::Binary(what))
    }
    fn str(&mut self, n: usize, what: &'static str) -> Result<&'a str, CommandError> {
        std::str::from_utf8(self.take(n, what)?).map_err(|_| CommandError::Binary(what))
    }
    /// As [`Reader::str`], sliced from `text` (the whole buffer, when it is valid UTF-8) without checking again.
    fn str_of(
        &mut self,
        text: Option<&'a str>,
        n: usize,
        what: &'static str,
    ) -> Result<&'a str, CommandError> {
        let start = self.pos;
        let bytes = self.take(n, what)?;
        match text.and_then(|t| t.get(start..self.pos)) {
            Some(s) => Ok(s),
            None => std::str::from_utf8(bytes).map_err(|_| CommandError::Binary(what)),
        }
    }
}

fn decode_binary(header: &[u8]) -> Result<RemotingCommand, CommandError> {
    let mut r = Reader {
        buf: header,
        pos: 0,
    };
    let code = r.i16("code")? as i32;
    let language = LanguageCode::from_ordinal(r.take(1, "language")?[0] as i64);
    let version = r.i16("version")? as i32;
    let opaque = r.i32("opaque")?;
    let flag = r.i32("flag")?;
    let remark_len = r.len32("remark length")?;
    let remark = match remark_len {
        0 => None,
        n => Some(r.str(n, "remark")?.to_owned()),
    };
    let ext_len = r.len32("extFields length")?;
    let mut ext = Reader {
        buf: r.take(ext_len, "extFields")?,
        pos: 0,
    };
    // Key and value text is never longer than the extFields block.
    let mut ext_fields = ExtFields::with_text_capacity(ext_len, 16);
    // One UTF-8 check for the block (its length words are ASCII bytes unless a key or value is 128 bytes or
    // longer); fields are checked one by one only when it fails.
    let text = std::str::from_utf8(ext.buf).ok();
    while ext.pos < ext.buf.len() {
        let klen = ext.i16("extField key length")? as u16 as usize;
        let k = ext.str_of(text, klen, "extField key")?;
        let vlen = ext.len32("extField value length")?;
        let v = ext.str_of(text, vlen, "extField value")?;
        let key_start = ext_fields.text_len();
        ext_fields.text_mut().push_str(k);
        let val_start = ext_fields.text_len();
        ext_fields.text_mut().push_str(v);
        ext_fields.push_written(key_start, val_start);
    }
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        body: Bytes::new(),
        serialize_type: SerializeType::RocketMq,
        received_at: None,
    })
}

fn encode_binary(cmd: &RemotingCommand, dst: &mut BytesMut) {
    // Java's serializer narrows code and version to shorts as well.
    dst.put_i16(cmd.code as i16);
    dst.put_u8(cmd.language.ordinal());
    dst.put_i16(cmd.version as i16);
    dst.put_i32(cmd.opaque);
    dst.put_i32(cmd.flag);
    match &cmd.remark {
        Some(r) if !r.is_empty() => {
            dst.put_i32(r.len() as i32);
            dst.put_slice(r.as_bytes());
        }
        _ => dst.put_i32(0),
    }
    let len_pos = dst.len();
    dst.put_i32(0);
    for (k, v) in cmd.ext_fields.iter() {
        dst.put_i16(k.len() as i16);
        dst.put_slice(k.as_bytes());
        dst.put_i32(v.len() as i32);
        dst.put_slice(v.as_bytes());
    }
    let ext_len = (dst.len() - len_pos - 4) as i32;
    dst[len_pos..len_pos + 4].copy_from_slice(&ext_len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(header: &str, body: &[u8]) -> RawFrame {
        RawFrame {
            serialize_type: 0,
            header: Bytes::copy_from_slice(header.as_bytes()),
            body: Bytes::copy_from_slice(body),
        }
    }

    fn round_trip(cmd: &RemotingCommand) -> RemotingCommand {
        let mut b = BytesMut::new();
        cmd.encode(&mut b).unwrap();
        let f = FrameCodec::default().decode(&mut b).unwrap().unwrap();
        assert!(b.is_empty());
        RemotingCommand::decode(f).unwrap()
    }

    #[test]
    fn decodes_captured_client_headers() {
        let rust = r#"{"code":105,"language":"RUST","version":474,"opaque":0,"flag":0,"remark":null,
            "extFields":{"topic":"TopicTest"},"serializeTypeCurrentRPC":"JSON"}"#;
        let c = RemotingCommand::decode(frame_of(rust, b"")).unwrap();
        assert_eq!(
            (c.code, c.language, c.version, c.remark.as_deref()),
            (105, LanguageCode::Rust, 474, None)
        );
        assert_eq!(c.ext_fields.get("topic"), Some("TopicTest"));

        let cpp = r#"{"code":310,"extFields":{"a":"PG_X","d":4,"e":0,"k":"0","m":"1","unitMode":false},
            "flag":0,"language":"CPP","opaque":7,"remark":"","version":63}"#;
        let c = RemotingCommand::decode(frame_of(cpp, b"xyz")).unwrap();
        assert_eq!(c.language, LanguageCode::Cpp);
        assert_eq!(c.opaque, 7);
        assert_eq!(c.ext_fields.get_i32("d").unwrap(), Some(4));
        assert_eq!(c.ext_fields.get_bool("unitMode").unwrap(), Some(false));
        assert_eq!(&c.body[..], b"xyz");

        let minimal = r#"{"code":34,"language":3,"opaque":1}"#;
        let c = RemotingCommand::decode(frame_of(minimal, b"")).unwrap();
        assert_eq!(c.language, LanguageCode::Python);
        assert!(c.ext_fields.is_empty());
    }

    #[test]
    fn rejects_garbage_headers() {
        for h in [
            "",
            "{",
            "{\"code\":\"x\"}",
            "\u{0}\u{1}",
            "{\"extFields\":{\"a\":{}}}",
        ] {
            assert!(RemotingCommand::decode(frame_of(h, b"")).is_err(), "{h}");
        }
        let f = RawFrame {
            serialize_type: 7,
            header: Bytes::new(),
            body: Bytes::new(),
        };
        assert!(matches!(
            RemotingCommand::decode(f),
            Err(CommandError::UnknownSerializeType(7))
        ));
    }

    #[test]
    fn json_round_trip_emits_strings() {
        let mut ext = ExtFields::new();
        ext.insert("properties", "KEYS\u{1}a \"b\"\\\u{2}");
        ext.insert_display("queueOffset", -12i64);
        let mut req = RemotingCommand::new_request(10, ext).with_body(&b"hello"[..]);
        req.opaque = 99;
        req.remark = Some("line\nbreak".into());
        let back = round_trip(&req);
        assert_eq!(back, req);

        let mut b = BytesMut::new();
        req.encode(&mut b).unwrap();
        let text = std::str::from_utf8(&b[8..b.len() - 5]).unwrap();
        assert!(text.contains(r#""queueOffset":"-12""#), "{text}");
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["extFields"]["properties"], "KEYS\u{1}a \"b\"\\\u{2}");
    }

    #[test]
    fn response_helpers() {
        let mut req = RemotingCommand::new_request(9999, ExtFields::new());
        req.opaque = 5;
        req.serialize_type = SerializeType::RocketMq;
        assert!(!req.is_response() && !req.is_oneway());
        let resp = RemotingCommand::not_supported(&req);
        assert!(resp.is_response());
        assert_eq!(resp.opaque, 5);
        assert_eq!(resp.code, response::REQUEST_CODE_NOT_SUPPORTED);
        assert_eq!(resp.serialize_type, SerializeType::RocketMq);
        assert_eq!(
            resp.remark.as_deref(),
            Some("request type 9999 not supported")
        );
        req.mark_oneway();
        assert!(req.is_oneway());
    }

    #[test]
    fn random_bytes_never_panic() {
        let codec = FrameCodec::new(4096);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..3000 {
            let len = (next() % 96) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 2 == 0 && len >= 8 {
                // Plausible lengths so the header decoders get exercised.
                let total = (len - 4) as i32;
                bytes[..4].copy_from_slice(&total.to_be_bytes());
                let hl = (next() % (len as u64 - 7)) as u32 | ((round as u32 % 3) << 24);
                bytes[4..8].copy_from_slice(&hl.to_be_bytes());
            }
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(f)) = codec.decode(&mut buf) {
                let _ = RemotingCommand::decode(f);
            }
        }
    }

    #[test]
    fn binary_round_trip_and_truncation() {
        let mut ext = ExtFields::new();
        ext.insert("topic", "T");
        ext.insert("queueId", "3");
        let mut req = RemotingCommand::new_request(11, ext).with_body(&b"b"[..]);
        req.serialize_type = SerializeType::RocketMq;
        req.opaque = -4;
        req.flag = FLAG_ONEWAY;
        req.remark = Some("r".into());
        assert_eq!(round_trip(&req), req);

        let mut b = BytesMut::new();
        req.encode(&mut b).unwrap();
        let f = FrameCodec::default().decode(&mut b).unwrap().unwrap();
        for cut in 0..f.header.len() {
            let t = RawFrame {
                serialize_type: 1,
                header: f.header.slice(..cut),
                body: Bytes::new(),
            };
            assert!(RemotingCommand::decode(t).is_err(), "cut at {cut}");
        }
        // A negative value length must not panic.
        let mut h = BytesMut::new();
        h.put_slice(&f.header[..f.header.len() - 1]);
        let bad = RawFrame {
            serialize_type: 1,
            header: Bytes::from_static(&[
                0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
            ]),
            body: Bytes::new(),
        };
        assert!(RemotingCommand::decode(bad).is_err());
    }
}
