//! The prefetch bound (`Limits::max_unacked`): a `client` or
//! `client-individual` subscription holds at most that many unacknowledged
//! messages; delivery pauses until ACKs make room, and resumes in order
//! with nothing lost.

#[path = "support/extra_destinations.rs"]
mod extra;
mod support;

use extra::{QUIET, ack, ack_tag, bodies_of, exchange, exchange_expecting, messages, names};
use stomp_broker::{Broker, Limits};
use stomp_codec::Frame;
use support::{Client, TestBroker};

async fn prefetch_two() -> TestBroker {
    TestBroker::start(Broker::builder().limits(Limits::default().max_unacked(2))).await
}

/// Sends `bodies` to `destination` without waiting for each receipt, then
/// one receipt round trip.
async fn burst(p: &mut Client, destination: &str, bodies: &[String]) {
    for body in bodies {
        p.send(support::send(destination, body)).await;
    }
    p.publish("/topic/prefetch.sync", "").await;
}

#[tokio::test]
async fn a_client_individual_queue_consumer_gets_two_then_one_per_ack() {
    let broker = prefetch_two().await;
    let mut c = broker.client("c").await;
    c.subscribe("q", "/queue/pf", "client-individual").await;
    let mut p = broker.client("p").await;
    burst(&mut p, "/queue/pf", &names("m", 0..5)).await;

    let mut held = messages(&mut c, 2).await;
    assert_eq!(bodies_of(&held), names("m", 0..2));
    c.expect_silence(QUIET).await;

    let mut received = bodies_of(&held);
    for i in 0..3 {
        let oldest = held.remove(0);
        let next = exchange_expecting(&mut c, ack(&ack_tag(&oldest)), &format!("a{i}"), 1).await;
        c.expect_silence(QUIET).await;
        received.extend(bodies_of(&next));
        held.extend(next);
    }
    assert_eq!(received, names("m", 0..5), "in order, none lost");
    for m in held {
        assert!(exchange(&mut c, ack(&ack_tag(&m)), "last").await.is_empty());
    }
    c.expect_silence(QUIET).await;
    drop((c, p));
    broker.stop().await;
}

#[tokio::test]
async fn a_cumulative_ack_makes_room_for_as_many_as_it_covers() {
    let broker = prefetch_two().await;
    let mut c = broker.client("c").await;
    c.subscribe("q", "/queue/pfc", "client").await;
    let mut p = broker.client("p").await;
    burst(&mut p, "/queue/pfc", &names("m", 0..5)).await;

    let held = messages(&mut c, 2).await;
    c.expect_silence(QUIET).await;
    let next = exchange_expecting(&mut c, ack(&ack_tag(&held[1])), "a", 2).await;
    assert_eq!(bodies_of(&next), names("m", 2..4));
    c.expect_silence(QUIET).await;
    let last = exchange_expecting(&mut c, ack(&ack_tag(&next[1])), "b", 1).await;
    assert_eq!(bodies_of(&last), ["m4"]);
    drop((c, p));
    broker.stop().await;
}

#[tokio::test]
async fn other_consumers_get_what_a_full_one_cannot_take() {
    let broker = prefetch_two().await;
    let mut full = broker.client("full").await;
    full.subscribe("q", "/queue/pfo", "client-individual").await;
    let mut p = broker.client("p").await;
    burst(&mut p, "/queue/pfo", &names("m", 0..4)).await;
    assert_eq!(bodies_of(&messages(&mut full, 2).await), names("m", 0..2));

    // The waiting two go to a new consumer, not to the full one.
    let mut other = broker.client("other").await;
    let sub = extra::subscribe_frame("q", "/queue/pfo", "auto");
    let got = exchange_expecting(&mut other, sub, "s", 2).await;
    assert_eq!(bodies_of(&got), names("m", 2..4));
    full.expect_silence(QUIET).await;
    drop((full, other, p));
    broker.stop().await;
}

/// A topic subscriber in `mode`, with prefetch 2, and six messages
/// published faster than it acknowledges.
async fn topic_subscriber_with_prefetch(mode: &str) {
    let broker = prefetch_two().await;
    let mut c = broker.client("c").await;
    c.subscribe("t", "/topic/pf", mode).await;
    let mut p = broker.client("p").await;
    burst(&mut p, "/topic/pf", &names("m", 0..6)).await;

    let mut held: Vec<Frame> = messages(&mut c, 2).await;
    assert_eq!(bodies_of(&held), names("m", 0..2));
    c.expect_silence(QUIET).await;

    let mut received = bodies_of(&held);
    let mut n = 0;
    while received.len() < 6 {
        n += 1;
        // Acknowledge everything held (one ACK of the newest in client
        // mode, one ACK each in client-individual mode); two more arrive.
        let acks: Vec<Frame> = if mode == "client" {
            vec![ack(&ack_tag(held.last().unwrap()))]
        } else {
            held.iter().map(|m| ack(&ack_tag(m))).collect()
        };
        held.clear();
        for (i, frame) in acks.into_iter().enumerate() {
            held.extend(exchange(&mut c, frame, &format!("a{n}.{i}")).await);
        }
        while held.len() < 2 {
            held.push(c.expect_message().await);
        }
        c.expect_silence(QUIET).await;
        received.extend(bodies_of(&held));
        assert!(n < 5, "too many rounds: {received:?}");
    }
    assert_eq!(received, names("m", 0..6), "in order, none lost");
    assert_eq!(broker.broker.stats().slow_consumer_disconnects, 0);
    drop((c, p));
    broker.stop().await;
}

#[tokio::test]
async fn a_client_mode_topic_subscriber_gets_two_then_the_rest_after_acks() {
    topic_subscriber_with_prefetch("client").await;
}

#[tokio::test]
async fn a_client_individual_topic_subscriber_gets_two_then_the_rest_after_acks() {
    topic_subscriber_with_prefetch("client-individual").await;
}

#[tokio::test]
async fn a_subscription_asks_for_a_smaller_prefetch_with_either_header() {
    for header in ["prefetch-count", "activemq.prefetchSize"] {
        let broker = prefetch_two().await;
        let mut c = broker.client("c").await;
        let sub =
            extra::subscribe_frame("q", "/queue/own", "client-individual").with_header(header, "1");
        assert!(exchange(&mut c, sub, "s").await.is_empty());
        let mut p = broker.client("p").await;
        burst(&mut p, "/queue/own", &names("m", 0..3)).await;

        let mut received = Vec::new();
        let mut held = messages(&mut c, 1).await;
        for i in 0..3 {
            c.expect_silence(QUIET).await;
            received.extend(bodies_of(&held));
            let expected = usize::from(i < 2);
            held = exchange_expecting(&mut c, ack(&ack_tag(&held[0])), &format!("a{i}"), expected)
                .await;
        }
        assert_eq!(received, names("m", 0..3), "{header}: one at a time, in order");
        drop((c, p));
        broker.stop().await;
    }
}

#[tokio::test]
async fn a_larger_prefetch_than_the_brokers_is_held_to_the_brokers() {
    let broker = prefetch_two().await;
    let mut c = broker.client("c").await;
    let sub =
        extra::subscribe_frame("q", "/queue/big", "client").with_header("prefetch-count", "50");
    assert!(exchange(&mut c, sub, "s").await.is_empty());
    let mut p = broker.client("p").await;
    burst(&mut p, "/queue/big", &names("m", 0..4)).await;
    assert_eq!(bodies_of(&messages(&mut c, 2).await), names("m", 0..2));
    c.expect_silence(QUIET).await;
    drop((c, p));
    broker.stop().await;
}

#[tokio::test]
async fn an_invalid_prefetch_is_refused() {
    let broker = prefetch_two().await;
    let mut c = broker.client("c").await;
    let sub = extra::subscribe_frame("q", "/queue/bad", "client")
        .with_header("prefetch-count", "many")
        .with_header("receipt", "r");
    c.send(sub).await;
    let error = c.expect(stomp_codec::Command::Error).await;
    assert_eq!(error.header_str("message"), Some("invalid prefetch-count"));
    assert_eq!(error.header_str("receipt-id"), Some("r"));
    c.expect_closed().await;
    broker.stop().await;
}
