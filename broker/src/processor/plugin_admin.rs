//! Plugin administration over remoting (wasmq's private codes): load, upgrade, unload, list,
//! and a dry run of an expression over sample or stored messages.

use serde::{Deserialize, Serialize};

use crate::context::Broker;
use crate::plugin::batch::{bit, BatchEncoder};
use crate::plugin::{EvalError, PluginError};
use crate::protocol::{request, response, RemotingCommand};
use crate::store::record::{self, Check, Entry};
use crate::store::AcceptAll;

use super::reply;

pub fn handle(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    match req.code {
        request::PLUGIN_LOAD | request::PLUGIN_UPGRADE => load(b, req),
        request::PLUGIN_UNLOAD => unload(b, req),
        request::PLUGIN_LIST => json(req, &b.plugins.list()),
        request::PLUGIN_TEST => test(b, req),
        request::PLUGIN_BIND | request::PLUGIN_UNBIND => bind(b, req),
        request::PLUGIN_BINDINGS => json(
            req,
            &b.plugins
                .bindings()
                .into_iter()
                .map(|(kind, topic, plugin)| Binding {
                    kind: kind.as_str().to_string(),
                    topic,
                    plugin,
                })
                .collect::<Vec<_>>(),
        ),
        _ => RemotingCommand::not_supported(req),
    }
}

fn json(req: &RemotingCommand, v: &impl Serialize) -> RemotingCommand {
    RemotingCommand::response_to(req, response::SUCCESS, None)
        .with_body(serde_json::to_vec(v).unwrap_or_default())
}

fn failed(req: &RemotingCommand, e: PluginError) -> RemotingCommand {
    reply(req, response::SYSTEM_ERROR, e.to_string())
}

fn config(req: &RemotingCommand) -> Result<Option<Vec<(String, String)>>, String> {
    match req.ext_fields.get("config") {
        None => Ok(None),
        Some(c) => serde_json::from_str(c)
            .map(Some)
            .map_err(|e| format!("config must be a JSON array of [key, value] pairs: {e}")),
    }
}

fn load(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let Some(name) = req.ext_fields.get("name") else {
        return reply(req, response::SYSTEM_ERROR, "name is required");
    };
    let cfg = match config(req) {
        Ok(c) => c,
        Err(e) => return reply(req, response::SYSTEM_ERROR, e),
    };
    let r = if req.code == request::PLUGIN_LOAD {
        b.plugins
            .load(name, &req.body, cfg.unwrap_or_default())
            .map(|info| json(req, &info))
    } else {
        // Refused (unless forced) when the new version drops a type a subscription uses.
        b.plugins
            .upgrade_checked(name, &req.body, cfg, force(req), |types| {
                b.clients.subscriptions_of_types(types)
            })
            .map(|u| json(req, &u))
    };
    r.unwrap_or_else(|e| failed(req, e))
}

/// The `force` field of an upgrade or unload (absent: false).
fn force(req: &RemotingCommand) -> bool {
    req.ext_fields
        .get_bool("force")
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// One binding as `wasmq txn bindings` shows it.
#[derive(Debug, Serialize)]
struct Binding {
    kind: String,
    topic: String,
    plugin: String,
}

fn bind(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let e = &req.ext_fields;
    let (Some(kind), Some(topic)) = (e.get("kind"), e.get("topic")) else {
        return reply(req, response::SYSTEM_ERROR, "kind and topic are required");
    };
    let kind: crate::plugin::PluginKind = match kind.parse() {
        Ok(k) => k,
        Err(e) => return failed(req, e),
    };
    if kind == crate::plugin::PluginKind::Filter {
        return reply(
            req,
            response::SYSTEM_ERROR,
            "filters are chosen by the consumer's expression type, not bound to topics",
        );
    }
    if req.code == request::PLUGIN_UNBIND {
        return match b.plugins.unbind(kind, topic) {
            Ok(true) => RemotingCommand::response_to(req, response::SUCCESS, None),
            Ok(false) => reply(
                req,
                response::SYSTEM_ERROR,
                format!("topic {topic} has no {} binding", kind.as_str()),
            ),
            Err(e) => failed(req, e),
        };
    }
    let Some(name) = e.get("name") else {
        return reply(req, response::SYSTEM_ERROR, "name is required");
    };
    match b.plugins.bind(kind, topic, name) {
        Ok(()) => RemotingCommand::response_to(req, response::SUCCESS, None),
        Err(e) => failed(req, e),
    }
}

fn unload(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let Some(name) = req.ext_fields.get("name") else {
        return reply(req, response::SYSTEM_ERROR, "name is required");
    };
    let force = force(req);
    match b
        .plugins
        .unload(name, force, |types| b.clients.subscriptions_of_types(types))
    {
        Ok(()) => RemotingCommand::response_to(req, response::SUCCESS, None),
        Err(e) => failed(req, e),
    }
}

/// A sample message for a dry run.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Sample {
    pub topic: String,
    pub tags: Option<String>,
    pub keys: Option<String>,
    pub properties: std::collections::BTreeMap<String, String>,
    pub body: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TestResult {
    plugin: String,
    version: u64,
    expression_type: String,
    /// The expression's compile error, if any (then `messages` is empty).
    error: Option<String>,
    prefilter: String,
    messages: Vec<TestMessage>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TestMessage {
    /// Index in the samples file (samples), or None (stored messages).
    sample: Option<usize>,
    queue_id: i32,
    queue_offset: i64,
    tags: Option<String>,
    keys: Option<String>,
    /// Every property the filter saw (user and system), in stored order.
    properties: Vec<(String, String)>,
    matched: bool,
}

/// What a prefilter means, for people.
fn prefilter_words(p: &crate::plugin::Prefilter) -> String {
    match p {
        crate::plugin::Prefilter::None => {
            "none: the plugin evaluates every message (batched)".to_string()
        }
        crate::plugin::Prefilter::All => {
            "all: every message matches without calling the plugin".to_string()
        }
        crate::plugin::Prefilter::TagHashes(h) => format!(
            "{} tag hash{}: tested on consume-queue entries, no plugin call and no log read",
            h.len(),
            if h.len() == 1 { "" } else { "es" }
        ),
    }
}

/// Why no filter could be found for a test, with what is loaded.
fn no_filter(b: &Broker, name: Option<&str>, ty: Option<&str>) -> String {
    let filters: Vec<_> = b
        .plugins
        .list()
        .into_iter()
        .filter(|p| !p.expression_types.is_empty())
        .collect();
    match (name, ty) {
        (Some(n), _) => format!(
            "no filter plugin named {n:?} is loaded (loaded filters: {})",
            filters
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (None, t) => {
            let mut types: Vec<&str> = filters
                .iter()
                .flat_map(|p| p.expression_types.iter().map(String::as_str))
                .collect();
            types.sort();
            format!(
                "no loaded plugin serves expression type {:?} (loaded types: {}; types match case-insensitively)",
                t.unwrap_or(""),
                types.join(", ")
            )
        }
    }
}

fn property_pairs(props: &str) -> Vec<(String, String)> {
    crate::protocol::properties::iter(props)
        .flatten()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn test(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let e = &req.ext_fields;
    let Some(expression) = e.get("expression") else {
        return reply(req, response::SYSTEM_ERROR, "expression is required");
    };
    let plugin = match (e.get("name"), e.get("type")) {
        (Some(n), _) => b.plugins.get(n),
        (None, Some(t)) => b.plugins.for_type(&t.to_ascii_uppercase()),
        (None, None) => return reply(req, response::SYSTEM_ERROR, "name or type is required"),
    };
    let Some(plugin) = plugin else {
        return reply(
            req,
            response::SYSTEM_ERROR,
            no_filter(b, e.get("name"), e.get("type")),
        );
    };
    let ty = match e.get("type") {
        Some(t) => t.to_ascii_uppercase(),
        None => plugin.expression_types[0].clone(),
    };
    let mut out = TestResult {
        plugin: plugin.name.clone(),
        version: plugin.version,
        expression_type: ty.clone(),
        error: None,
        prefilter: String::new(),
        messages: Vec::new(),
    };
    let compiled = match plugin.compile(&ty, expression) {
        Ok(c) => c,
        Err(err) => {
            out.error = Some(err.to_string());
            return json(req, &out);
        }
    };
    out.prefilter = prefilter_words(&compiled.prefilter);
    // The messages: samples from the body, or the last `count` of each queue of `topic`.
    let mut records: Vec<Vec<u8>> = Vec::new();
    let mut enc = BatchEncoder::new();
    let mut meta: Vec<TestMessage> = Vec::new();
    if !req.body.is_empty() {
        let samples: Vec<Sample> = match serde_json::from_slice(&req.body) {
            Ok(s) => s,
            Err(err) => {
                return reply(
                    req,
                    response::SYSTEM_ERROR,
                    format!("samples must be a JSON array of {{topic, tags, keys, properties, body}}: {err}"),
                )
            }
        };
        for (i, s) in samples.iter().enumerate() {
            let tagged = s.tags.iter().map(|t| ("TAGS", t.as_str()));
            let keyed = s.keys.iter().map(|k| ("KEYS", k.as_str()));
            let pairs = tagged
                .chain(keyed)
                .chain(s.properties.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let props = match crate::protocol::properties::encode(pairs) {
                Ok(p) => p,
                Err(err) => {
                    return reply(req, response::SYSTEM_ERROR, format!("sample {i}: {err}"))
                }
            };
            enc.push(
                i as i64,
                0,
                s.topic.as_bytes(),
                props.as_bytes(),
                s.body.as_bytes(),
            );
            meta.push(TestMessage {
                sample: Some(i),
                queue_id: -1,
                queue_offset: -1,
                tags: s.tags.clone(),
                keys: s.keys.clone(),
                properties: property_pairs(&props),
                matched: false,
            });
        }
    } else {
        let (Some(topic), Ok(Some(count))) = (e.get("topic"), e.get_i64("count")) else {
            return reply(
                req,
                response::SYSTEM_ERROR,
                "give sample messages in the body, or topic and count",
            );
        };
        let count = count.clamp(1, 10_000) as u64;
        for q in b.store.queue_ids(topic) {
            let Some(cq) = b.store.consume_queue(topic, q) else {
                continue;
            };
            let from = cq.max_offset().saturating_sub(count).max(cq.min_offset());
            let got = b
                .store
                .get_messages(topic, q, from, count as usize, 64 << 20, &AcceptAll);
            for m in got.messages {
                records.push(m.bytes.to_vec());
            }
        }
        for r in &records {
            if let Ok(Entry::Record(v)) = record::decode(
                r,
                Check {
                    crc: false,
                    position: None,
                },
            ) {
                enc.push_record(&v, compiled.needs_body);
                meta.push(TestMessage {
                    sample: None,
                    queue_id: v.queue_id(),
                    queue_offset: v.queue_offset(),
                    tags: v.property("TAGS").map(String::from),
                    keys: v.property("KEYS").map(String::from),
                    properties: property_pairs(v.properties()),
                    matched: false,
                });
            }
        }
    }
    let bits = match &compiled.prefilter {
        crate::plugin::Prefilter::None => match plugin.evaluate(&ty, expression, &enc) {
            Ok(bits) => Some(bits),
            Err(err @ (EvalError::Failed { .. } | EvalError::Quarantined(_))) => {
                return reply(req, response::SYSTEM_ERROR, err.to_string())
            }
            Err(err) => {
                out.error = Some(err.to_string());
                return json(req, &out);
            }
        },
        _ => None,
    };
    for (i, m) in meta.iter_mut().enumerate() {
        m.matched = match (&compiled.prefilter, &bits) {
            (_, Some(bits)) => bit(bits, i),
            (crate::plugin::Prefilter::All, None) => true,
            (crate::plugin::Prefilter::TagHashes(h), None) => {
                h.contains(&record::tag_hash(m.tags.as_deref().unwrap_or(""))) && m.tags.is_some()
            }
            (crate::plugin::Prefilter::None, None) => false,
        };
    }
    out.messages = meta;
    json(req, &out)
}
