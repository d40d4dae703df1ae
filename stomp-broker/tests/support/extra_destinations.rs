//! More test support, for the destination, acknowledgement, transaction and
//! hook tests: frame builders, receipt exchanges that also collect the
//! messages a frame causes, and polling for broker state.
#![allow(dead_code, unreachable_pub, clippy::missing_panics_doc)]

use std::time::Duration;

use stomp_codec::{Command, Frame};

use crate::support::{Client, WAIT, body};

/// How long a test watches for something that must not happen.
pub const QUIET: Duration = Duration::from_millis(200);

/// A SUBSCRIBE frame.
pub fn subscribe_frame(id: &str, destination: &str, ack: &str) -> Frame {
    Frame::new(Command::Subscribe)
        .with_header("id", id.to_owned())
        .with_header("destination", destination.to_owned())
        .with_header("ack", ack.to_owned())
}

/// An UNSUBSCRIBE frame.
pub fn unsubscribe_frame(id: &str) -> Frame {
    Frame::new(Command::Unsubscribe).with_header("id", id.to_owned())
}

/// A STOMP 1.2 ACK of the delivery with `ack` header `id`.
pub fn ack(id: &str) -> Frame {
    Frame::new(Command::Ack).with_header("id", id.to_owned())
}

/// A STOMP 1.2 NACK of the delivery with `ack` header `id`.
pub fn nack(id: &str) -> Frame {
    Frame::new(Command::Nack).with_header("id", id.to_owned())
}

/// BEGIN, COMMIT, ABORT of transaction `tx`.
pub fn begin(tx: &str) -> Frame {
    Frame::new(Command::Begin).with_header("transaction", tx.to_owned())
}

/// COMMIT of `tx`.
pub fn commit(tx: &str) -> Frame {
    Frame::new(Command::Commit).with_header("transaction", tx.to_owned())
}

/// ABORT of `tx`.
pub fn abort(tx: &str) -> Frame {
    Frame::new(Command::Abort).with_header("transaction", tx.to_owned())
}

/// `frame` inside transaction `tx`.
pub fn in_tx(frame: Frame, tx: &str) -> Frame {
    frame.with_header("transaction", tx.to_owned())
}

/// The `ack` header of a MESSAGE (checked to be a decimal tag).
pub fn ack_tag(message: &Frame) -> String {
    let tag = message.header_str("ack").unwrap_or_else(|| panic!("no ack header: {message:?}"));
    assert!(
        !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_digit()),
        "ack header is not a decimal tag: {tag:?}"
    );
    tag.to_owned()
}

/// The next `n` frames, each of which must be a MESSAGE.
pub async fn messages(client: &mut Client, n: usize) -> Vec<Frame> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(client.expect_message().await);
    }
    out
}

/// The bodies of the next `n` frames, each of which must be a MESSAGE.
pub async fn bodies(client: &mut Client, n: usize) -> Vec<String> {
    messages(client, n).await.iter().map(body).collect()
}

/// The bodies of `frames`.
pub fn bodies_of(frames: &[Frame]) -> Vec<String> {
    frames.iter().map(body).collect()
}

/// `["{prefix}{i}"]` for `i` in `range`.
pub fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

/// Sends `frame` with a `receipt` header and reads until its RECEIPT;
/// returns the MESSAGE frames that arrived before it (any other frame
/// fails the test).
pub async fn exchange(client: &mut Client, frame: Frame, receipt: &str) -> Vec<Frame> {
    client.send(frame.with_header("receipt", receipt.to_owned())).await;
    let mut messages = Vec::new();
    loop {
        let frame = client.recv().await;
        match frame.command() {
            Command::Message => messages.push(frame),
            Command::Receipt => {
                assert_eq!(frame.header_str("receipt-id"), Some(receipt), "{frame:?}");
                return messages;
            }
            _ => panic!("expected MESSAGE or RECEIPT '{receipt}', got {frame:?}"),
        }
    }
}

/// Sends `frame` with a `receipt` header and reads until both its RECEIPT
/// and `n` MESSAGE frames arrived, in whatever order; returns the messages.
pub async fn exchange_expecting(
    client: &mut Client,
    frame: Frame,
    receipt: &str,
    n: usize,
) -> Vec<Frame> {
    let mut messages = exchange(client, frame, receipt).await;
    while messages.len() < n {
        messages.push(client.expect_message().await);
    }
    assert_eq!(messages.len(), n, "more messages than expected: {messages:?}");
    messages
}

/// A receipt round trip: once it returns, the broker handled every frame
/// this client sent before.
pub async fn sync(client: &mut Client) {
    let frame =
        Frame::new(Command::Send).with_header("destination", "/topic/test.sync.nobody-listens");
    let early = exchange(client, frame, "sync").await;
    assert!(early.is_empty(), "unexpected messages: {early:?}");
}

/// Sends messages `bodies` to `destination`, each with a receipt.
pub async fn publish_all(client: &mut Client, destination: &str, bodies: &[String]) {
    for body in bodies {
        client.publish(destination, body).await;
    }
}

/// Waits until `condition` holds, polling; panics after `within`.
pub async fn eventually(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits, as [`eventually`], for at most [`WAIT`].
pub async fn soon(what: &str, condition: impl FnMut() -> bool) {
    eventually(WAIT, what, condition).await;
}

/// Subscribes (with a receipt) to a destination that may already hold
/// messages, and reads until the RECEIPT and `n` MESSAGE frames arrived
/// (a queue hands out what it holds as soon as the subscription exists,
/// which may be before the RECEIPT); returns the messages.
pub async fn subscribe_expecting(
    client: &mut Client,
    id: &str,
    destination: &str,
    ack: &str,
    n: usize,
) -> Vec<Frame> {
    let frame = subscribe_frame(id, destination, ack);
    exchange_expecting(client, frame, &format!("sub-{id}"), n).await
}
