//! Interoperability with a third-party Rust STOMP client, `async-stomp`
//! 0.7: topics and queues, client-individual ACK and NACK, transactions,
//! receipts, heart-beats and DISCONNECT with a receipt, all through the
//! crate's own `Connector`, `Subscriber` and message types.
//!
//! What `async-stomp` does not support, and so is not exercised here:
//! - STOMP 1.0 and 1.1: its CONNECT offers only `accept-version:1.2`, and it
//!   refuses any other version in CONNECTED (the stomp.py suite covers them);
//! - receipts as an API: a `receipt` header is added by hand through
//!   `Message::extra_headers`, and the RECEIPT frame read from the stream
//!   (only `client::disconnect` asks for one by itself);
//! - UNSUBSCRIBE or BEGIN/COMMIT/ABORT with headers of their own are sent
//!   the same way (extra headers).

mod support;

use std::collections::VecDeque;
use std::time::Duration;

use async_stomp::client::{ClientTransport, Connector, Subscriber, disconnect};
use async_stomp::{AckMode, FromServer, Message, ToServer};
use futures::{SinkExt, StreamExt};
use support::{TestBroker, WAIT};

/// How long to watch for a frame that must not come.
const QUIET: Duration = Duration::from_millis(400);

/// An `async-stomp` connection, with the messages that arrived while a
/// receipt was awaited kept for later.
struct Peer {
    name: &'static str,
    conn: ClientTransport,
    early: VecDeque<Message<FromServer>>,
    receipts: u32,
}

/// The fields of a received MESSAGE.
#[derive(Debug)]
struct Received {
    destination: String,
    subscription: String,
    message_id: String,
    ack: Option<String>,
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl Peer {
    async fn connect(broker: &TestBroker, name: &'static str) -> Self {
        let conn = Connector::builder()
            .server(broker.addr)
            .virtualhost("/")
            .login(name.to_owned())
            .passcode("secret".to_owned())
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{name}: async-stomp could not connect: {e:#}"));
        Self { name, conn, early: VecDeque::new(), receipts: 0 }
    }

    /// The next item from the server; panics on a client error, at end of
    /// stream, or after [`WAIT`].
    async fn next_frame(&mut self, what: &str) -> Message<FromServer> {
        if let Some(early) = self.early.pop_front() {
            return early;
        }
        let name = self.name;
        match tokio::time::timeout(WAIT, self.conn.next()).await {
            Err(_) => panic!("{name}: {what}: nothing from the broker within {WAIT:?}"),
            Ok(None) => panic!("{name}: {what}: the broker closed the connection"),
            Ok(Some(Err(e))) => panic!("{name}: {what}: async-stomp error: {e:#}"),
            Ok(Some(Ok(message))) => message,
        }
    }

    /// Sends `content` with a `receipt` header and waits for its RECEIPT;
    /// MESSAGEs that arrive first are kept for [`message`](Self::message).
    async fn send_with_receipt(&mut self, content: impl Into<Message<ToServer>>, what: &str) {
        self.receipts += 1;
        let receipt = format!("{}-{}", self.name, self.receipts);
        let mut message = content.into();
        message.extra_headers.push((b"receipt".to_vec(), receipt.clone().into_bytes()));
        let name = self.name;
        self.conn
            .send(message)
            .await
            .unwrap_or_else(|e| panic!("{name}: {what}: send failed: {e:#}"));
        let mut early = VecDeque::new();
        loop {
            let frame = match tokio::time::timeout(WAIT, self.conn.next()).await {
                Err(_) => panic!("{name}: {what}: no RECEIPT {receipt} within {WAIT:?}"),
                Ok(None) => panic!("{name}: {what}: connection closed before RECEIPT {receipt}"),
                Ok(Some(Err(e))) => panic!("{name}: {what}: async-stomp error: {e:#}"),
                Ok(Some(Ok(frame))) => frame,
            };
            match &frame.content {
                FromServer::Receipt { receipt_id } if *receipt_id == receipt => break,
                FromServer::Receipt { receipt_id } => {
                    panic!("{name}: {what}: RECEIPT {receipt_id}, expected {receipt}")
                }
                FromServer::Error { .. } => {
                    panic!("{name}: {what}: ERROR instead of RECEIPT: {:?}", frame.content)
                }
                _ => early.push_back(frame),
            }
        }
        self.early.extend(early);
    }

    async fn subscribe(&mut self, destination: &str, id: &str, ack: AckMode) {
        let subscribe = Subscriber::builder().destination(destination).id(id).ack(ack).subscribe();
        self.send_with_receipt(subscribe, &format!("SUBSCRIBE {destination}")).await;
    }

    async fn publish(&mut self, destination: &str, body: &str, transaction: Option<&str>) {
        let send = ToServer::Send {
            destination: destination.to_owned(),
            transaction: transaction.map(str::to_owned),
            headers: Some(vec![("x-client".to_owned(), "async-stomp".to_owned())]),
            body: Some(body.as_bytes().to_vec()),
        };
        self.send_with_receipt(send, &format!("SEND {body:?} to {destination}")).await;
    }

    /// The next MESSAGE.
    async fn message(&mut self, what: &str) -> Received {
        let frame = self.next_frame(what).await;
        let FromServer::Message { destination, message_id, subscription, ack, headers, body } =
            frame.content
        else {
            panic!("{}: {what}: expected MESSAGE, got {:?}", self.name, frame.content);
        };
        let body = String::from_utf8_lossy(&body.unwrap_or_default()).into_owned();
        Received { destination, subscription, message_id, ack, headers, body }
    }

    /// Nothing arrives within [`QUIET`].
    async fn expect_silence(&mut self, what: &str) {
        if let Some(early) = self.early.pop_front() {
            panic!("{}: {what}: unexpected {:?}", self.name, early.content);
        }
        match tokio::time::timeout(QUIET, self.conn.next()).await {
            Err(_) => {}
            Ok(other) => panic!(
                "{}: {what}: expected nothing, got {:?}",
                self.name,
                other.map(|r| r.map(|m| m.content))
            ),
        }
    }

    async fn transaction(&mut self, content: ToServer, what: &str) {
        self.send_with_receipt(content, what).await;
    }

    async fn ack(&mut self, message: &Received, transaction: Option<&str>) {
        let id = message.ack.clone().expect("MESSAGE has an ack header");
        let ack = ToServer::Ack { id, transaction: transaction.map(str::to_owned) };
        self.send_with_receipt(ack, &format!("ACK {:?}", message.body)).await;
    }

    async fn nack(&mut self, message: &Received) {
        let id = message.ack.clone().expect("MESSAGE has an ack header");
        self.send_with_receipt(
            ToServer::Nack { id, transaction: None },
            &format!("NACK {:?}", message.body),
        )
        .await;
    }

    /// DISCONNECT with a receipt, through the crate's own `disconnect`.
    async fn disconnect(mut self) {
        let name = self.name;
        match tokio::time::timeout(WAIT, disconnect(&mut self.conn, format!("{name}-bye"))).await {
            Err(_) => panic!("{name}: DISCONNECT: no RECEIPT within {WAIT:?}"),
            Ok(Err(e)) => panic!("{name}: DISCONNECT failed: {e:#}"),
            Ok(Ok(())) => {}
        }
    }
}

/// Waits until the broker counts `n` open connections.
async fn wait_connections(broker: &TestBroker, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while broker.broker.connection_count() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broker still counts {} connections, expected {n}",
            broker.broker.connection_count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_and_queue_with_acks() {
    let broker = TestBroker::default().await;
    let mut sub = Peer::connect(&broker, "rs-sub").await;
    let mut publisher = Peer::connect(&broker, "rs-pub").await;
    sub.subscribe("/topic/rs.news", "t", AckMode::Auto).await;
    sub.subscribe("/queue/rs.work", "q", AckMode::ClientIndividual).await;

    // Topic: body, destination, subscription and the sender's headers.
    publisher.publish("/topic/rs.news", "hello topic", None).await;
    let m = sub.message("topic message").await;
    assert_eq!(m.body, "hello topic");
    assert_eq!(m.destination, "/topic/rs.news");
    assert_eq!(m.subscription, "t");
    assert!(!m.message_id.is_empty(), "{m:?}");
    assert_eq!(m.header("x-client"), Some("async-stomp"), "{m:?}");
    assert_eq!(m.ack, None, "an auto subscription's MESSAGE needs no ack header: {m:?}");

    // Queue, client-individual: ACK one, NACK one and see it again.
    for body in ["job-1", "job-2", "job-3"] {
        publisher.publish("/queue/rs.work", body, None).await;
    }
    let j1 = sub.message("job-1").await;
    let j2 = sub.message("job-2").await;
    let j3 = sub.message("job-3").await;
    for (m, body) in [(&j1, "job-1"), (&j2, "job-2"), (&j3, "job-3")] {
        assert_eq!(m.body, body, "{m:?}");
        assert_eq!(m.destination, "/queue/rs.work", "{m:?}");
        assert_eq!(m.subscription, "q", "{m:?}");
        assert!(m.ack.is_some(), "a client-individual MESSAGE carries an ack header: {m:?}");
    }
    sub.ack(&j1, None).await;
    sub.nack(&j2).await;
    sub.ack(&j3, None).await;
    let again = sub.message("job-2 after NACK").await;
    assert_eq!(again.body, "job-2", "{again:?}");
    assert_eq!(again.destination, "/queue/rs.work");
    sub.ack(&again, None).await;
    sub.expect_silence("every job acknowledged").await;

    // Acknowledged messages are gone: a new consumer of the queue gets only
    // what is sent now.
    let mut late = Peer::connect(&broker, "rs-late").await;
    late.subscribe("/queue/rs.work", "late", AckMode::ClientIndividual).await;
    late.expect_silence("acknowledged jobs are not delivered again").await;

    sub.send_with_receipt(ToServer::Unsubscribe { id: "q".to_owned() }, "UNSUBSCRIBE q").await;
    publisher.publish("/queue/rs.work", "job-4", None).await;
    let j4 = late.message("job-4").await;
    assert_eq!(j4.body, "job-4");
    late.ack(&j4, None).await;
    sub.expect_silence("after UNSUBSCRIBE").await;

    sub.disconnect().await;
    publisher.disconnect().await;
    late.disconnect().await;
    wait_connections(&broker, 0).await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_round_robin_and_retention() {
    let broker = TestBroker::default().await;
    let mut publisher = Peer::connect(&broker, "rr-pub").await;
    // Nobody consumes yet: the queue keeps the message.
    publisher.publish("/queue/rs.kept", "kept", None).await;
    let mut a = Peer::connect(&broker, "rr-a").await;
    a.subscribe("/queue/rs.kept", "a", AckMode::Auto).await;
    assert_eq!(a.message("retained message").await.body, "kept");

    let mut b = Peer::connect(&broker, "rr-b").await;
    b.subscribe("/queue/rs.kept", "b", AckMode::Auto).await;
    for i in 0..4 {
        publisher.publish("/queue/rs.kept", &format!("r{i}"), None).await;
    }
    let mut got = Vec::new();
    for peer in [&mut a, &mut b] {
        for _ in 0..2 {
            got.push(peer.message("round robin").await.body);
        }
        peer.expect_silence("more than its share of the queue").await;
    }
    got.sort();
    assert_eq!(got, ["r0", "r1", "r2", "r3"]);
    for peer in [publisher, a, b] {
        peer.disconnect().await;
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions() {
    let broker = TestBroker::default().await;
    let mut consumer = Peer::connect(&broker, "tx-sub").await;
    let mut producer = Peer::connect(&broker, "tx-pub").await;
    consumer.subscribe("/queue/rs.tx", "s", AckMode::ClientIndividual).await;

    producer.transaction(ToServer::Begin { transaction: "t1".to_owned() }, "BEGIN t1").await;
    producer.publish("/queue/rs.tx", "aborted", Some("t1")).await;
    producer.transaction(ToServer::Abort { transaction: "t1".to_owned() }, "ABORT t1").await;
    producer.publish("/queue/rs.tx", "sentinel", None).await;
    let first = consumer.message("after ABORT").await;
    assert_eq!(first.body, "sentinel", "a SEND of an aborted transaction was delivered");

    producer.transaction(ToServer::Begin { transaction: "t2".to_owned() }, "BEGIN t2").await;
    producer.publish("/queue/rs.tx", "committed", Some("t2")).await;
    consumer.expect_silence("transactional SEND before COMMIT").await;
    producer.transaction(ToServer::Commit { transaction: "t2".to_owned() }, "COMMIT t2").await;
    let committed = consumer.message("after COMMIT").await;
    assert_eq!(committed.body, "committed");

    // ACK inside a transaction: void when aborted (a NACK still returns the
    // message), effective when committed.
    consumer.transaction(ToServer::Begin { transaction: "t3".to_owned() }, "BEGIN t3").await;
    consumer.ack(&committed, Some("t3")).await;
    consumer.transaction(ToServer::Abort { transaction: "t3".to_owned() }, "ABORT t3").await;
    consumer.nack(&committed).await;
    let again = consumer.message("redelivery after aborted ACK and NACK").await;
    assert_eq!(again.body, "committed");
    consumer.transaction(ToServer::Begin { transaction: "t4".to_owned() }, "BEGIN t4").await;
    consumer.ack(&again, Some("t4")).await;
    consumer.transaction(ToServer::Commit { transaction: "t4".to_owned() }, "COMMIT t4").await;
    consumer.ack(&first, None).await;
    consumer.expect_silence("everything acknowledged").await;

    consumer.disconnect().await;
    producer.disconnect().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heart_beats_keep_an_idle_connection_alive() {
    let broker = TestBroker::default().await;
    // async-stomp beats by itself every second and fails its stream if the
    // broker is silent for twice the agreed interval.
    let mut conn = Connector::builder()
        .server(broker.addr)
        .virtualhost("/")
        .heartbeat(1000, 1000)
        .connect()
        .await
        .expect("connect with heart-beats");
    assert_eq!(
        conn.heartbeat(),
        (Some(Duration::from_secs(1)), Some(Duration::from_secs(1))),
        "heart-beat:1000,1000 both ways"
    );
    // Idle for 3 s: nothing may arrive but heart-beats (which the client
    // consumes), and the client must not time the broker out.
    match tokio::time::timeout(Duration::from_secs(3), conn.next()).await {
        Err(_) => {}
        Ok(Some(Err(e))) => panic!("async-stomp gave up on the broker while idle: {e:#}"),
        Ok(None) => panic!("the broker closed the idle connection"),
        Ok(Some(Ok(frame))) => {
            panic!("expected only heart-beats while idle, got {:?}", frame.content)
        }
    }
    let mut peer = Peer { name: "hb", conn, early: VecDeque::new(), receipts: 0 };
    peer.subscribe("/topic/rs.hb", "hb", AckMode::Auto).await;
    peer.publish("/topic/rs.hb", "still alive", None).await;
    assert_eq!(peer.message("after 3 s of heart-beats").await.body, "still alive");
    peer.disconnect().await;
    wait_connections(&broker, 0).await;
    broker.stop().await;
}
