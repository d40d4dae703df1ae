//! Several broker nodes as one: the [`Backplane`] carries messages for
//! topics and user destinations to the other nodes.
//!
//! A node publishes every message sent to a topic (any destination that is
//! not a `/queue/...`, user destinations included) on the backplane after
//! delivering it locally, and tells the backplane which destinations it has
//! local subscribers for: interest is expressed when the first local
//! subscriber of a destination arrives and dropped when the last leaves.
//! Messages from other nodes arrive through [`Inbound`] and are delivered
//! to local subscribers only (never published again).
//!
//! Queues stay node-local: a message sent to `/queue/x` on one node is
//! consumed by that node's consumers (or kept there).
//!
//! Implementations: [`InProcessBus`] (several brokers in one process, for
//! tests and embedding) and `RedisBackplane` (feature `redis`, Redis
//! pub/sub: at-most-once, see its documentation).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use stomp_codec::Headers;
use tokio::sync::watch;

use crate::broker::Shared;

mod envelope;
mod in_process;
#[cfg(feature = "redis")]
mod redis;

pub use envelope::{Envelope, EnvelopeError};

pub use in_process::{InProcessBus, InProcessNode};
#[cfg(feature = "redis")]
pub use redis::{RedisBackplane, RedisConfig};

/// Carries messages between broker nodes.
///
/// The broker calls [`publish`](Self::publish) on its delivery path, so it
/// must not wait: an implementation queues (bounded) and sends from a task
/// of its own, and counts what it had to drop. [`subscribe`](Self::subscribe)
/// and [`unsubscribe`](Self::unsubscribe) are called in the order interest
/// changes, once per change, for destinations in their routed form (a
/// user destination as `/user/{name}/queue/x`).
#[async_trait]
pub trait Backplane: Send + Sync + 'static {
    /// Called once, when the broker is built: where messages from other
    /// nodes go.
    fn attach(&self, inbound: Inbound);

    /// Sends a message for `destination` to the other nodes (not to this
    /// one). `headers` are those of the `SEND` (or of the embedding
    /// application's publish).
    fn publish(&self, destination: &str, headers: &Headers, body: &Bytes);

    /// This node now has a subscriber for `destination` (and had none).
    /// Call [`ReadySignal::set`] on `ready` once messages other nodes publish to
    /// it from then on will arrive (or at once if the backplane is down:
    /// it subscribes again when it is back).
    fn subscribe(&self, destination: &str, ready: ReadySignal);

    /// This node has no subscriber for `destination` any more.
    fn unsubscribe(&self, destination: &str);

    /// Counters, for logs and metrics.
    fn stats(&self) -> BackplaneStats;

    /// Stops the backplane's tasks (the broker calls this on shutdown).
    async fn close(&self) {}
}

/// A backplane that could not start (its server cannot be reached, the
/// address is not valid, credentials were refused). The source is the
/// client library's error.
#[derive(Debug, thiserror::Error)]
#[error("backplane: {0}")]
pub struct BackplaneError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// A backplane's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackplaneStats {
    /// Whether the backplane is connected now.
    pub connected: bool,
    /// Messages sent to other nodes.
    pub published: u64,
    /// Messages that could not be sent: dropped while disconnected or
    /// when the outbound queue was full.
    pub publish_dropped: u64,
    /// Messages received from other nodes.
    pub received: u64,
    /// Messages other nodes sent that this node can tell it missed (gaps
    /// in a sender's sequence for a destination).
    pub lost: u64,
    /// Received messages that could not be decoded.
    pub malformed: u64,
    /// Times the connection was established again after a loss.
    pub reconnects: u64,
    /// Destinations this node is subscribed to.
    pub subscriptions: usize,
    /// Messages waiting to be published.
    pub queued: usize,
}

/// Given to [`Backplane::subscribe`]: set it when the subscription is live.
#[derive(Debug)]
pub struct ReadySignal(watch::Sender<bool>);

impl ReadySignal {
    /// Marks the subscription live: subscribers waiting for it go on.
    pub fn set(&self) {
        self.0.send_replace(true);
    }
}

/// Resolves once a destination's backplane subscription is live.
#[derive(Debug, Clone)]
pub(crate) struct Ready(watch::Receiver<bool>);

impl Ready {
    fn pair() -> (ReadySignal, Self) {
        let (tx, rx) = watch::channel(false);
        (ReadySignal(tx), Self(rx))
    }

    /// Waits until live, at most `timeout`; `false` if it was not.
    pub(crate) async fn wait(mut self, timeout: Duration) -> bool {
        // A dropped signal (the backplane gave up on it) ends the wait too.
        matches!(tokio::time::timeout(timeout, self.0.wait_for(|live| *live)).await, Ok(Ok(_)))
    }
}

/// How messages from other nodes reach this broker's subscribers. Holds
/// the broker weakly: a backplane outliving its broker delivers nothing.
#[derive(Clone)]
pub struct Inbound {
    pub(crate) shared: Weak<Shared>,
}

impl fmt::Debug for Inbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbound").field("attached", &(self.shared.strong_count() > 0)).finish()
    }
}

impl Inbound {
    /// Delivers a message from another node to this node's subscribers of
    /// `destination` (in its routed form). Returns how many received it.
    #[must_use = "the count says whether anyone received it"]
    pub fn deliver(&self, destination: &str, headers: &Headers, body: &Bytes) -> usize {
        let Some(shared) = self.shared.upgrade() else { return 0 };
        crate::Broker::from_shared(shared).deliver_from_backplane(destination, headers, body)
    }
}

/// The broker's side: which destinations have local subscribers, and the
/// calls to the backplane when that changes.
pub(crate) struct Interest {
    backplane: Arc<dyn Backplane>,
    /// Local subscriptions per destination, and when it went live.
    destinations: Mutex<HashMap<Arc<str>, (usize, Ready)>>,
}

impl fmt::Debug for Interest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interest").finish_non_exhaustive()
    }
}

impl Interest {
    pub(crate) fn new(backplane: Arc<dyn Backplane>) -> Self {
        Self { backplane, destinations: Mutex::default() }
    }

    pub(crate) fn backplane(&self) -> &Arc<dyn Backplane> {
        &self.backplane
    }

    /// One more local subscription to `destination`; the first one
    /// subscribes on the backplane. The result resolves when it is live.
    pub(crate) fn add(&self, destination: &str) -> Ready {
        let mut map = self.destinations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((count, ready)) = map.get_mut(destination) {
            *count += 1;
            return ready.clone();
        }
        let (signal, ready) = Ready::pair();
        // Called under the lock, so the backplane sees subscribe and
        // unsubscribe of a destination in the order they happened.
        self.backplane.subscribe(destination, signal);
        map.insert(Arc::from(destination), (1, ready.clone()));
        ready
    }

    /// One local subscription to `destination` fewer; the last one
    /// unsubscribes on the backplane.
    pub(crate) fn remove(&self, destination: &str) {
        let mut map = self.destinations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some((count, _)) = map.get_mut(destination) else { return };
        *count -= 1;
        if *count == 0 {
            map.remove(destination);
            self.backplane.unsubscribe(destination);
        }
    }
}
