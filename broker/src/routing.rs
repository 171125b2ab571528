//! The send path's routing step: the router plugin bound to a topic decides, per send
//! request and before anything is stored, where each message goes (keep, another queue,
//! another topic, extra dispatch targets, or reject). Every verdict is checked here against
//! the topics and queues that exist and that producers may write; a request is applied whole
//! or refused whole, so nothing is half-written.
//!
//! A router that fails (trap, timeout, wrong number of verdicts, or a verdict naming a queue
//! or topic that cannot be written) is counted like any plugin failure; its policy decides:
//! `keep` (= deliver) stores the request where the client sent it, anything else refuses it.

use std::cell::RefCell;
use std::sync::Arc;

use crate::context::Broker;
use crate::meta::TopicConfig;
use crate::plugin::batch::BatchEncoder;
use crate::plugin::{Destination, EvalError, FailurePolicy, LoadedRouter, RouteTarget};
use crate::protocol::response;
use crate::store::multi_dispatch::{DispatchTarget, MAX_TARGETS};
use crate::store::record::SYSFLAG_COMPRESSED;
use crate::store::MessageInput;

/// Where the messages of a request go after routing.
#[derive(Debug, Default)]
pub struct Plan {
    /// Per message: its topic (an index into `topics`) and queue.
    dest: Vec<(usize, i32)>,
    topics: Vec<String>,
    /// Per message: extra dispatch targets (empty for most).
    pub extra: Vec<Vec<DispatchTarget>>,
}

impl Plan {
    pub fn topic(&self, i: usize) -> &str {
        &self.topics[self.dest[i].0]
    }

    pub fn queue(&self, i: usize) -> i32 {
        self.dest[i].1
    }

    /// Whether any message has extra targets.
    pub fn fans_out(&self) -> bool {
        self.extra.iter().any(|e| !e.is_empty())
    }

    /// `msgs` with their routed topics and queues.
    pub fn apply<'a>(&'a self, msgs: &[MessageInput<'a>]) -> Vec<MessageInput<'a>> {
        msgs.iter()
            .enumerate()
            .map(|(i, m)| MessageInput {
                topic: self.topic(i),
                queue_id: self.queue(i),
                ..*m
            })
            .collect()
    }
}

/// Why a request cannot be stored: a response code and remark for the producer.
pub type Refusal = (i32, String);

thread_local! {
    static ENCODER: RefCell<BatchEncoder> = RefCell::new(BatchEncoder::new());
}

/// Routes the messages of one request to `topic` (the topic the client sent to) through
/// `router`. `Ok(None)`: every message stays where the client sent it.
pub fn route(
    b: &Broker,
    router: &Arc<LoadedRouter>,
    topic: &TopicConfig,
    msgs: &[MessageInput<'_>],
) -> Result<Option<Plan>, Refusal> {
    let max_body = b.config.store.max_message_size;
    let verdicts = ENCODER.with(|enc| {
        let mut enc = enc.borrow_mut();
        enc.clear();
        for m in msgs {
            let inflated;
            let body = if !router.needs_body {
                &[][..]
            } else if m.sysflag & SYSFLAG_COMPRESSED != 0 {
                // The router sees the body the producer wrote, not its zlib form.
                inflated = inflate(m.body, max_body);
                inflated.as_deref().unwrap_or(m.body)
            } else {
                m.body
            };
            enc.push(
                m.queue_id as i64,
                m.born_timestamp,
                m.topic.as_bytes(),
                m.properties.as_bytes(),
                body,
            );
        }
        router.route(topic.write_queue_nums, &enc)
    });
    let verdicts = match verdicts {
        Ok(v) => v,
        Err(e) => return fallback(router, e),
    };
    if verdicts
        .iter()
        .all(|v| v.route == Destination::Keep && v.extra.is_empty())
    {
        return Ok(None);
    }
    let mut plan = Plan {
        dest: Vec::with_capacity(msgs.len()),
        topics: vec![topic.topic_name.clone()],
        extra: Vec::with_capacity(msgs.len()),
    };
    // Topics named by this request's verdicts, resolved once each.
    let mut configs: Vec<Arc<TopicConfig>> = Vec::new();
    let mut resolve = |name: &str, plan: &mut Plan| -> Result<(usize, u32), String> {
        if name == topic.topic_name {
            return Ok((0, topic.write_queue_nums));
        }
        if let Some(i) = plan.topics.iter().position(|t| t == name) {
            return Ok((i, configs[i - 1].write_queue_nums));
        }
        if crate::context::is_system_topic(name) {
            return Err(format!("topic {name} is a system topic"));
        }
        let cfg = b
            .topic_for_write(name)
            .map_err(|(_, remark)| format!("topic {name}: {remark}"))?;
        plan.topics.push(name.to_string());
        configs.push(cfg.clone());
        Ok((plan.topics.len() - 1, cfg.write_queue_nums))
    };
    for (i, (m, v)) in msgs.iter().zip(verdicts).enumerate() {
        let bad = |why: String| format!("message {i}: {why}");
        let (t, q) = match v.route {
            Destination::Reject(reason) => {
                return Err((
                    response::MESSAGE_ILLEGAL,
                    format!("rejected by router {}: {reason}", router.name),
                ))
            }
            Destination::Keep => (0, m.queue_id),
            Destination::Queue(q) => {
                if q >= topic.write_queue_nums {
                    return invalid(
                        router,
                        bad(format!(
                            "queue {q} does not exist in topic {} ({} write queues)",
                            topic.topic_name, topic.write_queue_nums
                        )),
                    );
                }
                (0, q as i32)
            }
            Destination::Redirect(target) => {
                match place(&target, m.queue_id, &mut plan, &mut resolve) {
                    Ok(d) => d,
                    Err(why) => return invalid(router, bad(why)),
                }
            }
        };
        plan.dest.push((t, q));
        if v.extra.len() > MAX_TARGETS {
            return invalid(
                router,
                bad(format!(
                    "{} extra targets, at most {MAX_TARGETS}",
                    v.extra.len()
                )),
            );
        }
        let mut extra: Vec<DispatchTarget> = Vec::new();
        for target in &v.extra {
            let (et, eq) = match place(target, m.queue_id, &mut plan, &mut resolve) {
                Ok(d) => d,
                Err(why) => return invalid(router, bad(format!("extra target: {why}"))),
            };
            let d = DispatchTarget {
                topic: plan.topics[et].clone(),
                queue_id: eq,
            };
            if (et, eq) != (t, q) && !extra.contains(&d) {
                extra.push(d);
            }
        }
        plan.extra.push(extra);
    }
    Ok(Some(plan))
}

/// The topic index and queue of a target; without a queue, the client's queue id when the
/// topic has it, else that id modulo the topic's write queue count.
fn place(
    target: &RouteTarget,
    client_queue: i32,
    plan: &mut Plan,
    resolve: &mut impl FnMut(&str, &mut Plan) -> Result<(usize, u32), String>,
) -> Result<(usize, i32), String> {
    let (t, queues) = resolve(&target.topic, plan)?;
    let queues = queues.max(1);
    let q = match target.queue {
        Some(q) if q < queues => q as i32,
        Some(q) => {
            return Err(format!(
                "queue {q} does not exist in topic {} ({queues} write queues)",
                target.topic
            ))
        }
        None => client_queue.rem_euclid(queues as i32),
    };
    Ok((t, q))
}

/// A verdict the broker cannot apply: a failure of the router, decided by its policy.
fn invalid(router: &LoadedRouter, why: String) -> Result<Option<Plan>, Refusal> {
    let e = EvalError::Failed {
        name: router.name.clone(),
        reason: format!("bad verdict: {why}"),
    };
    router.count_failure(&e);
    fallback(router, e)
}

/// The router failed: keep the client's choice, or refuse the request.
fn fallback(router: &LoadedRouter, e: EvalError) -> Result<Option<Plan>, Refusal> {
    match router.limits.on_failure {
        FailurePolicy::Deliver => {
            tracing::debug!(plugin = %router.name, error = %e, "router failed: the client's choice stands");
            Ok(None)
        }
        FailurePolicy::Skip | FailurePolicy::Hold => Err((
            response::SYSTEM_ERROR,
            format!("router {} failed, the send is refused: {e}", router.name),
        )),
    }
}

/// A zlib body inflated, at most `max` bytes; `None` when it does not inflate.
fn inflate(body: &[u8], max: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(body)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .ok()?;
    (out.len() <= max).then_some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn compressed_bodies_are_inflated_within_the_limit() {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(br#"{"id":1}"#).unwrap();
        let packed = z.finish().unwrap();
        assert_eq!(super::inflate(&packed, 100).unwrap(), br#"{"id":1}"#);
        assert!(super::inflate(&packed, 3).is_none());
        assert!(super::inflate(b"not zlib", 100).is_none());
    }
}
