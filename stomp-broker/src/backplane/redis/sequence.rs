//! Sequence numbers: the sender numbers its messages per destination, the
//! receiver counts the gaps. Both maps are bounded.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;

/// Entries a map of sequence numbers holds at most; past that it starts
/// over (empty). Starting over costs a few uncounted losses: for the
/// sender, its numbers go back to 1, which receivers take as a restart;
/// for the receiver, the next message of each sender is a first one.
pub(super) const MAX_ENTRIES: usize = 100_000;

/// The sender's side: the last number given per destination, with the
/// destination's channel name (so that it is built once).
#[derive(Debug)]
pub(super) struct Sequences {
    map: DashMap<Box<str>, Slot>,
    /// Entries, counted here: `DashMap::len` locks every shard.
    len: AtomicUsize,
    max: usize,
}

#[derive(Debug)]
struct Slot {
    channel: Arc<str>,
    seq: u64,
}

impl Default for Sequences {
    fn default() -> Self {
        Self::with_max(MAX_ENTRIES)
    }
}

impl Sequences {
    pub(super) fn with_max(max: usize) -> Self {
        Self { map: DashMap::new(), len: AtomicUsize::new(0), max }
    }

    /// Takes the next number for `destination` (from 1) and calls `then`
    /// with the channel and the number while the destination's entry is
    /// still held: what `then` does happens in the order of the numbers.
    pub(super) fn next<R>(
        &self,
        destination: &str,
        prefix: &str,
        then: impl FnOnce(&Arc<str>, u64) -> R,
    ) -> R {
        if let Some(mut slot) = self.map.get_mut(destination) {
            slot.seq += 1;
            return then(&slot.channel, slot.seq);
        }
        if self.len.load(Ordering::Relaxed) >= self.max {
            self.map.clear();
            self.len.store(0, Ordering::Relaxed);
        }
        let mut slot = self.map.entry(destination.into()).or_insert_with(|| {
            self.len.fetch_add(1, Ordering::Relaxed);
            Slot { channel: format!("{prefix}{destination}").into(), seq: 0 }
        });
        slot.seq += 1;
        then(&slot.channel, slot.seq)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

/// The receiver's side: the last number seen per destination and sender.
#[derive(Debug)]
pub(super) struct Gaps {
    by_destination: HashMap<Box<str>, HashMap<u64, u64>>,
    /// Entries over all destinations.
    entries: usize,
    max: usize,
}

impl Default for Gaps {
    fn default() -> Self {
        Self::with_max(MAX_ENTRIES)
    }
}

impl Gaps {
    pub(super) fn with_max(max: usize) -> Self {
        Self { by_destination: HashMap::new(), entries: 0, max }
    }

    /// Notes message `seq` of `node` for `destination`; returns how many
    /// of that sender's messages for it were missed just before this one.
    pub(super) fn observe(&mut self, node: u64, destination: &str, seq: u64) -> u64 {
        if let Some(last) =
            self.by_destination.get_mut(destination).and_then(|senders| senders.get_mut(&node))
        {
            let lost = missed(*last, seq);
            *last = seq;
            return lost;
        }
        if self.entries >= self.max {
            self.by_destination.clear();
            self.entries = 0;
        }
        // The first message seen from a sender: what came before it was
        // sent before this node listened.
        self.by_destination.entry(destination.into()).or_default().insert(node, seq);
        self.entries += 1;
        0
    }

    /// Forgets `destination` (no longer subscribed: what is missed from
    /// now on is not lost).
    pub(super) fn forget(&mut self, destination: &str) {
        if let Some(senders) = self.by_destination.remove(destination) {
            self.entries -= senders.len();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
    }
}

/// Messages missed between `last` and `seq`: none when `seq` follows,
/// none when it goes back (the sender restarted or started over).
fn missed(last: u64, seq: u64) -> u64 {
    seq.saturating_sub(last).saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_count_what_was_skipped_and_accept_restarts() {
        let mut gaps = Gaps::default();
        assert_eq!(gaps.observe(1, "/topic/a", 5), 0, "first one seen: nothing known before");
        assert_eq!(gaps.observe(1, "/topic/a", 6), 0);
        assert_eq!(gaps.observe(1, "/topic/a", 9), 2);
        assert_eq!(gaps.observe(1, "/topic/a", 9), 0, "a repeat is a restart, not a loss");
        assert_eq!(gaps.observe(1, "/topic/a", 1), 0, "sender restarted");
        assert_eq!(gaps.observe(1, "/topic/a", 2), 0);
        // Senders and destinations are counted apart.
        assert_eq!(gaps.observe(2, "/topic/a", 10), 0);
        assert_eq!(gaps.observe(1, "/topic/b", 10), 0);
        assert_eq!(gaps.observe(2, "/topic/a", 12), 1);
        assert_eq!(gaps.observe(1, "/topic/a", 4), 1);
        assert_eq!(gaps.len(), 3);
    }

    #[test]
    fn forgetting_a_destination_drops_its_senders() {
        let mut gaps = Gaps::default();
        gaps.observe(1, "/topic/a", 1);
        gaps.observe(2, "/topic/a", 1);
        gaps.observe(1, "/topic/b", 1);
        gaps.forget("/topic/a");
        gaps.forget("/topic/unknown");
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps.observe(1, "/topic/a", 50), 0, "subscribed again: starts afresh");
    }

    #[test]
    fn gap_map_is_bounded() {
        let mut gaps = Gaps::with_max(100);
        for i in 0..1_000u64 {
            gaps.observe(i, &format!("/topic/{}", i % 7), 1);
            assert!(gaps.len() <= 100);
        }
        // An entry that survived still counts gaps.
        gaps.observe(999, "/topic/5", 1);
        assert_eq!(gaps.observe(999, "/topic/5", 3), 1);
    }

    #[test]
    fn sequences_number_each_destination_from_one() {
        let seqs = Sequences::default();
        let take = |d| seqs.next(d, "p:", |channel, seq| (channel.to_string(), seq));
        assert_eq!(take("/topic/a"), ("p:/topic/a".to_owned(), 1));
        assert_eq!(take("/topic/a"), ("p:/topic/a".to_owned(), 2));
        assert_eq!(take("/topic/b"), ("p:/topic/b".to_owned(), 1));
        assert_eq!(take("/topic/a").1, 3);
    }

    #[test]
    fn sequence_map_is_bounded_and_starts_over() {
        let seqs = Sequences::with_max(10);
        let take = |d: &str| seqs.next(d, "", |_, seq| seq);
        take("/topic/kept");
        assert_eq!(take("/topic/kept"), 2);
        for i in 0..100 {
            take(&format!("/topic/{i}"));
            assert!(seqs.len() <= 10);
        }
        // Cleared along the way: numbering started over, which receivers
        // accept as a restart.
        assert_eq!(take("/topic/kept"), 1);
    }
}
