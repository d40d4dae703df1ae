//! `Limits::max_frame_rate` slows a fast sender down by pausing reads; it
//! does not cut the connection, and every frame is still handled.

mod support;

use std::time::Duration;

use stomp_broker::{Broker, Limits};
use support::{TestBroker, body, send};

// Paused clock: the limiter's pauses are measured in the runtime's virtual
// time, so the check below is exact, not a wall-clock race.
#[tokio::test(start_paused = true)]
async fn sender_over_the_rate_is_slowed_not_dropped() {
    let broker =
        TestBroker::start(Broker::builder().limits(Limits::default().max_frame_rate(Some(50))))
            .await;
    let mut subscriber = broker.client("s").await;
    subscriber.subscribe("s", "/topic/rate", "auto").await;
    let mut publisher = broker.client("p").await;
    let started = tokio::time::Instant::now();
    // The publisher's burst is 50 frames (CONNECT took one); 150 frames at
    // 50 per second need about two seconds.
    for n in 0..150 {
        publisher.send(send("/topic/rate", &n.to_string())).await;
    }
    for n in 0..150 {
        assert_eq!(body(&subscriber.expect_message().await), n.to_string());
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1900),
        "the rate limit held the sender back: {elapsed:?}"
    );
    drop((subscriber, publisher));
    broker.stop().await;
}
