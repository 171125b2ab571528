//! Loopback ports, request builders and reply decoding shared by the broker tests
//! (`broker_support::wire`) and the benches (`broker/benches/support`, which includes this file
//! by path).

use std::net::TcpListener;

use wasmq::protocol::{request, ExtFields, RemotingCommand};
use wasmq::store::record::{self, Check, Entry};

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn ext(pairs: &[(&str, &str)]) -> ExtFields {
    let mut e = ExtFields::new();
    for (k, v) in pairs {
        e.insert(k, v);
    }
    e
}

/// A send as a producer makes it (letter header): producer group `a` (`PG` unless set), topic
/// `b`, queue `e`, sysflag `f` (left out unless set), born timestamp `g` (1 unless set),
/// properties `i`.
#[derive(Debug, Clone, Copy)]
pub struct SendReq<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    pub queue: i32,
    pub sysflag: Option<i32>,
    pub born_ms: i64,
    pub props: &'a str,
}

impl<'a> SendReq<'a> {
    pub fn new(topic: &'a str, queue: i32, props: &'a str) -> Self {
        SendReq {
            group: "PG",
            topic,
            queue,
            sysflag: None,
            born_ms: 1,
            props,
        }
    }

    pub fn group(self, group: &'a str) -> Self {
        SendReq { group, ..self }
    }

    pub fn sysflag(self, sysflag: i32) -> Self {
        SendReq {
            sysflag: Some(sysflag),
            ..self
        }
    }

    pub fn born(self, born_ms: i64) -> Self {
        SendReq { born_ms, ..self }
    }

    fn fields(&self) -> ExtFields {
        let queue = self.queue.to_string();
        let sysflag = self.sysflag.map(|f| f.to_string());
        let born = self.born_ms.to_string();
        let mut e = ext(&[("a", self.group), ("b", self.topic), ("e", &queue)]);
        if let Some(f) = &sysflag {
            e.insert("f", f);
        }
        e.insert("g", &born);
        e.insert("i", self.props);
        e
    }

    /// SEND_MESSAGE_V2: one message.
    pub fn request(self, body: Vec<u8>) -> RemotingCommand {
        RemotingCommand::new_request(request::SEND_MESSAGE_V2, self.fields()).with_body(body)
    }

    /// SEND_BATCH_MESSAGE: `encoded` holds the batch's entries
    /// (`wasmq::protocol::batch::encode_entry`).
    pub fn batch(self, encoded: Vec<u8>) -> RemotingCommand {
        RemotingCommand::new_request(request::SEND_BATCH_MESSAGE, self.fields()).with_body(encoded)
    }
}

/// SEND_MESSAGE_V2 (letter header) to `topic`/`queue`.
pub fn send_req(topic: &str, queue: i32, props: &str, body: &[u8]) -> RemotingCommand {
    SendReq::new(topic, queue, props).request(body.to_vec())
}

/// A PULL_MESSAGE: up to `max` messages (32 unless set) from `offset`, held up to
/// `suspend_ms` (0 unless set) when nothing is there, subscription `*` unless a filter is set.
#[derive(Debug, Clone, Copy)]
pub struct PullReq<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    pub queue: i32,
    pub offset: i64,
    pub max: u32,
    pub suspend_ms: i64,
    pub subscription: &'a str,
    /// `expressionType` (left out unless set): `TAG`, `SQL92`, ...
    pub expression_type: Option<&'a str>,
}

impl<'a> PullReq<'a> {
    pub fn new(group: &'a str, topic: &'a str, queue: i32, offset: i64) -> Self {
        PullReq {
            group,
            topic,
            queue,
            offset,
            max: 32,
            suspend_ms: 0,
            subscription: "*",
            expression_type: None,
        }
    }

    pub fn max(self, max: u32) -> Self {
        PullReq { max, ..self }
    }

    pub fn suspend(self, suspend_ms: i64) -> Self {
        PullReq { suspend_ms, ..self }
    }

    /// The subscription in the request: `expression` of type `ty`.
    pub fn filter(self, ty: &'a str, expression: &'a str) -> Self {
        PullReq {
            subscription: expression,
            expression_type: Some(ty),
            ..self
        }
    }

    pub fn request(self) -> RemotingCommand {
        let flag = if self.suspend_ms > 0 { "6" } else { "4" };
        let mut e = ext(&[
            ("consumerGroup", self.group),
            ("topic", self.topic),
            ("queueId", &self.queue.to_string()),
            ("queueOffset", &self.offset.to_string()),
            ("maxMsgNums", &self.max.to_string()),
            ("sysFlag", flag),
            ("suspendTimeoutMillis", &self.suspend_ms.to_string()),
            ("subscription", self.subscription),
        ]);
        if let Some(ty) = self.expression_type {
            e.insert("expressionType", ty);
        }
        RemotingCommand::new_request(request::PULL_MESSAGE, e)
    }
}

/// PULL_MESSAGE with the subscription in the request (`*` unless given), held up to
/// `suspend_ms` when nothing is there.
pub fn pull_req(
    group: &str,
    topic: &str,
    queue: i32,
    offset: i64,
    max: u32,
    suspend_ms: i64,
) -> RemotingCommand {
    PullReq::new(group, topic, queue, offset)
        .max(max)
        .suspend(suspend_ms)
        .request()
}

/// One stored record of a reply, owned.
#[derive(Debug, Clone)]
pub struct Rec {
    pub topic: String,
    pub queue_offset: i64,
    pub phys: i64,
    pub body: Vec<u8>,
    pub props: String,
    pub store_ts: i64,
    pub reconsume: i32,
}

impl Rec {
    pub fn prop(&self, k: &str) -> Option<&str> {
        wasmq::protocol::properties::get_property(&self.props, k)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Every record of a PULL / QUERY / VIEW reply body, each CRC-checked.
pub fn records(body: &[u8]) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let Ok(Entry::Record(v)) = record::decode(
            rest,
            Check {
                crc: true,
                position: None,
            },
        ) else {
            panic!("bad record in a reply body")
        };
        out.push(Rec {
            topic: v.topic().to_string(),
            queue_offset: v.queue_offset(),
            phys: v.physical_offset(),
            body: v.body().to_vec(),
            props: v.properties().to_string(),
            store_ts: v.store_timestamp(),
            reconsume: v.reconsume_times(),
        });
        rest = &rest[v.total_size()..];
    }
    out
}
