//! Messages as the broker routes them: a `MESSAGE` frame prepared once.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use stomp_codec::{Command, Frame, Headers, PreparedFrame};

/// Bodies up to this size are copied out of the read buffer when a message
/// is made, so that a small message never keeps a large read buffer alive
/// while it waits in a queue or an outbox. Larger bodies were read into a
/// buffer reserved for their frame, and are shared as they are.
const COPY_BODY_BELOW: usize = 16 * 1024;

/// Headers of a `SEND` frame that do not travel on to the `MESSAGE`.
const SEND_ONLY: [&[u8]; 4] = [b"destination", b"transaction", b"receipt", b"content-length"];

/// A message on its way to subscribers.
///
/// Its `MESSAGE` frame (command, `destination`, `message-id`, the sender's
/// headers, the body) is encoded once, whatever the number of subscribers;
/// each delivery adds only `subscription` and `ack`.
#[derive(Debug)]
pub struct Message {
    frame: PreparedFrame,
    /// Octets it is counted as in outbound queues.
    size: usize,
    /// When this node routed it, in [`now_micros`] (for the delivery
    /// latency): 8 bytes, and a plain number that a connection can take
    /// the minimum of per write batch.
    routed: u64,
}

/// Microseconds since the first call in this process: a monotonic clock
/// in one `u64`, for message timestamps and their ages.
pub(crate) fn now_micros() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let elapsed = EPOCH.get_or_init(Instant::now).elapsed();
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

impl Message {
    /// A message for `destination` (as subscribers see it) with the headers
    /// and body of a `SEND` frame, or of the embedding application.
    pub(crate) fn new(
        destination: &str,
        message_id: u64,
        headers: &Headers,
        body: &Bytes,
    ) -> Result<Arc<Self>, stomp_codec::Error> {
        let mut out = Headers::with_capacity(headers.len() + 2);
        out.push(
            Bytes::from_static(b"destination"),
            Bytes::copy_from_slice(destination.as_bytes()),
        );
        out.push(Bytes::from_static(b"message-id"), message_id.to_string());
        for (name, value) in headers.iter().filter(|(n, _)| !SEND_ONLY.contains(n)) {
            out.push(Bytes::copy_from_slice(name), Bytes::copy_from_slice(value));
        }
        let body =
            if body.len() < COPY_BODY_BELOW { Bytes::copy_from_slice(body) } else { body.clone() };
        let header_octets: usize = out.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
        let size = header_octets + body.len() + 64;
        let frame = PreparedFrame::new(Frame::from_parts(Command::Message, out, body))?;
        Ok(Arc::new(Self { frame, size, routed: now_micros() }))
    }

    /// The prepared `MESSAGE` frame.
    pub(crate) fn prepared(&self) -> &PreparedFrame {
        &self.frame
    }

    /// Octets it is counted as in outbound queues.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// When this node routed it (published here, or arrived from another
    /// node), in [`now_micros`].
    pub(crate) fn routed(&self) -> u64 {
        self.routed
    }

    /// The destination, as subscribers see it.
    #[must_use]
    pub fn destination(&self) -> &str {
        self.header_str("destination").unwrap_or_default()
    }

    /// The `message-id`.
    #[must_use]
    pub fn message_id(&self) -> &str {
        self.header_str("message-id").unwrap_or_default()
    }

    /// The first header called `name`.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.frame.headers().get(name)
    }

    /// The first header called `name`, if it is UTF-8.
    #[must_use]
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.frame.headers().get_str(name)
    }

    /// Every header, in order (`destination`, `message-id`, the sender's,
    /// `content-length`).
    #[must_use]
    pub fn headers(&self) -> &Headers {
        self.frame.headers()
    }

    /// The body.
    #[must_use]
    pub fn body(&self) -> &Bytes {
        self.frame.body()
    }
}
