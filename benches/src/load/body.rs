//! The stamp at the front of every message body the load generator sends.
//!
//! Sixteen octets, little-endian: the publisher's number (`u32`), its
//! sequence number (`u32`, from 0 with no gaps) and the send time (`u64`,
//! nanoseconds on the shared [`Clock`](super::Clock)). The rest of the
//! body, up to the requested size, is padding.

use bytes::{BufMut, Bytes, BytesMut};

/// Octets of the stamp, and so the smallest body.
pub(crate) const STAMP_LEN: usize = 16;

/// What a body says about its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// The publisher's number.
    pub(crate) publisher: u32,
    /// The publisher's sequence number.
    pub(crate) seq: u32,
    /// When it was sent, in nanoseconds on the shared clock.
    pub(crate) sent_ns: u64,
}

impl Stamp {
    /// A body of `len` octets (at least [`STAMP_LEN`]) carrying this stamp.
    pub(crate) fn body(&self, len: usize, scratch: &mut BytesMut) -> Bytes {
        let len = len.max(STAMP_LEN);
        scratch.reserve(len);
        scratch.put_u32_le(self.publisher);
        scratch.put_u32_le(self.seq);
        scratch.put_u64_le(self.sent_ns);
        scratch.put_bytes(b'.', len - STAMP_LEN);
        scratch.split().freeze()
    }

    /// Reads the stamp at the front of `body`; `None` when it is too short.
    pub(crate) fn read(body: &[u8]) -> Option<Self> {
        let stamp: &[u8; STAMP_LEN] = body.get(..STAMP_LEN)?.try_into().ok()?;
        let (publisher, rest) = stamp.split_at(4);
        let (seq, sent) = rest.split_at(4);
        Some(Self {
            publisher: u32::from_le_bytes(publisher.try_into().ok()?),
            seq: u32::from_le_bytes(seq.try_into().ok()?),
            sent_ns: u64::from_le_bytes(sent.try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_and_pads() {
        let stamp = Stamp { publisher: 7, seq: 123_456, sent_ns: 9_876_543_210 };
        let mut scratch = BytesMut::new();
        let body = stamp.body(100, &mut scratch);
        assert_eq!(body.len(), 100);
        assert_eq!(Stamp::read(&body), Some(stamp));
        assert_eq!(stamp.body(3, &mut scratch).len(), STAMP_LEN);
        assert_eq!(Stamp::read(&body[..15]), None);
    }
}
