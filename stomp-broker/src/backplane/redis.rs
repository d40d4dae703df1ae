//! [`RedisBackplane`]: broker nodes joined through Redis pub/sub.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ::redis::aio::{MultiplexedConnection, PubSub};
use ::redis::{AsyncConnectionConfig, Client, RedisError};
use async_trait::async_trait;
use bytes::Bytes;
use stomp_codec::Headers;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use super::{Backplane, BackplaneStats, Envelope, Inbound, ReadySignal};

mod publisher;
mod retry;
mod sequence;
mod subscriber;

use publisher::{Outgoing, Publisher};
use retry::Retry;
use sequence::Sequences;
use subscriber::{Command, Subscriber};

/// How long connecting to Redis may take before the attempt counts as
/// failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a pipeline of `PUBLISH`es or a `(UN)SUBSCRIBE` may wait for
/// Redis's answer before the connection counts as lost.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an idle connection is checked with a `PING`: a connection
/// cut without a FIN (or, for the publisher, closed while idle) would
/// otherwise look alive until it is used.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// How long [`RedisBackplane::close`] waits for its tasks (the publisher
/// sends what is still queued meanwhile).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How to reach Redis, and the limits of a [`RedisBackplane`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The Redis server, as `redis://[user:password@]host:port[/db]`
    /// (`rediss://` needs a TLS feature of the `redis` crate). Default:
    /// `redis://127.0.0.1:6379`.
    pub url: String,
    /// Put in front of a destination to name its channel. Nodes that
    /// should form one cluster share it; different clusters on one Redis
    /// need different prefixes. Default `stomp:`.
    pub channel_prefix: String,
    /// Messages waiting to be published, at most (at least 1); beyond that
    /// `publish` drops them (and counts them). It absorbs bursts larger
    /// than what Redis takes in a round trip or two. Default 65,536.
    pub queue_capacity: usize,
    /// `PUBLISH` commands sent in one pipeline (one round trip), at most
    /// (between 1 and `queue_capacity`). Default 512.
    pub max_pipeline: usize,
    /// The first wait before reconnecting after Redis is lost; it doubles
    /// with every failed attempt, up to `retry_max`, and each wait is
    /// jittered (between half of it and all of it) so that nodes do not
    /// come back in step. Default 100 ms.
    pub retry_initial: Duration,
    /// The longest wait between reconnection attempts. Default 5 s.
    pub retry_max: Duration,
    /// This node's id in the envelopes it sends: how it recognizes (and
    /// skips) its own messages, and how receivers keep sequence numbers
    /// apart. Random by default; two nodes must not share one.
    pub node_id: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".to_owned(),
            channel_prefix: "stomp:".to_owned(),
            queue_capacity: 65_536,
            max_pipeline: 512,
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            node_id: retry::random_u64(),
        }
    }
}

impl RedisConfig {
    /// The defaults, with Redis at `url`.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), ..Self::default() }
    }

    /// Sets [`channel_prefix`](Self::channel_prefix).
    #[must_use]
    pub fn channel_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.channel_prefix = prefix.into();
        self
    }

    /// Sets [`queue_capacity`](Self::queue_capacity).
    #[must_use]
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Sets [`max_pipeline`](Self::max_pipeline).
    #[must_use]
    pub fn max_pipeline(mut self, max: usize) -> Self {
        self.max_pipeline = max;
        self
    }

    /// Sets [`retry_initial`](Self::retry_initial) and
    /// [`retry_max`](Self::retry_max).
    #[must_use]
    pub fn retry(mut self, initial: Duration, max: Duration) -> Self {
        self.retry_initial = initial;
        self.retry_max = max;
        self
    }

    /// Sets [`node_id`](Self::node_id).
    #[must_use]
    pub fn node_id(mut self, id: u64) -> Self {
        self.node_id = id;
        self
    }
}

/// A [`Backplane`] over Redis pub/sub, for several broker nodes that act
/// as one.
///
/// # Channels
/// One Redis channel per destination: `channel_prefix` + the destination in
/// its routed form (`stomp:/topic/rooms.7`, `stomp:/user/bob/queue/x`). A
/// node `SUBSCRIBE`s to a channel when its first local subscriber of the
/// destination arrives and `UNSUBSCRIBE`s when the last leaves, so Redis
/// sends a node only what it has subscribers for.
///
/// # Delivery is at most once
/// Redis pub/sub keeps nothing: a message published while a node is not
/// subscribed (Redis down, the node reconnecting, the connection too slow
/// and cut by Redis's `client-output-buffer-limit`) is gone. This
/// backplane never retries a `PUBLISH`, so a message reaches another node
/// once or not at all. Losses are counted rather than hidden:
/// - the sender counts what it could not publish in
///   [`BackplaneStats::publish_dropped`]: the outbound queue was full, the
///   connection was down, or the pipeline carrying it failed;
/// - every message carries its sender's sequence number for its
///   destination, and a receiver counts the gaps in
///   [`BackplaneStats::lost`] (a number that goes back means the sender
///   restarted or forgot its counters; that is accepted as a new start).
///
/// # Sending and receiving
/// [`publish`](Backplane::publish) runs on the broker's delivery path and
/// never waits: it encodes the message into an [`Envelope`] (binary, one
/// right-sized buffer, numbered in the order of sending) and puts it on a
/// bounded queue. A publisher task takes up to `max_pipeline` queued
/// messages at a time and sends them as one pipeline of `PUBLISH` commands,
/// one round trip per batch. A subscriber task owns a pub/sub connection:
/// it sends the (un)subscriptions that piled up as one `SUBSCRIBE` and one
/// `UNSUBSCRIBE`, and hands each message from another node to the broker.
/// A node ignores its own messages, recognized by the node id in the
/// envelope.
///
/// # When Redis goes away
/// Local delivery goes on. Each task logs a warning, marks the backplane
/// disconnected ([`BackplaneStats::connected`]), and reconnects with
/// exponential backoff (with jitter) between `retry_initial` and
/// `retry_max`; meanwhile messages for other nodes are dropped (and
/// counted) and new subscriptions are confirmed at once, so that no client
/// waits for Redis. Once back, the subscriber subscribes again to every
/// destination this node has subscribers for, and each task logs how long
/// the outage lasted (and the publisher what it dropped meanwhile). Idle
/// connections are checked with a `PING` every 5 s.
///
/// A node that receives more than it can handle for long is cut off by
/// Redis (`client-output-buffer-limit pubsub`, 32 MB by default): it
/// reconnects like after an outage, and what it missed is counted in
/// `lost`.
///
/// # Tasks
/// Two tasks run on the runtime that called [`connect`](Self::connect).
/// They stop on [`close`](Backplane::close), which the broker calls on
/// shutdown (what is still queued is sent first, for at most a second),
/// or when the backplane is dropped.
///
/// # Counters
/// In [`stats`](Backplane::stats): `connected` is true while both
/// connections (publishing and pub/sub) are up; `reconnects` counts each
/// of them coming back, so one Redis restart usually counts 2;
/// `published` counts messages Redis acknowledged; `publish_dropped` and
/// `lost` are described above; `malformed` counts payloads on this
/// cluster's channels that are not envelopes (another program publishing
/// there); `subscriptions` is the number of destinations this node has
/// subscribers for (Redis is subscribed to exactly those while
/// connected); `queued` is what waits for the publisher task.
///
/// # Example
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use stomp_broker::Broker;
/// use stomp_broker::backplane::{RedisBackplane, RedisConfig};
///
/// let config = RedisConfig::new("redis://127.0.0.1:6379").channel_prefix("chat:");
/// let broker = Broker::builder().backplane(RedisBackplane::connect(config).await?).build();
/// # broker.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct RedisBackplane {
    state: Arc<State>,
    /// The publisher task's queue.
    queue: mpsc::Sender<Outgoing>,
    /// The subscriber task's commands. Unbounded, as `subscribe` must not
    /// wait; it holds what clients (un)subscribed during one round trip to
    /// Redis, which the task then takes in one go.
    commands: mpsc::UnboundedSender<Command>,
    /// Sequence numbers per destination. A `DashMap` and not one mutex:
    /// `publish` is called from every connection task at once.
    sequences: Sequences,
    token: CancellationToken,
    tracker: TaskTracker,
    /// Stops the tasks when the backplane is dropped without `close`.
    _stop_on_drop: DropGuard,
}

/// What the backplane and its tasks share: identity, the broker's inbound
/// side and the counters.
#[derive(Debug, Default)]
struct State {
    node: u64,
    prefix: String,
    inbound: OnceLock<Inbound>,
    publisher_up: AtomicBool,
    subscriber_up: AtomicBool,
    published: AtomicU64,
    publish_dropped: AtomicU64,
    received: AtomicU64,
    lost: AtomicU64,
    malformed: AtomicU64,
    reconnects: AtomicU64,
    subscriptions: AtomicUsize,
    /// The subscriber lost its connection: the publisher checks its own.
    suspect: Notify,
}

impl State {
    fn channel(&self, destination: &str) -> String {
        format!("{}{destination}", self.prefix)
    }

    fn dropped(&self, n: usize) {
        self.publish_dropped.fetch_add(count(n), Ordering::Relaxed);
    }
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("node", &self.state.node)
            .field("prefix", &self.state.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisBackplane {
    /// Connects to Redis (once for publishing, once for pub/sub) and
    /// starts the publisher and subscriber tasks on the current Tokio
    /// runtime.
    ///
    /// # Errors
    /// A [`BackplaneError`](super::BackplaneError) (its source the Redis
    /// client's error) when the URL is not valid or Redis cannot be
    /// reached now (connection refused, authentication failed, no answer
    /// within 2 s). Once connected, later outages are handled inside.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub async fn connect(config: RedisConfig) -> Result<Self, super::BackplaneError> {
        let failed = |e: RedisError| super::BackplaneError(Box::new(e));
        let client = Client::open(config.url.as_str()).map_err(failed)?;
        let connection = connect_publisher(&client).await.map_err(failed)?;
        let pubsub = connect_subscriber(&client).await.map_err(failed)?;
        let state = Arc::new(State {
            node: config.node_id,
            prefix: config.channel_prefix,
            publisher_up: AtomicBool::new(true),
            subscriber_up: AtomicBool::new(true),
            ..State::default()
        });
        let capacity = config.queue_capacity.clamp(1, Semaphore::MAX_PERMITS);
        let (queue, queued) = mpsc::channel(capacity);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        let retry = Retry::new(config.retry_initial, config.retry_max);
        let publisher = Publisher::new(
            client.clone(),
            connection,
            queued,
            state.clone(),
            token.clone(),
            config.max_pipeline.clamp(1, capacity),
            retry,
        );
        tracker.spawn(publisher.run());
        let subscriber = Subscriber::new(client, command_rx, state.clone(), token.clone(), retry);
        tracker.spawn(subscriber.run(pubsub));
        tracing::debug!(node = state.node, url = %redacted(&config.url), "Redis backplane connected");
        Ok(Self {
            state,
            queue,
            commands,
            sequences: Sequences::default(),
            _stop_on_drop: token.clone().drop_guard(),
            token,
            tracker,
        })
    }

    /// This node's id (see [`RedisConfig::node_id`]).
    #[must_use]
    pub fn node_id(&self) -> u64 {
        self.state.node
    }

    /// Encodes and queues one message; `seq` is already taken.
    fn enqueue(
        &self,
        channel: &Arc<str>,
        seq: u64,
        destination: &str,
        headers: &Headers,
        body: &Bytes,
    ) {
        let payload = match Envelope::encode(self.state.node, seq, destination, headers, body) {
            Ok(payload) => payload,
            Err(error) => {
                self.state.dropped(1);
                tracing::warn!(%destination, %error, "message not sent to other nodes");
                return;
            }
        };
        let message = Outgoing { channel: channel.clone(), payload };
        if self.queue.try_send(message).is_err() {
            let dropped = self.state.publish_dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Once per power of two: a full queue drops many at a time.
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "Redis backplane queue full or closed; dropping messages");
            }
        }
    }
}

#[async_trait]
impl Backplane for RedisBackplane {
    fn attach(&self, inbound: Inbound) {
        let _ = self.state.inbound.set(inbound);
    }

    fn publish(&self, destination: &str, headers: &Headers, body: &Bytes) {
        let prefix = &self.state.prefix;
        // Numbered and queued under the destination's entry, so that the
        // queue holds a destination's messages in the order of their
        // numbers. A message dropped still takes a number: receivers see
        // the gap.
        self.sequences.next(destination, prefix, |channel, seq| {
            if self.state.publisher_up.load(Ordering::Acquire) {
                self.enqueue(channel, seq, destination, headers, body);
            } else {
                self.state.dropped(1);
            }
        });
    }

    fn subscribe(&self, destination: &str, ready: ReadySignal) {
        self.state.subscriptions.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(Command::Subscribe(_, ready))) =
            self.commands.send(Command::Subscribe(destination.into(), ready))
        {
            // Closed: nobody will confirm it, and nobody should wait.
            ready.set();
        }
    }

    fn unsubscribe(&self, destination: &str) {
        let _ = self
            .state
            .subscriptions
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        let _ = self.commands.send(Command::Unsubscribe(destination.into()));
    }

    fn stats(&self) -> BackplaneStats {
        let s = &self.state;
        BackplaneStats {
            connected: s.publisher_up.load(Ordering::Acquire)
                && s.subscriber_up.load(Ordering::Acquire),
            published: s.published.load(Ordering::Relaxed),
            publish_dropped: s.publish_dropped.load(Ordering::Relaxed),
            received: s.received.load(Ordering::Relaxed),
            lost: s.lost.load(Ordering::Relaxed),
            malformed: s.malformed.load(Ordering::Relaxed),
            reconnects: s.reconnects.load(Ordering::Relaxed),
            subscriptions: s.subscriptions.load(Ordering::Relaxed),
            queued: self.queue.max_capacity() - self.queue.capacity(),
        }
    }

    async fn close(&self) {
        self.token.cancel();
        self.tracker.close();
        if tokio::time::timeout(CLOSE_TIMEOUT, self.tracker.wait()).await.is_err() {
            tracing::warn!(node = self.state.node, "Redis backplane tasks did not stop in time");
        }
    }
}

/// The connection `PUBLISH`es go over.
async fn connect_publisher(client: &Client) -> Result<MultiplexedConnection, RedisError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT));
    client.get_multiplexed_async_connection_with_config(&config).await
}

/// A pub/sub connection (the crate sets no timeout of its own on it).
async fn connect_subscriber(client: &Client) -> Result<PubSub, RedisError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
        Ok(result) => result,
        Err(_) => Err(timed_out("connecting to Redis")),
    }
}

/// Ticks every [`PING_INTERVAL`], the first time one interval from now.
fn ping_interval() -> tokio::time::Interval {
    let start = tokio::time::Instant::now() + PING_INTERVAL;
    let mut interval = tokio::time::interval_at(start, PING_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

/// A command's answer, at most [`COMMAND_TIMEOUT`] away.
async fn timeout<T>(command: impl Future<Output = Result<T, RedisError>>) -> Result<T, RedisError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
        Ok(result) => result,
        Err(_) => Err(timed_out("waiting for Redis")),
    }
}

fn timed_out(what: &str) -> RedisError {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("timed out {what}")).into()
}

/// The URL without its password, for logs.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &url[at..]),
        _ => url.to_owned(),
    }
}

/// A count as a counter increment.
fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_documented_ones() {
        let config = RedisConfig::default();
        assert_eq!(config.url, "redis://127.0.0.1:6379");
        assert_eq!(config.channel_prefix, "stomp:");
        assert_eq!((config.queue_capacity, config.max_pipeline), (65_536, 512));
        assert_eq!(config.retry_initial, Duration::from_millis(100));
        assert_eq!(config.retry_max, Duration::from_secs(5));
        assert_ne!(RedisConfig::default().node_id, config.node_id, "node ids are random");
    }

    #[test]
    fn setters_chain() {
        let config =
            RedisConfig::new("redis://h:1").channel_prefix("x:").node_id(7).max_pipeline(3);
        assert_eq!((config.url.as_str(), config.channel_prefix.as_str()), ("redis://h:1", "x:"));
        assert_eq!((config.node_id, config.max_pipeline), (7, 3));
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(redacted("redis://user:secret@h:6379/0"), "redis://***@h:6379/0");
        assert_eq!(redacted("redis://h:6379"), "redis://h:6379");
    }

    #[tokio::test]
    async fn unreachable_redis_is_an_error_at_connect() {
        // Port 1 on loopback: nothing listens there.
        let config = RedisConfig::new("redis://127.0.0.1:1");
        assert!(RedisBackplane::connect(config).await.is_err());
        assert!(RedisBackplane::connect(RedisConfig::new("not a url")).await.is_err());
    }
}
