//! More test helpers, shared by the wire tests: checks that a connection
//! ends with one `ERROR`, a publish/subscribe round trip on a fresh client,
//! raw reads that tolerate resets, and polling for a condition.
#![allow(dead_code, unreachable_pub, clippy::missing_panics_doc)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use stomp_codec::{Command, Frame, Item, StompCodec};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::support::{Client, WAIT, body, disconnect, send};

/// The next frame is an `ERROR`, and then the connection closes with no
/// other frame; returns the `ERROR`.
pub async fn expect_error_then_close(client: &mut Client) -> Frame {
    let frames = client.expect_closed().await;
    assert!(!frames.is_empty(), "the connection closed without an ERROR frame");
    let error = frames[0].clone();
    assert_eq!(error.command(), Command::Error, "first frame: {error:?}");
    assert_eq!(frames.len(), 1, "frames after the ERROR: {:?}", &frames[1..]);
    error
}

/// The `message` header of an `ERROR` frame.
pub fn message(error: &Frame) -> &str {
    error.header_str("message").expect("ERROR has a message header")
}

/// Checks that `error` is a readable `ERROR` frame: a one-line `message`
/// header and a UTF-8 text body that is not empty.
pub fn assert_readable_error(error: &Frame) {
    assert_eq!(error.command(), Command::Error, "{error:?}");
    let text = message(error);
    assert!(!text.trim().is_empty(), "empty message header: {error:?}");
    assert!(!text.contains('\n'), "message header spans lines: {text:?}");
    let body = std::str::from_utf8(error.body()).expect("ERROR body is UTF-8 text");
    assert!(!body.trim().is_empty(), "ERROR frame without an explanation in its body: {error:?}");
}

/// Fresh clients on `addr` round-trip a message (one subscribes, the
/// other publishes), then disconnect with receipts: the broker still serves.
pub async fn assert_round_trip(addr: SocketAddr, tag: &str) {
    let mut subscriber = Client::connect(addr, &format!("checker-sub-{tag}")).await;
    let mut publisher = Client::connect(addr, &format!("checker-pub-{tag}")).await;
    let destination = format!("/topic/round-trip.{tag}");
    subscriber.subscribe("rt", &destination, "auto").await;
    publisher.publish(&destination, &format!("ping {tag}")).await;
    let m = subscriber.expect_message().await;
    assert_eq!(body(&m), format!("ping {tag}"));
    assert_eq!(m.header_str("subscription"), Some("rt"));
    disconnect(subscriber).await;
    disconnect(publisher).await;
}

/// How a raw read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The peer closed the connection (EOF).
    Eof,
    /// The connection was reset (or another read error).
    Reset,
    /// Nothing ended it within the time allowed.
    TimedOut,
}

/// Reads everything until the connection ends or `within` passes.
pub async fn read_until_closed(
    stream: &mut (impl AsyncRead + Unpin),
    within: Duration,
) -> (Vec<u8>, Ended) {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return (out, Ended::TimedOut),
            Ok(Ok(0)) => return (out, Ended::Eof),
            Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) => return (out, Ended::Reset),
        }
    }
}

/// The frames in `bytes` as a STOMP 1.2 client decodes them; panics on a
/// malformed frame from the broker.
pub fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut codec = StompCodec::new();
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(item) = codec.decode_item(&mut buf).expect("broker sent a malformed frame") {
        if let Item::Frame(frame) = item {
            out.push(frame);
        }
    }
    out
}

/// Waits until `condition` holds, checking every few milliseconds; panics
/// after [`WAIT`]. For state that no frame reports (connection counts).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A SEND frame with a receipt header.
pub fn send_with_receipt(destination: &str, text: &str, receipt: &str) -> Frame {
    send(destination, text).with_header("receipt", receipt.to_owned())
}

/// Runs a test on tokio's paused clock (as `#[tokio::test(start_paused =
/// true)]` does: a current-thread runtime whose clock jumps ahead whenever
/// every task is idle), with a watchdog on the real clock.
///
/// The watchdog is why this is not the attribute: the paused clock only
/// advances while the runtime is idle, so a broker task that busy-loops
/// keeps virtual time from moving and a plain paused test would hang
/// forever instead of failing. Here the test fails after `limit` of real
/// time with a message saying so.
pub fn paused_test<F>(limit: Duration, test: impl FnOnce() -> F + Send + 'static)
where
    F: Future<Output = ()> + 'static,
{
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let runner = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        runtime.block_on(test());
        let _ = done.send(());
    });
    match finished.recv_timeout(limit) {
        Ok(()) => runner.join().expect("test thread"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match runner.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the test thread ended without reporting"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!(
            "no progress within {limit:?} of real time: virtual time stopped advancing, so some \
             task never goes idle (a busy loop in the broker?)"
        ),
    }
}
