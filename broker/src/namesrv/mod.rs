//! NameServer: brokers register their topics (code 103, or directly when embedded); clients ask
//! for topic routes (105). Embedded in `wasmq-broker` by default; `wasmq-namesrv` runs it alone.

pub mod route_table;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use crate::net::{Connection, HandlerFuture, RequestHandler};
use crate::protocol::headers::GetRouteInfoHeader;
use crate::protocol::route::{RegisterBrokerBody, RegisterBrokerResult, UnregisterBrokerBody};
use crate::protocol::{request, response, RemotingCommand};

pub use route_table::RouteTable;

/// Brokers silent this long are dropped from routes.
pub const BROKER_EXPIRY: Duration = Duration::from_secs(120);

#[derive(Default)]
pub struct NameServer {
    table: RwLock<RouteTable>,
}

impl NameServer {
    pub fn register(&self, body: &RegisterBrokerBody) {
        self.table.write().register(body);
    }

    pub fn route(&self, topic: &str) -> Option<crate::protocol::route::TopicRouteData> {
        self.table.read().route(topic)
    }

    /// Drops expired brokers (run every 10 s).
    pub fn expire(&self) {
        for b in self.table.write().expire(BROKER_EXPIRY) {
            tracing::warn!(broker = %b, "broker expired: no registration for 120 s");
        }
    }

    fn handle_sync(&self, req: &RemotingCommand) -> RemotingCommand {
        let reply = |code, remark: String| RemotingCommand::response_to(req, code, Some(remark));
        let ok = || RemotingCommand::response_to(req, response::SUCCESS, None);
        match req.code {
            request::GET_ROUTEINFO_BY_TOPIC => {
                let h = match GetRouteInfoHeader::parse(&req.ext_fields) {
                    Ok(h) => h,
                    Err(e) => return reply(response::SYSTEM_ERROR, e.to_string()),
                };
                match self.route(h.topic) {
                    Some(r) => ok().with_body(r.to_json()),
                    None => reply(
                        response::TOPIC_NOT_EXIST,
                        format!(
                            "No topic route info in name server for the topic: {}",
                            h.topic
                        ),
                    ),
                }
            }
            request::REGISTER_BROKER => {
                match serde_json::from_slice::<RegisterBrokerBody>(&req.body) {
                    Ok(body) => {
                        self.register(&body);
                        let result = RegisterBrokerResult {
                            master_addr: None,
                            expire_millis: Some(BROKER_EXPIRY.as_millis() as i64),
                        };
                        ok().with_body(serde_json::to_vec(&result).unwrap_or_default())
                    }
                    Err(e) => reply(
                        response::SYSTEM_ERROR,
                        format!("bad registration body: {e}"),
                    ),
                }
            }
            request::UNREGISTER_BROKER => {
                match serde_json::from_slice::<UnregisterBrokerBody>(&req.body) {
                    Ok(body) => {
                        self.table
                            .write()
                            .unregister(&body.broker_name, body.broker_id);
                        ok()
                    }
                    Err(e) => reply(response::SYSTEM_ERROR, format!("bad body: {e}")),
                }
            }
            request::GET_BROKER_CLUSTER_INFO => ok().with_body(
                serde_json::to_vec(&self.table.read().cluster_info()).unwrap_or_default(),
            ),
            request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => {
                let body = serde_json::json!({ "topicList": self.table.read().topics() });
                ok().with_body(serde_json::to_vec(&body).unwrap_or_default())
            }
            request::DELETE_TOPIC_IN_NAMESRV => match req.ext_fields.get("topic") {
                Some(t) => {
                    self.table.write().delete_topic(t);
                    ok()
                }
                None => reply(response::SYSTEM_ERROR, "missing field topic".into()),
            },
            request::GET_KV_CONFIG | request::GET_KV_CONFIG_BY_VALUE => {
                reply(response::QUERY_NOT_FOUND, "no kv config".into())
            }
            _ => RemotingCommand::not_supported(req),
        }
    }
}

/// The NameServer as a remoting request handler.
pub struct NameServerHandler(pub Arc<NameServer>);

impl RequestHandler for NameServerHandler {
    fn handle(&self, _conn: Arc<Connection>, req: RemotingCommand) -> HandlerFuture<'_> {
        let resp = self.0.handle_sync(&req);
        Box::pin(std::future::ready(Some(resp)))
    }
}
