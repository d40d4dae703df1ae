//! A publishing connection, shared by `fanout` and `queue`: it sends
//! stamped messages to one destination until the end of the measured
//! period, either at a fixed rate or as fast as two bounds allow:
//!
//! - **receipt window**: every `receipt_every`-th `SEND` asks for a
//!   receipt, and at most `window` messages are not yet covered by one
//!   (this bounds what waits in the broker's input);
//! - **consumer lag** (`max_lag`, 0 for none): at most that many messages
//!   ahead of what its consumers have taken, as a [`Progress`] tells.
//!   Receipts say a message was routed, not delivered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use stomp_codec::{Command, Frame};
use tokio::sync::Notify;

use super::body::Stamp;
use super::client::{FrameWriter, Session, error_frame};
use super::{Clock, Error, Result, f64_to_u64};

/// Messages encoded per write at most.
const SEND_BATCH: u64 = 64;
/// Longest wait for a write to the broker.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a window to open before the condition is checked
/// again.
const POLL: Duration = Duration::from_millis(50);

/// How senders pace themselves: the same flags for `fanout` and `queue`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Pacing {
    /// Messages per second, all senders together; without it, as fast as
    /// the window and lag bounds allow.
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Most messages per sender not yet covered by a receipt.
    #[arg(long, default_value_t = 1000)]
    pub(crate) window: u32,
    /// Ask for a receipt every this many messages (default: window / 4).
    #[arg(long)]
    receipt_every: Option<u32>,
    /// Most messages a sender may be ahead of its slowest receiver (0: no
    /// bound).
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

    /// Checks the flags.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.window == 0 || self.receipt_every() > self.window {
            return Err(Error::new("--window must be at least 1 and at least --receipt-every"));
        }
        if self.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            return Err(Error::new("--rate must be a positive number"));
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
    /// Most messages not yet covered by a receipt.
    pub(crate) window: u32,
    /// A receipt is asked for every this many messages.
    pub(crate) receipt_every: u32,
    /// Most messages ahead of the consumers (0: no bound).
    pub(crate) max_lag: u32,
    /// Nanoseconds between two messages of this publisher, with a rate.
    pub(crate) interval_ns: Option<f64>,
    /// When to start, and the measured period, in clock nanoseconds
    /// (publishing stops at its end).
    pub(crate) start_ns: u64,
    pub(crate) window_start: u64,
    pub(crate) end_ns: u64,
}

/// What one publisher did.
#[derive(Debug, Default)]
pub(crate) struct PubStats {
    /// Messages sent (sequence numbers `0..sent`).
    pub(crate) sent: u32,
    /// Messages sent during the measured period.
    pub(crate) sent_in_window: u64,
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
    notify: Notify,
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
    let mut stats = PubStats::default();
    let sender = Sender { id, clock, plan: &plan, receipts: &receipts, progress: &*progress };
    if let Err(error) = sender.run(&mut writer, &mut stats).await {
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
                let seq = frame.header_str("receipt-id").and_then(|s| s.parse::<u32>().ok());
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
    async fn run(&self, writer: &mut FrameWriter, stats: &mut PubStats) -> Result<()> {
        let (clock, plan) = (self.clock, self.plan);
        let mut scratch = BytesMut::new();
        let mut seq: u32 = 0;
        // The consumers' floor, as last looked at.
        let mut floor: u64 = 0;
        tokio::time::sleep_until(clock.instant(plan.start_ns)).await;
        loop {
            if let Some(error) = self.receipts.error.get() {
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
            let acked = u64::from(self.receipts.acked.load(Ordering::Acquire));
            let room = (acked + u64::from(plan.window)).saturating_sub(sent);
            if room == 0 {
                let waiting = Instant::now();
                let _ = tokio::time::timeout(POLL, self.receipts.notify.notified()).await;
                stats.waited_receipt += waiting.elapsed();
                continue;
            }
            allowed = allowed.min(room);
            if plan.max_lag > 0 {
                let lag = u64::from(plan.max_lag);
                if floor.saturating_add(lag) <= sent {
                    floor = self.progress.floor();
                }
                let room = floor.saturating_add(lag).saturating_sub(sent);
                if room == 0 {
                    let waiting = Instant::now();
                    let _ = tokio::time::timeout(POLL, self.progress.notify().notified()).await;
                    stats.waited_lag += waiting.elapsed();
                    continue;
                }
                allowed = allowed.min(room);
            }
            for _ in 0..allowed {
                self.push(writer, seq, &mut scratch, stats)?;
                seq += 1;
            }
            tokio::time::timeout(WRITE_TIMEOUT, writer.flush())
                .await
                .map_err(|_| Error::new("a write to the broker blocked for 10 s"))??;
        }
    }

    /// Encodes message `seq`.
    fn push(
        &self,
        writer: &mut FrameWriter,
        seq: u32,
        scratch: &mut BytesMut,
        stats: &mut PubStats,
    ) -> Result<()> {
        let plan = self.plan;
        let sent_ns = self.clock.now_ns();
        let body = Stamp { publisher: self.id, seq, sent_ns }.body(plan.body, scratch);
        let mut frame =
            Frame::new(Command::Send).with_header("destination", plan.destination.clone());
        for (name, value) in plan.headers.iter() {
            frame = frame.with_header(*name, value.clone());
        }
        if (seq + 1).is_multiple_of(plan.receipt_every) {
            frame = frame.with_header("receipt", seq.to_string());
        }
        writer.push(&frame.with_body(body))?;
        if sent_ns >= plan.window_start && sent_ns < plan.end_ns {
            stats.sent_in_window += 1;
        }
        Ok(())
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
    let cpu_before = super::CpuTimes::now(common);
    tokio::time::sleep_until(clock.instant(plan.end_ns)).await;
    let cpu_after = super::CpuTimes::now(common);
    let mut stats = Vec::with_capacity(handles.len());
    for handle in handles {
        stats.push(handle.await.unwrap_or_else(PubStats::failed));
    }
    (stats, cpu_before, cpu_after)
}
