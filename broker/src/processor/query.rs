//! Offsets and lookups: GET_MAX_OFFSET (30), GET_MIN_OFFSET (31), GET_EARLIEST_MSG_STORETIME
//! (32), SEARCH_OFFSET_BY_TIMESTAMP (29), VIEW_MESSAGE_BY_ID (33), QUERY_MESSAGE (12).

use bytes::BytesMut;

use crate::context::Broker;
use crate::protocol::headers::{
    BoundaryType, GetMaxOffsetHeader, QueryMessageHeader, QueueHeader, SearchOffsetHeader,
    ViewMessageByIdHeader,
};
use crate::protocol::{response, RemotingCommand};
use crate::store::Boundary;

use super::{bad_header, ok, reply};

fn with_field(req: &RemotingCommand, key: &str, v: i64) -> RemotingCommand {
    let mut r = ok(req);
    r.ext_fields.insert_display(key, v);
    r
}

pub fn max_offset(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    match GetMaxOffsetHeader::parse(&req.ext_fields) {
        Ok(h) => with_field(
            req,
            "offset",
            b.store.max_offset(h.topic, h.queue_id) as i64,
        ),
        Err(e) => bad_header(req, e),
    }
}

pub fn min_offset(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    match QueueHeader::parse(&req.ext_fields) {
        Ok(h) => with_field(
            req,
            "offset",
            b.store.min_offset(h.topic, h.queue_id) as i64,
        ),
        Err(e) => bad_header(req, e),
    }
}

pub fn earliest_store_time(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    match QueueHeader::parse(&req.ext_fields) {
        Ok(h) => match b.store.earliest_store_time(h.topic, h.queue_id) {
            Some(t) => with_field(req, "timestamp", t),
            None => reply(
                req,
                response::SYSTEM_ERROR,
                format!("no message in {} queue {}", h.topic, h.queue_id),
            ),
        },
        Err(e) => bad_header(req, e),
    }
}

pub fn search_offset(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    match SearchOffsetHeader::parse(&req.ext_fields) {
        Ok(h) => {
            let boundary = match h.boundary_type {
                BoundaryType::Lower => Boundary::Lower,
                BoundaryType::Upper => Boundary::Upper,
            };
            let o = b
                .store
                .search_offset(h.topic, h.queue_id, h.timestamp, boundary);
            with_field(req, "offset", o as i64)
        }
        Err(e) => bad_header(req, e),
    }
}

pub fn view_by_id(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let h = match ViewMessageByIdHeader::parse(&req.ext_fields) {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    match (h.offset >= 0)
        .then(|| b.store.view(h.offset as u64))
        .flatten()
    {
        Some(rec) => ok(req).with_body(rec.into_bytes()),
        None => reply(
            req,
            response::SYSTEM_ERROR,
            format!("no message at offset {}", h.offset),
        ),
    }
}

pub fn query_message(b: &Broker, req: &RemotingCommand) -> RemotingCommand {
    let h = match QueryMessageHeader::parse(&req.ext_fields) {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let max = h.max_num.clamp(1, 64) as usize;
    let found = b.store.query_by_key(
        h.topic,
        h.key,
        max,
        h.begin_timestamp,
        h.end_timestamp,
        h.unique_key_query,
    );
    if found.is_empty() {
        return reply(
            req,
            response::QUERY_NOT_FOUND,
            format!("can not find message, key: {}", h.key),
        );
    }
    let mut body = BytesMut::new();
    for r in &found {
        body.extend_from_slice(r);
    }
    let mut r = ok(req).with_body(body.freeze());
    r.ext_fields.insert_display(
        "indexLastUpdateTimestamp",
        crate::store::commit_log::now_ms(),
    );
    r.ext_fields
        .insert_display("indexLastUpdatePhyoffset", b.store.log_max_offset());
    r
}
