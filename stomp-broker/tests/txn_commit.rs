//! Transactions: SENDs inside one are delivered at COMMIT, in order, and
//! not before; ACKs and NACKs inside one take effect at COMMIT.

#[path = "support/extra_destinations.rs"]
mod extra;
mod support;

use extra::{
    QUIET, ack, ack_tag, begin, bodies, bodies_of, commit, exchange, exchange_expecting, in_tx,
    messages, nack, names,
};
use stomp_broker::{Broker, Limits};
use stomp_codec::Command;
use support::{TestBroker, body, send};

#[tokio::test]
async fn sends_are_delivered_at_commit_in_order() {
    let broker = TestBroker::default().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("t", "/topic/tx", "auto").await;
    let mut q = broker.client("q").await;
    q.subscribe("q", "/queue/tx", "auto").await;
    let mut p = broker.client("p").await;

    assert!(exchange(&mut p, begin("tx1"), "b").await.is_empty());
    for (i, name) in names("m", 0..3).iter().enumerate() {
        let frame = in_tx(send("/topic/tx", name), "tx1");
        assert!(exchange(&mut p, frame, &format!("t{i}")).await.is_empty());
        let frame = in_tx(send("/queue/tx", name), "tx1");
        assert!(exchange(&mut p, frame, &format!("q{i}")).await.is_empty());
    }
    sub.expect_silence(QUIET).await;
    q.expect_silence(QUIET).await;

    assert!(exchange(&mut p, commit("tx1"), "c").await.is_empty());
    let got = messages(&mut sub, 3).await;
    assert_eq!(bodies_of(&got), names("m", 0..3));
    for m in &got {
        assert!(m.header("transaction").is_none(), "not forwarded: {m:?}");
    }
    assert_eq!(bodies(&mut q, 3).await, names("m", 0..3));
    sub.expect_silence(QUIET).await;
    q.expect_silence(QUIET).await;

    // The transaction is over.
    p.send(commit("tx1")).await;
    assert!(p.expect_error().await.contains("unknown transaction"));
    drop((sub, q, p));
    broker.stop().await;
}

#[tokio::test]
async fn a_send_outside_the_transaction_is_not_held() {
    let broker = TestBroker::default().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("t", "/topic/mixed", "auto").await;
    let mut p = broker.client("p").await;
    assert!(exchange(&mut p, begin("tx"), "b").await.is_empty());
    assert!(exchange(&mut p, in_tx(send("/topic/mixed", "held"), "tx"), "1").await.is_empty());
    p.publish("/topic/mixed", "now").await;
    assert_eq!(body(&sub.expect_message().await), "now");
    sub.expect_silence(QUIET).await;
    assert!(exchange(&mut p, commit("tx"), "c").await.is_empty());
    assert_eq!(body(&sub.expect_message().await), "held");
    drop((sub, p));
    broker.stop().await;
}

#[tokio::test]
async fn two_transactions_commit_independently() {
    let broker = TestBroker::default().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("t", "/topic/two", "auto").await;
    let mut p = broker.client("p").await;
    assert!(exchange(&mut p, begin("a"), "ba").await.is_empty());
    assert!(exchange(&mut p, begin("b"), "bb").await.is_empty());
    assert!(exchange(&mut p, in_tx(send("/topic/two", "a0"), "a"), "1").await.is_empty());
    assert!(exchange(&mut p, in_tx(send("/topic/two", "b0"), "b"), "2").await.is_empty());
    assert!(exchange(&mut p, in_tx(send("/topic/two", "a1"), "a"), "3").await.is_empty());
    assert!(exchange(&mut p, commit("b"), "cb").await.is_empty());
    assert_eq!(bodies(&mut sub, 1).await, ["b0"]);
    sub.expect_silence(QUIET).await;
    assert!(exchange(&mut p, commit("a"), "ca").await.is_empty());
    assert_eq!(bodies(&mut sub, 2).await, ["a0", "a1"]);
    drop((sub, p));
    broker.stop().await;
}

#[tokio::test]
async fn an_ack_in_a_transaction_takes_effect_at_commit() {
    // Prefetch 1: the next message is dispatched only once the ACK counts.
    let broker =
        TestBroker::start(Broker::builder().limits(Limits::default().max_unacked(1))).await;
    let mut c = broker.client("c").await;
    c.subscribe("q", "/queue/txack", "client-individual").await;
    let mut p = broker.client("p").await;
    extra::publish_all(&mut p, "/queue/txack", &names("m", 0..2)).await;
    let m0 = c.expect_message().await;
    assert_eq!(body(&m0), "m0");

    assert!(exchange(&mut c, begin("tx"), "b").await.is_empty());
    let early = exchange(&mut c, in_tx(ack(&ack_tag(&m0)), "tx"), "a").await;
    assert!(early.is_empty(), "the ACK is held: {early:?}");
    c.expect_silence(QUIET).await;

    let next = exchange_expecting(&mut c, commit("tx"), "c", 1).await;
    assert_eq!(bodies_of(&next), ["m1"]);
    assert!(next[0].header("redelivered").is_none(), "m0 was acknowledged, m1 is new");
    drop((c, p));
    broker.stop().await;
}

#[tokio::test]
async fn a_nack_in_a_transaction_takes_effect_at_commit() {
    let broker = TestBroker::default().await;
    let mut c = broker.client("c").await;
    c.subscribe("q", "/queue/txnack", "client-individual").await;
    let mut p = broker.client("p").await;
    p.publish("/queue/txnack", "m0").await;
    let m0 = c.expect_message().await;

    assert!(exchange(&mut c, begin("tx"), "b").await.is_empty());
    assert!(exchange(&mut c, in_tx(nack(&ack_tag(&m0)), "tx"), "n").await.is_empty());
    c.expect_silence(QUIET).await;
    let again = exchange_expecting(&mut c, commit("tx"), "c", 1).await;
    assert_eq!(body(&again[0]), "m0");
    assert_eq!(again[0].header_str("redelivered"), Some("true"));
    drop((c, p));
    broker.stop().await;
}

#[tokio::test]
async fn a_send_to_an_unknown_transaction_is_an_error() {
    let broker = TestBroker::default().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("t", "/topic/unknown-tx", "auto").await;
    let mut p = broker.client("p").await;
    p.send(in_tx(send("/topic/unknown-tx", "x"), "never-begun").with_header("receipt", "r")).await;
    let error = p.expect(Command::Error).await;
    assert!(error.header_str("message").unwrap().contains("unknown transaction"), "{error:?}");
    assert_eq!(error.header_str("receipt-id"), Some("r"));
    sub.expect_silence(QUIET).await;
    drop((sub, p));
    broker.stop().await;
}
