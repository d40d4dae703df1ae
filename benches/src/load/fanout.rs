//! The `fanout` scenario: P publishers send to one topic that S
//! subscribers listen to.
//!
//! 1. **Set-up.** S connections open (at most `--connect-batch` at a
//!    time), each with one `SUBSCRIBE` whose receipt is awaited, so every
//!    subscription is live before anything is published. Then P publisher
//!    connections open.
//! 2. **Publishing**, for `--warmup` then `--duration` seconds. Each body
//!    carries a [`Stamp`]. Either at `--rate` messages/s in total, or as
//!    fast as two bounds allow:
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
//! Subscribers check each publisher's sequence: a number above the next
//! one expected counts the skipped ones as lost, one below counts as a
//! duplicate, and whatever was never received by the end is lost too.
//! Latency is receive time minus the stamp's send time, for messages sent
//! after the warm-up. Rates count what was sent (published/s) and received
//! by all subscribers together (deliveries/s) in the measured period.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use stomp_codec::{Command, Frame};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::body::{STAMP_LEN, Stamp};
use super::client::{Session, error_frame};
use super::publisher::{self, Pacing, Plan, Progress, PubStats};
use super::report::Report;
use super::stats::{Batch, Latencies, Summary};
use super::{Clock, Common, CpuTimes, Error, Period, Result, Timing, secs_to_ns, wait_until};

/// Options of the `fanout` scenario.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FanoutArgs {
    /// Subscriber connections, one subscription each.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Publisher connections.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Body size in octets (at least 16).
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
            return fail("--body must be at least 16 octets (the stamp)");
        }
        if u32::try_from(self.publishers).is_err() {
            return fail("too many publishers");
        }
        self.pacing.validate()?;
        self.timing.validate()
    }
}

/// One publisher's progress as its subscribers see it.
#[derive(Debug)]
struct Flow {
    /// Per subscriber: the next sequence number it expects ([`GONE`] once
    /// it has left).
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
    latencies: Latencies,
    /// The measured period.
    period: Period,
    /// Subscribers wake publishers every this many messages.
    notify_step: u32,
}

/// What one subscriber saw.
#[derive(Debug, Default)]
struct SubStats {
    received: u64,
    received_in_window: u64,
    gaps: u64,
    duplicates: u64,
    malformed: u64,
    unexpected: u64,
    /// Per publisher: the next sequence number expected.
    next: Vec<u32>,
    error: Option<String>,
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
        latencies: Latencies::new(16),
        period: Period::unknown(),
        notify_step: (args.pacing.max_lag / 4).max(1),
    });

    // 1. Subscribers, all live before anything is published.
    let setup = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let subscribers = open_subscribers(common, args, &shared, &stop_rx).await?;
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
    let setup_secs = setup.elapsed().as_secs_f64();

    // 2. Publishing.
    let start_ns = clock.now_ns() + secs_to_ns(0.05);
    let (window_start, window_end) = args.timing.window(start_ns);
    shared.period.set(window_start, window_end);
    let plan = Plan {
        destination: Bytes::from(args.topic.clone()),
        headers: Arc::new([]),
        body: args.body,
        window: args.pacing.window,
        receipt_every: args.pacing.receipt_every(),
        max_lag: args.pacing.max_lag,
        interval_ns: args.pacing.interval_ns(args.publishers),
        start_ns,
        window_start,
        end_ns: window_end,
    };
    let flows: Vec<Arc<dyn Progress>> =
        shared.flows.iter().map(|f| f.clone() as Arc<dyn Progress>).collect();
    let (pub_stats, cpu_before, cpu_after) =
        publisher::run_period(publishers, &flows, clock, &plan, common).await;
    let totals: Vec<u32> = pub_stats.iter().map(|s| s.sent).collect();

    // 3. Drain.
    let (drained, drain_secs) =
        wait_until(args.timing.drain_timeout, || caught_up(&shared, &totals)).await;
    let _ = stop_tx.send(true);
    let mut sub_stats = Vec::with_capacity(subscribers.len());
    for handle in subscribers {
        sub_stats.push(handle.await.unwrap_or_else(|e| SubStats {
            error: Some(format!("subscriber task failed: {e}")),
            ..SubStats::default()
        }));
    }

    let mut report = Report::new("fanout");
    report.int("subscribers", "subscribers", args.subscribers as u64);
    report.int("publishers", "publishers", args.publishers as u64);
    report.int("body_bytes", "body (octets)", args.body as u64);
    if let Some(addr) = args.publish_target {
        report.text("publish_target", "publishers on", addr.to_string());
    }
    match args.pacing.rate {
        Some(rate) => {
            report.text("mode", "mode", "rate");
            report.float("target_rate_per_s", "target rate", rate, 1, "msg/s");
        }
        None => report.text("mode", "mode", "max"),
    }
    report.int("window", "receipt window (msgs)", u64::from(args.pacing.window));
    report.int("receipt_every", "receipt every (msgs)", u64::from(args.pacing.receipt_every()));
    report.int("max_lag", "max delivery lag (msgs)", u64::from(args.pacing.max_lag));
    report.float("warmup_s", "warm-up", args.timing.warmup, 1, "s");
    report.float("duration_s", "measured", args.timing.duration, 1, "s");
    report.float("setup_s", "set-up (all subscribed)", setup_secs, 2, "s");
    summarize(&mut report, args, &shared, &pub_stats, &sub_stats, &totals);
    report.bool("drained", "drained in time", drained);
    report.float("drain_s", "drain", drain_secs, 2, "s");
    CpuTimes::report(cpu_before, cpu_after, args.timing.duration, &mut report);
    Ok(report)
}

/// Whether every live subscriber received everything sent.
fn caught_up(shared: &Shared, totals: &[u32]) -> bool {
    shared.flows.iter().zip(totals).all(|(flow, &total)| {
        flow.progress.iter().all(|p| {
            let p = p.load(Ordering::Relaxed);
            p == GONE || p >= total
        })
    })
}

/// Adds the counts, rates and latencies.
fn summarize(
    report: &mut Report,
    args: &FanoutArgs,
    shared: &Shared,
    publishers: &[PubStats],
    subscribers: &[SubStats],
    totals: &[u32],
) {
    let published: u64 = totals.iter().map(|&t| u64::from(t)).sum();
    let published_in_window: u64 = publishers.iter().map(|p| p.sent_in_window).sum();
    let expected = published * subscribers.len() as u64;
    let received: u64 = subscribers.iter().map(|s| s.received).sum();
    let in_window: u64 = subscribers.iter().map(|s| s.received_in_window).sum();
    let gaps: u64 = subscribers.iter().map(|s| s.gaps).sum();
    let never: u64 = subscribers
        .iter()
        .flat_map(|s| s.next.iter().zip(totals))
        .map(|(&next, &total)| u64::from(total.saturating_sub(next)))
        .sum();
    let lost = gaps + never;
    let duplicates: u64 = subscribers.iter().map(|s| s.duplicates).sum();
    let malformed: u64 = subscribers.iter().map(|s| s.malformed + s.unexpected).sum();
    let gone = subscribers.iter().filter(|s| s.error.is_some()).count() as u64;
    let pub_errors = publishers.iter().filter(|p| p.error.is_some()).count() as u64;
    let measured = args.timing.duration;

    let deliveries = Deliveries {
        published,
        published_in_window,
        expected,
        received,
        received_in_window: in_window,
        lost,
        duplicates,
        malformed,
    };
    deliveries.add_to(report, measured);
    Summary::of(&shared.latencies.merged()).add_to(report);
    let waited = |f: fn(&PubStats) -> Duration| {
        publishers.iter().map(|p| f(p).as_secs_f64()).sum::<f64>() / publishers.len() as f64
    };
    report.float(
        "waited_receipt_s",
        "publisher wait: receipts",
        waited(|p| p.waited_receipt),
        2,
        "s",
    );
    report.float(
        "waited_lag_s",
        "publisher wait: slowest subscriber",
        waited(|p| p.waited_lag),
        2,
        "s",
    );
    report.int("subscribers_gone", "subscribers disconnected", gone);
    report.int("publisher_errors", "publisher errors", pub_errors);
    let first_error = publishers
        .iter()
        .filter_map(|p| p.error.as_deref())
        .chain(subscribers.iter().filter_map(|s| s.error.as_deref()))
        .next();
    if let Some(error) = first_error {
        report.text("first_error", "first error", error);
    }
    report.bool("ok", "ok (no loss, duplicate or error)", {
        lost == 0 && duplicates == 0 && malformed == 0 && gone == 0 && pub_errors == 0
    });
}

/// Opens the subscribers, each subscribed (receipt awaited), and starts
/// their tasks.
async fn open_subscribers(
    common: &Common,
    args: &FanoutArgs,
    shared: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<SubStats>>> {
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
) -> SubStats {
    let publishers = shared.flows.len();
    let mut stats = SubStats { next: vec![0; publishers], ..SubStats::default() };
    let mut latencies = Batch::new(idx);
    loop {
        let frame = tokio::select! {
            biased;
            frame = session.reader.next_frame() => frame,
            _ = stop.changed() => break,
        };
        match frame {
            Ok(Some(frame)) if frame.command() == Command::Message => {
                receive(&frame, idx, &shared, &mut stats, &mut latencies);
            }
            Ok(Some(frame)) if frame.command() == Command::Error => {
                stats.error = Some(format!("subscriber {idx}: {}", error_frame(&frame)));
                break;
            }
            Ok(Some(_)) => stats.unexpected += 1,
            Ok(None) => {
                stats.error = Some(format!("subscriber {idx}: the broker closed the connection"));
                break;
            }
            Err(error) => {
                stats.error = Some(format!("subscriber {idx}: {error}"));
                break;
            }
        }
    }
    latencies.flush(&shared.latencies);
    if stats.error.is_some() {
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

/// Accounts for one `MESSAGE`.
fn receive(
    frame: &Frame,
    idx: usize,
    shared: &Shared,
    stats: &mut SubStats,
    latencies: &mut Batch,
) {
    let now = shared.clock.now_ns();
    let Some(stamp) = Stamp::read(frame.body()) else {
        stats.malformed += 1;
        return;
    };
    let Some(publisher) = usize::try_from(stamp.publisher).ok().filter(|&p| p < stats.next.len())
    else {
        stats.malformed += 1;
        return;
    };
    stats.received += 1;
    if shared.period.contains(now) {
        stats.received_in_window += 1;
    }
    if shared.period.contains(stamp.sent_ns) {
        latencies.push(now.saturating_sub(stamp.sent_ns), &shared.latencies);
    }
    let next = &mut stats.next[publisher];
    if stamp.seq < *next {
        stats.duplicates += 1;
        return;
    }
    stats.gaps += u64::from(stamp.seq - *next);
    *next = stamp.seq + 1;
    let flow = &shared.flows[publisher];
    flow.progress[idx].store(*next, Ordering::Relaxed);
    if next.is_multiple_of(shared.notify_step) {
        flow.notify.notify_one();
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
    /// Adds the counts and the rates over `measured` seconds.
    #[expect(clippy::cast_precision_loss, reason = "message counts far below 2^53")]
    pub(crate) fn add_to(&self, report: &mut Report, measured: f64) {
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
    }
}
