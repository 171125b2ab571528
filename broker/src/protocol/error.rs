//! Error types of the protocol layer. Every error here is caused by bytes a peer sent (or by a value we were
//! asked to encode that the wire format cannot carry); none of them is fatal to the process.

use thiserror::Error;

/// Framing errors: the connection's byte stream cannot be trusted any more and should be closed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("declared frame length {declared} is below the minimum of 4")]
    TooShort { declared: i64 },
    #[error("declared frame length {declared} exceeds the maximum of {max} bytes")]
    TooLarge { declared: i64, max: usize },
    #[error("declared header length {header_len} does not fit in frame length {total}")]
    HeaderOverflow { header_len: usize, total: usize },
    #[error("header of {0} bytes is too long to encode (max 16 MiB - 1)")]
    HeaderTooLong(usize),
}

/// A request header (extFields) lacks a required field or has a value of the wrong shape.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum HeaderError {
    #[error("missing required header field `{0}`")]
    Missing(&'static str),
    #[error("invalid value {value:?} for header field `{field}`: expected {expected}")]
    Invalid {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// The header of a remoting command could not be decoded.
#[derive(Debug, Error)]
pub enum CommandError {
    #[error("unknown serialize type {0}")]
    UnknownSerializeType(u8),
    #[error("malformed JSON header: {0}")]
    Json(#[from] serde_json::Error),
    #[error("malformed binary header: {0}")]
    Binary(&'static str),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// A body (batch, properties, message id, JSON) is malformed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("truncated {what}: need {need} bytes at offset {at}, have {have}")]
    Truncated {
        what: &'static str,
        at: usize,
        need: usize,
        have: usize,
    },
    #[error("inconsistent {what} at offset {at}: {detail}")]
    Inconsistent {
        what: &'static str,
        at: usize,
        detail: String,
    },
    #[error("malformed properties at byte {0}")]
    MalformedProperties(usize),
    #[error("invalid message id {0:?}")]
    InvalidMessageId(String),
    #[error("value too long to encode in {what}: {len} bytes")]
    TooLong { what: &'static str, len: usize },
}
