//! The `Broker` handle from Rust code: publishing to network subscribers,
//! local subscriptions to topics and queues, the connection and
//! destination counts, and publishing after shutdown.

#[path = "support/extra_destinations.rs"]
mod extra;
mod support;

use std::time::Duration;

use extra::{QUIET, bodies, exchange, soon, unsubscribe_frame};
use stomp_broker::{LocalSubscription, PublishError};
use stomp_codec::{Command, Headers};
use support::{TestBroker, WAIT, body, send};

async fn next(sub: &mut LocalSubscription) -> std::sync::Arc<stomp_broker::Message> {
    tokio::time::timeout(WAIT, sub.recv()).await.expect("timed out").expect("subscription ended")
}

async fn nothing(sub: &mut LocalSubscription) {
    if let Ok(m) = tokio::time::timeout(QUIET, sub.recv()).await {
        panic!("expected nothing, got {m:?}");
    }
}

#[tokio::test]
async fn publish_from_rust_reaches_tcp_subscribers() {
    let broker = TestBroker::default().await;
    let mut a = broker.client("a").await;
    let mut b = broker.client("b").await;
    a.subscribe("s", "/topic/local", "auto").await;
    b.subscribe("s", "/topic/local", "auto").await;
    let mut headers = Headers::new();
    headers.push("x-origin", "rust");
    headers.push("content-type", "text/plain");
    assert_eq!(broker.broker.publish("/topic/local", headers, "from rust"), Ok(2));
    for c in [&mut a, &mut b] {
        let m = c.expect_message().await;
        assert_eq!(body(&m), "from rust");
        assert_eq!(m.header_str("destination"), Some("/topic/local"));
        assert_eq!(m.header_str("x-origin"), Some("rust"));
        assert_eq!(m.header_str("content-type"), Some("text/plain"));
        assert!(m.header("message-id").is_some());
    }
    assert_eq!(broker.broker.publish("/topic/nobody", Headers::new(), "x"), Ok(0));
    assert!(matches!(
        broker.broker.publish("", Headers::new(), "x"),
        Err(PublishError::InvalidDestination(_))
    ));
    drop((a, b));
    broker.stop().await;
}

#[tokio::test]
async fn a_tcp_send_reaches_a_local_subscription() {
    let broker = TestBroker::default().await;
    let mut local = broker.broker.subscribe("/topic/to-rust").unwrap();
    let mut p = broker.client("p").await;
    let frame = send("/topic/to-rust", "hello").with_header("x-custom", "1");
    assert!(exchange(&mut p, frame, "r").await.is_empty());
    p.publish("/topic/to-rust", "second").await;

    let m = next(&mut local).await;
    assert_eq!(m.body().as_ref(), b"hello");
    assert_eq!(m.destination(), "/topic/to-rust");
    assert_eq!(m.header_str("x-custom"), Some("1"));
    assert!(!m.message_id().is_empty());
    assert!(m.header("receipt").is_none());
    assert_eq!(next(&mut local).await.body().as_ref(), b"second");
    nothing(&mut local).await;

    // Also works as a Stream.
    let mut stream = broker.broker.subscribe("/topic/to-rust").unwrap();
    p.publish("/topic/to-rust", "third").await;
    let m = tokio::time::timeout(
        WAIT,
        std::future::poll_fn(|cx| {
            futures_core::Stream::poll_next(std::pin::Pin::new(&mut stream), cx)
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(m.body().as_ref(), b"third");
    assert_eq!(next(&mut local).await.body().as_ref(), b"third");
    drop((p, local, stream));
    broker.stop().await;
}

#[tokio::test]
async fn a_local_queue_consumer() {
    let broker = TestBroker::default().await;
    let mut p = broker.client("p").await;
    // Kept until the local consumer comes.
    for i in 0..3 {
        p.publish("/queue/local", &format!("m{i}")).await;
    }
    let mut local = broker.broker.subscribe("/queue/local").unwrap();
    for i in 0..3 {
        assert_eq!(next(&mut local).await.body().as_ref(), format!("m{i}").as_bytes());
    }
    // Shares with a TCP consumer, round robin; each message once.
    let mut c = broker.client("c").await;
    c.subscribe("q", "/queue/local", "auto").await;
    for i in 3..7 {
        p.publish("/queue/local", &format!("m{i}")).await;
    }
    let mut got: Vec<String> = Vec::new();
    for _ in 0..2 {
        got.push(String::from_utf8_lossy(next(&mut local).await.body()).into_owned());
    }
    got.extend(bodies(&mut c, 2).await);
    nothing(&mut local).await;
    c.expect_silence(QUIET).await;
    got.sort();
    assert_eq!(got, ["m3", "m4", "m5", "m6"]);

    // Publishing from Rust to the queue reaches one of them.
    assert_eq!(broker.broker.publish("/queue/local", Headers::new(), "direct"), Ok(1));
    drop((p, c, local));
    broker.stop().await;
}

#[tokio::test]
async fn connection_destination_and_subscriber_counts() {
    let broker = TestBroker::default().await;
    let handle = broker.broker.clone();
    assert_eq!(handle.connection_count(), 0);
    assert_eq!(handle.destination_count(), 0);

    let mut a = broker.client("a").await;
    let mut b = broker.client("b").await;
    assert_eq!(handle.connection_count(), 2);
    assert_eq!(handle.destination_count(), 0, "a connection is no destination");

    // A topic exists while it has subscribers.
    a.subscribe("t", "/topic/count", "auto").await;
    b.subscribe("t", "/topic/count", "auto").await;
    assert_eq!(handle.destination_count(), 1);
    let local = handle.subscribe("/topic/count.local").unwrap();
    assert_eq!(handle.destination_count(), 2);
    assert_eq!(handle.subscriber_count("/topic/count"), 2);
    assert_eq!(handle.subscriber_count("/topic/count.local"), 1);
    assert_eq!(handle.subscriber_count("/topic/unheard"), 0);
    // Publishing to a topic nobody listens to creates nothing.
    b.publish("/topic/unheard", "x").await;
    assert_eq!(handle.destination_count(), 2);

    // A queue exists while it has consumers or messages.
    b.publish("/queue/count", "waiting").await;
    assert_eq!(handle.destination_count(), 3);
    let mut consumer = broker.client("consumer").await;
    let sub = extra::subscribe_frame("q", "/queue/count", "auto");
    assert_eq!(extra::exchange_expecting(&mut consumer, sub, "s", 1).await.len(), 1);
    assert_eq!(handle.destination_count(), 3, "consumed, but still consumed from");
    assert_eq!(handle.subscriber_count("/queue/count"), 1);
    assert!(exchange(&mut consumer, unsubscribe_frame("q"), "u").await.is_empty());
    assert_eq!(handle.destination_count(), 2, "empty queue without consumers is gone");
    assert_eq!(handle.subscriber_count("/queue/count"), 0);

    drop(local);
    assert_eq!(handle.destination_count(), 1, "dropping a local subscription unsubscribes");
    assert!(exchange(&mut a, unsubscribe_frame("t"), "u").await.is_empty());
    assert_eq!(handle.destination_count(), 1, "b still subscribes");
    assert_eq!(handle.subscriber_count("/topic/count"), 1);
    drop(b);
    soon("b's subscription is gone", || handle.destination_count() == 0).await;
    assert_eq!(handle.connection_count(), 2);

    drop((a, consumer));
    soon("every connection is closed", || handle.connection_count() == 0).await;
    assert!(handle.stats().connections_total >= 3);
    broker.stop().await;
}

#[tokio::test]
async fn after_shutdown_publishing_and_subscribing_fail() {
    let broker = TestBroker::default().await;
    let handle = broker.broker.clone();
    let mut local = handle.subscribe("/topic/end").unwrap();
    assert!(!handle.is_shutting_down());
    broker.stop().await;

    assert!(handle.is_shutting_down());
    assert_eq!(
        handle.publish("/topic/end", Headers::new(), "late"),
        Err(PublishError::ShuttingDown)
    );
    assert_eq!(
        handle.publish("/queue/end", Headers::new(), "late"),
        Err(PublishError::ShuttingDown)
    );
    assert_eq!(
        handle.send_to_user("bob", "/queue/x", Headers::new(), "late"),
        Err(PublishError::ShuttingDown)
    );
    assert!(matches!(handle.subscribe("/topic/end"), Err(PublishError::ShuttingDown)));
    // A local subscription ends.
    let end = tokio::time::timeout(Duration::from_secs(1), local.recv()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
}

#[tokio::test]
async fn shutdown_tells_connected_clients() {
    let broker = TestBroker::default().await;
    let mut c = broker.client("c").await;
    let handle = broker.broker.clone();
    let stopping = tokio::spawn(broker.stop());
    let frames = c.expect_closed().await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].command(), Command::Error);
    assert_eq!(frames[0].header_str("message"), Some("server shutting down"));
    drop(c);
    stopping.await.unwrap();
    assert_eq!(handle.connection_count(), 0);
}
