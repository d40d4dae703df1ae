//! The [`Broker`] handle and its builder.

use std::borrow::Borrow;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use stomp_codec::Headers;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backplane::{Backplane, BackplaneStats, Inbound, Interest};
use crate::config::{Heartbeat, Limits, QueueOverflow, SlowConsumerPolicy};
use crate::error::PublishError;
use crate::hooks::{AllowAll, AppHandler, Authenticator, Interceptor, Replay, TransportKind};
use crate::local::LocalSubscription;
use crate::message::Message;
use crate::outbox::Outboxes;
use crate::router::{Policy, Router, is_queue};
use crate::stats::{Stats, StatsSnapshot};

/// State shared by every connection of one broker.
pub(crate) struct Shared {
    pub(crate) policy: Policy,
    pub(crate) heartbeat: Heartbeat,
    pub(crate) server_name: String,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) router: Router,
    pub(crate) authenticator: Arc<dyn Authenticator>,
    pub(crate) interceptor: Option<Arc<dyn Interceptor>>,
    pub(crate) app: Option<(String, Arc<dyn AppHandler>)>,
    pub(crate) replay: Option<Arc<dyn Replay>>,
    pub(crate) stats: Stats,
    /// Every connection's and local subscription's outbox, for the
    /// metrics' backlog gauges.
    pub(crate) outboxes: Outboxes,
    /// Connections open now.
    connections: AtomicUsize,
    next_session: AtomicU64,
    next_message: AtomicU64,
    /// Cancelled by [`Broker::shutdown`]; every connection task watches it.
    pub(crate) token: CancellationToken,
    /// Every connection task, so that shutdown can wait for them.
    pub(crate) tracker: TaskTracker,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("policy", &self.policy)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn next_session(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn next_message(&self) -> u64 {
        self.next_message.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts a new connection, unless the limit is reached.
    pub(crate) fn open_connection(&self, transport: TransportKind) -> Option<ConnectionSlot<'_>> {
        let max = self.policy.limits.max_connections;
        let mut now = self.connections.load(Ordering::Relaxed);
        loop {
            if now >= max {
                self.stats.connection_refused(1);
                return None;
            }
            match self.connections.compare_exchange_weak(
                now,
                now + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.stats.connection_opened(transport);
                    return Some(ConnectionSlot { shared: self, transport });
                }
                Err(actual) => now = actual,
            }
        }
    }
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub(crate) struct ConnectionSlot<'a> {
    shared: &'a Shared,
    transport: TransportKind,
}

impl Drop for ConnectionSlot<'_> {
    fn drop(&mut self) {
        self.shared.connections.fetch_sub(1, Ordering::AcqRel);
        self.shared.stats.connection_closed(self.transport);
    }
}

/// An embeddable STOMP broker: a cheap, cloneable handle.
///
/// The broker binds nothing and creates no runtime: hand it listeners
/// ([`serve`](Self::serve)) or accepted connections
/// ([`serve_tcp`](Self::serve_tcp)) from inside a tokio runtime, publish
/// and subscribe from Rust code ([`publish`](Self::publish),
/// [`subscribe`](Self::subscribe)), and stop it with
/// [`shutdown`](Self::shutdown).
///
/// ```no_run
/// # async fn example() -> std::io::Result<()> {
/// use stomp_broker::Broker;
///
/// let broker = Broker::builder().build();
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:61613").await?;
/// let serving = tokio::spawn({
///     let broker = broker.clone();
///     async move { broker.serve(listener).await }
/// });
/// // ... later:
/// broker.shutdown().await;
/// serving.await??;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Broker {
    shared: Arc<Shared>,
}

impl Broker {
    /// A builder with the defaults: [`Limits::default`],
    /// [`Heartbeat::default`], disconnect slow consumers, reject publishes
    /// to full queues, anyone may connect, no interceptor, no application
    /// handler.
    #[must_use]
    pub fn builder() -> BrokerBuilder {
        BrokerBuilder::default()
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Accepts STOMP connections on `listener` until [`shutdown`](Self::shutdown)
    /// is called; each is served on its own task.
    ///
    /// # Errors
    /// None today: failures to accept one connection (too many open files,
    /// a connection reset before it was accepted) are logged and retried
    /// after a pause, as a server should survive them. The `Result` is kept
    /// for failures that end serving.
    pub async fn serve(&self, listener: TcpListener) -> io::Result<()> {
        self.accept_loop(listener, |stream, peer| self.serve_tcp(stream, Some(peer))).await
    }

    /// Accepts connections until shutdown, handing each to `serve`.
    async fn accept_loop(
        &self,
        listener: TcpListener,
        serve: impl Fn(TcpStream, std::net::SocketAddr),
    ) -> io::Result<()> {
        let token = self.shared.token.clone();
        loop {
            let accepted = tokio::select! {
                () = token.cancelled() => return Ok(()),
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => serve(stream, peer),
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed; pausing");
                    tokio::select! {
                        () = token.cancelled() => return Ok(()),
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
        }
    }

    /// Like [`serve`](Self::serve), and shuts the broker down (gracefully,
    /// see [`shutdown`](Self::shutdown)) when `signal` completes.
    ///
    /// # Errors
    /// As [`serve`](Self::serve).
    pub async fn serve_with_shutdown(
        &self,
        listener: TcpListener,
        signal: impl Future<Output = ()>,
    ) -> io::Result<()> {
        tokio::select! {
            result = self.serve(listener) => result,
            () = signal => {
                self.shutdown().await;
                Ok(())
            }
        }
    }

    /// Accepts STOMP-over-WebSocket connections on `listener` until
    /// [`shutdown`](Self::shutdown): the HTTP upgrade at `path` (other paths
    /// get 404), subprotocols `v12.stomp`, `v11.stomp`, `v10.stomp` (the
    /// newest the client offers is echoed; a client offering none is
    /// accepted too), then the session on a task of its own.
    ///
    /// # Errors
    /// As [`serve`](Self::serve): none today.
    pub async fn serve_ws(&self, listener: TcpListener, path: &str) -> io::Result<()> {
        let path: Arc<str> = Arc::from(path);
        self.accept_loop(listener, |stream, peer| {
            self.serve_ws_tcp(stream, Some(peer), path.clone());
        })
        .await
    }

    /// Serves one accepted TCP connection as STOMP over WebSocket (the
    /// upgrade at `path` first) on a task of its own.
    pub fn serve_ws_tcp(
        &self,
        stream: TcpStream,
        peer: Option<std::net::SocketAddr>,
        path: Arc<str>,
    ) {
        let shared = self.shared.clone();
        self.shared.tracker.spawn(crate::conn::serve_ws_tcp(shared, stream, peer, path));
    }

    /// Serves a WebSocket already upgraded by an HTTP framework (for
    /// example from a hyper upgrade with
    /// [`WebSocketStream::from_raw_socket`](crate::websocket::tokio_tungstenite::WebSocketStream::from_raw_socket)),
    /// on a task of its own that the broker's shutdown waits for.
    /// `protocol` is the STOMP version of the subprotocol agreed in the
    /// upgrade (see [`negotiate_subprotocol`](crate::websocket::negotiate_subprotocol)),
    /// which caps the version CONNECT may agree on.
    pub fn serve_websocket<S>(
        &self,
        ws: tokio_tungstenite::WebSocketStream<S>,
        peer: Option<std::net::SocketAddr>,
        protocol: Option<stomp_codec::Version>,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let shared = self.shared.clone();
        self.shared.tracker.spawn(crate::conn::serve_websocket(shared, ws, peer, protocol));
    }

    /// The WebSocket limits this broker uses (message sizes bounded like
    /// its STOMP frames, a small read buffer), for an HTTP framework that
    /// upgrades connections itself.
    #[must_use]
    pub fn websocket_config(&self) -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
        crate::conn::ws_config(&self.shared)
    }

    /// Serves one accepted TCP connection on a task of its own.
    pub fn serve_tcp(&self, stream: TcpStream, peer: Option<std::net::SocketAddr>) {
        let shared = self.shared.clone();
        self.shared.tracker.spawn(crate::conn::serve_tcp(shared, stream, peer));
    }

    /// Publishes a message to `destination` from Rust code, as a `SEND`
    /// with these headers and body would (the interceptor and application
    /// handlers are not involved). Returns how many subscriptions received
    /// it now (for a queue: 0 or 1; the queue keeps it otherwise).
    ///
    /// # Errors
    /// [`PublishError`]: a full queue, an invalid destination, too many
    /// destinations, a shutting-down broker.
    pub fn publish(
        &self,
        destination: &str,
        headers: impl Borrow<Headers>,
        body: impl Into<Bytes>,
    ) -> Result<usize, PublishError> {
        self.publish_ref(destination, headers.borrow(), &body.into())
    }

    pub(crate) fn publish_ref(
        &self,
        destination: &str,
        headers: &Headers,
        body: &Bytes,
    ) -> Result<usize, PublishError> {
        self.route(destination, destination, headers, body, None)
    }

    /// Like [`publish`](Self::publish), to this node's subscribers only:
    /// the backplane does not carry it to other nodes. For an application
    /// that relays messages between nodes itself (to order them, say).
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub fn publish_local(
        &self,
        destination: &str,
        headers: impl Borrow<Headers>,
        body: impl Into<Bytes>,
    ) -> Result<usize, PublishError> {
        let (headers, body) = (headers.borrow(), &body.into());
        self.route(destination, destination, headers, body, Some(Reach::Node))
    }

    /// Sends a message to every session of user `user` subscribed to the
    /// user destination `/user{destination}` (for example `destination =
    /// "/queue/notices"` reaches subscriptions to `/user/queue/notices`).
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub fn send_to_user(
        &self,
        user: &str,
        destination: &str,
        headers: impl Borrow<Headers>,
        body: impl Into<Bytes>,
    ) -> Result<usize, PublishError> {
        self.deliver_user(user, destination, headers.borrow(), &body.into(), None)
    }

    pub(crate) fn deliver_user(
        &self,
        user: &str,
        destination: &str,
        headers: &Headers,
        body: &Bytes,
        only_session: Option<u64>,
    ) -> Result<usize, PublishError> {
        if user.is_empty() || user.contains('/') || !destination.starts_with('/') {
            return Err(PublishError::InvalidDestination(format!("/user/{user}{destination}")));
        }
        let route = format!("/user/{user}{destination}");
        let visible = format!("/user{destination}");
        self.route(&route, &visible, headers, body, only_session.map(Reach::Session))
    }

    fn route(
        &self,
        route: &str,
        visible: &str,
        headers: &Headers,
        body: &Bytes,
        reach: Option<Reach>,
    ) -> Result<usize, PublishError> {
        if route.is_empty() {
            return Err(PublishError::InvalidDestination(route.to_owned()));
        }
        if self.shared.token.is_cancelled() {
            return Err(PublishError::ShuttingDown);
        }
        let message = Message::new(visible, self.shared.next_message(), headers, body)?;
        let shared = &self.shared;
        let only_session = match reach {
            Some(Reach::Session(session)) => Some(session),
            _ => None,
        };
        let delivered =
            shared.router.publish(route, message, only_session, &shared.policy, &shared.stats)?;
        // Topics (user destinations included) reach the other nodes too;
        // a reply to one session, what is meant for this node, and queues,
        // stay here.
        if reach.is_none()
            && !is_queue(route)
            && let Some(interest) = shared.router.interest()
        {
            interest.backplane().publish(route, headers, body);
        }
        Ok(delivered)
    }

    /// Delivers a message another node published, to this node's
    /// subscribers only. It is a new [`Message`], so its delivery latency
    /// counts from its arrival here (the backplane's transit is not
    /// included), and it is not counted as published here (the
    /// backplane counts it as received).
    pub(crate) fn deliver_from_backplane(
        &self,
        route: &str,
        headers: &Headers,
        body: &Bytes,
    ) -> usize {
        if is_queue(route) || route.is_empty() || self.shared.token.is_cancelled() {
            return 0;
        }
        // `/user/{name}/queue/x` is seen by its subscribers as `/user/queue/x`.
        let visible: std::borrow::Cow<'_, str> =
            match route.strip_prefix("/user/").and_then(|rest| rest.split_once('/')) {
                Some((_, rest)) => format!("/user/{rest}").into(),
                None => route.into(),
            };
        let Ok(message) = Message::new(&visible, self.shared.next_message(), headers, body) else {
            return 0;
        };
        let shared = &self.shared;
        shared.router.deliver(route, message, None, &shared.policy, &shared.stats).unwrap_or(0)
    }

    /// The backplane's counters, when the broker has one.
    #[must_use]
    pub fn backplane_stats(&self) -> Option<BackplaneStats> {
        self.shared.router.interest().map(|i| i.backplane().stats())
    }

    /// Subscribes from Rust code: the returned stream yields every message
    /// sent to `destination` from now on (for a queue, its share of them).
    /// Subject to the slow-consumer policy like any subscriber; dropping it
    /// unsubscribes.
    ///
    /// # Errors
    /// [`PublishError::TooManyDestinations`], or
    /// [`PublishError::ShuttingDown`].
    pub fn subscribe(&self, destination: &str) -> Result<LocalSubscription, PublishError> {
        if self.shared.token.is_cancelled() {
            return Err(PublishError::ShuttingDown);
        }
        LocalSubscription::new(self.clone(), destination)
    }

    /// Connections open now, TCP and WebSocket (the ones
    /// [`Limits::max_connections`] bounds; local subscriptions are not
    /// connections here).
    #[must_use]
    pub fn connection_count(&self) -> usize {
        self.shared.connections.load(Ordering::Acquire)
    }

    /// Destinations in use now: topics with subscribers, queues with
    /// consumers or messages.
    #[must_use]
    pub fn destination_count(&self) -> usize {
        self.shared.router.destination_count()
    }

    /// This node's subscribers of `destination` now (for a queue, its
    /// consumers): STOMP subscriptions and [`subscribe`](Self::subscribe)d
    /// streams alike; subscribers on other nodes are not counted.
    #[must_use]
    pub fn subscriber_count(&self, destination: &str) -> usize {
        self.shared.router.subscriber_count(destination)
    }

    /// The broker's counters.
    #[must_use]
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    #[must_use]
    pub fn is_shutting_down(&self) -> bool {
        self.shared.token.is_cancelled()
    }

    /// A token cancelled when the broker shuts down, for tasks of the
    /// embedding application that should stop with it.
    #[must_use]
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.token.child_token()
    }

    /// Shuts down gracefully: stops accepting, sends every client an `ERROR`
    /// frame (`message:server shutting down`) after what was already queued
    /// for it, closes every connection, and waits for their tasks, at most
    /// the shutdown timeout ([`BrokerBuilder::shutdown_timeout`], 5 s by
    /// default). Connections still open then are abandoned to the runtime.
    pub async fn shutdown(&self) {
        self.shared.token.cancel();
        self.shared.tracker.close();
        if tokio::time::timeout(self.shared.shutdown_timeout, self.shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.shared.tracker.len(),
                "shutdown timeout passed with connections still closing"
            );
        }
        if let Some(interest) = self.shared.router.interest() {
            interest.backplane().close().await;
        }
    }
}

/// How far a message published here goes, when not to every node.
#[derive(Debug, Clone, Copy)]
enum Reach {
    /// To one session of this node.
    Session(u64),
    /// To this node's subscribers.
    Node,
}

/// Configures a [`Broker`].
pub struct BrokerBuilder {
    limits: Limits,
    heartbeat: Heartbeat,
    slow_consumer: SlowConsumerPolicy,
    queue_overflow: QueueOverflow,
    server_name: String,
    shutdown_timeout: Duration,
    authenticator: Arc<dyn Authenticator>,
    interceptor: Option<Arc<dyn Interceptor>>,
    app: Option<(String, Arc<dyn AppHandler>)>,
    replay: Option<Arc<dyn Replay>>,
    backplane: Option<Arc<dyn Backplane>>,
}

impl Default for BrokerBuilder {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            heartbeat: Heartbeat::default(),
            slow_consumer: SlowConsumerPolicy::default(),
            queue_overflow: QueueOverflow::default(),
            server_name: format!("stomp-broker/{}", env!("CARGO_PKG_VERSION")),
            shutdown_timeout: Duration::from_secs(5),
            authenticator: Arc::new(AllowAll),
            interceptor: None,
            app: None,
            replay: None,
            backplane: None,
        }
    }
}

impl std::fmt::Debug for BrokerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerBuilder")
            .field("limits", &self.limits)
            .field("heartbeat", &self.heartbeat)
            .field("slow_consumer", &self.slow_consumer)
            .field("queue_overflow", &self.queue_overflow)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl BrokerBuilder {
    /// Sets the [`Limits`].
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the heart-beat bounds.
    #[must_use]
    pub fn heartbeat(mut self, heartbeat: Heartbeat) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// Sets what happens to subscribers that cannot keep up.
    #[must_use]
    pub fn slow_consumer(mut self, policy: SlowConsumerPolicy) -> Self {
        self.slow_consumer = policy;
        self
    }

    /// Sets what a full queue does with a new message.
    #[must_use]
    pub fn queue_overflow(mut self, policy: QueueOverflow) -> Self {
        self.queue_overflow = policy;
        self
    }

    /// Sets the `server` header of `CONNECTED` (default
    /// `stomp-broker/VERSION`).
    #[must_use]
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = name.into();
        self
    }

    /// Sets how long [`Broker::shutdown`] waits for connections to close
    /// (default 5 s).
    #[must_use]
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Sets who may connect (default: [`AllowAll`]).
    #[must_use]
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Arc::new(authenticator);
        self
    }

    /// Sets the interceptor of SEND and SUBSCRIBE.
    #[must_use]
    pub fn interceptor(mut self, interceptor: impl Interceptor) -> Self {
        self.interceptor = Some(Arc::new(interceptor));
        self
    }

    /// Routes SENDs to destinations that start with `prefix` (such as
    /// `/app/`) to `handler` instead of subscribers.
    #[must_use]
    pub fn app_handler(mut self, prefix: impl Into<String>, handler: impl AppHandler) -> Self {
        self.app = Some((prefix.into(), Arc::new(handler)));
        self
    }

    /// Sets the [`Replay`] hook: subscriptions it wants receive earlier
    /// messages (history) before live ones.
    #[must_use]
    pub fn replay(mut self, replay: impl Replay) -> Self {
        self.replay = Some(Arc::new(replay));
        self
    }

    /// Joins this broker to other nodes through `backplane`: topics and
    /// user destinations then reach subscribers on every node (queues stay
    /// on the node they were sent to). A `SUBSCRIBE` is answered (its
    /// `RECEIPT` sent) once the backplane says the subscription is live,
    /// waiting at most 5 s.
    #[must_use]
    pub fn backplane(mut self, backplane: impl Backplane) -> Self {
        self.backplane = Some(Arc::new(backplane));
        self
    }

    /// As [`backplane`](Self::backplane), for a backplane already shared.
    #[must_use]
    pub fn backplane_arc(mut self, backplane: Arc<dyn Backplane>) -> Self {
        self.backplane = Some(backplane);
        self
    }

    /// Builds the broker. Needs no runtime: serving does.
    #[must_use]
    pub fn build(self) -> Broker {
        let shared = Shared {
            policy: Policy {
                limits: self.limits,
                slow_consumer: self.slow_consumer,
                queue_overflow: self.queue_overflow,
            },
            heartbeat: self.heartbeat,
            server_name: self.server_name,
            shutdown_timeout: self.shutdown_timeout,
            router: Router::new(self.backplane.clone().map(Interest::new)),
            authenticator: self.authenticator,
            interceptor: self.interceptor,
            app: self.app,
            replay: self.replay,
            stats: Stats::default(),
            outboxes: Outboxes::default(),
            connections: AtomicUsize::new(0),
            next_session: AtomicU64::new(0),
            next_message: AtomicU64::new(0),
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        let shared = Arc::new(shared);
        if let Some(backplane) = &self.backplane {
            backplane.attach(Inbound { shared: Arc::downgrade(&shared) });
        }
        Broker { shared }
    }
}
