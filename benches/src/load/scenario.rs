//! What the publishing scenarios have in common. `fanout` and `queue` run
//! their publishers through the same period and drain ([`Publishing`],
//! [`Course`]) and report the pacing alike; `fanout` and `rooms` count what
//! a receiver of a topic saw alike ([`Received`]); all three share the
//! delivery figures ([`Deliveries`]), the check of a fixed rate
//! ([`check_rate`]) and the verdict ([`Verdict`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use stomp_codec::Frame;
use tokio::task::JoinHandle;

use super::body::Stamp;
use super::client::Session;
use super::publisher::{self, Pacing, Plan, Progress, PubStats};
use super::report::Report;
use super::seq::{Mark, SeqSet};
use super::stats::{Batch, MessageLatencies, SendLateness};
use super::timer::Timer;
use super::{Clock, Common, CpuTimes, Error, Period, Result, Timing, secs_to_ns, wait_until};

/// The least share of the target rate a fixed-rate run must publish in
/// its measured period, in %: below it the publishers fell behind their
/// schedule, and what was measured is no longer the load asked for.
const RATE_SHARE_PCT: f64 = 99.0;

/// Who sends and who receives, for the labels of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Roles {
    /// Publishers and subscribers of a topic.
    Fanout,
    /// Producers and consumers of a queue.
    Queue,
}

/// What a publishing scenario sends, and for how long.
#[derive(Debug)]
pub(crate) struct Publishing<'a> {
    pub(crate) common: &'a Common,
    pub(crate) pacing: &'a Pacing,
    pub(crate) timing: &'a Timing,
    /// Where every message goes.
    pub(crate) destination: Bytes,
    /// Headers added to every `SEND`.
    pub(crate) headers: Arc<[(&'static str, Bytes)]>,
    /// Body size in octets.
    pub(crate) body: usize,
}

/// How publishing and draining went.
#[derive(Debug)]
pub(crate) struct Course {
    /// Each publisher's figures.
    pub(crate) publishers: Vec<PubStats>,
    cpu_before: Option<CpuTimes>,
    cpu_after: Option<CpuTimes>,
    /// Whether every message was received before the drain timed out.
    pub(crate) drained: bool,
    drain_secs: f64,
    /// When the drain ended, on the clock: undelivered messages are aged
    /// to it.
    pub(crate) deadline_ns: u64,
    /// At a fixed rate: how late the publishers wrote.
    lateness: Arc<SendLateness>,
}

impl Publishing<'_> {
    /// Publishes from `sessions` (publisher `i` held back by `progress[i]`)
    /// through the warm-up and the measured period, which it sets in
    /// `period`; then waits up to the drain timeout until `drained` holds.
    /// At a fixed rate the publishers sleep on a precise [`Timer`], which
    /// fails to start only when no thread can be.
    pub(crate) async fn run(
        &self,
        clock: Clock,
        period: &Period,
        sessions: Vec<Session>,
        progress: &[Arc<dyn Progress>],
        mut drained: impl FnMut(&[PubStats]) -> bool,
    ) -> Result<Course> {
        let timer = match self.pacing.rate {
            Some(_) => Some(Timer::new().map_err(|e| {
                Error::new(format!("cannot start the timer thread of the schedule: {e}"))
            })?),
            None => None,
        };
        let lateness = Arc::new(SendLateness::new(16));
        let start_ns = clock.now_ns() + secs_to_ns(0.05);
        let (window_start, end_ns) = self.timing.window(start_ns);
        period.set(window_start, end_ns);
        let plan = Plan {
            destination: self.destination.clone(),
            headers: self.headers.clone(),
            body: self.body,
            window: self.pacing.window,
            receipt_every: self.pacing.receipt_every(),
            max_lag: self.pacing.max_lag,
            interval_ns: self.pacing.interval_ns(sessions.len()),
            publishers: sessions.len(),
            start_ns,
            window_start,
            end_ns,
            timer,
            lateness: lateness.clone(),
        };
        let (publishers, cpu_before, cpu_after) =
            publisher::run_period(sessions, progress, clock, &plan, self.common).await;
        let (drained, drain_secs) =
            wait_until(self.timing.drain_timeout, || drained(&publishers)).await;
        let deadline_ns = clock.now_ns();
        let course = Course {
            publishers,
            cpu_before,
            cpu_after,
            drained,
            drain_secs,
            deadline_ns,
            lateness,
        };
        Ok(course)
    }
}

impl Course {
    /// Messages sent, all publishers together.
    pub(crate) fn published(&self) -> u64 {
        self.publishers.iter().map(|p| u64::from(p.sent)).sum()
    }

    /// Messages sent in the measured period, all publishers together.
    pub(crate) fn published_in_window(&self) -> u64 {
        self.publishers.iter().map(|p| p.sent_in_window).sum()
    }

    /// At a fixed rate: messages due in the measured period and written on
    /// schedule, all publishers together.
    pub(crate) fn on_schedule(&self) -> u64 {
        self.publishers.iter().map(|p| p.on_schedule).sum()
    }

    /// Publishers that stopped on an error.
    pub(crate) fn errors(&self) -> u64 {
        self.publishers.iter().filter(|p| p.error.is_some()).count() as u64
    }

    /// The first publisher error.
    pub(crate) fn first_error(&self) -> Option<&str> {
        self.publishers.iter().find_map(|p| p.error.as_deref())
    }

    /// Adds the publishers' average waits (`waited_receipt_s`,
    /// `waited_lag_s`).
    pub(crate) fn add_waits(&self, report: &mut Report, roles: Roles) {
        let count = self.publishers.len().max(1) as f64;
        let waited = |f: fn(&PubStats) -> Duration| {
            self.publishers.iter().map(|p| f(p).as_secs_f64()).sum::<f64>() / count
        };
        let (receipts, lag) = match roles {
            Roles::Fanout => ("publisher wait: receipts", "publisher wait: slowest subscriber"),
            Roles::Queue => ("producer wait: receipts", "producer wait: consumers"),
        };
        report.float("waited_receipt_s", receipts, waited(|p| p.waited_receipt), 2, "s");
        report.float("waited_lag_s", lag, waited(|p| p.waited_lag), 2, "s");
    }

    /// At a fixed rate: adds how late the publishers wrote
    /// (`send_lateness_*_us`).
    pub(crate) fn add_lateness(&self, report: &mut Report) {
        self.lateness.add_to(report);
    }

    /// Adds the drain (`drained`, `drain_s`) and the CPU times over the
    /// measured period.
    pub(crate) fn add_drain(&self, report: &mut Report, timing: &Timing) {
        report.bool("drained", "drained in time", self.drained);
        report.float("drain_s", "drain", self.drain_secs, 2, "s");
        CpuTimes::report(self.cpu_before, self.cpu_after, timing.duration, report);
    }
}

/// Adds how a `fanout` or `queue` run was paced and timed, and how long
/// its set-up took.
pub(crate) fn add_pacing(
    report: &mut Report,
    pacing: &Pacing,
    timing: &Timing,
    roles: Roles,
    setup_secs: f64,
) {
    match pacing.rate {
        Some(rate) => {
            report.text("mode", "mode", "rate");
            report.float("target_rate_per_s", "target rate", rate, 1, "msg/s");
        }
        None => report.text("mode", "mode", "max"),
    }
    report.int("window", "receipt window (msgs)", u64::from(pacing.window));
    report.int("receipt_every", "receipt every (msgs)", u64::from(pacing.receipt_every()));
    let lag = match roles {
        Roles::Fanout => "max delivery lag (msgs)",
        Roles::Queue => "max consumer lag (msgs)",
    };
    report.int("max_lag", lag, u64::from(pacing.max_lag));
    report.float("warmup_s", "warm-up", timing.warmup, 1, "s");
    report.float("duration_s", "measured", timing.duration, 1, "s");
    report.float("setup_s", "set-up (all subscribed)", setup_secs, 2, "s");
}

/// At a fixed rate of `target_per_s`: adds the share of it published on
/// schedule (`on_schedule` messages due in the `measured` seconds and
/// written by shortly after them, see [`on_schedule`](super::on_schedule))
/// as `published_of_target_pct`, and fails the run when it is below
/// [`RATE_SHARE_PCT`].
#[expect(clippy::cast_precision_loss, reason = "message counts far below 2^53")]
pub(crate) fn check_rate(
    report: &mut Report,
    verdict: &mut Verdict,
    target_per_s: f64,
    measured: f64,
    on_schedule: u64,
) {
    let pct = 100.0 * on_schedule as f64 / (target_per_s * measured);
    report.float("published_of_target_pct", "published of the target rate", pct, 1, "%");
    if pct < RATE_SHARE_PCT {
        verdict.fail(format!(
            "published {pct:.1} % of the target rate in the measured period (at least \
             {RATE_SHARE_PCT} % needed): the publishers fell behind their schedule"
        ));
    }
}

/// Waits for every task; one that failed (panicked, say) gives
/// `failed(reason)` instead of its result.
pub(crate) async fn join_all<T>(tasks: Vec<JoinHandle<T>>, failed: fn(String) -> T) -> Vec<T> {
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.unwrap_or_else(|e| failed(format!("task failed: {e}"))));
    }
    results
}

/// What one receiver of a topic saw: a `fanout` subscriber, a `rooms`
/// member.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// Messages received, duplicates included.
    pub(crate) received: u64,
    /// Messages received in the measured period.
    pub(crate) received_in_window: u64,
    pub(crate) duplicates: u64,
    pub(crate) malformed: u64,
    pub(crate) unexpected: u64,
    /// Per publisher: the sequence numbers seen.
    pub(crate) seen: Vec<SeqSet>,
    /// What ended the connection early.
    pub(crate) error: Option<String>,
}

impl Received {
    /// Nothing yet, from `publishers` publishers.
    pub(crate) fn new(publishers: usize) -> Self {
        Self { seen: vec![SeqSet::default(); publishers], ..Self::default() }
    }

    /// A receiver whose task failed: it saw nothing.
    pub(crate) fn failed(error: String) -> Self {
        Self { error: Some(error), ..Self::default() }
    }

    /// Accounts for a `MESSAGE` received at `now`, from the publisher that
    /// `publisher` finds for the stamp's number (none: malformed). At its
    /// first arrival, a message due in `period` has its latencies pushed
    /// to `latencies`, and its publisher's index is returned.
    pub(crate) fn take(
        &mut self,
        frame: &Frame,
        now: u64,
        period: &Period,
        publisher: impl FnOnce(u32) -> Option<usize>,
        (latencies, into): (&mut Batch, &MessageLatencies),
    ) -> Option<usize> {
        let found = Stamp::read(frame.body()).and_then(|stamp| {
            let p = publisher(stamp.publisher).filter(|&p| p < self.seen.len())?;
            Some((stamp, p))
        });
        let Some((stamp, p)) = found else {
            self.malformed += 1;
            return None;
        };
        self.received += 1;
        self.received_in_window += u64::from(period.contains(now));
        match self.seen[p].insert(stamp.seq) {
            Mark::New => {}
            Mark::Again => {
                self.duplicates += 1;
                return None;
            }
            Mark::TooFar => {
                self.malformed += 1;
                return None;
            }
        }
        if period.contains(stamp.due_ns) {
            latencies.push(&stamp, now, into);
        }
        Some(p)
    }
}

/// What a topic scenario delivered: the figures `fanout` and `rooms`
/// report alike.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deliveries {
    /// Messages published, all of the run.
    pub(crate) published: u64,
    /// Messages published in the measured period.
    pub(crate) published_in_window: u64,
    /// Deliveries that should have arrived, all of the run.
    pub(crate) expected: u64,
    /// Deliveries that arrived, all of the run.
    pub(crate) received: u64,
    /// Deliveries that arrived in the measured period.
    pub(crate) received_in_window: u64,
    pub(crate) lost: u64,
    pub(crate) duplicates: u64,
    pub(crate) malformed: u64,
}

impl Deliveries {
    /// Adds the counts and the rates over `measured` seconds, and the
    /// losses, duplicates and malformed frames to `verdict`.
    #[expect(clippy::cast_precision_loss, reason = "message counts far below 2^53")]
    pub(crate) fn add_to(&self, report: &mut Report, measured: f64, verdict: &mut Verdict) {
        report.int("published", "published (all)", self.published);
        let published_per_s = self.published_in_window as f64 / measured;
        report.float("published_per_s", "published/s", published_per_s, 0, "msg/s");
        let deliveries_per_s = self.received_in_window as f64 / measured;
        report.float("deliveries_per_s", "deliveries/s", deliveries_per_s, 0, "msg/s");
        report.int("expected_deliveries", "deliveries expected (all)", self.expected);
        report.int("received", "deliveries received (all)", self.received);
        report.int("lost", "lost", self.lost);
        report.int("duplicates", "duplicates", self.duplicates);
        report.int("malformed", "malformed or unexpected frames", self.malformed);
        verdict.count(self.lost, "lost");
        verdict.count(self.duplicates, "duplicates");
        verdict.count(self.malformed, "malformed or unexpected frames");
    }
}

/// Whether a run was clean, and if not, why: the reasons are gathered as
/// the figures are added, then written as `ok` and `fail_reason`.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    reasons: Vec<String>,
}

impl Verdict {
    /// Fails the run for `reason`.
    pub(crate) fn fail(&mut self, reason: String) {
        self.reasons.push(reason);
    }

    /// Fails the run when `n` things went wrong (`what` names them).
    pub(crate) fn count(&mut self, n: u64, what: &str) {
        if n > 0 {
            self.reasons.push(format!("{n} {what}"));
        }
    }

    /// Adds `ok` (labelled `label`) and, when the run failed,
    /// `fail_reason`.
    pub(crate) fn add_to(self, report: &mut Report, label: &'static str) {
        report.bool("ok", label, self.reasons.is_empty());
        if !self.reasons.is_empty() {
            report.text("fail_reason", "why not ok", self.reasons.join("; "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::report::Value;
    use super::*;

    #[test]
    fn a_message_is_on_schedule_when_due_in_the_period_and_written_soon_enough() {
        let on = |due, now| super::super::on_schedule(due, now, 1_000, 2_000);
        let late = 2_000 + super::super::ON_SCHEDULE_NS;
        assert!(on(1_000, 1_000));
        assert!(on(1_999, late - 1), "a late timer at the end is no shortfall");
        assert!(!on(1_999, late), "further behind is");
        assert!(!on(999, 1_500), "due before the period");
        assert!(!on(2_000, 2_000), "due after it");
    }

    #[test]
    fn a_rate_not_reached_fails_the_run_with_its_reason() {
        let mut report = Report::new("test");
        let mut verdict = Verdict::default();
        check_rate(&mut report, &mut verdict, 1_000.0, 10.0, 9_950);
        verdict.count(0, "lost");
        verdict.add_to(&mut report, "ok");
        assert!(matches!(report.get("ok"), Some(Value::Bool(true))), "{}", report.json());
        assert!(report.get("fail_reason").is_none());

        let mut report = Report::new("test");
        let mut verdict = Verdict::default();
        check_rate(&mut report, &mut verdict, 1_000.0, 10.0, 9_000);
        verdict.count(3, "lost");
        verdict.add_to(&mut report, "ok");
        assert!(matches!(report.get("ok"), Some(Value::Bool(false))));
        let Some(Value::Text(reason)) = report.get("fail_reason") else { panic!() };
        assert!(reason.starts_with("published 90.0 % of the target rate"), "{reason}");
        assert!(reason.ends_with("; 3 lost"), "{reason}");
    }
}
