//! The interceptor sees every SEND and SUBSCRIBE first: it may reject one
//! (the client gets an ERROR with the reason, and nothing is delivered or
//! subscribed) or rewrite it (another destination).

#[path = "support/extra_destinations.rs"]
mod extra;
mod support;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use extra::{QUIET, exchange, subscribe_frame};
use stomp_broker::{Broker, Interceptor, Rejection, SessionInfo};
use stomp_codec::{Command, Frame, Headers};
use support::{TestBroker, body, send};

/// Rejects SENDs to `/topic/forbidden` and SUBSCRIBEs to `/topic/secret`;
/// rewrites SENDs to `/topic/old` to `/topic/new` and SUBSCRIBEs to
/// `/topic/alias` to `/topic/real`; records who sent what.
#[derive(Clone, Default)]
struct Guard {
    seen: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Interceptor for Guard {
    async fn on_send(&self, session: &SessionInfo, frame: &mut Frame) -> Result<(), Rejection> {
        let destination = frame.header_str("destination").unwrap_or_default().to_owned();
        self.seen.lock().unwrap().push(format!("{} SEND {destination}", session.principal()));
        match destination.as_str() {
            "/topic/forbidden" => Err(Rejection::new("sending to /topic/forbidden is not allowed")
                .with_detail("Ask an administrator.")),
            "/topic/old" => {
                frame.headers_mut().set("destination", "/topic/new");
                frame.headers_mut().set("x-rewritten", "yes");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn on_subscribe(
        &self,
        session: &SessionInfo,
        frame: &mut Frame,
    ) -> Result<(), Rejection> {
        let destination = frame.header_str("destination").unwrap_or_default().to_owned();
        self.seen.lock().unwrap().push(format!("{} SUBSCRIBE {destination}", session.principal()));
        match destination.as_str() {
            "/topic/secret" => Err(Rejection::new("no access to /topic/secret")),
            "/topic/alias" => {
                frame.headers_mut().set("destination", "/topic/real");
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

async fn start() -> (TestBroker, Guard) {
    let guard = Guard::default();
    let broker = TestBroker::start(Broker::builder().interceptor(guard.clone())).await;
    (broker, guard)
}

#[tokio::test]
async fn a_rejected_send_is_an_error_and_is_not_delivered() {
    let (broker, guard) = start().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("t", "/topic/forbidden", "auto").await;
    let mut p = broker.client("mallory").await;
    p.send(send("/topic/forbidden", "boo").with_header("receipt", "r")).await;
    let error = p.expect(Command::Error).await;
    assert_eq!(error.header_str("message"), Some("sending to /topic/forbidden is not allowed"));
    assert_eq!(error.header_str("receipt-id"), Some("r"));
    assert!(body(&error).contains("Ask an administrator."), "{error:?}");
    assert!(p.expect_closed().await.is_empty(), "closed after the ERROR");
    sub.expect_silence(QUIET).await;
    assert!(guard.seen.lock().unwrap().contains(&"mallory SEND /topic/forbidden".to_owned()));

    // Other destinations still work for other clients.
    let mut q = broker.client("q").await;
    q.publish("/topic/forbidden.not", "fine").await;
    drop((sub, p, q));
    broker.stop().await;
}

#[tokio::test]
async fn a_rejected_send_in_a_transaction_is_refused_at_send_time() {
    let (broker, _guard) = start().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("t", "/topic/forbidden", "auto").await;
    let mut p = broker.client("p").await;
    assert!(exchange(&mut p, extra::begin("tx"), "b").await.is_empty());
    p.send(extra::in_tx(send("/topic/forbidden", "boo"), "tx")).await;
    assert_eq!(p.expect_error().await, "sending to /topic/forbidden is not allowed");
    sub.expect_silence(QUIET).await;
    drop((sub, p));
    broker.stop().await;
}

#[tokio::test]
async fn a_send_can_be_rewritten_to_another_destination() {
    let (broker, _guard) = start().await;
    let mut old = broker.client("old").await;
    old.subscribe("t", "/topic/old", "auto").await;
    let mut new = broker.client("new").await;
    new.subscribe("t", "/topic/new", "auto").await;
    let mut p = broker.client("p").await;
    p.publish("/topic/old", "moved").await;

    let m = new.expect_message().await;
    assert_eq!(body(&m), "moved");
    assert_eq!(m.header_str("destination"), Some("/topic/new"));
    assert_eq!(m.header_str("x-rewritten"), Some("yes"), "header changes travel too");
    old.expect_silence(QUIET).await;
    new.expect_silence(QUIET).await;

    // Publishing from Rust does not go through the interceptor.
    assert_eq!(broker.broker.publish("/topic/old", Headers::new(), "direct"), Ok(1));
    assert_eq!(body(&old.expect_message().await), "direct");
    drop((old, new, p));
    broker.stop().await;
}

#[tokio::test]
async fn a_rejected_subscribe_is_an_error_and_subscribes_nothing() {
    let (broker, _guard) = start().await;
    let mut c = broker.client("c").await;
    c.send(subscribe_frame("s", "/topic/secret", "auto").with_header("receipt", "r")).await;
    let error = c.expect(Command::Error).await;
    assert_eq!(error.header_str("message"), Some("no access to /topic/secret"));
    assert_eq!(error.header_str("receipt-id"), Some("r"));
    assert!(c.expect_closed().await.is_empty());
    assert_eq!(broker.broker.publish("/topic/secret", Headers::new(), "x"), Ok(0));
    assert_eq!(broker.broker.destination_count(), 0);
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn a_subscribe_can_be_rewritten_to_another_destination() {
    let (broker, guard) = start().await;
    let mut c = broker.client("carol").await;
    c.subscribe("s", "/topic/alias", "auto").await;
    let mut p = broker.client("p").await;
    p.publish("/topic/alias", "to the alias").await;
    p.publish("/topic/real", "to the real one").await;
    let m = c.expect_message().await;
    assert_eq!(body(&m), "to the real one");
    assert_eq!(m.header_str("destination"), Some("/topic/real"));
    assert_eq!(m.header_str("subscription"), Some("s"));
    c.expect_silence(QUIET).await;
    assert!(guard.seen.lock().unwrap().contains(&"carol SUBSCRIBE /topic/alias".to_owned()));

    // UNSUBSCRIBE by id ends the rewritten subscription.
    assert!(exchange(&mut c, extra::unsubscribe_frame("s"), "u").await.is_empty());
    p.publish("/topic/real", "after").await;
    c.expect_silence(QUIET).await;
    drop((c, p));
    broker.stop().await;
}
