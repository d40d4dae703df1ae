//! `GET /metrics` (Prometheus text format) and the figures of the status
//! page: the broker's and the history writer's collectors, the process
//! (CPU, memory, file descriptors), and the chat service's own counters.

use std::time::Instant;

use prometheus::{Encoder, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};
use stomp_broker::Broker;
use stomp_broker::metrics::{BrokerCollector, HistoryWriterCollector};
use stomp_broker::store::HistoryWriter;

/// Why a post was refused: the label values of `chat_posts_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    UnknownRoom,
    BadMessage,
    Empty,
    TooLong,
    Unavailable,
    ShuttingDown,
}

impl Refused {
    const ALL: [Self; 6] = [
        Self::UnknownRoom,
        Self::BadMessage,
        Self::Empty,
        Self::TooLong,
        Self::Unavailable,
        Self::ShuttingDown,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::UnknownRoom => "unknown_room",
            Self::BadMessage => "bad_message",
            Self::Empty => "empty",
            Self::TooLong => "too_long",
            Self::Unavailable => "unavailable",
            Self::ShuttingDown => "shutting_down",
        }
    }
}

/// Status classes of HTTP answers.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The chat service's counters and the registry `/metrics` renders.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    started: Instant,
    pub(crate) posted: IntCounter,
    refused: IntCounterVec,
    pub(crate) resumes: IntCounter,
    pub(crate) replayed: IntCounter,
    pub(crate) rooms_created: IntCounter,
    http: IntCounterVec,
}

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    let counter = IntCounter::new(name, help)?;
    registry.register(Box::new(counter.clone()))?;
    Ok(counter)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let counter = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(counter.clone()))?;
    Ok(counter)
}

impl Metrics {
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let refused = counter_vec(
            &registry,
            "chat_posts_refused_total",
            "Posts to /app/rooms.{id} refused, by reason.",
            &["reason"],
        )?;
        for reason in Refused::ALL {
            refused.with_label_values(&[reason.as_str()]);
        }
        let http = counter_vec(
            &registry,
            "chat_http_requests_total",
            "HTTP requests answered, by route template and status class.",
            &["route", "status_class"],
        )?;
        Ok(Self {
            posted: counter(&registry, "chat_messages_posted_total", "Chat messages accepted.")?,
            resumes: counter(
                &registry,
                "chat_resumes_total",
                "Subscriptions resumed with x-resume-after.",
            )?,
            replayed: counter(
                &registry,
                "chat_replayed_messages_total",
                "Messages delivered from history by resumes.",
            )?,
            rooms_created: counter(&registry, "chat_rooms_created_total", "Rooms created.")?,
            refused,
            http,
            registry,
            started: Instant::now(),
        })
    }

    /// Adds the collectors of the broker, the history writer and this
    /// process.
    pub(crate) fn collect_from(
        &self,
        broker: &Broker,
        history: &HistoryWriter,
    ) -> Result<(), prometheus::Error> {
        self.registry.register(Box::new(BrokerCollector::new(broker)))?;
        self.registry.register(Box::new(HistoryWriterCollector::new(history)))?;
        self.registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
    }

    pub(crate) fn refused(&self, reason: Refused) {
        self.refused.with_label_values(&[reason.as_str()]).inc();
    }

    /// Counts an HTTP answer; `route` is the matched route template, so
    /// the label has as many values as there are routes.
    pub(crate) fn http(&self, route: &str, status: u16) {
        let class = STATUS_CLASSES[usize::from(status / 100).clamp(1, 5) - 1];
        self.http.with_label_values(&[route, class]).inc();
    }

    /// Seconds since start.
    pub(crate) fn uptime(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Everything, in the Prometheus text format.
    pub(crate) fn render(&self) -> Result<(Vec<u8>, String), prometheus::Error> {
        let encoder = TextEncoder::new();
        let mut out = Vec::with_capacity(16 * 1024);
        encoder.encode(&self.registry.gather(), &mut out)?;
        Ok((out, encoder.format_type().to_owned()))
    }
}
