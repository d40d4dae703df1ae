//! Hostile input against one broker while two good clients exchange a
//! continuous, numbered stream of messages: random garbage, truncated
//! frames then a close, a 100 MB `content-length`, header floods, and
//! slow-loris clients. Each attacker gets an `ERROR` or is closed, the
//! broker stays up and accepts new clients, and the good subscriber sees
//! every message of the stream, in order.

#[path = "support/extra.rs"]
mod extra;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use stomp_broker::{Broker, Heartbeat};
use stomp_codec::Command;
use support::{Client, TestBroker, body, send};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The stream the good clients exchange.
const STREAM: &str = "/topic/hostile.stream";
/// How long an unconnected socket may take to send CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an attacker's connection may take to end once it should.
const END_WITHIN: Duration = Duration::from_secs(5);

/// Deterministic pseudo-random octets (xorshift64*).
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x2545_F491_4F6C_DD1D).to_be_bytes()[0]
        })
        .collect()
}

/// How the broker answered one attack.
#[derive(Debug)]
struct Answer {
    /// The `message` of the first frame, if it was an ERROR.
    error: Option<String>,
    /// Any frames before the end, other than one ERROR.
    others: Vec<Command>,
}

/// Writes `attack` (ignoring write failures: the broker may close first)
/// while reading the broker's answer until it closes the connection.
async fn attack(stream: TcpStream, attack: Vec<u8>) -> Answer {
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&attack).await;
        writer
    });
    let (octets, ended) = extra::read_until_closed(&mut reader, END_WITHIN).await;
    assert_ne!(ended, extra::Ended::TimedOut, "the broker kept an attacker's connection open");
    drop(writing.await.expect("writer"));
    answer(&octets)
}

fn answer(octets: &[u8]) -> Answer {
    let mut frames = extra::frames(octets).into_iter();
    let mut answer = Answer { error: None, others: Vec::new() };
    if let Some(first) = frames.next() {
        if first.command() == Command::Error {
            answer.error = first.header_str("message").map(str::to_owned);
        } else {
            answer.others.push(first.command());
        }
    }
    answer.others.extend(frames.map(|f| f.command()));
    answer
}

/// A raw connection that has opened a STOMP 1.2 session.
async fn connected_socket(addr: std::net::SocketAddr) -> TcpStream {
    let c = Client::connect(addr, "attacker").await;
    c.stream
}

/// The attack must be answered by an ERROR mentioning `fragment`.
fn assert_error(what: &str, answer: &Answer, fragment: &str) {
    let error =
        answer.error.as_deref().unwrap_or_else(|| panic!("{what}: no ERROR, got {answer:?}"));
    assert!(error.contains(fragment), "{what}: ERROR {error:?} should mention {fragment:?}");
    assert!(answer.others.is_empty(), "{what}: frames after the ERROR: {answer:?}");
}

/// A slow-loris client: one octet of `frame` every `pace` until the
/// broker closes the connection or the frame is sent; returns how many
/// octets were written and the broker's answer.
fn slow_loris(
    addr: std::net::SocketAddr,
    frame: &'static [u8],
    pace: Duration,
) -> JoinHandle<(usize, Answer)> {
    tokio::spawn(async move {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut reader, mut writer) = stream.into_split();
        let closed = Arc::new(AtomicBool::new(false));
        let writing = tokio::spawn({
            let closed = closed.clone();
            async move {
                let mut written = 0;
                for &octet in frame {
                    if closed.load(Ordering::Acquire) || writer.write_all(&[octet]).await.is_err() {
                        break;
                    }
                    written += 1;
                    tokio::time::sleep(pace).await;
                }
                written
            }
        });
        let (octets, ended) = extra::read_until_closed(&mut reader, END_WITHIN + pace * 64).await;
        closed.store(true, Ordering::Release);
        assert_ne!(ended, extra::Ended::TimedOut, "a slow loris was never closed");
        (writing.await.expect("loris writer"), answer(&octets))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_clients_do_not_disturb_good_ones() {
    let broker = TestBroker::start(
        Broker::builder().heartbeat(Heartbeat::default().connect_timeout(CONNECT_TIMEOUT)),
    )
    .await;
    let addr = broker.addr;
    let handle = broker.broker.clone();

    // The good clients: a numbered stream, checked for loss and order.
    let mut subscriber = broker.client("good-subscriber").await;
    subscriber.subscribe("stream", STREAM, "auto").await;
    let mut publisher = broker.client("good-publisher").await;
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut sent = 0u64;
            while !stop.load(Ordering::Acquire) {
                publisher.send(send(STREAM, &sent.to_string())).await;
                sent += 1;
                if sent.is_multiple_of(50) {
                    // Now and then, make sure the broker has taken them all.
                    publisher
                        .with_receipt(send(STREAM, &sent.to_string()), &format!("p{sent}"))
                        .await;
                    sent += 1;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            publisher.with_receipt(send(STREAM, "end"), "end").await;
            (sent, publisher)
        }
    });
    let receiving = tokio::spawn(async move {
        let mut expected = 0u64;
        loop {
            let m = subscriber.expect_message().await;
            let text = body(&m);
            if text == "end" {
                return (expected, subscriber);
            }
            assert_eq!(
                text,
                expected.to_string(),
                "the good subscriber lost or reordered a message"
            );
            expected += 1;
        }
    });

    // Slow lorises, running while the other attacks go on: one octet of
    // CONNECT every 100 ms never makes it within the connect timeout.
    let connect: &'static [u8] = b"CONNECT\naccept-version:1.2\nhost:/\nlogin:loris\n\n\0";
    let lorises: Vec<_> =
        (0..5).map(|_| slow_loris(addr, connect, Duration::from_millis(100))).collect();
    let started = tokio::time::Instant::now();
    // A connected client dribbling a frame (one octet every 20 ms) is not
    // an error: it is served when its frame is complete, and holds up no
    // one else meanwhile.
    let dribbler = tokio::spawn(async move {
        let mut c = Client::connect(addr, "dribbler").await;
        for &octet in b"SEND\ndestination:/topic/hostile.other\nreceipt:dribbled\n\nslow\0" {
            c.send_raw(&[octet]).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let receipt = c.expect(Command::Receipt).await;
        assert_eq!(receipt.header_str("receipt-id"), Some("dribbled"));
        support::disconnect(c).await;
    });

    // 1. Random garbage, before and after CONNECT.
    let a = attack(TcpStream::connect(addr).await.unwrap(), garbage(64 * 1024, 0x5eed)).await;
    assert_error("garbage before CONNECT", &a, "");
    let a = attack(connected_socket(addr).await, garbage(64 * 1024, 0xbad)).await;
    assert_error("garbage after CONNECT", &a, "");
    let a = attack(TcpStream::connect(addr).await.unwrap(), vec![0u8; 64 * 1024]).await;
    assert_error("NUL octets", &a, "");

    // 2. Truncated frames, then the end of the stream: closed, and the
    //    partial SEND is not delivered (the subscriber would see it).
    let mut s = connected_socket(addr).await;
    s.write_all(format!("SEND\ndestination:{STREAM}\ncontent-length:50\n\npartial").as_bytes())
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let (_, ended) = extra::read_until_closed(&mut s, END_WITHIN).await;
    assert_ne!(ended, extra::Ended::TimedOut, "truncated SEND then EOF: connection left open");
    drop(s);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"CONNECT\naccept-ver").await.unwrap();
    s.shutdown().await.unwrap();
    let (_, ended) = extra::read_until_closed(&mut s, END_WITHIN).await;
    assert_ne!(ended, extra::Ended::TimedOut, "truncated CONNECT then EOF: connection left open");
    drop(s);
    let mut s = connected_socket(addr).await;
    s.write_all(format!("SEND\ndestination:{STREAM}\n\nno NUL yet").as_bytes()).await.unwrap();
    drop(s); // gone without a word

    // 3. A 100 MB body declared: refused from the header, before any of it.
    for (what, head) in [
        ("100 MB SEND", format!("SEND\ndestination:{STREAM}\ncontent-length:100000000\n\n")),
        ("100 MB CONNECT", "CONNECT\naccept-version:1.2\ncontent-length:100000000\n\n".to_owned()),
    ] {
        let socket = if what.contains("SEND") {
            connected_socket(addr).await
        } else {
            TcpStream::connect(addr).await.unwrap()
        };
        let a = attack(socket, head.into_bytes()).await;
        assert_error(what, &a, "maximum size");
    }

    // 4. Header floods: thousands of headers, one huge header line.
    let mut flood = format!("SEND\ndestination:{STREAM}\n").into_bytes();
    for i in 0..5_000 {
        flood.extend_from_slice(format!("x-flood-{i}:v\n").as_bytes());
    }
    flood.extend_from_slice(b"\nflooded\0");
    let a = attack(connected_socket(addr).await, flood).await;
    assert_error("5,000 headers", &a, "headers");
    let mut long = format!("SEND\ndestination:{STREAM}\nx-long:").into_bytes();
    long.extend(std::iter::repeat_n(b'v', 512 * 1024));
    long.extend_from_slice(b"\n\nlong\0");
    let a = attack(connected_socket(addr).await, long).await;
    assert_error("a 512 KiB header line", &a, "header line");

    // 5. The slow lorises were cut off by the connect timeout, long before
    //    they could finish their CONNECT.
    for loris in lorises {
        let (written, a) = loris.await.expect("loris");
        assert!(written < connect.len(), "a slow loris finished its CONNECT ({written} octets)");
        assert_error("slow loris", &a, "CONNECT");
    }
    assert!(started.elapsed() >= CONNECT_TIMEOUT, "lorises closed before the connect timeout");

    dribbler.await.expect("dribbling client");

    // The broker is up and serves new clients.
    extra::assert_round_trip(addr, "after-attacks").await;
    extra::eventually("only the good clients remain", || handle.connection_count() == 2).await;

    // And the good stream lost nothing, reordered nothing.
    stop.store(true, Ordering::Release);
    let (sent, publisher) = publishing.await.expect("publisher");
    let (received, subscriber) = receiving.await.expect("subscriber");
    assert_eq!(received, sent, "the good subscriber received {received} of {sent} messages");
    assert!(sent >= 100, "the good clients exchanged only {sent} messages during the attacks");
    support::disconnect(publisher).await;
    support::disconnect(subscriber).await;
    extra::eventually("every client is gone", || handle.connection_count() == 0).await;
    broker.stop().await;
}
