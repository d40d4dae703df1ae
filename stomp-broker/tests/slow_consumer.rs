//! Slow consumers: a topic subscriber that stops reading while a fast
//! publisher goes on. Under `Disconnect` (the default) its connection is
//! closed; under `DropNewest` and `DropOldest` it stays connected and loses
//! messages. Either way a fast subscriber of the same topic gets every one.

#[path = "support/extra_destinations.rs"]
mod extra;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use extra::{eventually, soon, subscribe_frame};
use stomp_broker::{Broker, Limits, SlowConsumerPolicy};
use stomp_codec::{Command, Frame, Item, StompCodec, Version, encode_frame};
use support::{Client, TestBroker, WAIT, body, send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const TOPIC: &str = "/topic/firehose";
/// Outbound bytes a connection may have waiting.
const MAX_PENDING: usize = 64 * 1024;
/// Body size: with its headers, a message is counted as about 4.1 KiB.
const BODY: usize = 4000;
/// Messages per round; a round (~33 KiB) fits in `MAX_PENDING`, so the
/// fast subscriber, which reads each round before the next, never lags.
const BATCH: usize = 8;
/// Publishing stops here whatever happens (40 MB).
const MAX_MESSAGES: usize = 10_000;

/// A subscriber speaking raw STOMP over a socket with a small receive
/// buffer, which it stops reading after SUBSCRIBE.
struct Slow {
    stream: TcpStream,
    codec: StompCodec,
    buf: BytesMut,
}

impl Slow {
    async fn connect(addr: SocketAddr) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let mut slow = Self { stream, codec: StompCodec::new(), buf: BytesMut::new() };
        let connect = Frame::new(Command::Connect)
            .with_header("accept-version", "1.2")
            .with_header("host", "/")
            .with_header("login", "slow");
        slow.write(&connect).await;
        assert_eq!(slow.frame().await.map(|f| f.command()), Some(Command::Connected));
        slow.write(&subscribe_frame("s", TOPIC, "auto").with_header("receipt", "sub")).await;
        let receipt = slow.frame().await.expect("RECEIPT");
        assert_eq!(receipt.command(), Command::Receipt, "{receipt:?}");
        slow
    }

    async fn write(&mut self, frame: &Frame) {
        let mut out = BytesMut::new();
        encode_frame(frame, Version::V1_2, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next frame, or `None` at the end of the stream.
    async fn frame(&mut self) -> Option<Frame> {
        loop {
            match self.codec.decode_item(&mut self.buf).expect("a well-formed frame") {
                Some(Item::Frame(frame)) => return Some(frame),
                Some(Item::Heartbeat) => continue,
                None => {}
            }
            let read = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("timed out reading");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

fn message_body(seq: usize) -> String {
    format!("{seq:08}:{}", "x".repeat(BODY - 9))
}

fn seq_of(frame: &Frame) -> usize {
    body(frame)[..8].parse().expect("sequence number")
}

/// Publishes rounds of [`BATCH`] messages until `done` holds (then `extra`
/// rounds more); the fast subscriber reads each round completely. Returns
/// how many messages were published.
async fn firehose(
    broker: &TestBroker,
    p: &mut Client,
    fast: &mut Client,
    extra: usize,
    done: impl Fn(&Broker) -> bool,
) -> usize {
    let mut seq = 0;
    let mut rounds_after = None;
    while rounds_after != Some(extra) {
        assert!(seq < MAX_MESSAGES, "the slow consumer policy never applied");
        for _ in 0..BATCH - 1 {
            p.send(send(TOPIC, &message_body(seq))).await;
            seq += 1;
        }
        p.publish(TOPIC, &message_body(seq)).await;
        seq += 1;
        for expected in seq - BATCH..seq {
            let m = fast.expect_message().await;
            assert_eq!(seq_of(&m), expected, "the fast subscriber lost or reordered messages");
        }
        rounds_after = match rounds_after {
            None if done(&broker.broker) => Some(0),
            None => None,
            Some(n) => Some(n + 1),
        };
    }
    seq
}

async fn start(policy: SlowConsumerPolicy) -> (TestBroker, Slow, Client, Client) {
    let builder = Broker::builder()
        .limits(Limits::default().max_pending_bytes(MAX_PENDING))
        .slow_consumer(policy);
    let broker = TestBroker::start(builder).await;
    let slow = Slow::connect(broker.addr).await;
    let mut fast = broker.client("fast").await;
    fast.subscribe("s", TOPIC, "auto").await;
    let p = broker.client("p").await;
    assert_eq!(broker.broker.connection_count(), 3);
    (broker, slow, fast, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_closes_the_slow_connection() {
    let (broker, mut slow, mut fast, mut p) = start(SlowConsumerPolicy::Disconnect).await;
    firehose(&broker, &mut p, &mut fast, 4, |b| b.stats().slow_consumer_disconnects > 0).await;
    assert_eq!(broker.broker.stats().slow_consumer_disconnects, 1);

    // The broker closes the connection on its own, though the client never
    // reads again (CLOSE_GRACE is 2 s for the flush and 2 s for the close).
    eventually(Duration::from_secs(10), "the slow connection is closed", || {
        broker.broker.connection_count() == 2
    })
    .await;

    // What the slow client finds when it reads at last: messages, then
    // possibly the ERROR (if the broker managed to write it), then the end.
    let mut last_seq = None;
    let mut error = None;
    while let Some(frame) = slow.frame().await {
        assert!(error.is_none(), "a frame after the ERROR: {frame:?}");
        match frame.command() {
            Command::Message => {
                let seq = seq_of(&frame);
                assert!(last_seq.is_none_or(|last| seq > last), "reordered");
                last_seq = Some(seq);
            }
            Command::Error => error = Some(frame),
            _ => panic!("unexpected {frame:?}"),
        }
    }
    if let Some(error) = error {
        assert_eq!(error.header_str("message"), Some("slow consumer"), "{error:?}");
    }

    // The fast subscriber and the publisher were not affected.
    p.publish(TOPIC, &message_body(999_999)).await;
    assert_eq!(seq_of(&fast.expect_message().await), 999_999);
    assert_eq!(broker.broker.connection_count(), 2);
    drop((slow, fast, p));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_sends_slow_consumer_error_to_a_client_that_reads_again() {
    let (broker, mut slow, mut fast, mut p) = start(SlowConsumerPolicy::Disconnect).await;
    firehose(&broker, &mut p, &mut fast, 0, |b| b.stats().slow_consumer_disconnects > 0).await;
    // Reading again at once: the broker flushes what it has, then the
    // ERROR, then closes.
    let mut frames = Vec::new();
    while let Some(frame) = slow.frame().await {
        frames.push(frame);
    }
    let last = frames.last().expect("frames");
    assert_eq!(last.command(), Command::Error, "{last:?}");
    assert_eq!(last.header_str("message"), Some("slow consumer"));
    drop(slow);
    soon("the slow connection is closed", || broker.broker.connection_count() == 2).await;
    drop((fast, p));
    broker.stop().await;
}

/// Under a drop policy: the slow client stays connected and, once it reads
/// again, gets an increasing subset of the messages; returns their
/// sequence numbers and how many were published.
async fn dropping(policy: SlowConsumerPolicy) -> (Vec<usize>, usize) {
    let (broker, mut slow, mut fast, mut p) = start(policy).await;
    let published =
        firehose(&broker, &mut p, &mut fast, 4, |b| b.stats().slow_consumer_drops >= 10).await;
    assert_eq!(broker.broker.stats().slow_consumer_disconnects, 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(broker.broker.connection_count(), 3, "{policy:?}: the slow client stays connected");

    // It reads again, and its connection still works: a receipt comes after
    // the messages kept for it.
    slow.write(&send("/topic/nobody", "").with_header("receipt", "alive")).await;
    let mut seqs = Vec::new();
    loop {
        let frame = slow.frame().await.expect("still connected");
        match frame.command() {
            Command::Message => seqs.push(seq_of(&frame)),
            Command::Receipt => break,
            _ => panic!("{policy:?}: unexpected {frame:?}"),
        }
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{policy:?}: reordered: {seqs:?}");
    assert!(seqs.len() < published, "{policy:?}: nothing was dropped");
    assert!(!seqs.is_empty(), "{policy:?}: everything was dropped");

    // And it receives what is published now.
    p.publish(TOPIC, &message_body(999_999)).await;
    assert_eq!(seq_of(&fast.expect_message().await), 999_999);
    let frame = slow.frame().await.expect("still connected");
    assert_eq!(seq_of(&frame), 999_999);
    drop((slow, fast, p));
    broker.stop().await;
    (seqs, published)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_keeps_the_connection_and_drops_new_messages() {
    let (seqs, published) = dropping(SlowConsumerPolicy::DropNewest).await;
    assert_eq!(seqs[0], 0, "the oldest messages are kept");
    assert!(!seqs.contains(&(published - 1)), "the newest message was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_keeps_the_connection_and_the_newest_messages() {
    let (seqs, published) = dropping(SlowConsumerPolicy::DropOldest).await;
    assert_eq!(seqs.last(), Some(&(published - 1)), "the newest message is kept");
}
