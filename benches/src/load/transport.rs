//! Transports: how STOMP octets travel between the load generator and the
//! broker.
//!
//! Each type here is an enum with one arm per transport, so that the
//! clients and scenarios above stay as they are:
//!
//! - TCP: STOMP frames straight over the stream;
//! - WebSocket (`tokio-tungstenite`, over a `TcpStream` connected here so
//!   that source addresses can be chosen): the upgrade offers the
//!   `v12.stomp` subprotocol; every outbound frame is one message (text
//!   when UTF-8, binary otherwise), and a read appends one inbound
//!   message's payload, which the codec above reassembles (a frame may
//!   span messages, a message may hold several frames, `"\n"` is a
//!   heart-beat).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

/// A kind of transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// STOMP frames straight over TCP.
    Tcp,
    /// STOMP frames in WebSocket messages (subprotocol `v12.stomp`).
    Ws,
}

/// The WebSocket subprotocol offered in the upgrade.
const SUBPROTOCOL: &str = "v12.stomp";
/// tungstenite's read buffer at least (it is allocated for every
/// connection, so it stays small for idle ones).
const MIN_WS_READ_BUFFER: usize = 4 * 1024;
/// Octets of outbound messages tungstenite gathers before writing them
/// (a flush writes whatever is gathered).
const WS_WRITE_BUFFER: usize = 64 * 1024;

/// Where to connect, and how.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The transport.
    pub(crate) kind: Kind,
    /// The broker's address.
    pub(crate) addr: SocketAddr,
    /// The path of the WebSocket endpoint (WebSocket only).
    pub(crate) ws_path: Arc<str>,
}

impl Target {
    /// The WebSocket URL: `ws://ADDR/PATH`.
    pub(crate) fn ws_url(&self) -> String {
        let path = self.ws_path.trim_start_matches('/');
        format!("ws://{}/{path}", self.addr)
    }
}

/// Opens a connection to `target`, from `source` when given (port chosen
/// by the system), and splits it into its two directions. `read_chunk` is
/// the size of the WebSocket read buffer (at least 4 KiB).
pub(crate) async fn open(
    target: &Target,
    source: Option<IpAddr>,
    read_chunk: usize,
) -> io::Result<(Reader, Writer)> {
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0)).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot bind source address {ip}: {e}"))
        })?;
    }
    let stream = socket.connect(target.addr).await?;
    stream.set_nodelay(true)?;
    match target.kind {
        Kind::Tcp => {
            let (read, write) = stream.into_split();
            Ok((Reader::Tcp(read), Writer::Tcp(write)))
        }
        Kind::Ws => {
            let (sink, stream) = upgrade(target, stream, read_chunk).await?.split();
            Ok((Reader::Ws(stream), Writer::Ws(sink)))
        }
    }
}

/// The WebSocket upgrade of a connected stream.
async fn upgrade(
    target: &Target,
    stream: TcpStream,
    read_chunk: usize,
) -> io::Result<WebSocketStream<TcpStream>> {
    let mut request = target.ws_url().into_client_request().map_err(ws_error)?;
    request.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(SUBPROTOCOL));
    let config = WebSocketConfig::default()
        .read_buffer_size(read_chunk.max(MIN_WS_READ_BUFFER))
        .write_buffer_size(WS_WRITE_BUFFER);
    let (ws, response) =
        client_async_with_config(request, stream, Some(config)).await.map_err(ws_error)?;
    let agreed = response.headers().get(SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok());
    if agreed != Some(SUBPROTOCOL) {
        return Err(io::Error::other(format!(
            "the WebSocket upgrade agreed on subprotocol {agreed:?}, not {SUBPROTOCOL}"
        )));
    }
    Ok(ws)
}

/// A WebSocket error as an I/O error.
fn ws_error(error: WsError) -> io::Error {
    match error {
        WsError::Io(error) => error,
        error => io::Error::other(format!("WebSocket: {error}")),
    }
}

/// The receiving direction of a connection.
#[derive(Debug)]
pub(crate) enum Reader {
    /// A TCP stream's read half.
    Tcp(OwnedReadHalf),
    /// A WebSocket's receiving half.
    Ws(SplitStream<WebSocketStream<TcpStream>>),
}

impl Reader {
    /// Appends what arrives to `buf` (which must have spare capacity);
    /// returns the octets read, 0 at the end of the stream (for WebSocket,
    /// also at a close message). Cancel safe.
    pub(crate) async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Self::Tcp(read) => read.read_buf(buf).await,
            Self::Ws(stream) => loop {
                // Bounded by the messages the broker sends: control and
                // empty messages carry no STOMP octets.
                let payload = match stream.next().await {
                    Some(Ok(Message::Text(text))) => Bytes::from(text),
                    Some(Ok(Message::Binary(binary))) => binary,
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => return Ok(0),
                    Some(Err(error)) => return Err(ws_error(error)),
                };
                if !payload.is_empty() {
                    buf.extend_from_slice(&payload);
                    return Ok(payload.len());
                }
            },
        }
    }
}

/// The sending direction of a connection.
#[derive(Debug)]
pub(crate) enum Writer {
    /// A TCP stream's write half.
    Tcp(OwnedWriteHalf),
    /// A WebSocket's sending half.
    Ws(SplitSink<WebSocketStream<TcpStream>, Message>),
}

impl Writer {
    /// Writes the encoded frames in `data`, which end at the offsets in
    /// `ends` (ascending, the last one `data.len()`): in one write over
    /// TCP, one message per frame over WebSocket. `data` is left empty.
    pub(crate) async fn write_frames(
        &mut self,
        data: &mut BytesMut,
        ends: &[usize],
    ) -> io::Result<()> {
        match self {
            Self::Tcp(write) => {
                write.write_all(data).await?;
                data.clear();
                Ok(())
            }
            Self::Ws(sink) => {
                let frames = data.split().freeze();
                let mut start = 0;
                for &end in ends {
                    sink.feed(message(frames.slice(start..end))).await.map_err(ws_error)?;
                    start = end;
                }
                if start < frames.len() {
                    sink.feed(message(frames.slice(start..))).await.map_err(ws_error)?;
                }
                sink.flush().await.map_err(ws_error)
            }
        }
    }
}

/// A STOMP frame's octets as one WebSocket message: text when UTF-8.
fn message(frame: Bytes) -> Message {
    match Utf8Bytes::try_from(frame.clone()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Binary(frame),
    }
}
