//! A queue consumer's unacknowledged messages go back to the queue, in
//! order and ahead of what waits there, when it goes away: a dropped TCP
//! connection, DISCONNECT, or UNSUBSCRIBE.

#[path = "support/extra_destinations.rs"]
mod extra;
mod support;

use extra::{
    QUIET, ack, ack_tag, bodies_of, exchange, messages, names, publish_all, soon,
    subscribe_expecting, unsubscribe_frame,
};
use stomp_broker::{Broker, Limits};
use stomp_codec::Frame;
use support::{Client, TestBroker, body, disconnect};

/// How the first consumer goes away.
#[derive(Debug, Clone, Copy)]
enum Leave {
    DropTcp,
    Disconnect,
    Unsubscribe,
}

/// `holder` consumes `/queue/{name}` in client mode and receives m0..m2
/// without acknowledging; returns the deliveries.
async fn hold_three(broker: &TestBroker, holder: &mut Client, name: &str) -> Vec<Frame> {
    holder.subscribe("q", &format!("/queue/{name}"), "client").await;
    let mut p = broker.client("p").await;
    publish_all(&mut p, &format!("/queue/{name}"), &names("m", 0..3)).await;
    let got = messages(holder, 3).await;
    assert_eq!(bodies_of(&got), names("m", 0..3));
    got
}

async fn leave(mut holder: Client, how: Leave) -> Option<Client> {
    match how {
        Leave::DropTcp => {
            drop(holder);
            None
        }
        Leave::Disconnect => {
            disconnect(holder).await;
            None
        }
        Leave::Unsubscribe => {
            let early = exchange(&mut holder, unsubscribe_frame("q"), "unsub").await;
            assert!(early.is_empty(), "{early:?}");
            Some(holder)
        }
    }
}

async fn unacked_messages_go_to_the_next_consumer(how: Leave) {
    let broker = TestBroker::default().await;
    let mut holder = broker.client("holder").await;
    let held = hold_three(&broker, &mut holder, "held").await;

    // A second consumer, subscribed while the first holds everything, gets
    // nothing yet.
    let mut next = broker.client("next").await;
    next.subscribe("q", "/queue/held", "client-individual").await;
    next.expect_silence(QUIET).await;

    let holder = leave(holder, how).await;
    let got = messages(&mut next, 3).await;
    assert_eq!(bodies_of(&got), names("m", 0..3), "{how:?}: redelivered in order");
    for (again, first) in got.iter().zip(&held) {
        assert_eq!(again.header_str("redelivered"), Some("true"), "{how:?}: {again:?}");
        assert_eq!(again.header_str("message-id"), first.header_str("message-id"));
        assert_eq!(again.header_str("subscription"), Some("q"));
    }
    next.expect_silence(QUIET).await;
    if let Some(mut holder) = holder {
        // Unsubscribed: it gets nothing more, though still connected.
        holder.expect_silence(QUIET).await;
    }
    drop(next);
    broker.stop().await;
}

#[tokio::test]
async fn dropping_the_connection_redelivers() {
    unacked_messages_go_to_the_next_consumer(Leave::DropTcp).await;
}

#[tokio::test]
async fn disconnect_redelivers() {
    unacked_messages_go_to_the_next_consumer(Leave::Disconnect).await;
}

#[tokio::test]
async fn unsubscribe_redelivers() {
    unacked_messages_go_to_the_next_consumer(Leave::Unsubscribe).await;
}

#[tokio::test]
async fn acknowledged_messages_are_not_redelivered() {
    // Client mode: ACK of m1 covers m0 and m1; only m2 comes back.
    let broker = TestBroker::default().await;
    let mut holder = broker.client("holder").await;
    let held = hold_three(&broker, &mut holder, "partial").await;
    let early = exchange(&mut holder, ack(&ack_tag(&held[1])), "a").await;
    assert!(early.is_empty(), "{early:?}");
    drop(holder);

    let mut next = broker.client("next").await;
    let got = subscribe_expecting(&mut next, "q", "/queue/partial", "auto", 1).await;
    assert_eq!(bodies_of(&got), ["m2"]);
    assert_eq!(got[0].header_str("redelivered"), Some("true"));
    next.expect_silence(QUIET).await;
    drop(next);
    broker.stop().await;
}

#[tokio::test]
async fn client_individual_acks_leave_the_others_to_redeliver() {
    let broker = TestBroker::default().await;
    let mut holder = broker.client("holder").await;
    holder.subscribe("q", "/queue/indiv", "client-individual").await;
    let mut p = broker.client("p").await;
    publish_all(&mut p, "/queue/indiv", &names("m", 0..3)).await;
    let held = messages(&mut holder, 3).await;
    let early = exchange(&mut holder, ack(&ack_tag(&held[1])), "a").await;
    assert!(early.is_empty(), "{early:?}");
    drop(holder);

    let mut next = broker.client("next").await;
    let got = subscribe_expecting(&mut next, "q", "/queue/indiv", "auto", 2).await;
    assert_eq!(bodies_of(&got), ["m0", "m2"]);
    next.expect_silence(QUIET).await;
    drop((next, p));
    broker.stop().await;
}

#[tokio::test]
async fn given_back_messages_go_ahead_of_waiting_ones() {
    // Prefetch 2: m0 and m1 are out, m2 and m3 wait in the queue. After the
    // consumer leaves, the queue is m0 m1 m2 m3 again.
    let broker =
        TestBroker::start(Broker::builder().limits(Limits::default().max_unacked(2))).await;
    let mut holder = broker.client("holder").await;
    holder.subscribe("q", "/queue/ahead", "client").await;
    let mut p = broker.client("p").await;
    publish_all(&mut p, "/queue/ahead", &names("m", 0..4)).await;
    assert_eq!(bodies_of(&messages(&mut holder, 2).await), names("m", 0..2));
    holder.expect_silence(QUIET).await;
    drop(holder);
    // Wait for the broker to see it go, so that the next consumer does not
    // subscribe before the messages are given back.
    soon("the holder's connection is closed", || broker.broker.connection_count() == 1).await;

    let mut next = broker.client("next").await;
    let got = subscribe_expecting(&mut next, "q", "/queue/ahead", "auto", 4).await;
    assert_eq!(bodies_of(&got), names("m", 0..4));
    let redelivered: Vec<_> = got.iter().map(|m| m.header_str("redelivered")).collect();
    assert_eq!(redelivered, [Some("true"), Some("true"), None, None]);
    next.expect_silence(QUIET).await;
    assert_eq!(body(&got[3]), "m3");
    drop((next, p));
    broker.stop().await;
}
