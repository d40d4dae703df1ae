//! Prometheus metrics (feature `metrics`): collectors for a
//! [`prometheus::Registry`] that read the broker's counters when scraped.
//!
//! Nothing is added to the hot path for them: the broker counts with
//! relaxed atomics (and fixed-bucket atomic histograms) whether or not
//! anyone collects, and [`BrokerCollector`] and [`HistoryWriterCollector`]
//! turn those into metric families at scrape time. Labels are bounded:
//! transport (3 values), command (15), reason (7), action (2).
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

use prometheus::core::{Collector, Desc};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use stomp_codec::Command;

use crate::Broker;
use crate::stats::{ErrorReason, HistogramSnapshot, TRANSPORTS};
use crate::store::HistoryWriter;

/// Name, help and type of each family a collector yields.
type Spec = (&'static str, &'static str, MetricType);

const BROKER: &[Spec] = &[
    ("stomp_connections_open", "STOMP connections open now, by transport.", MetricType::GAUGE),
    ("stomp_connections_total", "STOMP connections accepted, by transport.", MetricType::COUNTER),
    (
        "stomp_connections_refused_total",
        "Connections refused at the connection limit.",
        MetricType::COUNTER,
    ),
    ("stomp_frames_received_total", "Frames received, by command.", MetricType::COUNTER),
    ("stomp_frames_sent_total", "Frames sent, by command.", MetricType::COUNTER),
    ("stomp_messages_published_total", "Messages published.", MetricType::COUNTER),
    ("stomp_deliveries_total", "Messages handed to subscriptions.", MetricType::COUNTER),
    (
        "stomp_delivery_fanout_subscribers",
        "Subscribers on this node reached by one published message.",
        MetricType::HISTOGRAM,
    ),
    (
        "stomp_delivery_latency_seconds",
        "From publish to the write of the MESSAGE frame (one sample per write).",
        MetricType::HISTOGRAM,
    ),
    (
        "stomp_outbox_queued_bytes",
        "Bytes waiting in a connection's outbound queue when it writes.",
        MetricType::HISTOGRAM,
    ),
    (
        "stomp_slow_consumer_actions_total",
        "Slow-consumer policy actions: disconnect, or drop of messages.",
        MetricType::COUNTER,
    ),
    (
        "stomp_heartbeat_timeouts_total",
        "Connections closed for silence past the heart-beat tolerance.",
        MetricType::COUNTER,
    ),
    ("stomp_errors_sent_total", "ERROR frames sent, by reason.", MetricType::COUNTER),
];

const BACKPLANE: &[Spec] = &[
    ("stomp_backplane_connected", "1 while the backplane is connected.", MetricType::GAUGE),
    ("stomp_backplane_published_total", "Messages published to other nodes.", MetricType::COUNTER),
    (
        "stomp_backplane_publish_dropped_total",
        "Messages that could not be published to other nodes.",
        MetricType::COUNTER,
    ),
    ("stomp_backplane_received_total", "Messages received from other nodes.", MetricType::COUNTER),
    (
        "stomp_backplane_lost_total",
        "Messages of other nodes known lost (gaps in their sequences).",
        MetricType::COUNTER,
    ),
    ("stomp_backplane_reconnects_total", "Reconnections to the backplane.", MetricType::COUNTER),
    (
        "stomp_backplane_publish_queue_messages",
        "Messages waiting to be published to other nodes (lag).",
        MetricType::GAUGE,
    ),
    (
        "stomp_backplane_subscriptions",
        "Destinations this node receives from other nodes.",
        MetricType::GAUGE,
    ),
];

const WRITER: &[Spec] = &[
    ("stomp_history_buffered_messages", "Messages waiting to be written.", MetricType::GAUGE),
    ("stomp_history_buffered_bytes", "Bytes waiting to be written.", MetricType::GAUGE),
    ("stomp_history_accepted_total", "Messages accepted into the buffer.", MetricType::COUNTER),
    ("stomp_history_written_total", "Messages written to the store.", MetricType::COUNTER),
    (
        "stomp_history_refused_total",
        "Messages refused because the buffer was full.",
        MetricType::COUNTER,
    ),
    (
        "stomp_history_write_failures_total",
        "Failed batch writes (each retried).",
        MetricType::COUNTER,
    ),
    ("stomp_history_batch_messages", "Messages per batch written.", MetricType::HISTOGRAM),
    ("stomp_history_write_seconds", "Time to write one batch.", MetricType::HISTOGRAM),
];

fn descs(specs: &[Spec], labels: &[&[&str]]) -> Vec<Desc> {
    specs
        .iter()
        .zip(labels.iter().chain(std::iter::repeat(&(&[] as &[&str]))))
        .filter_map(|((name, help, _), labels)| {
            let labels = labels.iter().map(|l| (*l).to_owned()).collect();
            Desc::new((*name).to_owned(), (*help).to_owned(), labels, Default::default()).ok()
        })
        .collect()
}

fn family(spec: &Spec, metrics: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(spec.0.to_owned());
    family.set_help(spec.1.to_owned());
    family.set_field_type(spec.2);
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
fn histogram(snapshot: &HistogramSnapshot, scale: f64) -> Metric {
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
    let mut metric = Metric::default();
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
        let labels: &[&[&str]] = &[
            &["transport"],
            &["transport"],
            &[],
            &["command"],
            &["command"],
            &[],
            &[],
            &[],
            &[],
            &[],
            &["action"],
            &[],
            &["reason"],
        ];
        let mut descs = descs(BROKER, labels);
        descs.extend(self::descs(BACKPLANE, &[]));
        Self { broker: broker.clone(), descs }
    }
}

fn transport_label(i: usize) -> &'static str {
    match TRANSPORTS[i] {
        crate::TransportKind::Tcp => "tcp",
        crate::TransportKind::WebSocket => "websocket",
        crate::TransportKind::Local => "local",
    }
}

impl Collector for BrokerCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let stats = &self.broker.shared().stats;
        let snapshot = stats.snapshot();
        let (opened, closed) = stats.connections_by_transport();
        let (frames_in, frames_out) = stats.frames_by_command();
        let errors = stats.errors_by_reason();
        let per_transport = |values: &dyn Fn(usize) -> u64, gauge_kind: bool| {
            (0..TRANSPORTS.len())
                .map(|i| {
                    let labels = [("transport", transport_label(i))];
                    if gauge_kind {
                        gauge_with(values(i), &labels)
                    } else {
                        counter(values(i), &labels)
                    }
                })
                .collect()
        };
        let per_command = |counts: &[u64; 15], client: bool| {
            Command::ALL
                .iter()
                .filter(|c| from_client(**c) == client)
                .map(|c| counter(counts[*c as usize], &[("command", c.as_str())]))
                .collect()
        };
        let mut families = vec![
            family(&BROKER[0], per_transport(&|i| opened[i].saturating_sub(closed[i]), true)),
            family(&BROKER[1], per_transport(&|i| opened[i], false)),
            family(&BROKER[2], vec![counter(snapshot.connections_refused, &[])]),
            family(&BROKER[3], per_command(&frames_in, true)),
            family(&BROKER[4], per_command(&frames_out, false)),
            family(&BROKER[5], vec![counter(snapshot.messages_published, &[])]),
            family(&BROKER[6], vec![counter(snapshot.deliveries, &[])]),
            family(&BROKER[7], vec![histogram(&stats.fanout.snapshot(), 1.0)]),
            family(&BROKER[8], vec![histogram(&stats.latency.snapshot(), 1e6)]),
            family(&BROKER[9], vec![histogram(&stats.queued.snapshot(), 1.0)]),
            family(
                &BROKER[10],
                vec![
                    counter(snapshot.slow_consumer_disconnects, &[("action", "disconnect")]),
                    counter(snapshot.slow_consumer_drops, &[("action", "drop")]),
                ],
            ),
            family(&BROKER[11], vec![counter(snapshot.heartbeat_timeouts, &[])]),
            family(
                &BROKER[12],
                ErrorReason::ALL
                    .iter()
                    .zip(errors)
                    .map(|(reason, n)| counter(n, &[("reason", reason.as_str())]))
                    .collect(),
            ),
        ];
        if let Some(b) = self.broker.backplane_stats() {
            families.extend([
                family(&BACKPLANE[0], vec![gauge(u64::from(b.connected))]),
                family(&BACKPLANE[1], vec![counter(b.published, &[])]),
                family(&BACKPLANE[2], vec![counter(b.publish_dropped, &[])]),
                family(&BACKPLANE[3], vec![counter(b.received, &[])]),
                family(&BACKPLANE[4], vec![counter(b.lost, &[])]),
                family(&BACKPLANE[5], vec![counter(b.reconnects, &[])]),
                family(&BACKPLANE[6], vec![gauge(b.queued as u64)]),
                family(&BACKPLANE[7], vec![gauge(b.subscriptions as u64)]),
            ]);
        }
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
        Self { writer: writer.clone(), descs: descs(WRITER, &[]) }
    }
}

impl Collector for HistoryWriterCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let stats = self.writer.stats();
        let (batches, writes) = self.writer.histograms();
        vec![
            family(&WRITER[0], vec![gauge(stats.buffered as u64)]),
            family(&WRITER[1], vec![gauge(stats.buffered_bytes as u64)]),
            family(&WRITER[2], vec![counter(stats.accepted, &[])]),
            family(&WRITER[3], vec![counter(stats.written, &[])]),
            family(&WRITER[4], vec![counter(stats.refused, &[])]),
            family(&WRITER[5], vec![counter(stats.failures, &[])]),
            family(&WRITER[6], vec![histogram(&batches, 1.0)]),
            family(&WRITER[7], vec![histogram(&writes, 1e6)]),
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
        let metric = histogram(&counts.snapshot(), 10.0);
        let h = metric.get_histogram();
        assert_eq!(h.get_sample_count(), 4);
        assert!((h.get_sample_sum() - 56.5).abs() < 1e-9);
        let buckets: Vec<(f64, u64)> =
            h.get_bucket().iter().map(|b| (b.upper_bound(), b.cumulative_count())).collect();
        assert_eq!(buckets, [(1.0, 2), (10.0, 3)]);
    }
}
