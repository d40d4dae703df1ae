//! Counters of what the broker did, read through [`Broker::stats`](crate::Broker::stats).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::SlowConsumerPolicy;

/// Monotonic counters, updated with relaxed atomics on the hot path.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    connections_total: AtomicU64,
    connections_refused: AtomicU64,
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    messages_published: AtomicU64,
    deliveries: AtomicU64,
    slow_consumer_disconnects: AtomicU64,
    slow_consumer_drops: AtomicU64,
    heartbeat_timeouts: AtomicU64,
    errors_sent: AtomicU64,
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
    connection_opened => connections_total;
    connection_refused => connections_refused;
    frames_in => frames_in;
    frames_out => frames_out;
    published => messages_published;
    delivered => deliveries;
    heartbeat_timeout => heartbeat_timeouts;
    error_sent => errors_sent;
}

impl Stats {
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
            connections_total: self.connections_total.load(Relaxed),
            connections_refused: self.connections_refused.load(Relaxed),
            frames_in: self.frames_in.load(Relaxed),
            frames_out: self.frames_out.load(Relaxed),
            messages_published: self.messages_published.load(Relaxed),
            deliveries: self.deliveries.load(Relaxed),
            slow_consumer_disconnects: self.slow_consumer_disconnects.load(Relaxed),
            slow_consumer_drops: self.slow_consumer_drops.load(Relaxed),
            heartbeat_timeouts: self.heartbeat_timeouts.load(Relaxed),
            errors_sent: self.errors_sent.load(Relaxed),
        }
    }
}

/// The broker's counters at one moment; every field only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Connections accepted since start, over every transport.
    pub connections_total: u64,
    /// Connections refused because [`Limits::max_connections`](crate::Limits) was reached.
    pub connections_refused: u64,
    /// Frames received (heart-beats not counted).
    pub frames_in: u64,
    /// Frames sent (heart-beats not counted).
    pub frames_out: u64,
    /// Messages published (by `SEND` or through the handle).
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
