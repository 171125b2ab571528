//! Quota administration (wasmq's private codes), for `wasmq quota set|list|remove`:
//! QUOTA_SET and QUOTA_REMOVE change the runtime quota of a topic or consumer group (rules in
//! `crate::flow::quota`), QUOTA_LIST shows the quotas in force with their current rates and
//! the flow-control rejection counters.
//!
//! Bad input changes nothing and is answered with the reason: INVALID_PARAMETER (a missing,
//! doubled or invalid target or rate; removing a quota the config file sets),
//! TOPIC_NOT_EXIST (a topic this broker does not have), SUBSCRIPTION_GROUP_NOT_EXIST (a group
//! with neither committed offsets nor live consumers here), QUERY_NOT_FOUND (removing a quota
//! that is not set). `dryRun=true` checks a change without making it (the CLI checks every
//! broker before changing any).

use serde::Serialize;

use crate::context::Broker;
use crate::flow::counters::RejectionCount;
use crate::flow::quota::{
    parse_rate, Kind, Quota, QuotaError, QuotaStatus, MAX_BYTES_PER_SEC, MAX_MSGS_PER_SEC,
};
use crate::protocol::{request, response, RemotingCommand};

use super::reply;

/// QUOTA_LIST's body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Listing {
    /// `flow_control = false` in the config: quotas are listed but not enforced.
    flow_control: bool,
    quotas: Vec<QuotaStatus>,
    rejections: Vec<RejectionCount>,
}

pub fn handle(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    match req.code {
        request::QUOTA_SET => set(b, req),
        request::QUOTA_LIST => list(b, req),
        request::QUOTA_REMOVE => remove(b, req),
        _ => RemotingCommand::not_supported(req),
    }
}

/// The request's `topic` or `group` (exactly one).
fn target(req: &RemotingCommand) -> Result<(Kind, &str), String> {
    let field = |k| req.ext_fields.get(k).filter(|v| !v.is_empty());
    match (field("topic"), field("group")) {
        (Some(t), None) => Ok((Kind::Topic, t)),
        (None, Some(g)) => Ok((Kind::Group, g)),
        (Some(_), Some(_)) => Err("a quota is on a topic or on a group: give one, not both".into()),
        (None, None) => Err("a topic or a group is required".into()),
    }
}

fn dry_run(req: &RemotingCommand) -> Result<bool, String> {
    req.ext_fields
        .get_bool("dryRun")
        .map(|d| d.unwrap_or(false))
        .map_err(|e| e.to_string())
}

/// The quota a QUOTA_SET asks for, checked.
fn requested(req: &RemotingCommand) -> Result<Quota, String> {
    let (kind, name) = target(req)?;
    let rate = |key, what, max| match req.ext_fields.get(key) {
        None => Ok(None),
        Some(v) => parse_rate(what, v, max).map(Some),
    };
    let quota = rate("msgsPerSec", "messages per second", MAX_MSGS_PER_SEC)
        .and_then(|m| {
            Ok((
                m,
                rate("bytesPerSec", "bytes per second", MAX_BYTES_PER_SEC)?,
            ))
        })
        .and_then(|(m, by)| Quota::new(kind, name, m, by));
    quota.map_err(|e| e.reason())
}

/// A group this broker knows: committed offsets or live consumers.
fn known_group(b: &Broker, group: &str) -> bool {
    b.clients.is_online(group) || b.offsets.groups().iter().any(|(g, _)| g == group)
}

fn set(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let (quota, dry) = match requested(req).and_then(|q| Ok((q, dry_run(req)?))) {
        Ok(v) => v,
        Err(e) => return reply(req, response::INVALID_PARAMETER, e),
    };
    let name = quota.name.as_str();
    match quota.kind {
        Kind::Topic if b.topics.get(name).is_none() => {
            return reply(
                req,
                response::TOPIC_NOT_EXIST,
                format!("topic {name} does not exist on this broker: create it first"),
            )
        }
        Kind::Group if !known_group(b, name) => {
            return reply(
                req,
                response::SUBSCRIPTION_GROUP_NOT_EXIST,
                format!(
                    "consumer group {name} is unknown on this broker: it has no committed \
                     offsets and no live consumers"
                ),
            )
        }
        _ => {}
    }
    let rates = quota.rates();
    let (kind, name) = (quota.kind, quota.name.clone());
    match b.flow.quotas.set(quota, dry) {
        Ok(before) => {
            let replaced = before.map_or(String::new(), |q| format!(" (was {})", q.rates()));
            if !dry {
                tracing::info!(%kind, name, rates, "quota set");
            }
            reply(
                req,
                response::SUCCESS,
                format!("quota on {kind} {name}: {rates}{replaced}"),
            )
        }
        Err(e) => reply(req, response::SYSTEM_ERROR, e.to_string()),
    }
}

fn remove(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let ((kind, name), dry) = match target(req).and_then(|t| Ok((t, dry_run(req)?))) {
        Ok(v) => v,
        Err(e) => return reply(req, response::INVALID_PARAMETER, e),
    };
    match b.flow.quotas.remove(kind, name, dry) {
        Ok(r) => {
            if !dry {
                tracing::info!(%kind, name, "quota removed");
            }
            let remark = match r.restored {
                Some(c) => format!(
                    "removed the runtime quota on {kind} {name}; the configured one applies \
                     again: {}",
                    c.rates()
                ),
                None => format!("removed the quota on {kind} {name}"),
            };
            reply(req, response::SUCCESS, remark)
        }
        Err(e @ QuotaError::NotSet { .. }) => reply(req, response::QUERY_NOT_FOUND, e.to_string()),
        Err(e @ QuotaError::Configured { .. }) => {
            reply(req, response::INVALID_PARAMETER, e.to_string())
        }
        Err(e) => reply(req, response::SYSTEM_ERROR, e.to_string()),
    }
}

fn list(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let listing = Listing {
        flow_control: b.flow.enabled,
        quotas: b.flow.quotas.list(),
        rejections: b.flow.rejections.snapshot(),
    };
    match serde_json::to_vec(&listing) {
        Ok(body) => RemotingCommand::response_to(req, response::SUCCESS, None).with_body(body),
        Err(e) => reply(req, response::SYSTEM_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Reason;
    use crate::meta::TopicConfig;
    use crate::protocol::ExtFields;

    fn broker(dir: &std::path::Path) -> std::sync::Arc<Broker> {
        let config = crate::config::BrokerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            namesrv_listen: None,
            load_shipped_plugins: false,
            store: crate::store::StoreConfig {
                max_message_size: 64 << 10,
                ..crate::store::StoreConfig::for_tests(dir)
            },
            ..crate::config::BrokerConfig::default()
        };
        Broker::open(config, None).unwrap()
    }

    fn call(b: &Broker, code: i32, fields: &[(&str, &str)]) -> RemotingCommand {
        let mut e = ExtFields::new();
        for (k, v) in fields {
            e.insert(k, v);
        }
        handle(b, &RemotingCommand::new_request(code, e))
    }

    fn listed(b: &Broker) -> serde_json::Value {
        let r = call(b, request::QUOTA_LIST, &[]);
        assert_eq!(r.code, response::SUCCESS);
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn bad_input_is_refused_with_the_reason_and_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let b = broker(d.path());
        b.topics.upsert(TopicConfig::new("T", 4)).unwrap();
        b.offsets.commit("G", "T", 0, 5);
        // (request fields, response code, what the remark says)
        type Case<'a> = (&'a [(&'a str, &'a str)], i32, &'a str);
        let cases: &[Case] = &[
            (
                &[("msgsPerSec", "10")],
                29,
                "a topic or a group is required",
            ),
            (
                &[("topic", "T"), ("group", "G"), ("msgsPerSec", "10")],
                29,
                "not both",
            ),
            (&[("topic", "T")], 29, "names no rate"),
            (
                &[("topic", "T"), ("msgsPerSec", "-5")],
                29,
                "more than 0, got -5",
            ),
            (
                &[("topic", "T"), ("msgsPerSec", "0")],
                29,
                "more than 0, got 0",
            ),
            (
                &[("topic", "T"), ("bytesPerSec", "0")],
                29,
                "bytes per second",
            ),
            (&[("topic", "T"), ("msgsPerSec", "ten")], 29, "whole number"),
            (
                &[("topic", "T"), ("msgsPerSec", "1000000000000")],
                29,
                "at most 1000000000",
            ),
            (
                &[("topic", "T"), ("msgsPerSec", "10"), ("bytesPerSec", "-1")],
                29,
                "bytes per second must be more than 0",
            ),
            (
                &[("topic", "no such"), ("msgsPerSec", "10")],
                29,
                "invalid topic name",
            ),
            (
                &[("topic", "Nope"), ("msgsPerSec", "10")],
                17,
                "Nope does not exist",
            ),
            (
                &[("group", "Nobody"), ("msgsPerSec", "10")],
                26,
                "Nobody is unknown",
            ),
            (
                &[("topic", "T"), ("msgsPerSec", "10"), ("dryRun", "maybe")],
                29,
                "dryRun",
            ),
        ];
        for (fields, code, says) in cases {
            let r = call(&b, request::QUOTA_SET, fields);
            let remark = r.remark.unwrap_or_default();
            assert_eq!(r.code, *code, "{fields:?}: {remark}");
            assert!(remark.contains(says), "{fields:?}: {remark}");
        }
        let r = call(&b, request::QUOTA_REMOVE, &[("topic", "T")]);
        assert_eq!(r.code, response::QUERY_NOT_FOUND);
        assert_eq!(r.remark.as_deref(), Some("no quota is set on topic T"));
        assert_eq!(listed(&b)["quotas"], serde_json::json!([]));
        assert!(!d.path().join("config/quotas.json").exists());
    }

    #[test]
    fn set_list_remove_with_dry_runs() {
        let d = tempfile::tempdir().unwrap();
        let b = broker(d.path());
        b.topics.upsert(TopicConfig::new("T", 4)).unwrap();
        b.offsets.commit("G", "T", 0, 5);
        let set = [("topic", "T"), ("msgsPerSec", "2"), ("bytesPerSec", "1000")];
        let r = call(
            &b,
            request::QUOTA_SET,
            &[&set[..], &[("dryRun", "true")]].concat(),
        );
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
        assert_eq!(listed(&b)["quotas"], serde_json::json!([]), "dry run");
        let r = call(&b, request::QUOTA_SET, &set);
        assert_eq!(
            r.remark.as_deref(),
            Some("quota on topic T: 2 msgs/s, 1000 bytes/s")
        );
        let r = call(
            &b,
            request::QUOTA_SET,
            &[("group", "G"), ("msgsPerSec", "7")],
        );
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
        let r = call(
            &b,
            request::QUOTA_SET,
            &[("group", "G"), ("msgsPerSec", "8")],
        );
        assert_eq!(
            r.remark.as_deref(),
            Some("quota on group G: 8 msgs/s (was 7 msgs/s)")
        );

        // Enforced, and the refusals counted.
        for _ in 0..2 {
            assert!(b.flow.quotas.take_topic("T", 1, 10).is_ok());
        }
        let (code, remark) = b.flow.quotas.take_topic("T", 1, 10).unwrap_err();
        assert_eq!(code, response::SYSTEM_BUSY);
        assert!(remark.contains("topic T is over its quota of 2 msgs/s"));
        b.flow.rejections.count(Reason::TopicQuota, Some("T"), None);

        let v = listed(&b);
        assert_eq!(v["flowControl"], true);
        let q = &v["quotas"];
        assert_eq!(q[0]["kind"], "topic");
        assert_eq!(q[0]["name"], "T");
        assert_eq!(q[0]["msgsPerSec"], 2);
        assert_eq!(q[0]["bytesPerSec"], 1000);
        assert_eq!(q[0]["source"], "runtime");
        assert_eq!(q[0]["current"]["msgsPerSec"], 0);
        assert_eq!(q[1]["kind"], "group");
        assert_eq!(q[1]["msgsPerSec"], 8);
        assert_eq!(q[1]["bytesPerSec"], serde_json::Value::Null);
        assert_eq!(
            v["rejections"],
            serde_json::json!([{"reason": "topic_quota", "topic": "T", "group": null, "count": 1}])
        );

        let r = call(
            &b,
            request::QUOTA_REMOVE,
            &[("group", "G"), ("dryRun", "1")],
        );
        assert_eq!(r.code, response::SUCCESS);
        assert_eq!(listed(&b)["quotas"].as_array().unwrap().len(), 2);
        let r = call(&b, request::QUOTA_REMOVE, &[("group", "G")]);
        assert_eq!(r.remark.as_deref(), Some("removed the quota on group G"));
        assert_eq!(listed(&b)["quotas"].as_array().unwrap().len(), 1);
        let saved = std::fs::read_to_string(d.path().join("config/quotas.json")).unwrap();
        assert!(
            saved.contains("\"T\"") && !saved.contains("\"G\""),
            "{saved}"
        );
    }

    #[test]
    fn a_slave_refuses_quota_changes_but_lists() {
        assert!(crate::processor::writes_on_master_only(request::QUOTA_SET));
        assert!(crate::processor::writes_on_master_only(
            request::QUOTA_REMOVE
        ));
        assert!(!crate::processor::writes_on_master_only(
            request::QUOTA_LIST
        ));
    }
}
