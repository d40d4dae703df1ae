//! User destinations: a session of user U subscribed to `/user/queue/x`
//! receives what is sent to `/user/U/queue/x` (by SEND or
//! `Broker::send_to_user`), on every session of U and no one else's; an
//! application handler's `reply` reaches only the sending session.

#[path = "support/extra_destinations.rs"]
mod extra;
mod support;

use async_trait::async_trait;
use extra::{QUIET, exchange};
use stomp_broker::{AppContext, AppHandler, AppMessage, Broker, PublishError, Rejection};
use stomp_codec::{Frame, Headers};
use support::{Client, TestBroker, body, send};

/// Replies `pong` to `/app/ping`.
struct Ping;

#[async_trait]
impl AppHandler for Ping {
    async fn handle(&self, context: &AppContext, message: AppMessage) -> Result<(), Rejection> {
        let answer = format!("pong for {}", String::from_utf8_lossy(&message.body));
        let n = context
            .reply("/queue/inbox", Headers::new(), answer)
            .map_err(|e| Rejection::new(e.to_string()))?;
        assert_eq!(n, 1, "one subscription of the sending session");
        Ok(())
    }
}

struct People {
    broker: TestBroker,
    bob1: Client,
    bob2: Client,
    amy: Client,
}

async fn people() -> People {
    let broker = TestBroker::start(Broker::builder().app_handler("/app/", Ping)).await;
    let mut bob1 = broker.client("bob").await;
    let mut bob2 = broker.client("bob").await;
    let mut amy = broker.client("amy").await;
    for c in [&mut bob1, &mut bob2, &mut amy] {
        c.subscribe("inbox", "/user/queue/inbox", "auto").await;
    }
    People { broker, bob1, bob2, amy }
}

fn check(m: &Frame, expected_body: &str) {
    assert_eq!(body(m), expected_body);
    assert_eq!(m.header_str("destination"), Some("/user/queue/inbox"), "{m:?}");
    assert_eq!(m.header_str("subscription"), Some("inbox"));
}

#[tokio::test]
async fn a_send_to_a_user_reaches_every_session_of_that_user_only() {
    let People { broker, mut bob1, mut bob2, mut amy } = people().await;
    let mut carol = broker.client("carol").await;
    carol.publish("/user/bob/queue/inbox", "for bob").await;
    check(&bob1.expect_message().await, "for bob");
    check(&bob2.expect_message().await, "for bob");
    amy.expect_silence(QUIET).await;

    carol.publish("/user/amy/queue/inbox", "for amy").await;
    check(&amy.expect_message().await, "for amy");
    bob1.expect_silence(QUIET).await;
    bob2.expect_silence(QUIET).await;
    drop((bob1, bob2, amy, carol));
    broker.stop().await;
}

#[tokio::test]
async fn send_to_user_does_the_same_from_rust() {
    let People { broker, mut bob1, mut bob2, mut amy } = people().await;
    let mut headers = Headers::new();
    headers.push("x-kind", "notice");
    let n = broker.broker.send_to_user("bob", "/queue/inbox", headers, "notice").unwrap();
    assert_eq!(n, 2, "two bob sessions");
    for bob in [&mut bob1, &mut bob2] {
        let m = bob.expect_message().await;
        check(&m, "notice");
        assert_eq!(m.header_str("x-kind"), Some("notice"));
    }
    amy.expect_silence(QUIET).await;

    assert_eq!(broker.broker.send_to_user("nobody", "/queue/inbox", Headers::new(), "x"), Ok(0));
    assert!(matches!(
        broker.broker.send_to_user("a/b", "/queue/inbox", Headers::new(), "x"),
        Err(PublishError::InvalidDestination(_))
    ));
    drop((bob1, bob2, amy));
    broker.stop().await;
}

#[tokio::test]
async fn reply_reaches_only_the_sending_session() {
    let People { broker, mut bob1, mut bob2, mut amy } = people().await;
    let before_receipt = exchange(&mut bob1, send("/app/ping", "bob1"), "p").await;
    assert_eq!(before_receipt.len(), 1, "{before_receipt:?}");
    check(&before_receipt[0], "pong for bob1");
    bob2.expect_silence(QUIET).await;
    amy.expect_silence(QUIET).await;
    bob1.expect_silence(QUIET).await;
    drop((bob1, bob2, amy));
    broker.stop().await;
}

#[tokio::test]
async fn one_user_cannot_subscribe_to_anothers_destination() {
    let People { broker, mut bob1, bob2, mut amy } = people().await;
    // Amy names bob's destination; she gets a destination of her own.
    amy.subscribe("snoop", "/user/bob/queue/inbox", "auto").await;
    let mut carol = broker.client("carol").await;
    carol.publish("/user/bob/queue/inbox", "private").await;
    check(&bob1.expect_message().await, "private");
    amy.expect_silence(QUIET).await;
    drop((bob1, bob2, amy, carol));
    broker.stop().await;
}

#[tokio::test]
async fn a_session_that_leaves_no_longer_receives() {
    let People { broker, mut bob1, bob2, amy } = people().await;
    drop(bob2);
    extra::soon("bob2 is gone", || broker.broker.connection_count() == 2).await;
    assert_eq!(broker.broker.send_to_user("bob", "/queue/inbox", Headers::new(), "x"), Ok(1));
    check(&bob1.expect_message().await, "x");
    drop((bob1, amy));
    broker.stop().await;
}
