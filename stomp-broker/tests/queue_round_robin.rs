//! Queues hand each message to exactly one consumer, round robin among the
//! consumers that have room.

#[path = "support/extra_destinations.rs"]
mod extra;
mod support;

use std::collections::BTreeSet;

use extra::{QUIET, ack, ack_tag, bodies_of, exchange_expecting, messages, names, publish_all};
use stomp_broker::{Broker, Limits};
use stomp_codec::Frame;
use support::{TestBroker, body};

/// The message numbers in `frames` (bodies `m{n}`).
fn numbers(frames: &[Frame]) -> Vec<usize> {
    frames.iter().map(|f| body(f).trim_start_matches('m').parse().expect("body m{n}")).collect()
}

#[tokio::test]
async fn nine_messages_three_consumers_three_each_in_turn() {
    let broker = TestBroker::default().await;
    let mut consumers = Vec::new();
    for i in 0..3 {
        let mut c = broker.client(&format!("c{i}")).await;
        c.subscribe("q", "/queue/rr", "auto").await;
        consumers.push(c);
    }
    let mut publisher = broker.client("p").await;
    publish_all(&mut publisher, "/queue/rr", &names("m", 0..9)).await;

    let mut got = Vec::new();
    for c in &mut consumers {
        let frames = messages(c, 3).await;
        for f in &frames {
            assert_eq!(f.header_str("destination"), Some("/queue/rr"));
            assert_eq!(f.header_str("subscription"), Some("q"));
            assert!(f.header("ack").is_none(), "auto mode has no ack header: {f:?}");
        }
        got.push(numbers(&frames));
    }
    for c in &mut consumers {
        c.expect_silence(QUIET).await;
    }

    // Each message went to exactly one consumer.
    let all: BTreeSet<usize> = got.iter().flatten().copied().collect();
    assert_eq!(all.len(), 9, "a message was delivered twice: {got:?}");
    assert_eq!(all, (0..9).collect::<BTreeSet<_>>(), "{got:?}");
    // Round robin: each consumer got every third message, and the three
    // consumers took turns (distinct starting points).
    let mut starts = BTreeSet::new();
    for (i, mine) in got.iter().enumerate() {
        let k = mine[0];
        assert_eq!(mine, &[k, k + 3, k + 6], "consumer {i} was not served in turn: {got:?}");
        starts.insert(k);
    }
    assert_eq!(starts, BTreeSet::from([0, 1, 2]), "{got:?}");

    drop((consumers, publisher));
    broker.stop().await;
}

#[tokio::test]
async fn round_robin_skips_a_consumer_without_room() {
    // Prefetch 1: a consumer holding an unacknowledged message is skipped,
    // and the queue keeps messages that nobody has room for.
    let broker =
        TestBroker::start(Broker::builder().limits(Limits::default().max_unacked(1))).await;
    let mut a = broker.client("a").await;
    let mut b = broker.client("b").await;
    a.subscribe("q", "/queue/room", "client-individual").await;
    b.subscribe("q", "/queue/room", "client-individual").await;
    let mut p = broker.client("p").await;
    publish_all(&mut p, "/queue/room", &names("m", 0..4)).await;

    // One each; m2 and m3 wait.
    let first_a = a.expect_message().await;
    let first_b = b.expect_message().await;
    let mut firsts = vec![body(&first_a), body(&first_b)];
    firsts.sort();
    assert_eq!(firsts, ["m0", "m1"]);
    a.expect_silence(QUIET).await;
    b.expect_silence(QUIET).await;

    // Only `a` acknowledges: it gets both waiting messages, one at a time,
    // while `b` (no room) gets nothing.
    let got = exchange_expecting(&mut a, ack(&ack_tag(&first_a)), "a1", 1).await;
    assert_eq!(bodies_of(&got), ["m2"]);
    let got = exchange_expecting(&mut a, ack(&ack_tag(&got[0])), "a2", 1).await;
    assert_eq!(bodies_of(&got), ["m3"]);
    b.expect_silence(QUIET).await;

    drop((a, b, p));
    broker.stop().await;
}

#[tokio::test]
async fn a_message_sent_to_a_queue_reaches_one_consumer_of_several_connections_and_subscriptions() {
    // Two subscriptions of one connection to the same queue are two
    // consumers; still each message is delivered once.
    let broker = TestBroker::default().await;
    let mut a = broker.client("a").await;
    a.subscribe("one", "/queue/once", "auto").await;
    a.subscribe("two", "/queue/once", "auto").await;
    let mut b = broker.client("b").await;
    b.subscribe("q", "/queue/once", "auto").await;
    let mut p = broker.client("p").await;
    publish_all(&mut p, "/queue/once", &names("m", 0..6)).await;

    let from_a = messages(&mut a, 4).await;
    let from_b = messages(&mut b, 2).await;
    a.expect_silence(QUIET).await;
    b.expect_silence(QUIET).await;
    let subs: Vec<_> = from_a.iter().map(|f| f.header_str("subscription").unwrap()).collect();
    assert_eq!(subs.iter().filter(|s| **s == "one").count(), 2, "{subs:?}");
    assert_eq!(subs.iter().filter(|s| **s == "two").count(), 2, "{subs:?}");
    let mut all = numbers(&from_a);
    all.extend(numbers(&from_b));
    all.sort_unstable();
    assert_eq!(all, (0..6).collect::<Vec<_>>());

    drop((a, b, p));
    broker.stop().await;
}
