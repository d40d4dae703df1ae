//! The sequence numbers seen of one publisher ([`SeqSet`]), in any order:
//! what `fanout`, `rooms` and `queue` count losses and duplicates with.
//! A message that arrives late fills its gap; it is neither lost nor a
//! duplicate.

use std::collections::VecDeque;

/// What [`SeqSet::insert`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// Not seen before.
    New,
    /// Seen before: a duplicate.
    Again,
    /// More than [`SeqSet::MAX_SPAN`] past the first number not seen:
    /// not recorded (a corrupt stamp, or a loss that early).
    TooFar,
}

/// The sequence numbers seen of one publisher, in any order: every number
/// below `base`, and those above it as bits (bit `i` of word `w` is
/// `base + 64 w + i`). Full words at the front are dropped as `base`
/// moves on, so numbers received in order, or nearly, take a word or two;
/// a number never received keeps the words after it (one bit each).
#[derive(Debug, Clone, Default)]
pub(crate) struct SeqSet {
    base: u64,
    bits: VecDeque<u64>,
    /// Bits set in `bits`.
    above: u64,
}

impl SeqSet {
    /// How far past the first missing number a number may be (8 MiB of
    /// bits at most).
    pub(crate) const MAX_SPAN: u64 = 1 << 26;

    /// Records `seq`.
    pub(crate) fn insert(&mut self, seq: u32) -> Mark {
        let seq = u64::from(seq);
        let Some(offset) = seq.checked_sub(self.base) else { return Mark::Again };
        if offset >= Self::MAX_SPAN {
            return Mark::TooFar;
        }
        // Below MAX_SPAN / 64, so it fits.
        let word = usize::try_from(offset / 64).unwrap_or(usize::MAX);
        let bit = 1u64 << (offset % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        if self.bits[word] & bit != 0 {
            return Mark::Again;
        }
        self.bits[word] |= bit;
        self.above += 1;
        while self.bits.front() == Some(&u64::MAX) {
            self.bits.pop_front();
            self.base += 64;
            self.above -= 64;
        }
        Mark::New
    }

    /// How many distinct numbers were seen.
    pub(crate) fn len(&self) -> u64 {
        self.base + self.above
    }

    /// How many of `0..total` were never seen. Numbers at or above `total`
    /// do not count: a number the publisher never reported as sent must
    /// not cancel a real gap.
    pub(crate) fn missing(&self, total: u64) -> u64 {
        let Some(span) = total.checked_sub(self.base) else { return 0 };
        let seen: u64 = self
            .bits
            .iter()
            .enumerate()
            .map(|(w, &word)| u64::from((word & below(span, w)).count_ones()))
            .sum();
        span - seen
    }

    /// Calls `f` with every number of `0..total` never seen, in order.
    pub(crate) fn for_each_missing(&self, total: u64, mut f: impl FnMut(u64)) {
        let Some(span) = total.checked_sub(self.base) else { return };
        let mut offset = 0;
        for &word in &self.bits {
            if offset >= span {
                return;
            }
            for bit in 0..64.min(span - offset) {
                if word & (1u64 << bit) == 0 {
                    f(self.base + offset + bit);
                }
            }
            offset += 64;
        }
        (self.base + offset..total).for_each(f);
    }
}

/// The mask of the bits of word `w` that stand for offsets below `span`.
fn below(span: u64, w: usize) -> u64 {
    let first = w as u64 * 64;
    match span.saturating_sub(first) {
        0 => 0,
        n if n >= 64 => u64::MAX,
        n => (1 << n) - 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing_list(seen: &SeqSet, total: u64) -> Vec<u64> {
        let mut out = Vec::new();
        seen.for_each_missing(total, |n| out.push(n));
        out
    }

    #[test]
    fn seq_set_counts_losses_and_duplicates_in_any_order() {
        let mut seen = SeqSet::default();
        for seq in 0..1000 {
            assert_eq!(seen.insert(seq), Mark::New);
        }
        assert_eq!(seen.bits.len(), 1, "in order: the full words are dropped");
        assert_eq!(seen.insert(999), Mark::Again);
        assert_eq!(seen.insert(3), Mark::Again);
        // 1000 is lost; the rest arrive backwards.
        for seq in (1001..1200).rev() {
            assert_eq!(seen.insert(seq), Mark::New);
        }
        assert_eq!(seen.insert(1100), Mark::Again);
        assert_eq!(seen.len(), 1199);
        assert_eq!(seen.missing(1200), 1);
        assert_eq!(missing_list(&seen, 1200), [1000]);
        assert_eq!(seen.missing(1300), 101);
        assert_eq!(missing_list(&seen, 1300).len(), 101);
        // The late one fills the gap, and the words go.
        assert_eq!(seen.insert(1000), Mark::New);
        assert_eq!(seen.missing(1200), 0);
        assert!(missing_list(&seen, 1200).is_empty());
        assert!(seen.bits.len() <= 1);
    }

    #[test]
    fn numbers_at_or_above_the_total_do_not_cancel_gaps() {
        let mut seen = SeqSet::default();
        // 0..10 sent, 3 and 7 lost; 10..15 seen although the publisher
        // reported 10 sent (its count was behind, or a stamp is corrupt).
        for seq in (0..15).filter(|&s| s != 3 && s != 7) {
            assert_eq!(seen.insert(seq), Mark::New);
        }
        assert_eq!(seen.len(), 13);
        assert_eq!(seen.missing(10), 2, "len() - total would say 0");
        assert_eq!(missing_list(&seen, 10), [3, 7]);
        assert_eq!(seen.missing(0), 0);
        assert_eq!(seen.missing(3), 0);
        assert_eq!(seen.missing(4), 1);
        assert_eq!(missing_list(&seen, 20), [3, 7, 15, 16, 17, 18, 19]);
        // Past 64 numbers: the mask spans several words.
        let mut seen = SeqSet::default();
        for seq in (1..200).rev() {
            let _ = seen.insert(seq);
        }
        assert_eq!(seen.missing(130), 1);
        assert_eq!(seen.missing(64), 1);
        assert_eq!(seen.missing(300), 101);
        assert_eq!(missing_list(&seen, 202), [0, 200, 201]);
    }

    #[test]
    fn seq_set_refuses_numbers_too_far_ahead() {
        let mut seen = SeqSet::default();
        assert_eq!(seen.insert(u32::MAX), Mark::TooFar);
        let last = u32::try_from(SeqSet::MAX_SPAN - 1).unwrap();
        assert_eq!(seen.insert(last), Mark::New);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen.missing(u64::from(last) + 1), u64::from(last));
    }
}
