//! A STOMP 1.2 test client of chat-server, over TCP or over WebSocket
//! (`/stomp`, subprotocol `v12.stomp`), speaking raw frames through
//! `stomp_codec`.
//!
//! MESSAGE frames that arrive while the client waits for a RECEIPT are
//! kept, in order, and returned by the next [`Client::recv`]: a resumed
//! subscription may deliver its first messages before the SUBSCRIBE's
//! receipt.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use stomp_codec::{Command, Frame, Item, StompCodec, Version, encode_frame};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_util::codec::Framed;

use super::{ChatMessage, Server, WAIT, chat_body};

/// What the WebSocket client offers, as `@stomp/stompjs` does.
pub const OFFERED_SUBPROTOCOLS: &str = "v10.stomp, v11.stomp, v12.stomp";

/// Which transport a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// STOMP over TCP (the `--stomp` port).
    Tcp,
    /// STOMP over WebSocket (`ws://HTTP/stomp`).
    Ws,
}

/// Why no frame came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// The connection ended.
    Closed,
    /// Nothing came in time.
    Timeout,
}

/// How a request that asked for a receipt went wrong.
#[derive(Debug, Clone)]
pub enum Refused {
    /// The server answered with ERROR.
    Error(Frame),
    /// The connection ended (or nothing came within [`WAIT`]).
    Lost(RecvError),
}

enum Conn {
    Tcp(Framed<TcpStream, StompCodec>),
    Ws { ws: Box<WebSocketStream<TcpStream>>, codec: StompCodec, buf: BytesMut },
}

/// A STOMP client of one chat-server.
pub struct Client {
    conn: Conn,
    pending: VecDeque<Frame>,
    next_receipt: u64,
    /// Its transport.
    pub transport: Transport,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("transport", &self.transport).finish_non_exhaustive()
    }
}

impl Client {
    /// A transport connection to `server`, nothing sent yet. Over
    /// WebSocket, asserts the server agreed on `v12.stomp`.
    pub async fn open(server: &Server, transport: Transport) -> Self {
        let conn = match transport {
            Transport::Tcp => {
                let stream =
                    TcpStream::connect(server.tcp).await.expect("connect to the STOMP port");
                stream.set_nodelay(true).expect("nodelay");
                Conn::Tcp(Framed::new(stream, StompCodec::new()))
            }
            Transport::Ws => Conn::Ws {
                ws: Box::new(ws_upgrade(server).await),
                codec: StompCodec::new(),
                buf: BytesMut::new(),
            },
        };
        Self { conn, pending: VecDeque::new(), next_receipt: 0, transport }
    }

    /// Opened and CONNECTed with `headers` (besides `accept-version` and
    /// `host`); panics unless CONNECTED.
    pub async fn connect_with(
        server: &Server,
        transport: Transport,
        headers: &[(&str, &str)],
    ) -> Self {
        let mut client = Self::open(server, transport).await;
        let reply = client.stomp_connect(headers).await;
        assert_eq!(
            reply.command(),
            Command::Connected,
            "CONNECT {headers:?} over {transport:?}: {reply:?}"
        );
        client
    }

    /// Opened and CONNECTed as `login` (guest mode).
    pub async fn connect(server: &Server, transport: Transport, login: &str) -> Self {
        Self::connect_with(server, transport, &[("login", login)]).await
    }

    /// CONNECT with `headers` must be answered by ERROR, then the
    /// connection must close; returns the ERROR.
    pub async fn connect_refused(
        server: &Server,
        transport: Transport,
        headers: &[(&str, &str)],
    ) -> Frame {
        let mut client = Self::open(server, transport).await;
        let reply = client.stomp_connect(headers).await;
        assert_eq!(
            reply.command(),
            Command::Error,
            "CONNECT {headers:?} over {transport:?}: {reply:?}"
        );
        assert_readable_error(&reply);
        client.expect_end().await;
        reply
    }

    /// Sends CONNECT (STOMP 1.2, `host`, and `headers`) and returns the
    /// reply; after CONNECTED, frames are coded in the agreed version.
    pub async fn stomp_connect(&mut self, headers: &[(&str, &str)]) -> Frame {
        let mut frame = Frame::new(Command::Connect)
            .with_header("accept-version", "1.2")
            .with_header("host", "localhost");
        for (name, value) in headers {
            frame = frame.with_header(name.to_string(), value.to_string());
        }
        self.send(&frame).await;
        let reply = self.recv().await;
        if reply.command() == Command::Connected {
            let version =
                reply.header("version").and_then(Version::from_bytes).unwrap_or(Version::V1_0);
            assert_eq!(version, Version::V1_2, "CONNECTED version: {reply:?}");
            self.codec_mut().set_version(version);
        }
        reply
    }

    fn codec_mut(&mut self) -> &mut StompCodec {
        match &mut self.conn {
            Conn::Tcp(framed) => framed.codec_mut(),
            Conn::Ws { codec, .. } => codec,
        }
    }

    /// Writes one frame; `Err` if the connection is gone.
    pub async fn try_send(&mut self, frame: &Frame) -> Result<(), String> {
        let written = match &mut self.conn {
            Conn::Tcp(framed) => framed.send(frame.clone()).await.map_err(|e| e.to_string()),
            Conn::Ws { ws, codec, .. } => {
                let mut out = BytesMut::new();
                encode_frame(frame, codec.version(), &mut out).expect("encode");
                let text = String::from_utf8(out.to_vec()).expect("test frames are UTF-8");
                ws.send(Message::text(text)).await.map_err(|e| e.to_string())
            }
        };
        written.map_err(|e| format!("sending {:?}: {e}", frame.command()))
    }

    /// Writes one frame; panics if the connection is gone.
    pub async fn send(&mut self, frame: &Frame) {
        let written =
            tokio::time::timeout(WAIT, self.try_send(frame)).await.expect("timed out sending");
        written.unwrap_or_else(|e| panic!("{e}"));
    }

    async fn read_item(&mut self) -> Option<Item> {
        match &mut self.conn {
            Conn::Tcp(framed) => match framed.next().await {
                Some(Ok(item)) => Some(item),
                Some(Err(e)) if is_disconnect(&e) => None,
                Some(Err(e)) => panic!("the server sent a malformed frame: {e}"),
                None => None,
            },
            Conn::Ws { ws, codec, buf } => loop {
                if let Some(item) =
                    codec.decode_item(buf).expect("the server sent a malformed frame")
                {
                    return Some(item);
                }
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => buf.extend_from_slice(text.as_bytes()),
                    Some(Ok(Message::Binary(data))) => buf.extend_from_slice(&data),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
                }
            },
        }
    }

    async fn read_frame(&mut self) -> Option<Frame> {
        loop {
            match self.read_item().await? {
                Item::Frame(frame) => return Some(frame),
                Item::Heartbeat => {}
            }
        }
    }

    /// The next frame (kept ones first), within `limit`.
    pub async fn try_recv(&mut self, limit: Duration) -> Result<Frame, RecvError> {
        if let Some(frame) = self.pending.pop_front() {
            return Ok(frame);
        }
        match tokio::time::timeout(limit, self.read_frame()).await {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => Err(RecvError::Closed),
            Err(_) => Err(RecvError::Timeout),
        }
    }

    /// The next frame; panics if none comes within [`WAIT`].
    pub async fn recv(&mut self) -> Frame {
        self.try_recv(WAIT).await.unwrap_or_else(|e| panic!("{e:?} while waiting for a frame"))
    }

    /// Sends `frame` with a fresh `receipt` header and waits for that
    /// RECEIPT, keeping the MESSAGE frames that come first.
    pub async fn try_request(&mut self, frame: Frame) -> Result<(), Refused> {
        self.next_receipt += 1;
        let receipt = format!("r-{}", self.next_receipt);
        let frame = frame.with_header("receipt", receipt.clone());
        self.try_send(&frame).await.map_err(|_| Refused::Lost(RecvError::Closed))?;
        let mut kept = Vec::new();
        let outcome = loop {
            let reply = match tokio::time::timeout(WAIT, self.read_frame()).await {
                Ok(Some(reply)) => reply,
                Ok(None) => break Err(Refused::Lost(RecvError::Closed)),
                Err(_) => break Err(Refused::Lost(RecvError::Timeout)),
            };
            match reply.command() {
                Command::Receipt if reply.header_str("receipt-id") == Some(receipt.as_str()) => {
                    break Ok(());
                }
                Command::Error => break Err(Refused::Error(reply)),
                Command::Message => kept.push(reply),
                _ => panic!("unexpected frame while waiting for RECEIPT {receipt}: {reply:?}"),
            }
        };
        self.pending.extend(kept);
        outcome
    }

    /// [`try_request`](Self::try_request), panicking unless the RECEIPT came.
    pub async fn request(&mut self, frame: Frame) {
        let what = format!("{:?} {:?}", frame.command(), frame.header_str("destination"));
        if let Err(refused) = self.try_request(frame).await {
            panic!("{what} over {:?}: no RECEIPT: {refused:?}", self.transport);
        }
    }

    /// `frame` (with a receipt) must be answered by ERROR and then the end
    /// of the connection; returns the ERROR, checked readable.
    pub async fn request_refused(&mut self, frame: Frame) -> Frame {
        let what = format!(
            "{:?} {:?} {:?}",
            frame.command(),
            frame.header_str("destination"),
            frame.body()
        );
        match self.try_request(frame).await {
            Err(Refused::Error(error)) => {
                assert_readable_error(&error);
                self.expect_end().await;
                error
            }
            Ok(()) => panic!("{what} over {:?}: RECEIPT instead of ERROR", self.transport),
            Err(lost) => panic!("{what} over {:?}: no ERROR: {lost:?}", self.transport),
        }
    }

    /// SUBSCRIBE to `destination` as `id` with `headers`, waiting for the
    /// RECEIPT.
    pub async fn subscribe_with(&mut self, destination: &str, id: &str, headers: &[(&str, &str)]) {
        self.request(subscribe_frame(destination, id, headers)).await;
    }

    /// SUBSCRIBE to `destination` as `id`, waiting for the RECEIPT.
    pub async fn subscribe(&mut self, destination: &str, id: &str) {
        self.subscribe_with(destination, id, &[]).await;
    }

    /// Subscribes to room `room`'s topic as `id`.
    pub async fn join(&mut self, room: &str, id: &str) {
        self.subscribe(&format!("/topic/rooms.{room}"), id).await;
    }

    /// UNSUBSCRIBE `id`, waiting for the RECEIPT.
    pub async fn unsubscribe(&mut self, id: &str) {
        self.request(Frame::new(Command::Unsubscribe).with_header("id", id.to_owned())).await;
    }

    /// SEND `body` to `destination`, waiting for the RECEIPT.
    pub async fn send_to(&mut self, destination: &str, body: &str) {
        self.request(send_frame(destination, body)).await;
    }

    /// Posts `text` to room `room` (`SEND /app/rooms.{room}`), waiting for
    /// the RECEIPT.
    pub async fn say(&mut self, room: &str, text: &str) {
        self.send_to(&format!("/app/rooms.{room}"), &chat_body(text)).await;
    }

    /// [`say`](Self::say) that reports a failure instead of panicking.
    pub async fn try_say(&mut self, room: &str, text: &str) -> Result<(), Refused> {
        self.try_request(send_frame(&format!("/app/rooms.{room}"), &chat_body(text))).await
    }

    /// The next frame must be MESSAGE; returns it.
    pub async fn next_message(&mut self) -> Frame {
        let frame = self.recv().await;
        assert_eq!(frame.command(), Command::Message, "{frame:?}");
        frame
    }

    /// The next frame must be a chat MESSAGE (JSON body, content-type
    /// `application/json`); returns it parsed.
    pub async fn next_chat(&mut self) -> ChatMessage {
        let frame = self.next_message().await;
        chat_of(&frame)
    }

    /// The next `n` chat messages.
    pub async fn next_chats(&mut self, n: usize) -> Vec<ChatMessage> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next_chat().await);
        }
        out
    }

    /// Reads until ERROR (skipping MESSAGE frames), which must be followed
    /// by the end of the connection; returns it, checked readable.
    pub async fn expect_error_then_close(&mut self) -> Frame {
        let error = loop {
            let frame = self.recv().await;
            match frame.command() {
                Command::Message => {}
                Command::Error => break frame,
                _ => panic!("expected ERROR, got {frame:?}"),
            }
        };
        assert_readable_error(&error);
        self.expect_end().await;
        error
    }

    /// No more frames: the connection must end within [`WAIT`].
    pub async fn expect_end(&mut self) {
        assert!(self.pending.is_empty(), "frames left before the end: {:?}", self.pending);
        match tokio::time::timeout(WAIT, self.read_frame()).await {
            Ok(None) => {}
            Ok(Some(frame)) => {
                panic!("a frame after the ERROR, the connection should close: {frame:?}")
            }
            Err(_) => panic!("the connection did not close within {WAIT:?} after the ERROR"),
        }
    }

    /// DISCONNECT with a receipt, waiting for it (MESSAGE frames before it
    /// are dropped).
    pub async fn disconnect(mut self) {
        self.request(Frame::new(Command::Disconnect)).await;
    }
}

/// Upgrades a fresh connection to `ws://HTTP/stomp` offering
/// [`OFFERED_SUBPROTOCOLS`]; asserts `v12.stomp` was agreed.
async fn ws_upgrade(server: &Server) -> WebSocketStream<TcpStream> {
    let mut request = format!("ws://{}/stomp", server.http).into_client_request().expect("request");
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(OFFERED_SUBPROTOCOLS));
    let stream = TcpStream::connect(server.http).await.expect("connect to the HTTP port");
    stream.set_nodelay(true).expect("nodelay");
    let handshake = tokio_tungstenite::client_async(request, stream);
    let (ws, response) = tokio::time::timeout(WAIT, handshake)
        .await
        .expect("timed out in the WebSocket handshake")
        .unwrap_or_else(|e| panic!("WebSocket handshake at /stomp: {e}"));
    let agreed = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
    assert_eq!(
        agreed,
        Some("v12.stomp"),
        "offered {OFFERED_SUBPROTOCOLS:?}; response {response:?}"
    );
    ws
}

fn is_disconnect(error: &stomp_codec::CodecError) -> bool {
    // Any I/O error (reset, broken pipe, EOF within a frame) is an end.
    error.protocol().is_none()
}

/// A SUBSCRIBE frame (`ack: auto`).
pub fn subscribe_frame(destination: &str, id: &str, headers: &[(&str, &str)]) -> Frame {
    let mut frame = Frame::new(Command::Subscribe)
        .with_header("id", id.to_owned())
        .with_header("destination", destination.to_owned())
        .with_header("ack", "auto");
    for (name, value) in headers {
        frame = frame.with_header(name.to_string(), value.to_string());
    }
    frame
}

/// A SEND frame with a text body.
pub fn send_frame(destination: &str, body: &str) -> Frame {
    Frame::new(Command::Send)
        .with_header("destination", destination.to_owned())
        .with_header("content-type", "application/json")
        .with_body(body.to_owned())
}

/// The chat message of a MESSAGE frame: content-type `application/json`
/// and the contract's JSON shape.
pub fn chat_of(frame: &Frame) -> ChatMessage {
    assert_eq!(frame.command(), Command::Message, "{frame:?}");
    let content_type = frame.header_str("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "MESSAGE content-type {content_type:?}: {frame:?}"
    );
    ChatMessage::from_body(frame.body())
}

/// The `message` header of an ERROR.
pub fn error_message(error: &Frame) -> &str {
    error.header_str("message").unwrap_or_default()
}

/// An ERROR is readable: a non-empty one-line `message` header.
pub fn assert_readable_error(error: &Frame) {
    assert_eq!(error.command(), Command::Error, "{error:?}");
    let message = error_message(error);
    assert!(!message.trim().is_empty(), "ERROR without a message header: {error:?}");
    assert!(!message.contains('\n'), "ERROR message spans lines: {error:?}");
}

/// Asserts the ERROR's message contains `needle`.
pub fn assert_error_mentions(error: &Frame, needle: &str) {
    let message = error_message(error);
    assert!(
        message.to_lowercase().contains(&needle.to_lowercase()),
        "ERROR message {message:?} does not mention {needle:?}: {error:?}"
    );
}
