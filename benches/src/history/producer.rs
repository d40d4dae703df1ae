//! STOMP 1.2 clients that send chat messages to `/app/rooms.{n}` as fast
//! as the broker takes them.
//!
//! Each client encodes its `SEND` frames once, with `stomp-codec`, into one
//! chunk of about [`CHUNK_BYTES`] (every room in turn, starting at a room
//! of its own, repeated), and writes that chunk again and again: the writes
//! are pipelined, there are no receipts, and the client's CPU goes into
//! `write`. When sending stops it sends `DISCONNECT` with a receipt; the
//! broker handles a connection's frames in order, so the `RECEIPT` means
//! that every `SEND` before it went through the handler.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use stomp_codec::{Command, Frame, Item, StompCodec, Version, encode_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Error, Result};

/// About how many octets of frames each write carries.
const CHUNK_BYTES: usize = 16 * 1024;
/// The receipt asked for by the final `DISCONNECT`.
const FINAL_RECEIPT: &str = "final";
/// The fixed part of every body: `{"text":"` and `"}`.
const BODY_HEAD: &str = "{\"text\":\"";
const BODY_TAIL: &str = "\"}";

/// What a producer sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Messages to each room (every room gets as many).
    pub(crate) per_room: u64,
    /// Messages in all.
    pub(crate) total: u64,
}

/// A connected client, ready to send.
#[derive(Debug)]
pub(crate) struct Producer {
    write: OwnedWriteHalf,
    /// Reads what the broker sends until the final receipt; an `ERROR`
    /// frame or the end of the connection before it is an error.
    reader: JoinHandle<Result<()>>,
    /// The pre-encoded frames.
    chunk: Bytes,
    /// Frames for each room in `chunk`.
    chunk_per_room: u64,
    rooms: u64,
}

impl Producer {
    /// Connects producer number `index` (0-based; also its login,
    /// `producer-{index}`) to the broker at `addr`, and encodes its frames:
    /// bodies of `body` octets spread over rooms `1..=rooms`.
    ///
    /// # Errors
    /// When connecting fails or the broker does not answer `CONNECTED`.
    pub(crate) async fn connect(
        addr: SocketAddr,
        index: usize,
        rooms: usize,
        body: usize,
    ) -> Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut read, mut write) = stream.into_split();
        let connect = Frame::new(Command::Connect)
            .with_header("accept-version", "1.2")
            .with_header("host", "localhost")
            .with_header("login", format!("producer-{index}"))
            .with_header("heart-beat", "0,0");
        write.write_all(&encode(&[connect])?).await?;
        let mut frames = FrameReader::default();
        match frames.next(&mut read).await? {
            Some(frame) if frame.command() == Command::Connected => {}
            Some(frame) => return Err(unexpected(&frame, "CONNECTED")),
            None => return Err(Error::new("the broker closed the connection after CONNECT")),
        }
        let (chunk, chunk_per_room) = chunk(index, rooms, body)?;
        let reader = tokio::spawn(async move { frames.until_final(&mut read).await });
        Ok(Self { write, reader, chunk, chunk_per_room, rooms: rooms as u64 })
    }

    /// Sends until `stop` is cancelled, then disconnects, waiting up to
    /// `drain` for the broker to handle everything sent.
    ///
    /// # Errors
    /// When the connection fails, the broker sends an `ERROR`, or the
    /// final receipt does not come within `drain`.
    pub(crate) async fn run(mut self, stop: CancellationToken, drain: Duration) -> Result<Sent> {
        let mut chunks = 0;
        while !stop.is_cancelled() {
            if let Err(e) = self.write.write_all(&self.chunk).await {
                return Err(self.reader_error(e.into()).await);
            }
            chunks += 1;
        }
        let disconnect = Frame::new(Command::Disconnect).with_header("receipt", FINAL_RECEIPT);
        if let Err(e) = self.write.write_all(&encode(&[disconnect])?).await {
            return Err(self.reader_error(e.into()).await);
        }
        match tokio::time::timeout(drain, &mut self.reader).await {
            Ok(Ok(result)) => result?,
            Ok(Err(panic)) => return Err(Error::new(format!("reader task failed: {panic}"))),
            Err(_) => {
                self.reader.abort();
                return Err(Error::new(format!("no receipt for DISCONNECT within {drain:?}")));
            }
        }
        let per_room = chunks * self.chunk_per_room;
        Ok(Sent { per_room, total: per_room * self.rooms })
    }

    /// The reader's error, which says more than a failed write (an `ERROR`
    /// frame explains why the broker closed), or `fallback`.
    async fn reader_error(&mut self, fallback: Error) -> Error {
        match tokio::time::timeout(Duration::from_secs(1), &mut self.reader).await {
            Ok(Ok(Err(e))) => e,
            _ => fallback,
        }
    }
}

/// Frames encoded one after the other.
fn encode(frames: &[Frame]) -> Result<Bytes> {
    let mut out = BytesMut::new();
    for frame in frames {
        encode_frame(frame, Version::V1_2, &mut out)?;
    }
    Ok(out.freeze())
}

/// Producer `index`'s chunk: every room once, from room `index % rooms + 1`
/// on, repeated to about [`CHUNK_BYTES`]; and how many frames per room it
/// holds.
fn chunk(index: usize, rooms: usize, body_len: usize) -> Result<(Bytes, u64)> {
    let body = body(body_len);
    let round: Vec<Frame> = (0..rooms)
        .map(|k| {
            Frame::new(Command::Send)
                .with_header("destination", format!("/app/rooms.{}", (index + k) % rooms + 1))
                .with_header("content-type", "application/json")
                .with_body(body.clone())
        })
        .collect();
    let round = encode(&round)?;
    let repeat = (CHUNK_BYTES / round.len().max(1)).max(1);
    Ok((round.repeat(repeat).into(), repeat as u64))
}

/// A JSON body of exactly `len` octets (at least 11): `{"text":"..."}`.
pub(crate) fn body(len: usize) -> Bytes {
    const WORDS: &[u8] = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit. ";
    let text = len.saturating_sub(BODY_HEAD.len() + BODY_TAIL.len());
    let mut body = Vec::with_capacity(len.max(BODY_HEAD.len() + BODY_TAIL.len()));
    body.extend_from_slice(BODY_HEAD.as_bytes());
    body.extend(WORDS.iter().copied().cycle().take(text));
    body.extend_from_slice(BODY_TAIL.as_bytes());
    body.into()
}

fn unexpected(frame: &Frame, wanted: &str) -> Error {
    let message = frame.header_str("message").unwrap_or_default();
    Error::new(format!("expected {wanted}, got {} {message}", frame.command()))
}

/// Frames from the broker: a read buffer and the decoder.
#[derive(Debug, Default)]
struct FrameReader {
    buf: BytesMut,
    codec: StompCodec,
}

impl FrameReader {
    /// The next frame; `None` at the end of the connection.
    async fn next(&mut self, read: &mut OwnedReadHalf) -> Result<Option<Frame>> {
        loop {
            if let Some(Item::Frame(frame)) = self.codec.decode_item(&mut self.buf)? {
                return Ok(Some(frame));
            }
            self.buf.reserve(4096);
            if read.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Reads until the final receipt.
    async fn until_final(&mut self, read: &mut OwnedReadHalf) -> Result<()> {
        loop {
            match self.next(read).await? {
                Some(frame) if frame.command() == Command::Receipt => {
                    if frame.header_str("receipt-id") == Some(FINAL_RECEIPT) {
                        return Ok(());
                    }
                }
                Some(frame) if frame.command() == Command::Error => {
                    let body = String::from_utf8_lossy(frame.body()).trim().to_owned();
                    return Err(Error::new(format!("{} {body}", unexpected(&frame, "RECEIPT"))));
                }
                Some(_) => {}
                None => {
                    return Err(Error::new(
                        "the broker closed the connection before the final receipt",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_of_the_requested_length() {
        for len in [11, 12, 100, 1000] {
            let body = body(len);
            assert_eq!(body.len(), len);
            assert!(body.starts_with(b"{\"text\":\"") && body.ends_with(b"\"}"));
        }
        assert_eq!(&body(0)[..], b"{\"text\":\"\"}");
    }

    #[test]
    fn a_chunk_holds_every_room_equally() {
        let (chunk, per_room) = chunk(5, 16, 100).unwrap();
        let text = String::from_utf8_lossy(&chunk);
        for room in 1..=16 {
            let n = text.matches(&format!("destination:/app/rooms.{room}\n")).count();
            assert_eq!(n as u64, per_room, "room {room}");
        }
        assert!(text.starts_with("SEND\ndestination:/app/rooms.6\n"));
    }
}
