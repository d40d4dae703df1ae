//! The `metrics` feature's collector reads what the broker records: the
//! outbound queue depth a write sees, messages counted as published once
//! in a cluster (on the node they were published on, as received on the
//! others), the `ERROR` frame of a refused connection, and subscriptions
//! made from Rust as `local` connections.

#![cfg(feature = "metrics")]

#[path = "support/extra.rs"]
mod extra;
mod support;
#[path = "support/ws_client.rs"]
mod ws_client;

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::proto::{MetricFamily, MetricType};
use stomp_broker::backplane::InProcessBus;
use stomp_broker::metrics::BrokerCollector;
use stomp_broker::{Broker, Limits};
use stomp_codec::Headers;
use support::{Client, TestBroker, WAIT};
use ws_client::{WsBroker, WsClient};

/// What `broker`'s collector yields now.
fn scrape(broker: &Broker) -> Vec<MetricFamily> {
    BrokerCollector::new(broker).collect()
}

/// The family `name`; panics naming it when missing.
fn family<'a>(families: &'a [MetricFamily], name: &str) -> &'a MetricFamily {
    families.iter().find(|f| f.name() == name).unwrap_or_else(|| panic!("no family {name}"))
}

/// The value of the counter or gauge `name` whose labels include `label`
/// (any one, for `None`).
fn value(broker: &Broker, name: &str, label: Option<(&str, &str)>) -> f64 {
    let families = scrape(broker);
    let family = family(&families, name);
    let metric = family
        .get_metric()
        .iter()
        .find(|m| {
            label.is_none_or(|(n, v)| m.get_label().iter().any(|l| l.name() == n && l.value() == v))
        })
        .unwrap_or_else(|| panic!("{name} has no series {label:?}"));
    if family.get_field_type() == MetricType::COUNTER {
        metric.get_counter().get_value()
    } else {
        metric.get_gauge().get_value()
    }
}

#[tokio::test]
async fn a_write_samples_the_whole_backlog_behind_it() {
    const MESSAGES: usize = 160;
    const BODY: usize = 16 * 1024;
    let broker = TestBroker::default().await;
    let handle = broker.broker.clone();
    let mut reader = broker.client("reader").await;
    reader.subscribe("s", "/topic/deep", "auto").await;

    // Published back to back from Rust on this (single-threaded) runtime:
    // 2.5 MiB wait (under the 4 MiB slow-consumer limit) before the
    // connection writes anything; one write takes about 256 KiB of it.
    for _ in 0..MESSAGES {
        let body = vec![b'x'; BODY];
        assert_eq!(handle.publish("/topic/deep", Headers::new(), body), Ok(1));
    }
    for _ in 0..MESSAGES {
        assert_eq!(reader.expect_message().await.body().len(), BODY);
    }

    let families = scrape(&handle);
    let histogram = family(&families, "stomp_outbox_queued_bytes").get_metric()[0].get_histogram();
    let up_to = |bound: f64| {
        histogram
            .get_bucket()
            .iter()
            .find(|b| (b.upper_bound() - bound).abs() < 0.5)
            .map_or(0, |b| b.cumulative_count())
    };
    assert!(histogram.get_sample_count() > 0, "writes were sampled");
    assert!(
        histogram.get_sample_count() > up_to(1_048_576.0),
        "the first write saw about 2.5 MiB waiting (taken and left): {histogram:?}"
    );
    support::disconnect(reader).await;
    broker.stop().await;
}

#[tokio::test]
async fn a_message_counts_as_published_once_on_the_node_it_was_published_on() {
    let bus = InProcessBus::new();
    let (a, b) = (
        Broker::builder().backplane(bus.node()).build(),
        Broker::builder().backplane(bus.node()).build(),
    );
    let mut here = a.subscribe("/topic/news").expect("subscribe on a");
    let mut there = b.subscribe("/topic/news").expect("subscribe on b");
    assert!(there.live(WAIT).await, "b's subscription is live on the bus");
    for n in 0..3 {
        assert_eq!(a.publish("/topic/news", Headers::new(), format!("n{n}")), Ok(1));
    }
    for n in 0..3 {
        let expected = format!("n{n}");
        assert_eq!(here.recv().await.expect("on a").body(), expected.as_bytes());
        assert_eq!(there.recv().await.expect("on b").body(), expected.as_bytes());
    }

    let published = "stomp_messages_published_total";
    assert_eq!(value(&a, published, None), 3.0);
    assert_eq!(value(&b, published, None), 0.0, "arrivals from a are not b's publishes");
    assert_eq!(value(&b, "stomp_backplane_received_total", None), 3.0);
    assert_eq!(value(&b, "stomp_deliveries_total", None), 3.0, "b delivered them all the same");
    assert_eq!((a.stats().messages_published, b.stats().messages_published), (3, 0));
    drop((here, there));
    a.shutdown().await;
    b.shutdown().await;
}

/// The `ERROR` frames, and those with reason `limit`, counted by `broker`.
fn limit_errors(broker: &Broker) -> (f64, f64) {
    let frames = value(broker, "stomp_frames_sent_total", Some(("command", "ERROR")));
    let limit = value(broker, "stomp_errors_sent_total", Some(("reason", "limit")));
    (frames, limit)
}

/// Waits until `broker` counts `n` `ERROR` frames, all for the limit.
async fn expect_limit_errors(broker: &Broker, n: f64) {
    let counted = || limit_errors(broker) == (n, n);
    extra::eventually(&format!("{n} ERROR frames for the limit are counted"), counted).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(limit_errors(broker), (n, n), "counted once each");
}

#[tokio::test]
async fn the_error_to_a_refused_connection_is_counted() {
    let limits = Limits::default().max_connections(1);
    let broker = WsBroker::start(Broker::builder().limits(limits)).await;
    let handle = broker.broker().clone();
    let first = Client::connect(broker.tcp.addr, "first").await;

    let mut refused = Client::raw(broker.tcp.addr).await;
    let error = extra::expect_error_then_close(&mut refused).await;
    assert!(extra::message(&error).contains("too many connections"), "{error:?}");
    expect_limit_errors(&handle, 1.0).await;

    let mut refused = WsClient::open(broker.ws_addr).await;
    let ending = refused.expect_end().await;
    assert_eq!(ending.frames.len(), 1, "{:?}", ending.frames);
    expect_limit_errors(&handle, 2.0).await;
    assert_eq!(value(&handle, "stomp_connections_refused_total", None), 2.0);

    support::disconnect(first).await;
    broker.stop().await;
}

#[tokio::test]
async fn a_subscription_from_rust_is_a_local_connection_while_it_lives() {
    let broker = Broker::builder().build();
    let local = Some(("transport", "local"));
    let open = |b: &Broker| value(b, "stomp_connections_open", local);
    let total = |b: &Broker| value(b, "stomp_connections_total", local);
    assert_eq!((open(&broker), total(&broker)), (0.0, 0.0));

    let first = broker.subscribe("/topic/a").expect("subscribe");
    let second = broker.subscribe("/queue/b").expect("subscribe");
    assert_eq!((open(&broker), total(&broker)), (2.0, 2.0));
    assert_eq!(broker.connection_count(), 0, "not a network connection");
    assert_eq!(broker.stats().connections_total, 0);

    drop(first);
    assert_eq!((open(&broker), total(&broker)), (1.0, 2.0));
    drop(second);
    assert_eq!((open(&broker), total(&broker)), (0.0, 2.0));
    assert_eq!(value(&broker, "stomp_connections_open", Some(("transport", "tcp"))), 0.0);
    broker.shutdown().await;
}
