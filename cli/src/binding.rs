//! Per-topic plugin bindings (txn-checkers, routers) on every broker of the cluster: shared by
//! `wasmq txn bind|unbind|bindings` and `wasmq route bind|unbind|list`.

use anyhow::Result;
use wasmq::protocol::{request, RemotingCommand};

use crate::rpc::{ext, Cluster};

/// Binds plugin `plugin` of `kind` to `topic` (`*`: every topic without its own).
pub async fn bind(c: &mut Cluster, kind: &str, topic: &str, plugin: &str) -> Result<()> {
    for b in c.brokers().await? {
        let req = RemotingCommand::new_request(
            request::PLUGIN_BIND,
            ext(&[("kind", kind), ("topic", topic), ("name", plugin)]),
        );
        c.call_ok(&b, req).await?;
        println!("bound {kind} {plugin} to topic {topic} on {b}");
    }
    Ok(())
}

pub async fn unbind(c: &mut Cluster, kind: &str, topic: &str) -> Result<()> {
    for b in c.brokers().await? {
        let req = RemotingCommand::new_request(
            request::PLUGIN_UNBIND,
            ext(&[("kind", kind), ("topic", topic)]),
        );
        c.call_ok(&b, req).await?;
        println!("unbound the {kind} of topic {topic} on {b}");
    }
    Ok(())
}

/// Prints each broker's bindings of `kind`: topic and plugin.
pub async fn list(c: &mut Cluster, kind: &str) -> Result<()> {
    for b in c.brokers().await? {
        let r = c
            .call_ok(
                &b,
                RemotingCommand::new_request(request::PLUGIN_BINDINGS, ext(&[])),
            )
            .await?;
        let v: serde_json::Value = serde_json::from_slice(&r.body)?;
        println!("broker {b}");
        for x in v.as_array().into_iter().flatten() {
            if x["kind"] == kind {
                println!(
                    "  {:<32} {}",
                    x["topic"].as_str().unwrap_or(""),
                    x["plugin"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}
