//! Storage engine (DESIGN.md §4): RocketMQ's proven layout.
//!
//! ```text
//! put ──► CommitLog.append (one writer, mmap segments) ──► Flusher (sync: group commit | async)
//!              │
//!              └─► Dispatcher ──► ConsumeQueue per topic/queue (20-byte entries), and per
//!                            │    extra target of a multi-dispatched record (multi_dispatch)
//!                            ├──► IndexService (KEYS / UNIQ_KEY hash index)
//!                            └──► ArrivalListener (wakes long-polling pulls)
//! get ──► ConsumeQueue (tag-hash prefilter) ──► CommitLog.read (zero-copy record bytes;
//!         a copy with the target's topic/queue/offset when read through an extra target)
//! ```
//! Files under the store directory: `commitlog/<20-digit offset>`,
//! `consumequeue/<topic>/<queue>/<20-digit offset>`, `index/<20-digit ms>`, `checkpoint`,
//! `lock` (one process per directory), `abort` (present while running: a crash leaves it).
//!
//! Recovery (in [`MessageStore::open`]): verify records from the checkpoint's flushed offset,
//! truncate a torn tail to the last valid record, refuse damage that valid records follow,
//! drop consume-queue entries past the end, re-dispatch from the durable dispatch point.

pub mod checkpoint;
pub mod cleanup;
pub mod commit_log;
pub mod config;
pub mod consume_queue;
pub mod dispatch;
pub mod error;
pub mod flush;
pub mod index;
pub mod mapped_file;
pub mod message_store;
pub mod multi_dispatch;
pub mod put_status;
pub mod queues;
pub mod record;

pub use commit_log::{Appended, RecordBytes};
pub use config::{FlushMode, StoreConfig};
pub use consume_queue::Boundary;
pub use dispatch::{ArrivalListener, ArrivalListeners};
pub use error::StoreError;
pub use message_store::{
    AcceptAll, FoundMessage, GetResult, GetStatus, MessageFilter, MessageStore, RecoveryReport,
};
pub use put_status::{PutResult, PutStatus};
pub use record::{MessageInput, RecordView};
