//! Topics fan out: every subscriber gets every message, each of several
//! subscriptions of one connection its own copy, with the sender's headers.

mod support;

use stomp_codec::{Command, Frame};
use support::{TestBroker, body, send};

#[tokio::test]
async fn every_subscriber_gets_every_message() {
    let broker = TestBroker::default().await;
    let mut subs = Vec::new();
    for i in 0..3 {
        let mut c = broker.client(&format!("u{i}")).await;
        c.subscribe("s", "/topic/news", "auto").await;
        subs.push(c);
    }
    let mut publisher = broker.client("p").await;
    for n in 0..5 {
        publisher.publish("/topic/news", &format!("m{n}")).await;
    }
    for c in &mut subs {
        for n in 0..5 {
            let m = c.expect_message().await;
            assert_eq!(body(&m), format!("m{n}"));
            assert_eq!(m.header_str("destination"), Some("/topic/news"));
            assert_eq!(m.header_str("subscription"), Some("s"));
            assert!(m.header("message-id").is_some());
        }
    }
    broker.stop().await;
}

#[tokio::test]
async fn two_subscriptions_in_one_connection_each_get_a_copy() {
    let broker = TestBroker::default().await;
    let mut c = broker.client("a").await;
    c.subscribe("one", "/topic/t", "auto").await;
    c.subscribe("two", "/topic/t", "auto").await;
    let mut p = broker.client("p").await;
    p.publish("/topic/t", "x").await;
    let mut ids = vec![
        c.expect_message().await.header_str("subscription").unwrap().to_owned(),
        c.expect_message().await.header_str("subscription").unwrap().to_owned(),
    ];
    ids.sort();
    assert_eq!(ids, ["one", "two"]);
    broker.stop().await;
}

#[tokio::test]
async fn user_and_content_headers_pass_through() {
    let broker = TestBroker::default().await;
    let mut c = broker.client("a").await;
    c.subscribe("s", "/topic/h", "auto").await;
    let mut p = broker.client("p").await;
    let frame = Frame::new(Command::Send)
        .with_header("destination", "/topic/h")
        .with_header("content-type", "application/json")
        .with_header("x-custom", "v:1")
        .with_header("receipt", "r")
        .with_body("{}");
    p.send(frame).await;
    p.expect(Command::Receipt).await;
    let m = c.expect_message().await;
    assert_eq!(m.header_str("content-type"), Some("application/json"));
    assert_eq!(m.header_str("x-custom"), Some("v:1"));
    assert_eq!(m.header_str("content-length"), Some("2"));
    assert!(m.header("receipt").is_none(), "SEND-only headers are not forwarded");
    assert_eq!(body(&m), "{}");
    let _ = send("/topic/h", "");
    broker.stop().await;
}
