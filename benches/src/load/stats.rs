//! Latency histograms (HdrHistogram, nanoseconds, 3 significant digits)
//! and their summary.
//!
//! A delivered message has two latencies ([`MessageLatencies`]): from the
//! time it was due (the main figure) and from the time it was written (see
//! [`Stamp`]). A message that had not arrived when the drain ended has an
//! age instead ([`Undelivered`]); the percentiles "incl. undelivered" count
//! it at that age, so that a run that did not drain does not report only
//! the messages that made it.

use std::sync::Mutex;

use hdrhistogram::Histogram;

use super::Period;
use super::body::Stamp;
use super::report::Report;
use super::schedule::SendTimes;
use super::seq::SeqSet;

/// The largest latency recorded exactly: 60 s. Larger ones are clamped.
const MAX_NS: u64 = 60_000_000_000;

/// Latencies recorded by many tasks at once: a few histograms behind
/// their own locks, merged at the end.
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
    pub(crate) fn record(&self, key: usize, values: impl IntoIterator<Item = u64>) {
        let shard = &self.shards[key % self.shards.len()];
        let mut histogram = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for value in values {
            record(&mut histogram, value);
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

fn record(histogram: &mut Histogram<u64>, ns: u64) {
    histogram.saturating_record(ns.clamp(1, MAX_NS));
}

/// The latencies of the messages delivered in a run, each counted from
/// when it was due and from when it was written.
#[derive(Debug)]
pub(crate) struct MessageLatencies {
    /// From the due time: the main figure.
    pub(crate) due: Latencies,
    /// From the write.
    pub(crate) sent: Latencies,
}

impl MessageLatencies {
    /// Histograms for `shards` shards each.
    pub(crate) fn new(shards: usize) -> Self {
        Self { due: Latencies::new(shards), sent: Latencies::new(shards) }
    }
}

/// A task's latencies on their way to a shared [`MessageLatencies`]: kept
/// here and recorded together, so the locks are taken once per batch.
#[derive(Debug)]
pub(crate) struct Batch {
    key: usize,
    /// Per message: from the due time, from the write.
    values: Vec<(u64, u64)>,
}

impl Batch {
    const SIZE: usize = 256;

    /// A batch for the shards chosen by `key`.
    pub(crate) fn new(key: usize) -> Self {
        Self { key, values: Vec::new() }
    }

    /// Adds the latencies of the message stamped `stamp`, received at
    /// `now`; records the batch when full.
    pub(crate) fn push(&mut self, stamp: &Stamp, now: u64, into: &MessageLatencies) {
        if self.values.capacity() == 0 {
            self.values.reserve_exact(Self::SIZE);
        }
        self.values.push((stamp.since_due(now), stamp.since_sent(now)));
        if self.values.len() == Self::SIZE {
            self.flush(into);
        }
    }

    /// Records what the batch holds.
    pub(crate) fn flush(&mut self, into: &MessageLatencies) {
        if self.values.is_empty() {
            return;
        }
        into.due.record(self.key, self.values.iter().map(|v| v.0));
        into.sent.record(self.key, self.values.iter().map(|v| v.1));
        self.values.clear();
    }
}

/// How late the load generator wrote its messages at a fixed rate: write
/// time − due time, for the messages due in the measured period. It is
/// part of every latency "from schedule", and the broker's part of none:
/// what a reader subtracts before comparing brokers.
#[derive(Debug)]
pub(crate) struct SendLateness {
    lateness: Latencies,
}

impl SendLateness {
    /// Histograms for `shards` shards.
    pub(crate) fn new(shards: usize) -> Self {
        Self { lateness: Latencies::new(shards) }
    }

    /// Records the lateness of messages due at `due` and written at
    /// `written` (both on the run's clock) into the shard chosen by `key`.
    pub(crate) fn record(&self, key: usize, due_written: &[(u64, u64)]) {
        if !due_written.is_empty() {
            self.lateness.record(key, due_written.iter().map(|&(d, w)| w.saturating_sub(d)));
        }
    }

    /// The summary of what was recorded.
    pub(crate) fn summary(&self) -> Summary {
        Summary::of(&self.lateness.merged())
    }

    /// Adds `send_lateness_p50_us`, `_p99_us`, `_p999_us` and `_max_us`.
    pub(crate) fn add_to(&self, report: &mut Report) {
        let late = self.summary();
        let label = "send lateness p50 (write − due)";
        report.float("send_lateness_p50_us", label, late.p50_us, 1, "µs");
        report.float("send_lateness_p99_us", "send lateness p99", late.p99_us, 1, "µs");
        report.float("send_lateness_p999_us", "send lateness p99.9", late.p999_us, 1, "µs");
        report.float("send_lateness_max_us", "send lateness max", late.max_us, 1, "µs");
    }
}

/// The messages due in the measured period that had not arrived when the
/// drain ended (one per receiver that lacked it), each at its age then.
#[derive(Debug)]
pub(crate) struct Undelivered {
    ages: Histogram<u64>,
}

impl Undelivered {
    /// None yet.
    pub(crate) fn new() -> Self {
        Self { ages: new_histogram() }
    }

    /// Adds what one receiver never saw (`seen`) of a publisher that wrote
    /// `sent` messages due at `times`: each message due in `period`, at
    /// `deadline` minus its due time.
    pub(crate) fn add(
        &mut self,
        seen: &SeqSet,
        times: &SendTimes,
        sent: u64,
        period: &Period,
        deadline: u64,
    ) {
        seen.for_each_missing(times.due_count(sent), |seq| {
            let due = times.due_ns(seq);
            if period.contains(due) {
                record(&mut self.ages, deadline.saturating_sub(due));
            }
        });
    }

    /// How many were added.
    pub(crate) fn count(&self) -> u64 {
        self.ages.len()
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

/// The latency figures of a run, as reported.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LatencyFigures {
    /// From the due time, delivered messages only.
    pub(crate) due: Summary,
    /// From the due time, undelivered messages at their age included.
    pub(crate) with_undelivered: Summary,
    /// Undelivered messages counted.
    pub(crate) undelivered: u64,
    /// From the write, delivered messages only.
    pub(crate) sent: Summary,
}

impl LatencyFigures {
    /// The figures of `latencies` and `undelivered`.
    pub(crate) fn of(latencies: &MessageLatencies, undelivered: &Undelivered) -> Self {
        let due = latencies.due.merged();
        let mut all = due.clone();
        // Same bounds, so adding cannot fail.
        let _ = all.add(&undelivered.ages);
        Self {
            due: Summary::of(&due),
            with_undelivered: Summary::of(&all),
            undelivered: undelivered.count(),
            sent: Summary::of(&latencies.sent.merged()),
        }
    }

    /// Adds the entries: `latency_*_us` from the due time (the keys of
    /// earlier versions, which had only this one), each tail figure
    /// followed by its `latency_*_with_undelivered_us`, then
    /// `latency_from_send_*_us`.
    pub(crate) fn add_to(&self, report: &mut Report) {
        let (due, all, sent) = (&self.due, &self.with_undelivered, &self.sent);
        report.int("latency_count", "latencies recorded", due.count);
        report.float("latency_p50_us", "latency p50 (from schedule)", due.p50_us, 1, "µs");
        report.float("latency_p90_us", "latency p90 (from schedule)", due.p90_us, 1, "µs");
        report.float("latency_p99_us", "latency p99 (from schedule)", due.p99_us, 1, "µs");
        let label = "  p99 incl. undelivered";
        report.float("latency_p99_with_undelivered_us", label, all.p99_us, 1, "µs");
        report.float("latency_p999_us", "latency p99.9 (from schedule)", due.p999_us, 1, "µs");
        let label = "  p99.9 incl. undelivered";
        report.float("latency_p999_with_undelivered_us", label, all.p999_us, 1, "µs");
        report.float("latency_max_us", "latency max (from schedule)", due.max_us, 1, "µs");
        let label = "  max incl. undelivered";
        report.float("latency_max_with_undelivered_us", label, all.max_us, 1, "µs");
        report.float("latency_mean_us", "latency mean (from schedule)", due.mean_us, 1, "µs");
        report.int("undelivered", "undelivered at the drain deadline", self.undelivered);
        report.float("latency_from_send_p50_us", "latency p50 (from send)", sent.p50_us, 1, "µs");
        report.float("latency_from_send_p99_us", "latency p99 (from send)", sent.p99_us, 1, "µs");
        let label = "latency p99.9 (from send)";
        report.float("latency_from_send_p999_us", label, sent.p999_us, 1, "µs");
        report.float("latency_from_send_max_us", "latency max (from send)", sent.max_us, 1, "µs");
    }
}

#[cfg(test)]
mod tests {
    use super::super::schedule::{Schedule, SendLog};
    use super::*;

    #[test]
    fn batches_reach_the_merged_histograms() {
        let latencies = MessageLatencies::new(4);
        let mut a = Batch::new(0);
        let mut b = Batch::new(1);
        for i in 1..=1000 {
            // Due 1 ms before it was written.
            let stamp = Stamp { publisher: 0, seq: 0, due_ns: 0, sent_ns: 1_000_000 };
            a.push(&stamp, 1_000_000 + i * 1_000, &latencies);
            b.push(&stamp, 1_000_000 + i * 1_000, &latencies);
        }
        a.flush(&latencies);
        b.flush(&latencies);
        let figures = LatencyFigures::of(&latencies, &Undelivered::new());
        assert_eq!(figures.due.count, 2000);
        assert!((figures.sent.p50_us - 500.0).abs() < 1.0, "{figures:?}");
        assert!((figures.sent.max_us - 1000.0).abs() < 1.0, "{figures:?}");
        assert!((figures.due.p50_us - 1500.0).abs() < 2.0, "{figures:?}");
        assert_eq!(figures.undelivered, 0);
        assert_eq!(figures.with_undelivered.p99_us, figures.due.p99_us);
    }

    #[test]
    fn send_lateness_is_write_minus_due() {
        let lateness = SendLateness::new(2);
        lateness.record(0, &[(1_000, 21_000), (5_000, 5_000)]);
        lateness.record(1, &[(7_000, 47_000)]);
        lateness.record(1, &[]);
        let late = lateness.summary();
        assert_eq!(late.count, 3);
        assert!((late.p50_us - 20.0).abs() < 0.1, "{late:?}");
        assert!((late.max_us - 40.0).abs() < 0.1, "{late:?}");
        // Written on time counts as the least recordable value, 1 ns.
        assert!(late.min_us < 0.01, "{late:?}");
        let mut report = Report::new("test");
        lateness.add_to(&mut report);
        let json = report.json();
        for key in ["send_lateness_p50_us", "send_lateness_p99_us", "send_lateness_max_us"] {
            assert!(json.contains(key), "{json}");
        }
    }

    #[test]
    fn undelivered_messages_raise_the_tail_at_their_age() {
        // 1,000 messages due 1 ms apart from t = 0; the measured period is
        // the second half. 980 arrived 1 ms after they were due; 20 due in
        // the period (700..720) never did, and the drain ended at 3 s.
        let ms = 1_000_000;
        let schedule = Schedule::new(0, 1_000 * ms, ms as f64, 0, 1);
        let times = SendTimes::Schedule(schedule);
        let period = Period::unknown();
        period.set(500 * ms, 1_000 * ms);
        let latencies = MessageLatencies::new(1);
        let mut batch = Batch::new(0);
        let mut seen = SeqSet::default();
        for seq in (0..1_000u32).filter(|s| !(700..720).contains(s)) {
            let _ = seen.insert(seq);
            let due = schedule.at(u64::from(seq));
            if period.contains(due) {
                let stamp = Stamp { publisher: 0, seq, due_ns: due, sent_ns: due };
                batch.push(&stamp, due + ms, &latencies);
            }
        }
        batch.flush(&latencies);
        let mut undelivered = Undelivered::new();
        undelivered.add(&seen, &times, 1_000, &period, 3_000 * ms);
        let figures = LatencyFigures::of(&latencies, &undelivered);
        assert_eq!(figures.due.count, 480);
        assert_eq!(figures.undelivered, 20);
        // Delivered only: every latency 1 ms. With the 20 (4 % of 500) at
        // 2.28 to 2.3 s, the p99 is one of them.
        assert!((figures.due.p99_us - 1_000.0).abs() < 1.0, "{figures:?}");
        assert!(figures.with_undelivered.p99_us > 2_279_000.0, "{figures:?}");
        assert!(figures.with_undelivered.max_us < 2_302_000.0, "{figures:?}");
        // Messages written before the period (without a schedule) are
        // not counted; one written in it is.
        let mut log = SendLog::default();
        log.note(0, 0);
        log.note(2, 600 * ms);
        let times = SendTimes::Log(log);
        let mut one = SeqSet::default();
        let _ = one.insert(1);
        let mut undelivered = Undelivered::new();
        undelivered.add(&one, &times, 3, &period, 3_000 * ms);
        assert_eq!(undelivered.count(), 1);
    }
}
