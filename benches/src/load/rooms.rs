//! The `rooms` scenario, the chat workload: R rooms of K members, every
//! member publishing to its room and receiving everything published there.
//!
//! 1. **Set-up.** R × K connections open (at most `--connect-batch` at a
//!    time). Member `m` of room `r` subscribes to `{topic-prefix}{r}` and
//!    waits for the receipt; publishing starts only when every member is
//!    subscribed.
//! 2. **Publishing**, for `--warmup` then `--duration` seconds: each member
//!    sends `--rate-per-member` messages/s to its room on a fixed schedule
//!    ([`Schedule`]): message `n` is due at `start + offset + n / rate`,
//!    so a late wake-up never shifts the ones after it, and the offsets
//!    spread the members evenly over one interval, so that thousands of
//!    members at 1 msg/s do not all send in the same millisecond. Members
//!    sleep on the precise [`Timer`], and record how late they wrote
//!    ([`SendLateness`]). Bodies carry a [`Stamp`] (the publisher is the
//!    member's number) with the due time and the write time.
//! 3. **Drain**: once publishing stops, members get up to
//!    `--drain-timeout` seconds to receive the rest.
//!
//! Every member receives every message of its room, its own included, so
//! K deliveries are expected per message. Each member records, per
//! publisher of its room, the sequence numbers seen ([`SeqSet`]): one seen
//! before is a duplicate, one sent but never seen is lost. Latency is
//! receive time minus the stamp's due time (and, apart, minus its write
//! time), for messages due in the measured period.
//!
//! Each member is one tokio task that reads and writes its connection
//! (the two halves joined, not spawned).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use stomp_codec::{Command, Frame};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::body::{STAMP_LEN, Stamp};
use super::client::{FrameReader, FrameWriter, Session};
use super::report::Report;
use super::scenario::{self, Deliveries, Received, Verdict};
use super::schedule::{Schedule, SendTimes, Step};
use super::seq::SeqSet;
use super::stats::{Batch, LatencyFigures, MessageLatencies, SendLateness, Undelivered};
use super::timer::Timer;
use super::{Clock, Common, CpuTimes, Error, Period, Result, Timing, secs_to_ns, wait_until};

/// Options of the `rooms` scenario.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RoomsArgs {
    /// Rooms (topics).
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Members per room, one connection each.
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// Messages per second each member sends to its room.
    #[arg(long, default_value_t = 1.0)]
    rate_per_member: f64,
    /// Body size in octets (at least 24, the stamp).
    #[arg(long, default_value_t = 100)]
    body: usize,
    #[command(flatten)]
    timing: Timing,
    /// Room `r` is the topic PREFIX`r` (on RabbitMQ, `/topic/room.3` is
    /// routing key `room.3` of `amq.topic`).
    #[arg(long, default_value = "/topic/room.")]
    topic_prefix: String,
}

/// Read buffer growth step: a member receives K small messages per
/// interval.
const READ_CHUNK: usize = 4 * 1024;
/// Messages encoded per write at most (when a member is behind).
const SEND_BATCH: u64 = 64;
/// Longest wait for a write to the broker.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

impl RoomsArgs {
    fn connections(&self) -> usize {
        self.rooms.saturating_mul(self.members)
    }

    fn validate(&self) -> Result<()> {
        let fail = |m: &str| Err(Error::new(m.to_owned()));
        if self.rooms == 0 || self.members == 0 {
            return fail("--rooms and --members must be at least 1");
        }
        if u32::try_from(self.connections()).is_err() {
            return fail("too many members");
        }
        if self.body < STAMP_LEN {
            return fail("--body must be at least 24 octets (the stamp)");
        }
        if !(self.rate_per_member > 0.0 && self.rate_per_member <= 1e6) {
            return fail("--rate-per-member must be positive (at most 1,000,000)");
        }
        self.timing.validate()
    }
}

/// What all members share.
#[derive(Debug)]
struct Shared {
    clock: Clock,
    /// What wakes members when a message is due.
    timer: Timer,
    latencies: MessageLatencies,
    /// How late members wrote.
    lateness: SendLateness,
    period: Period,
    members: usize,
    /// Messages received for the first time, all members together.
    delivered: AtomicU64,
    /// Per member: messages sent, once it has stopped publishing.
    sent: Vec<AtomicU32>,
    /// Per member: whether it stopped receiving early (an error).
    gone: Vec<AtomicBool>,
    /// Members done publishing.
    done: AtomicUsize,
}

impl Shared {
    /// The room of member `idx`, and its first member.
    fn room(&self, idx: usize) -> (usize, usize) {
        let room = idx / self.members;
        (room, room * self.members)
    }

    /// Deliveries owed to the members still receiving.
    fn expected_live(&self) -> u64 {
        let k = self.members;
        (0..self.sent.len() / k)
            .map(|room| {
                let range = room * k..(room + 1) * k;
                let sent: u64 = self.sent[range.clone()]
                    .iter()
                    .map(|s| u64::from(s.load(Ordering::Relaxed)))
                    .sum();
                let live = self.gone[range].iter().filter(|g| !g.load(Ordering::Relaxed)).count();
                sent * live as u64
            })
            .sum()
    }
}

/// What one member did (its sending half) and saw (its receiving half).
#[derive(Debug, Default)]
struct MemberStats {
    sent: Sent,
    got: Received,
}

impl MemberStats {
    /// A member whose task failed.
    fn failed(error: String) -> Self {
        Self { got: Received::failed(error), ..Self::default() }
    }
}

/// What a member's sending half did.
#[derive(Debug, Default)]
struct Sent {
    /// Messages written (sequence numbers `0..sent`), kept up to date
    /// message by message, so that it is right however the member ends.
    sent: u32,
    sent_in_window: u64,
    /// Messages due in the measured period and written on schedule.
    on_schedule: u64,
    /// When each message was due (its schedule, once it started).
    times: SendTimes,
    error: Option<String>,
}

/// Runs the scenario.
pub(crate) async fn run(common: &Common, args: &RoomsArgs) -> Result<Report> {
    args.validate()?;
    let connections = args.connections();
    common.check_capacity(connections)?;
    let clock = Clock::new();
    let timer = Timer::new()
        .map_err(|e| Error::new(format!("cannot start the timer thread of the schedule: {e}")))?;
    let shared = Arc::new(Shared {
        clock,
        timer,
        latencies: MessageLatencies::new(16),
        lateness: SendLateness::new(16),
        period: Period::unknown(),
        members: args.members,
        delivered: AtomicU64::new(0),
        sent: (0..connections).map(|_| AtomicU32::new(0)).collect(),
        gone: (0..connections).map(|_| AtomicBool::new(false)).collect(),
        done: AtomicUsize::new(0),
    });

    // 1. Every member subscribed.
    let setup = Instant::now();
    let sessions = open_members(common, args).await?;
    let setup_secs = setup.elapsed().as_secs_f64();

    // 2. Publishing.
    let start_ns = clock.now_ns() + secs_to_ns(0.05);
    let (window_start, window_end) = args.timing.window(start_ns);
    shared.period.set(window_start, window_end);
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks: Vec<JoinHandle<MemberStats>> = sessions
        .into_iter()
        .enumerate()
        .map(|(idx, session)| {
            let plan = MemberPlan::new(args, idx, start_ns, window_end);
            tokio::spawn(member(idx, session, shared.clone(), plan, stop_rx.clone()))
        })
        .collect();
    tokio::time::sleep_until(clock.instant(window_start)).await;
    let cpu_before = CpuTimes::now(common, Some(&shared.timer));
    tokio::time::sleep_until(clock.instant(window_end)).await;
    let cpu_after = CpuTimes::now(common, Some(&shared.timer));

    // 3. Drain.
    let (drained, drain_secs) = wait_drained(&shared, connections, args.timing.drain_timeout).await;
    let deadline_ns = clock.now_ns();
    let _ = stop_tx.send(true);
    let stats = scenario::join_all(tasks, MemberStats::failed).await;

    let mut report = Report::new("rooms");
    add_settings(&mut report, args, setup_secs);
    summarize(&mut report, args, &shared, &stats, deadline_ns);
    report.bool("drained", "drained in time", drained);
    report.float("drain_s", "drain", drain_secs, 2, "s");
    CpuTimes::report(cpu_before, cpu_after, args.timing.duration, &mut report);
    Ok(report)
}

/// Adds what was asked for, and how long the set-up took.
fn add_settings(report: &mut Report, args: &RoomsArgs, setup_secs: f64) {
    let connections = args.connections();
    report.int("rooms", "rooms", args.rooms as u64);
    report.int("members", "members per room", args.members as u64);
    report.int("connections", "connections", connections as u64);
    report.float("rate_per_member", "rate per member", args.rate_per_member, 2, "msg/s");
    let target = args.rate_per_member * connections as f64;
    report.float("target_rate_per_s", "target rate (all members)", target, 1, "msg/s");
    report.int("body_bytes", "body (octets)", args.body as u64);
    report.float("warmup_s", "warm-up", args.timing.warmup, 1, "s");
    report.float("duration_s", "measured", args.timing.duration, 1, "s");
    report.float("setup_s", "set-up (all subscribed)", setup_secs, 2, "s");
}

/// Waits until every member has stopped publishing and every live one has
/// received everything, or for `timeout` seconds; returns whether it was
/// drained, and how long the drain took.
async fn wait_drained(shared: &Shared, members: usize, timeout: f64) -> (bool, f64) {
    wait_until(timeout, || {
        shared.done.load(Ordering::Acquire) == members
            && shared.delivered.load(Ordering::Relaxed) >= shared.expected_live()
    })
    .await
}

/// Opens every member's connection, subscribed to its room.
async fn open_members(common: &Common, args: &RoomsArgs) -> Result<Vec<Session>> {
    common
        .open_sessions(args.connections(), "members", |idx, login| {
            let (target, source) = (common.target(), common.source(idx));
            let topic = format!("{}{}", args.topic_prefix, idx / args.members);
            async move {
                let mut session = Session::connect(target, &login, source, READ_CHUNK).await?;
                session.subscribe("0", &topic).await?;
                session.reader.release_buffer();
                session.writer.release_buffer();
                Ok(session)
            }
        })
        .await
}

/// What a member publishes, and when.
#[derive(Debug)]
struct MemberPlan {
    /// The number in the stamps: the member's.
    publisher: u32,
    destination: Bytes,
    body: usize,
    schedule: Schedule,
}

/// One member: publishes on its schedule and receives its room's
/// messages until told to stop.
async fn member(
    idx: usize,
    session: Session,
    shared: Arc<Shared>,
    plan: MemberPlan,
    stop: watch::Receiver<bool>,
) -> MemberStats {
    let Session { reader, mut writer } = session;
    let MemberStats { mut sent, mut got } = MemberStats::default();
    let (_, sending) = tokio::join!(
        receive_loop(idx, reader, &shared, &mut got, stop),
        send_loop(idx, &mut writer, &shared, &plan, &mut sent),
    );
    sent.error = sending.err().map(|e| format!("member {idx}: {e}"));
    MemberStats { sent, got }
}

/// Receives the room's messages until stopped, or until the connection
/// fails.
async fn receive_loop(
    idx: usize,
    mut reader: FrameReader,
    shared: &Shared,
    out: &mut Received,
    mut stop: watch::Receiver<bool>,
) {
    *out = Received::new(shared.members);
    let mut latencies = Batch::new(idx);
    let mut unexpected = 0;
    let result = reader
        .read_messages(&mut stop, &mut unexpected, |frame| {
            receive(frame, idx, shared, out, &mut latencies);
        })
        .await;
    out.unexpected = unexpected;
    if let Err(error) = result {
        out.error = Some(format!("member {idx}: {error}"));
        shared.gone[idx].store(true, Ordering::Relaxed);
    }
    latencies.flush(&shared.latencies);
}

/// Accounts for one `MESSAGE`.
fn receive(frame: &Frame, idx: usize, shared: &Shared, out: &mut Received, latencies: &mut Batch) {
    let now = shared.clock.now_ns();
    let (_, first) = shared.room(idx);
    let publisher = |id| usize::try_from(id).ok()?.checked_sub(first);
    let into = (latencies, &shared.latencies);
    if out.take(frame, now, &shared.period, publisher, into).is_some() {
        shared.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

/// Publishes on the member's schedule; records what was sent even when it
/// fails.
async fn send_loop(
    idx: usize,
    writer: &mut FrameWriter,
    shared: &Shared,
    plan: &MemberPlan,
    stats: &mut Sent,
) -> Result<()> {
    stats.times = SendTimes::Schedule(plan.schedule);
    let result = send_all(idx, writer, shared, plan, stats).await;
    shared.sent[idx].store(stats.sent, Ordering::Relaxed);
    shared.done.fetch_add(1, Ordering::Release);
    result
}

/// Writes every message of member `idx` when due, or as soon after as it
/// can (a late wake-up or a blocked write sends what is due at once).
async fn send_all(
    idx: usize,
    writer: &mut FrameWriter,
    shared: &Shared,
    plan: &MemberPlan,
    stats: &mut Sent,
) -> Result<()> {
    let clock = shared.clock;
    let (mut scratch, mut late) = (BytesMut::new(), Vec::new());
    let mut seq: u64 = 0;
    loop {
        match plan.schedule.step(seq, clock.now_ns(), SEND_BATCH) {
            Step::Done => return Ok(()),
            Step::SleepUntil(due) => shared.timer.sleep_until(clock.at(due)).await,
            Step::Send(count) => {
                for n in seq..seq + count {
                    let now = clock.now_ns();
                    writer.push(&plan.message(n, now, &shared.period, stats, &mut scratch)?)?;
                    let due = plan.schedule.at(n);
                    if shared.period.contains(due) {
                        late.push((due, now));
                    }
                }
                shared.lateness.record(idx, &late);
                late.clear();
                tokio::time::timeout(WRITE_TIMEOUT, writer.flush())
                    .await
                    .map_err(|_| Error::new("a write to the broker blocked for 10 s"))??;
                seq += count;
            }
        }
    }
}

impl MemberPlan {
    /// The plan of member `idx` of a run whose sending starts at
    /// `start_ns` and whose measured period ends at `end_ns`.
    fn new(args: &RoomsArgs, idx: usize, start_ns: u64, end_ns: u64) -> Self {
        let room = idx / args.members;
        // Members of one room take slots far apart.
        let slot = (idx % args.members) * args.rooms + room;
        let interval_ns = 1e9 / args.rate_per_member;
        Self {
            // At most u32::MAX members: checked by `validate`.
            publisher: u32::try_from(idx).unwrap_or(u32::MAX),
            destination: Bytes::from(format!("{}{room}", args.topic_prefix)),
            body: args.body,
            schedule: Schedule::new(start_ns, end_ns, interval_ns, slot, args.connections()),
        }
    }

    /// Message `n`, written at `now`: counted as sent in `stats` once it
    /// is encoded, so that the count is right however the member ends.
    fn message(
        &self,
        n: u64,
        now: u64,
        period: &Period,
        stats: &mut Sent,
        scratch: &mut BytesMut,
    ) -> Result<Frame> {
        // `n` < total ≤ u32::MAX: a one-hour run at 1,000,000 msg/s is
        // 3.6e9 messages, so the cast is checked.
        let seq = u32::try_from(n).map_err(|_| Error::new("sequence number above u32"))?;
        let stamp =
            Stamp { publisher: self.publisher, seq, due_ns: self.schedule.at(n), sent_ns: now };
        stats.sent = seq + 1;
        stats.sent_in_window += u64::from(period.contains(now));
        stats.on_schedule += u64::from(period.on_schedule(stamp.due_ns, now));
        Ok(Frame::new(Command::Send)
            .with_header("destination", self.destination.clone())
            .with_body(stamp.body(self.body, scratch)))
    }
}

/// What the members of one room sent and their room mates never received
/// (all of it, for a member whose task failed); adds the undelivered ones
/// due in `period` to `undelivered`, aged to `deadline`.
fn lost_in_room(
    room: &[MemberStats],
    period: &Period,
    deadline: u64,
    undelivered: &mut Undelivered,
) -> u64 {
    let nothing = SeqSet::default();
    let mut lost = 0;
    for receiver in room {
        for (j, sender) in room.iter().enumerate() {
            let sent = u64::from(sender.sent.sent);
            let seen = receiver.got.seen.get(j).unwrap_or(&nothing);
            lost += seen.missing(sent);
            undelivered.add(seen, &sender.sent.times, sent, period, deadline);
        }
    }
    lost
}

/// Adds the counts, rates, latencies and the verdict.
fn summarize(
    report: &mut Report,
    args: &RoomsArgs,
    shared: &Shared,
    stats: &[MemberStats],
    deadline: u64,
) {
    let k = args.members;
    let sent = |f: fn(&Sent) -> u64| stats.iter().map(|s| f(&s.sent)).sum::<u64>();
    let got = |f: fn(&Received) -> u64| stats.iter().map(|s| f(&s.got)).sum::<u64>();
    let mut undelivered = Undelivered::new();
    let lost: u64 = stats
        .chunks(k)
        .map(|room| lost_in_room(room, &shared.period, deadline, &mut undelivered))
        .sum();
    let published = sent(|s| u64::from(s.sent));
    let deliveries = Deliveries {
        published,
        published_in_window: sent(|s| s.sent_in_window),
        expected: published * k as u64,
        received: got(|r| r.received),
        received_in_window: got(|r| r.received_in_window),
        lost,
        duplicates: got(|r| r.duplicates),
        malformed: got(|r| r.malformed + r.unexpected),
    };
    let measured = args.timing.duration;
    let mut verdict = Verdict::default();
    deliveries.add_to(report, measured, &mut verdict);
    LatencyFigures::of(&shared.latencies, &undelivered).add_to(report);
    let target = args.rate_per_member * stats.len() as f64;
    scenario::check_rate(report, &mut verdict, target, measured, sent(|s| s.on_schedule));
    shared.lateness.add_to(report);
    let gone = got(|r| u64::from(r.error.is_some()));
    let send_errors = sent(|s| u64::from(s.error.is_some()));
    report.int("members_gone", "members disconnected", gone);
    report.int("publisher_errors", "publishing errors", send_errors);
    verdict.count(gone, "members disconnected");
    verdict.count(send_errors, "publishing errors");
    let first_error = stats.iter().find_map(|s| s.sent.error.as_deref().or(s.got.error.as_deref()));
    if let Some(error) = first_error {
        report.text("first_error", "first error", error);
    }
    verdict.add_to(report, "ok (no loss, duplicate or error)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_loses_what_a_member_never_received() {
        let member = |sent: u32, got: &[&[u32]]| MemberStats {
            sent: Sent { sent, ..Sent::default() },
            got: Received {
                seen: got
                    .iter()
                    .map(|seqs| {
                        let mut seen = SeqSet::default();
                        for &seq in *seqs {
                            let _ = seen.insert(seq);
                        }
                        seen
                    })
                    .collect(),
                ..Received::default()
            },
        };
        // Two members sending 3 and 2: the first missed message 1 of its
        // own, the second has everything; a third member's task failed
        // after sending 1 (it received nothing: 3 + 2 + 1 lost).
        let room = [
            member(3, &[&[0, 2], &[0, 1], &[0]]),
            member(2, &[&[2, 1, 0], &[1, 0], &[0]]),
            member(1, &[]),
        ];
        let period = Period::unknown();
        period.set(0, u64::MAX);
        let mut undelivered = Undelivered::new();
        assert_eq!(lost_in_room(&room, &period, 1_000, &mut undelivered), 1 + 6);
        assert_eq!(undelivered.count(), 1 + 6, "all of them due in the period");
    }
}
