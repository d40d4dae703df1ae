//! Hooks through which an application shapes the broker: who may connect
//! ([`Authenticator`]), what may be sent and subscribed to
//! ([`Interceptor`]), and application destinations ([`AppHandler`]).

use std::borrow::Borrow;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use stomp_codec::{Frame, Headers, Version};

use crate::Broker;

/// The identity a session acts as, from the [`Authenticator`].
///
/// User destinations (`/user/queue/x`) are keyed by its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    name: Arc<str>,
}

impl Principal {
    /// A principal called `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into() }
    }

    /// Its name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A refusal the client sees: the `message` header of the `ERROR` frame,
/// and optionally a longer text in its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    message: String,
    detail: Option<String>,
}

impl Rejection {
    /// A refusal with a short reason (one line; it goes in a header).
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), detail: None }
    }

    /// Adds a longer explanation, sent as the `ERROR` frame's body.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The short reason.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The longer explanation, if any.
    #[must_use]
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rejection {}

/// The transport a session arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportKind {
    /// STOMP over a TCP connection.
    Tcp,
    /// STOMP over WebSocket.
    WebSocket,
    /// In-process, through the [`Broker`] handle.
    Local,
}

/// What hooks know about a session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub(crate) id: Arc<str>,
    pub(crate) principal: Principal,
    pub(crate) version: Version,
    pub(crate) transport: TransportKind,
    pub(crate) peer: Option<SocketAddr>,
    /// Broker-wide session number.
    pub(crate) num: u64,
}

impl SessionInfo {
    /// The session id, as sent in `CONNECTED`'s `session` header.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Who the session acts as.
    #[must_use]
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The negotiated protocol version.
    #[must_use]
    pub fn version(&self) -> Version {
        self.version
    }

    /// The transport.
    #[must_use]
    pub fn transport(&self) -> TransportKind {
        self.transport
    }

    /// The peer's address, when the transport has one.
    #[must_use]
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }
}

/// A `CONNECT` (or `STOMP`) frame to authenticate.
#[derive(Debug)]
#[non_exhaustive]
pub struct ConnectRequest<'a> {
    /// The `login` header.
    pub login: Option<&'a str>,
    /// The `passcode` header.
    pub passcode: Option<&'a str>,
    /// The `host` header (the virtual host).
    pub host: Option<&'a str>,
    /// The whole frame, for other headers (`Authorization`, ...).
    pub frame: &'a Frame,
    /// The id the session will have.
    pub session_id: &'a str,
    /// The transport.
    pub transport: TransportKind,
    /// The peer's address, when the transport has one.
    pub peer: Option<SocketAddr>,
}

/// Decides who may connect, and as whom.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// The principal for a `CONNECT` frame.
    ///
    /// # Errors
    /// A [`Rejection`] refuses the connection: the client gets an `ERROR`
    /// frame with its message and the connection closes.
    async fn authenticate(&self, request: &ConnectRequest<'_>) -> Result<Principal, Rejection>;
}

/// The default [`Authenticator`]: anyone may connect. The principal is the
/// `login` header, or the session id when there is none.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

#[async_trait]
impl Authenticator for AllowAll {
    async fn authenticate(&self, request: &ConnectRequest<'_>) -> Result<Principal, Rejection> {
        let name = request.login.filter(|l| !l.is_empty()).unwrap_or(request.session_id);
        Ok(Principal::new(name))
    }
}

/// Authorizes, rewrites or rejects what clients send and subscribe to (the
/// role of Spring's `ChannelInterceptor`). Both methods default to allowing
/// everything unchanged.
///
/// A rejection closes the connection with an `ERROR` frame carrying its
/// message (STOMP has no other way to refuse a frame).
#[async_trait]
pub trait Interceptor: Send + Sync + 'static {
    /// Called for each `SEND` before it is routed (for `/app/` destinations,
    /// before the [`AppHandler`]). May change the frame: its destination,
    /// headers or body.
    ///
    /// # Errors
    /// A [`Rejection`] refuses the frame.
    async fn on_send(&self, session: &SessionInfo, frame: &mut Frame) -> Result<(), Rejection> {
        let _ = (session, frame);
        Ok(())
    }

    /// Called for each `SUBSCRIBE` before the subscription is made. May
    /// change the frame (its destination, for example).
    ///
    /// # Errors
    /// A [`Rejection`] refuses the subscription.
    async fn on_subscribe(
        &self,
        session: &SessionInfo,
        frame: &mut Frame,
    ) -> Result<(), Rejection> {
        let _ = (session, frame);
        Ok(())
    }
}

/// A message sent to an application destination.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AppMessage {
    /// The destination as sent, prefix included (`/app/rooms.1`).
    pub destination: String,
    /// The destination without the application prefix (`rooms.1`).
    pub path: String,
    /// The `SEND` frame's headers.
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
}

/// What an [`AppHandler`] can do in answer to a message.
#[derive(Debug, Clone)]
pub struct AppContext {
    pub(crate) broker: Broker,
    pub(crate) session: SessionInfo,
}

impl AppContext {
    /// The sending session.
    #[must_use]
    pub fn session(&self) -> &SessionInfo {
        &self.session
    }

    /// The broker, to publish anywhere.
    #[must_use]
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Sends a message to the sending session only, on its subscriptions to
    /// the user destination `/user{destination}` (for example
    /// `reply("/queue/replies", ...)` reaches the sender's subscriptions to
    /// `/user/queue/replies`). Returns how many subscriptions received it.
    ///
    /// # Errors
    /// As [`Broker::send_to_user`].
    pub fn reply(
        &self,
        destination: &str,
        headers: impl Borrow<Headers>,
        body: impl Into<Bytes>,
    ) -> Result<usize, crate::PublishError> {
        let user = self.session.principal.name();
        self.broker.deliver_user(
            user,
            destination,
            headers.borrow(),
            &body.into(),
            Some(self.session.num),
        )
    }
}

/// Handles messages sent to application destinations (a prefix such as
/// `/app/`), the role of Spring's `@MessageMapping`: the message does not
/// go to subscribers; the handler decides what happens.
///
/// The sender's `RECEIPT`, if it asked for one, is sent after the handler
/// returns `Ok`, so a receipt means the handler accepted the message.
#[async_trait]
pub trait AppHandler: Send + Sync + 'static {
    /// Handles one message.
    ///
    /// # Errors
    /// A [`Rejection`] is sent to the client as an `ERROR` frame, and the
    /// connection closes.
    async fn handle(&self, context: &AppContext, message: AppMessage) -> Result<(), Rejection>;
}

/// Tells which live messages a replay already delivered.
pub(crate) type SkipLive = Box<dyn Fn(&crate::Message) -> bool + Send + Sync>;

/// What a [`Replay`] hands a new subscription: the messages it receives
/// before any live one, and which of the live messages that arrived
/// meanwhile were among them.
pub struct ReplayBatch {
    pub(crate) messages: Vec<(Headers, Bytes)>,
    pub(crate) skip_live: Option<SkipLive>,
}

impl ReplayBatch {
    /// Delivers `messages` (headers and body of each, in order) first.
    #[must_use]
    pub fn new(messages: Vec<(Headers, Bytes)>) -> Self {
        Self { messages, skip_live: None }
    }

    /// Live messages for which `skip` returns `true` are not delivered to
    /// the subscription (they were replayed, or the client had them): those
    /// that arrived while the replay was read, and any that come later, for
    /// the subscription's whole life. A message can reach a node late (on
    /// several nodes, through a backplane), after the replay that already
    /// read it from storage; this keeps it from being delivered twice.
    ///
    /// `skip` runs for every live message to this subscription, under
    /// the subscription's delivery path: keep it cheap (compare a header).
    #[must_use]
    pub fn skip_live(
        mut self,
        skip: impl Fn(&crate::Message) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.skip_live = Some(Box::new(skip));
        self
    }

    /// How many messages it replays.
    #[must_use]
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether it replays nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

impl fmt::Debug for ReplayBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayBatch")
            .field("messages", &self.messages.len())
            .field("skip_live", &self.skip_live.is_some())
            .finish()
    }
}

/// Gives a new topic subscription messages from before it existed (history,
/// for a client resuming after a disconnect), with no gap and no duplicate
/// between them and live ones.
///
/// For a `SUBSCRIBE` it wants, the broker makes the subscription first
/// (live on every node, when there is a backplane) and holds the live
/// messages that arrive; then it calls [`replay`](Self::replay), delivers
/// the batch, then the held messages the batch does not
/// [skip](ReplayBatch::skip_live), then live ones as usual. Held messages
/// count against the connection's `max_pending_bytes`; past it the
/// connection closes as a slow consumer.
#[async_trait]
pub trait Replay: Send + Sync + 'static {
    /// Whether this `SUBSCRIBE` (to a topic, after the [`Interceptor`])
    /// asks for a replay, typically by a header. Called for every such
    /// `SUBSCRIBE`: keep it cheap.
    fn wants_replay(&self, session: &SessionInfo, frame: &Frame) -> bool;

    /// The messages to deliver first.
    ///
    /// # Errors
    /// A [`Rejection`] refuses the subscription (an `ERROR` frame, and the
    /// connection closes).
    async fn replay(&self, session: &SessionInfo, frame: &Frame) -> Result<ReplayBatch, Rejection>;
}
