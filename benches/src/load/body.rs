//! The stamp at the front of every message body the load generator sends.
//!
//! Twenty-four octets, little-endian: the publisher's number (`u32`), its
//! sequence number (`u32`, from 0 with no gaps), the time the message was
//! due (`u64`) and the time it was written (`u64`), both in nanoseconds on
//! the shared [`Clock`](super::Clock). The rest of the body, up to the
//! requested size, is padding.
//!
//! Both times are carried because they answer different questions. At a
//! fixed rate, a message is due at its place in the schedule whether or
//! not the publisher managed to send it then: latency counted from that
//! time includes a late timer, a write held up by back-pressure and the
//! burst that catches up afterwards (no coordinated omission). Latency from
//! the write shows the broker's part alone. Without a schedule (as fast as
//! the bounds allow) the two are the same.

use bytes::{BufMut, Bytes, BytesMut};

/// Octets of the stamp, and so the smallest body.
pub(crate) const STAMP_LEN: usize = 24;

/// What a body says about its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// The publisher's number.
    pub(crate) publisher: u32,
    /// The publisher's sequence number.
    pub(crate) seq: u32,
    /// When it was due, in nanoseconds on the shared clock.
    pub(crate) due_ns: u64,
    /// When it was written, in nanoseconds on the shared clock.
    pub(crate) sent_ns: u64,
}

impl Stamp {
    /// A stamp for a message written when it was due (no schedule).
    pub(crate) fn now(publisher: u32, seq: u32, now_ns: u64) -> Self {
        Self { publisher, seq, due_ns: now_ns, sent_ns: now_ns }
    }

    /// A body of `len` octets (at least [`STAMP_LEN`]) carrying this stamp.
    pub(crate) fn body(&self, len: usize, scratch: &mut BytesMut) -> Bytes {
        let len = len.max(STAMP_LEN);
        scratch.reserve(len);
        scratch.put_u32_le(self.publisher);
        scratch.put_u32_le(self.seq);
        scratch.put_u64_le(self.due_ns);
        scratch.put_u64_le(self.sent_ns);
        scratch.put_bytes(b'.', len - STAMP_LEN);
        scratch.split().freeze()
    }

    /// Reads the stamp at the front of `body`; `None` when it is too short.
    pub(crate) fn read(body: &[u8]) -> Option<Self> {
        let stamp: &[u8; STAMP_LEN] = body.get(..STAMP_LEN)?.try_into().ok()?;
        let (publisher, rest) = stamp.split_at(4);
        let (seq, rest) = rest.split_at(4);
        let (due, sent) = rest.split_at(8);
        Some(Self {
            publisher: u32::from_le_bytes(publisher.try_into().ok()?),
            seq: u32::from_le_bytes(seq.try_into().ok()?),
            due_ns: u64::from_le_bytes(due.try_into().ok()?),
            sent_ns: u64::from_le_bytes(sent.try_into().ok()?),
        })
    }

    /// Nanoseconds from when the message was due until `now`.
    pub(crate) fn since_due(&self, now: u64) -> u64 {
        now.saturating_sub(self.due_ns)
    }

    /// Nanoseconds from when the message was written until `now`.
    pub(crate) fn since_sent(&self, now: u64) -> u64 {
        now.saturating_sub(self.sent_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_and_pads() {
        let stamp =
            Stamp { publisher: 7, seq: 123_456, due_ns: 9_876_543_210, sent_ns: 9_900_000_000 };
        let mut scratch = BytesMut::new();
        let body = stamp.body(100, &mut scratch);
        assert_eq!(body.len(), 100);
        assert_eq!(Stamp::read(&body), Some(stamp));
        assert_eq!(stamp.body(3, &mut scratch).len(), STAMP_LEN);
        assert_eq!(Stamp::read(&body[..STAMP_LEN - 1]), None);
        assert_eq!(stamp.since_due(10_000_000_000), 123_456_790);
        assert_eq!(stamp.since_sent(10_000_000_000), 100_000_000);
        assert_eq!(stamp.since_sent(0), 0, "a clock read before the stamp is not negative");
    }
}
