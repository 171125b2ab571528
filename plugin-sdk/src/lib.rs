//! # wasmq plugin SDK
//!
//! Write a wasmq message filter in a few lines: implement [`Filter`], call
//! [`export_filter!`], build with `cargo build --release --target wasm32-wasip2`, and the
//! `.wasm` in `target/wasm32-wasip2/release/` is a component the broker loads. A transaction
//! check-back handler is the same with [`TxnChecker`] and [`export_txn_checker!`], a router
//! with [`Router`] and [`export_router!`].
//!
//! What is here:
//! - [`bindings`]: wit-bindgen bindings of `wit/plugin.wit` (package `wasmq:plugin@0.1.0`,
//!   world `filter-plugin`), with the raw export macro [`export_filter_world!`] for plugins
//!   that implement the WIT interface themselves.
//! - [`txn_checker_bindings`]: the same for world `txn-checker-plugin`, with the raw export
//!   macro [`export_txn_checker_world!`].
//! - [`router_bindings`]: the same for world `router-plugin`, with the raw export macro
//!   [`export_router_world!`].
//! - [`Filter`], [`Compiled`], [`Prefilter`], [`CompileError`] and [`export_filter!`]: the
//!   easy way. The macro answers `abi-version` with [`ABI_VERSION`], keeps compiled
//!   expressions in a handle table, decodes each batch once and returns the match bits.
//! - [`TxnChecker`], [`TxnMeta`], [`TxnVerdict`] and [`export_txn_checker!`]: the easy way
//!   for transaction checkers. The macro answers `abi-version` with [`ABI_VERSION`], decodes
//!   each batch once and returns one verdict per message.
//! - [`Router`], [`Verdict`], [`Route`], [`Target`] and [`export_router!`]: the easy way for
//!   routers. The macro answers `abi-version` with [`ABI_VERSION`], decodes each batch once
//!   and returns one verdict per message.
//! - [`Batch`] and [`Message`]: a zero-copy, bounds-checked decoder of the batch encoding.
//!   It runs natively too, so filters can be unit-tested with `cargo test`.
//! - [`BatchBuilder`], [`MessageSpec`], [`encode_batch`]: an encoder for tests.
//! - [`MatchBits`]: the result bitset; [`java_string_hash`]: the tag hash.
//!
//! ## A complete filter
//!
//! Matches messages whose `region` property equals the expression, e.g. a consumer
//! subscribing with expression type `REGION` and expression `eu-west`. The operator may set
//! `case_insensitive=true` when loading the plugin.
//!
//! ```rust,ignore
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use wasmq_plugin_sdk::{CompileError, Compiled, Filter, Message};
//!
//! // Configuration lives in statics: a plugin instance is single-threaded, and `configure`
//! // runs once right after instantiation, before any `compile`.
//! static CASE_INSENSITIVE: AtomicBool = AtomicBool::new(false);
//!
//! struct Region;
//!
//! struct Wanted {
//!     region: String,
//!     case_insensitive: bool,
//! }
//!
//! impl Filter for Region {
//!     type Compiled = Wanted;
//!
//!     fn expression_types() -> &'static [&'static str] {
//!         &["REGION"]
//!     }
//!
//!     fn configure(config: &[(String, String)]) -> Result<(), String> {
//!         for (key, value) in config {
//!             match (key.as_str(), value.as_str()) {
//!                 ("case_insensitive", "true") => CASE_INSENSITIVE.store(true, Ordering::Relaxed),
//!                 ("case_insensitive", "false") => CASE_INSENSITIVE.store(false, Ordering::Relaxed),
//!                 _ => return Err(format!("unknown setting {key}={value}")),
//!             }
//!         }
//!         Ok(())
//!     }
//!
//!     fn compile(_type: &str, expression: &str) -> Result<Compiled<Wanted>, CompileError> {
//!         let region = expression.trim();
//!         if region.is_empty() {
//!             return Err(CompileError::new(0, "expected a region name"));
//!         }
//!         // Copy the configuration into the compiled value: `matches` then reads no static.
//!         let wanted = Wanted {
//!             region: region.to_owned(),
//!             case_insensitive: CASE_INSENSITIVE.load(Ordering::Relaxed),
//!         };
//!         Ok(Compiled::new(wanted).without_body())
//!     }
//!
//!     fn matches(wanted: &Wanted, message: &Message<'_>) -> bool {
//!         match message.property("region") {
//!             Some(r) if wanted.case_insensitive => r.eq_ignore_ascii_case(&wanted.region),
//!             Some(r) => r == wanted.region,
//!             None => false,
//!         }
//!     }
//! }
//!
//! wasmq_plugin_sdk::export_filter!(Region);
//! ```
//!
//! with this `Cargo.toml` (the template in `plugin-sdk/template/` is the same shape):
//!
//! ```toml
//! [package]
//! name = "region-filter"
//! version = "0.1.0"
//! edition = "2021"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! wasmq-plugin-sdk = { path = "../plugin-sdk" }
//!
//! [profile.release]
//! opt-level = 3
//! lto = true
//! codegen-units = 1
//! panic = "abort"
//! strip = true
//! ```
//!
//! Testing it natively: build a batch with [`BatchBuilder`], decode it with [`Batch`] and
//! call `Region::matches` on each message (or [`glue::evaluate_batch`]).
//!
//! ## A complete transaction checker
//!
//! When the broker finds a half message (sent by a transactional producer, neither committed
//! nor rolled back yet) due for a check, it asks the operator's checker plugin first and the
//! producer group only when the plugin answers [`TxnVerdict::Unknown`]. This one commits
//! half messages whose `order_paid` property is `true` and rolls back the others once they
//! are older than a configurable `max_age_ms`:
//!
//! ```rust,ignore
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use wasmq_plugin_sdk::{Message, TxnChecker, TxnMeta, TxnVerdict};
//!
//! static MAX_AGE_MS: AtomicU64 = AtomicU64::new(30_000);
//!
//! pub struct PaidOrders;
//!
//! impl TxnChecker for PaidOrders {
//!     fn configure(config: &[(String, String)]) -> Result<(), String> {
//!         for (key, value) in config {
//!             match key.as_str() {
//!                 "max_age_ms" => match value.parse() {
//!                     Ok(ms) => MAX_AGE_MS.store(ms, Ordering::Relaxed),
//!                     Err(_) => return Err(format!("max_age_ms: not a number: {value}")),
//!                 },
//!                 _ => return Err(format!("unknown setting {key}")),
//!             }
//!         }
//!         Ok(())
//!     }
//!
//!     fn check(message: &Message<'_>, meta: TxnMeta) -> TxnVerdict {
//!         if message.property("order_paid") == Some("true") {
//!             TxnVerdict::Commit
//!         } else if meta.age_ms >= MAX_AGE_MS.load(Ordering::Relaxed) {
//!             TxnVerdict::Rollback
//!         } else {
//!             TxnVerdict::Unknown // ask the producer
//!         }
//!     }
//! }
//!
//! wasmq_plugin_sdk::export_txn_checker!(PaidOrders);
//! ```
//!
//! The `Cargo.toml` is the filter's. The component exports `wasmq:plugin/txn-checker`
//! only: each export macro brings in the description of its own world, so a crate exports the
//! world of the macro it calls (call one of them per crate). Testing natively: encode the
//! half messages with [`encode_batch`] and run [`glue::check_batch`] with `PaidOrders::check`,
//! or call `PaidOrders::check` on each decoded [`Message`].
//!
//! What a checker sees: each message's topic is its real topic (where a commit writes it),
//! its properties are the producer's (`PGROUP`, `UNIQ_KEY`, `KEYS`, `TAGS`, user properties),
//! its body is included, its queue offset is the half message's offset in the half topic and
//! its store timestamp is when the half message was stored. [`TxnMeta`] adds its age and how
//! many checks came before; plugins have no clock of their own.
//!
//! ## A complete router
//!
//! A router runs broker-side on every send request to a topic the operator bound it to
//! (`wasmq route bind --topic T --plugin N`), before anything is stored, and decides each
//! message's [`Route`]: [`Keep`](Route::Keep) it where the client sent it, another
//! [`Queue`](Route::Queue) of the topic, [`Redirect`](Route::Redirect) it to another topic,
//! or [`Reject`](Route::Reject) the whole request; plus [`extra`](Verdict::extra) targets the
//! message is dispatched to as well (stored once, indexed in each target's consume queue).
//! This one sends priority messages to queue 0, copies audited ones to topic `audit` and
//! refuses messages without an `order_id`:
//!
//! ```rust,ignore
//! use wasmq_plugin_sdk::{Message, Router, Target, Verdict};
//!
//! pub struct Orders;
//!
//! impl Router for Orders {
//!     fn route(message: &Message<'_>, write_queues: u32) -> Verdict {
//!         if message.property("order_id").is_none() {
//!             return Verdict::reject("order_id property missing");
//!         }
//!         let verdict = match message.property("priority") {
//!             // Queue 0 is the fast lane ...
//!             Some("high") => Verdict::queue(0),
//!             // ... kept free of the others when the topic has more queues.
//!             _ if message.client_queue_id() == Some(0) && write_queues > 1 => Verdict::queue(1),
//!             _ => Verdict::keep(),
//!         };
//!         if message.property("audit") == Some("true") {
//!             verdict.with_extra(Target::new("audit", None))
//!         } else {
//!             verdict
//!         }
//!     }
//! }
//!
//! wasmq_plugin_sdk::export_router!(Orders);
//! ```
//!
//! `configure` (accept any settings) and `needs_body` (`false`) keep their defaults here.
//! The `Cargo.toml` is the filter's; the component exports `wasmq:plugin/router` only.
//! Testing natively: encode the messages of a send request with [`encode_batch`] and run
//! [`glue::route_batch`] with `|m| Orders::route(m, 4)`, or call `Orders::route` on each
//! decoded [`Message`].
//!
//! What a router sees and must know:
//! - One call per send request (a batch send is one call), with the topic's write queue
//!   count; it must return one verdict per message, in order (`export_router!` does).
//! - Each message's topic is the topic the client sent to, its properties are the client's,
//!   its body is empty unless [`Router::needs_body`] returns `true`. It is not stored yet:
//!   the batch encoding's `queue_offset` field carries the queue id the client chose
//!   ([`Message::client_queue_id`]) and `store_timestamp` the client's born timestamp
//!   ([`Message::born_timestamp`]).
//! - [`Route::Queue`] must be below `write_queues`. A [`Target`] without a queue keeps the
//!   client's queue id when the target topic has it, else takes it modulo the target's write
//!   queue count. A redirected or extra topic must be one the producer may write.
//! - One [`Route::Reject`] fails the whole send request with that reason: nothing of it is
//!   stored.
//! - Routing is on the send path: keep `route` cheap, and allocation-free where it can be
//!   ([`Verdict::keep`] and [`Verdict::queue`] allocate nothing).
//!
//! ## Batch encoding v1
//!
//! `evaluate` (and a checker's `check`, a router's `route`) receives the messages of one
//! batch as a single `list<u8>`. All integers are little-endian; lengths are byte counts.
//!
//! ```text
//! batch   := count:u32  message{count}
//! message := len:u32  queue_offset:i64  store_timestamp:i64
//!            topic_len:u16  topic:[u8; topic_len]
//!            props_len:u32  props:[u8; props_len]
//!            body_len:u32   body:[u8; body_len]
//!            reserved:[u8; len - 26 - topic_len - props_len - body_len]
//! ```
//!
//! Byte by byte, offsets of a message relative to the start of its `len` field (T, P and B
//! are topic_len, props_len and body_len):
//!
//! | offset   | size | field                    | meaning                                        |
//! |----------|------|--------------------------|------------------------------------------------|
//! | 0        | 4    | `len`: u32               | bytes of this message after this field         |
//! | 4        | 8    | `queue_offset`: i64      | offset of the message in its consume queue (routers: the client's queue id) |
//! | 12       | 8    | `store_timestamp`: i64   | store time, ms since the Unix epoch (routers: the born timestamp) |
//! | 20       | 2    | `topic_len`: u16         | T                                              |
//! | 22       | T    | `topic`                  | UTF-8                                          |
//! | 22+T     | 4    | `props_len`: u32         | P                                              |
//! | 26+T     | P    | `props`                  | RocketMQ's stored properties (below)           |
//! | 26+T+P   | 4    | `body_len`: u32          | B; 0 when `needs-body` (the expression's, the router's) is false |
//! | 30+T+P   | B    | `body`                   | raw bytes as stored                            |
//! | 30+T+P+B | rest | reserved                 | to `4 + len`; v1 encoders write none, decoders skip |
//!
//! The batch starts with `count`: u32 at offset 0, then `count` messages back to back from
//! offset 4; the batch ends exactly after the last message. So `len = 26 + T + P + B` for a
//! v1 encoder, and every message takes at least 30 bytes.
//!
//! `props` is the properties string exactly as RocketMQ stores it in the commit log:
//! `name \x01 value \x02`, repeated; the last `\x02` may be missing. An item without `\x01`,
//! with an empty name or an empty value is not a property. The tag is property `TAGS`; keys
//! are property `KEYS`, separated by spaces. Other system properties keep RocketMQ's names
//! (`UNIQ_KEY`, `DELAY`, `RETRY_TOPIC`, ...). Properties are UTF-8 as RocketMQ writes them; the
//! decoder checks each value as it is read, and a value that is not UTF-8 reads as absent.
//!
//! A batch is malformed when any length runs past the buffer or past its message, when
//! `count` messages cannot fit, when a topic is not UTF-8, or when bytes follow the last
//! message. The decoder reports an error for it and `export_filter!`
//! answers an empty list, which the host counts as a bad result; `export_txn_checker!` traps,
//! as it does when `meta` does not have one entry per message; `export_router!` traps.
//!
//! The result of `evaluate` is `ceil(count / 8)` bytes: bit i is byte `i / 8`, bit `i % 8`,
//! least significant bit first, set when message i matches. The result of `check` and of
//! `route` is one verdict per message, in batch order.
//!
//! ## ABI
//!
//! [`ABI_VERSION`] is `1000 * major + minor` of the WIT package, 1 for `0.1`. Minor versions
//! may only add (reserved bytes at the end of a message, functions); a major change is a new
//! contract the broker refuses to load with an old plugin. Filters, transaction checkers and
//! routers share the package, so they share the ABI.
//!
//! ## One world per plugin
//!
//! The SDK holds the bindings of all three worlds (`filter-plugin`, `txn-checker-plugin`,
//! `router-plugin`, each in its own module), yet a plugin exports only the world of the
//! export macro it calls. wit-bindgen (with `pub_export_macro`) describes each world's
//! exports in a `component-type` custom section that is emitted where the export macro
//! expands, in the plugin crate; what the SDK itself links in describes no exports. A filter
//! built with this SDK exports `wasmq:plugin/filter@0.1.0` alone, a checker
//! `wasmq:plugin/txn-checker@0.1.0` alone, a router `wasmq:plugin/router@0.1.0` alone. Call
//! one export macro per crate: calling two would make a component exporting both
//! interfaces.

mod batch;
mod bitset;
mod encode;
mod filter;
pub mod glue;
mod hash;
mod router;
pub mod testing;
mod txn;

pub use batch::{
    Batch, DecodeError, DecodeErrorKind, Message, Properties, KEY_SEPARATOR, MIN_MESSAGE_LEN,
    NAME_VALUE_SEPARATOR, PROPERTY_KEYS, PROPERTY_SEPARATOR, PROPERTY_TAGS,
};
pub use bitset::{bitset_len, MatchBits};
pub use encode::{encode_batch, encode_properties, BatchBuilder, MessageSpec};
pub use filter::{CompileError, Compiled, Filter, Prefilter};
pub use hash::java_string_hash;
pub use router::{Route, Router, Target, Verdict};
pub use txn::{CheckError, TxnChecker, TxnMeta, TxnVerdict};

/// The raw export macro of [`bindings`]: exports a type implementing
/// [`bindings::exports::wasmq::plugin::filter::Guest`]. Call it as
/// `export_filter_world!(MyType with_types_in wasmq_plugin_sdk::bindings)`, under
/// `#[cfg(target_arch = "wasm32")]`: the symbol names it exports
/// (`wasmq:plugin/filter@0.1.0#...`) do not link into a native cdylib.
pub use bindings::export_filter_world;

/// The raw export macro of [`txn_checker_bindings`]: exports a type implementing
/// [`txn_checker_bindings::exports::wasmq::plugin::txn_checker::Guest`]. Call it as
/// `export_txn_checker_world!(MyType with_types_in wasmq_plugin_sdk::txn_checker_bindings)`,
/// under `#[cfg(target_arch = "wasm32")]` (as for [`export_filter_world!`]).
pub use txn_checker_bindings::export_txn_checker_world;

/// The raw export macro of [`router_bindings`]: exports a type implementing
/// [`router_bindings::exports::wasmq::plugin::router::Guest`]. Call it as
/// `export_router_world!(MyType with_types_in wasmq_plugin_sdk::router_bindings)`, under
/// `#[cfg(target_arch = "wasm32")]` (as for [`export_filter_world!`]).
pub use router_bindings::export_router_world;

/// The ABI this SDK implements: `1000 * major + minor` of `wasmq:plugin` (0.1 -> 1).
pub const ABI_VERSION: u32 = 1;

/// wit-bindgen bindings of world `wasmq:plugin/filter-plugin@0.1.0`.
///
/// To implement the interface by hand, implement
/// [`exports::wasmq::plugin::filter::Guest`](bindings::exports::wasmq::plugin::filter::Guest)
/// on a type and export it with
/// `wasmq_plugin_sdk::export_filter_world!(MyType with_types_in wasmq_plugin_sdk::bindings);`
/// ([`glue`] has the pieces `export_filter!` is made of).
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "filter-plugin",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "export_filter_world",
        default_bindings_module: "wasmq_plugin_sdk::bindings",
    });
}

/// wit-bindgen bindings of world `wasmq:plugin/txn-checker-plugin@0.1.0`.
///
/// To implement the interface by hand, implement
/// [`exports::wasmq::plugin::txn_checker::Guest`](txn_checker_bindings::exports::wasmq::plugin::txn_checker::Guest)
/// on a type and export it with
/// `wasmq_plugin_sdk::export_txn_checker_world!(MyType with_types_in wasmq_plugin_sdk::txn_checker_bindings);`
/// ([`glue::check_batch`] and [`glue::check`] are what `export_txn_checker!` is made of).
#[allow(missing_docs)]
pub mod txn_checker_bindings {
    wit_bindgen::generate!({
        world: "txn-checker-plugin",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "export_txn_checker_world",
        default_bindings_module: "wasmq_plugin_sdk::txn_checker_bindings",
    });
}

/// wit-bindgen bindings of world `wasmq:plugin/router-plugin@0.1.0`.
///
/// To implement the interface by hand, implement
/// [`exports::wasmq::plugin::router::Guest`](router_bindings::exports::wasmq::plugin::router::Guest)
/// on a type and export it with
/// `wasmq_plugin_sdk::export_router_world!(MyType with_types_in wasmq_plugin_sdk::router_bindings);`
/// ([`glue::route_batch`], [`glue::route`] and [`glue::to_wit_router_verdict`] are what
/// `export_router!` is made of).
#[allow(missing_docs)]
pub mod router_bindings {
    wit_bindgen::generate!({
        world: "router-plugin",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "export_router_world",
        default_bindings_module: "wasmq_plugin_sdk::router_bindings",
    });
}

/// Exports a [`Filter`] as the component's `wasmq:plugin/filter` interface.
///
/// Use it once per plugin crate, at the crate root: `wasmq_plugin_sdk::export_filter!(MyFilter);`
///
/// The generated exports: `abi-version` returns [`ABI_VERSION`]; `expression-types` and
/// `configure` forward to the trait; `compile` refuses unserved expression types, calls
/// [`Filter::compile`] and stores the value in a [`glue::HandleTable`]; `release` drops it;
/// `evaluate` decodes the batch once, calls [`Filter::matches`] per message and returns the
/// bitset, or an empty list for a malformed batch or an unknown handle.
///
/// The export symbols are emitted for `target_arch = "wasm32"` only, so the same crate also
/// builds natively (as a cdylib and rlib too) for unit tests.
#[macro_export]
macro_rules! export_filter {
    ($filter:ty) => {
        const _: () = {
            #[allow(dead_code)] // natively nothing refers to it (see below)
            struct __WasmqFilterExport;

            ::std::thread_local! {
                static __WASMQ_HANDLES: ::core::cell::RefCell<
                    $crate::glue::HandleTable<<$filter as $crate::Filter>::Compiled>,
                > = const { ::core::cell::RefCell::new($crate::glue::HandleTable::new()) };
            }

            impl $crate::bindings::exports::wasmq::plugin::filter::Guest for __WasmqFilterExport {
                fn abi_version() -> u32 {
                    $crate::ABI_VERSION
                }

                fn expression_types() -> ::std::vec::Vec<::std::string::String> {
                    $crate::glue::expression_types::<$filter>()
                }

                fn configure(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    <$filter as $crate::Filter>::configure(&config)
                }

                fn compile(
                    expression_type: ::std::string::String,
                    expression: ::std::string::String,
                ) -> ::core::result::Result<
                    $crate::bindings::wasmq::plugin::types::Compiled,
                    $crate::bindings::wasmq::plugin::types::CompileError,
                > {
                    let compiled =
                        $crate::glue::compile_expression::<$filter>(&expression_type, &expression)
                            .map_err($crate::glue::to_wit_compile_error)?;
                    __WASMQ_HANDLES.with_borrow_mut(|table| $crate::glue::register(table, compiled))
                }

                fn release(handle: u32) {
                    __WASMQ_HANDLES.with_borrow_mut(|table| {
                        table.remove(handle);
                    });
                }

                fn evaluate(handle: u32, batch: ::std::vec::Vec<u8>) -> ::std::vec::Vec<u8> {
                    __WASMQ_HANDLES
                        .with_borrow(|table| $crate::glue::evaluate::<$filter>(table, handle, &batch))
                }
            }

            // Export symbols only for wasm: natively their names (`wasmq:plugin/filter@0.1.0#...`)
            // break the linker's version script when the crate is also built as a cdylib for tests.
            #[cfg(target_arch = "wasm32")]
            $crate::bindings::export_filter_world!(__WasmqFilterExport with_types_in $crate::bindings);
        };
    };
}

/// Exports a [`TxnChecker`] as the component's `wasmq:plugin/txn-checker` interface.
///
/// Use it once per plugin crate, at the crate root:
/// `wasmq_plugin_sdk::export_txn_checker!(MyChecker);`
///
/// The generated exports: `abi-version` returns [`ABI_VERSION`]; `configure` forwards to
/// [`TxnChecker::configure`]; `check` decodes the batch once and calls [`TxnChecker::check`]
/// per message with its meta entry, returning one verdict per message
/// ([`glue::check`]). A malformed batch, or a `meta` list whose length is not the batch's
/// message count, traps: the host counts the call as failed.
///
/// The export symbols are emitted for `target_arch = "wasm32"` only, so the same crate also
/// builds natively (as a cdylib and rlib too) for unit tests.
#[macro_export]
macro_rules! export_txn_checker {
    ($checker:ty) => {
        const _: () = {
            #[allow(dead_code)] // natively nothing refers to it (see below)
            struct __WasmqTxnCheckerExport;

            impl $crate::txn_checker_bindings::exports::wasmq::plugin::txn_checker::Guest
                for __WasmqTxnCheckerExport
            {
                fn abi_version() -> u32 {
                    $crate::ABI_VERSION
                }

                fn configure(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    <$checker as $crate::TxnChecker>::configure(&config)
                }

                fn check(
                    batch: ::std::vec::Vec<u8>,
                    meta: ::std::vec::Vec<
                        $crate::txn_checker_bindings::exports::wasmq::plugin::txn_checker::TxnMeta,
                    >,
                ) -> ::std::vec::Vec<
                    $crate::txn_checker_bindings::exports::wasmq::plugin::txn_checker::TxnVerdict,
                > {
                    $crate::glue::check::<$checker>(&batch, &meta)
                }
            }

            // Export symbols only for wasm: natively their names
            // (`wasmq:plugin/txn-checker@0.1.0#...`) break the linker's version script when
            // the crate is also built as a cdylib for tests.
            #[cfg(target_arch = "wasm32")]
            $crate::txn_checker_bindings::export_txn_checker_world!(
                __WasmqTxnCheckerExport with_types_in $crate::txn_checker_bindings
            );
        };
    };
}

/// Exports a [`Router`] as the component's `wasmq:plugin/router` interface.
///
/// Use it once per plugin crate, at the crate root: `wasmq_plugin_sdk::export_router!(MyRouter);`
///
/// The generated exports: `abi-version` returns [`ABI_VERSION`]; `configure` and
/// `needs-body` forward to [`Router::configure`] and [`Router::needs_body`]; `route` decodes
/// the batch once and calls [`Router::route`] per message with the topic's write queue
/// count, returning one verdict per message ([`glue::route`]). A malformed batch traps: the
/// host counts the call as failed.
///
/// The export symbols are emitted for `target_arch = "wasm32"` only, so the same crate also
/// builds natively (as a cdylib and rlib too) for unit tests.
#[macro_export]
macro_rules! export_router {
    ($router:ty) => {
        const _: () = {
            #[allow(dead_code)] // natively nothing refers to it (see below)
            struct __WasmqRouterExport;

            impl $crate::router_bindings::exports::wasmq::plugin::router::Guest
                for __WasmqRouterExport
            {
                fn abi_version() -> u32 {
                    $crate::ABI_VERSION
                }

                fn configure(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    <$router as $crate::Router>::configure(&config)
                }

                fn needs_body() -> bool {
                    <$router as $crate::Router>::needs_body()
                }

                fn route(
                    write_queues: u32,
                    batch: ::std::vec::Vec<u8>,
                ) -> ::std::vec::Vec<$crate::router_bindings::exports::wasmq::plugin::router::Verdict>
                {
                    $crate::glue::route::<$router>(write_queues, &batch)
                }
            }

            // Export symbols only for wasm: natively their names
            // (`wasmq:plugin/router@0.1.0#...`) break the linker's version script when the
            // crate is also built as a cdylib for tests.
            #[cfg(target_arch = "wasm32")]
            $crate::router_bindings::export_router_world!(
                __WasmqRouterExport with_types_in $crate::router_bindings
            );
        };
    };
}
