//! NACK gives a queue message back to the queue, at the front: it is
//! delivered again (to a consumer with room) with `redelivered:true`. On a
//! topic, NACK only discards the message.

#[path = "support/extra_destinations.rs"]
mod extra;
mod support;

use extra::{QUIET, ack, ack_tag, exchange, exchange_expecting, nack, names, publish_all};
use stomp_broker::{Broker, Limits};
use support::{TestBroker, body};

#[tokio::test]
async fn a_nacked_queue_message_is_redelivered_with_the_redelivered_header() {
    let broker = TestBroker::default().await;
    let mut c = broker.client("c").await;
    c.subscribe("q", "/queue/n", "client-individual").await;
    let mut p = broker.client("p").await;
    p.publish("/queue/n", "once more").await;

    let first = c.expect_message().await;
    assert_eq!(body(&first), "once more");
    assert!(first.header("redelivered").is_none(), "a first delivery is not redelivered");

    let again = exchange_expecting(&mut c, nack(&ack_tag(&first)), "n1", 1).await.remove(0);
    assert_eq!(body(&again), "once more");
    assert_eq!(again.header_str("redelivered"), Some("true"), "{again:?}");
    assert_eq!(again.header_str("message-id"), first.header_str("message-id"), "same message");
    assert_eq!(again.header_str("subscription"), Some("q"));
    assert_ne!(ack_tag(&again), ack_tag(&first), "a new delivery has a new ack id");

    // Acknowledged this time: gone for good.
    let early = exchange(&mut c, ack(&ack_tag(&again)), "a1").await;
    assert!(early.is_empty(), "{early:?}");
    c.expect_silence(QUIET).await;
    drop((c, p));
    broker.stop().await;
}

#[tokio::test]
async fn a_nacked_message_goes_back_to_the_front_of_the_queue() {
    // Prefetch 1: m1 waits in the queue while m0 is out. After NACK, m0 is
    // ahead of m1 again.
    let broker =
        TestBroker::start(Broker::builder().limits(Limits::default().max_unacked(1))).await;
    let mut c = broker.client("c").await;
    c.subscribe("q", "/queue/front", "client-individual").await;
    let mut p = broker.client("p").await;
    publish_all(&mut p, "/queue/front", &names("m", 0..2)).await;

    let m0 = c.expect_message().await;
    assert_eq!(body(&m0), "m0");
    c.expect_silence(QUIET).await;

    let again = exchange_expecting(&mut c, nack(&ack_tag(&m0)), "n", 1).await.remove(0);
    assert_eq!(body(&again), "m0", "the NACKed message comes before the one waiting");
    assert_eq!(again.header_str("redelivered"), Some("true"));

    let next = exchange_expecting(&mut c, ack(&ack_tag(&again)), "a", 1).await.remove(0);
    assert_eq!(body(&next), "m1");
    assert!(next.header("redelivered").is_none(), "{next:?}");
    drop((c, p));
    broker.stop().await;
}

#[tokio::test]
async fn a_nacked_message_goes_to_exactly_one_consumer() {
    let broker = TestBroker::default().await;
    let mut a = broker.client("a").await;
    let mut b = broker.client("b").await;
    a.subscribe("q", "/queue/two", "client-individual").await;
    b.subscribe("q", "/queue/two", "client-individual").await;
    let mut p = broker.client("p").await;
    p.publish("/queue/two", "hot potato").await;

    // Whoever got it NACKs it.
    let (mut holder, mut other) = (a, b);
    let first = match tokio::time::timeout(QUIET, holder.expect_message()).await {
        Ok(m) => m,
        Err(_) => {
            std::mem::swap(&mut holder, &mut other);
            holder.expect_message().await
        }
    };
    let before_receipt = exchange(&mut holder, nack(&ack_tag(&first)), "n").await;
    let again = match before_receipt.len() {
        1 => {
            other.expect_silence(QUIET).await;
            before_receipt.into_iter().next().unwrap()
        }
        0 => match tokio::time::timeout(QUIET * 5, other.expect_message()).await {
            Ok(m) => {
                holder.expect_silence(QUIET).await;
                m
            }
            Err(_) => holder.expect_message().await,
        },
        _ => panic!("delivered more than once: {before_receipt:?}"),
    };
    assert_eq!(body(&again), "hot potato");
    assert_eq!(again.header_str("redelivered"), Some("true"));
    assert_eq!(again.header_str("message-id"), first.header_str("message-id"));
    holder.expect_silence(QUIET).await;
    other.expect_silence(QUIET).await;
    drop((holder, other, p));
    broker.stop().await;
}

#[tokio::test]
async fn nack_on_a_topic_discards_the_message() {
    let broker = TestBroker::default().await;
    let mut c = broker.client("c").await;
    c.subscribe("t", "/topic/n", "client-individual").await;
    let mut watcher = broker.client("w").await;
    watcher.subscribe("t", "/topic/n", "auto").await;
    let mut p = broker.client("p").await;
    p.publish("/topic/n", "m0").await;

    let m0 = c.expect_message().await;
    assert_eq!(body(&watcher.expect_message().await), "m0");
    let early = exchange(&mut c, nack(&ack_tag(&m0)), "n").await;
    assert!(early.is_empty(), "a topic message is not redelivered: {early:?}");
    c.expect_silence(QUIET).await;
    watcher.expect_silence(QUIET).await;

    // The subscription goes on with the next message.
    p.publish("/topic/n", "m1").await;
    let m1 = c.expect_message().await;
    assert_eq!(body(&m1), "m1");
    assert!(m1.header("redelivered").is_none());
    assert_eq!(body(&watcher.expect_message().await), "m1");

    // The NACKed delivery is settled: a second NACK names nothing.
    c.send(nack(&ack_tag(&m0))).await;
    let error = c.expect_error().await;
    assert!(error.contains("unknown ack id"), "{error:?}");
    drop((c, watcher, p));
    broker.stop().await;
}
