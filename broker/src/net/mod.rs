//! The remoting transport over TCP (tokio): the accept loop ([`serve`]), per-connection reader/writer
//! ([`Connection`]), the application hook ([`RequestHandler`]) and an outbound client ([`RemotingClient`]).
//! Frames and commands come from [`crate::protocol`]; what a request *means* is the handler's business.

pub mod client;
pub mod config;
pub mod connection;
pub mod driver;
pub mod error;
pub mod handler;
pub mod server;
mod write_side;

pub use client::RemotingClient;
pub use config::NetConfig;
pub use connection::Connection;
pub use error::NetError;
pub use handler::{HandlerFuture, NotSupportedHandler, RequestHandler};
pub use server::serve;

#[cfg(test)]
mod tests;
