//! The binary envelope a message crosses nodes in.
//!
//! ```text
//! u8  format (1)
//! u64 node        the sending node's id (a node skips its own messages)
//! u64 seq         the sender's sequence number for this destination
//! u16 n, n bytes  destination (routed form)
//! u16 headers     count, then per header:
//!     u16 n, n bytes  name
//!     u32 n, n bytes  value
//! ... body        the rest
//! ```
//!
//! Integers are big-endian. Decoding slices the payload (no copies) and
//! checks every length against what is there.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use stomp_codec::Headers;

const FORMAT: u8 = 1;

/// Headers of a `SEND` that do not travel (each node makes its own
/// `MESSAGE` frame).
const NOT_CARRIED: [&[u8]; 5] =
    [b"destination", b"transaction", b"receipt", b"content-length", b"message-id"];

/// A message between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The sending node.
    pub node: u64,
    /// The sender's sequence number for this destination, from 1; a gap
    /// tells the receiver that messages were lost.
    pub seq: u64,
    /// The destination, in its routed form.
    pub destination: String,
    /// The message's headers (without the ones each node sets itself).
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
}

/// Why a payload is not an [`Envelope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// It ends before its lengths say it should.
    #[error("truncated envelope")]
    Truncated,
    /// An unknown format byte (a newer or foreign sender).
    #[error("unknown envelope format {0}")]
    Format(u8),
    /// The destination is not UTF-8.
    #[error("destination is not UTF-8")]
    Destination,
    /// A field is too long for its length prefix.
    #[error("{0} too long for the envelope")]
    TooLong(&'static str),
}

impl Envelope {
    /// Encodes a message given as a destination, headers and body.
    ///
    /// # Errors
    /// [`EnvelopeError::TooLong`] for a destination over 65,535 bytes,
    /// more than 65,535 headers, a header name over 65,535 bytes.
    pub fn encode(
        node: u64,
        seq: u64,
        destination: &str,
        headers: &Headers,
        body: &[u8],
    ) -> Result<Bytes, EnvelopeError> {
        let carried = || headers.iter().filter(|(name, _)| !NOT_CARRIED.contains(name));
        let header_bytes: usize = carried().map(|(n, v)| 6 + n.len() + v.len()).sum();
        let mut out = BytesMut::with_capacity(21 + destination.len() + header_bytes + body.len());
        out.put_u8(FORMAT);
        out.put_u64(node);
        out.put_u64(seq);
        out.put_u16(len16(destination.len(), "destination")?);
        out.put_slice(destination.as_bytes());
        out.put_u16(len16(carried().count(), "header list")?);
        for (name, value) in carried() {
            out.put_u16(len16(name.len(), "header name")?);
            out.put_slice(name);
            out.put_u32(u32::try_from(value.len()).map_err(|_| EnvelopeError::TooLong("value"))?);
            out.put_slice(value);
        }
        out.put_slice(body);
        Ok(out.freeze())
    }

    /// Decodes a payload; the headers and body are slices of it.
    ///
    /// # Errors
    /// [`EnvelopeError`] for anything malformed.
    pub fn decode(payload: Bytes) -> Result<Self, EnvelopeError> {
        let mut cursor = payload;
        let format = take_u8(&mut cursor)?;
        if format != FORMAT {
            return Err(EnvelopeError::Format(format));
        }
        let node = take_u64(&mut cursor)?;
        let seq = take_u64(&mut cursor)?;
        let n = usize::from(take_u16(&mut cursor)?);
        let destination = take(&mut cursor, n)?;
        let destination =
            String::from_utf8(destination.to_vec()).map_err(|_| EnvelopeError::Destination)?;
        let count = take_u16(&mut cursor)?;
        let mut headers = Headers::with_capacity(usize::from(count));
        for _ in 0..count {
            let n = usize::from(take_u16(&mut cursor)?);
            let name = take(&mut cursor, n)?;
            let n =
                usize::try_from(take_u32(&mut cursor)?).map_err(|_| EnvelopeError::Truncated)?;
            let value = take(&mut cursor, n)?;
            headers.push(name, value);
        }
        Ok(Self { node, seq, destination, headers, body: cursor })
    }
}

fn len16(n: usize, what: &'static str) -> Result<u16, EnvelopeError> {
    u16::try_from(n).map_err(|_| EnvelopeError::TooLong(what))
}

fn take(cursor: &mut Bytes, n: usize) -> Result<Bytes, EnvelopeError> {
    if cursor.len() < n {
        return Err(EnvelopeError::Truncated);
    }
    Ok(cursor.split_to(n))
}

fn take_u8(cursor: &mut Bytes) -> Result<u8, EnvelopeError> {
    if cursor.remaining() < 1 {
        return Err(EnvelopeError::Truncated);
    }
    Ok(cursor.get_u8())
}

fn take_u16(cursor: &mut Bytes) -> Result<u16, EnvelopeError> {
    if cursor.remaining() < 2 {
        return Err(EnvelopeError::Truncated);
    }
    Ok(cursor.get_u16())
}

fn take_u32(cursor: &mut Bytes) -> Result<u32, EnvelopeError> {
    if cursor.remaining() < 4 {
        return Err(EnvelopeError::Truncated);
    }
    Ok(cursor.get_u32())
}

fn take_u64(cursor: &mut Bytes) -> Result<u64, EnvelopeError> {
    if cursor.remaining() < 8 {
        return Err(EnvelopeError::Truncated);
    }
    Ok(cursor.get_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers() -> Headers {
        let mut h = Headers::new();
        h.push("destination", "/topic/a");
        h.push("content-type", "application/json");
        h.push("x-ünïcode", "값:\nvalue");
        h.push("receipt", "r1");
        h.push("empty", "");
        h
    }

    #[test]
    fn round_trip_drops_what_each_node_sets() {
        let body = b"{\"text\":\"\xed\x95\x9c\"}\0binary";
        let bytes = Envelope::encode(7, 42, "/user/bob/queue/x", &headers(), body).unwrap();
        let env = Envelope::decode(bytes).unwrap();
        assert_eq!((env.node, env.seq), (7, 42));
        assert_eq!(env.destination, "/user/bob/queue/x");
        let names: Vec<&[u8]> = env.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(names, [&b"content-type"[..], "x-ünïcode".as_bytes(), b"empty"]);
        assert_eq!(env.headers.get("x-ünïcode"), Some("값:\nvalue".as_bytes()));
        assert_eq!(&env.body[..], &body[..]);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = Envelope::encode(1, 2, "/topic/a", &headers(), b"").unwrap();
        // Without a body, every strict prefix is missing something.
        for n in 0..bytes.len() {
            assert_eq!(Envelope::decode(bytes.slice(..n)), Err(EnvelopeError::Truncated), "{n}");
        }
        let mut foreign = bytes.to_vec();
        foreign[0] = 9;
        assert_eq!(Envelope::decode(foreign.into()), Err(EnvelopeError::Format(9)));
    }

    #[test]
    fn too_long_fields_are_refused() {
        let long = "x".repeat(70_000);
        assert_eq!(
            Envelope::encode(1, 1, &long, &Headers::new(), b""),
            Err(EnvelopeError::TooLong("destination"))
        );
    }
}
