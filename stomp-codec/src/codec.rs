//! [`StompCodec`]: the tokio-util `Decoder` and `Encoder`.

use bytes::{BufMut, BytesMut};

use crate::decoder::Decoder;
use crate::{CodecError, Frame, Item, Limits, Result, Version, encode_frame};

/// A STOMP codec for `tokio_util::codec::Framed`, or for a read loop of
/// one's own.
///
/// Decoding yields [`Item`]s, frames and heart-beats, each as soon as it is
/// complete; a partial frame is kept as progress, not rescanned. Encoding
/// takes [`Frame`]s or [`Item`]s. Both use the negotiated protocol
/// [`Version`] for header escaping: a server sets it with
/// [`set_version`](Self::set_version) after answering `CONNECT`, a client
/// after reading `CONNECTED`. Until then it is STOMP 1.2, which is harmless
/// because the frames that open a session are never escaped.
///
/// ```
/// use bytes::BytesMut;
/// use stomp_codec::{Command, Item, StompCodec};
/// use tokio_util::codec::Decoder;
///
/// let mut codec = StompCodec::new();
/// let mut buf = BytesMut::from(&b"SEND\ndestination:/queue/a\n\nhel"[..]);
/// assert!(codec.decode(&mut buf).unwrap().is_none()); // waits for the NUL
/// buf.extend_from_slice(b"lo\0\n");
/// let Some(Item::Frame(frame)) = codec.decode(&mut buf).unwrap() else { panic!() };
/// assert_eq!(frame.command(), Command::Send);
/// assert_eq!(&frame.body()[..], b"hello");
/// assert_eq!(codec.decode(&mut buf).unwrap(), Some(Item::Heartbeat));
/// ```
///
/// Errors are terminal: after one, every call returns it again, and the
/// connection should be closed (see [`Error`](crate::Error)).
#[derive(Debug, Default)]
pub struct StompCodec {
    version: Version,
    limits: Limits,
    decoder: Decoder,
}

impl StompCodec {
    /// A codec with the default [`Limits`], speaking STOMP 1.2.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A codec with the given limits.
    #[must_use]
    pub fn with_limits(limits: Limits) -> Self {
        Self { limits, ..Self::default() }
    }

    /// The protocol version used for escaping.
    #[must_use]
    pub fn version(&self) -> Version {
        self.version
    }

    /// Sets the negotiated protocol version, for the frames decoded and
    /// encoded from now on.
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether the decoder is between frames: no partial frame is held. A
    /// connection may then shrink or release its read buffer.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.decoder.is_idle()
    }

    /// Decodes the next item at the front of `src`, or returns `None` when
    /// more octets are needed. This is the `Decoder` implementation with the
    /// protocol [`Error`](crate::Error) type.
    ///
    /// `src` must hold, at its front, the octets that follow the last item
    /// returned, and only grow at its end between calls.
    ///
    /// # Errors
    /// Any protocol error or exceeded limit; it is terminal.
    pub fn decode_item(&mut self, src: &mut BytesMut) -> Result<Option<Item>> {
        self.decoder.decode(src, self.version, &self.limits)
    }
}

impl tokio_util::codec::Decoder for StompCodec {
    type Item = Item;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Item>, CodecError> {
        Ok(self.decode_item(src)?)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Item>, CodecError> {
        match self.decode_item(src)? {
            Some(item) => Ok(Some(item)),
            None if src.is_empty() && self.decoder.is_idle() => Ok(None),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "stream ended in the middle of a STOMP frame",
            )
            .into()),
        }
    }
}

impl tokio_util::codec::Encoder<&Frame> for StompCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(encode_frame(frame, self.version, dst)?)
    }
}

impl tokio_util::codec::Encoder<Frame> for StompCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.encode(&frame, dst)
    }
}

impl tokio_util::codec::Encoder<Item> for StompCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Item, dst: &mut BytesMut) -> Result<(), CodecError> {
        match item {
            Item::Frame(frame) => self.encode(&frame, dst),
            Item::Heartbeat => {
                dst.put_u8(b'\n');
                Ok(())
            }
        }
    }
}
