//! An embeddable STOMP 1.0, 1.1 and 1.2 broker.
//!
//! Build a [`Broker`] with [`Broker::builder`], hand it a bound
//! `TcpListener` ([`Broker::serve`] for STOMP over TCP,
//! [`Broker::serve_ws`] for STOMP over WebSocket, or an already-upgraded
//! WebSocket with [`Broker::serve_websocket`]), and stop it with
//! [`Broker::shutdown`]. The library binds nothing, installs no signal
//! handler and creates no runtime.
//!
//! - **Destinations.** `/queue/...` gives each message to one consumer,
//!   round robin, and keeps messages while nobody consumes (bounded);
//!   every other destination (`/topic/...`) fans out to every subscriber.
//!   User destinations: a subscription to `/user/queue/x` receives what is
//!   sent to `/user/{its user}/queue/x`, on every session of that user.
//! - **Acknowledgements.** `auto`, `client` (cumulative) and
//!   `client-individual`, with a prefetch bound; NACK and disconnect give
//!   queue messages back to the queue.
//! - **Transactions**, **receipts**, **heart-beats** (both ways, with a
//!   tolerance), and an `ERROR` frame before closing on every protocol
//!   violation.
//! - **Hooks.** [`Authenticator`], [`Interceptor`], [`AppHandler`] (for
//!   an application prefix such as `/app/`) and [`Replay`] (history before
//!   live messages, for clients that resume).
//! - **Fan-out without copies.** A message's `MESSAGE` frame is encoded
//!   once and shared by every subscriber; each connection adds only its
//!   `subscription` and `ack` headers, coalescing writes, with a bounded
//!   outbox and a named [`SlowConsumerPolicy`].
//! - **From Rust.** [`Broker::publish`], [`Broker::send_to_user`] and
//!   [`Broker::subscribe`] work without a socket.
//!
//! # Layout
//! - `broker`: [`Broker`] and [`BrokerBuilder`]; `config`: [`Limits`],
//!   [`Heartbeat`], the policies.
//! - `conn`: the connection task: the transport-independent core, `tcp`
//!   and `ws` (STOMP over WebSocket).
//! - `session`: the protocol state of one session, one file per command
//!   group; `subscription`: ack modes and unacknowledged messages.
//! - `router`: topics and queues; `outbox`: the bounded outbound queue.
//! - `hooks`: the traits an application implements; `message`: [`Message`].
//! - `local`: [`LocalSubscription`]; `stats`: [`StatsSnapshot`].
//! - [`store`]: chat history and rooms ([`store::HistoryStore`],
//!   [`store::RoomStore`]), their backends (behind the features `sqlite`,
//!   `mysql` and `mongodb`) and the batching [`store::HistoryWriter`].
#![deny(missing_docs)]

pub mod backplane;
mod broker;
mod config;
mod conn;
mod error;
mod hooks;
mod local;
mod message;
#[cfg(feature = "metrics")]
pub mod metrics;
mod outbox;
mod router;
mod session;
mod stats;
pub mod store;
mod subscription;

pub use broker::{Broker, BrokerBuilder};
pub use config::{Heartbeat, Limits, Negotiated, QueueOverflow, SlowConsumerPolicy};
pub use error::PublishError;
pub use hooks::{
    AllowAll, AppContext, AppHandler, AppMessage, Authenticator, ConnectRequest, Interceptor,
    Principal, Rejection, Replay, ReplayBatch, SessionInfo, TransportKind,
};
pub use local::LocalSubscription;
pub use message::Message;
pub use stats::StatsSnapshot;

/// STOMP over WebSocket: subprotocol negotiation for HTTP frameworks that
/// upgrade connections themselves (then [`Broker::serve_websocket`]), and
/// the WebSocket crate the broker uses, so that its types match.
pub mod websocket {
    pub use crate::conn::{SUBPROTOCOLS, negotiate_subprotocol};
    pub use tokio_tungstenite;
}
/// The frame codec this broker is built on.
pub use stomp_codec as codec;
