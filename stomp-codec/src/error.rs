//! Errors of the codec.

/// A STOMP protocol error found while decoding or encoding a frame.
///
/// Every decoding error is **terminal for the stream**: once the decoder has
/// returned one, the bytes that follow cannot be framed reliably, so it keeps
/// returning the same error and the connection should be closed (a broker
/// answers with an `ERROR` frame first). Encoding errors leave the encoder
/// and the output buffer untouched, so the caller may go on with other frames.
///
/// The type is `Copy` so that it can be stored, compared and reported again
/// without allocation; its `Display` text is meant for the `message` header
/// of a STOMP `ERROR` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The frame is larger than [`Limits::max_frame_size`](crate::Limits).
    /// Fatal.
    #[error("frame exceeds the maximum size of {limit} bytes")]
    FrameTooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// The body, declared by `content-length` or found while scanning for
    /// the terminating NUL, is larger than
    /// [`Limits::max_body_size`](crate::Limits). Fatal.
    #[error("frame body exceeds the maximum size of {limit} bytes")]
    BodyTooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// The frame has more headers than
    /// [`Limits::max_headers`](crate::Limits). Fatal.
    #[error("frame has more than {limit} headers")]
    TooManyHeaders {
        /// The limit in force.
        limit: usize,
    },
    /// A command or header line is longer than
    /// [`Limits::max_header_line`](crate::Limits). Fatal.
    #[error("header line exceeds the maximum length of {limit} bytes")]
    HeaderLineTooLong {
        /// The limit in force.
        limit: usize,
    },
    /// The command line does not name a STOMP command. Fatal.
    #[error("unknown command")]
    UnknownCommand,
    /// A header line has no `:` or an empty name. Fatal.
    #[error("malformed header line")]
    MalformedHeader,
    /// A header contains a backslash escape that the negotiated protocol
    /// version does not define (for example `\t`, or `\r` in STOMP 1.1).
    /// Fatal.
    #[error("undefined escape sequence in header")]
    InvalidEscape,
    /// The `content-length` header is not a decimal number of octets. Fatal.
    #[error("invalid content-length header")]
    InvalidContentLength,
    /// The body announced by `content-length` is not followed by a NUL
    /// octet. Fatal.
    #[error("frame body is not terminated by a NUL octet")]
    MissingNul,
    /// Encoding only: a header name or value contains an octet that the
    /// target protocol version cannot represent (a line break in STOMP 1.0
    /// or in a `CONNECT`/`CONNECTED` frame, `\r` in STOMP 1.1, `:` in a
    /// header name where escapes are not allowed). Nothing was written.
    #[error("header cannot be represented in this protocol version")]
    Unencodable,
    /// Encoding only: the frame carries a `content-length` header that does
    /// not match its body. Nothing was written.
    #[error("content-length header does not match the body length")]
    ContentLengthMismatch,
}

/// The error type of the [`StompCodec`](crate::StompCodec)'s `Decoder` and
/// `Encoder` implementations: a protocol [`Error`] or an I/O error from the
/// transport underneath (`tokio_util::codec::Framed` reports those through
/// the codec's error type).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The peer broke the STOMP protocol or a limit.
    #[error(transparent)]
    Protocol(#[from] Error),
    /// Reading from or writing to the transport failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl CodecError {
    /// The protocol error, if this is one.
    #[must_use]
    pub fn protocol(&self) -> Option<Error> {
        match self {
            Self::Protocol(e) => Some(*e),
            Self::Io(_) => None,
        }
    }
}

/// `Result` with the codec's protocol [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
