//! A zero-copy, incremental STOMP 1.0, 1.1 and 1.2 frame codec.
//!
//! [`StompCodec`] implements tokio-util's `Decoder` and `Encoder`. It
//! knows bytes and frames only: no runtime, no sockets.
//!
//! - **Zero copy.** A decoded [`Frame`]'s headers and body are slices of
//!   the read buffer ([`bytes::Bytes`]); only header fields with escape
//!   sequences are decoded into buffers of their own. Call
//!   [`Frame::detached`] before keeping a frame for long.
//! - **Incremental.** Decoding resumes where it stopped: a frame arriving
//!   one byte at a time costs linear time. `content-length` is honoured
//!   (bodies may contain NUL), LF and CR LF line endings are accepted, and
//!   EOLs between frames come out as [`Item::Heartbeat`].
//! - **Version-aware.** Header escapes follow the negotiated [`Version`]:
//!   none in 1.0; `\n`, `\c`, `\\` in 1.1; and `\r` too in 1.2; never in
//!   `CONNECT`, `STOMP` and `CONNECTED` frames. An undefined escape is an
//!   error.
//! - **Bounded.** [`Limits`] on frame size, body size, header count and
//!   header line length are checked before anything is buffered past them.
//!   Every decoding [`Error`] is terminal for the stream.
//! - **Fan-out.** [`PreparedFrame`] encodes a message's shared part once;
//!   each recipient adds only its own headers.
//!
//! # Layout
//! - `command`: [`Command`].
//! - `version`: [`Version`], its negotiation, and [`Escaping`].
//! - `headers`, `frame`: [`Headers`], [`Frame`], [`Item`].
//! - `grammar`: the nom parsers of command and header lines.
//! - `decoder`: the resumable state machine behind [`StompCodec`]'s decoder.
//! - `encoder`: [`encode_frame`]; `prepared`: [`PreparedFrame`].
//! - `codec`: [`StompCodec`], tying them to tokio-util.
//! - `limits`, `error`: [`Limits`]; [`Error`] and [`CodecError`].
//!
//! # Example
//! ```
//! use bytes::BytesMut;
//! use stomp_codec::{Command, Frame, Item, StompCodec, Version};
//! use tokio_util::codec::{Decoder, Encoder};
//!
//! let mut codec = StompCodec::new();
//! codec.set_version(Version::V1_2);
//!
//! let mut wire = BytesMut::new();
//! let frame = Frame::new(Command::Send)
//!     .with_header("destination", "/topic/rooms.1")
//!     .with_body(&b"{\"text\":\"hi\"}"[..]);
//! codec.encode(&frame, &mut wire).unwrap();
//!
//! let Some(Item::Frame(decoded)) = codec.decode(&mut wire).unwrap() else { unreachable!() };
//! assert_eq!(decoded.header_str("destination"), Some("/topic/rooms.1"));
//! assert_eq!(decoded.body(), frame.body());
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod codec;
mod command;
mod decoder;
mod encoder;
mod error;
mod escape;
mod frame;
mod grammar;
mod headers;
mod limits;
mod prepared;
mod version;

pub use codec::StompCodec;
pub use command::Command;
pub use encoder::encode_frame;
pub use error::{CodecError, Error, Result};
pub use frame::{Frame, Item};
pub use headers::Headers;
pub use limits::Limits;
pub use prepared::{EncodedFrame, PreparedFrame};
pub use version::{Escaping, Version};
