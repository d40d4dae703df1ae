//! WebSocket test support: a broker serving STOMP over both TCP and
//! WebSocket, and a raw STOMP-over-WebSocket client built on the
//! `tokio_tungstenite` the broker re-exports.
//!
//! Included by the `ws_*` tests with
//! `#[path = "support/ws_client.rs"] mod ws_client;` next to `mod support;`.
#![allow(dead_code, unreachable_pub, clippy::missing_panics_doc)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use stomp_broker::websocket::tokio_tungstenite::{
    self, WebSocketStream,
    tungstenite::{
        self, Message, Utf8Bytes,
        client::IntoClientRequest,
        http::{HeaderValue, Response, StatusCode},
        protocol::{CloseFrame, Role, frame::coding::CloseCode},
    },
};
use stomp_broker::{Broker, BrokerBuilder};
use stomp_codec::{Command, Frame, Item, StompCodec, Version, encode_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::{TestBroker, WAIT};

/// The path the test brokers serve STOMP over WebSocket at.
pub const PATH: &str = "/stomp";

/// A broker serving STOMP over TCP (`tcp.addr`) and over WebSocket
/// (`ws_addr`, at [`PATH`]), both on 127.0.0.1 ephemeral ports.
pub struct WsBroker {
    /// The TCP side (and the broker handle, `tcp.broker`).
    pub tcp: TestBroker,
    /// Where the WebSocket listener is.
    pub ws_addr: SocketAddr,
    ws_serving: JoinHandle<std::io::Result<()>>,
}

impl WsBroker {
    /// Starts `builder`'s broker on both transports.
    pub async fn start(builder: BrokerBuilder) -> Self {
        let tcp = TestBroker::start(builder).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let ws_addr = listener.local_addr().expect("local addr");
        let ws_serving = tokio::spawn({
            let broker = tcp.broker.clone();
            async move { broker.serve_ws(listener, PATH).await }
        });
        Self { tcp, ws_addr, ws_serving }
    }

    /// Starts a broker with the defaults.
    pub async fn default() -> Self {
        Self::start(Broker::builder()).await
    }

    /// The broker handle.
    pub fn broker(&self) -> &Broker {
        &self.tcp.broker
    }

    /// A WebSocket client connected with STOMP 1.2 as `login`.
    pub async fn ws_client(&self, login: &str) -> WsClient {
        WsClient::connect(self.ws_addr, login).await
    }

    /// Shuts the broker down and waits for both accept loops to end.
    pub async fn stop(self) {
        self.tcp.stop().await;
        self.ws_serving.await.expect("serve_ws task").expect("serve_ws");
    }
}

/// The `ws://` URL of `path` on `addr`.
pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("ws://{addr}{path}")
}

/// Performs the WebSocket upgrade of a fresh TCP connection to `addr` at
/// `path`, offering `protocols` (a `Sec-WebSocket-Protocol` value) if any.
///
/// # Errors
/// The client handshake's error, such as [`tungstenite::Error::Http`] for
/// a refusal.
pub async fn upgrade(
    addr: SocketAddr,
    path: &str,
    protocols: Option<&str>,
) -> Result<(WebSocketStream<TcpStream>, Response<Option<Vec<u8>>>), tungstenite::Error> {
    let mut request = url(addr, path).into_client_request()?;
    if let Some(protocols) = protocols {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(protocols).expect("header"));
    }
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    tokio::time::timeout(WAIT, tokio_tungstenite::client_async_with_config(request, stream, None))
        .await
        .expect("timed out in the WebSocket handshake")
}

/// The answer to a hand-written upgrade request (for cases tungstenite's
/// client refuses on its own, such as a server that does not echo an
/// offered subprotocol).
pub struct RawUpgrade {
    /// The HTTP status code.
    pub status: u16,
    /// The response head, lines without their CRLF.
    pub head: Vec<String>,
    /// The connection, positioned after the response head.
    pub stream: TcpStream,
}

impl RawUpgrade {
    /// The value of response header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.iter().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// Continues as a WebSocket client on the upgraded connection.
    pub async fn into_client(self) -> WsClient {
        assert_eq!(self.status, 101, "{:?}", self.head);
        let ws = WebSocketStream::from_raw_socket(self.stream, Role::Client, None).await;
        WsClient::new(ws)
    }
}

/// Sends an upgrade request by hand and reads the response head.
pub async fn raw_upgrade(addr: SocketAddr, path: &str, protocols: Option<&str>) -> RawUpgrade {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(protocols) = protocols {
        request.push_str(&format!("Sec-WebSocket-Protocol: {protocols}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("write upgrade request");
    // One octet at a time, so that nothing after the head is consumed.
    let mut head = Vec::new();
    let read_head = async {
        while !head.ends_with(b"\r\n\r\n") {
            let octet = stream.read_u8().await.expect("read upgrade response");
            head.push(octet);
        }
    };
    tokio::time::timeout(WAIT, read_head).await.expect("timed out reading the upgrade response");
    let text = String::from_utf8(head).expect("response head is text");
    let head: Vec<String> =
        text.split("\r\n").filter(|line| !line.is_empty()).map(str::to_owned).collect();
    let status = head[0].split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    RawUpgrade { status, head, stream }
}

/// The HTTP status of a refused upgrade.
pub fn refused_status(error: &tungstenite::Error) -> StatusCode {
    match error {
        tungstenite::Error::Http(response) => response.status(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

/// What kind of WebSocket data message a frame came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A text message.
    Text,
    /// A binary message.
    Binary,
}

/// How a WebSocket connection ended, with the STOMP frames that came first.
#[derive(Debug)]
pub struct Ending {
    /// The frames received before the end (heart-beats skipped).
    pub frames: Vec<Frame>,
    /// The close frame received, if the broker sent one; `None` when the
    /// stream ended (or failed) without one.
    pub close: Option<Option<CloseFrame>>,
}

impl Ending {
    /// The close code; panics unless a close frame with a code came.
    pub fn close_code(&self) -> CloseCode {
        match &self.close {
            Some(Some(frame)) => frame.code,
            other => {
                panic!("expected a close frame with a code, got {other:?} after {:?}", self.frames)
            }
        }
    }
}

/// A STOMP client over WebSocket, speaking raw frames.
pub struct WsClient {
    /// The WebSocket.
    pub ws: WebSocketStream<TcpStream>,
    /// Decodes what the broker sends (version set by [`stomp_connect`](Self::stomp_connect)).
    pub codec: StompCodec,
}

impl WsClient {
    /// Wraps an upgraded WebSocket.
    pub fn new(ws: WebSocketStream<TcpStream>) -> Self {
        Self { ws, codec: StompCodec::new() }
    }

    /// Upgraded at [`PATH`] without a subprotocol; nothing sent yet.
    pub async fn open(addr: SocketAddr) -> Self {
        let (ws, _) = upgrade(addr, PATH, None).await.expect("WebSocket handshake");
        Self::new(ws)
    }

    /// Upgraded, then CONNECTed with STOMP 1.2 as `login`; panics unless
    /// CONNECTED.
    pub async fn connect(addr: SocketAddr, login: &str) -> Self {
        let mut client = Self::open(addr).await;
        let connected = client.stomp_connect(login, "1.2", None).await;
        assert_eq!(connected.command(), Command::Connected, "{connected:?}");
        client
    }

    /// Sends CONNECT (with `accept-version` and, if given, `heart-beat`)
    /// and returns the reply; after CONNECTED, frames are decoded in the
    /// agreed version.
    pub async fn stomp_connect(
        &mut self,
        login: &str,
        accept_version: &str,
        heart_beat: Option<&str>,
    ) -> Frame {
        let mut frame = Frame::new(Command::Connect)
            .with_header("accept-version", accept_version.to_owned())
            .with_header("host", "/")
            .with_header("login", login.to_owned());
        if let Some(heart_beat) = heart_beat {
            frame = frame.with_header("heart-beat", heart_beat.to_owned());
        }
        let reply = self.request(frame).await;
        if reply.command() == Command::Connected {
            let version = reply.header("version").and_then(Version::from_bytes);
            self.codec.set_version(version.unwrap_or(Version::V1_0));
        }
        reply
    }

    /// Encodes `frame` in the client's version.
    pub fn encode(&self, frame: &Frame) -> Bytes {
        let mut out = BytesMut::new();
        encode_frame(frame, self.codec.version(), &mut out).expect("encode");
        out.freeze()
    }

    /// Sends one WebSocket message.
    pub async fn send_message(&mut self, message: Message) {
        tokio::time::timeout(WAIT, self.ws.send(message))
            .await
            .expect("timed out sending")
            .expect("WebSocket send");
    }

    /// Sends octets as one text message (they must be UTF-8).
    pub async fn send_text(&mut self, octets: &[u8]) {
        let text = std::str::from_utf8(octets).expect("a text message must be UTF-8");
        self.send_message(Message::text(text)).await;
    }

    /// Sends octets as one binary message.
    pub async fn send_binary(&mut self, octets: &[u8]) {
        self.send_message(Message::binary(Bytes::copy_from_slice(octets))).await;
    }

    /// Sends `frame` as one text message.
    pub async fn send(&mut self, frame: &Frame) {
        let octets = self.encode(frame);
        self.send_text(&octets).await;
    }

    /// Sends `frame` and returns the next frame received.
    pub async fn request(&mut self, frame: Frame) -> Frame {
        self.send(&frame).await;
        self.recv().await
    }

    /// The next WebSocket message; `None` when the stream ends or fails.
    /// Panics after [`WAIT`].
    pub async fn next_message(&mut self) -> Option<Message> {
        match tokio::time::timeout(WAIT, self.ws.next()).await {
            Err(_) => panic!("timed out waiting for a WebSocket message"),
            Ok(Some(Ok(message))) => Some(message),
            Ok(Some(Err(_)) | None) => None,
        }
    }

    /// Decodes a data message that must hold exactly one STOMP frame.
    pub fn decode_one(&mut self, payload: &[u8]) -> Frame {
        let mut buf = BytesMut::from(payload);
        let item = self.codec.decode_item(&mut buf).expect("broker sent a malformed frame");
        let Some(Item::Frame(frame)) = item else {
            panic!("a WebSocket message without one whole frame: {payload:?}");
        };
        assert!(buf.is_empty(), "more than one frame in a WebSocket message: {payload:?}");
        frame
    }

    /// The next STOMP frame and the kind of message it came in, skipping
    /// heart-beats (`"\n"` text messages) and pongs; panics if the
    /// connection ends first, or if a message holds anything but one frame.
    pub async fn recv_kind(&mut self) -> (Frame, Kind) {
        loop {
            match self.next_message().await {
                Some(Message::Text(text)) if is_heartbeat(text.as_bytes()) => {}
                Some(Message::Text(text)) => return (self.decode_one(text.as_bytes()), Kind::Text),
                Some(Message::Binary(binary)) => return (self.decode_one(&binary), Kind::Binary),
                Some(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Some(Message::Close(close)) => {
                    panic!("WebSocket closed ({close:?}) while waiting for a frame")
                }
                None => panic!("WebSocket ended while waiting for a frame"),
            }
        }
    }

    /// The next STOMP frame (see [`recv_kind`](Self::recv_kind)).
    pub async fn recv(&mut self) -> Frame {
        self.recv_kind().await.0
    }

    /// The next frame, which must have `command`.
    pub async fn expect(&mut self, command: Command) -> Frame {
        let frame = self.recv().await;
        assert_eq!(frame.command(), command, "{frame:?}");
        frame
    }

    /// The next frame must be MESSAGE; returns it.
    pub async fn expect_message(&mut self) -> Frame {
        self.expect(Command::Message).await
    }

    /// Sends `frame` with a `receipt` header and waits for its RECEIPT.
    pub async fn with_receipt(&mut self, frame: Frame, receipt: &str) {
        let reply = self.request(frame.with_header("receipt", receipt.to_owned())).await;
        assert_eq!(reply.command(), Command::Receipt, "{reply:?}");
        assert_eq!(reply.header_str("receipt-id"), Some(receipt));
    }

    /// Subscribes (waiting for the receipt, so the subscription is live).
    pub async fn subscribe(&mut self, id: &str, destination: &str, ack: &str) {
        let frame = Frame::new(Command::Subscribe)
            .with_header("id", id.to_owned())
            .with_header("destination", destination.to_owned())
            .with_header("ack", ack.to_owned());
        self.with_receipt(frame, &format!("sub-{id}")).await;
    }

    /// Sends a text message (waiting for the receipt).
    pub async fn publish(&mut self, destination: &str, body: &str) {
        let frame = Frame::new(Command::Send)
            .with_header("destination", destination.to_owned())
            .with_body(body.to_owned());
        self.with_receipt(frame, "pub").await;
    }

    /// Reads until the connection ends: the frames that came, and the
    /// close frame if one did. After a close frame, keeps reading until the
    /// stream ends, so that tungstenite sends the closing reply.
    pub async fn expect_end(&mut self) -> Ending {
        let mut frames = Vec::new();
        loop {
            match self.next_message().await {
                Some(Message::Text(text)) if is_heartbeat(text.as_bytes()) => {}
                Some(Message::Text(text)) => frames.push(self.decode_one(text.as_bytes())),
                Some(Message::Binary(binary)) => frames.push(self.decode_one(&binary)),
                Some(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Some(Message::Close(close)) => {
                    while self.next_message().await.is_some() {}
                    return Ending { frames, close: Some(close) };
                }
                None => return Ending { frames, close: None },
            }
        }
    }

    /// The connection must end with one `ERROR` frame and then a close
    /// frame with `code`; returns the ERROR.
    pub async fn expect_error_then_close(&mut self, code: CloseCode) -> Frame {
        let ending = self.expect_end().await;
        assert_eq!(ending.frames.len(), 1, "expected exactly one ERROR: {ending:?}");
        let error = ending.frames[0].clone();
        assert_eq!(error.command(), Command::Error, "{ending:?}");
        assert_eq!(ending.close_code(), code, "{ending:?}");
        error
    }

    /// No STOMP frame arrives within `wait` (heart-beats and pongs are
    /// ignored); the connection must stay open.
    pub async fn expect_silence(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Text(text)))) if is_heartbeat(text.as_bytes()) => {}
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }

    /// Closes the WebSocket from the client side (close handshake).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(WAIT, self.ws.close(None)).await;
        let _ = tokio::time::timeout(WAIT, async { while self.ws.next().await.is_some() {} }).await;
    }
}

/// Whether a data message is a heart-beat: end-of-lines only.
pub fn is_heartbeat(payload: &[u8]) -> bool {
    !payload.is_empty() && payload.iter().all(|&b| b == b'\n' || b == b'\r')
}

/// DISCONNECT with a receipt; the RECEIPT must come, then a close frame
/// with code 1000 (Normal).
pub async fn disconnect(mut client: WsClient) {
    let frame = Frame::new(Command::Disconnect).with_header("receipt", "bye");
    client.send(&frame).await;
    let ending = client.expect_end().await;
    assert_eq!(ending.frames.len(), 1, "{ending:?}");
    assert_eq!(ending.frames[0].command(), Command::Receipt, "{ending:?}");
    assert_eq!(ending.frames[0].header_str("receipt-id"), Some("bye"));
    assert_eq!(ending.close_code(), CloseCode::Normal, "{ending:?}");
}

/// A text message of `text`.
pub fn text(text: &str) -> Message {
    Message::Text(Utf8Bytes::from(text))
}

/// Waits until `condition` holds, checking every few milliseconds; panics
/// after [`WAIT`]. For state that no frame reports (connection counts).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
