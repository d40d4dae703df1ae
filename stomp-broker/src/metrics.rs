//! Prometheus metrics (feature `metrics`): collectors for a
//! [`prometheus::Registry`] that read the broker's counters when scraped.
//!
//! Nothing is added to the hot path for them: the broker counts with
//! relaxed atomics (and fixed-bucket atomic histograms) whether or not
//! anyone collects, and [`BrokerCollector`] and [`HistoryWriterCollector`]
//! turn those into metric families at scrape time; the gauges of the
//! outbound queues' backlog walk the live queues then, a short lock each.
//! Labels are bounded: transport (3 values), command (15), reason (7),
//! action (2), outcome (2).
//!
//! ```
//! use stomp_broker::Broker;
//! use stomp_broker::metrics::BrokerCollector;
//!
//! let broker = Broker::builder().build();
//! let registry = prometheus::Registry::new();
//! registry.register(Box::new(BrokerCollector::new(&broker))).unwrap();
//! let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
//! assert!(text.contains("stomp_connections_open{transport=\"tcp\"} 0"));
//! ```

use std::collections::HashMap;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use stomp_codec::Command;

use crate::stats::{ErrorReason, HistogramSnapshot, TRANSPORTS};
use crate::store::HistoryWriter;
use crate::{Broker, StatsSnapshot};

/// Name, help, type and label names of each family a collector yields.
struct Spec {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
}

const fn spec(name: &'static str, help: &'static str, kind: MetricType) -> Spec {
    Spec { name, help, kind, labels: &[] }
}

const fn labelled_spec(
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
) -> Spec {
    Spec { name, help, kind, labels }
}

const BROKER: &[Spec] = &[
    labelled_spec(
        "stomp_connections_open",
        "STOMP connections open now, by transport (local: subscriptions made from Rust with \
         Broker::subscribe).",
        MetricType::GAUGE,
        &["transport"],
    ),
    labelled_spec(
        "stomp_connections_total",
        "STOMP connections opened, by transport.",
        MetricType::COUNTER,
        &["transport"],
    ),
    spec(
        "stomp_connections_refused_total",
        "Connections refused at the connection limit.",
        MetricType::COUNTER,
    ),
    labelled_spec(
        "stomp_frames_received_total",
        "Frames received, by command.",
        MetricType::COUNTER,
        &["command"],
    ),
    labelled_spec(
        "stomp_frames_sent_total",
        "Frames sent, by command (ERROR frames to refused connections included).",
        MetricType::COUNTER,
        &["command"],
    ),
    spec(
        "stomp_messages_published_total",
        "Messages published on this node, by its clients or the embedding application \
         (messages from other nodes count in stomp_backplane_received_total).",
        MetricType::COUNTER,
    ),
    spec("stomp_deliveries_total", "Messages handed to subscriptions.", MetricType::COUNTER),
    spec(
        "stomp_delivery_fanout_subscribers",
        "Subscribers on this node reached by one message routed here (published here or \
         received from another node).",
        MetricType::HISTOGRAM,
    ),
    spec(
        "stomp_delivery_latency_seconds",
        "From when this node routed a message (published here, or arrived from another node) \
         to when the socket took its MESSAGE frame, one sample per message; the messages of \
         one write are counted at the age of the oldest among them (an upper bound).",
        MetricType::HISTOGRAM,
    ),
    spec(
        "stomp_outbox_queued_bytes",
        "Bytes queued for a connection each time its writer takes a batch (taken plus left); \
         a stalled connection takes nothing, see stomp_outbox_largest_backlog_bytes.",
        MetricType::HISTOGRAM,
    ),
    spec(
        "stomp_outbox_backlog_bytes",
        "Bytes waiting now in the outbound queues of all connections and local subscriptions.",
        MetricType::GAUGE,
    ),
    spec(
        "stomp_outbox_largest_backlog_bytes",
        "Bytes waiting now in the fullest outbound queue.",
        MetricType::GAUGE,
    ),
    spec(
        "stomp_outbox_limit_bytes",
        "Bytes an outbound queue may hold before the slow-consumer policy acts.",
        MetricType::GAUGE,
    ),
    labelled_spec(
        "stomp_slow_consumer_actions_total",
        "Slow-consumer policy actions: disconnect, or drop of messages.",
        MetricType::COUNTER,
        &["action"],
    ),
    spec(
        "stomp_heartbeat_timeouts_total",
        "Connections closed for silence past the heart-beat tolerance.",
        MetricType::COUNTER,
    ),
    labelled_spec(
        "stomp_errors_sent_total",
        "ERROR frames sent, by reason.",
        MetricType::COUNTER,
        &["reason"],
    ),
];

const BACKPLANE: &[Spec] = &[
    spec("stomp_backplane_connected", "1 while the backplane is connected.", MetricType::GAUGE),
    spec(
        "stomp_backplane_published_total",
        "Messages published to other nodes.",
        MetricType::COUNTER,
    ),
    spec(
        "stomp_backplane_publish_dropped_total",
        "Messages that could not be published to other nodes.",
        MetricType::COUNTER,
    ),
    spec(
        "stomp_backplane_received_total",
        "Messages received from other nodes.",
        MetricType::COUNTER,
    ),
    spec(
        "stomp_backplane_lost_total",
        "Messages of other nodes known lost (gaps in their sequences).",
        MetricType::COUNTER,
    ),
    spec(
        "stomp_backplane_reconnects_total",
        "Reconnections to the backplane.",
        MetricType::COUNTER,
    ),
    spec(
        "stomp_backplane_publish_queue_messages",
        "Messages waiting to be published to other nodes (lag).",
        MetricType::GAUGE,
    ),
    spec(
        "stomp_backplane_subscriptions",
        "Destinations this node receives from other nodes.",
        MetricType::GAUGE,
    ),
];

const WRITER: &[Spec] = &[
    spec("stomp_history_buffered_messages", "Messages waiting to be written.", MetricType::GAUGE),
    spec("stomp_history_buffered_bytes", "Bytes waiting to be written.", MetricType::GAUGE),
    spec("stomp_history_accepted_total", "Messages accepted into the buffer.", MetricType::COUNTER),
    spec("stomp_history_written_total", "Messages written to the store.", MetricType::COUNTER),
    spec(
        "stomp_history_refused_total",
        "Messages refused because the buffer was full.",
        MetricType::COUNTER,
    ),
    spec(
        "stomp_history_write_failures_total",
        "Failed batch writes (each retried).",
        MetricType::COUNTER,
    ),
    spec("stomp_history_batch_messages", "Messages per batch written.", MetricType::HISTOGRAM),
    labelled_spec(
        "stomp_history_write_seconds",
        "Time of each attempt to write a batch, by outcome: ok, or error (failed, timed out, \
         or abandoned at shutdown; retried).",
        MetricType::HISTOGRAM,
        &["outcome"],
    ),
];

fn descs(specs: &[Spec]) -> Vec<Desc> {
    specs
        .iter()
        .filter_map(|spec| {
            let labels = spec.labels.iter().map(|l| (*l).to_owned()).collect();
            Desc::new(spec.name.to_owned(), spec.help.to_owned(), labels, HashMap::new()).ok()
        })
        .collect()
}

fn family(spec: &Spec, metrics: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(spec.name.to_owned());
    family.set_help(spec.help.to_owned());
    family.set_field_type(spec.kind);
    family.set_metric(metrics);
    family
}

fn labelled(labels: &[(&str, &str)]) -> Metric {
    let mut metric = Metric::default();
    let pairs = labels
        .iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name((*name).to_owned());
            pair.set_value((*value).to_owned());
            pair
        })
        .collect();
    metric.set_label(pairs);
    metric
}

#[expect(clippy::cast_precision_loss, reason = "counters far below 2^53")]
fn counter(value: u64, labels: &[(&str, &str)]) -> Metric {
    let mut metric = labelled(labels);
    let mut counter = Counter::default();
    counter.set_value(value as f64);
    metric.set_counter(counter);
    metric
}

#[expect(clippy::cast_precision_loss, reason = "gauges far below 2^53")]
fn gauge_with(value: u64, labels: &[(&str, &str)]) -> Metric {
    let mut metric = labelled(labels);
    let mut gauge = Gauge::default();
    gauge.set_value(value as f64);
    metric.set_gauge(gauge);
    metric
}

fn gauge(value: u64) -> Metric {
    gauge_with(value, &[])
}

/// Whether clients send `command` (the others are the server's).
fn from_client(command: Command) -> bool {
    !matches!(command, Command::Connected | Command::Message | Command::Receipt | Command::Error)
}

/// A histogram whose values were counted in units of `1 / scale`.
#[expect(clippy::cast_precision_loss, reason = "bounds and sums far below 2^53")]
fn histogram(snapshot: &HistogramSnapshot, scale: f64, labels: &[(&str, &str)]) -> Metric {
    let mut cumulative = 0;
    let mut buckets = Vec::with_capacity(snapshot.bounds.len());
    for (bound, count) in snapshot.bounds.iter().zip(&snapshot.counts) {
        cumulative += count;
        let mut bucket = Bucket::default();
        bucket.set_upper_bound(*bound as f64 / scale);
        bucket.set_cumulative_count(cumulative);
        buckets.push(bucket);
    }
    let mut histogram = Histogram::default();
    histogram.set_sample_count(snapshot.counts.iter().sum());
    histogram.set_sample_sum(snapshot.sum as f64 / scale);
    histogram.set_bucket(buckets);
    let mut metric = labelled(labels);
    metric.set_histogram(histogram);
    metric
}

/// The broker's metrics, and its backplane's when it has one.
#[derive(Debug)]
pub struct BrokerCollector {
    broker: Broker,
    descs: Vec<Desc>,
}

impl BrokerCollector {
    /// A collector of `broker`'s metrics.
    #[must_use]
    pub fn new(broker: &Broker) -> Self {
        let mut descs = descs(BROKER);
        descs.extend(self::descs(BACKPLANE));
        Self { broker: broker.clone(), descs }
    }

    /// Connections, frames and messages: `BROKER[0..=7]`.
    fn traffic(&self, snapshot: &StatsSnapshot) -> Vec<MetricFamily> {
        let stats = &self.broker.shared().stats;
        let (opened, closed) = stats.connections_by_transport();
        let (frames_in, frames_out) = stats.frames_by_command();
        vec![
            family(&BROKER[0], per_transport(|i| opened[i].saturating_sub(closed[i]), gauge_with)),
            family(&BROKER[1], per_transport(|i| opened[i], counter)),
            family(&BROKER[2], vec![counter(snapshot.connections_refused, &[])]),
            family(&BROKER[3], per_command(&frames_in, true)),
            family(&BROKER[4], per_command(&frames_out, false)),
            family(&BROKER[5], vec![counter(snapshot.messages_published, &[])]),
            family(&BROKER[6], vec![counter(snapshot.deliveries, &[])]),
            family(&BROKER[7], vec![histogram(&stats.fanout.snapshot(), 1.0, &[])]),
        ]
    }

    /// Latency, outbound queues and trouble: `BROKER[8..]`.
    fn pressure(&self, snapshot: &StatsSnapshot) -> Vec<MetricFamily> {
        let shared = self.broker.shared();
        let stats = &shared.stats;
        let (backlog, largest) = shared.outboxes.backlog();
        let limit = shared.policy.limits.max_pending_bytes as u64;
        let errors = stats.errors_by_reason();
        vec![
            family(&BROKER[8], vec![histogram(&stats.latency.snapshot(), 1e6, &[])]),
            family(&BROKER[9], vec![histogram(&stats.queued.snapshot(), 1.0, &[])]),
            family(&BROKER[10], vec![gauge(backlog)]),
            family(&BROKER[11], vec![gauge(largest)]),
            family(&BROKER[12], vec![gauge(limit)]),
            family(
                &BROKER[13],
                vec![
                    counter(snapshot.slow_consumer_disconnects, &[("action", "disconnect")]),
                    counter(snapshot.slow_consumer_drops, &[("action", "drop")]),
                ],
            ),
            family(&BROKER[14], vec![counter(snapshot.heartbeat_timeouts, &[])]),
            family(
                &BROKER[15],
                ErrorReason::ALL
                    .iter()
                    .zip(errors)
                    .map(|(reason, n)| counter(n, &[("reason", reason.as_str())]))
                    .collect(),
            ),
        ]
    }

    /// The backplane's families, when there is one.
    fn backplane(&self) -> Vec<MetricFamily> {
        let Some(b) = self.broker.backplane_stats() else { return Vec::new() };
        vec![
            family(&BACKPLANE[0], vec![gauge(u64::from(b.connected))]),
            family(&BACKPLANE[1], vec![counter(b.published, &[])]),
            family(&BACKPLANE[2], vec![counter(b.publish_dropped, &[])]),
            family(&BACKPLANE[3], vec![counter(b.received, &[])]),
            family(&BACKPLANE[4], vec![counter(b.lost, &[])]),
            family(&BACKPLANE[5], vec![counter(b.reconnects, &[])]),
            family(&BACKPLANE[6], vec![gauge(b.queued as u64)]),
            family(&BACKPLANE[7], vec![gauge(b.subscriptions as u64)]),
        ]
    }
}

fn transport_label(i: usize) -> &'static str {
    match TRANSPORTS[i] {
        crate::TransportKind::Tcp => "tcp",
        crate::TransportKind::WebSocket => "websocket",
        crate::TransportKind::Local => "local",
    }
}

/// One metric per transport, `value(i)` for the `i`th of [`TRANSPORTS`].
fn per_transport(
    value: impl Fn(usize) -> u64,
    metric: fn(u64, &[(&str, &str)]) -> Metric,
) -> Vec<Metric> {
    (0..TRANSPORTS.len()).map(|i| metric(value(i), &[("transport", transport_label(i))])).collect()
}

/// One counter per command that the client (or the server) sends.
fn per_command(counts: &[u64; 15], client: bool) -> Vec<Metric> {
    Command::ALL
        .iter()
        .filter(|c| from_client(**c) == client)
        .map(|c| counter(counts[*c as usize], &[("command", c.as_str())]))
        .collect()
}

impl Collector for BrokerCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snapshot = self.broker.shared().stats.snapshot();
        let mut families = self.traffic(&snapshot);
        families.extend(self.pressure(&snapshot));
        families.extend(self.backplane());
        families
    }
}

/// A [`HistoryWriter`]'s metrics: its buffer, batches and write times.
#[derive(Debug)]
pub struct HistoryWriterCollector {
    writer: HistoryWriter,
    descs: Vec<Desc>,
}

impl HistoryWriterCollector {
    /// A collector of `writer`'s metrics.
    #[must_use]
    pub fn new(writer: &HistoryWriter) -> Self {
        Self { writer: writer.clone(), descs: descs(WRITER) }
    }
}

impl Collector for HistoryWriterCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let stats = self.writer.stats();
        let (batches, [succeeded, failed]) = self.writer.histograms();
        vec![
            family(&WRITER[0], vec![gauge(stats.buffered as u64)]),
            family(&WRITER[1], vec![gauge(stats.buffered_bytes as u64)]),
            family(&WRITER[2], vec![counter(stats.accepted, &[])]),
            family(&WRITER[3], vec![counter(stats.written, &[])]),
            family(&WRITER[4], vec![counter(stats.refused, &[])]),
            family(&WRITER[5], vec![counter(stats.failures, &[])]),
            family(&WRITER[6], vec![histogram(&batches, 1.0, &[])]),
            family(
                &WRITER[7],
                vec![
                    histogram(&succeeded, 1e6, &[("outcome", "ok")]),
                    histogram(&failed, 1e6, &[("outcome", "error")]),
                ],
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Histogram as Counts;

    #[test]
    fn histograms_are_cumulative_and_scaled() {
        static BOUNDS: &[u64] = &[10, 100];
        let counts = Counts::new(BOUNDS);
        for v in [5, 10, 50, 500] {
            counts.observe(v);
        }
        let metric = histogram(&counts.snapshot(), 10.0, &[]);
        let h = metric.get_histogram();
        assert_eq!(h.get_sample_count(), 4);
        assert!((h.get_sample_sum() - 56.5).abs() < 1e-9);
        let buckets: Vec<(f64, u64)> =
            h.get_bucket().iter().map(|b| (b.upper_bound(), b.cumulative_count())).collect();
        assert_eq!(buckets, [(1.0, 2), (10.0, 3)]);
    }
}
