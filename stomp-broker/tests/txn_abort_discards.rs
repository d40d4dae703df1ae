//! ABORT discards a transaction's SENDs and ACKs, and so does a disconnect
//! (dropped connection or DISCONNECT) with a transaction still open.

#[path = "support/extra_destinations.rs"]
mod extra;
mod support;

use extra::{
    QUIET, abort, ack, ack_tag, begin, commit, exchange, exchange_expecting, in_tx, names, soon,
};
use stomp_broker::{Broker, Limits};
use support::{TestBroker, body, disconnect, send};

#[tokio::test]
async fn abort_discards_the_sends() {
    let broker = TestBroker::default().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("t", "/topic/abort", "auto").await;
    let mut q = broker.client("q").await;
    q.subscribe("q", "/queue/abort", "auto").await;
    let mut p = broker.client("p").await;

    assert!(exchange(&mut p, begin("tx"), "b").await.is_empty());
    for (i, name) in names("m", 0..3).iter().enumerate() {
        let frame = in_tx(send("/topic/abort", name), "tx");
        assert!(exchange(&mut p, frame, &format!("t{i}")).await.is_empty());
        let frame = in_tx(send("/queue/abort", name), "tx");
        assert!(exchange(&mut p, frame, &format!("q{i}")).await.is_empty());
    }
    assert!(exchange(&mut p, abort("tx"), "a").await.is_empty());
    sub.expect_silence(QUIET).await;
    q.expect_silence(QUIET).await;

    // The transaction is gone: COMMIT names nothing.
    p.send(commit("tx")).await;
    assert!(p.expect_error().await.contains("unknown transaction"));
    p.expect_closed().await;
    sub.expect_silence(QUIET).await;
    q.expect_silence(QUIET).await;

    // Nothing waits in the queue either.
    drop((p, q));
    soon("the queue consumer is gone", || broker.broker.connection_count() == 1).await;
    let mut late = broker.client("late").await;
    late.subscribe("q", "/queue/abort", "auto").await;
    late.expect_silence(QUIET).await;
    drop((sub, late));
    broker.stop().await;
}

#[tokio::test]
async fn a_transaction_name_can_be_used_again_after_abort() {
    let broker = TestBroker::default().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("t", "/topic/again", "auto").await;
    let mut p = broker.client("p").await;
    assert!(exchange(&mut p, begin("tx"), "b1").await.is_empty());
    assert!(exchange(&mut p, in_tx(send("/topic/again", "old"), "tx"), "s1").await.is_empty());
    assert!(exchange(&mut p, abort("tx"), "a").await.is_empty());
    assert!(exchange(&mut p, begin("tx"), "b2").await.is_empty());
    assert!(exchange(&mut p, in_tx(send("/topic/again", "new"), "tx"), "s2").await.is_empty());
    assert!(exchange(&mut p, commit("tx"), "c").await.is_empty());
    assert_eq!(body(&sub.expect_message().await), "new");
    sub.expect_silence(QUIET).await;
    drop((sub, p));
    broker.stop().await;
}

#[tokio::test]
async fn abort_discards_an_ack() {
    // Prefetch 1: while m0 stays unacknowledged, m1 is not dispatched.
    let broker =
        TestBroker::start(Broker::builder().limits(Limits::default().max_unacked(1))).await;
    let mut c = broker.client("c").await;
    c.subscribe("q", "/queue/abortack", "client-individual").await;
    let mut p = broker.client("p").await;
    extra::publish_all(&mut p, "/queue/abortack", &names("m", 0..2)).await;
    let m0 = c.expect_message().await;
    assert_eq!(body(&m0), "m0");

    assert!(exchange(&mut c, begin("tx"), "b").await.is_empty());
    assert!(exchange(&mut c, in_tx(ack(&ack_tag(&m0)), "tx"), "a").await.is_empty());
    let early = exchange(&mut c, abort("tx"), "x").await;
    assert!(early.is_empty(), "the ACK was discarded, m0 is still out: {early:?}");
    c.expect_silence(QUIET).await;

    // m0 still waits for its ACK; given now, it lets m1 through.
    let next = exchange_expecting(&mut c, ack(&ack_tag(&m0)), "a2", 1).await;
    assert_eq!(body(&next[0]), "m1");
    drop((c, p));
    broker.stop().await;
}

async fn leaving_discards_an_open_transaction(graceful: bool) {
    let broker = TestBroker::default().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("t", "/topic/left", "auto").await;
    let mut q = broker.client("q").await;
    q.subscribe("q", "/queue/left", "auto").await;
    let mut p = broker.client("p").await;
    assert!(exchange(&mut p, begin("tx"), "b").await.is_empty());
    assert!(exchange(&mut p, in_tx(send("/topic/left", "t"), "tx"), "1").await.is_empty());
    assert!(exchange(&mut p, in_tx(send("/queue/left", "q"), "tx"), "2").await.is_empty());
    if graceful {
        disconnect(p).await;
    } else {
        drop(p);
    }
    soon("the sender is gone", || broker.broker.connection_count() == 2).await;
    sub.expect_silence(QUIET).await;
    q.expect_silence(QUIET).await;
    drop((sub, q));
    broker.stop().await;
}

#[tokio::test]
async fn dropping_the_connection_discards_an_open_transaction() {
    leaving_discards_an_open_transaction(false).await;
}

#[tokio::test]
async fn disconnect_discards_an_open_transaction() {
    leaving_discards_an_open_transaction(true).await;
}
