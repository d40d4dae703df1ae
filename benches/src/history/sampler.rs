//! The writer's counters, read once a second, and what the measured
//! seconds say: the write rate (median, min, max, mean), the batch size,
//! how long a batch write took, how full the buffer was.

use std::io::Write as _;
use std::time::Duration;

use stomp_broker::store::HistoryWriter;
use tokio::time::{Instant, MissedTickBehavior};

use super::handler::Rooms;
use super::machine;
use crate::procfs;

/// One reading.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    /// Since the start of sending.
    pub(crate) at: Duration,
    /// `WriterStats::written`.
    pub(crate) written: u64,
    /// `WriterStats::accepted`.
    pub(crate) accepted: u64,
    /// `WriterStats::batches`.
    pub(crate) batches: u64,
    /// `WriterStats::failures`.
    pub(crate) failures: u64,
    /// `WriterStats::buffered`.
    pub(crate) buffered: usize,
    /// `WriterStats::last_write`: how long the last batch took to write.
    pub(crate) last_write: Duration,
    /// Appends that found the buffer full.
    pub(crate) full_waits: u64,
    /// CPU seconds of this process (broker, clients, writer and, for
    /// SQLite, the database).
    pub(crate) cpu: Option<f64>,
    /// CPU seconds of the database server (`--db-pid`).
    pub(crate) db_cpu: Option<f64>,
    /// CPU seconds of the whole machine, every process.
    pub(crate) machine_cpu: Option<f64>,
}

/// Reads the counters at `start` and every second after it, up to `end`
/// seconds.
pub(crate) async fn sample(
    writer: &HistoryWriter,
    rooms: &Rooms,
    db_pid: Option<u32>,
    start: Instant,
    end: u64,
) -> Vec<Sample> {
    let mut ticks = tokio::time::interval_at(start, Duration::from_secs(1));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut samples: Vec<Sample> = Vec::new();
    for _ in 0..=end {
        ticks.tick().await;
        let stats = writer.stats();
        let sample = Sample {
            at: start.elapsed(),
            written: stats.written,
            accepted: stats.accepted,
            batches: stats.batches,
            failures: stats.failures,
            buffered: stats.buffered,
            last_write: stats.last_write,
            full_waits: rooms.full_waits(),
            cpu: procfs::cpu_seconds("self").ok(),
            db_cpu: db_pid.and_then(|pid| procfs::cpu_seconds(&pid.to_string()).ok()),
            machine_cpu: machine::busy_seconds().ok(),
        };
        if let Some(previous) = samples.last() {
            progress(previous, &sample);
        }
        samples.push(sample);
    }
    samples
}

/// One line on stderr per second, to follow a run.
fn progress(previous: &Sample, now: &Sample) {
    let _ = writeln!(
        std::io::stderr(),
        "history-load: {:>4.0} s  written {:>8}/s  accepted {:>8}/s  buffered {:>7}  waits {}",
        now.at.as_secs_f64(),
        now.written - previous.written,
        now.accepted - previous.accepted,
        now.buffered,
        now.full_waits - previous.full_waits,
    );
}

/// What the measured seconds say.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    /// The measured period's length (from its first to its last sample).
    pub(crate) seconds: f64,
    /// Messages written per second: median, smallest and largest of the
    /// one-second samples, and the mean over the period.
    pub(crate) written_median: f64,
    pub(crate) written_min: f64,
    pub(crate) written_max: f64,
    pub(crate) written_mean: f64,
    /// Messages written per second in the first and in the last 5 s of
    /// the period (a store that slows down as it grows shows here).
    pub(crate) written_first5: f64,
    pub(crate) written_last5: f64,
    /// Messages accepted (appended) per second: median and mean.
    pub(crate) accepted_median: f64,
    pub(crate) accepted_mean: f64,
    /// Messages written in the period.
    pub(crate) written: u64,
    /// Batches written in the period, and messages per batch.
    pub(crate) batches: u64,
    pub(crate) batch_mean: f64,
    /// Median of the sampled batch write times, in milliseconds.
    pub(crate) write_ms_median: f64,
    /// Buffered messages: mean and largest of the samples.
    pub(crate) buffered_mean: f64,
    pub(crate) buffered_max: usize,
    /// Appends that found the buffer full during the period.
    pub(crate) full_waits: u64,
    /// Failed batch writes during the period.
    pub(crate) failures: u64,
    /// CPU of this process and of the database server, in % of one core.
    pub(crate) cpu_pct: Option<f64>,
    pub(crate) db_cpu_pct: Option<f64>,
    /// CPU of every process on the machine, in % of one core.
    pub(crate) machine_cpu_pct: Option<f64>,
}

impl Summary {
    /// The summary of the samples from second `warmup` on.
    pub(crate) fn of(samples: &[Sample], warmup: u64) -> Self {
        let window =
            samples.get(usize::try_from(warmup).unwrap_or(usize::MAX)..).unwrap_or_default();
        let (Some(first), Some(last)) = (window.first(), window.last()) else {
            return Self::default();
        };
        let seconds = (last.at - first.at).as_secs_f64();
        let rate = |f: fn(&Sample) -> u64| -> Vec<f64> {
            window
                .windows(2)
                .map(|p| (f(&p[1]) - f(&p[0])) as f64 / (p[1].at - p[0].at).as_secs_f64().max(1e-9))
                .collect()
        };
        let mut written = rate(|s| s.written);
        let (first5, last5) = (mean(written.iter().take(5)), mean(written.iter().rev().take(5)));
        let mut accepted = rate(|s| s.accepted);
        let mut write_ms: Vec<f64> =
            window.iter().map(|s| s.last_write.as_secs_f64() * 1e3).collect();
        let per_s = |n: u64| if seconds > 0.0 { n as f64 / seconds } else { f64::NAN };
        let cpu = |f: fn(&Sample) -> Option<f64>| {
            Some((f(last)? - f(first)?) / seconds * 100.0).filter(|_| seconds > 0.0)
        };
        let batches = last.batches - first.batches;
        let buffered: Vec<f64> = window.iter().map(|s| s.buffered as f64).collect();
        Self {
            seconds,
            written_first5: first5,
            written_last5: last5,
            written_median: median(&mut written),
            written_min: written.iter().copied().fold(f64::INFINITY, f64::min),
            written_max: written.iter().copied().fold(0.0, f64::max),
            written_mean: per_s(last.written - first.written),
            accepted_median: median(&mut accepted),
            accepted_mean: per_s(last.accepted - first.accepted),
            written: last.written - first.written,
            batches,
            batch_mean: (last.written - first.written) as f64 / batches.max(1) as f64,
            write_ms_median: median(&mut write_ms),
            buffered_mean: buffered.iter().sum::<f64>() / buffered.len() as f64,
            buffered_max: window.iter().map(|s| s.buffered).max().unwrap_or(0),
            full_waits: last.full_waits - first.full_waits,
            failures: last.failures - first.failures,
            cpu_pct: cpu(|s| s.cpu),
            db_cpu_pct: cpu(|s| s.db_cpu),
            machine_cpu_pct: cpu(|s| s.machine_cpu),
        }
    }
}

/// The mean; NaN when empty.
fn mean<'a>(values: impl Iterator<Item = &'a f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0_u32), |(sum, n), x| (sum + x, n + 1));
    sum / f64::from(n)
}

/// The median (the mean of the middle two for an even count); NaN when
/// empty.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, written: u64, batches: u64) -> Sample {
        Sample {
            at: Duration::from_secs(secs),
            written,
            accepted: written,
            batches,
            ..Sample::default()
        }
    }

    #[test]
    fn rates_come_from_the_measured_seconds_only() {
        // Warm-up: 2 s at 10/s; then 30, 50, 40 per second.
        let samples =
            [at(0, 0, 0), at(1, 10, 1), at(2, 20, 2), at(3, 50, 3), at(4, 100, 4), at(5, 140, 6)];
        let summary = Summary::of(&samples, 2);
        assert!((summary.seconds - 3.0).abs() < 1e-9);
        assert!((summary.written_median - 40.0).abs() < 1e-9);
        assert!((summary.written_min - 30.0).abs() < 1e-9);
        assert!((summary.written_max - 50.0).abs() < 1e-9);
        assert!((summary.written_mean - 40.0).abs() < 1e-9);
        assert_eq!((summary.written, summary.batches), (120, 4));
        assert!((summary.batch_mean - 30.0).abs() < 1e-9);
        assert!((summary.written_first5 - 40.0).abs() < 1e-9);
    }

    #[test]
    fn medians() {
        assert!((median(&mut [3.0, 1.0, 2.0]) - 2.0).abs() < 1e-9);
        assert!((median(&mut [4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < 1e-9);
        assert!(median(&mut []).is_nan());
    }
}
