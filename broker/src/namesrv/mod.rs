//! NameServer: brokers register their topics (code 103, or directly when embedded); clients ask
//! for topic routes (105). Embedded in `wasmq-broker` by default; `wasmq-namesrv` runs it alone.
//! A slave's registration is answered with its master's address and HA address; a broker
//! registered over a connection is dropped from the routes as soon as that connection closes.

pub mod route_table;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use crate::net::{Connection, HandlerFuture, RequestHandler};
use crate::protocol::headers::GetRouteInfoHeader;
use crate::protocol::route::{
    RegisterBrokerBody, RegisterBrokerResult, UnregisterBrokerBody, MASTER_ID,
};
use crate::protocol::{request, response, RemotingCommand};

pub use route_table::RouteTable;

/// Brokers silent this long are dropped from routes.
pub const BROKER_EXPIRY: Duration = Duration::from_secs(120);

#[derive(Default)]
pub struct NameServer {
    table: RwLock<RouteTable>,
}

impl NameServer {
    /// Registers a broker in-process (the broker embedding this NameServer); the answer is
    /// what REGISTER_BROKER would reply.
    pub fn register(&self, body: &RegisterBrokerBody) -> RegisterBrokerResult {
        self.register_over(body, None)
    }

    /// Registers a broker that registered over connection `conn` (`None`: in-process). A
    /// slave's answer names its master's address and HA address when the master is registered.
    fn register_over(&self, body: &RegisterBrokerBody, conn: Option<u64>) -> RegisterBrokerResult {
        let mut t = self.table.write();
        t.register(body, conn);
        let (master_addr, ha_server_addr) = match t.master_of(&body.broker_name) {
            Some((addr, ha)) if body.broker_id != MASTER_ID => (Some(addr), ha),
            _ => (None, None),
        };
        RegisterBrokerResult {
            master_addr,
            ha_server_addr,
            expire_millis: Some(BROKER_EXPIRY.as_millis() as i64),
        }
    }

    /// The address and HA address of `broker_name`'s master (id 0), when it is registered.
    pub fn master_of(&self, broker_name: &str) -> Option<(String, Option<String>)> {
        self.table.read().master_of(broker_name)
    }

    /// Connection `conn` closed: the brokers that last registered over it are dropped from the
    /// routes at once (RocketMQ's NameServer does so on channel close), not after 120 s.
    pub fn connection_closed(&self, conn: u64) {
        if !self.table.read().has_registrant(conn) {
            return;
        }
        for d in self.table.write().connection_closed(conn) {
            tracing::warn!(
                broker = %d.broker_name,
                broker_id = d.broker_id,
                addr = %d.addr,
                "broker dropped: the connection it registered over closed"
            );
        }
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

    /// Answers one request; `conn` is the id of the connection it came over.
    fn handle_sync(&self, conn: u64, req: &RemotingCommand) -> RemotingCommand {
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
                        let result = self.register_over(&body, Some(conn));
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
    fn handle(&self, conn: Arc<Connection>, req: RemotingCommand) -> HandlerFuture<'_> {
        let resp = self.0.handle_sync(conn.id(), &req);
        if req.code == request::REGISTER_BROKER && conn.is_closed() {
            // The connection closed while this registration was handled: `on_disconnect` may
            // have run before it was recorded, so drop it here (dropping twice is harmless).
            self.0.connection_closed(conn.id());
        }
        Box::pin(std::future::ready(Some(resp)))
    }

    fn on_disconnect(&self, conn: &Arc<Connection>) {
        self.0.connection_closed(conn.id());
    }
}
