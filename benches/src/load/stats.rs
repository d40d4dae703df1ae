//! Latency histograms (HdrHistogram, nanoseconds, 3 significant digits)
//! and their summary; the sequence numbers seen of a publisher
//! ([`SeqSet`]), for losses and duplicates.

use std::collections::VecDeque;
use std::sync::Mutex;

use hdrhistogram::Histogram;

use super::report::Report;

/// The largest latency recorded exactly: 60 s. Larger ones are clamped.
const MAX_NS: u64 = 60_000_000_000;

/// Latencies recorded by many tasks at once: a few histograms behind
/// their own locks, each task recording into one of them in batches (see
/// [`Batch`]), merged at the end.
#[derive(Debug)]
pub(crate) struct Latencies {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Latencies {
    /// Histograms for `shards` shards.
    pub(crate) fn new(shards: usize) -> Self {
        let shards = (0..shards.max(1)).map(|_| Mutex::new(new_histogram())).collect();
        Self { shards }
    }

    /// Records `values` (nanoseconds) into the shard chosen by `key`.
    pub(crate) fn record(&self, key: usize, values: &[u64]) {
        if values.is_empty() {
            return;
        }
        let shard = &self.shards[key % self.shards.len()];
        let mut histogram = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for &value in values {
            histogram.saturating_record(value.clamp(1, MAX_NS));
        }
    }

    /// All shards merged.
    pub(crate) fn merged(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Same bounds everywhere, so adding cannot fail.
            let _ = all.add(&*shard);
        }
        all
    }
}

fn new_histogram() -> Histogram<u64> {
    // Valid bounds: low 1, high ≥ 2 × low, 3 significant digits.
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds")
}

/// A task's latencies on their way to a shared [`Latencies`]: kept here
/// and recorded together, so the lock is taken once per batch.
#[derive(Debug)]
pub(crate) struct Batch {
    key: usize,
    values: Vec<u64>,
}

impl Batch {
    const SIZE: usize = 256;

    /// A batch for the shard chosen by `key`.
    pub(crate) fn new(key: usize) -> Self {
        Self { key, values: Vec::new() }
    }

    /// Adds a latency in nanoseconds; records the batch when full.
    pub(crate) fn push(&mut self, ns: u64, into: &Latencies) {
        if self.values.capacity() == 0 {
            self.values.reserve_exact(Self::SIZE);
        }
        self.values.push(ns);
        if self.values.len() == Self::SIZE {
            self.flush(into);
        }
    }

    /// Records what the batch holds.
    pub(crate) fn flush(&mut self, into: &Latencies) {
        into.record(self.key, &self.values);
        self.values.clear();
    }
}

/// The percentiles reported, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Summary {
    /// Latencies recorded.
    pub(crate) count: u64,
    /// Smallest.
    pub(crate) min_us: f64,
    /// Mean.
    pub(crate) mean_us: f64,
    /// Median.
    pub(crate) p50_us: f64,
    /// 90th percentile.
    pub(crate) p90_us: f64,
    /// 99th percentile.
    pub(crate) p99_us: f64,
    /// 99.9th percentile.
    pub(crate) p999_us: f64,
    /// Largest.
    pub(crate) max_us: f64,
}

impl Summary {
    /// The summary of a histogram of nanoseconds.
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        Self {
            count: histogram.len(),
            min_us: us(histogram.min()),
            mean_us: histogram.mean() / 1_000.0,
            p50_us: us(histogram.value_at_quantile(0.50)),
            p90_us: us(histogram.value_at_quantile(0.90)),
            p99_us: us(histogram.value_at_quantile(0.99)),
            p999_us: us(histogram.value_at_quantile(0.999)),
            max_us: us(histogram.max()),
        }
    }
}

impl Summary {
    /// Adds the latency entries (`latency_count`, `latency_p50_us`, ...,
    /// `latency_mean_us`) to `report`.
    pub(crate) fn add_to(&self, report: &mut Report) {
        report.int("latency_count", "latencies recorded", self.count);
        report.float("latency_p50_us", "latency p50", self.p50_us, 1, "µs");
        report.float("latency_p90_us", "latency p90", self.p90_us, 1, "µs");
        report.float("latency_p99_us", "latency p99", self.p99_us, 1, "µs");
        report.float("latency_p999_us", "latency p99.9", self.p999_us, 1, "µs");
        report.float("latency_max_us", "latency max", self.max_us, 1, "µs");
        report.float("latency_mean_us", "latency mean", self.mean_us, 1, "µs");
    }
}

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

    /// How many of `0..total` were never seen.
    pub(crate) fn missing(&self, total: u64) -> u64 {
        total.saturating_sub(self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(seen.missing(1300), 101);
        // The late one fills the gap, and the words go.
        assert_eq!(seen.insert(1000), Mark::New);
        assert_eq!(seen.missing(1200), 0);
        assert!(seen.bits.len() <= 1);
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

    #[test]
    fn batches_reach_the_merged_histogram() {
        let latencies = Latencies::new(4);
        let mut a = Batch::new(0);
        let mut b = Batch::new(1);
        for i in 1..=1000 {
            a.push(i * 1_000, &latencies);
            b.push(i * 1_000, &latencies);
        }
        a.flush(&latencies);
        b.flush(&latencies);
        let summary = Summary::of(&latencies.merged());
        assert_eq!(summary.count, 2000);
        assert!((summary.p50_us - 500.0).abs() < 1.0, "{summary:?}");
        assert!((summary.max_us - 1000.0).abs() < 1.0, "{summary:?}");
    }
}
