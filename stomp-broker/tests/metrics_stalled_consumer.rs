//! What the metrics show of a subscriber that stops reading, over TCP and
//! over WebSocket:
//!
//! - `stomp_delivery_latency_seconds` is observed once per message, when
//!   the socket has taken it: what waits for the subscriber is not
//!   observed until it reads, then every message is, once, with the time
//!   it waited;
//! - the backlog gauges, read at scrape time, show what waits in its
//!   queue (a stalled connection takes nothing from it, so nothing sampled
//!   at a take can), next to the limit, and fall to 0 once it reads.
//!   Local subscriptions count too, and closed connections leave.
//!
//! The sockets are made small (the listener's buffers, which accepted
//! sockets inherit, and the client's receive buffer) so that the kernel
//! holds only a few messages and the rest waits in the broker.

#![cfg(feature = "metrics")]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use prometheus::core::Collector;
use prometheus::proto::{Histogram, MetricFamily};
use stomp_broker::Broker;
use stomp_broker::metrics::BrokerCollector;
use stomp_broker::websocket::tokio_tungstenite::{self, WebSocketStream, tungstenite::Message};
use stomp_codec::{Command, Frame, Headers, Item, StompCodec, Version, encode_frame};
use support::{TestBroker, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Messages published to the subscriber that does not read, and their
/// bodies: 2.4 MiB, under the 4 MiB slow-consumer limit and far over
/// what the sockets and the connection's write buffer (256 KiB) hold.
const MESSAGES: usize = 300;
const BODY: usize = 8 * 1024;
/// How long the subscriber does not read.
const STALL: Duration = Duration::from_millis(400);
/// Socket buffer size asked for (the kernel doubles it).
const SOCKET_BUFFER: u32 = 4 * 1024;
const TOPIC: &str = "/topic/stalled";

/// A listener on 127.0.0.1 whose accepted sockets have small buffers.
fn small_listener() -> TcpListener {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_send_buffer_size(SOCKET_BUFFER).expect("SO_SNDBUF");
    socket.set_recv_buffer_size(SOCKET_BUFFER).expect("SO_RCVBUF");
    socket.bind("127.0.0.1:0".parse().expect("address")).expect("bind");
    socket.listen(16).expect("listen")
}

/// A connection to `addr` with a small receive buffer.
async fn small_stream(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(SOCKET_BUFFER).expect("SO_RCVBUF");
    socket.connect(addr).await.expect("connect")
}

fn scrape(broker: &Broker) -> Vec<MetricFamily> {
    BrokerCollector::new(broker).collect()
}

fn family<'a>(families: &'a [MetricFamily], name: &str) -> &'a MetricFamily {
    families.iter().find(|f| f.name() == name).unwrap_or_else(|| panic!("no family {name}"))
}

/// The delivery latency histogram now.
fn latency(broker: &Broker) -> Histogram {
    let families = scrape(broker);
    family(&families, "stomp_delivery_latency_seconds").get_metric()[0].get_histogram().clone()
}

/// Samples up to `seconds`.
fn up_to(histogram: &Histogram, seconds: f64) -> u64 {
    let bucket = histogram.get_bucket().iter().find(|b| (b.upper_bound() - seconds).abs() < 1e-9);
    bucket.expect("a bucket with that bound").cumulative_count()
}

/// The gauges `stomp_outbox_backlog_bytes`, `_largest_backlog_bytes` and
/// `stomp_outbox_limit_bytes` now.
fn backlog(broker: &Broker) -> (u64, u64, u64) {
    let families = scrape(broker);
    let gauge = |name: &str| {
        let value = family(&families, name).get_metric()[0].get_gauge().get_value();
        assert!(value.fract() == 0.0 && value >= 0.0, "{name} = {value}");
        #[expect(clippy::cast_possible_truncation, reason = "checked to be a whole number")]
        let bytes = value as u64;
        bytes
    };
    let names = ["backlog", "largest_backlog", "limit"].map(|n| format!("stomp_outbox_{n}_bytes"));
    (gauge(&names[0]), gauge(&names[1]), gauge(&names[2]))
}

/// Waits until `condition` holds; panics with `what` after [`WAIT`].
async fn eventually<T: std::fmt::Debug>(what: &str, read: impl Fn() -> T, ok: impl Fn(&T) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let value = read();
        if ok(&value) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}: {value:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The subscriber's side, whatever the transport.
trait Reader {
    async fn send(&mut self, frame: Frame);
    async fn next_frame(&mut self) -> Frame;
}

fn encode(frame: &Frame) -> BytesMut {
    let mut out = BytesMut::new();
    encode_frame(frame, Version::V1_2, &mut out).expect("encode");
    out
}

/// A STOMP client over a raw TCP stream.
struct TcpReader {
    stream: TcpStream,
    codec: StompCodec,
    buf: BytesMut,
}

impl Reader for TcpReader {
    async fn send(&mut self, frame: Frame) {
        self.stream.write_all(&encode(&frame)).await.expect("write");
    }

    async fn next_frame(&mut self) -> Frame {
        loop {
            if let Some(Item::Frame(frame)) = self.codec.decode_item(&mut self.buf).expect("frame")
            {
                return frame;
            }
            let read = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf)).await;
            assert!(read.expect("timed out reading").expect("read") > 0, "closed");
        }
    }
}

/// A STOMP client over WebSocket: one frame per message.
struct WsReader(WebSocketStream<TcpStream>);

impl Reader for WsReader {
    async fn send(&mut self, frame: Frame) {
        let text = String::from_utf8(encode(&frame).to_vec()).expect("UTF-8");
        self.0.send(Message::text(text)).await.expect("send");
    }

    async fn next_frame(&mut self) -> Frame {
        loop {
            let message = tokio::time::timeout(WAIT, self.0.next()).await.expect("timed out");
            let mut payload = match message.expect("open").expect("a message") {
                Message::Text(text) => BytesMut::from(text.as_bytes()),
                Message::Binary(binary) => BytesMut::from(&binary[..]),
                _ => continue,
            };
            if let Some(Item::Frame(frame)) = StompCodec::new().decode_item(&mut payload).unwrap() {
                return frame;
            }
        }
    }
}

/// Connects and subscribes `reader` with a receipt.
async fn subscribe(reader: &mut impl Reader) {
    let connect =
        Frame::new(Command::Connect).with_header("accept-version", "1.2").with_header("host", "/");
    reader.send(connect).await;
    assert_eq!(reader.next_frame().await.command(), Command::Connected);
    let subscribe = Frame::new(Command::Subscribe)
        .with_header("id", "s")
        .with_header("destination", TOPIC)
        .with_header("receipt", "sub");
    reader.send(subscribe).await;
    assert_eq!(reader.next_frame().await.command(), Command::Receipt);
}

/// While `reader` does not read: few messages observed, the rest in the
/// backlog. Returns how many were observed.
async fn check_stalled(broker: &Broker) -> u64 {
    tokio::time::sleep(STALL).await;
    let observed = latency(broker).get_sample_count();
    let most = MESSAGES as u64 / 4;
    assert!(observed < most, "{observed} of {MESSAGES} observed while the subscriber did not read");
    let (total, largest, limit) = backlog(broker);
    let published = (MESSAGES * BODY) as u64;
    assert_eq!(total, largest, "one connection has a backlog");
    assert!(largest >= published / 2 && largest < limit, "{largest} of {published} waiting");
    observed
}

/// Connects and subscribes `reader`, publishes while it does not read,
/// then reads everything: every message is observed once, those that
/// waited with their wait, and the backlog is gone.
async fn check(broker: &Broker, reader: &mut impl Reader) {
    subscribe(reader).await;
    assert_eq!(latency(broker).get_sample_count(), 0, "no message yet");
    assert_eq!(backlog(broker), (0, 0, 4 * 1024 * 1024));
    for _ in 0..MESSAGES {
        assert_eq!(broker.publish(TOPIC, Headers::new(), vec![b'x'; BODY]), Ok(1));
    }
    let stalled = check_stalled(broker).await;

    for _ in 0..MESSAGES {
        let frame = reader.next_frame().await;
        assert_eq!((frame.command(), frame.body().len()), (Command::Message, BODY));
    }
    let all = MESSAGES as u64;
    let count = || latency(broker).get_sample_count();
    eventually("every message is observed", count, |n| *n >= all).await;
    eventually("the backlog is gone", || backlog(broker), |b| b.0 == 0).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let histogram = latency(broker);
    assert_eq!(histogram.get_sample_count(), all, "once per message: {histogram:?}");
    let waited = all - up_to(&histogram, 0.25);
    assert!(waited >= all - stalled, "{waited} samples over 250 ms: {histogram:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tcp() {
    let broker = Broker::builder().build();
    let listener = small_listener();
    let addr = listener.local_addr().expect("address");
    let serving = tokio::spawn({
        let broker = broker.clone();
        async move { broker.serve(listener).await }
    });
    let stream = small_stream(addr).await;
    let mut reader = TcpReader { stream, codec: StompCodec::new(), buf: BytesMut::new() };
    check(&broker, &mut reader).await;
    drop(reader);
    broker.shutdown().await;
    serving.await.expect("serve task").expect("serve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_websocket() {
    let broker = Broker::builder().build();
    let listener = small_listener();
    let addr = listener.local_addr().expect("address");
    let serving = tokio::spawn({
        let broker = broker.clone();
        async move { broker.serve_ws(listener, "/stomp").await }
    });
    let stream = small_stream(addr).await;
    let url = format!("ws://{addr}/stomp");
    let (ws, _) = tokio_tungstenite::client_async(url, stream).await.expect("upgrade");
    let mut reader = WsReader(ws);
    check(&broker, &mut reader).await;
    drop(reader);
    broker.shutdown().await;
    serving.await.expect("serve task").expect("serve");
}

#[tokio::test]
async fn local_subscriptions_count_and_closed_connections_leave() {
    let broker = TestBroker::default().await;
    let handle = broker.broker.clone();
    let mut gone = broker.client("gone").await;
    gone.subscribe("s", "/topic/gone", "auto").await;
    let mut local = handle.subscribe("/topic/gone").expect("subscribe");
    let mut other = handle.subscribe("/topic/gone").expect("subscribe");
    for _ in 0..4 {
        assert_eq!(handle.publish("/topic/gone", Headers::new(), vec![b'z'; BODY]), Ok(3));
    }
    let (total, largest, _) = backlog(&handle);
    assert!(total >= 8 * BODY as u64 && largest >= 4 * BODY as u64, "{total} {largest}");
    drop(gone);
    assert_eq!(local.recv().await.expect("a message").body().len(), BODY);
    drop(local);
    let only_other = |b: &(u64, u64, u64)| b.0 == b.1 && b.1 >= 4 * BODY as u64;
    eventually("only `other` is left", || backlog(&handle), only_other).await;
    assert_eq!(other.recv().await.expect("a message").body().len(), BODY);
    drop(other);
    eventually("nothing is left", || backlog(&handle), |b| b.0 == 0).await;
    broker.stop().await;
}
