//! A STOMP 1.2 client session over one of the [`super::transport`] kinds,
//! speaking through our codec: [`StompCodec::decode_item`] in,
//! [`encode_frame`] out (over WebSocket, one message per frame).

use std::net::IpAddr;
use std::sync::Arc;

use bytes::BytesMut;
use stomp_codec::{Command, Frame, Item, StompCodec, Version, encode_frame};
use tokio::sync::watch;

use super::transport::{self, Reader, Target, Writer};
use super::{Error, Result};

/// Receives frames: a read buffer and the decoder.
#[derive(Debug)]
pub(crate) struct FrameReader {
    io: Reader,
    buf: BytesMut,
    codec: StompCodec,
    /// Spare room reserved before each read.
    chunk: usize,
}

impl FrameReader {
    fn new(io: Reader, chunk: usize) -> Self {
        Self { io, buf: BytesMut::new(), codec: StompCodec::new(), chunk: chunk.max(256) }
    }

    /// The next frame; `None` when the broker closed the connection between
    /// frames. Heart-beats are skipped. Cancel safe: a frame is decoded
    /// only from octets already read, and reading loses nothing.
    pub(crate) async fn next_frame(&mut self) -> Result<Option<Frame>> {
        loop {
            match self.codec.decode_item(&mut self.buf)? {
                Some(Item::Frame(frame)) => return Ok(Some(frame)),
                Some(Item::Heartbeat) => continue,
                None => {}
            }
            if self.buf.capacity() - self.buf.len() < self.chunk / 4 {
                self.buf.reserve(self.chunk);
            }
            if self.io.read_into(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() && self.codec.is_idle() {
                    Ok(None)
                } else {
                    Err(Error::new("the broker closed the connection in the middle of a frame"))
                };
            }
        }
    }

    /// The next frame if the octets already read hold a whole one: to
    /// handle every frame of one read before writing the answers together.
    pub(crate) fn next_buffered(&mut self) -> Result<Option<Frame>> {
        loop {
            match self.codec.decode_item(&mut self.buf)? {
                Some(Item::Frame(frame)) => return Ok(Some(frame)),
                Some(Item::Heartbeat) => continue,
                None => return Ok(None),
            }
        }
    }

    /// Hands every `MESSAGE` to `on_message` until `stop` changes, and
    /// counts other frames in `unexpected`. An `ERROR` frame or the end of
    /// the connection is an error.
    pub(crate) async fn read_messages(
        &mut self,
        stop: &mut watch::Receiver<bool>,
        unexpected: &mut u64,
        mut on_message: impl FnMut(&Frame),
    ) -> Result<()> {
        loop {
            let frame = tokio::select! {
                biased;
                frame = self.next_frame() => frame?,
                _ = stop.changed() => return Ok(()),
            };
            match frame {
                Some(frame) if frame.command() == Command::Message => on_message(&frame),
                Some(frame) if frame.command() == Command::Error => {
                    return Err(error_frame(&frame));
                }
                Some(_) => *unexpected += 1,
                None => return Err(Error::new("the broker closed the connection")),
            }
        }
    }

    /// The next frame, which must be `command`; an `ERROR` frame or the end
    /// of the connection is an error.
    pub(crate) async fn expect(&mut self, command: Command) -> Result<Frame> {
        match self.next_frame().await? {
            Some(frame) if frame.command() == command => Ok(frame),
            Some(frame) if frame.command() == Command::Error => Err(error_frame(&frame)),
            Some(frame) => Err(Error::new(format!("expected {command}, got {}", frame.command()))),
            None => Err(Error::new(format!("connection closed while waiting for {command}"))),
        }
    }

    /// Frees the read buffer if it holds nothing (for idle connections).
    pub(crate) fn release_buffer(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }
}

/// Sends frames: they are encoded into a buffer by [`push`](Self::push)
/// and written together by [`flush`](Self::flush).
#[derive(Debug)]
pub(crate) struct FrameWriter {
    io: Writer,
    buf: BytesMut,
    /// Where each frame in `buf` ends (one WebSocket message per frame).
    ends: Vec<usize>,
    version: Version,
}

impl FrameWriter {
    /// Encodes `frame` after what is already waiting.
    pub(crate) fn push(&mut self, frame: &Frame) -> Result<()> {
        encode_frame(frame, self.version, &mut self.buf)?;
        self.ends.push(self.buf.len());
        Ok(())
    }

    /// Writes everything waiting.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.io.write_frames(&mut self.buf, &self.ends).await?;
            self.buf.clear();
            self.ends.clear();
        }
        Ok(())
    }

    /// Encodes and writes one frame.
    pub(crate) async fn send(&mut self, frame: &Frame) -> Result<()> {
        self.push(frame)?;
        self.flush().await
    }

    /// Frees the write buffer (for idle connections).
    pub(crate) fn release_buffer(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
            self.ends = Vec::new();
        }
    }
}

/// Who a session says it is: the `login`, `passcode` and `host` headers
/// of its `CONNECT` (RabbitMQ checks all three; `host` is its virtual
/// host).
#[derive(Debug, Clone)]
pub(crate) struct Login {
    /// `login`.
    pub(crate) login: Arc<str>,
    /// `passcode`.
    pub(crate) passcode: Arc<str>,
    /// `host`.
    pub(crate) host: Arc<str>,
}

/// An open STOMP session.
#[derive(Debug)]
pub(crate) struct Session {
    /// Frames from the broker.
    pub(crate) reader: FrameReader,
    /// Frames to the broker.
    pub(crate) writer: FrameWriter,
}

impl Session {
    /// Opens a transport connection and a STOMP 1.2 session on it as
    /// `login`, without heart-beats; `read_chunk` is the read buffer's
    /// growth step.
    pub(crate) async fn connect(
        target: Target,
        login: &Login,
        source: Option<IpAddr>,
        read_chunk: usize,
    ) -> Result<Self> {
        let (read, write) = transport::open(&target, source, read_chunk).await.map_err(|e| {
            Error::new(format!("cannot connect to {} ({:?}): {e}", target.addr, target.kind))
        })?;
        let mut session = Self {
            reader: FrameReader::new(read, read_chunk),
            writer: FrameWriter {
                io: write,
                buf: BytesMut::new(),
                ends: Vec::new(),
                version: Version::V1_2,
            },
        };
        let connect = Frame::new(Command::Connect)
            .with_header("accept-version", "1.2")
            .with_header("host", login.host.to_string())
            .with_header("login", login.login.to_string())
            .with_header("passcode", login.passcode.to_string())
            .with_header("heart-beat", "0,0");
        session.writer.send(&connect).await?;
        let connected = session.reader.expect(Command::Connected).await?;
        let version = connected.header("version").and_then(Version::from_bytes);
        if version != Some(Version::V1_2) {
            return Err(Error::new(format!(
                "the broker answered CONNECT with version {:?}; STOMP 1.2 is needed",
                connected.header_str("version")
            )));
        }
        session.reader.codec.set_version(Version::V1_2);
        Ok(session)
    }

    /// Subscribes to `destination` (auto ack) as subscription `id`, and
    /// waits for the broker's receipt, so that the subscription is live
    /// when this returns.
    pub(crate) async fn subscribe(&mut self, id: &str, destination: &str) -> Result<()> {
        self.subscribe_with(id, destination, "auto", &[]).await
    }

    /// Subscribes as [`subscribe`](Self::subscribe) does, with the `ack`
    /// mode `ack` and the `extra` headers (such as a prefetch).
    pub(crate) async fn subscribe_with(
        &mut self,
        id: &str,
        destination: &str,
        ack: &'static str,
        extra: &[(&'static str, String)],
    ) -> Result<()> {
        let receipt = format!("sub-{id}");
        let mut subscribe = Frame::new(Command::Subscribe)
            .with_header("id", id.to_owned())
            .with_header("destination", destination.to_owned())
            .with_header("ack", ack)
            .with_header("receipt", receipt.clone());
        for (name, value) in extra {
            subscribe = subscribe.with_header(*name, value.clone());
        }
        self.writer.send(&subscribe).await?;
        let answer = self.reader.expect(Command::Receipt).await?;
        if answer.header("receipt-id") != Some(receipt.as_bytes()) {
            return Err(Error::new(format!(
                "expected receipt {receipt}, got {:?}",
                answer.header_str("receipt-id")
            )));
        }
        Ok(())
    }
}

/// An `ERROR` frame as an error: its `message` header and body.
pub(crate) fn error_frame(frame: &Frame) -> Error {
    let message = frame.header_str("message").unwrap_or("(no message header)");
    let body = String::from_utf8_lossy(frame.body());
    let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if body.is_empty() {
        Error::new(format!("ERROR from the broker: {message}"))
    } else {
        Error::new(format!("ERROR from the broker: {message}: {body}"))
    }
}
