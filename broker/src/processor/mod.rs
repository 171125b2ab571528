//! Request processors, one file per request family. Each takes the broker context, the
//! connection and the request, and returns the response (or `None` for oneway requests).
//! [`BrokerHandler`] is the dispatch table: request code -> processor.

pub mod admin;
pub mod cluster;
pub mod consumer;
pub mod end_transaction;
pub mod plugin_admin;
pub mod pull;
pub mod query;
pub mod quota_admin;
pub mod replica_meta;
pub mod send;
pub mod send_back;
pub mod txn_admin;

use std::sync::Arc;
use std::time::Duration;

use crate::context::Broker;
use crate::namesrv::NameServerHandler;
use crate::net::{Connection, HandlerFuture, RequestHandler};
use crate::protocol::{request, response, RemotingCommand};

/// A response with `code` and a remark.
pub(crate) fn reply(
    req: &RemotingCommand,
    code: i32,
    remark: impl Into<String>,
) -> RemotingCommand {
    RemotingCommand::response_to(req, code, Some(remark.into()))
}

/// SUCCESS with no remark.
pub(crate) fn ok(req: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(req, response::SUCCESS, None)
}

/// A request whose header could not be parsed.
pub(crate) fn bad_header(req: &RemotingCommand, e: impl std::fmt::Display) -> RemotingCommand {
    reply(
        req,
        response::SYSTEM_ERROR,
        format!("bad request header: {e}"),
    )
}

/// Requests that change what a master owns (messages, topics, plugins, transactions): a
/// slave refuses them, naming its master; it gets all of that by replication.
fn writes_on_master_only(code: i32) -> bool {
    matches!(
        code,
        request::SEND_MESSAGE
            | request::SEND_MESSAGE_V2
            | request::SEND_BATCH_MESSAGE
            | request::SEND_REPLY_MESSAGE
            | request::SEND_REPLY_MESSAGE_V2
            | request::CONSUMER_SEND_MSG_BACK
            | request::END_TRANSACTION
            | request::TXN_RESOLVE
            | request::UPDATE_AND_CREATE_TOPIC
            | request::DELETE_TOPIC_IN_BROKER
            | request::INVOKE_BROKER_TO_RESET_OFFSET
            | request::PLUGIN_LOAD
            | request::PLUGIN_UPGRADE
            | request::PLUGIN_UNLOAD
            | request::PLUGIN_BIND
            | request::PLUGIN_UNBIND
            | request::QUOTA_SET
            | request::QUOTA_REMOVE
    )
}

/// The broker as a remoting request handler.
pub struct BrokerHandler(pub Arc<Broker>);

impl RequestHandler for BrokerHandler {
    fn handle(&self, conn: Arc<Connection>, req: RemotingCommand) -> HandlerFuture<'_> {
        Box::pin(async move {
            let b = &*self.0;
            if b.replication.is_slave() && writes_on_master_only(req.code) {
                let remark = send::slave_refusal(b);
                return (!req.is_oneway())
                    .then(|| reply(&req, response::SERVICE_NOT_AVAILABLE, remark));
            }
            let resp = match req.code {
                request::SEND_MESSAGE
                | request::SEND_MESSAGE_V2
                | request::SEND_BATCH_MESSAGE
                | request::SEND_REPLY_MESSAGE
                | request::SEND_REPLY_MESSAGE_V2 => send::send(b, &conn, &req).await,
                request::PULL_MESSAGE => pull::pull(b, &req).await,
                request::END_TRANSACTION => end_transaction::end_transaction(b, &req).await?,
                request::TXN_LIST | request::TXN_RESOLVE => txn_admin::handle(b, &req).await,
                request::QUOTA_SET | request::QUOTA_LIST | request::QUOTA_REMOVE => {
                    quota_admin::handle(b, &req)
                }
                request::CONSUMER_SEND_MSG_BACK => send_back::send_back(b, &conn, &req).await,
                request::HEART_BEAT => consumer::heartbeat(b, &conn, &req),
                request::UNREGISTER_CLIENT => consumer::unregister(b, &req),
                request::GET_CONSUMER_LIST_BY_GROUP => consumer::consumer_list(b, &req),
                request::QUERY_CONSUMER_OFFSET => consumer::query_offset(b, &req),
                request::UPDATE_CONSUMER_OFFSET => consumer::update_offset(b, &req),
                request::LOCK_BATCH_MQ => consumer::lock(b, &req),
                request::UNLOCK_BATCH_MQ => consumer::unlock(b, &req),
                request::CHECK_CLIENT_CONFIG => consumer::check_client_config(b, &req),
                request::GET_MAX_OFFSET => query::max_offset(b, &req),
                request::GET_MIN_OFFSET => query::min_offset(b, &req),
                request::GET_EARLIEST_MSG_STORETIME => query::earliest_store_time(b, &req),
                request::SEARCH_OFFSET_BY_TIMESTAMP => query::search_offset(b, &req),
                request::VIEW_MESSAGE_BY_ID => query::view_by_id(b, &req),
                request::QUERY_MESSAGE => query::query_message(b, &req),
                request::UPDATE_AND_CREATE_TOPIC => admin::create_topic(b, &req),
                request::DELETE_TOPIC_IN_BROKER => admin::delete_topic(b, &req),
                request::GET_ALL_TOPIC_CONFIG => admin::all_topic_config(b, &req),
                request::INVOKE_BROKER_TO_RESET_OFFSET => admin::reset_offset(b, &req),
                request::HA_STATUS => cluster::status(b, &req),
                request::HA_METADATA => replica_meta::metadata(b, &req),
                request::HA_PLUGIN_MODULE => replica_meta::plugin_module(b, &req),
                request::HA_MERGE_OFFSETS => replica_meta::merge_offsets(b, &req),
                request::PLUGIN_LOAD
                | request::PLUGIN_UPGRADE
                | request::PLUGIN_UNLOAD
                | request::PLUGIN_LIST
                | request::PLUGIN_TEST
                | request::PLUGIN_BIND
                | request::PLUGIN_UNBIND
                | request::PLUGIN_BINDINGS => {
                    // Loading compiles a module (milliseconds to seconds): off the reactor.
                    let b2 = self.0.clone();
                    let r2 = req.clone();
                    match tokio::task::spawn_blocking(move || plugin_admin::handle(&b2, &r2)).await
                    {
                        Ok(r) => r,
                        Err(e) => RemotingCommand::response_to(
                            &req,
                            response::SYSTEM_ERROR,
                            Some(format!("plugin request failed: {e}")),
                        ),
                    }
                }
                // One process answers NameServer requests on the broker port too, so a client
                // pointed at either address works.
                request::GET_ROUTEINFO_BY_TOPIC
                | request::GET_BROKER_CLUSTER_INFO
                | request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER
                | request::GET_KV_CONFIG
                    if b.namesrv.is_some() =>
                {
                    let ns = NameServerHandler(b.namesrv.clone().expect("checked"));
                    return ns.handle(conn, req).await;
                }
                _ => RemotingCommand::not_supported(&req),
            };
            Some(resp)
        })
    }

    fn on_disconnect(&self, conn: &Arc<Connection>) {
        let b = &self.0;
        let expiry = Duration::from_millis(b.config.client_expiry_ms);
        for g in b.clients.sweep(Some(conn.id()), expiry) {
            tracing::info!(group = %g, "consumer connection closed");
            b.notify_consumer_ids_changed(&g);
        }
    }
}
