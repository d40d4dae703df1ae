//! Frames and the items of a STOMP byte stream.

use bytes::Bytes;

use crate::{Command, Headers, Result};

/// A STOMP frame: a command, ordered headers and a body.
///
/// A decoded frame borrows from the read buffer: its headers are ranges of
/// it and its body is a [`Bytes`] slice of it, so decoding copies nothing
/// but unescaped header fields. A frame built by the application holds
/// whatever buffers it was given (`&'static str`, `String`, `Vec<u8>` and
/// `Bytes` all convert without a copy).
///
/// ```
/// use stomp_codec::{Command, Frame};
///
/// let frame = Frame::new(Command::Send)
///     .with_header("destination", "/queue/a")
///     .with_body("hello");
/// assert_eq!(frame.header_str("destination"), Some("/queue/a"));
/// assert_eq!(&frame.body()[..], b"hello");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    command: Command,
    headers: Headers,
    body: Bytes,
}

impl Frame {
    /// A frame with no headers and an empty body.
    #[must_use]
    pub fn new(command: Command) -> Self {
        Self { command, headers: Headers::new(), body: Bytes::new() }
    }

    /// A frame from its parts.
    #[must_use]
    pub fn from_parts(command: Command, headers: Headers, body: Bytes) -> Self {
        Self { command, headers, body }
    }

    /// Appends a header (builder style).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        self.headers.push(name, value);
        self
    }

    /// Replaces the body (builder style).
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The command.
    #[must_use]
    pub fn command(&self) -> Command {
        self.command
    }

    /// The headers.
    #[must_use]
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The headers, to change them.
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// The value of the first header called `name`.
    #[must_use]
    pub fn header(&self, name: impl AsRef<[u8]>) -> Option<&[u8]> {
        self.headers.get(name)
    }

    /// The value of the first header called `name`, if it is UTF-8.
    #[must_use]
    pub fn header_str(&self, name: impl AsRef<[u8]>) -> Option<&str> {
        self.headers.get_str(name)
    }

    /// The body.
    #[must_use]
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Replaces the body.
    pub fn set_body(&mut self, body: impl Into<Bytes>) {
        self.body = body.into();
    }

    /// The `content-length` header, parsed.
    ///
    /// # Errors
    /// [`Error::InvalidContentLength`](crate::Error::InvalidContentLength) when the header is present but not a
    /// decimal number.
    pub fn content_length(&self) -> Result<Option<usize>> {
        self.header("content-length").map(parse_content_length).transpose()
    }

    /// The parts of the frame.
    #[must_use]
    pub fn into_parts(self) -> (Command, Headers, Bytes) {
        (self.command, self.headers, self.body)
    }

    /// A copy of this frame that shares nothing with the read buffer: every
    /// header and the body in buffers of their own, sized to fit.
    ///
    /// Use it before keeping a frame for long (a queue, a transaction, a
    /// store): a decoded frame's slices keep the whole read buffer they came
    /// from alive, which can be many times the frame's size.
    #[must_use]
    pub fn detached(&self) -> Self {
        let headers = self
            .headers
            .iter()
            .map(|(n, v)| (Bytes::copy_from_slice(n), Bytes::copy_from_slice(v)))
            .collect();
        Self { command: self.command, headers, body: Bytes::copy_from_slice(&self.body) }
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("command", &self.command)
            .field("headers", &self.headers)
            .field("body", &self.body)
            .finish()
    }
}

/// Parses a `content-length` value: decimal octets, nothing else.
pub(crate) fn parse_content_length(value: &[u8]) -> Result<usize> {
    crate::grammar::content_length(value)
}

/// One item of a STOMP byte stream: a frame, or a heart-beat (an EOL
/// between frames).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A frame.
    Frame(Frame),
    /// An end-of-line between frames (`\n` or `\r\n`): a heart-beat.
    Heartbeat,
}

impl From<Frame> for Item {
    fn from(frame: Frame) -> Self {
        Self::Frame(frame)
    }
}
