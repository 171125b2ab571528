//! Property tests of the JSON header fast path ([`json_header::decode`]) against the serde decoder: over
//! generated headers of every shape clients send and many they do not (any field order, whitespace, escapes,
//! surrogate pairs, lone surrogates, numbers of every form, duplicates, unknown fields, nesting) and over
//! random corruptions of them, whenever the fast path accepts a header serde must decode it to the same
//! command; and the fast path must accept every header that has only the constructs it is meant to handle.

use bytes::BytesMut;

use super::command::{decode_json_serde, RemotingCommand, SerializeType};
use super::frame::FrameCodec;
use super::json_header;

/// xorshift64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

/// A header's text, and whether it uses only what the fast path handles.
struct Gen {
    rng: Rng,
    out: String,
    fast: bool,
}

impl Gen {
    fn ws(&mut self) {
        if self.rng.one_in(4) {
            let w = self.rng.pick(&[" ", "\n  ", "\t", "\r\n", "  "]);
            self.out.push_str(w);
        }
    }

    /// A string literal: plain, escaped and non-ASCII characters.
    fn string(&mut self, plain_only: bool) {
        self.out.push('"');
        let max = if self.rng.one_in(8) { 40 } else { 10 };
        let n = self.rng.below(max);
        for _ in 0..n {
            if plain_only {
                let c = b'A' + self.rng.below(26) as u8;
                self.out.push(c as char);
                continue;
            }
            match self.rng.below(20) {
                0 => self.out.push_str(r"\u0001"),
                1 => self.out.push_str(r"\u0002"),
                2 => self.out.push_str(r#"\""#),
                3 => self.out.push_str(r"\\"),
                4 => self
                    .out
                    .push_str(self.rng.pick(&[r"\n", r"\t", r"\r", r"\b", r"\f", r"\/"])),
                5 => self
                    .out
                    .push_str(self.rng.pick(&["é", "中", "😀", "\u{7f}"])),
                6 => self.out.push_str(self.rng.pick(&[
                    r"\u00E9",
                    r"\u4e2D",
                    r"\ud83d\ude00",
                    r"\u0000",
                ])),
                7 if self.rng.one_in(4) => {
                    // Lone or broken surrogates: serde rejects them, the fast path leaves them.
                    let s = self.rng.pick(&[
                        r"\ud83d",
                        r"\ude00",
                        r"\ud83dx",
                        r"\ud83d\u0041",
                        r"\uZZZZ",
                        r"\q",
                    ]);
                    self.out.push_str(s);
                    self.fast = false;
                }
                _ => {
                    let c = b' ' + self.rng.below(95) as u8;
                    if c != b'"' && c != b'\\' {
                        self.out.push(c as char);
                    }
                }
            }
        }
        self.out.push('"');
    }

    /// An integer: usually plain and small, sometimes a form serde reads as a float or out of range.
    fn number(&mut self, i32_field: bool) {
        match self.rng.below(12) {
            0 => {
                let s = self.rng.pick(&["1.0", "-2.5", "1e3", "2E-1", "-0", "0.0"]);
                self.out.push_str(s);
                self.fast = false;
            }
            1 => {
                let s = self.rng.pick(&[
                    "12345678901234567890",
                    "-9223372036854775808",
                    "123456789012345678",
                ]);
                self.out.push_str(s);
                // 18 digits are fast unless the field is an i32 (serde rejects it then; so does the fast path).
                if s.len() != 18 || i32_field {
                    self.fast = false;
                }
            }
            2 if i32_field => {
                self.out.push_str("2147483648");
                self.fast = false;
            }
            3 => self
                .out
                .push_str(self.rng.pick(&["0", "-1", "2147483647", "-2147483648"])),
            _ => {
                let v = self.rng.below(100_000) as i64 - 1000;
                self.out.push_str(&v.to_string());
            }
        }
    }

    fn ext_value(&mut self) {
        match self.rng.below(10) {
            0 => self.number(false),
            1 => self.out.push_str(self.rng.pick(&["true", "false"])),
            2 => self.out.push_str("null"),
            3 if self.rng.one_in(8) => {
                self.out.push_str(self.rng.pick(&["{}", "[1]", "[]"]));
                self.fast = false;
            }
            _ => self.string(false),
        }
    }

    fn ext_fields(&mut self) {
        if self.rng.one_in(10) {
            self.out.push_str("null");
            return;
        }
        self.out.push('{');
        let keys = [
            "a",
            "b",
            "i",
            "topic",
            "queueId",
            "properties",
            "k\\u00e9y",
            "m",
            "",
            "e",
        ];
        let n = self.rng.below(16);
        for i in 0..n {
            if i > 0 {
                self.out.push(',');
            }
            self.ws();
            // Duplicate keys happen: the last value wins, in the first one's place.
            if self.rng.one_in(3) {
                let k = self.rng.pick(&keys);
                self.out.push('"');
                self.out.push_str(k);
                self.out.push('"');
            } else {
                self.string(false);
            }
            self.ws();
            self.out.push(':');
            self.ws();
            self.ext_value();
            self.ws();
        }
        self.out.push('}');
    }

    fn header(&mut self) {
        let mut fields = vec![
            "code",
            "language",
            "version",
            "opaque",
            "flag",
            "remark",
            "extFields",
            "serializeTypeCurrentRPC",
            "unknown",
        ];
        // Shuffle and drop some.
        for i in (1..fields.len()).rev() {
            let j = self.rng.below(i + 1);
            fields.swap(i, j);
        }
        fields.truncate(self.rng.below(fields.len() + 1));
        if self.rng.one_in(20) && !fields.is_empty() {
            // A duplicate known field: serde rejects it (a duplicate unknown one is fine).
            if !matches!(fields[0], "unknown" | "serializeTypeCurrentRPC") {
                self.fast = false;
            }
            fields.push(fields[0]);
        }
        self.ws();
        self.out.push('{');
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.ws();
            self.out.push('"');
            self.out.push_str(f);
            self.out.push('"');
            self.ws();
            self.out.push(':');
            self.ws();
            match *f {
                "code" | "version" | "opaque" | "flag" => self.number(true),
                "language" => match self.rng.below(5) {
                    0 => self
                        .out
                        .push_str(self.rng.pick(&["0", "12", "99", "-1", "null"])),
                    1 => self.string(true),
                    _ => {
                        let l = self.rng.pick(&[
                            r#""JAVA""#,
                            r#""CPP""#,
                            r#""GO""#,
                            r#""RUST""#,
                            r#""java""#,
                            r#"" 3""#,
                            r#""NODE_JS""#,
                        ]);
                        self.out.push_str(l)
                    }
                },
                "remark" => {
                    if self.rng.one_in(2) {
                        self.out.push_str("null");
                    } else {
                        self.string(false);
                    }
                }
                "extFields" => self.ext_fields(),
                "serializeTypeCurrentRPC" => self.out.push_str(r#""JSON""#),
                _ => match self.rng.below(6) {
                    0 => self.number(false),
                    1 => self.out.push_str(self.rng.pick(&["true", "false", "null"])),
                    2 => {
                        self.out.push_str(self.rng.pick(&[r#"{"x":1}"#, "[1,2]"]));
                        self.fast = false;
                    }
                    _ => self.string(false),
                },
            }
            self.ws();
        }
        self.out.push('}');
        self.ws();
    }
}

/// When the fast path accepts `h`, serde decodes it to the same command.
fn agree(h: &[u8]) -> bool {
    let Some(f) = json_header::decode(h) else {
        return false;
    };
    let s: RemotingCommand = match decode_json_serde(h) {
        Ok(s) => s,
        Err(e) => panic!(
            "fast path accepted what serde rejects ({e}): {}",
            String::from_utf8_lossy(h)
        ),
    };
    let same = (
        f.code,
        f.language,
        f.version,
        f.opaque,
        f.flag,
        &f.remark,
        &f.ext_fields,
    ) == (
        s.code,
        s.language,
        s.version,
        s.opaque,
        s.flag,
        &s.remark,
        &s.ext_fields,
    );
    assert!(
        same,
        "{}\nfast {f:?}\nserde {s:?}",
        String::from_utf8_lossy(h)
    );
    round_trips(s);
    true
}

/// `cmd` encodes (JSON and binary) to a header that decodes to `cmd` again.
fn round_trips(mut cmd: RemotingCommand) {
    for ty in [SerializeType::Json, SerializeType::RocketMq] {
        cmd.serialize_type = ty;
        if ty == SerializeType::RocketMq {
            // Binary has no empty remark (length 0 is null) and narrows code and version to shorts.
            if cmd.remark.as_deref() == Some("") {
                cmd.remark = None;
            }
            cmd.code = cmd.code as i16 as i32;
            cmd.version = cmd.version as i16 as i32;
        }
        let mut b = BytesMut::new();
        cmd.encode(&mut b).unwrap();
        let f = FrameCodec::default().decode(&mut b).unwrap().unwrap();
        assert_eq!(RemotingCommand::decode(f).unwrap(), cmd);
    }
}

#[test]
fn fast_path_agrees_with_serde_on_generated_headers() {
    let mut g = Gen {
        rng: Rng(0x2545_F491_4F6C_DD1D),
        out: String::new(),
        fast: true,
    };
    let (mut accepted, mut left) = (0, 0);
    for _ in 0..20_000 {
        g.out.clear();
        g.fast = true;
        g.header();
        let accepted_now = agree(g.out.as_bytes());
        assert_eq!(accepted_now, g.fast, "fast path coverage: {}", g.out);
        if accepted_now {
            accepted += 1;
        } else {
            left += 1;
        }
    }
    // Both kinds were generated in numbers.
    assert!(
        accepted > 5_000 && left > 1_000,
        "{accepted} accepted, {left} left"
    );
}

#[test]
fn fast_path_agrees_with_serde_on_corrupted_headers() {
    let mut g = Gen {
        rng: Rng(0x9E37_79B9_7F4A_7C15),
        out: String::new(),
        fast: true,
    };
    let bytes = b"{}[]\",:\\ 0123456789-.eEtrufalsn\x01\x1f\x80\xc3\xa9";
    let mut accepted = 0;
    for _ in 0..20_000 {
        g.out.clear();
        g.header();
        let mut h = g.out.clone().into_bytes();
        for _ in 0..1 + g.rng.below(3) {
            let at = g.rng.below(h.len() + 1);
            match g.rng.below(4) {
                0 if at < h.len() => {
                    h.remove(at);
                }
                1 => h.insert(at, bytes[g.rng.below(bytes.len())]),
                2 if at < h.len() => h[at] = bytes[g.rng.below(bytes.len())],
                _ => h.truncate(at),
            }
        }
        if agree(&h) {
            accepted += 1;
        }
        // Never a panic from either decoder; errors are typed.
        let _ = decode_json_serde(&h);
    }
    assert!(accepted > 100, "{accepted}");
}

#[test]
fn captured_client_headers_take_the_fast_path() {
    let headers = [
        r#"{"code":105,"language":"JAVA","opaque":1,"flag":0,"version":121,"extFields":{"topic":"TopicTest"}}"#,
        r#"{"code":105,"extFields":{"AccessKey":"","OnsChannel":"ALIYUN","Signature":"N/YT","topic":"TopicTest"},
            "flag":0,"language":"CPP","opaque":0,"remark":"","version":63}"#,
        r#"{"code":105,"language":"RUST","version":474,"opaque":0,"flag":0,"remark":null,
            "extFields":{"topic":"TopicTest"},"serializeTypeCurrentRPC":"JSON"}"#,
        r#"{"code":310,"extFields":{"a":"PG_X","b":"TopicX","c":"TBW102","d":4,"e":0,"f":0,"g":"1795480110217",
            "h":0,"i":"WAIT\u0001true\u0002","j":"0","k":"0","l":16,"m":"1"},"flag":0,"language":"CPP",
            "opaque":7,"remark":"","version":63}"#,
        r#"{"code":11,"extFields":{"consumerGroup":"CG_TAG","topic":"TopicE2E","queueId":0,"queueOffset":0,
            "maxMsgNums":32,"sysFlag":6,"commitOffset":0,"suspendTimeoutMillis":15000,"subscription":"TagA",
            "subVersion":1795480276210,"unitMode":false},"language":"JAVA","opaque":3}"#,
        // Java 4.9 (fastjson) SEND_MESSAGE_V2 and PULL_MESSAGE, as in benches/protocol.rs.
        concat!(
            r#"{"code":310,"extFields":{"a":"PG_BENCH","b":"TopicBench","c":"TBW102","d":"4","e":"3","f":"0","#,
            r#""g":"1733280000123","h":"0","i":"TAGS\u0001TagA\u0002KEYS\u0001order-77\u0002WAIT\u0001true\u0002"#,
            r#"UNIQ_KEY\u00017F0000010C6418B4AAC2A2F6D7B80000\u0002","j":"0","k":"false","l":"16","m":"false","#,
            r#""n":"broker-a"},"flag":0,"language":"JAVA","opaque":4711,"serializeTypeCurrentRPC":"JSON","version":475}"#
        ),
        concat!(
            r#"{"code":11,"extFields":{"commitOffset":"1200","consumerGroup":"CG_BENCH","expressionType":"TAG","#,
            r#""maxMsgBytes":"2147483647","maxMsgNums":"32","queueId":"3","queueOffset":"1234","sysFlag":"3","#,
            r#""subVersion":"1733280000456","subscription":"TagA || TagB","suspendTimeoutMillis":"15000","#,
            r#""topic":"TopicBench"},"flag":0,"language":"JAVA","opaque":4712,"serializeTypeCurrentRPC":"JSON","#,
            r#""version":475}"#
        ),
    ];
    for h in headers {
        assert!(agree(h.as_bytes()), "{h}");
    }
}
