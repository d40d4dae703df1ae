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
//!    members at 1 msg/s do not all send in the same millisecond. Bodies
//!    carry a [`Stamp`] (the publisher is the member's number).
//! 3. **Drain**: once publishing stops, members get up to
//!    `--drain-timeout` seconds to receive the rest.
//!
//! Every member receives every message of its room, its own included, so
//! K deliveries are expected per message. Each member records, per
//! publisher of its room, the sequence numbers seen ([`SeqSet`]): one seen
//! before is a duplicate, one sent but never seen is lost. Latency is
//! receive time minus the stamp's send time, for messages sent in the
//! measured period.
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
use super::client::{FrameReader, FrameWriter, Session, error_frame};
use super::fanout::Deliveries;
use super::report::Report;
use super::stats::{Batch, Latencies, Mark, SeqSet, Summary};
use super::{
    Clock, Common, CpuTimes, Error, Period, Result, Timing, f64_to_u64, secs_to_ns, wait_until,
};

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
    /// Body size in octets (at least 16).
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
            return fail("--body must be at least 16 octets (the stamp)");
        }
        if !(self.rate_per_member > 0.0 && self.rate_per_member <= 1e6) {
            return fail("--rate-per-member must be positive (at most 1,000,000)");
        }
        self.timing.validate()
    }
}

/// When one member's messages are due: message `n` at
/// `start + offset + n × interval`, none at or after `end`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Schedule {
    start_ns: u64,
    end_ns: u64,
    /// Where in the first interval this member starts.
    offset_ns: f64,
    interval_ns: f64,
}

impl Schedule {
    /// The schedule of the member in `slot` of `slots`, which starts
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
}

/// What all members share.
#[derive(Debug)]
struct Shared {
    clock: Clock,
    latencies: Latencies,
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

/// What a member's sending half did.
#[derive(Debug, Default)]
struct Sent {
    sent: u32,
    sent_in_window: u64,
    error: Option<String>,
}

/// What a member's receiving half saw.
#[derive(Debug, Default)]
struct Received {
    received: u64,
    received_in_window: u64,
    duplicates: u64,
    malformed: u64,
    unexpected: u64,
    /// Per member of its room: the sequence numbers received.
    seen: Vec<SeqSet>,
    error: Option<String>,
}

/// Runs the scenario.
pub(crate) async fn run(common: &Common, args: &RoomsArgs) -> Result<Report> {
    args.validate()?;
    let connections = args.connections();
    common.check_capacity(connections)?;
    let clock = Clock::new();
    let shared = Arc::new(Shared {
        clock,
        latencies: Latencies::new(16),
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
    let interval_ns = 1e9 / args.rate_per_member;
    let destination = |room: usize| Bytes::from(format!("{}{room}", args.topic_prefix));
    let tasks: Vec<JoinHandle<MemberStats>> = sessions
        .into_iter()
        .enumerate()
        .map(|(idx, session)| {
            let (room, _) = shared.room(idx);
            // Members of one room take slots far apart.
            let slot = (idx % args.members) * args.rooms + room;
            let plan = MemberPlan {
                destination: destination(room),
                body: args.body,
                schedule: Schedule::new(start_ns, window_end, interval_ns, slot, connections),
            };
            tokio::spawn(member(idx, session, shared.clone(), plan, stop_rx.clone()))
        })
        .collect();
    tokio::time::sleep_until(clock.instant(window_start)).await;
    let cpu_before = CpuTimes::now(common);
    tokio::time::sleep_until(clock.instant(window_end)).await;
    let cpu_after = CpuTimes::now(common);

    // 3. Drain.
    let (drained, drain_secs) = wait_drained(&shared, connections, args.timing.drain_timeout).await;
    let _ = stop_tx.send(true);
    let mut stats = Vec::with_capacity(tasks.len());
    for task in tasks {
        stats.push(task.await.unwrap_or_else(|e| {
            let error = Some(format!("member task failed: {e}"));
            MemberStats { got: Received { error, ..Received::default() }, ..MemberStats::default() }
        }));
    }

    let mut report = Report::new("rooms");
    report.int("rooms", "rooms", args.rooms as u64);
    report.int("members", "members per room", args.members as u64);
    report.int("connections", "connections", connections as u64);
    report.float("rate_per_member", "rate per member", args.rate_per_member, 2, "msg/s");
    report.float(
        "target_rate_per_s",
        "target rate (all members)",
        args.rate_per_member * connections as f64,
        1,
        "msg/s",
    );
    report.int("body_bytes", "body (octets)", args.body as u64);
    report.float("warmup_s", "warm-up", args.timing.warmup, 1, "s");
    report.float("duration_s", "measured", args.timing.duration, 1, "s");
    report.float("setup_s", "set-up (all subscribed)", setup_secs, 2, "s");
    summarize(&mut report, args, &shared, &stats);
    report.bool("drained", "drained in time", drained);
    report.float("drain_s", "drain", drain_secs, 2, "s");
    CpuTimes::report(cpu_before, cpu_after, args.timing.duration, &mut report);
    Ok(report)
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
    out.seen = vec![SeqSet::default(); shared.members];
    let mut latencies = Batch::new(idx);
    loop {
        let frame = tokio::select! {
            biased;
            frame = reader.next_frame() => frame,
            _ = stop.changed() => break,
        };
        let error = match frame {
            Ok(Some(frame)) if frame.command() == Command::Message => {
                receive(&frame, idx, shared, out, &mut latencies);
                continue;
            }
            Ok(Some(frame)) if frame.command() == Command::Error => error_frame(&frame).to_string(),
            Ok(Some(_)) => {
                out.unexpected += 1;
                continue;
            }
            Ok(None) => "the broker closed the connection".to_owned(),
            Err(error) => error.to_string(),
        };
        out.error = Some(format!("member {idx}: {error}"));
        shared.gone[idx].store(true, Ordering::Relaxed);
        break;
    }
    latencies.flush(&shared.latencies);
}

/// Accounts for one `MESSAGE`.
fn receive(frame: &Frame, idx: usize, shared: &Shared, out: &mut Received, latencies: &mut Batch) {
    let now = shared.clock.now_ns();
    let (_, first) = shared.room(idx);
    let publisher = Stamp::read(frame.body()).and_then(|stamp| {
        let p = usize::try_from(stamp.publisher).ok()?.checked_sub(first)?;
        (p < shared.members).then_some((stamp, p))
    });
    let Some((stamp, p)) = publisher else {
        out.malformed += 1;
        return;
    };
    out.received += 1;
    if shared.period.contains(now) {
        out.received_in_window += 1;
    }
    match out.seen[p].insert(stamp.seq) {
        Mark::New => {
            shared.delivered.fetch_add(1, Ordering::Relaxed);
            if shared.period.contains(stamp.sent_ns) {
                latencies.push(now.saturating_sub(stamp.sent_ns), &shared.latencies);
            }
        }
        Mark::Again => out.duplicates += 1,
        Mark::TooFar => out.malformed += 1,
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
    let result = send_all(idx, writer, shared, plan, stats).await;
    shared.sent[idx].store(stats.sent, Ordering::Relaxed);
    shared.done.fetch_add(1, Ordering::Release);
    result
}

async fn send_all(
    idx: usize,
    writer: &mut FrameWriter,
    shared: &Shared,
    plan: &MemberPlan,
    stats: &mut Sent,
) -> Result<()> {
    let clock = shared.clock;
    let schedule = &plan.schedule;
    let total = schedule.total();
    let publisher = u32::try_from(idx).map_err(|_| Error::new("member number above u32"))?;
    let mut scratch = BytesMut::new();
    let mut seq: u64 = 0;
    while seq < total {
        let due = schedule.due(clock.now_ns());
        if due <= seq {
            tokio::time::sleep_until(clock.instant(schedule.at(seq))).await;
            continue;
        }
        let batch = (due - seq).min(SEND_BATCH);
        let mut in_window = 0;
        for n in seq..seq + batch {
            let sent_ns = clock.now_ns();
            // `n` < total ≤ u32::MAX: a one-hour run at 1,000,000 msg/s
            // is 3.6e9 messages, so the cast is checked.
            let seq = u32::try_from(n).map_err(|_| Error::new("sequence number above u32"))?;
            let body = Stamp { publisher, seq, sent_ns }.body(plan.body, &mut scratch);
            let frame = Frame::new(Command::Send)
                .with_header("destination", plan.destination.clone())
                .with_body(body);
            writer.push(&frame)?;
            in_window += u64::from(shared.period.contains(sent_ns));
        }
        tokio::time::timeout(WRITE_TIMEOUT, writer.flush())
            .await
            .map_err(|_| Error::new("a write to the broker blocked for 10 s"))??;
        seq += batch;
        stats.sent = u32::try_from(seq).unwrap_or(u32::MAX);
        stats.sent_in_window += in_window;
    }
    Ok(())
}

/// What the members of one room sent and their room mates never received
/// (all of it, for a member whose task failed).
fn lost_in_room(room: &[MemberStats]) -> u64 {
    let mut lost = 0;
    for receiver in room {
        for (j, sender) in room.iter().enumerate() {
            let sent = u64::from(sender.sent.sent);
            lost += receiver.got.seen.get(j).map_or(sent, |seen| seen.missing(sent));
        }
    }
    lost
}

/// Adds the counts, rates and latencies.
fn summarize(report: &mut Report, args: &RoomsArgs, shared: &Shared, stats: &[MemberStats]) {
    let k = args.members;
    let sent = |f: fn(&Sent) -> u64| stats.iter().map(|s| f(&s.sent)).sum::<u64>();
    let got = |f: fn(&Received) -> u64| stats.iter().map(|s| f(&s.got)).sum::<u64>();
    let published = sent(|s| u64::from(s.sent));
    let published_in_window = sent(|s| s.sent_in_window);
    let received = got(|r| r.received);
    let in_window = got(|r| r.received_in_window);
    let lost: u64 = stats.chunks(k).map(lost_in_room).sum();
    let duplicates = got(|r| r.duplicates);
    let malformed = got(|r| r.malformed + r.unexpected);
    let gone = got(|r| u64::from(r.error.is_some()));
    let send_errors = sent(|s| u64::from(s.error.is_some()));
    let measured = args.timing.duration;

    let deliveries = Deliveries {
        published,
        published_in_window,
        expected: published * k as u64,
        received,
        received_in_window: in_window,
        lost,
        duplicates,
        malformed,
    };
    deliveries.add_to(report, measured);
    Summary::of(&shared.latencies.merged()).add_to(report);
    report.int("members_gone", "members disconnected", gone);
    report.int("publisher_errors", "publishing errors", send_errors);
    let first_error = stats.iter().find_map(|s| s.sent.error.as_deref().or(s.got.error.as_deref()));
    if let Some(error) = first_error {
        report.text("first_error", "first error", error);
    }
    report.bool("ok", "ok (no loss, duplicate or error)", {
        lost == 0 && duplicates == 0 && malformed == 0 && gone == 0 && send_errors == 0
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_fixed_and_staggered() {
        // 5,000 members at 1 msg/s for 3 s.
        let (start, end) = (1_000, 1_000 + 3_000_000_000);
        let members = 5_000;
        let schedules: Vec<_> =
            (0..members).map(|slot| Schedule::new(start, end, 1e9, slot, members)).collect();
        // Each member: 3 messages, exactly one interval apart.
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
        assert_eq!(lost_in_room(&room), 1 + 6);
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
}
