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
//! | module | concept |
//! |---|---|
//! | [`store`] | commit log, consume queues, index, flush, checkpoint, recovery, retention |
//! | [`meta`] | topic configs and consumer offsets on disk |
//! | [`protocol`] | remoting frames, commands, codes, typed headers, body encodings |
//! | [`net`] | accept loop, connections (concurrent requests, coalesced writes), outbound client |
//! | [`namesrv`] | route table and broker liveness; the NameServer request handler |
//! | [`broker`] | the broker context, request routing, background tasks, `run` |
//! | [`processor`] | one file per request family: send, send_back, pull, consumer, query, admin |
//! | [`routing`] | the send path's router step: verdicts checked, destinations and fan-out planned |
//! | [`subscription`] | subscriptions and what they resolve to with the active filter plugin |
//! | [`filter_bits`] | match bits of plugin expressions computed behind dispatch, so pulls skip without reading |
//! | [`filtered_read`] | reads for a subscription: tag-hash prefilter or batched plugin evaluation, failure policy |
//! | [`plugin`] | the wasmtime host: engine, limits, batch encoding, loaded filters, registry |
//! | [`clients`] | producer/consumer groups and their connections |
//! | [`long_poll`] | held pulls woken by the dispatcher |
//! | [`queue_locks`] | queue locks for orderly consumers |
//! | [`schedule`] | delay levels: `SCHEDULE_TOPIC_XXXX` and the per-level delivery tasks |
//! | [`timer`] | delivery at arbitrary times: the timer topic, due-soon heap, delivered bitmap |
//! | [`transaction`] | half messages, END_TRANSACTION, the check loop (checker plugins, then producers) |
//! | [`failpoint`] | crash points for durability tests (`WASMQ_FAILPOINT`) |
//! | [`config`] | broker configuration |

pub mod broker;
pub mod clients;
pub mod config;
pub mod failpoint;
pub mod filter_bits;
pub mod filtered_read;
pub mod logging;
pub mod long_poll;
pub mod meta;
pub mod namesrv;
pub mod net;
pub mod plugin;
pub mod processor;
pub mod protocol;
pub mod queue_locks;
pub mod routing;
pub mod schedule;
pub mod store;
pub mod subscription;
pub mod timer;
pub mod transaction;
