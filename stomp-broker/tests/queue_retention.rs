//! Queues keep messages while nobody consumes them, up to their bounds,
//! then apply the overflow policy: refuse the SEND (the default) or drop
//! the oldest message.

#[path = "support/extra_destinations.rs"]
mod extra;
mod support;

use extra::{QUIET, bodies_of, names, publish_all, subscribe_expecting};
use stomp_broker::{Broker, Limits, PublishError, QueueOverflow};
use stomp_codec::{Command, Headers};
use support::{TestBroker, body, send};

#[tokio::test]
async fn messages_wait_for_a_consumer_and_arrive_in_order() {
    let broker = TestBroker::default().await;
    let mut p = broker.client("p").await;
    publish_all(&mut p, "/queue/keep", &names("m", 0..5)).await;
    assert_eq!(broker.broker.destination_count(), 1, "the queue exists while it holds messages");

    let mut late = broker.client("late").await;
    let got = subscribe_expecting(&mut late, "q", "/queue/keep", "auto", 5).await;
    assert_eq!(bodies_of(&got), names("m", 0..5));
    late.expect_silence(QUIET).await;

    // Consumed: a second consumer finds nothing left.
    let mut later = broker.client("later").await;
    later.subscribe("q", "/queue/keep", "auto").await;
    later.expect_silence(QUIET).await;

    drop((p, late, later));
    broker.stop().await;
}

#[tokio::test]
async fn a_topic_keeps_nothing() {
    let broker = TestBroker::default().await;
    let mut p = broker.client("p").await;
    p.publish("/topic/gone", "lost").await;
    let mut late = broker.client("late").await;
    late.subscribe("t", "/topic/gone", "auto").await;
    late.expect_silence(QUIET).await;
    drop((p, late));
    broker.stop().await;
}

#[tokio::test]
async fn reject_publish_sends_an_error_naming_the_queue() {
    let builder = Broker::builder()
        .limits(Limits::default().max_queue_messages(3))
        .queue_overflow(QueueOverflow::RejectPublish);
    let broker = TestBroker::start(builder).await;
    let mut p = broker.client("p").await;
    publish_all(&mut p, "/queue/full", &names("m", 0..3)).await;

    p.send(send("/queue/full", "m3").with_header("receipt", "r-over")).await;
    let error = p.expect(Command::Error).await;
    let message = error.header_str("message").expect("message header");
    assert!(message.contains("/queue/full"), "ERROR does not name the queue: {message:?}");
    assert!(message.contains("full"), "{message:?}");
    assert_eq!(error.header_str("receipt-id"), Some("r-over"), "the ERROR answers the SEND");
    let rest = p.expect_closed().await;
    assert!(rest.is_empty(), "{rest:?}");

    // The three accepted messages are kept, the refused one is not.
    let mut c = broker.client("c").await;
    let got = subscribe_expecting(&mut c, "q", "/queue/full", "auto", 3).await;
    assert_eq!(bodies_of(&got), names("m", 0..3));
    c.expect_silence(QUIET).await;

    // The same bound applies to the local handle.
    for i in 0..3 {
        broker.broker.publish("/queue/other", Headers::new(), format!("x{i}")).unwrap();
    }
    assert_eq!(
        broker.broker.publish("/queue/other", Headers::new(), "x3"),
        Err(PublishError::QueueFull("/queue/other".to_owned()))
    );

    drop((p, c));
    broker.stop().await;
}

#[tokio::test]
async fn the_byte_bound_rejects_too() {
    let builder = Broker::builder().limits(Limits::default().max_queue_bytes(10));
    let broker = TestBroker::start(builder).await;
    let mut p = broker.client("p").await;
    p.publish("/queue/bytes", "aaaa").await;
    p.publish("/queue/bytes", "bbbb").await;
    p.send(send("/queue/bytes", "cccc").with_header("receipt", "r")).await;
    let message = p.expect_error().await;
    assert!(message.contains("/queue/bytes"), "{message:?}");
    p.expect_closed().await;

    let mut c = broker.client("c").await;
    let got = subscribe_expecting(&mut c, "q", "/queue/bytes", "auto", 2).await;
    assert_eq!(bodies_of(&got), ["aaaa", "bbbb"]);
    c.expect_silence(QUIET).await;
    drop((p, c));
    broker.stop().await;
}

#[tokio::test]
async fn drop_oldest_keeps_the_newest_messages() {
    let builder = Broker::builder()
        .limits(Limits::default().max_queue_messages(3))
        .queue_overflow(QueueOverflow::DropOldest);
    let broker = TestBroker::start(builder).await;
    let mut p = broker.client("p").await;
    // Every SEND is accepted (receipts, no ERROR).
    publish_all(&mut p, "/queue/ring", &names("m", 0..5)).await;

    let mut c = broker.client("c").await;
    let got = subscribe_expecting(&mut c, "q", "/queue/ring", "auto", 3).await;
    assert_eq!(bodies_of(&got), names("m", 2..5));
    c.expect_silence(QUIET).await;

    // The sender is still connected and can go on.
    p.publish("/queue/ring", "m5").await;
    assert_eq!(body(&c.expect_message().await), "m5");

    drop((p, c));
    broker.stop().await;
}

#[tokio::test]
async fn all_queues_together_keep_at_most_the_total_bound() {
    // Each queue may keep 100 octets, all of them together 250.
    let limits = Limits::default().max_queue_bytes(100).max_total_queue_bytes(250);
    let broker = TestBroker::start(Broker::builder().limits(limits)).await;
    let publish = |queue: &str, body: &'static str| {
        broker.broker.publish(&format!("/queue/{queue}"), Headers::new(), body)
    };
    let fifty = "x".repeat(50).leak();
    for queue in ["a", "b"] {
        publish(queue, fifty).unwrap();
        publish(queue, fifty).unwrap();
    }
    publish("c", fifty).unwrap();
    assert_eq!(publish("d", fifty), Err(PublishError::QueuesFull), "a fresh queue is refused too");

    // Over STOMP the refusal names the queue, answers the SEND, and closes.
    let mut p = broker.client("p").await;
    p.send(send("/queue/e", fifty).with_header("receipt", "r")).await;
    let error = p.expect(Command::Error).await;
    let message = error.header_str("message").expect("message header");
    assert!(message.contains("/queue/e"), "{message:?}");
    assert_eq!(error.header_str("receipt-id"), Some("r"));
    p.expect_closed().await;

    // Consuming one queue makes room in all of them.
    let mut c = broker.client("c").await;
    let got = subscribe_expecting(&mut c, "q", "/queue/a", "auto", 2).await;
    assert_eq!(got.len(), 2);
    publish("d", fifty).unwrap();
    publish("d", fifty).unwrap();
    assert_eq!(publish("e", fifty), Err(PublishError::QueuesFull));
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn drop_oldest_makes_room_in_its_own_queue_only() {
    let limits = Limits::default().max_queue_bytes(1000).max_total_queue_bytes(100);
    let builder = Broker::builder().limits(limits).queue_overflow(QueueOverflow::DropOldest);
    let broker = TestBroker::start(builder).await;
    let publish = |queue: &str, body: String| {
        broker.broker.publish(&format!("/queue/{queue}"), Headers::new(), body)
    };
    publish("a", format!("a0{}", "x".repeat(38))).unwrap();
    publish("b", format!("b0{}", "x".repeat(38))).unwrap();
    // 80 of 100 octets kept: a's next 40 drop a's oldest, not b's.
    publish("a", format!("a1{}", "x".repeat(38))).unwrap();
    // An empty queue has nothing of its own to drop: refused.
    assert_eq!(publish("c", "c".repeat(40)), Err(PublishError::QueuesFull));

    let mut consumer = broker.client("c").await;
    let a = subscribe_expecting(&mut consumer, "qa", "/queue/a", "auto", 1).await;
    assert!(body(&a[0]).starts_with("a1"), "a's oldest was dropped");
    let b = subscribe_expecting(&mut consumer, "qb", "/queue/b", "auto", 1).await;
    assert!(body(&b[0]).starts_with("b0"), "b kept its message");
    consumer.expect_silence(QUIET).await;
    drop(consumer);
    broker.stop().await;
}
