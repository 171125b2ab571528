//! # wasmq
//!
//! A RocketMQ-compatible message broker whose filters, transaction check-backs and routing are
//! WebAssembly plugins (see `DESIGN.md`). This crate holds the broker library and binaries.
//!
//! ```text
//! producer --SEND--> net (frame, connection) -> processor::send -> routing (router plugin bound
//!                    to the topic, if any) -> store::MessageStore::put (multi-dispatch for fan-out)
//!                                                                    |  CommitLog.append (mmap)
//!                                                                    |  Flusher (sync group commit | async)
//! store Dispatcher ---> ConsumeQueue / IndexService ---> long_poll::PullHold (wakes held pulls)
//! consumer --PULL--> processor::pull -> filtered_read: subscription resolved by its filter plugin
//!                     (TAG: tag hashes on consume-queue entries; SQL92/JSON/...: wasm batch
//!                     evaluation in plugin::LoadedFilter) -> matching record bytes
//! wasmq plugin load|upgrade|unload --> processor::plugin_admin -> plugin::Registry (persisted)
//! consumer --HEART_BEAT/offsets/locks--> processor::consumer -> clients / meta::ConsumerOffsets
//! producer --SEND (prepared)--> transaction::half_put; --END_TRANSACTION--> transaction::resolve
//! transaction::check loop --> plugin::LoadedChecker, then CHECK_TRANSACTION_STATE to producers
//! broker --REGISTER_BROKER--> namesrv (embedded or external) <--GET_ROUTEINFO-- clients
//! ```
//!
//! ## Layers
//!
//! A module uses only modules of its own layer or below; `src/architecture.rs` (a unit test) reads every
//! `crate::` path in `src/` and fails on an upward edge or an import circle. Bottom to top:
//!
//! | layer | modules | what it is |
//! |---|---|---|
//! | 0 foundation | [`protocol`], [`wake`], [`failpoint`], [`logging`] | wire format, a thread wake-up signal, crash points, log setup |
//! | 1 storage, network, plugin host | [`store`], [`meta`], [`net`], [`namesrv`], [`plugin`] | commit log and queues; topic configs and offsets; connections; the NameServer; wasmtime host (no broker knowledge) |
//! | 2 broker context | [`context`], [`config`], [`clients`], [`subscription`], [`filtered_read`], [`long_poll`], [`queue_locks`], [`flow`] | the shared state (`context::Broker`) and what it holds: config, client groups, subscriptions and their filtered reads, held pulls, queue locks; the state of delays, timers, filter bits and transactions |
//! | 3 processors and services | [`processor`], [`routing`], [`schedule`], [`timer`], [`transaction`], [`filter_bits`], [`registration`], [`ha`], [`replica_meta`] | request handlers and the dispatch table; background services over the context |
//! | 4 wiring | [`broker`] (and `src/bin/`) | `run`: listeners, services, shutdown |
//!
//! | module | concept |
//! |---|---|
//! | [`protocol`] | remoting frames, commands, codes, typed headers, body encodings |
//! | [`wake`] | a coalescing wake-up signal between threads |
//! | [`failpoint`] | crash points for durability tests, and injected faults (`WASMQ_FAILPOINT`) |
//! | [`store`] | commit log, consume queues, index, flush, checkpoint, recovery, retention |
//! | [`meta`] | topic configs and consumer offsets on disk |
//! | [`net`] | accept loop, connections (concurrent requests, coalesced writes), outbound client |
//! | [`namesrv`] | route table and broker liveness; the NameServer request handler |
//! | [`plugin`] | the wasmtime host: engine, limits, batch encoding, the plugin kinds, registry |
//! | [`context`] | the broker context shared by processors and services, and the state it holds |
//! | [`config`] | broker configuration |
//! | [`clients`] | producer/consumer groups and their connections |
//! | [`subscription`] | subscriptions and what they resolve to with the active filter plugin |
//! | [`filtered_read`] | reads for a subscription: tag-hash prefilter or batched plugin evaluation, failure policy |
//! | [`long_poll`] | held pulls woken by the dispatcher |
//! | [`queue_locks`] | queue locks for orderly consumers |
//! | [`flow`] | flow control: send back-pressure (SYSTEM_BUSY), quotas per topic and group, held-pull bound |
//! | [`processor`] | the request-code dispatch table; one file per request family: send, send_back, pull, consumer, query, admin |
//! | [`routing`] | the send path's router step: verdicts checked, destinations and fan-out planned |
//! | [`schedule`] | delay levels: `SCHEDULE_TOPIC_XXXX` and the per-level delivery tasks |
//! | [`timer`] | delivery at arbitrary times: the timer topic, due-soon heap, delivered bitmap |
//! | [`transaction`] | half messages, END_TRANSACTION, the check loop (checker plugins, then producers) |
//! | [`filter_bits`] | the thread that computes match bits of plugin expressions behind dispatch |
//! | [`registration`] | REGISTER_BROKER to NameServers, with back-off for unreachable ones |
//! | [`ha`] | replication: the master's HA port and streaming sessions, the slave's link |
//! | [`replica_meta`] | a slave's copy of its master's metadata: topics, offsets (never back), delay and timer progress, plugins and bindings |
//! | [`broker`] | `run`: a node's listeners, background services and clean shutdown |

#[cfg(test)]
mod architecture;
pub mod broker;
pub mod clients;
pub mod config;
pub mod context;
pub mod failpoint;
pub mod filter_bits;
pub mod filtered_read;
pub mod flow;
pub mod ha;
pub mod logging;
pub mod long_poll;
pub mod meta;
pub mod namesrv;
pub mod net;
pub mod plugin;
pub mod processor;
pub mod protocol;
pub mod queue_locks;
pub mod registration;
pub mod replica_meta;
pub mod routing;
pub mod schedule;
pub mod store;
pub mod subscription;
pub mod timer;
pub mod transaction;
pub mod wake;
