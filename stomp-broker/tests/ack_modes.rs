//! Acknowledgement modes: `auto` needs no ACK, `client` ACKs are
//! cumulative, `client-individual` ACKs settle one message; STOMP 1.1 and
//! 1.0 clients acknowledge by `message-id` (and `subscription`).

#[path = "support/extra_destinations.rs"]
mod extra;
mod support;

use std::net::SocketAddr;

use extra::{
    QUIET, ack, ack_tag, bodies_of, exchange, messages, names, publish_all, soon, subscribe_frame,
};
use stomp_broker::{Broker, Limits};
use stomp_codec::{Command, Frame, Version};
use support::{Client, TestBroker, body};

/// Once the broker has `connections` connections left (the consumer under
/// test is gone), the bodies a new consumer of `destination` receives: what
/// was left unacknowledged.
async fn left_over(broker: &TestBroker, connections: usize, destination: &str) -> Vec<String> {
    soon("the consumer's connection is closed", || broker.broker.connection_count() == connections)
        .await;
    let mut next = broker.client("next").await;
    let early = exchange(&mut next, subscribe_frame("q", destination, "auto"), "s").await;
    let mut got = bodies_of(&early);
    loop {
        match tokio::time::timeout(QUIET, next.recv()).await {
            Err(_) => return got,
            Ok(frame) => {
                assert_eq!(frame.command(), Command::Message, "{frame:?}");
                got.push(body(&frame));
            }
        }
    }
}

/// Connects with `accept-version` (none for STOMP 1.0) and switches the
/// client's codec to the version agreed.
async fn connect_as(addr: SocketAddr, accept_version: Option<&str>, version: Version) -> Client {
    let mut client = Client::raw(addr).await;
    let mut connect =
        Frame::new(Command::Connect).with_header("login", "old").with_header("host", "/");
    if let Some(accept) = accept_version {
        connect = connect.with_header("accept-version", accept.to_owned());
    }
    let connected = client.request(connect).await;
    assert_eq!(connected.command(), Command::Connected, "{connected:?}");
    if version != Version::V1_0 {
        assert_eq!(connected.header_str("version"), Some(version.as_str()));
    }
    client.set_version(version);
    client
}

#[tokio::test]
async fn auto_needs_no_ack_and_has_no_prefetch_bound() {
    let broker =
        TestBroker::start(Broker::builder().limits(Limits::default().max_unacked(1))).await;
    let mut c = broker.client("c").await;
    c.subscribe("q", "/queue/auto", "auto").await;
    let mut p = broker.client("p").await;
    publish_all(&mut p, "/queue/auto", &names("m", 0..3)).await;
    let got = messages(&mut c, 3).await;
    assert_eq!(bodies_of(&got), names("m", 0..3));
    for m in &got {
        assert!(m.header("ack").is_none(), "auto deliveries carry no ack header: {m:?}");
    }
    drop(c);
    assert!(left_over(&broker, 1, "/queue/auto").await.is_empty(), "auto messages are done");
    drop(p);
    broker.stop().await;
}

#[tokio::test]
async fn client_ack_is_cumulative() {
    let broker = TestBroker::default().await;
    let mut c = broker.client("c").await;
    c.subscribe("q", "/queue/cumulative", "client").await;
    let mut p = broker.client("p").await;
    publish_all(&mut p, "/queue/cumulative", &names("m", 0..3)).await;
    let got = messages(&mut c, 3).await;
    assert_eq!(bodies_of(&got), names("m", 0..3));
    let tags: Vec<String> = got.iter().map(ack_tag).collect();
    assert!(tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2], "{tags:?}");

    // ACK of the third acknowledges all three...
    let early = exchange(&mut c, ack(&tags[2]), "a3").await;
    assert!(early.is_empty(), "{early:?}");
    // ...so the first is no longer waiting: the broker answers ERROR.
    c.send(ack(&tags[0]).with_header("receipt", "a1")).await;
    let error = c.expect(Command::Error).await;
    let message = error.header_str("message").unwrap();
    assert!(message.contains("unknown ack id"), "{message:?}");
    assert!(message.contains(&tags[0]), "{message:?}");
    assert_eq!(error.header_str("receipt-id"), Some("a1"));
    assert!(c.expect_closed().await.is_empty());

    drop(c);
    assert!(left_over(&broker, 1, "/queue/cumulative").await.is_empty(), "all three were acked");
    drop(p);
    broker.stop().await;
}

#[tokio::test]
async fn client_ack_of_the_middle_message_leaves_the_later_one() {
    let broker = TestBroker::default().await;
    let mut c = broker.client("c").await;
    c.subscribe("q", "/queue/middle", "client").await;
    let mut p = broker.client("p").await;
    publish_all(&mut p, "/queue/middle", &names("m", 0..3)).await;
    let got = messages(&mut c, 3).await;
    assert!(exchange(&mut c, ack(&ack_tag(&got[1])), "a").await.is_empty());
    // m2 still waits for its ACK: acknowledging it is no error.
    assert!(exchange(&mut c, ack(&ack_tag(&got[2])), "b").await.is_empty());
    drop(c);
    assert!(left_over(&broker, 1, "/queue/middle").await.is_empty());
    drop(p);
    broker.stop().await;
}

#[tokio::test]
async fn client_individual_acks_one_message_at_a_time() {
    let broker = TestBroker::default().await;
    let mut c = broker.client("c").await;
    c.subscribe("q", "/queue/individual", "client-individual").await;
    let mut p = broker.client("p").await;
    publish_all(&mut p, "/queue/individual", &names("m", 0..3)).await;
    let got = messages(&mut c, 3).await;
    // ACK the last, then the first: the first was still waiting (the ACK
    // of the last did not cover it).
    assert!(exchange(&mut c, ack(&ack_tag(&got[2])), "a2").await.is_empty());
    assert!(exchange(&mut c, ack(&ack_tag(&got[0])), "a0").await.is_empty());
    drop(c);
    assert_eq!(left_over(&broker, 1, "/queue/individual").await, ["m1"]);
    drop(p);
    broker.stop().await;
}

#[tokio::test]
async fn an_ack_id_from_another_session_is_unknown() {
    let broker = TestBroker::default().await;
    let mut a = broker.client("a").await;
    a.subscribe("q", "/queue/mine", "client-individual").await;
    let mut p = broker.client("p").await;
    p.publish("/queue/mine", "m0").await;
    let m = a.expect_message().await;
    let mut b = broker.client("b").await;
    b.send(ack(&ack_tag(&m))).await;
    assert!(b.expect_error().await.contains("unknown ack id"));
    // Still a's to acknowledge.
    assert!(exchange(&mut a, ack(&ack_tag(&m)), "a").await.is_empty());
    drop((a, b, p));
    broker.stop().await;
}

#[tokio::test]
async fn stomp_1_1_acks_by_message_id_and_subscription() {
    let broker = TestBroker::default().await;
    let mut c = connect_as(broker.addr, Some("1.1"), Version::V1_1).await;
    c.subscribe("s1", "/queue/v11", "client").await;
    let mut p = broker.client("p").await;
    publish_all(&mut p, "/queue/v11", &names("m", 0..3)).await;
    let got = messages(&mut c, 3).await;
    assert_eq!(bodies_of(&got), names("m", 0..3));
    for m in &got {
        assert_eq!(m.header_str("subscription"), Some("s1"));
        assert!(m.header("message-id").is_some());
    }

    // Cumulative, by message-id: m0 and m1.
    let ack_m1 = Frame::new(Command::Ack)
        .with_header("message-id", got[1].header_str("message-id").unwrap().to_owned())
        .with_header("subscription", "s1");
    assert!(exchange(&mut c, ack_m1, "a").await.is_empty());
    drop(c);
    assert_eq!(left_over(&broker, 1, "/queue/v11").await, ["m2"]);
    drop(p);
    broker.stop().await;
}

#[tokio::test]
async fn stomp_1_1_ack_with_the_wrong_subscription_is_refused() {
    let broker = TestBroker::default().await;
    let mut c = connect_as(broker.addr, Some("1.1"), Version::V1_1).await;
    c.subscribe("s1", "/queue/v11b", "client-individual").await;
    let mut p = broker.client("p").await;
    p.publish("/queue/v11b", "m0").await;
    let m = c.expect_message().await;
    let wrong = Frame::new(Command::Ack)
        .with_header("message-id", m.header_str("message-id").unwrap().to_owned())
        .with_header("subscription", "nope");
    c.send(wrong).await;
    let error = c.expect_error().await;
    assert!(error.contains("unknown message-id"), "{error:?}");
    drop(c);
    assert_eq!(left_over(&broker, 1, "/queue/v11b").await, ["m0"], "not acknowledged");
    drop(p);
    broker.stop().await;
}

#[tokio::test]
async fn stomp_1_0_acks_by_message_id() {
    let broker = TestBroker::default().await;
    let mut c = connect_as(broker.addr, None, Version::V1_0).await;
    // STOMP 1.0: SUBSCRIBE without an id.
    let sub = Frame::new(Command::Subscribe)
        .with_header("destination", "/queue/v10")
        .with_header("ack", "client");
    assert!(exchange(&mut c, sub, "s").await.is_empty());
    let mut p = broker.client("p").await;
    publish_all(&mut p, "/queue/v10", &names("m", 0..3)).await;
    let got = messages(&mut c, 3).await;
    assert_eq!(bodies_of(&got), names("m", 0..3));

    for m in &got[..2] {
        let ack = Frame::new(Command::Ack)
            .with_header("message-id", m.header_str("message-id").unwrap().to_owned());
        assert!(exchange(&mut c, ack, "a").await.is_empty());
    }
    drop(c);
    assert_eq!(left_over(&broker, 1, "/queue/v10").await, ["m2"]);
    drop(p);
    broker.stop().await;
}
