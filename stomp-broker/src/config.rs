//! Limits and policies, each with a documented default.

use std::time::Duration;

use stomp_codec::Limits as FrameLimits;

/// What the broker does when a subscriber cannot keep up: its pending
/// outbound bytes would pass [`Limits::max_pending_bytes`].
///
/// Queue deliveries are never dropped: a queue only hands a message to a
/// consumer with room, and keeps it otherwise. The policy applies to topic
/// and user-destination deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SlowConsumerPolicy {
    /// Send the subscriber an `ERROR` frame (`message:slow consumer`) and
    /// close its connection. The default: nothing is lost silently.
    #[default]
    Disconnect,
    /// Drop the subscriber's oldest undelivered topic messages to make room.
    DropOldest,
    /// Drop the new message for this subscriber.
    DropNewest,
}

/// What a queue does with a message that arrives when it is full
/// ([`Limits::max_queue_messages`] or [`Limits::max_queue_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QueueOverflow {
    /// Refuse the `SEND` with an `ERROR` frame naming the queue. The default:
    /// the sender learns that its message was not taken.
    #[default]
    RejectPublish,
    /// Drop the oldest message in the queue to make room (RabbitMQ's
    /// `drop-head`).
    DropOldest,
}

/// Bounds on everything a client can make the broker hold.
///
/// | limit | default | what happens past it |
/// |---|---|---|
/// | [`max_connections`](Self::max_connections) | 10,000 | the new connection gets `ERROR` and is closed |
/// | [`max_subscriptions`](Self::max_subscriptions) per connection | 1,000 | `ERROR`, close |
/// | [`max_unacked`](Self::max_unacked) per subscription (prefetch) | 1,000 | delivery pauses until acks arrive |
/// | [`max_pending_bytes`](Self::max_pending_bytes) per connection | 4 MiB | the [`SlowConsumerPolicy`] |
/// | [`max_transactions`](Self::max_transactions) per connection | 16 | `ERROR`, close |
/// | [`max_transaction_frames`](Self::max_transaction_frames) | 1,000 | `ERROR`, close |
/// | [`max_transaction_bytes`](Self::max_transaction_bytes) per connection | 16 MiB | `ERROR`, close |
/// | [`max_queue_messages`](Self::max_queue_messages) per queue | 100,000 | the [`QueueOverflow`] policy |
/// | [`max_queue_bytes`](Self::max_queue_bytes) per queue | 64 MiB | the [`QueueOverflow`] policy |
/// | [`max_total_queue_bytes`](Self::max_total_queue_bytes), all queues | 512 MiB | the [`QueueOverflow`] policy (drop-oldest drops from the queue published to; an empty one refuses) |
/// | [`max_destinations`](Self::max_destinations) | 100,000 | `ERROR`, close (or an error from the handle) |
/// | [`max_frame_rate`](Self::max_frame_rate) per connection | none | reading pauses until the rate allows (TCP backpressure) |
/// | [`frame`](Self::frame) | [`stomp_codec::Limits`] defaults: 8 MiB frames | `ERROR`, close |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Connections open at once, over every transport.
    pub max_connections: usize,
    /// Subscriptions per connection.
    pub max_subscriptions: usize,
    /// Unacknowledged messages per `client` or `client-individual`
    /// subscription; past it the subscription gets nothing more until it
    /// acknowledges (its prefetch).
    pub max_unacked: usize,
    /// Bytes waiting to be written to one connection.
    pub max_pending_bytes: usize,
    /// Open transactions per connection.
    pub max_transactions: usize,
    /// Frames (SEND, ACK, NACK) buffered in one transaction.
    pub max_transaction_frames: usize,
    /// Octets of SEND frames (headers and bodies) held in all the open
    /// transactions of one connection: without it, frames of up to the
    /// frame limit times the two bounds above could be held.
    pub max_transaction_bytes: usize,
    /// Messages a queue keeps while nobody consumes them.
    pub max_queue_messages: usize,
    /// Body bytes a queue keeps while nobody consumes them.
    pub max_queue_bytes: usize,
    /// Body bytes all queues together keep: without it, any client could
    /// make the broker hold `max_queue_bytes` times `max_destinations`.
    pub max_total_queue_bytes: usize,
    /// Destinations (topics with subscribers, queues in use) at once.
    pub max_destinations: usize,
    /// Frames per second one connection may send, with a burst of as many;
    /// past it the broker stops reading from the connection until the rate
    /// allows more, so the client is slowed down by TCP, not cut off.
    /// `None` (the default): no limit, as a broker measured for throughput
    /// wants; set it for a service open to untrusted clients.
    pub max_frame_rate: Option<u32>,
    /// Frame, body and header limits of the codec.
    pub frame: FrameLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_subscriptions: 1_000,
            max_unacked: 1_000,
            max_pending_bytes: 4 * 1024 * 1024,
            max_transactions: 16,
            max_transaction_frames: 1_000,
            max_transaction_bytes: 16 * 1024 * 1024,
            max_queue_messages: 100_000,
            max_queue_bytes: 64 * 1024 * 1024,
            max_total_queue_bytes: 512 * 1024 * 1024,
            max_destinations: 100_000,
            max_frame_rate: None,
            frame: FrameLimits::default(),
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name(mut self, value: $ty) -> Self {
                self.$name = value;
                self
            }
        )*
    };
}

impl Limits {
    setters! {
        /// Sets [`max_connections`](Self::max_connections).
        max_connections: usize;
        /// Sets [`max_subscriptions`](Self::max_subscriptions).
        max_subscriptions: usize;
        /// Sets [`max_unacked`](Self::max_unacked).
        max_unacked: usize;
        /// Sets [`max_pending_bytes`](Self::max_pending_bytes).
        max_pending_bytes: usize;
        /// Sets [`max_transactions`](Self::max_transactions).
        max_transactions: usize;
        /// Sets [`max_transaction_frames`](Self::max_transaction_frames).
        max_transaction_frames: usize;
        /// Sets [`max_transaction_bytes`](Self::max_transaction_bytes).
        max_transaction_bytes: usize;
        /// Sets [`max_queue_messages`](Self::max_queue_messages).
        max_queue_messages: usize;
        /// Sets [`max_queue_bytes`](Self::max_queue_bytes).
        max_queue_bytes: usize;
        /// Sets [`max_total_queue_bytes`](Self::max_total_queue_bytes).
        max_total_queue_bytes: usize;
        /// Sets [`max_destinations`](Self::max_destinations).
        max_destinations: usize;
        /// Sets [`max_frame_rate`](Self::max_frame_rate).
        max_frame_rate: Option<u32>;
        /// Sets the codec's [`frame`](Self::frame) limits.
        frame: FrameLimits;
    }
}

/// Heart-beat bounds (STOMP 1.1+ `heart-beat` header).
///
/// A client asks for `cx,cy`: it can send every `cx` ms, and wants to
/// receive every `cy` ms. The broker never sends more often than
/// [`min_send`](Self::min_send) nor expects beats more often than
/// [`min_receive`](Self::min_receive), answers with the intervals it will
/// use, and closes a connection (with an `ERROR` frame) that stays silent
/// for [`tolerance`](Self::tolerance) times the agreed receive interval.
/// Any inbound octet counts as a beat.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Heartbeat {
    /// Shortest interval at which the broker sends heart-beats. Default 1 s.
    pub min_send: Duration,
    /// Shortest interval at which the broker accepts to be sent heart-beats.
    /// Default 1 s.
    pub min_receive: Duration,
    /// How many receive intervals of silence close a connection. Default 2.
    pub tolerance: f64,
    /// How long a connection may take to send `CONNECT`. Default 10 s.
    pub connect_timeout: Duration,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self {
            min_send: Duration::from_secs(1),
            min_receive: Duration::from_secs(1),
            tolerance: 2.0,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl Heartbeat {
    setters! {
        /// Sets [`min_send`](Self::min_send).
        min_send: Duration;
        /// Sets [`min_receive`](Self::min_receive).
        min_receive: Duration;
        /// Sets [`tolerance`](Self::tolerance).
        tolerance: f64;
        /// Sets [`connect_timeout`](Self::connect_timeout).
        connect_timeout: Duration;
    }

    /// The intervals agreed for a client's `heart-beat: cx,cy`: what the
    /// broker sends (`send`) and expects (`receive`), `None` for "never".
    #[must_use]
    pub fn negotiate(&self, client_send: u64, client_receive: u64) -> Negotiated {
        let pick = |client: u64, floor: Duration| {
            (client != 0).then(|| Duration::from_millis(client).max(floor))
        };
        Negotiated {
            send: pick(client_receive, self.min_send),
            receive: pick(client_send, self.min_receive),
        }
    }
}

/// Heart-beat intervals agreed with one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Negotiated {
    /// How often the broker sends a beat, if at all.
    pub send: Option<Duration>,
    /// How often the client promised to send, if at all.
    pub receive: Option<Duration>,
}

impl Negotiated {
    /// The value of the `heart-beat` header of `CONNECTED`: `sx,sy` in ms.
    #[must_use]
    pub fn header(&self) -> String {
        let ms = |d: Option<Duration>| d.map_or(0, |d| d.as_millis());
        format!("{},{}", ms(self.send), ms(self.receive))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_negotiation_follows_the_spec() {
        let hb = Heartbeat::default().min_send(Duration::from_millis(500));
        assert_eq!(hb.negotiate(0, 0), Negotiated::default());
        let n = hb.negotiate(100, 2000);
        assert_eq!(n.send, Some(Duration::from_secs(2)));
        assert_eq!(n.receive, Some(Duration::from_secs(1)), "raised to min_receive");
        assert_eq!(n.header(), "2000,1000");
        let n = hb.negotiate(0, 100);
        assert_eq!((n.send, n.receive), (Some(Duration::from_millis(500)), None));
    }
}
