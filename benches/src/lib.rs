//! Inputs shared by the benchmarks in `benches/`.
//!
//! Every input is a single STOMP frame, written out here by hand (not by
//! `stomp-codec`'s encoder) so that the bytes every parser sees are fixed
//! and independent of the code under test:
//!
//! - `send_100`: a `SEND` frame as a client sends it (`destination`,
//!   `content-type`, `content-length`, `receipt`) with a 100-octet JSON body;
//! - `message_300`: a `MESSAGE` frame as a broker sends it (`message-id`,
//!   `destination`, `subscription`, `content-type: application/json`,
//!   `content-length`) with a 300-octet JSON chat message;
//! - `message_64k` and `send_64k`: the same with a 64 KiB body;
//! - `message_64k_nolen`: `message_64k` without `content-length`, so that
//!   every parser has to search the body for the NUL that ends it (decoding
//!   only: encoders add the header).
//!
//! The header order is the one `stomp-parser`'s builders write, so that
//! every encoder in `benches/encode.rs` can be checked to produce exactly
//! these octets. No header needs escaping and no value contains a raw `:`,
//! which `stomp-parser` refuses. Frames end at their NUL, with no EOL after
//! it: `stomp-parser` takes exactly one frame per buffer.

use bytes::Bytes;
use stomp_codec::{Command, Frame};

/// The destination of every input.
pub const DESTINATION: &str = "/topic/chat.room-42";
/// The `content-type` of every input.
pub const CONTENT_TYPE: &str = "application/json";
/// The `receipt` of the `SEND` inputs.
pub const RECEIPT: &str = "rcpt-1017";
/// The `message-id` of the `MESSAGE` inputs (RabbitMQ style, no `:`).
pub const MESSAGE_ID: &str = "T_sub-0@@session-KmT3xQpZ8vYc@@1017";
/// The `subscription` of the `MESSAGE` inputs.
pub const SUBSCRIPTION: &str = "sub-0";

/// Which side of a connection sends the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `SEND`, a client frame.
    Send,
    /// `MESSAGE`, a server frame.
    Message,
}

/// One benchmark input: a frame's parts and its exact wire form.
#[derive(Debug, Clone)]
pub struct Input {
    /// The name used in benchmark ids.
    pub name: &'static str,
    /// The command.
    pub kind: Kind,
    /// The headers, in wire order (`content-length` included).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The whole frame as it appears on the wire, ending with its NUL.
    pub wire: Vec<u8>,
}

impl Input {
    fn new(name: &'static str, kind: Kind, body_len: usize, content_length: bool) -> Self {
        let body = json_body(body_len);
        let mut headers = match kind {
            Kind::Send => vec![
                ("destination", DESTINATION.to_owned()),
                ("content-type", CONTENT_TYPE.to_owned()),
                ("content-length", body.len().to_string()),
                ("receipt", RECEIPT.to_owned()),
            ],
            Kind::Message => vec![
                ("message-id", MESSAGE_ID.to_owned()),
                ("destination", DESTINATION.to_owned()),
                ("subscription", SUBSCRIPTION.to_owned()),
                ("content-type", CONTENT_TYPE.to_owned()),
                ("content-length", body.len().to_string()),
            ],
        };
        if !content_length {
            headers.retain(|(name, _)| *name != "content-length");
        }
        let mut wire = Vec::with_capacity(body.len() + 256);
        wire.extend_from_slice(match kind {
            Kind::Send => b"SEND\n",
            Kind::Message => b"MESSAGE\n",
        });
        for (name, value) in &headers {
            wire.extend_from_slice(name.as_bytes());
            wire.push(b':');
            wire.extend_from_slice(value.as_bytes());
            wire.push(b'\n');
        }
        wire.push(b'\n');
        wire.extend_from_slice(&body);
        wire.push(0);
        Self { name, kind, headers, body, wire }
    }

    /// The value of header `name`.
    ///
    /// # Panics
    /// When the input has no such header.
    #[must_use]
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("input {} has no {name} header", self.name))
    }

    /// The length of the wire form in octets, for `Throughput::Bytes`.
    #[must_use]
    pub fn wire_len(&self) -> u64 {
        self.wire.len() as u64
    }

    /// The input as a `stomp-codec` frame, headers in wire order.
    #[must_use]
    pub fn frame(&self) -> Frame {
        let command = match self.kind {
            Kind::Send => Command::Send,
            Kind::Message => Command::Message,
        };
        let mut frame = Frame::new(command).with_body(Bytes::from(self.body.clone()));
        for (name, value) in &self.headers {
            frame.headers_mut().push(*name, value.clone());
        }
        frame
    }
}

/// A JSON chat message of exactly `len` octets (at least 80).
///
/// # Panics
/// When `len` is too small to hold the fixed part of the message.
#[must_use]
pub fn json_body(len: usize) -> Vec<u8> {
    const HEAD: &str = r#"{"type":"chat","room":"42","user":"alice","ts":1718000000000,"text":""#;
    const TAIL: &str = r#""}"#;
    const WORDS: &[u8] = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do \
        eiusmod tempor incididunt ut labore et dolore magna aliqua. ";
    assert!(len >= HEAD.len() + TAIL.len(), "body of {len} octets is too short");
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(HEAD.as_bytes());
    let text = len - HEAD.len() - TAIL.len();
    body.extend(WORDS.iter().copied().cycle().take(text));
    body.extend_from_slice(TAIL.as_bytes());
    debug_assert_eq!(body.len(), len);
    body
}

/// `send_100`: a client's `SEND` with a 100-octet body.
#[must_use]
pub fn send_100() -> Input {
    Input::new("send_100", Kind::Send, 100, true)
}

/// `message_300`: a broker's `MESSAGE` with a 300-octet body.
#[must_use]
pub fn message_300() -> Input {
    Input::new("message_300", Kind::Message, 300, true)
}

/// `message_64k`: a broker's `MESSAGE` with a 64 KiB body.
#[must_use]
pub fn message_64k() -> Input {
    Input::new("message_64k", Kind::Message, 64 * 1024, true)
}

/// `send_64k`: a client's `SEND` with a 64 KiB body.
#[must_use]
pub fn send_64k() -> Input {
    Input::new("send_64k", Kind::Send, 64 * 1024, true)
}

/// `message_64k_nolen`: `message_64k` without `content-length`.
#[must_use]
pub fn message_64k_nolen() -> Input {
    Input::new("message_64k_nolen", Kind::Message, 64 * 1024, false)
}

/// Every input with `content-length`, small ones first.
#[must_use]
pub fn inputs() -> Vec<Input> {
    vec![send_100(), message_300(), send_64k(), message_64k()]
}

/// The inputs for decoding: [`inputs`] and [`message_64k_nolen`].
#[must_use]
pub fn decode_inputs() -> Vec<Input> {
    let mut all = inputs();
    all.push(message_64k_nolen());
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_requested_length() {
        for len in [80, 100, 300, 65_536] {
            assert_eq!(json_body(len).len(), len);
        }
    }

    #[test]
    fn wire_ends_with_the_body_and_nul() {
        for input in inputs() {
            assert!(input.wire.ends_with(&[&input.body[..], b"\0"].concat()));
            assert_eq!(input.header("content-length"), input.body.len().to_string());
        }
    }
}
