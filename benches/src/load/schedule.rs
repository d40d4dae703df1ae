//! When messages are due: the fixed-rate [`Schedule`] of one publisher,
//! and [`SendTimes`], which tells when any message of a publisher was due
//! (for the age of one that never arrived).

use super::f64_to_u64;

/// How long a publisher behind its schedule may go on writing what was due
/// before the end of the period, after that end. What is still unwritten
/// then is never written; it counts as undelivered.
const CATCH_UP_NS: u64 = 1_000_000_000;

/// When one publisher's messages are due: message `n` at
/// `start + offset + n × interval`, none at or after `end`.
///
/// Every time is computed from `n`, never from the previous send, so a
/// late wake-up sends what is due at once and shifts nothing after it; the
/// offsets spread publishers evenly over one interval, so that thousands
/// of them at 1 msg/s do not all send in the same millisecond.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Schedule {
    start_ns: u64,
    end_ns: u64,
    /// Where in the first interval this publisher starts.
    offset_ns: f64,
    interval_ns: f64,
}

/// What a publisher on a [`Schedule`] does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Write this many messages now.
    Send(u64),
    /// Nothing is due before this time.
    SleepUntil(u64),
    /// The schedule is over.
    Done,
}

impl Schedule {
    /// The schedule of the publisher in `slot` of `slots`, which starts
    /// `slot / slots` of an interval after `start_ns`.
    pub(crate) fn new(
        start_ns: u64,
        end_ns: u64,
        interval_ns: f64,
        slot: usize,
        slots: usize,
    ) -> Self {
        let offset_ns = interval_ns * slot as f64 / slots.max(1) as f64;
        Self { start_ns, end_ns, offset_ns, interval_ns }
    }

    /// When message `n` is due.
    pub(crate) fn at(&self, n: u64) -> u64 {
        self.start_ns.saturating_add(f64_to_u64(self.offset_ns + n as f64 * self.interval_ns))
    }

    /// How many messages are due strictly before `t`.
    pub(crate) fn count_before(&self, t: u64) -> u64 {
        let since = t.saturating_sub(self.start_ns) as f64 - self.offset_ns;
        let mut n = f64_to_u64((since / self.interval_ns).ceil());
        // The division may round either way; `at` decides.
        while n > 0 && self.at(n - 1) >= t {
            n -= 1;
        }
        while self.at(n) < t {
            n += 1;
        }
        n
    }

    /// How many messages are due by `now`, at most [`total`](Self::total).
    pub(crate) fn due(&self, now: u64) -> u64 {
        self.count_before(now.saturating_add(1)).min(self.total())
    }

    /// How many messages the schedule holds.
    pub(crate) fn total(&self) -> u64 {
        self.count_before(self.end_ns)
    }

    /// What a publisher that has written `sent` messages does at `now`:
    /// write what is due (at most `most` at once), or sleep until the next
    /// one is. After the end it may still write what was due before it,
    /// for [`CATCH_UP_NS`].
    pub(crate) fn step(&self, sent: u64, now: u64, most: u64) -> Step {
        if sent >= self.total() || now >= self.end_ns.saturating_add(CATCH_UP_NS) {
            return Step::Done;
        }
        match self.due(now).checked_sub(sent) {
            Some(due @ 1..) => Step::Send(due.min(most)),
            _ => Step::SleepUntil(self.at(sent)),
        }
    }
}

/// When each message of one publisher was due: what the age of a message
/// that never arrived is counted from.
#[derive(Debug, Clone)]
pub(crate) enum SendTimes {
    /// At a fixed rate: the schedule says, for messages written or not.
    Schedule(Schedule),
    /// As fast as the bounds allow: when messages were written.
    Log(SendLog),
}

impl Default for SendTimes {
    /// No message written yet, without a schedule.
    fn default() -> Self {
        Self::Log(SendLog::default())
    }
}

impl SendTimes {
    /// When message `seq` was due.
    pub(crate) fn due_ns(&self, seq: u64) -> u64 {
        match self {
            Self::Schedule(schedule) => schedule.at(seq),
            Self::Log(log) => log.at(seq),
        }
    }

    /// How many messages were due, of a publisher that wrote `sent`: the
    /// whole schedule (what a publisher could not write is owed too), or
    /// what was written.
    pub(crate) fn due_count(&self, sent: u64) -> u64 {
        match self {
            Self::Schedule(schedule) => schedule.total().max(sent),
            Self::Log(_) => sent,
        }
    }
}

/// When the messages of a publisher without a schedule were written, to
/// [`SendLog::GRAIN_NS`]: one mark (first message, time) per batch, at most
/// one per grain, so its size follows the run's length, not its rate (a
/// 20 s run keeps at most 4,000 marks).
#[derive(Debug, Clone, Default)]
pub(crate) struct SendLog {
    marks: Vec<(u64, u64)>,
}

impl SendLog {
    /// The precision of [`at`](Self::at).
    pub(crate) const GRAIN_NS: u64 = 5_000_000;

    /// Notes that message `seq`, the first of a batch, is written at `now`.
    pub(crate) fn note(&mut self, seq: u64, now: u64) {
        match self.marks.last() {
            Some(&(_, last)) if now < last.saturating_add(Self::GRAIN_NS) => {}
            _ => self.marks.push((seq, now)),
        }
    }

    /// When message `seq` was written: at most [`GRAIN_NS`](Self::GRAIN_NS)
    /// early, never late, so the age of a message never received is never
    /// understated. 0 before the first mark.
    pub(crate) fn at(&self, seq: u64) -> u64 {
        let after = self.marks.partition_point(|&(first, _)| first <= seq);
        after.checked_sub(1).map_or(0, |i| self.marks[i].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_fixed_and_staggered() {
        // 5,000 publishers at 1 msg/s for 3 s.
        let (start, end) = (1_000, 1_000 + 3_000_000_000);
        let members = 5_000;
        let schedules: Vec<_> =
            (0..members).map(|slot| Schedule::new(start, end, 1e9, slot, members)).collect();
        // Each: 3 messages, exactly one interval apart.
        for s in &schedules {
            assert_eq!(s.total(), 3);
            assert_eq!(s.at(1) - s.at(0), 1_000_000_000);
            assert_eq!(s.at(2) - s.at(0), 2_000_000_000);
        }
        // The first messages spread over the first second: at most 5 per
        // millisecond.
        let mut per_ms = std::collections::HashMap::<u64, usize>::new();
        for s in &schedules {
            *per_ms.entry((s.at(0) - start) / 1_000_000).or_default() += 1;
        }
        assert_eq!(per_ms.len(), 1_000);
        assert!(per_ms.values().all(|&n| n == 5), "{per_ms:?}");
    }

    #[test]
    fn schedule_counts_what_is_due() {
        let s = Schedule::new(100, 100 + 1_000, 100.0, 1, 4); // offset 25
        assert_eq!(s.at(0), 125);
        assert_eq!(s.due(124), 0);
        assert_eq!(s.due(125), 1);
        assert_eq!(s.due(224), 1);
        assert_eq!(s.due(225), 2);
        // Due at 125, 225, ..., 1025: the last is past the end (1100 is
        // excluded, 1025 is in).
        assert_eq!(s.total(), 10);
        assert_eq!(s.due(u64::MAX / 2), 10);
        // A late wake-up sees everything due at once, nothing shifts.
        assert_eq!(s.due(560), 5);
        assert_eq!(s.at(5), 625);
        // Odd rates round the same way in `at` and `due`.
        let s = Schedule::new(0, 10_000_000_000, 1e9 / 3.0, 2, 7);
        for n in 0..30 {
            assert_eq!(s.due(s.at(n)), n + 1);
            assert_eq!(s.due(s.at(n) - 1), n);
        }
    }

    #[test]
    fn a_late_publisher_catches_up_for_a_while_after_the_end() {
        let s = Schedule::new(0, 1_000, 100.0, 0, 1); // 0, 100, ..., 900
        assert_eq!(s.step(0, 0, 64), Step::Send(1));
        assert_eq!(s.step(1, 50, 64), Step::SleepUntil(100));
        assert_eq!(s.step(1, 450, 64), Step::Send(4));
        assert_eq!(s.step(1, 450, 2), Step::Send(2));
        // After the end: what was due before it, then done.
        assert_eq!(s.step(5, 1_500, 64), Step::Send(5));
        assert_eq!(s.step(10, 1_500, 64), Step::Done);
        assert_eq!(s.step(5, 1_000 + CATCH_UP_NS, 64), Step::Done);
        let times = SendTimes::Schedule(s);
        assert_eq!(times.due_ns(7), 700);
        assert_eq!(times.due_count(3), 10, "the unwritten part of the schedule is owed");
    }

    #[test]
    fn send_log_is_never_late_and_stays_small() {
        let mut log = SendLog::default();
        let grain = SendLog::GRAIN_NS;
        // Batches of 64 every 100 µs for one second.
        for batch in 0..10_000u64 {
            log.note(batch * 64, 1_000_000 + batch * 100_000);
        }
        assert_eq!(log.marks.len(), 200, "one mark per grain");
        for seq in [0, 63, 64, 100_000, 639_999] {
            let written = 1_000_000 + seq / 64 * 100_000;
            let at = log.at(seq);
            assert!(at <= written && written - at < grain, "{seq}: {at} vs {written}");
        }
        assert_eq!(SendLog::default().at(5), 0);
        let times = SendTimes::Log(log);
        assert_eq!(times.due_count(640_000), 640_000);
    }
}
