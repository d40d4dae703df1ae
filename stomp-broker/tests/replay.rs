//! The [`Replay`] hook: a SUBSCRIBE it wants gets the replayed messages
//! first, then the live messages that arrived while the replay was read
//! (less those the batch says it replayed), then live ones, in that order,
//! with nothing lost in between. A refusal ends the subscription; queues
//! are never replayed; held messages are bounded.

#[path = "support/extra_destinations.rs"]
mod extra;
mod support;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use extra::{QUIET, ack, ack_tag, subscribe_frame};
use stomp_broker::{Broker, Limits, Rejection, Replay, ReplayBatch, SessionInfo};
use stomp_codec::{Command, Frame, Headers};
use support::{TestBroker, body};
use tokio::sync::{Notify, Semaphore};

/// Replays `r1`, `r2` for SUBSCRIBEs with an `x-from` header, pausing until
/// the test lets it go; live messages with body `dup` count as replayed.
/// `x-from: refuse` is refused.
#[derive(Clone)]
struct Paused {
    entered: Arc<Notify>,
    go: Arc<Semaphore>,
}

impl Paused {
    fn new() -> Self {
        Self { entered: Arc::new(Notify::new()), go: Arc::new(Semaphore::new(0)) }
    }
}

#[async_trait]
impl Replay for Paused {
    fn wants_replay(&self, _session: &SessionInfo, frame: &Frame) -> bool {
        frame.header("x-from").is_some()
    }

    async fn replay(
        &self,
        _session: &SessionInfo,
        frame: &Frame,
    ) -> Result<ReplayBatch, Rejection> {
        if frame.header_str("x-from") == Some("refuse") {
            return Err(Rejection::new("no history here"));
        }
        self.entered.notify_one();
        self.go.acquire().await.expect("semaphore open").forget();
        let mut headers = Headers::new();
        headers.push(Bytes::from_static(b"x-replayed"), Bytes::from_static(b"yes"));
        let messages = vec![
            (headers.clone(), Bytes::from_static(b"r1")),
            (headers, Bytes::from_static(b"r2")),
        ];
        Ok(ReplayBatch::new(messages).skip_live(|m| m.body().as_ref() == b"dup"))
    }
}

fn publish(broker: &Broker, destination: &str, text: &'static str) {
    broker
        .publish(destination, Headers::new(), Bytes::from_static(text.as_bytes()))
        .expect("publish");
}

async fn start(limits: Limits) -> (TestBroker, Paused) {
    let hook = Paused::new();
    let server = TestBroker::start(Broker::builder().limits(limits).replay(hook.clone())).await;
    (server, hook)
}

/// A client whose SUBSCRIBE (`s` to `/topic/t`, receipt `subscribed`)
/// asks for a replay, once the replay has started (and waits).
async fn subscribed_while_paused(server: &TestBroker, hook: &Paused) -> support::Client {
    let mut client = server.client("alice").await;
    let subscribe = subscribe_frame("s", "/topic/t", "auto")
        .with_header("x-from", "0")
        .with_header("receipt", "subscribed");
    client.send(subscribe).await;
    hook.entered.notified().await;
    client
}

#[tokio::test]
async fn replayed_messages_come_before_held_and_live_ones() {
    let (server, hook) = start(Limits::default()).await;
    let mut client = subscribed_while_paused(&server, &hook).await;
    // While the replay is read: one message it says it replayed, one it did not.
    publish(&server.broker, "/topic/t", "dup");
    publish(&server.broker, "/topic/t", "held");
    client.expect_silence(QUIET).await;
    hook.go.add_permits(1);
    let mut got = Vec::new();
    for _ in 0..3 {
        let message = client.expect_message().await;
        assert_eq!(message.header_str("destination"), Some("/topic/t"));
        assert_eq!(message.header_str("subscription"), Some("s"));
        got.push(body(&message));
    }
    assert_eq!(got, ["r1", "r2", "held"]);
    let receipt = client.expect(Command::Receipt).await;
    assert_eq!(receipt.header_str("receipt-id"), Some("subscribed"));
    publish(&server.broker, "/topic/t", "live");
    assert_eq!(body(&client.expect_message().await), "live");
    // A SUBSCRIBE the hook does not want is not held.
    let mut other = server.client("bob").await;
    other.subscribe("o", "/topic/t", "auto").await;
    publish(&server.broker, "/topic/t", "plain");
    assert_eq!(body(&other.expect_message().await), "plain");
    assert_eq!(body(&client.expect_message().await), "plain");
    server.stop().await;
}

#[tokio::test]
async fn what_the_replay_delivered_is_skipped_for_the_subscriptions_whole_life() {
    let (server, hook) = start(Limits::default()).await;
    let mut client = subscribed_while_paused(&server, &hook).await;
    hook.go.add_permits(1);
    assert_eq!(body(&client.expect_message().await), "r1");
    assert_eq!(body(&client.expect_message().await), "r2");
    client.expect(Command::Receipt).await;
    // A message the replay delivered reaches the node late (as one can
    // through a backplane): it is not delivered a second time.
    publish(&server.broker, "/topic/t", "dup");
    publish(&server.broker, "/topic/t", "after");
    assert_eq!(body(&client.expect_message().await), "after");
    // Other subscribers of the topic are not affected.
    let mut other = server.client("bob").await;
    other.subscribe("o", "/topic/t", "auto").await;
    publish(&server.broker, "/topic/t", "dup");
    assert_eq!(body(&other.expect_message().await), "dup");
    client.expect_silence(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn client_ack_replays_respect_the_prefetch_bound() {
    let (server, hook) = start(Limits::default().max_unacked(2)).await;
    let mut client = server.client("alice").await;
    client
        .send(subscribe_frame("s", "/topic/t", "client-individual").with_header("x-from", "0"))
        .await;
    hook.entered.notified().await;
    publish(&server.broker, "/topic/t", "held");
    hook.go.add_permits(1);
    let first = client.expect_message().await;
    let second = client.expect_message().await;
    assert_eq!([body(&first), body(&second)], ["r1", "r2"]);
    client.expect_silence(QUIET).await;
    client.send(ack(&ack_tag(&first))).await;
    assert_eq!(body(&client.expect_message().await), "held");
    server.stop().await;
}

#[tokio::test]
async fn a_refused_replay_ends_the_subscription() {
    let (server, _hook) = start(Limits::default()).await;
    let mut client = server.client("alice").await;
    client
        .send(
            subscribe_frame("s", "/topic/t", "auto")
                .with_header("x-from", "refuse")
                .with_header("receipt", "r"),
        )
        .await;
    let error = client.expect(Command::Error).await;
    assert_eq!(error.header_str("message"), Some("no history here"));
    assert_eq!(error.header_str("receipt-id"), Some("r"));
    client.expect_closed().await;
    extra::soon("the refused subscription's topic is gone", || {
        server.broker.destination_count() == 0
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn queues_are_not_replayed() {
    let (server, _hook) = start(Limits::default()).await;
    let mut client = server.client("alice").await;
    let frame = subscribe_frame("q", "/queue/work", "auto").with_header("x-from", "0");
    client.with_receipt(frame, "subscribed").await;
    publish(&server.broker, "/queue/work", "job");
    assert_eq!(body(&client.expect_message().await), "job");
    server.stop().await;
}

#[tokio::test]
async fn held_messages_are_bounded() {
    let (server, hook) = start(Limits::default().max_pending_bytes(4096)).await;
    let mut client = server.client("alice").await;
    client.send(subscribe_frame("s", "/topic/t", "auto").with_header("x-from", "0")).await;
    hook.entered.notified().await;
    let big = Bytes::from(vec![b'x'; 1024]);
    for _ in 0..8 {
        server.broker.publish("/topic/t", Headers::new(), big.clone()).expect("publish");
    }
    hook.go.add_permits(1);
    let frames = client.expect_closed().await;
    let error = frames.iter().find(|f| f.command() == Command::Error);
    assert!(error.is_some(), "the connection closes with an ERROR: {frames:?}");
    assert!(server.broker.stats().slow_consumer_disconnects >= 1);
    server.stop().await;
}
