//! The `fanout` scenario: P publishers send to one topic that S
//! subscribers listen to.
//!
//! 1. **Set-up.** S connections open (at most `--connect-batch` at a
//!    time), each with one `SUBSCRIBE` whose receipt is awaited, so every
//!    subscription is live before anything is published. Then P publisher
//!    connections open.
//! 2. **Publishing**, for `--warmup` then `--duration` seconds (see
//!    [`publisher`](super::publisher)). Each body carries a
//!    [`Stamp`](super::body::Stamp). Either at `--rate` messages/s in
//!    total on a fixed schedule (open loop), or as fast as two bounds
//!    allow:
//!    - **receipt window**: every `--receipt-every`-th `SEND` asks for a
//!      receipt, and a publisher keeps at most `--window` messages not yet
//!      covered by one (this bounds what waits in the broker's input);
//!    - **delivery lag** (`--max-lag`, 0 for none): a publisher runs at
//!      most that many messages ahead of its slowest live subscriber.
//!      Receipts say a message was routed, not delivered: without this
//!      bound, subscribers that fall behind fill their outboxes in the
//!      broker until the slow-consumer policy drops them.
//! 3. **Drain**: once publishing stops, subscribers get up to
//!    `--drain-timeout` seconds to receive everything sent.
//!
//! Each subscriber records, per publisher, the sequence numbers seen
//! ([`SeqSet`]), in any order: one seen before is a duplicate, one sent and
//! never seen by the end is lost; a late one fills its gap. Latency is
//! receive time minus the stamp's due time (and, apart, minus its write
//! time), at the first arrival of messages due in the measured period.
//! Rates count what was sent (published/s) and received by all subscribers
//! together (deliveries/s) in the measured period.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use bytes::Bytes;
use stomp_codec::Frame;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::body::STAMP_LEN;
use super::client::Session;
use super::publisher::{Pacing, Progress, PubStats};
use super::report::Report;
use super::scenario::{self, Course, Deliveries, Publishing, Received, Roles, Verdict};
use super::seq::SeqSet;
use super::stats::{Batch, LatencyFigures, MessageLatencies, Undelivered};
use super::{Clock, Common, Error, Period, Result, Timing};

/// Options of the `fanout` scenario.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FanoutArgs {
    /// Subscriber connections, one subscription each.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Publisher connections.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Body size in octets (at least 24, the stamp).
    #[arg(long, default_value_t = 100)]
    body: usize,
    #[command(flatten)]
    pacing: Pacing,
    #[command(flatten)]
    timing: Timing,
    /// The topic.
    #[arg(long, default_value = "/topic/load.fanout")]
    topic: String,
    /// Publishers connect here instead of `--target` (subscribers stay on
    /// `--target`): another node of the same cluster, to measure delivery
    /// across nodes through a backplane.
    #[arg(long)]
    publish_target: Option<std::net::SocketAddr>,
}

/// Read buffer growth step of subscribers and publishers.
const READ_CHUNK: usize = 16 * 1024;
/// A subscriber's progress once it is gone: it no longer holds anyone back.
const GONE: u32 = u32::MAX;

impl FanoutArgs {
    fn validate(&self) -> Result<()> {
        let fail = |m: &str| Err(Error::new(m.to_owned()));
        if self.subscribers == 0 || self.publishers == 0 {
            return fail("--subscribers and --publishers must be at least 1");
        }
        if self.body < STAMP_LEN {
            return fail("--body must be at least 24 octets (the stamp)");
        }
        if u32::try_from(self.publishers).is_err() {
            return fail("too many publishers");
        }
        self.pacing.validate(&self.timing, self.publishers)?;
        self.timing.validate()
    }
}

/// One publisher's progress as its subscribers see it.
#[derive(Debug)]
struct Flow {
    /// Per subscriber: how many of the publisher's messages it has seen
    /// ([`GONE`] once it has left).
    progress: Vec<AtomicU32>,
    /// Woken when a subscriber's progress crosses a multiple of the step.
    notify: Notify,
}

impl Progress for Flow {
    fn floor(&self) -> u64 {
        self.progress.iter().map(|p| u64::from(p.load(Ordering::Relaxed))).min().unwrap_or(0)
    }

    fn notify(&self) -> &Notify {
        &self.notify
    }
}

/// What publishers and subscribers share.
#[derive(Debug)]
struct Shared {
    clock: Clock,
    /// One per publisher, shared with it.
    flows: Vec<Arc<Flow>>,
    latencies: MessageLatencies,
    /// The measured period.
    period: Period,
    /// Subscribers wake publishers every this many messages.
    notify_step: u32,
}

/// Runs the scenario.
pub(crate) async fn run(common: &Common, args: &FanoutArgs) -> Result<Report> {
    args.validate()?;
    common.check_capacity(args.subscribers + args.publishers)?;
    let clock = Clock::new();
    let shared = Arc::new(Shared {
        clock,
        flows: (0..args.publishers)
            .map(|_| {
                Arc::new(Flow {
                    progress: (0..args.subscribers).map(|_| AtomicU32::new(0)).collect(),
                    notify: Notify::new(),
                })
            })
            .collect(),
        latencies: MessageLatencies::new(16),
        period: Period::unknown(),
        notify_step: (args.pacing.max_lag / 4).max(1),
    });

    // 1. Subscribers, all live before anything is published.
    let setup = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let subscribers = open_subscribers(common, args, &shared, &stop_rx).await?;
    let publishers = open_publishers(common, args).await?;
    let setup_secs = setup.elapsed().as_secs_f64();

    // 2. Publishing, and 3. the drain.
    let publishing = Publishing {
        common,
        pacing: &args.pacing,
        timing: &args.timing,
        destination: Bytes::from(args.topic.clone()),
        headers: Arc::new([]),
        body: args.body,
    };
    let flows: Vec<Arc<dyn Progress>> =
        shared.flows.iter().map(|f| f.clone() as Arc<dyn Progress>).collect();
    let course = publishing
        .run(clock, &shared.period, publishers, &flows, |pubs| caught_up(&shared, pubs))
        .await?;
    let _ = stop_tx.send(true);
    let sub_stats = scenario::join_all(subscribers, Received::failed).await;

    let mut report = Report::new("fanout");
    report.int("subscribers", "subscribers", args.subscribers as u64);
    report.int("publishers", "publishers", args.publishers as u64);
    report.int("body_bytes", "body (octets)", args.body as u64);
    if let Some(addr) = args.publish_target {
        report.text("publish_target", "publishers on", addr.to_string());
    }
    scenario::add_pacing(&mut report, &args.pacing, &args.timing, Roles::Fanout, setup_secs);
    summarize(&mut report, args, &shared, &course, &sub_stats);
    course.add_drain(&mut report, &args.timing);
    Ok(report)
}

/// Opens the publishers' connections, one after the other.
async fn open_publishers(common: &Common, args: &FanoutArgs) -> Result<Vec<Session>> {
    let mut publishers = Vec::with_capacity(args.publishers);
    let login = common.login();
    for p in 0..args.publishers {
        let source = common.source(args.subscribers + p);
        let mut target = common.target();
        if let Some(addr) = args.publish_target {
            target.addr = addr;
        }
        let open = Session::connect(target, &login, source, READ_CHUNK);
        let session = tokio::time::timeout(common.connect_timeout(), open)
            .await
            .map_err(|_| Error::new("timed out opening a publisher connection"))??;
        publishers.push(session);
    }
    Ok(publishers)
}

/// Whether every live subscriber has seen everything sent.
fn caught_up(shared: &Shared, publishers: &[PubStats]) -> bool {
    shared.flows.iter().zip(publishers).all(|(flow, publisher)| {
        flow.progress.iter().all(|p| {
            let p = p.load(Ordering::Relaxed);
            p == GONE || p >= publisher.sent
        })
    })
}

/// Adds the counts, rates, latencies and the verdict.
fn summarize(
    report: &mut Report,
    args: &FanoutArgs,
    shared: &Shared,
    course: &Course,
    subscribers: &[Received],
) {
    let publishers = &course.publishers;
    let (mut lost, mut undelivered) = (0, Undelivered::new());
    // A subscriber whose task failed saw nothing.
    let nothing = SeqSet::default();
    for subscriber in subscribers {
        for (p, publisher) in publishers.iter().enumerate() {
            let seen = subscriber.seen.get(p).unwrap_or(&nothing);
            let sent = u64::from(publisher.sent);
            lost += seen.missing(sent);
            undelivered.add(seen, &publisher.times, sent, &shared.period, course.deadline_ns);
        }
    }
    let sum = |f: fn(&Received) -> u64| subscribers.iter().map(f).sum::<u64>();
    let deliveries = Deliveries {
        published: course.published(),
        published_in_window: course.published_in_window(),
        expected: course.published() * subscribers.len() as u64,
        received: sum(|s| s.received),
        received_in_window: sum(|s| s.received_in_window),
        lost,
        duplicates: sum(|s| s.duplicates),
        malformed: sum(|s| s.malformed + s.unexpected),
    };
    let mut verdict = Verdict::default();
    deliveries.add_to(report, args.timing.duration, &mut verdict);
    LatencyFigures::of(&shared.latencies, &undelivered).add_to(report);
    if let Some(rate) = args.pacing.rate {
        let published = course.on_schedule();
        scenario::check_rate(report, &mut verdict, rate, args.timing.duration, published);
        course.add_lateness(report);
    }
    course.add_waits(report, Roles::Fanout);
    let gone = subscribers.iter().filter(|s| s.error.is_some()).count() as u64;
    report.int("subscribers_gone", "subscribers disconnected", gone);
    report.int("publisher_errors", "publisher errors", course.errors());
    verdict.count(gone, "subscribers disconnected");
    verdict.count(course.errors(), "publisher errors");
    let first_error =
        course.first_error().or_else(|| subscribers.iter().find_map(|s| s.error.as_deref()));
    if let Some(error) = first_error {
        report.text("first_error", "first error", error);
    }
    verdict.add_to(report, "ok (no loss, duplicate or error)");
}

/// Opens the subscribers, each subscribed (receipt awaited), and starts
/// their tasks.
async fn open_subscribers(
    common: &Common,
    args: &FanoutArgs,
    shared: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<Received>>> {
    let topic: Arc<str> = args.topic.as_str().into();
    let sessions = common
        .open_sessions(args.subscribers, "subscribers", |idx, login| {
            let (target, source, topic) = (common.target(), common.source(idx), topic.clone());
            async move {
                let mut session = Session::connect(target, &login, source, READ_CHUNK).await?;
                session.subscribe("0", &topic).await?;
                Ok(session)
            }
        })
        .await?;
    Ok(sessions
        .into_iter()
        .enumerate()
        .map(|(idx, session)| tokio::spawn(subscribe(idx, session, shared.clone(), stop.clone())))
        .collect())
}

/// One subscriber: receive until stopped.
async fn subscribe(
    idx: usize,
    mut session: Session,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Received {
    let mut stats = Received::new(shared.flows.len());
    let mut latencies = Batch::new(idx);
    let mut unexpected = 0;
    let result = session
        .reader
        .read_messages(&mut stop, &mut unexpected, |frame| {
            receive(frame, idx, &shared, &mut stats, &mut latencies);
        })
        .await;
    stats.unexpected = unexpected;
    latencies.flush(&shared.latencies);
    if let Err(error) = result {
        stats.error = Some(format!("subscriber {idx}: {error}"));
        leave(&shared, idx);
    }
    stats
}

/// Marks subscriber `idx` as gone, so that no publisher waits for it.
fn leave(shared: &Shared, idx: usize) {
    for flow in &shared.flows {
        flow.progress[idx].store(GONE, Ordering::Relaxed);
        flow.notify.notify_one();
    }
}

/// Accounts for one `MESSAGE`, and tells its publisher how far this
/// subscriber has got.
fn receive(
    frame: &Frame,
    idx: usize,
    shared: &Shared,
    stats: &mut Received,
    latencies: &mut Batch,
) {
    let now = shared.clock.now_ns();
    let publisher = |id| usize::try_from(id).ok();
    let into = (latencies, &shared.latencies);
    let Some(p) = stats.take(frame, now, &shared.period, publisher, into) else { return };
    // At most u32::MAX distinct sequence numbers.
    let count = u32::try_from(stats.seen[p].len()).unwrap_or(GONE - 1);
    let flow = &shared.flows[p];
    flow.progress[idx].store(count, Ordering::Relaxed);
    if count.is_multiple_of(shared.notify_step) {
        flow.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use stomp_codec::Command;

    use super::super::body::Stamp;
    use super::*;

    fn shared(publishers: usize) -> Shared {
        let period = Period::unknown();
        period.set(0, u64::MAX);
        Shared {
            clock: Clock::new(),
            flows: (0..publishers)
                .map(|_| {
                    Arc::new(Flow { progress: vec![AtomicU32::new(0)], notify: Notify::new() })
                })
                .collect(),
            latencies: MessageLatencies::new(1),
            period,
            notify_step: 1,
        }
    }

    fn message(publisher: u32, seq: u32) -> Frame {
        let stamp = Stamp { publisher, seq, due_ns: 1, sent_ns: 1 };
        Frame::new(Command::Message).with_body(stamp.body(STAMP_LEN, &mut Default::default()))
    }

    #[test]
    fn a_reordered_message_is_neither_lost_nor_a_duplicate() {
        let shared = shared(1);
        let mut stats = Received::new(1);
        let mut batch = Batch::new(0);
        for seq in [0, 2, 1, 3] {
            receive(&message(0, seq), 0, &shared, &mut stats, &mut batch);
        }
        assert_eq!((stats.received, stats.duplicates, stats.malformed), (4, 0, 0));
        assert_eq!(stats.seen[0].missing(4), 0);
        assert_eq!(shared.flows[0].progress[0].load(Ordering::Relaxed), 4);
        // A real duplicate is one, and its latency is not recorded again.
        receive(&message(0, 2), 0, &shared, &mut stats, &mut batch);
        receive(&message(7, 0), 0, &shared, &mut stats, &mut batch);
        batch.flush(&shared.latencies);
        assert_eq!((stats.received, stats.duplicates, stats.malformed), (5, 1, 1));
        assert_eq!(shared.latencies.due.merged().len(), 4, "first arrivals only");
        assert_eq!(shared.latencies.sent.merged().len(), 4);
    }
}
