//! Building send requests and printing stored messages.

use wasmq::protocol::{request, ExtFields, RemotingCommand};
use wasmq::store::record::{self, Check, Entry, RecordView};

/// A 32-hex-character unique message key (RocketMQ's UNIQ_KEY shape).
pub fn uniq_key(seq: u64) -> String {
    let pid = std::process::id() as u64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!(
        "{:08X}{:012X}{:012X}",
        pid as u32,
        now & 0xFFFF_FFFF_FFFF,
        seq & 0xFFFF_FFFF_FFFF
    )
}

/// `k 0x01 v 0x02` properties.
pub fn properties(
    tag: Option<&str>,
    keys: Option<&str>,
    extra: &[(String, String)],
    uniq: &str,
) -> String {
    let mut p = String::new();
    let mut put = |k: &str, v: &str| {
        p.push_str(k);
        p.push('\u{1}');
        p.push_str(v);
        p.push('\u{2}');
    };
    if let Some(t) = tag {
        put("TAGS", t);
    }
    if let Some(k) = keys {
        put("KEYS", k);
    }
    for (k, v) in extra {
        put(k, v);
    }
    put("UNIQ_KEY", uniq);
    put("WAIT", "true");
    p
}

/// SEND_MESSAGE_V2 (letter header).
pub fn send_request(
    topic: &str,
    queue: i32,
    props: &str,
    body: Vec<u8>,
    batch: bool,
) -> RemotingCommand {
    let mut e = ExtFields::new();
    let born = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        .to_string();
    e.insert("a", "wasmq-cli");
    e.insert("b", topic);
    e.insert("c", "TBW102");
    e.insert("d", "4");
    e.insert_display("e", queue);
    e.insert("f", "0");
    e.insert("g", &born);
    e.insert("h", "0");
    e.insert("i", props);
    e.insert("j", "0");
    e.insert("k", "false");
    let code = if batch {
        e.insert("m", "true");
        request::SEND_BATCH_MESSAGE
    } else {
        request::SEND_MESSAGE_V2
    };
    RemotingCommand::new_request(code, e).with_body(body)
}

/// Walks concatenated stored records.
pub fn for_each(body: &[u8], mut f: impl FnMut(&RecordView<'_>)) -> anyhow::Result<usize> {
    let mut rest = body;
    let mut n = 0;
    while !rest.is_empty() {
        let Ok(Entry::Record(r)) = record::decode(
            rest,
            Check {
                crc: false,
                position: None,
            },
        ) else {
            anyhow::bail!("undecodable record in the reply");
        };
        f(&r);
        n += 1;
        rest = &rest[r.total_size()..];
    }
    Ok(n)
}

/// One line describing a message.
pub fn describe(r: &RecordView<'_>) -> String {
    line(r, false)
}

/// [`describe`] with every property the message carries (user and system: what a filter sees),
/// as `properties={k=v,k2=v2}` before the body.
pub fn describe_with_properties(r: &RecordView<'_>) -> String {
    line(r, true)
}

fn line(r: &RecordView<'_>, with_properties: bool) -> String {
    let id = wasmq::protocol::message_id::encode(r.store_host(), r.physical_offset());
    let body = match std::str::from_utf8(r.body()) {
        Ok(s) if s.len() <= 200 && r.sysflag() & 1 == 0 => s.to_string(),
        _ => format!("<{} bytes>", r.body().len()),
    };
    let props = if with_properties {
        format!("properties={{{}}} ", properties_text(r.properties()))
    } else {
        String::new()
    };
    format!(
        "topic={} queue={} offset={} msgId={} tags={} keys={} {props}body={}",
        r.topic(),
        r.queue_id(),
        r.queue_offset(),
        id,
        r.property("TAGS").unwrap_or(""),
        r.property("KEYS").unwrap_or(""),
        body
    )
}

/// `k=v,k2=v2` in stored order (RocketMQ's `k \x01 v \x02` encoding); a damaged tail is shown
/// as `<malformed>`.
fn properties_text(props: &str) -> String {
    let mut out = Vec::new();
    for kv in wasmq::protocol::properties::iter(props) {
        match kv {
            Ok((k, v)) => out.push(format!("{k}={v}")),
            Err(_) => {
                out.push("<malformed>".to_string());
                break;
            }
        }
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_listed_in_stored_order() {
        let p = properties(Some("A"), None, &[("color".into(), "red".into())], "U1");
        assert_eq!(
            properties_text(&p),
            "TAGS=A,color=red,UNIQ_KEY=U1,WAIT=true"
        );
        assert_eq!(properties_text(""), "");
        assert_eq!(properties_text("a\u{1}1\u{2}broken"), "a=1,<malformed>");
    }
}
