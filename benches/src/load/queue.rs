//! The `queue` scenario: P producers and C consumers on one queue, each
//! message to be consumed exactly once.
//!
//! 1. **Set-up.** C consumer connections open, each subscribing to the
//!    queue with `ack:client-individual` and a prefetch (`--prefetch N`,
//!    sent as `prefetch-count`, RabbitMQ's name, which our broker honours
//!    too (capped by its `max_unacked`), and as `activemq.prefetchSize` for
//!    ActiveMQ: the same window on all three), receipt awaited. Then P
//!    producer connections open.
//! 2. **Producing**, for `--warmup` then `--duration` seconds, as `fanout`
//!    publishes ([`publisher`](super::publisher)): at `--rate` messages/s
//!    in total on a fixed schedule (open loop), or as fast as the receipt
//!    window and the consumer lag bound allow (a producer runs at most
//!    `--max-lag` messages ahead of what the consumers have taken of its
//!    messages). Every `SEND` carries a `stomp-load-run` header unique to
//!    the run.
//! 3. **Consuming**: each consumer `ACK`s every `MESSAGE` (`id` = its
//!    `ack` header), the acknowledgements of one read written together.
//! 4. **Drain**: once producing stops, consumers get up to
//!    `--drain-timeout` seconds to take the rest, then disconnect (with a
//!    receipt, so that the acknowledgements are processed).
//!
//! The sequence numbers consumed of each producer are recorded across
//! consumers ([`SeqSet`]): one consumed twice is a **duplicate**, or
//! **redelivered** when the broker marked the second delivery
//! `redelivered:true` (after a consumer left without acknowledging it);
//! one produced but never consumed is **lost**. Messages of an earlier
//! run (another `stomp-load-run`, left in a broker's durable queue) are
//! acknowledged and counted apart as **stale**. Latency is receive time
//! minus the stamp's due time (and, apart, minus its write time), for
//! messages due in the measured period, at their first consumption.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use stomp_codec::{Command, Frame};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::body::{STAMP_LEN, Stamp};
use super::client::{Session, error_frame};
use super::publisher::{Pacing, Progress};
use super::report::Report;
use super::scenario::{self, Course, Publishing, Roles, Verdict};
use super::seq::{Mark, SeqSet};
use super::stats::{Batch, LatencyFigures, MessageLatencies, Undelivered};
use super::{Clock, Common, Error, Period, Result, Timing};

/// Options of the `queue` scenario.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct QueueArgs {
    /// Producer connections.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Consumer connections, one subscription each.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Body size in octets (at least 24, the stamp).
    #[arg(long, default_value_t = 100)]
    body: usize,
    /// Unacknowledged messages a consumer may hold (`prefetch-count` and
    /// `activemq.prefetchSize` on `SUBSCRIBE`).
    #[arg(long, default_value_t = 100)]
    prefetch: u32,
    #[command(flatten)]
    pacing: Pacing,
    #[command(flatten)]
    timing: Timing,
    /// The queue.
    #[arg(long, default_value = "/queue/bench")]
    queue: String,
}

/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// Longest wait for a write to the broker.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the receipt of a consumer's `DISCONNECT`.
const BYE_TIMEOUT: Duration = Duration::from_secs(2);
/// The header naming the run on every message.
const RUN_HEADER: &str = "stomp-load-run";

impl QueueArgs {
    fn validate(&self) -> Result<()> {
        let fail = |m: &str| Err(Error::new(m.to_owned()));
        if self.producers == 0 || self.consumers == 0 {
            return fail("--producers and --consumers must be at least 1");
        }
        if u32::try_from(self.producers).is_err() {
            return fail("too many producers");
        }
        if self.body < STAMP_LEN {
            return fail("--body must be at least 24 octets (the stamp)");
        }
        if self.prefetch == 0 {
            return fail("--prefetch must be at least 1");
        }
        if !self.queue.starts_with('/') {
            return fail("--queue must be a destination such as /queue/bench");
        }
        self.pacing.validate(&self.timing, self.producers)?;
        self.timing.validate()
    }
}

/// What the consumers have taken of one producer's messages.
#[derive(Debug, Default)]
struct Taken {
    seen: Mutex<SeqSet>,
    /// Distinct messages taken (`seen`'s length, readable without the
    /// lock).
    count: AtomicU64,
    notify: Notify,
}

impl Progress for Taken {
    fn floor(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn notify(&self) -> &Notify {
        &self.notify
    }
}

/// What producers and consumers share.
#[derive(Debug)]
struct Shared {
    clock: Clock,
    latencies: MessageLatencies,
    period: Period,
    /// One per producer, shared with it.
    taken: Vec<Arc<Taken>>,
    /// This run's `stomp-load-run` value.
    run: Bytes,
    /// Consumers wake producers every this many messages.
    notify_step: u64,
}

impl Shared {
    /// Distinct messages taken, all producers together.
    fn taken(&self) -> u64 {
        self.taken.iter().map(|t| t.count.load(Ordering::Relaxed)).sum()
    }
}

/// What one consumer saw.
#[derive(Debug, Default)]
struct ConsumerStats {
    /// Messages of this run consumed for the first time.
    consumed: u64,
    consumed_in_window: u64,
    duplicates: u64,
    redelivered: u64,
    stale: u64,
    malformed: u64,
    unexpected: u64,
    /// Whether the `DISCONNECT` at the end went unanswered.
    unconfirmed_bye: bool,
    error: Option<String>,
}

impl ConsumerStats {
    /// A consumer whose task failed.
    fn failed(error: String) -> Self {
        Self { error: Some(error), ..Self::default() }
    }
}

/// Runs the scenario.
pub(crate) async fn run(common: &Common, args: &QueueArgs) -> Result<Report> {
    args.validate()?;
    common.check_capacity(args.producers + args.consumers)?;
    let clock = Clock::new();
    let shared = Arc::new(Shared {
        clock,
        latencies: MessageLatencies::new(16),
        period: Period::unknown(),
        taken: (0..args.producers).map(|_| Arc::default()).collect(),
        run: run_id(),
        notify_step: u64::from((args.pacing.max_lag / 4).max(1)),
    });

    // 1. Consumers, all subscribed; then producers.
    let setup = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let consumers = open_consumers(common, args)
        .await?
        .into_iter()
        .enumerate()
        .map(|(idx, session)| tokio::spawn(consume(idx, session, shared.clone(), stop_rx.clone())))
        .collect::<Vec<JoinHandle<ConsumerStats>>>();
    let producers = common
        .open_sessions(args.producers, "producers", |idx, login| {
            let (target, source) = (common.target(), common.source(args.consumers + idx));
            async move { Session::connect(target, &login, source, READ_CHUNK).await }
        })
        .await?;
    let setup_secs = setup.elapsed().as_secs_f64();

    // 2. Producing, and 3. the drain.
    let publishing = Publishing {
        common,
        pacing: &args.pacing,
        timing: &args.timing,
        destination: Bytes::from(args.queue.clone()),
        headers: Arc::new([(RUN_HEADER, shared.run.clone())]),
        body: args.body,
    };
    let taken: Vec<Arc<dyn Progress>> =
        shared.taken.iter().map(|t| t.clone() as Arc<dyn Progress>).collect();
    let course = publishing
        .run(clock, &shared.period, producers, &taken, |pubs| {
            shared.taken() >= pubs.iter().map(|p| u64::from(p.sent)).sum()
        })
        .await?;
    let _ = stop_tx.send(true);
    let con_stats = scenario::join_all(consumers, ConsumerStats::failed).await;

    let mut report = Report::new("queue");
    report.text("queue", "queue", args.queue.clone());
    report.int("producers", "producers", args.producers as u64);
    report.int("consumers", "consumers", args.consumers as u64);
    report.int("body_bytes", "body (octets)", args.body as u64);
    report.int("prefetch", "prefetch", u64::from(args.prefetch));
    scenario::add_pacing(&mut report, &args.pacing, &args.timing, Roles::Queue, setup_secs);
    summarize(&mut report, args, &shared, &course, &con_stats);
    course.add_drain(&mut report, &args.timing);
    Ok(report)
}

/// A value for `stomp-load-run` that no earlier run used: the wall clock
/// in nanoseconds and this process's id.
fn run_id() -> Bytes {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    Bytes::from(format!("{nanos:x}-{}", std::process::id()))
}

/// Opens the consumers, each subscribed (receipt awaited).
async fn open_consumers(common: &Common, args: &QueueArgs) -> Result<Vec<Session>> {
    let prefetch = args.prefetch.to_string();
    common
        .open_sessions(args.consumers, "consumers", |idx, login| {
            let (target, source) = (common.target(), common.source(idx));
            let queue = args.queue.clone();
            let extra =
                [("prefetch-count", prefetch.clone()), ("activemq.prefetchSize", prefetch.clone())];
            async move {
                let mut session = Session::connect(target, &login, source, READ_CHUNK).await?;
                session.subscribe_with("0", &queue, "client-individual", &extra).await?;
                Ok(session)
            }
        })
        .await
}

/// One consumer: takes and acknowledges messages until stopped, then
/// disconnects.
async fn consume(
    idx: usize,
    mut session: Session,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> ConsumerStats {
    let mut stats = ConsumerStats::default();
    let mut latencies = Batch::new(idx);
    let result = loop {
        let frame = tokio::select! {
            biased;
            frame = session.reader.next_frame() => frame,
            _ = stop.changed() => break Ok(()),
        };
        let handled = async {
            let mut frame = frame?;
            while let Some(f) = frame {
                take(&f, &mut session, &shared, &mut stats, &mut latencies)?;
                frame = session.reader.next_buffered()?;
            }
            tokio::time::timeout(WRITE_TIMEOUT, session.writer.flush())
                .await
                .map_err(|_| Error::new("a write to the broker blocked for 10 s"))?
        };
        if let Err(error) = handled.await {
            break Err(error);
        }
    };
    latencies.flush(&shared.latencies);
    match result {
        Ok(()) => stats.unconfirmed_bye = !disconnect(&mut session).await,
        Err(error) => stats.error = Some(format!("consumer {idx}: {error}")),
    }
    stats
}

/// Accounts for one frame, and queues the `ACK` of a `MESSAGE`. The end
/// of the connection, or an `ERROR` frame, is an error.
fn take(
    frame: &Frame,
    session: &mut Session,
    shared: &Shared,
    stats: &mut ConsumerStats,
    latencies: &mut Batch,
) -> Result<()> {
    match frame.command() {
        Command::Message => {}
        Command::Error => return Err(error_frame(frame)),
        _ => {
            stats.unexpected += 1;
            return Ok(());
        }
    }
    let Some(ack) = frame.header("ack") else {
        stats.malformed += 1;
        return Err(Error::new("a MESSAGE without an ack header (STOMP 1.2 requires one)"));
    };
    session
        .writer
        .push(&Frame::new(Command::Ack).with_header("id", Bytes::copy_from_slice(ack)))?;
    if frame.header(RUN_HEADER) != Some(&shared.run[..]) {
        stats.stale += 1;
        return Ok(());
    }
    account(frame, shared, stats, latencies);
    Ok(())
}

/// Records a message of this run as taken.
fn account(frame: &Frame, shared: &Shared, stats: &mut ConsumerStats, latencies: &mut Batch) {
    let now = shared.clock.now_ns();
    let found = Stamp::read(frame.body()).and_then(|stamp| {
        let taken = shared.taken.get(usize::try_from(stamp.publisher).ok()?)?;
        Some((stamp, taken))
    });
    let Some((stamp, taken)) = found else {
        stats.malformed += 1;
        return;
    };
    let mark =
        taken.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(stamp.seq);
    match mark {
        Mark::New => {
            let count = taken.count.fetch_add(1, Ordering::Relaxed) + 1;
            if count.is_multiple_of(shared.notify_step) {
                taken.notify.notify_one();
            }
            stats.consumed += 1;
            if shared.period.contains(now) {
                stats.consumed_in_window += 1;
            }
            if shared.period.contains(stamp.due_ns) {
                latencies.push(&stamp, now, &shared.latencies);
            }
        }
        Mark::Again if frame.header("redelivered") == Some(b"true") => stats.redelivered += 1,
        Mark::Again => stats.duplicates += 1,
        Mark::TooFar => stats.malformed += 1,
    }
}

/// Sends `DISCONNECT` and waits for its receipt, or for the broker to
/// close the connection (RabbitMQ's Web-STOMP closes without the receipt),
/// so that the broker has processed every `ACK` before this side closes.
/// Returns whether either came.
async fn disconnect(session: &mut Session) -> bool {
    let bye = async {
        let frame = Frame::new(Command::Disconnect).with_header("receipt", "bye");
        session.writer.send(&frame).await?;
        loop {
            match session.reader.next_frame().await? {
                Some(frame) if frame.command() == Command::Receipt => return Ok(()),
                Some(_) => {}
                None => return Ok(()),
            }
        }
    };
    matches!(tokio::time::timeout(BYE_TIMEOUT, bye).await, Ok(Ok::<_, Error>(())))
}

/// Adds the counts, rates, latencies and the verdict.
fn summarize(
    report: &mut Report,
    args: &QueueArgs,
    shared: &Shared,
    course: &Course,
    consumers: &[ConsumerStats],
) {
    let (mut lost, mut undelivered) = (0, Undelivered::new());
    for (producer, taken) in course.publishers.iter().zip(&shared.taken) {
        let seen = taken.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let sent = u64::from(producer.sent);
        lost += seen.missing(sent);
        undelivered.add(&seen, &producer.times, sent, &shared.period, course.deadline_ns);
    }
    let sum = |f: fn(&ConsumerStats) -> u64| consumers.iter().map(f).sum::<u64>();
    let measured = args.timing.duration;
    let mut verdict = Verdict::default();
    report.int("produced", "produced (all)", course.published());
    let produced_per_s = course.published_in_window() as f64 / measured;
    report.float("produced_per_s", "produced/s", produced_per_s, 0, "msg/s");
    let consumed_per_s = sum(|c| c.consumed_in_window) as f64 / measured;
    report.float("consumed_per_s", "consumed/s", consumed_per_s, 0, "msg/s");
    report.int("consumed", "consumed (all, distinct)", sum(|c| c.consumed));
    add_shares(report, consumers);
    report.int("lost", "lost", lost);
    report.int("duplicates", "duplicates", sum(|c| c.duplicates));
    report.int("redelivered", "redelivered (consumed again)", sum(|c| c.redelivered));
    report.int("stale", "stale (earlier runs)", sum(|c| c.stale));
    report.int("malformed", "malformed or unexpected frames", sum(|c| c.malformed + c.unexpected));
    verdict.count(lost, "lost");
    verdict.count(sum(|c| c.duplicates), "duplicates");
    verdict.count(sum(|c| c.malformed + c.unexpected), "malformed or unexpected frames");
    LatencyFigures::of(&shared.latencies, &undelivered).add_to(report);
    if let Some(rate) = args.pacing.rate {
        let produced = course.on_schedule();
        scenario::check_rate(report, &mut verdict, rate, measured, produced);
        course.add_lateness(report);
    }
    course.add_waits(report, Roles::Queue);
    add_errors(report, &mut verdict, course, consumers);
    verdict.add_to(report, "ok (no loss, duplicate or error)");
}

/// Adds how many messages the least and the most busy consumer took.
fn add_shares(report: &mut Report, consumers: &[ConsumerStats]) {
    let mut each: Vec<u64> = consumers.iter().map(|c| c.consumed).collect();
    each.sort_unstable();
    let least = each.first().copied().unwrap_or(0);
    let most = each.last().copied().unwrap_or(0);
    report.int("consumed_min", "consumed by the least busy consumer", least);
    report.int("consumed_max", "consumed by the busiest consumer", most);
}

/// Adds the errors of consumers and producers, and the first of them.
fn add_errors(
    report: &mut Report,
    verdict: &mut Verdict,
    course: &Course,
    consumers: &[ConsumerStats],
) {
    let consumer_errors = consumers.iter().filter(|c| c.error.is_some()).count() as u64;
    report.int("consumer_errors", "consumer errors", consumer_errors);
    let unconfirmed = consumers.iter().filter(|c| c.unconfirmed_bye).count() as u64;
    report.int("unconfirmed_disconnects", "DISCONNECT without receipt or close", unconfirmed);
    report.int("producer_errors", "producer errors", course.errors());
    verdict.count(consumer_errors, "consumer errors");
    verdict.count(course.errors(), "producer errors");
    let first_error =
        course.first_error().or_else(|| consumers.iter().find_map(|c| c.error.as_deref()));
    if let Some(error) = first_error {
        report.text("first_error", "first error", error);
    }
}
