//! A publishing connection, shared by `fanout` and `queue`: it sends
//! stamped messages to one destination until the end of the measured
//! period, in one of two modes.
//!
//! - **Fixed rate** (`--rate`, open loop): message `n` is due at its place
//!   in a [`Schedule`] (publishers staggered over one interval) and is
//!   stamped with that time as well as the time it is written, so that a
//!   late wake-up or a write held up by back-pressure counts in the
//!   latency. It sleeps on the precise [`Timer`], not tokio's (1 ms), and
//!   records how late it wrote ([`SendLateness`]). Nothing waits for the
//!   broker: a publisher that falls behind writes what is due at once.
//!   Only a hard bound stops it, with an error: more than
//!   [`MAX_UNCONFIRMED`] messages not covered by a receipt.
//! - **As fast as allowed** (closed loop), within two bounds:
//!   - **receipt window**: every `receipt_every`-th `SEND` asks for a
//!     receipt, and at most `window` messages are not yet covered by one
//!     (this bounds what waits in the broker's input);
//!   - **consumer lag** (`max_lag`, 0 for none): at most that many
//!     messages ahead of what its consumers have taken, as a [`Progress`]
//!     tells. Receipts say a message was routed, not delivered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use stomp_codec::{Command, Frame};
use tokio::sync::Notify;

use super::body::Stamp;
use super::client::{FrameWriter, Session, error_frame};
use super::schedule::{Schedule, SendLog, SendTimes, Step};
use super::stats::SendLateness;
use super::timer::Timer;
use super::{Clock, Error, Result, Timing};

/// Messages encoded per write at most.
const SEND_BATCH: u64 = 64;
/// Longest wait for a write to the broker.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a window to open before the condition is checked
/// again.
const POLL: Duration = Duration::from_millis(50);
/// Longest wait for the answer to the `DISCONNECT` at the end.
const BYE_TIMEOUT: Duration = Duration::from_secs(10);
/// The `receipt` of that `DISCONNECT`.
const BYE: &str = "bye";
/// The highest sequence number a publisher sends, plus one.
const MAX_SEQ: u32 = u32::MAX - 1;
/// At a fixed rate, the most messages a publisher writes beyond the last
/// receipt before it gives up: the broker is then far behind, and what
/// waits for it (in its input, in the socket buffers) must stay bounded.
const MAX_UNCONFIRMED: u64 = 1 << 20;

/// How senders pace themselves: the same flags for `fanout` and `queue`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Pacing {
    /// Messages per second, all senders together, on a fixed schedule
    /// (open loop: the window and lag bounds do not apply); without it, as
    /// fast as the window and lag bounds allow.
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Most messages per sender not yet covered by a receipt (without
    /// `--rate`).
    #[arg(long, default_value_t = 1000)]
    pub(crate) window: u32,
    /// Ask for a receipt every this many messages (default: window / 4).
    #[arg(long)]
    receipt_every: Option<u32>,
    /// Most messages a sender may be ahead of its slowest receiver (0: no
    /// bound; without `--rate`).
    #[arg(long, default_value_t = 1000)]
    pub(crate) max_lag: u32,
}

impl Pacing {
    /// A receipt is asked for every this many messages.
    pub(crate) fn receipt_every(&self) -> u32 {
        self.receipt_every.unwrap_or(self.window / 4).max(1)
    }

    /// Nanoseconds between two messages of one of `senders`, with a rate.
    pub(crate) fn interval_ns(&self, senders: usize) -> Option<f64> {
        self.rate.map(|rate| 1e9 * senders as f64 / rate)
    }

    /// Checks the flags, for `senders` senders running for `timing`.
    pub(crate) fn validate(&self, timing: &Timing, senders: usize) -> Result<()> {
        if self.window == 0 || self.receipt_every() > self.window {
            return Err(Error::new("--window must be at least 1 and at least --receipt-every"));
        }
        let Some(rate) = self.rate else { return Ok(()) };
        if !(rate > 0.0 && rate.is_finite()) {
            return Err(Error::new("--rate must be a positive number"));
        }
        let each = rate * (timing.warmup + timing.duration) / senders.max(1) as f64;
        if each >= f64::from(MAX_SEQ) {
            return Err(Error::new(format!(
                "--rate for --warmup plus --duration is {each:.0} messages per sender, more \
                 than a sequence number holds ({MAX_SEQ})"
            )));
        }
        Ok(())
    }
}

/// How far the consumers of one publisher's messages have got.
pub(crate) trait Progress: Send + Sync + 'static {
    /// How many of the publisher's messages the slowest consumer has
    /// taken (`u64::MAX` when none holds the publisher back).
    fn floor(&self) -> u64;
    /// Woken when the floor moves (at least every few messages).
    fn notify(&self) -> &Notify;
}

/// A publisher's instructions.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Where every message goes.
    pub(crate) destination: Bytes,
    /// Headers added to every `SEND`.
    pub(crate) headers: Arc<[(&'static str, Bytes)]>,
    /// Body size in octets.
    pub(crate) body: usize,
    /// Most messages not yet covered by a receipt (without a rate).
    pub(crate) window: u32,
    /// A receipt is asked for every this many messages.
    pub(crate) receipt_every: u32,
    /// Most messages ahead of the consumers (0: no bound; without a rate).
    pub(crate) max_lag: u32,
    /// Nanoseconds between two messages of this publisher, with a rate.
    pub(crate) interval_ns: Option<f64>,
    /// Publishers with this plan: their schedules are staggered over one
    /// interval.
    pub(crate) publishers: usize,
    /// When to start, and the measured period, in clock nanoseconds
    /// (publishing stops at its end).
    pub(crate) start_ns: u64,
    pub(crate) window_start: u64,
    pub(crate) end_ns: u64,
    /// What wakes a publisher on a schedule (without one: tokio's timer).
    pub(crate) timer: Option<Timer>,
    /// Where publishers on a schedule record how late they wrote.
    pub(crate) lateness: Arc<SendLateness>,
}

impl Plan {
    /// Publisher `id`'s schedule, with a rate.
    pub(crate) fn schedule(&self, id: u32) -> Option<Schedule> {
        let slot = usize::try_from(id).unwrap_or(usize::MAX);
        self.interval_ns.map(|interval| {
            Schedule::new(self.start_ns, self.end_ns, interval, slot, self.publishers)
        })
    }
}

/// What one publisher did.
#[derive(Debug, Default)]
pub(crate) struct PubStats {
    /// Messages sent (sequence numbers `0..sent`), kept up to date batch
    /// by batch, so that it is right however the publisher ends.
    pub(crate) sent: u32,
    /// Messages sent during the measured period.
    pub(crate) sent_in_window: u64,
    /// At a fixed rate: messages due in the measured period and written
    /// on schedule ([`on_schedule`](super::on_schedule)).
    pub(crate) on_schedule: u64,
    /// When each message was due.
    pub(crate) times: SendTimes,
    /// Time spent waiting for receipts.
    pub(crate) waited_receipt: Duration,
    /// Time spent waiting for the consumers.
    pub(crate) waited_lag: Duration,
    /// What stopped it early.
    pub(crate) error: Option<String>,
}

impl PubStats {
    /// A publisher whose task failed.
    pub(crate) fn failed(error: impl std::fmt::Display) -> Self {
        Self { error: Some(format!("publisher task failed: {error}")), ..Self::default() }
    }
}

/// Receipts seen by a publisher's reading task.
#[derive(Debug, Default)]
struct Receipts {
    /// One past the highest sequence number receipted.
    acked: AtomicU32,
    /// Whether the `DISCONNECT` was receipted.
    bye: AtomicBool,
    /// Whether the broker closed the connection between frames.
    closed: AtomicBool,
    notify: Notify,
    /// What ended the connection.
    error: std::sync::OnceLock<String>,
}

/// Publisher `id`: sends until the end of the measured period.
pub(crate) async fn publish(
    id: u32,
    session: Session,
    clock: Clock,
    plan: Plan,
    progress: Arc<dyn Progress>,
) -> PubStats {
    let Session { reader, mut writer } = session;
    let receipts = Arc::new(Receipts::default());
    let reading = tokio::spawn(read_receipts(id, reader, receipts.clone()));
    let schedule = plan.schedule(id);
    let times = schedule.map_or_else(|| SendTimes::Log(SendLog::default()), SendTimes::Schedule);
    let mut stats = PubStats { times, ..PubStats::default() };
    let sender = Sender { id, clock, plan: &plan, receipts: &receipts, progress: &*progress };
    tokio::time::sleep_until(clock.instant(plan.start_ns)).await;
    let result = match &schedule {
        Some(schedule) => sender.run_scheduled(schedule, &mut writer, &mut stats).await,
        None => sender.run_bounded(&mut writer, &mut stats).await,
    };
    let result = match result {
        Ok(()) => sender.disconnect(&mut writer).await,
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        stats.error = Some(format!("publisher {id}: {error}"));
    }
    reading.abort();
    stats
}

/// Reads the publisher's receipts until the connection fails.
async fn read_receipts(id: u32, mut reader: super::client::FrameReader, receipts: Arc<Receipts>) {
    let error = loop {
        match reader.next_frame().await {
            Ok(Some(frame)) if frame.command() == Command::Receipt => {
                let id = frame.header_str("receipt-id");
                if id == Some(BYE) {
                    receipts.bye.store(true, Ordering::Release);
                } else if let Some(seq) = id.and_then(|s| s.parse::<u32>().ok()) {
                    receipts.acked.fetch_max(seq.saturating_add(1), Ordering::Release);
                }
                receipts.notify.notify_one();
            }
            Ok(Some(frame)) if frame.command() == Command::Error => {
                break error_frame(&frame).to_string();
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                receipts.closed.store(true, Ordering::Release);
                break "the broker closed the connection".to_owned();
            }
            Err(error) => break error.to_string(),
        }
    };
    let _ = receipts.error.set(format!("publisher {id}: {error}"));
    receipts.notify.notify_one();
}

/// The sending side of one publisher.
struct Sender<'a> {
    id: u32,
    clock: Clock,
    plan: &'a Plan,
    receipts: &'a Receipts,
    progress: &'a dyn Progress,
}

impl Sender<'_> {
    /// Fixed rate: writes every message when due, or as soon after as it
    /// can, whatever the broker does (open loop).
    async fn run_scheduled(
        &self,
        schedule: &Schedule,
        writer: &mut FrameWriter,
        stats: &mut PubStats,
    ) -> Result<()> {
        let mut sent: u64 = 0;
        loop {
            self.check_receipts()?;
            match schedule.step(sent, self.clock.now_ns(), SEND_BATCH) {
                Step::Done => return Ok(()),
                Step::SleepUntil(due) => self.sleep_until(due).await,
                Step::Send(count) => {
                    self.check_unconfirmed(sent)?;
                    self.write_batch(writer, sent, count, Some(schedule), stats).await?;
                    sent += count;
                }
            }
        }
    }

    /// Sleeps until `due` on the clock.
    async fn sleep_until(&self, due: u64) {
        match &self.plan.timer {
            Some(timer) => timer.sleep_until(self.clock.at(due)).await,
            None => tokio::time::sleep_until(self.clock.instant(due)).await,
        }
    }

    /// As fast as the receipt window and the consumer lag allow (closed
    /// loop), until the end of the period.
    async fn run_bounded(&self, writer: &mut FrameWriter, stats: &mut PubStats) -> Result<()> {
        let mut sent: u64 = 0;
        // The consumers' floor, as last looked at.
        let mut floor: u64 = 0;
        loop {
            self.check_receipts()?;
            if self.clock.now_ns() >= self.plan.end_ns || sent >= u64::from(MAX_SEQ) {
                return Ok(());
            }
            let receipts = self.receipt_room(sent, &mut stats.waited_receipt).await;
            if receipts == 0 {
                continue;
            }
            let lag = self.lag_room(sent, &mut floor, &mut stats.waited_lag).await;
            if lag == 0 {
                continue;
            }
            let count = SEND_BATCH.min(receipts).min(lag).min(u64::from(MAX_SEQ) - sent);
            self.write_batch(writer, sent, count, None, stats).await?;
            sent += count;
        }
    }

    /// Sends `DISCONNECT` and waits for its receipt, or for the broker to
    /// close the connection (RabbitMQ's Web-STOMP closes without the
    /// receipt): the broker has then taken every message before this side
    /// closes. Closing at once could lose the last ones: with receipts
    /// still unread here, the kernel resets the connection, and the
    /// broker's kernel drops what the broker had not read yet.
    async fn disconnect(&self, writer: &mut FrameWriter) -> Result<()> {
        let bye = Frame::new(Command::Disconnect).with_header("receipt", BYE);
        let answered = async {
            writer.send(&bye).await?;
            loop {
                if self.receipts.bye.load(Ordering::Acquire)
                    || self.receipts.closed.load(Ordering::Acquire)
                {
                    return Ok(());
                }
                self.check_receipts()?;
                let _ = tokio::time::timeout(POLL, self.receipts.notify.notified()).await;
            }
        };
        tokio::time::timeout(BYE_TIMEOUT, answered).await.map_err(|_| {
            Error::new("the broker did not answer the DISCONNECT at the end within 10 s")
        })?
    }

    /// Fails once the reading task has seen the connection fail.
    fn check_receipts(&self) -> Result<()> {
        match self.receipts.error.get() {
            Some(error) => Err(Error::new(error.clone())),
            None => Ok(()),
        }
    }

    /// Fails when more than [`MAX_UNCONFIRMED`] of `sent` messages are not
    /// covered by a receipt.
    fn check_unconfirmed(&self, sent: u64) -> Result<()> {
        let acked = u64::from(self.receipts.acked.load(Ordering::Acquire));
        if sent.saturating_sub(acked) > MAX_UNCONFIRMED {
            return Err(Error::new(format!(
                "{} messages written without a receipt (at most {MAX_UNCONFIRMED}): the broker \
                 does not keep up with --rate; stopped",
                sent - acked
            )));
        }
        Ok(())
    }

    /// Messages the receipt window lets through after `sent`; when none,
    /// waits a while for a receipt (adding the wait to `waited`) and
    /// returns 0.
    async fn receipt_room(&self, sent: u64, waited: &mut Duration) -> u64 {
        let acked = u64::from(self.receipts.acked.load(Ordering::Acquire));
        let room = (acked + u64::from(self.plan.window)).saturating_sub(sent);
        if room == 0 {
            let waiting = Instant::now();
            let _ = tokio::time::timeout(POLL, self.receipts.notify.notified()).await;
            *waited += waiting.elapsed();
        }
        room
    }

    /// Messages the consumer lag bound lets through after `sent` (`floor`
    /// is the consumers' floor as last read); when none, waits a while for
    /// the consumers (adding the wait to `waited`) and returns 0.
    async fn lag_room(&self, sent: u64, floor: &mut u64, waited: &mut Duration) -> u64 {
        if self.plan.max_lag == 0 {
            return u64::MAX;
        }
        let lag = u64::from(self.plan.max_lag);
        if floor.saturating_add(lag) <= sent {
            *floor = self.progress.floor();
        }
        let room = floor.saturating_add(lag).saturating_sub(sent);
        if room == 0 {
            let waiting = Instant::now();
            let _ = tokio::time::timeout(POLL, self.progress.notify().notified()).await;
            *waited += waiting.elapsed();
        }
        room
    }

    /// Encodes messages `first..first + count` (due on `schedule`, or now
    /// without one), counts them as sent (and, on a schedule, how late),
    /// and writes them.
    async fn write_batch(
        &self,
        writer: &mut FrameWriter,
        first: u64,
        count: u64,
        schedule: Option<&Schedule>,
        stats: &mut PubStats,
    ) -> Result<()> {
        let mut scratch = BytesMut::new();
        if let SendTimes::Log(log) = &mut stats.times {
            log.note(first, self.clock.now_ns());
        }
        let mut late = Vec::new();
        for n in first..first + count {
            // Below MAX_SEQ: checked by the callers.
            let seq = u32::try_from(n).map_err(|_| Error::new("sequence number above u32"))?;
            let now = self.clock.now_ns();
            let due_ns = schedule.map_or(now, |s| s.at(n));
            let stamp = Stamp { publisher: self.id, seq, due_ns, sent_ns: now };
            writer.push(&self.frame(&stamp, &mut scratch))?;
            stats.sent = seq + 1;
            let (start, end) = (self.plan.window_start, self.plan.end_ns);
            stats.sent_in_window += u64::from(now >= start && now < end);
            stats.on_schedule += u64::from(super::on_schedule(due_ns, now, start, end));
            if schedule.is_some() && due_ns >= start && due_ns < end {
                late.push((due_ns, now));
            }
        }
        self.plan.lateness.record(self.id as usize, &late);
        tokio::time::timeout(WRITE_TIMEOUT, writer.flush())
            .await
            .map_err(|_| Error::new("a write to the broker blocked for 10 s"))?
    }

    /// The `SEND` frame of the message stamped `stamp`.
    fn frame(&self, stamp: &Stamp, scratch: &mut BytesMut) -> Frame {
        let plan = self.plan;
        let mut frame =
            Frame::new(Command::Send).with_header("destination", plan.destination.clone());
        for (name, value) in plan.headers.iter() {
            frame = frame.with_header(*name, value.clone());
        }
        if (stamp.seq + 1).is_multiple_of(plan.receipt_every) {
            frame = frame.with_header("receipt", stamp.seq.to_string());
        }
        frame.with_body(stamp.body(plan.body, scratch))
    }
}

/// Runs one publisher per session with `plan` (publisher `i` reporting to
/// `progress[i]`) through the measured period, reading the CPU times at
/// its start and end; returns each publisher's figures and the two CPU
/// readings.
pub(crate) async fn run_period(
    sessions: Vec<Session>,
    progress: &[Arc<dyn Progress>],
    clock: Clock,
    plan: &Plan,
    common: &super::Common,
) -> (Vec<PubStats>, Option<super::CpuTimes>, Option<super::CpuTimes>) {
    let handles: Vec<tokio::task::JoinHandle<PubStats>> = sessions
        .into_iter()
        .zip(0u32..)
        .map(|(session, id)| {
            let progress = progress[id as usize].clone();
            tokio::spawn(publish(id, session, clock, plan.clone(), progress))
        })
        .collect();
    tokio::time::sleep_until(clock.instant(plan.window_start)).await;
    let cpu_before = super::CpuTimes::now(common, plan.timer.as_ref());
    tokio::time::sleep_until(clock.instant(plan.end_ns)).await;
    let cpu_after = super::CpuTimes::now(common, plan.timer.as_ref());
    let mut stats = Vec::with_capacity(handles.len());
    for handle in handles {
        stats.push(handle.await.unwrap_or_else(PubStats::failed));
    }
    (stats, cpu_before, cpu_after)
}

#[cfg(test)]
mod tests {
    use stomp_broker::Broker;
    use tokio::net::TcpListener;

    use super::super::client::Login;
    use super::super::transport::{Kind, Target};
    use super::*;

    /// Consumers that never take anything: they would hold a publisher
    /// bound by the lag forever.
    struct Stuck(Notify);

    impl Progress for Stuck {
        fn floor(&self) -> u64 {
            0
        }

        fn notify(&self) -> &Notify {
            &self.0
        }
    }

    /// A fixed-rate publisher that starts 300 ms after its schedule (a late
    /// wake-up, a blocked write) writes what is due at once, and every
    /// message carries the time it was due: latency counted from it
    /// includes the hold-back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_held_back_publisher_counts_the_hold_back_in_its_latency() {
        let broker = Broker::builder().build();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target =
            Target { kind: Kind::Tcp, addr: listener.local_addr().unwrap(), ws_path: "/".into() };
        let serving = broker.clone();
        tokio::spawn(async move { serving.serve(listener).await });
        let login = Login { login: "guest".into(), passcode: "guest".into(), host: "/".into() };
        let mut subscriber = Session::connect(target.clone(), &login, None, 4096).await.unwrap();
        subscriber.subscribe("0", "/topic/held").await.unwrap();
        let publisher = Session::connect(target, &login, None, 4096).await.unwrap();

        // 100 msg/s from the clock's start to 400 ms: 40 messages, due
        // every 10 ms; the publisher starts at 300 ms.
        let ms = 1_000_000;
        let clock = Clock::new();
        let plan = Plan {
            destination: Bytes::from_static(b"/topic/held"),
            headers: Arc::new([]),
            body: 64,
            window: 1,
            receipt_every: 1,
            max_lag: 1,
            interval_ns: Some(10.0 * ms as f64),
            publishers: 1,
            start_ns: 0,
            window_start: 0,
            end_ns: 400 * ms,
            timer: Some(Timer::new().unwrap()),
            lateness: Arc::new(SendLateness::new(1)),
        };
        let lateness = plan.lateness.clone();
        tokio::time::sleep_until(clock.instant(300 * ms)).await;
        let stuck = Arc::new(Stuck(Notify::new()));
        let stats = publish(0, publisher, clock, plan, stuck).await;
        assert_eq!(stats.error, None);
        assert_eq!(stats.sent, 40, "the window and lag bounds do not apply at a rate");
        // The hold-back is the publisher's lateness: 300 ms at first.
        let late = lateness.summary();
        assert_eq!(late.count, 40);
        assert!(late.max_us >= 300_000.0, "{late:?}");

        for n in 0..40u32 {
            let frame = subscriber.reader.expect(Command::Message).await.unwrap();
            let now = clock.now_ns();
            let stamp = Stamp::read(frame.body()).unwrap();
            assert_eq!((stamp.seq, stamp.due_ns), (n, u64::from(n) * 10 * ms));
            let held = (300 * ms).saturating_sub(stamp.due_ns);
            assert!(stamp.sent_ns - stamp.due_ns >= held, "{n}: {stamp:?}");
            assert!(stamp.since_due(now) >= held, "{n}: {stamp:?}, received at {now}");
            assert!(stamp.since_due(now) >= stamp.since_sent(now) + held);
        }
        assert_eq!(stats.times.due_ns(39), 390 * ms);
        broker.shutdown().await;
    }
}
