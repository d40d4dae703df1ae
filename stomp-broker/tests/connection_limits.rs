//! Per-broker and per-connection limits: past `Limits::max_connections` a
//! new connection gets `ERROR` ("too many connections") and is closed,
//! until an open one closes; `Broker::connection_count` tracks open
//! connections (CONNECTed or not); past `Limits::max_subscriptions` a
//! SUBSCRIBE gets `ERROR` and the connection closes.

#[path = "support/extra.rs"]
mod extra;
mod support;

use std::time::Duration;

use stomp_broker::{Broker, Limits};
use stomp_codec::{Command, Frame};
use support::{Client, TestBroker};

/// A connection over the limit: refused with one ERROR, then closed,
/// without the client sending anything.
async fn expect_refused(broker: &TestBroker) {
    let mut c = Client::raw(broker.addr).await;
    let error = extra::expect_error_then_close(&mut c).await;
    extra::assert_readable_error(&error);
    assert!(extra::message(&error).contains("too many connections"), "{error:?}");
}

#[tokio::test]
async fn connections_past_the_limit_are_refused_until_one_closes() {
    let broker =
        TestBroker::start(Broker::builder().limits(Limits::default().max_connections(3))).await;
    let handle = broker.broker.clone();
    assert_eq!(handle.connection_count(), 0);
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(broker.client(&format!("c{i}")).await);
        assert_eq!(handle.connection_count(), i + 1);
    }
    expect_refused(&broker).await;
    expect_refused(&broker).await;
    assert_eq!(handle.connection_count(), 3, "refused connections are not counted");
    assert_eq!(handle.stats().connections_refused, 2);
    // The accepted clients are not disturbed.
    for c in &mut clients {
        c.publish("/topic/limits", "still here").await;
    }

    // One leaves; its slot is free for the next.
    support::disconnect(clients.pop().unwrap()).await;
    extra::eventually("the disconnected client is no longer counted", || {
        handle.connection_count() == 2
    })
    .await;
    let mut replacement = broker.client("replacement").await;
    replacement.publish("/topic/limits", "in").await;
    assert_eq!(handle.connection_count(), 3);
    expect_refused(&broker).await;

    // A client that just drops its socket frees its slot too.
    drop(replacement);
    extra::eventually("the dropped client is no longer counted", || handle.connection_count() == 2)
        .await;
    let late = broker.client("late").await;
    assert_eq!(handle.connection_count(), 3);

    drop(late);
    for c in clients {
        support::disconnect(c).await;
    }
    extra::eventually("every client is gone", || handle.connection_count() == 0).await;
    broker.stop().await;
}

#[tokio::test]
async fn connections_count_before_connect() {
    // The limit bounds sockets, not sessions: two that never send CONNECT
    // fill a limit of two.
    let broker =
        TestBroker::start(Broker::builder().limits(Limits::default().max_connections(2))).await;
    let handle = broker.broker.clone();
    let idle_a = Client::raw(broker.addr).await;
    let idle_b = Client::raw(broker.addr).await;
    extra::eventually("both idle sockets are counted", || handle.connection_count() == 2).await;
    expect_refused(&broker).await;
    drop((idle_a, idle_b));
    extra::eventually("the idle sockets are gone", || handle.connection_count() == 0).await;
    let c = broker.client("after").await;
    assert_eq!(handle.connection_count(), 1);
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn subscriptions_past_the_limit_are_an_error() {
    let broker =
        TestBroker::start(Broker::builder().limits(Limits::default().max_subscriptions(2))).await;
    let mut c = broker.client("subscriber").await;
    c.subscribe("a", "/topic/a", "auto").await;
    c.subscribe("b", "/topic/b", "auto").await;
    // Freeing one makes room for one.
    c.with_receipt(Frame::new(Command::Unsubscribe).with_header("id", "a"), "unsub-a").await;
    c.subscribe("c", "/queue/c", "client").await;
    c.send_raw(b"SUBSCRIBE\nid:d\ndestination:/topic/d\nreceipt:sub-d\n\n\0").await;
    let error = extra::expect_error_then_close(&mut c).await;
    extra::assert_readable_error(&error);
    assert!(extra::message(&error).contains("too many subscriptions"), "{error:?}");
    assert_eq!(error.header_str("receipt-id"), Some("sub-d"));
    drop(c);
    // The limit is per connection.
    let mut other = broker.client("other").await;
    other.subscribe("a", "/topic/a", "auto").await;
    other.subscribe("b", "/topic/b", "auto").await;
    other.expect_silence(Duration::from_millis(50)).await;
    drop(other);
    broker.stop().await;
}
