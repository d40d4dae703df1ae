//! The `metrics` feature's collector reads what the connections record:
//! here, the outbound queue depth a write sees.

#![cfg(feature = "metrics")]

mod support;

use prometheus::core::Collector;
use stomp_broker::metrics::BrokerCollector;
use stomp_codec::Headers;
use support::TestBroker;

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

    let families = BrokerCollector::new(&handle).collect();
    let queued = families
        .iter()
        .find(|f| f.name() == "stomp_outbox_queued_bytes")
        .expect("the outbox depth histogram");
    let histogram = queued.get_metric()[0].get_histogram();
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
