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
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use stomp_codec::{Command, Frame};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use super::body::{STAMP_LEN, Stamp};
use super::client::{Session, error_frame};
use super::report::Report;
use super::stats::{Batch, Latencies, Summary};
use super::{Clock, Common, Error, Result, f64_to_u64, procfs, secs_to_ns};

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
    /// Messages per second, all publishers together; without it, as fast
    /// as the window and lag bounds allow.
    #[arg(long)]
    rate: Option<f64>,
    /// Most messages per publisher not yet covered by a receipt.
    #[arg(long, default_value_t = 1000)]
    window: u32,
    /// Ask for a receipt every this many messages (default: window / 4).
    #[arg(long)]
    receipt_every: Option<u32>,
    /// Most messages a publisher may be ahead of its slowest subscriber
    /// (0: no bound).
    #[arg(long, default_value_t = 1000)]
    max_lag: u32,
    /// Seconds measured.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Seconds of publishing before the measurement starts.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds subscribers get, after publishing stops, to receive the rest.
    #[arg(long, default_value_t = 10.0)]
    drain_timeout: f64,
    /// The topic.
    #[arg(long, default_value = "/topic/load.fanout")]
    topic: String,
    /// Publishers connect here instead of `--target` (subscribers stay on
    /// `--target`): another node of the same cluster, to measure delivery
    /// across nodes through a backplane.
    #[arg(long)]
    publish_target: Option<std::net::SocketAddr>,
}

/// Messages encoded per write at most.
const SEND_BATCH: u64 = 64;
/// Read buffer growth step of subscribers and publishers.
const READ_CHUNK: usize = 16 * 1024;
/// Longest wait for a write to the broker, or for a window to open,
/// before the condition is checked again.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);
/// A subscriber's progress once it is gone: it no longer holds anyone back.
const GONE: u32 = u32::MAX;

impl FanoutArgs {
    fn receipt_every(&self) -> u32 {
        self.receipt_every.unwrap_or(self.window / 4).max(1)
    }

    fn validate(&self) -> Result<()> {
        let fail = |m: &str| Err(Error::new(m.to_owned()));
        if self.subscribers == 0 || self.publishers == 0 {
            return fail("--subscribers and --publishers must be at least 1");
        }
        if self.body < STAMP_LEN {
            return fail("--body must be at least 16 octets (the stamp)");
        }
        if self.window == 0 || self.receipt_every() > self.window {
            return fail("--window must be at least 1 and at least --receipt-every");
        }
        if self.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            return fail("--rate must be a positive number");
        }
        if !(self.duration > 0.0 && self.warmup >= 0.0 && self.drain_timeout >= 0.0) {
            return fail("--duration must be positive, --warmup and --drain-timeout not negative");
        }
        if self.duration + self.warmup > 3600.0 {
            return fail("--warmup plus --duration may be at most one hour");
        }
        if u32::try_from(self.publishers).is_err() {
            return fail("too many publishers");
        }
        Ok(())
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

/// What publishers and subscribers share.
#[derive(Debug)]
struct Shared {
    clock: Clock,
    flows: Vec<Flow>,
    latencies: Latencies,
    /// The measured period, in clock nanoseconds (`u64::MAX` until known).
    window_start: AtomicU64,
    window_end: AtomicU64,
    /// Subscribers wake publishers every this many messages.
    notify_step: u32,
}

impl Shared {
    fn in_window(&self, ns: u64) -> bool {
        ns >= self.window_start.load(Ordering::Relaxed)
            && ns < self.window_end.load(Ordering::Relaxed)
    }
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

/// What one publisher did.
#[derive(Debug, Default)]
struct PubStats {
    sent: u32,
    sent_in_window: u64,
    /// Time spent waiting for receipts, and for the slowest subscriber.
    waited_receipt: Duration,
    waited_lag: Duration,
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
            .map(|_| Flow {
                progress: (0..args.subscribers).map(|_| AtomicU32::new(0)).collect(),
                notify: Notify::new(),
            })
            .collect(),
        latencies: Latencies::new(16),
        window_start: AtomicU64::new(u64::MAX),
        window_end: AtomicU64::new(u64::MAX),
        notify_step: (args.max_lag / 4).max(1),
    });

    // 1. Subscribers, all live before anything is published.
    let setup = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (subscribers, ready) = open_subscribers(common, args, &shared, &stop_rx).await;
    if let Err(error) = ready {
        let _ = stop_tx.send(true);
        for handle in subscribers {
            let _ = handle.await;
        }
        return Err(error);
    }
    let mut publishers = Vec::with_capacity(args.publishers);
    for p in 0..args.publishers {
        let source = common.source(args.subscribers + p);
        let mut target = common.target();
        if let Some(addr) = args.publish_target {
            target.addr = addr;
        }
        let open = Session::connect(target, source, READ_CHUNK);
        let session = tokio::time::timeout(common.connect_timeout(), open)
            .await
            .map_err(|_| Error::new("timed out opening a publisher connection"))??;
        publishers.push(session);
    }
    let setup_secs = setup.elapsed().as_secs_f64();

    // 2. Publishing.
    let start_ns = clock.now_ns() + secs_to_ns(0.05);
    let window_start = start_ns + secs_to_ns(args.warmup);
    let window_end = window_start + secs_to_ns(args.duration);
    shared.window_start.store(window_start, Ordering::Relaxed);
    shared.window_end.store(window_end, Ordering::Relaxed);
    let plan = Plan {
        topic: Bytes::from(args.topic.clone()),
        body: args.body,
        window: args.window,
        receipt_every: args.receipt_every(),
        max_lag: args.max_lag,
        interval_ns: args.rate.map(|rate| 1e9 * args.publishers as f64 / rate),
        start_ns,
        window_start,
        end_ns: window_end,
    };
    let publishers: Vec<JoinHandle<PubStats>> = publishers
        .into_iter()
        .zip(0u32..)
        .map(|(session, id)| tokio::spawn(publish(id, session, shared.clone(), plan.clone())))
        .collect();
    let broker_pid = common.broker_pid.map(|pid| pid.to_string());
    tokio::time::sleep_until(clock.instant(window_start)).await;
    let cpu_before = cpu_times(broker_pid.as_deref());
    tokio::time::sleep_until(clock.instant(window_end)).await;
    let cpu_after = cpu_times(broker_pid.as_deref());
    let mut pub_stats = Vec::with_capacity(publishers.len());
    for handle in publishers {
        pub_stats.push(handle.await.unwrap_or_else(|e| PubStats {
            error: Some(format!("publisher task failed: {e}")),
            ..PubStats::default()
        }));
    }
    let totals: Vec<u32> = pub_stats.iter().map(|s| s.sent).collect();

    // 3. Drain.
    let drain = Instant::now();
    let drain_deadline = drain + Duration::from_secs_f64(args.drain_timeout);
    let drained = loop {
        if caught_up(&shared, &totals) {
            break true;
        }
        if Instant::now() >= drain_deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let drain_secs = drain.elapsed().as_secs_f64();
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
    match args.rate {
        Some(rate) => {
            report.text("mode", "mode", "rate");
            report.float("target_rate_per_s", "target rate", rate, 1, "msg/s");
        }
        None => report.text("mode", "mode", "max"),
    }
    report.int("window", "receipt window (msgs)", u64::from(args.window));
    report.int("receipt_every", "receipt every (msgs)", u64::from(args.receipt_every()));
    report.int("max_lag", "max delivery lag (msgs)", u64::from(args.max_lag));
    report.float("warmup_s", "warm-up", args.warmup, 1, "s");
    report.float("duration_s", "measured", args.duration, 1, "s");
    report.float("setup_s", "set-up (all subscribed)", setup_secs, 2, "s");
    summarize(&mut report, args, &shared, &pub_stats, &sub_stats, &totals);
    report.bool("drained", "drained in time", drained);
    report.float("drain_s", "drain", drain_secs, 2, "s");
    let measured = args.duration;
    if let (Some((gen0, broker0)), Some((gen1, broker1))) = (cpu_before, cpu_after) {
        report.float(
            "loadgen_cpu_pct",
            "load generator CPU",
            100.0 * (gen1 - gen0) / measured,
            0,
            "% of a core",
        );
        if let (Some(b0), Some(b1)) = (broker0, broker1) {
            report.float(
                "broker_cpu_pct",
                "broker CPU",
                100.0 * (b1 - b0) / measured,
                0,
                "% of a core",
            );
        }
    }
    Ok(report)
}

/// This process's CPU seconds, and the broker's when known.
fn cpu_times(broker: Option<&str>) -> Option<(f64, Option<f64>)> {
    let own = procfs::cpu_seconds("self").ok()?;
    Some((own, broker.and_then(|pid| procfs::cpu_seconds(pid).ok())))
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
    let measured = args.duration;

    report.int("published", "published (all)", published);
    report.float(
        "published_per_s",
        "published/s",
        published_in_window as f64 / measured,
        0,
        "msg/s",
    );
    report.float("deliveries_per_s", "deliveries/s", in_window as f64 / measured, 0, "msg/s");
    report.int("expected_deliveries", "deliveries expected (all)", expected);
    report.int("received", "deliveries received (all)", received);
    report.int("lost", "lost", lost);
    report.int("duplicates", "duplicates", duplicates);
    report.int("malformed", "malformed or unexpected frames", malformed);
    let latency = Summary::of(&shared.latencies.merged());
    report.int("latency_count", "latencies recorded", latency.count);
    report.float("latency_p50_us", "latency p50", latency.p50_us, 1, "µs");
    report.float("latency_p90_us", "latency p90", latency.p90_us, 1, "µs");
    report.float("latency_p99_us", "latency p99", latency.p99_us, 1, "µs");
    report.float("latency_p999_us", "latency p99.9", latency.p999_us, 1, "µs");
    report.float("latency_max_us", "latency max", latency.max_us, 1, "µs");
    report.float("latency_mean_us", "latency mean", latency.mean_us, 1, "µs");
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

/// Opens the subscribers; returns their tasks, and an error if any could
/// not subscribe.
async fn open_subscribers(
    common: &Common,
    args: &FanoutArgs,
    shared: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
) -> (Vec<JoinHandle<SubStats>>, Result<()>) {
    let gate = Arc::new(Semaphore::new(common.connect_batch.max(1)));
    let (ready_tx, mut ready_rx) = mpsc::channel(args.subscribers);
    let topic: Arc<str> = args.topic.as_str().into();
    let handles = (0..args.subscribers)
        .map(|idx| {
            let setup = SubSetup {
                idx,
                common: common.clone(),
                topic: topic.clone(),
                gate: gate.clone(),
                ready: ready_tx.clone(),
            };
            tokio::spawn(subscribe(setup, shared.clone(), stop.clone()))
        })
        .collect();
    drop(ready_tx);
    let (mut ready, mut failed, mut first_error) = (0usize, 0usize, None);
    while ready + failed < args.subscribers {
        match ready_rx.recv().await {
            Some(Ok(())) => ready += 1,
            Some(Err(error)) => {
                failed += 1;
                first_error.get_or_insert(error);
            }
            None => break,
        }
    }
    let result = match first_error {
        None if ready == args.subscribers => Ok(()),
        None => Err(Error::new("subscriber tasks ended before subscribing")),
        Some(error) => Err(Error::new(format!(
            "{failed} of {} subscribers could not subscribe; the first error: {error}",
            args.subscribers
        ))),
    };
    (handles, result)
}

/// What a subscriber task needs to open its subscription.
struct SubSetup {
    idx: usize,
    common: Common,
    topic: Arc<str>,
    gate: Arc<Semaphore>,
    ready: mpsc::Sender<Result<()>>,
}

/// One subscriber: subscribe, say so, then receive until stopped.
async fn subscribe(
    setup: SubSetup,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> SubStats {
    let SubSetup { idx, common, topic, gate, ready } = setup;
    let publishers = shared.flows.len();
    let mut stats = SubStats { next: vec![0; publishers], ..SubStats::default() };
    let opened = {
        let _permit = gate.acquire().await;
        let open = async {
            let mut session =
                Session::connect(common.target(), common.source(idx), READ_CHUNK).await?;
            session.subscribe("0", &topic).await?;
            Ok::<_, Error>(session)
        };
        tokio::time::timeout(common.connect_timeout(), open)
            .await
            .unwrap_or_else(|_| Err(Error::new("timed out subscribing")))
    };
    let mut session = match opened {
        Ok(session) => {
            let _ = ready.send(Ok(())).await;
            session
        }
        Err(error) => {
            stats.error = Some(error.to_string());
            let _ = ready.send(Err(error)).await;
            leave(&shared, idx);
            return stats;
        }
    };
    drop(ready);
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
    if shared.in_window(now) {
        stats.received_in_window += 1;
    }
    if shared.in_window(stamp.sent_ns) {
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

/// A publisher's instructions.
#[derive(Debug, Clone)]
struct Plan {
    topic: Bytes,
    body: usize,
    window: u32,
    receipt_every: u32,
    max_lag: u32,
    /// Nanoseconds between two messages of this publisher, with `--rate`.
    interval_ns: Option<f64>,
    start_ns: u64,
    window_start: u64,
    end_ns: u64,
}

/// Receipts seen by a publisher's reading task.
#[derive(Debug, Default)]
struct Receipts {
    /// One past the highest sequence number receipted.
    acked: AtomicU32,
    notify: Notify,
    error: std::sync::OnceLock<String>,
}

/// One publisher: send until the end of the measured period.
async fn publish(id: u32, session: Session, shared: Arc<Shared>, plan: Plan) -> PubStats {
    let Session { mut reader, mut writer } = session;
    let receipts = Arc::new(Receipts::default());
    let reading = {
        let receipts = receipts.clone();
        tokio::spawn(async move {
            let error = loop {
                match reader.next_frame().await {
                    Ok(Some(frame)) if frame.command() == Command::Receipt => {
                        let seq =
                            frame.header_str("receipt-id").and_then(|s| s.parse::<u32>().ok());
                        if let Some(seq) = seq {
                            receipts.acked.fetch_max(seq.saturating_add(1), Ordering::Release);
                            receipts.notify.notify_one();
                        }
                    }
                    Ok(Some(frame)) if frame.command() == Command::Error => {
                        break error_frame(&frame).to_string();
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break "the broker closed the connection".to_owned(),
                    Err(error) => break error.to_string(),
                }
            };
            let _ = receipts.error.set(format!("publisher {id}: {error}"));
            receipts.notify.notify_one();
        })
    };
    let mut stats = PubStats::default();
    let result = send_loop(id, &mut writer, &shared, &plan, &receipts, &mut stats).await;
    if let Err(error) = result {
        stats.error = Some(format!("publisher {id}: {error}"));
    }
    reading.abort();
    stats
}

async fn send_loop(
    id: u32,
    writer: &mut super::client::FrameWriter,
    shared: &Shared,
    plan: &Plan,
    receipts: &Receipts,
    stats: &mut PubStats,
) -> Result<()> {
    let clock = shared.clock;
    let flow = &shared.flows[id as usize];
    let mut scratch = BytesMut::new();
    let mut seq: u32 = 0;
    // The slowest live subscriber's progress, as last looked at.
    let mut floor: u64 = 0;
    tokio::time::sleep_until(clock.instant(plan.start_ns)).await;
    loop {
        if let Some(error) = receipts.error.get() {
            return Err(Error::new(error.clone()));
        }
        let now = clock.now_ns();
        if now >= plan.end_ns || seq == u32::MAX - 1 {
            stats.sent = seq;
            return Ok(());
        }
        let sent = u64::from(seq);
        let mut allowed = SEND_BATCH;
        if let Some(interval) = plan.interval_ns {
            let elapsed = (now - plan.start_ns) as f64;
            let due = (f64_to_u64(elapsed / interval) + 1).saturating_sub(sent);
            if due == 0 {
                let next = plan.start_ns + f64_to_u64(sent as f64 * interval);
                tokio::time::sleep_until(clock.instant(next.min(plan.end_ns))).await;
                continue;
            }
            allowed = allowed.min(due);
        }
        let acked = u64::from(receipts.acked.load(Ordering::Acquire));
        let room = (acked + u64::from(plan.window)).saturating_sub(sent);
        if room == 0 {
            let waiting = Instant::now();
            let _ = tokio::time::timeout(POLL, receipts.notify.notified()).await;
            stats.waited_receipt += waiting.elapsed();
            continue;
        }
        allowed = allowed.min(room);
        if plan.max_lag > 0 {
            let lag = u64::from(plan.max_lag);
            if floor + lag <= sent {
                floor = flow
                    .progress
                    .iter()
                    .map(|p| u64::from(p.load(Ordering::Relaxed)))
                    .min()
                    .unwrap_or(0);
            }
            let room = (floor + lag).saturating_sub(sent);
            if room == 0 {
                let waiting = Instant::now();
                let _ = tokio::time::timeout(POLL, flow.notify.notified()).await;
                stats.waited_lag += waiting.elapsed();
                continue;
            }
            allowed = allowed.min(room);
        }
        for _ in 0..allowed {
            let sent_ns = clock.now_ns();
            let body = Stamp { publisher: id, seq, sent_ns }.body(plan.body, &mut scratch);
            let mut frame =
                Frame::new(Command::Send).with_header("destination", plan.topic.clone());
            if (seq + 1).is_multiple_of(plan.receipt_every) {
                frame = frame.with_header("receipt", seq.to_string());
            }
            writer.push(&frame.with_body(body))?;
            if sent_ns >= plan.window_start && sent_ns < plan.end_ns {
                stats.sent_in_window += 1;
            }
            seq += 1;
        }
        tokio::time::timeout(WRITE_TIMEOUT, writer.flush())
            .await
            .map_err(|_| Error::new("a write to the broker blocked for 10 s"))??;
    }
}
