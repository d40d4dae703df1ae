//! Receipts, on the wire: every client frame but CONNECT that carries a
//! `receipt` header (SUBSCRIBE, UNSUBSCRIBE, SEND, ACK, NACK, BEGIN, COMMIT,
//! ABORT, DISCONNECT) is answered with a RECEIPT whose `receipt-id` is the
//! header's value exactly, escaped as the session's version requires; after
//! DISCONNECT's receipt the broker closes the connection.

#[path = "support/extra.rs"]
mod extra;
mod support;

use std::time::Duration;

use stomp_codec::{Command, Frame, Version};
use support::{Client, TestBroker, body};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A short wait in which nothing should arrive.
const QUIET: Duration = Duration::from_millis(150);

/// Sends raw octets and expects a RECEIPT with `receipt-id: id`.
async fn expect_receipt_for(c: &mut Client, raw: &[u8], id: &str) {
    c.send_raw(raw).await;
    let receipt = c.expect(Command::Receipt).await;
    assert_eq!(receipt.header_str("receipt-id"), Some(id), "for {}", String::from_utf8_lossy(raw));
    assert!(receipt.body().is_empty(), "RECEIPT has no body: {receipt:?}");
}

#[tokio::test]
async fn subscribe_and_unsubscribe_are_receipted_and_in_effect_at_once() {
    let broker = TestBroker::default().await;
    let mut sub = broker.client("sub").await;
    let mut publisher = broker.client("pub").await;
    expect_receipt_for(
        &mut sub,
        b"SUBSCRIBE\nid:s1\ndestination:/topic/r\nack:auto\nreceipt:sub-1\n\n\0",
        "sub-1",
    )
    .await;
    // The receipt means the subscription is live: the next publish reaches it.
    publisher.publish("/topic/r", "one").await;
    assert_eq!(body(&sub.expect_message().await), "one");

    expect_receipt_for(&mut sub, b"UNSUBSCRIBE\nid:s1\nreceipt:unsub-1\n\n\0", "unsub-1").await;
    publisher.publish("/topic/r", "two").await;
    sub.expect_silence(QUIET).await;
    drop((sub, publisher));
    broker.stop().await;
}

#[tokio::test]
async fn send_is_receipted_after_routing() {
    let broker = TestBroker::default().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("s", "/queue/receipted", "auto").await;
    let mut publisher = broker.client("pub").await;
    expect_receipt_for(
        &mut publisher,
        b"SEND\ndestination:/queue/receipted\nreceipt:send-1\n\nhello\0",
        "send-1",
    )
    .await;
    assert_eq!(body(&sub.expect_message().await), "hello");
    // With a content-length and a binary body.
    expect_receipt_for(
        &mut publisher,
        b"SEND\ndestination:/queue/receipted\ncontent-length:3\nreceipt:send-2\n\na\0b\0",
        "send-2",
    )
    .await;
    assert_eq!(&sub.expect_message().await.body()[..], b"a\0b");
    drop((sub, publisher));
    broker.stop().await;
}

#[tokio::test]
async fn ack_and_nack_are_receipted() {
    let broker = TestBroker::default().await;
    let mut c = broker.client("acker").await;
    expect_receipt_for(
        &mut c,
        b"SUBSCRIBE\nid:q\ndestination:/queue/acks\nack:client-individual\nreceipt:s\n\n\0",
        "s",
    )
    .await;
    let mut publisher = broker.client("pub").await;
    publisher.publish("/queue/acks", "first").await;
    let m = c.expect_message().await;
    assert_eq!(body(&m), "first");
    let ack = m.header_str("ack").expect("client-individual MESSAGE has an ack header").to_owned();
    expect_receipt_for(&mut c, format!("ACK\nid:{ack}\nreceipt:ack-1\n\n\0").as_bytes(), "ack-1")
        .await;

    publisher.publish("/queue/acks", "second").await;
    let m = c.expect_message().await;
    let ack = m.header_str("ack").unwrap().to_owned();
    c.send_raw(format!("NACK\nid:{ack}\nreceipt:nack-1\n\n\0").as_bytes()).await;
    // The RECEIPT, and the NACKed message back (to the only consumer): the
    // spec does not order a receipt against the deliveries its frame causes.
    let mut frames = [c.recv().await, c.recv().await];
    frames.sort_by_key(|f| f.command() != Command::Receipt);
    assert_eq!(frames[0].command(), Command::Receipt, "{frames:?}");
    assert_eq!(frames[0].header_str("receipt-id"), Some("nack-1"));
    assert_eq!(frames[1].command(), Command::Message, "{frames:?}");
    assert_eq!(body(&frames[1]), "second");
    drop((c, publisher));
    broker.stop().await;
}

#[tokio::test]
async fn begin_commit_and_abort_are_receipted() {
    let broker = TestBroker::default().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("s", "/topic/tx", "auto").await;
    let mut c = broker.client("tx").await;
    expect_receipt_for(&mut c, b"BEGIN\ntransaction:t1\nreceipt:begin-1\n\n\0", "begin-1").await;
    expect_receipt_for(
        &mut c,
        b"SEND\ndestination:/topic/tx\ntransaction:t1\nreceipt:in-tx\n\nheld\0",
        "in-tx",
    )
    .await;
    // Receipted, but held until COMMIT.
    sub.expect_silence(QUIET).await;
    expect_receipt_for(&mut c, b"COMMIT\ntransaction:t1\nreceipt:commit-1\n\n\0", "commit-1").await;
    assert_eq!(body(&sub.expect_message().await), "held");

    expect_receipt_for(&mut c, b"BEGIN\ntransaction:t2\nreceipt:begin-2\n\n\0", "begin-2").await;
    expect_receipt_for(
        &mut c,
        b"SEND\ndestination:/topic/tx\ntransaction:t2\nreceipt:in-tx-2\n\ndropped\0",
        "in-tx-2",
    )
    .await;
    expect_receipt_for(&mut c, b"ABORT\ntransaction:t2\nreceipt:abort-2\n\n\0", "abort-2").await;
    sub.expect_silence(QUIET).await;
    drop((sub, c));
    broker.stop().await;
}

#[tokio::test]
async fn disconnect_is_receipted_then_the_connection_closes() {
    let broker = TestBroker::default().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("s", "/topic/bye", "auto").await;
    let mut c = broker.client("leaving").await;
    // Frames before DISCONNECT, in the same write, are all handled first.
    c.send_raw(
        b"SEND\ndestination:/topic/bye\n\nlast words\0\
          DISCONNECT\nreceipt:bye-1\n\n\0",
    )
    .await;
    let frames = c.expect_closed().await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].command(), Command::Receipt);
    assert_eq!(frames[0].header_str("receipt-id"), Some("bye-1"));
    drop(c);
    assert_eq!(body(&sub.expect_message().await), "last words");
    extra::eventually("the disconnected client is gone", || broker.broker.connection_count() == 1)
        .await;
    drop(sub);
    broker.stop().await;
}

#[tokio::test]
async fn receipts_come_back_in_order_and_only_when_asked_for() {
    let broker = TestBroker::default().await;
    let mut c = broker.client("pipeline").await;
    let mut raw = Vec::new();
    for i in 0..20 {
        raw.extend_from_slice(
            format!("SEND\ndestination:/topic/p\nreceipt:r{i}\n\nm{i}\0").as_bytes(),
        );
        // Frames without a receipt get none.
        raw.extend_from_slice(b"SEND\ndestination:/topic/p\n\nquiet\0");
    }
    c.send_raw(&raw).await;
    for i in 0..20 {
        let receipt = c.expect(Command::Receipt).await;
        assert_eq!(receipt.header_str("receipt-id"), Some(format!("r{i}").as_str()));
    }
    c.expect_silence(QUIET).await;
    // CONNECT is answered by CONNECTED, never by a RECEIPT.
    let mut fresh = Client::raw(broker.addr).await;
    fresh.send_raw(b"CONNECT\naccept-version:1.2\nhost:/\nreceipt:connect-r\n\n\0").await;
    fresh.expect(Command::Connected).await;
    fresh.expect_silence(QUIET).await;
    drop((c, fresh));
    broker.stop().await;
}

/// Opens a session of `accept_version` on a bare socket.
async fn raw_session(broker: &TestBroker, accept_version: &str) -> TcpStream {
    let mut s = TcpStream::connect(broker.addr).await.expect("connect");
    s.write_all(format!("CONNECT\naccept-version:{accept_version}\nhost:/\n\n\0").as_bytes())
        .await
        .unwrap();
    let connected = read_frame(&mut s).await;
    assert!(connected.starts_with(b"CONNECTED\n"), "{}", String::from_utf8_lossy(&connected));
    s
}

/// The octets of the next frame (through its NUL), skipping heart-beats.
async fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut frame = Vec::new();
    let mut octet = [0u8; 1];
    loop {
        tokio::time::timeout(support::WAIT, s.read_exact(&mut octet))
            .await
            .expect("timed out")
            .expect("read");
        if frame.is_empty() && (octet[0] == b'\n' || octet[0] == b'\r') {
            continue;
        }
        frame.push(octet[0]);
        if octet[0] == 0 {
            return frame;
        }
    }
}

/// The `receipt-id` line of a RECEIPT frame's octets.
fn receipt_id_line(frame: &[u8]) -> String {
    let text = String::from_utf8_lossy(frame);
    assert!(text.starts_with("RECEIPT\n"), "{text:?}");
    text.lines().find(|l| l.starts_with("receipt-id:")).expect("receipt-id line").to_owned()
}

#[tokio::test]
async fn receipt_ids_are_echoed_exactly_with_1_2_escapes() {
    let broker = TestBroker::default().await;
    let mut s = raw_session(&broker, "1.2").await;
    // (receipt as sent on the wire, its value, receipt-id line expected back)
    let cases = [
        ("plain-1", "plain-1", "receipt-id:plain-1"),
        ("a\\cb", "a:b", "receipt-id:a\\cb"),
        ("urn\\cx\\c\\cy", "urn:x::y", "receipt-id:urn\\cx\\c\\cy"),
        ("back\\\\slash", "back\\slash", "receipt-id:back\\\\slash"),
        ("two\\nlines", "two\nlines", "receipt-id:two\\nlines"),
        ("cr\\rhere", "cr\rhere", "receipt-id:cr\\rhere"),
        (" padded ", " padded ", "receipt-id: padded "),
        ("ünï©ødé", "ünï©ødé", "receipt-id:ünï©ødé"),
        ("", "", "receipt-id:"),
    ];
    for (sent, _, expected_line) in cases {
        s.write_all(format!("SEND\ndestination:/topic/x\nreceipt:{sent}\n\n\0").as_bytes())
            .await
            .unwrap();
        let frame = read_frame(&mut s).await;
        assert_eq!(receipt_id_line(&frame), expected_line, "receipt:{sent}");
    }
    drop(s);
    // And decoded by a 1.2 client, the value is the original.
    let mut c = broker.client("decoder").await;
    for (sent, value, _) in cases {
        c.send_raw(format!("BEGIN\ntransaction:t\nreceipt:{sent}\n\n\0").as_bytes()).await;
        let receipt = c.expect(Command::Receipt).await;
        assert_eq!(receipt.header("receipt-id"), Some(value.as_bytes()), "receipt:{sent}");
        c.send_raw(b"ABORT\ntransaction:t\n\n\0").await;
    }
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn receipt_ids_follow_the_1_1_and_1_0_rules() {
    let broker = TestBroker::default().await;
    // STOMP 1.1: \c \n \\ escapes (no \r).
    let mut s = raw_session(&broker, "1.1").await;
    for (sent, expected_line) in [
        ("a\\cb", "receipt-id:a\\cb"),
        ("x\\\\y", "receipt-id:x\\\\y"),
        ("l\\nm", "receipt-id:l\\nm"),
    ] {
        s.write_all(
            format!("SUBSCRIBE\nid:{sent}\ndestination:/topic/x\nreceipt:{sent}\n\n\0").as_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(receipt_id_line(&read_frame(&mut s).await), expected_line, "receipt:{sent}");
    }
    drop(s);
    // STOMP 1.0: no escapes; a colon in a value is an ordinary octet.
    let mut s = raw_session(&broker, "1.0").await;
    for (sent, expected_line) in
        [("a:b", "receipt-id:a:b"), ("back\\slash", "receipt-id:back\\slash")]
    {
        s.write_all(format!("SEND\ndestination:/topic/x\nreceipt:{sent}\n\n\0").as_bytes())
            .await
            .unwrap();
        assert_eq!(receipt_id_line(&read_frame(&mut s).await), expected_line, "receipt:{sent}");
    }
    drop(s);
    let mut c = Client::raw(broker.addr).await;
    c.send_raw(b"CONNECT\nlogin:old\n\n\0").await;
    assert_eq!(c.expect(Command::Connected).await.header_str("version"), Some("1.0"));
    c.set_version(Version::V1_0);
    c.send(
        Frame::new(Command::Send)
            .with_header("destination", "/topic/x")
            .with_header("receipt", "k:v:w"),
    )
    .await;
    assert_eq!(c.expect(Command::Receipt).await.header_str("receipt-id"), Some("k:v:w"));
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn disconnect_without_receipt_just_closes() {
    let broker = TestBroker::default().await;
    let mut c = broker.client("quiet-leaver").await;
    c.send_raw(b"DISCONNECT\n\n\0").await;
    let frames = c.expect_closed().await;
    assert!(frames.is_empty(), "{frames:?}");
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn a_repeated_receipt_header_is_answered_with_the_first() {
    // STOMP 1.2: of repeated header entries, only the first is used.
    let broker = TestBroker::default().await;
    let mut c = broker.client("repeater").await;
    expect_receipt_for(
        &mut c,
        b"SEND\ndestination:/topic/x\nreceipt:first\nreceipt:second\n\n\0",
        "first",
    )
    .await;
    c.expect_silence(QUIET).await;
    drop(c);
    broker.stop().await;
}
