//! STOMP over WebSocket (tokio-tungstenite).
//!
//! Inbound, the payloads of text and binary messages go through the same
//! incremental codec as a TCP byte stream, so a frame may span several
//! messages and a message may hold several frames. Outbound, every STOMP
//! frame is one WebSocket message: text when it is UTF-8 (as browsers'
//! STOMP clients expect), binary otherwise. Heart-beats are `"\n"` text
//! messages; WebSocket pings are answered by tungstenite. An `ERROR`, a
//! DISCONNECT or a shutdown ends with the WebSocket close handshake.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink, StreamExt};
use stomp_codec::{Version, encode_frame};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{
    HeaderValue, StatusCode, header::SEC_WEBSOCKET_PROTOCOL,
};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::{WebSocketStream, accept_hdr_async_with_config};

use super::tcp::too_many_connections;
use super::{CLOSE_GRACE, Core, Tick, with_extra_headers};
use crate::TransportKind;
use crate::broker::Shared;
use crate::error::StompError;
use crate::outbox::{Outgoing, Status};
use crate::session::Session;

/// Octets taken from the outbox before they are written.
const WRITE_BATCH: usize = 256 * 1024;
/// tungstenite's read buffer, allocated (and zeroed) for every connection
/// for its whole life: small, since most connections are idle most of the
/// time. It bounds one read system call, not a frame: a frame's length is
/// reserved whole once its header is read. 2 KiB keeps an idle subscribed
/// connection under 7 KiB of broker memory (4 KiB took it to 8.5 KiB).
const READ_BUFFER: usize = 2 * 1024;
/// tungstenite writes to the socket once this much is buffered, and on
/// flush: a batch of messages goes out in a few writes, not one per
/// message, while what an idle connection keeps of the buffer stays small.
const WRITE_BUFFER: usize = 16 * 1024;
/// Room above the STOMP frame limit for a WebSocket message carrying
/// heart-beats or the start of the next frame too.
const MESSAGE_SLACK: usize = 64 * 1024;

/// The STOMP WebSocket subprotocols, newest first.
pub const SUBPROTOCOLS: [(&str, Version); 3] =
    [("v12.stomp", Version::V1_2), ("v11.stomp", Version::V1_1), ("v10.stomp", Version::V1_0)];

/// The subprotocol to answer for a `Sec-WebSocket-Protocol` request header
/// (a comma-separated list): the newest STOMP version the client offered,
/// or `None` when it offered none we speak (then the handshake goes on
/// without a subprotocol, as it does for a client that offers none).
///
/// ```
/// use stomp_broker::websocket::negotiate_subprotocol;
/// use stomp_broker::codec::Version;
///
/// assert_eq!(negotiate_subprotocol("v10.stomp, v12.stomp"), Some(("v12.stomp", Version::V1_2)));
/// assert_eq!(negotiate_subprotocol("mqtt"), None);
/// ```
#[must_use]
pub fn negotiate_subprotocol(offered: &str) -> Option<(&'static str, Version)> {
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    SUBPROTOCOLS.into_iter().find(|(name, _)| offered.contains(name))
}

/// The WebSocket limits for a broker: messages bounded like STOMP frames.
pub(crate) fn config(shared: &Shared) -> WebSocketConfig {
    let max = shared.policy.limits.frame.max_frame_size.saturating_add(MESSAGE_SLACK);
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// Serves one TCP connection as STOMP over WebSocket at `path`: the HTTP
/// upgrade (within the CONNECT timeout), then the session.
// The upgrade callback's error type is tungstenite's `ErrorResponse`.
#[allow(clippy::result_large_err)]
pub(crate) async fn serve_ws_tcp(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: Option<SocketAddr>,
    path: Arc<str>,
) {
    let _ = stream.set_nodelay(true);
    let mut protocol = None;
    let callback = |request: &Request, response: Response| {
        answer_upgrade(request, response, &path, &mut protocol)
    };
    let handshake = accept_hdr_async_with_config(stream, callback, Some(config(&shared)));
    let ws = match tokio::time::timeout(shared.heartbeat.connect_timeout, handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(error)) => {
            tracing::debug!(%error, "WebSocket handshake failed");
            return;
        }
        Err(_) => return,
    };
    serve_websocket(shared, ws, peer, protocol).await;
}

/// Checks the path and picks the subprotocol of an upgrade request.
#[allow(clippy::result_large_err)] // the signature of tungstenite's `Callback`
fn answer_upgrade(
    request: &Request,
    mut response: Response,
    path: &str,
    protocol: &mut Option<Version>,
) -> Result<Response, ErrorResponse> {
    if request.uri().path() != path {
        let mut refusal = ErrorResponse::new(Some(format!(
            "no STOMP endpoint at {}; it is at {path}",
            request.uri().path()
        )));
        *refusal.status_mut() = StatusCode::NOT_FOUND;
        return Err(refusal);
    }
    let offered = request.headers().get(SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok());
    if let Some((name, version)) = offered.and_then(negotiate_subprotocol) {
        response.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(name));
        *protocol = Some(version);
    }
    Ok(response)
}

/// Serves an upgraded WebSocket; `protocol` is the STOMP version of the
/// subprotocol agreed in the upgrade, which caps the version CONNECT
/// negotiates.
pub(crate) async fn serve_websocket<S>(
    shared: Arc<Shared>,
    ws: WebSocketStream<S>,
    peer: Option<SocketAddr>,
    protocol: Option<Version>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(_slot) = shared.open_connection(TransportKind::WebSocket) else {
        Box::pin(refuse(ws, &shared)).await;
        return;
    };
    let mut session = Session::new(shared.clone(), TransportKind::WebSocket, peer);
    session.cap_version(protocol);
    let (sink, stream) = ws.split();
    let mut conn = Connection {
        core: Core::new(shared.clone(), session),
        stream,
        out: Writer { sink, pending: VecDeque::new(), pending_bytes: 0, unflushed: false },
        close_code: CloseCode::Normal,
    };
    conn.run().await;
    Box::pin(conn.finish()).await;
}

/// Answers a connection over the limit with an `ERROR` frame (counted
/// once written, as a session's are) and a close.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>, shared: &Shared) {
    let mut out = BytesMut::new();
    let error = too_many_connections(shared);
    if encode_frame(&error.to_frame(), Version::V1_2, &mut out).is_ok() {
        let sent = futures_util::SinkExt::send(&mut ws, message(out.freeze()));
        if let Ok(Ok(())) = tokio::time::timeout(CLOSE_GRACE, sent).await {
            shared.stats.error_written(error.reason);
        }
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(Some(close_frame(CloseCode::Again)))).await;
}

/// A STOMP frame's octets as one WebSocket message: text when UTF-8.
fn message(frame: Bytes) -> Message {
    match Utf8Bytes::try_from(frame.clone()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Binary(frame),
    }
}

fn close_frame(code: CloseCode) -> CloseFrame {
    CloseFrame { code, reason: Utf8Bytes::from_static("") }
}

struct Connection<S> {
    core: Core,
    stream: SplitStream<WebSocketStream<S>>,
    out: Writer<S>,
    /// The close code to end with, unless the broker is shutting down.
    close_code: CloseCode,
}

/// The sending half, with the messages waiting for it.
struct Writer<S> {
    sink: SplitSink<WebSocketStream<S>, Message>,
    /// Messages encoded and not yet handed to the sink.
    pending: VecDeque<Message>,
    /// Octets of `pending`.
    pending_bytes: usize,
    /// Messages handed to the sink and not yet flushed.
    unflushed: bool,
}

impl<S> Writer<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn written_all(&self) -> bool {
        self.pending.is_empty() && !self.unflushed
    }

    /// Hands pending messages to the sink and flushes it. Cancel-safe: a
    /// message leaves `pending` only once the sink has taken it.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        while !self.pending.is_empty() {
            ready!(Pin::new(&mut self.sink).poll_ready(cx))?;
            let Some(message) = self.pending.pop_front() else { break };
            self.pending_bytes = self.pending_bytes.saturating_sub(message.len());
            self.unflushed = true;
            Pin::new(&mut self.sink).start_send(message)?;
        }
        ready!(Pin::new(&mut self.sink).poll_flush(cx))?;
        self.unflushed = false;
        if self.pending.capacity() > 16 {
            // Idle connections hold no queue storage.
            self.pending = VecDeque::new();
        }
        Poll::Ready(Ok(()))
    }

    async fn write_all(&mut self) -> Result<(), WsError> {
        std::future::poll_fn(|cx| self.poll_write(cx)).await
    }
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Serves until the connection ends.
    async fn run(&mut self) {
        let token = self.core.shared.token.clone();
        let timer = tokio::time::sleep_until(self.core.deadline(true));
        tokio::pin!(timer);
        let mut armed = timer.deadline();
        loop {
            if self.core.is_done(self.out.written_all()) {
                return;
            }
            let can_read = self.core.can_read();
            // With a full write queue, only an overflow or a close wakes the outbox branch.
            let room = WRITE_BATCH.saturating_sub(self.out.pending_bytes);
            tokio::select! {
                biased;
                () = token.cancelled(), if !self.core.shutting_down => self.core.shut_down(),
                () = &mut timer => match self.core.on_timer(self.out.written_all()).await {
                    Tick::Continue => {}
                    Tick::Heartbeat => self.out.pending.push_back(Message::Text(Utf8Bytes::from_static("\n"))),
                    Tick::End => return,
                },
                written = self.out.write_all(), if !self.out.written_all() => {
                    if written.is_err() {
                        return;
                    }
                    self.core.last_write = Instant::now();
                    self.core.wrote_all();
                }
                status = std::future::poll_fn(|cx| {
                    self.core.session.outbox.poll_take(cx, &mut self.core.taken, room)
                }) => match status {
                    Status::Taken { left } => self.encode_taken(left),
                    Status::Overflowed => self.core.slow_consumer(),
                },
                inbound = self.stream.next(), if can_read => {
                    if !self.receive(inbound).await {
                        return;
                    }
                }
            }
            let deadline = self.core.deadline(self.out.written_all());
            if deadline < armed || timer.is_elapsed() {
                timer.as_mut().reset(deadline);
                armed = deadline;
            }
        }
    }

    /// Handles one inbound message; `false` when the connection is gone.
    async fn receive(&mut self, inbound: Option<Result<Message, WsError>>) -> bool {
        let payload: Bytes = match inbound {
            Some(Ok(Message::Text(text))) => text.into(),
            Some(Ok(Message::Binary(binary))) => binary,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                self.core.last_read = Instant::now();
                return true;
            }
            Some(Ok(Message::Close(_))) | None => {
                self.core.peer_closed();
                return true;
            }
            Some(Err(WsError::Capacity(error))) => {
                // Answered like an oversized STOMP frame on TCP: an ERROR,
                // then the close code for a message too big (RFC 6455 1009).
                let limit = self
                    .core
                    .shared
                    .policy
                    .limits
                    .frame
                    .max_frame_size
                    .saturating_add(MESSAGE_SLACK);
                let error = StompError::new("WebSocket message too large")
                    .detail(format!("{error}. A message may be at most {limit} bytes."));
                self.close_code = CloseCode::Size;
                self.core.fail(&error, false);
                return true;
            }
            Some(Err(error)) => {
                tracing::debug!(%error, "WebSocket read failed");
                return false;
            }
        };
        self.core.last_read = Instant::now();
        if self.core.rbuf.is_empty() {
            // The usual case, a whole frame in one message: no copy.
            self.core.rbuf = BytesMut::from(payload);
        } else {
            self.core.rbuf.extend_from_slice(&payload);
        }
        self.core.process_boxed().await;
        true
    }

    /// Encodes what was taken from the outbox, one message per frame.
    fn encode_taken(&mut self, left: usize) {
        let version = self.core.session.version();
        let (pending, pending_bytes) = (&mut self.out.pending, &mut self.out.pending_bytes);
        // One buffer for the batch, split into one message per frame: the
        // messages share its allocation.
        let mut out = BytesMut::new();
        let batch = self.core.encode_taken(left, |item| {
            let encoded = match item {
                Outgoing::Frame(frame) => encode_frame(&frame, version, &mut out),
                Outgoing::Message(delivery) => with_extra_headers(&delivery, |extra| {
                    delivery.message.prepared().encode_into(version, extra, &mut out)
                }),
            };
            match encoded {
                Ok(()) => {
                    let frame = out.split().freeze();
                    *pending_bytes += frame.len();
                    pending.push_back(message(frame));
                }
                Err(error) => tracing::warn!(%error, %version, "a frame could not be encoded for this client; skipped"),
            }
        });
        // Written when a flush completes: everything queued by then is.
        self.core.queued(batch, 0);
    }

    /// After the last frame: close the session, write what is left, and
    /// close the WebSocket (close handshake, bounded by the grace period).
    async fn finish(mut self) {
        self.core.session.close();
        let code = if self.core.shutting_down { CloseCode::Away } else { self.close_code };
        let closing = async {
            if self.out.write_all().await.is_err() {
                return;
            }
            self.core.wrote_all();
            self.out.pending.push_back(Message::Close(Some(close_frame(code))));
            if self.out.write_all().await.is_err() {
                return;
            }
            // Wait for the peer's close frame (or the end of the stream).
            while let Some(Ok(message)) = self.stream.next().await {
                if message.is_close() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, closing).await;
    }
}
