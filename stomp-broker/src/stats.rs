//! Counters of what the broker did, read through [`Broker::stats`](crate::Broker::stats)
//! and, with the `metrics` feature, by the Prometheus collectors.
// Without `metrics`, the per-label counters are kept but not read.
#![cfg_attr(not(feature = "metrics"), allow(dead_code))]

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use stomp_codec::Command;

use crate::message::now_micros;
use crate::{SlowConsumerPolicy, TransportKind};

/// Transports, in the order of the per-transport counters.
pub(crate) const TRANSPORTS: [TransportKind; 3] =
    [TransportKind::Tcp, TransportKind::WebSocket, TransportKind::Local];

pub(crate) fn transport_index(transport: TransportKind) -> usize {
    match transport {
        TransportKind::Tcp => 0,
        TransportKind::WebSocket => 1,
        TransportKind::Local => 2,
    }
}

/// Why an `ERROR` frame was sent: a small, fixed set (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ErrorReason {
    /// The client broke the protocol (a malformed or unexpected frame).
    #[default]
    Protocol,
    /// The authenticator refused the CONNECT.
    Auth,
    /// An interceptor, application handler or replay refused a frame.
    Rejected,
    /// A limit was passed (frame size, subscriptions, rate, ...).
    Limit,
    /// The connection fell behind the slow-consumer bound.
    SlowConsumer,
    /// Nothing arrived within the heart-beat tolerance.
    Heartbeat,
    /// The broker is shutting down.
    Shutdown,
}

impl ErrorReason {
    /// Every reason, in the order of the counters.
    pub(crate) const ALL: [Self; 7] = [
        Self::Protocol,
        Self::Auth,
        Self::Rejected,
        Self::Limit,
        Self::SlowConsumer,
        Self::Heartbeat,
        Self::Shutdown,
    ];

    /// Its label value.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Protocol => "protocol",
            Self::Auth => "auth",
            Self::Rejected => "rejected",
            Self::Limit => "limit",
            Self::SlowConsumer => "slow_consumer",
            Self::Heartbeat => "heartbeat",
            Self::Shutdown => "shutdown",
        }
    }
}

/// A histogram with fixed bucket bounds, updated with two relaxed atomic
/// additions per observation (no lock, no allocation). Values are integers
/// in a base unit (microseconds, bytes, subscribers).
#[derive(Debug)]
pub(crate) struct Histogram {
    /// Upper bounds of the buckets, ascending; one more bucket counts
    /// everything above the last.
    pub(crate) bounds: &'static [u64],
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

/// A [`Histogram`] read at one moment: per-bucket (not cumulative) counts
/// and the sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistogramSnapshot {
    pub(crate) bounds: &'static [u64],
    pub(crate) counts: Vec<u64>,
    pub(crate) sum: u64,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [u64]) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self { bounds, counts, sum: AtomicU64::new(0) }
    }

    pub(crate) fn observe(&self, value: u64) {
        self.observe_n(value, 1);
    }

    /// Observes `value` `n` times, with the same two atomic additions as
    /// one observation: for a group of messages counted at one age.
    pub(crate) fn observe_n(&self, value: u64, n: u64) {
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        self.counts[bucket].fetch_add(n, Relaxed);
        self.sum.fetch_add(value.saturating_mul(n), Relaxed);
    }

    /// Observes a duration in microseconds.
    pub(crate) fn observe_micros(&self, elapsed: Duration) {
        self.observe(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            counts: self.counts.iter().map(|c| c.load(Relaxed)).collect(),
            sum: self.sum.load(Relaxed),
        }
    }
}

/// The `MESSAGE` frames a connection has encoded into its write buffer
/// and not yet written to its socket, for the delivery latency: each
/// message is observed once, when the socket has taken the end of its
/// group, at the age of the group's oldest message (an upper bound).
///
/// Two groups in 32 bytes, however many batches wait: the first waits for
/// its end to be written; the batches encoded meanwhile are merged into
/// the second, which ends where the buffer ends and takes the first's
/// place once that is written. Behind a slow socket a message may thus be
/// counted up to one write wait too old. There is no allocation and no
/// shared atomic per batch: one [`Histogram::observe_n`] per group.
#[derive(Debug, Default)]
pub(crate) struct Unwritten {
    /// Write position just past the first group's last octet.
    first_end: u64,
    /// Messages of the first group and of the second (0: empty).
    messages: [u32; 2],
    /// When the oldest message of each group was routed ([`now_micros`]).
    oldest: [u64; 2],
}

impl Unwritten {
    /// A batch of `messages`, the oldest routed at `oldest`, was encoded;
    /// the write buffer now ends at write position `end`.
    pub(crate) fn queued(&mut self, end: u64, messages: u32, oldest: u64) {
        if messages == 0 {
            return;
        }
        let group = usize::from(self.messages[0] > 0);
        if group == 0 {
            self.first_end = end;
        }
        if self.messages[group] == 0 {
            self.oldest[group] = oldest;
        }
        self.messages[group] = self.messages[group].saturating_add(messages);
        self.oldest[group] = self.oldest[group].min(oldest);
    }

    /// The socket has taken everything before write position `written`;
    /// the write buffer ends at `end`.
    pub(crate) fn written(&mut self, written: u64, end: u64, latency: &Histogram) {
        if self.messages[0] > 0 && written >= self.first_end {
            self.observe(written, end, now_micros(), latency);
        }
    }

    /// [`written`](Self::written), at `now` ([`now_micros`]).
    fn observe(&mut self, written: u64, end: u64, now: u64, latency: &Histogram) {
        while self.messages[0] > 0 && written >= self.first_end {
            let age = now.saturating_sub(self.oldest[0]);
            latency.observe_n(age, u64::from(self.messages[0]));
            self.first_end = end;
            self.messages = [self.messages[1], 0];
            self.oldest = [self.oldest[1], 0];
        }
    }

    /// Everything encoded was written (a WebSocket flush completed).
    pub(crate) fn all_written(&mut self, latency: &Histogram) {
        self.written(u64::MAX, u64::MAX, latency);
    }
}

/// Subscribers reached by one message.
const FANOUT_BOUNDS: &[u64] = &[0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000];
/// Microseconds from publish to write (and per history write).
pub(crate) const LATENCY_BOUNDS: &[u64] = &[
    10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000,
];
/// Bytes waiting in an outbound queue.
const QUEUE_BOUNDS: &[u64] =
    &[256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216];

/// Counters and histograms, updated with relaxed atomics on the hot path.
#[derive(Debug)]
pub(crate) struct Stats {
    connections_refused: AtomicU64,
    /// Connections opened, by transport.
    opened_by: [AtomicU64; 3],
    /// Connections closed, by transport.
    closed_by: [AtomicU64; 3],
    /// Frames received, by command (`Command as usize`).
    frames_in_by: [AtomicU64; 15],
    /// Frames sent, by command.
    frames_out_by: [AtomicU64; 15],
    /// `ERROR` frames sent, by reason.
    errors_by: [AtomicU64; 7],
    /// Subscribers reached per published message.
    pub(crate) fanout: Histogram,
    /// Microseconds from routing to the socket write, one sample per
    /// message (see [`Unwritten`]).
    pub(crate) latency: Histogram,
    /// Bytes waiting in a connection's outbound queue when its writer
    /// takes a batch (taken plus left), one sample per batch.
    pub(crate) queued: Histogram,
    messages_published: AtomicU64,
    deliveries: AtomicU64,
    slow_consumer_disconnects: AtomicU64,
    slow_consumer_drops: AtomicU64,
    heartbeat_timeouts: AtomicU64,
}

macro_rules! bump {
    ($($name:ident => $field:ident;)*) => {
        impl Stats {
            $(
                pub(crate) fn $name(&self, n: u64) {
                    self.$field.fetch_add(n, Relaxed);
                }
            )*
        }
    };
}

bump! {
    connection_refused => connections_refused;
    published => messages_published;
    delivered => deliveries;
    heartbeat_timeout => heartbeat_timeouts;
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            connections_refused: AtomicU64::new(0),
            opened_by: Default::default(),
            closed_by: Default::default(),
            frames_in_by: Default::default(),
            frames_out_by: Default::default(),
            errors_by: Default::default(),
            fanout: Histogram::new(FANOUT_BOUNDS),
            latency: Histogram::new(LATENCY_BOUNDS),
            queued: Histogram::new(QUEUE_BOUNDS),
            messages_published: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            slow_consumer_disconnects: AtomicU64::new(0),
            slow_consumer_drops: AtomicU64::new(0),
            heartbeat_timeouts: AtomicU64::new(0),
        }
    }
}

fn load_all<const N: usize>(counters: &[AtomicU64; N]) -> [u64; N] {
    std::array::from_fn(|i| counters[i].load(Relaxed))
}

impl Stats {
    pub(crate) fn connection_opened(&self, transport: TransportKind) {
        self.opened_by[transport_index(transport)].fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_closed(&self, transport: TransportKind) {
        self.closed_by[transport_index(transport)].fetch_add(1, Relaxed);
    }

    pub(crate) fn frame_in(&self, command: Command) {
        self.frames_in_by[command as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn frame_out(&self, command: Command, n: u64) {
        self.frames_out_by[command as usize].fetch_add(n, Relaxed);
    }

    pub(crate) fn error_sent(&self, reason: ErrorReason) {
        // `ALL` lists the reasons in declaration order.
        self.errors_by[reason as usize].fetch_add(1, Relaxed);
    }

    /// An `ERROR` frame written without a session (to a connection refused
    /// at the limit): counted by reason and as a frame sent, as a
    /// session's are.
    pub(crate) fn error_written(&self, reason: ErrorReason) {
        self.error_sent(reason);
        self.frame_out(Command::Error, 1);
    }

    /// Connections opened and closed, by transport (see [`TRANSPORTS`]).
    pub(crate) fn connections_by_transport(&self) -> ([u64; 3], [u64; 3]) {
        (load_all(&self.opened_by), load_all(&self.closed_by))
    }

    /// Frames received and sent, by command (see [`Command::ALL`]).
    pub(crate) fn frames_by_command(&self) -> ([u64; 15], [u64; 15]) {
        (load_all(&self.frames_in_by), load_all(&self.frames_out_by))
    }

    /// `ERROR` frames by reason (see [`ErrorReason::ALL`]).
    pub(crate) fn errors_by_reason(&self) -> [u64; 7] {
        load_all(&self.errors_by)
    }

    pub(crate) fn slow_consumer(&self, policy: SlowConsumerPolicy) {
        match policy {
            SlowConsumerPolicy::Disconnect => &self.slow_consumer_disconnects,
            SlowConsumerPolicy::DropOldest | SlowConsumerPolicy::DropNewest => {
                &self.slow_consumer_drops
            }
        }
        .fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            connections_total: [TransportKind::Tcp, TransportKind::WebSocket]
                .iter()
                .map(|t| self.opened_by[transport_index(*t)].load(Relaxed))
                .sum(),
            connections_refused: self.connections_refused.load(Relaxed),
            frames_in: self.frames_in_by.iter().map(|c| c.load(Relaxed)).sum(),
            frames_out: self.frames_out_by.iter().map(|c| c.load(Relaxed)).sum(),
            messages_published: self.messages_published.load(Relaxed),
            deliveries: self.deliveries.load(Relaxed),
            slow_consumer_disconnects: self.slow_consumer_disconnects.load(Relaxed),
            slow_consumer_drops: self.slow_consumer_drops.load(Relaxed),
            heartbeat_timeouts: self.heartbeat_timeouts.load(Relaxed),
            errors_sent: self.errors_by.iter().map(|c| c.load(Relaxed)).sum(),
        }
    }
}

/// The broker's counters at one moment; every field only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Connections accepted since start, TCP and WebSocket (the
    /// in-process subscriptions of [`Broker::subscribe`](crate::Broker::subscribe)
    /// are counted only in the metrics, as transport `local`).
    pub connections_total: u64,
    /// Connections refused because [`Limits::max_connections`](crate::Limits) was reached.
    pub connections_refused: u64,
    /// Frames received (heart-beats not counted).
    pub frames_in: u64,
    /// Frames sent (heart-beats not counted).
    pub frames_out: u64,
    /// Messages published on this node (by `SEND` or through the handle);
    /// those that arrive from other nodes are not counted here.
    pub messages_published: u64,
    /// Messages handed to subscriptions.
    pub deliveries: u64,
    /// Connections closed by the slow-consumer policy.
    pub slow_consumer_disconnects: u64,
    /// Deliveries dropped by the slow-consumer policy.
    pub slow_consumer_drops: u64,
    /// Connections closed for silence past the heart-beat tolerance.
    pub heartbeat_timeouts: u64,
    /// `ERROR` frames sent.
    pub errors_sent: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_label_arrays_are_indexed_by_declaration_order() {
        for (i, reason) in ErrorReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "{reason:?}");
        }
        for (i, command) in Command::ALL.iter().enumerate() {
            assert_eq!(*command as usize, i, "{command:?}");
        }
        for (i, transport) in TRANSPORTS.iter().enumerate() {
            assert_eq!(transport_index(*transport), i, "{transport:?}");
        }
    }

    #[test]
    fn totals_are_the_sums_of_the_per_label_counters() {
        let stats = Stats::default();
        stats.connection_opened(TransportKind::Tcp);
        stats.connection_opened(TransportKind::WebSocket);
        stats.error_sent(ErrorReason::Auth);
        stats.error_sent(ErrorReason::Shutdown);
        stats.error_sent(ErrorReason::Auth);
        let snapshot = stats.snapshot();
        assert_eq!((snapshot.connections_total, snapshot.errors_sent), (2, 3));
        assert_eq!(stats.errors_by_reason()[ErrorReason::Auth as usize], 2);
    }

    /// Total and bucket counts of `latency` (bucket index of
    /// `LATENCY_BOUNDS`, count in it).
    fn observed(latency: &Histogram) -> (u64, Vec<(usize, u64)>) {
        let snapshot = latency.snapshot();
        let buckets = snapshot.counts.iter().copied().enumerate().filter(|(_, n)| *n > 0);
        (snapshot.counts.iter().sum(), buckets.collect())
    }

    #[test]
    fn messages_are_observed_once_each_when_their_batch_is_written() {
        let latency = Histogram::new(LATENCY_BOUNDS);
        let mut unwritten = Unwritten::default();
        let now = now_micros();
        // Two batches: 3 messages ending at 100, 2 ending at 250.
        unwritten.queued(100, 3, now);
        unwritten.queued(250, 2, now);
        unwritten.written(99, 250, &latency);
        assert_eq!(observed(&latency).0, 0, "nothing is observed before its end is written");
        unwritten.written(100, 250, &latency);
        assert_eq!(observed(&latency).0, 3, "the first batch, each message once");
        unwritten.written(249, 250, &latency);
        assert_eq!(observed(&latency).0, 3);
        unwritten.written(250, 250, &latency);
        assert_eq!(observed(&latency).0, 5);
        unwritten.written(400, 400, &latency);
        assert_eq!(observed(&latency).0, 5, "nothing is observed twice");
    }

    #[test]
    fn batches_behind_the_first_merge_and_count_at_their_oldest_age() {
        let latency = Histogram::new(LATENCY_BOUNDS);
        let mut unwritten = Unwritten::default();
        let (now, old) = (10_000_000, 7_000_000);
        unwritten.queued(10, 1, now);
        // Three more batches while the first waits: one group, at the age
        // of its oldest message (3 s: the bucket up to 5 s).
        unwritten.queued(20, 1, now);
        unwritten.queued(30, 4, old);
        unwritten.queued(40, 2, now);
        assert_eq!(size_of::<Unwritten>(), 32, "fixed, small memory per connection");
        unwritten.observe(40, 40, now, &latency);
        let slow = LATENCY_BOUNDS.partition_point(|&b| b < 3_000_000);
        assert_eq!(observed(&latency), (8, vec![(0, 1), (slow, 7)]));
        assert_eq!(latency.snapshot().sum, 7 * 3_000_000);
    }

    #[test]
    fn observe_n_adds_n_samples_with_one_update() {
        let latency = Histogram::new(LATENCY_BOUNDS);
        latency.observe_n(30, 4);
        let snapshot = latency.snapshot();
        assert_eq!(snapshot.counts[2], 4, "30 µs is in the bucket up to 50 µs");
        assert_eq!(snapshot.sum, 120);
    }
}
