//! The RocketMQ remoting protocol as wasmq speaks it: frames, commands (JSON and binary headers), request and
//! response codes, typed request headers, and the body encodings (properties, batches, message ids, heartbeat
//! and route JSON). Pure data and codecs, no I/O: `net` moves these over TCP, processors interpret them.
//! Wire facts come from `shared/protocol/REMOTING.md`.

pub mod batch;
pub mod codes;
pub mod command;
pub mod error;
pub mod ext_fields;
pub mod frame;
#[cfg(test)]
mod header_props;
pub mod headers;
pub mod heartbeat;
mod json_header;
pub mod message_id;
pub mod properties;
pub mod route;

pub use codes::{request, response, LanguageCode};
pub use command::{RemotingCommand, SerializeType, FLAG_ONEWAY, FLAG_RESPONSE};
pub use error::{BodyError, CommandError, FrameError, HeaderError};
pub use ext_fields::ExtFields;
pub use frame::{FrameCodec, RawFrame, DEFAULT_MAX_FRAME_LEN};
pub use heartbeat::HeartbeatData;
pub use route::TopicRouteData;
