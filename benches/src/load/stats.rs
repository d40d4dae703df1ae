//! Latency histograms (HdrHistogram, nanoseconds, 3 significant digits)
//! and their summary.

use std::sync::Mutex;

use hdrhistogram::Histogram;

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

#[cfg(test)]
mod tests {
    use super::*;

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
