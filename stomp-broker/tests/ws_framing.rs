//! STOMP over WebSocket: framing. Inbound, text and binary messages feed
//! the same incremental codec, so a frame may be split across messages and
//! a message may hold several frames and heart-beat EOLs. Outbound, every
//! STOMP frame is a WebSocket message of its own: text when it is UTF-8,
//! binary otherwise.

mod support;
#[path = "support/ws_client.rs"]
mod ws_client;

use stomp_broker::websocket::tokio_tungstenite::tungstenite::Message;
use stomp_codec::{Command, Frame, Headers};
use support::body;
use ws_client::{Kind, WsBroker, WsClient};

/// A SEND frame with a receipt.
fn send(destination: &str, text: &str, receipt: &str) -> Frame {
    support::send(destination, text).with_header("receipt", receipt.to_owned())
}

/// The next frame must be a RECEIPT for `receipt`.
async fn expect_receipt(client: &mut WsClient, receipt: &str) {
    let frame = client.expect(Command::Receipt).await;
    assert_eq!(frame.header_str("receipt-id"), Some(receipt), "{frame:?}");
}

#[tokio::test]
async fn a_frame_split_across_messages_is_reassembled() {
    let broker = WsBroker::default().await;
    let mut subscriber = broker.tcp.client("sub").await;
    subscriber.subscribe("s", "/topic/split", "auto").await;
    let mut client = WsClient::open(broker.ws_addr).await;

    // CONNECT in two text messages.
    let connect = Frame::new(Command::Connect)
        .with_header("accept-version", "1.2")
        .with_header("host", "/")
        .with_header("login", "splitter");
    let octets = client.encode(&connect);
    let (a, b) = octets.split_at(10);
    client.send_text(a).await;
    client.send_text(b).await;
    let connected = client.recv().await;
    assert_eq!(connected.command(), Command::Connected, "{connected:?}");

    // A SEND in three messages, text and binary mixed, split inside the
    // command, inside a header and inside the body.
    let octets = client.encode(&send("/topic/split", "split body", "r1"));
    let text = std::str::from_utf8(&octets).expect("UTF-8");
    let body_at = text.find("split body").expect("body") + 3;
    let parts = [&octets[..2], &octets[2..20], &octets[20..body_at], &octets[body_at..]];
    client.send_text(parts[0]).await;
    client.send_binary(parts[1]).await;
    client.send_text(parts[2]).await;
    // Nothing is handled before the frame is complete.
    client.expect_silence(std::time::Duration::from_millis(50)).await;
    client.send_binary(parts[3]).await;
    expect_receipt(&mut client, "r1").await;
    let m = subscriber.expect_message().await;
    assert_eq!(body(&m), "split body");

    // A frame whose NUL comes alone in the last message.
    let octets = client.encode(&send("/topic/split", "nul apart", "r2"));
    let (head, nul) = octets.split_at(octets.len() - 1);
    assert_eq!(nul, b"\0");
    client.send_text(head).await;
    client.send_text(nul).await;
    expect_receipt(&mut client, "r2").await;
    assert_eq!(body(&subscriber.expect_message().await), "nul apart");

    ws_client::disconnect(client).await;
    support::disconnect(subscriber).await;
    broker.stop().await;
}

#[tokio::test]
async fn several_frames_in_one_message_are_all_handled() {
    let broker = WsBroker::default().await;
    let mut subscriber = broker.tcp.client("sub").await;
    subscriber.subscribe("s", "/topic/batch", "auto").await;
    let mut client = WsClient::open(broker.ws_addr).await;

    // CONNECT, SUBSCRIBE and three SENDs in one message, heart-beat EOLs
    // between some of them.
    let connect = Frame::new(Command::Connect)
        .with_header("accept-version", "1.2")
        .with_header("host", "/")
        .with_header("login", "batcher");
    let subscribe = Frame::new(Command::Subscribe)
        .with_header("id", "mine")
        .with_header("destination", "/topic/batch-own")
        .with_header("receipt", "sub");
    let mut batch = client.encode(&connect).to_vec();
    batch.extend_from_slice(&client.encode(&subscribe));
    batch.extend_from_slice(b"\n");
    for i in 0..3 {
        batch.extend_from_slice(&client.encode(&send(
            "/topic/batch",
            &format!("b{i}"),
            &format!("r{i}"),
        )));
        batch.extend_from_slice(b"\r\n\n");
    }
    client.send_text(&batch).await;

    // Each reply in a message of its own (`recv` checks that every message
    // holds exactly one frame), in order.
    assert_eq!(client.recv().await.command(), Command::Connected);
    expect_receipt(&mut client, "sub").await;
    for i in 0..3 {
        expect_receipt(&mut client, &format!("r{i}")).await;
    }
    for i in 0..3 {
        assert_eq!(body(&subscriber.expect_message().await), format!("b{i}"));
    }

    // The same in a binary message, with frames for the client's own
    // subscription: each MESSAGE and RECEIPT comes in its own message.
    let mut batch = Vec::new();
    for i in 0..4 {
        batch.extend_from_slice(&client.encode(&send(
            "/topic/batch-own",
            &format!("o{i}"),
            &format!("o{i}"),
        )));
    }
    client.send_binary(&batch).await;
    let mut receipts = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..8 {
        let (frame, kind) = client.recv_kind().await;
        assert_eq!(kind, Kind::Text, "a UTF-8 frame comes as text: {frame:?}");
        match frame.command() {
            Command::Receipt => receipts.push(frame.header_str("receipt-id").unwrap().to_owned()),
            Command::Message => bodies.push(body(&frame)),
            _ => panic!("unexpected {frame:?}"),
        }
    }
    let expected: Vec<String> = (0..4).map(|i| format!("o{i}")).collect();
    assert_eq!(receipts, expected);
    assert_eq!(bodies, expected);

    ws_client::disconnect(client).await;
    support::disconnect(subscriber).await;
    broker.stop().await;
}

#[tokio::test]
async fn text_and_binary_inbound_messages_both_work() {
    let broker = WsBroker::default().await;
    let mut subscriber = broker.tcp.client("sub").await;
    subscriber.subscribe("s", "/topic/kinds", "auto").await;

    // CONNECT in a binary message.
    let mut client = WsClient::open(broker.ws_addr).await;
    let connect =
        Frame::new(Command::Connect).with_header("accept-version", "1.2").with_header("host", "/");
    let octets = client.encode(&connect);
    client.send_binary(&octets).await;
    assert_eq!(client.recv().await.command(), Command::Connected);

    // A SEND in a text message, then one in a binary message.
    let octets = client.encode(&send("/topic/kinds", "as text", "t"));
    client.send_text(&octets).await;
    expect_receipt(&mut client, "t").await;
    let octets = client.encode(&send("/topic/kinds", "as binary", "b"));
    client.send_binary(&octets).await;
    expect_receipt(&mut client, "b").await;
    assert_eq!(body(&subscriber.expect_message().await), "as text");
    assert_eq!(body(&subscriber.expect_message().await), "as binary");

    // A body that is not UTF-8 (with a NUL: content-length is added by the
    // encoder), sent in a binary message, arrives intact.
    let raw = vec![0xff, 0x00, 0xfe, b'\n', 0x80];
    let frame = Frame::new(Command::Send)
        .with_header("destination", "/topic/kinds")
        .with_header("receipt", "raw")
        .with_body(raw.clone());
    let octets = client.encode(&frame);
    client.send_binary(&octets).await;
    expect_receipt(&mut client, "raw").await;
    let m = subscriber.expect_message().await;
    assert_eq!(&m.body()[..], &raw[..]);

    ws_client::disconnect(client).await;
    support::disconnect(subscriber).await;
    broker.stop().await;
}

#[tokio::test]
async fn outbound_frames_come_one_per_message_text_or_binary_by_content() {
    let broker = WsBroker::default().await;
    let handle = broker.broker().clone();
    let mut client = broker.ws_client("reader").await;
    client.subscribe("s", "/topic/out", "auto").await;

    // Published back to back from Rust, so that they are queued together:
    // a byte-stream transport would coalesce them into one write.
    let binary: &[u8] = &[0xc3, 0x28, 0x00, 0xff, 0xfe];
    let bodies: Vec<Vec<u8>> = vec![
        b"first".to_vec(),
        binary.to_vec(),
        "d\u{e9}j\u{e0} vu \u{2713}".as_bytes().to_vec(),
        Vec::new(),
        b"last".to_vec(),
    ];
    for b in &bodies {
        assert_eq!(handle.publish("/topic/out", Headers::new(), b.clone()).expect("publish"), 1);
    }
    for (i, b) in bodies.iter().enumerate() {
        let message = client.next_message().await.expect("a message");
        let (payload, kind) = match message {
            Message::Text(text) => (text.as_bytes().to_vec(), Kind::Text),
            Message::Binary(binary) => (binary.to_vec(), Kind::Binary),
            other => panic!("expected a data message, got {other:?}"),
        };
        // Exactly one whole frame per message.
        let frame = client.decode_one(&payload);
        assert_eq!(frame.command(), Command::Message, "{frame:?}");
        assert_eq!(&frame.body()[..], &b[..], "message {i}");
        let expected = if std::str::from_utf8(b).is_ok() { Kind::Text } else { Kind::Binary };
        assert_eq!(kind, expected, "message {i}: {frame:?}");
    }

    // And from a TCP client: a UTF-8 body as text, a binary one as binary.
    let mut tcp = broker.tcp.client("tcp").await;
    tcp.publish("/topic/out", "text body").await;
    let (m, kind) = client.recv_kind().await;
    assert_eq!((body(&m).as_str(), kind), ("text body", Kind::Text));
    let frame = Frame::new(Command::Send)
        .with_header("destination", "/topic/out")
        .with_body(binary.to_vec());
    tcp.with_receipt(frame, "bin").await;
    let (m, kind) = client.recv_kind().await;
    assert_eq!((&m.body()[..], kind), (binary, Kind::Binary));

    support::disconnect(tcp).await;
    ws_client::disconnect(client).await;
    broker.stop().await;
}

#[tokio::test]
async fn heartbeat_eol_messages_between_frames_are_accepted() {
    let broker = WsBroker::default().await;
    let mut subscriber = broker.tcp.client("sub").await;
    subscriber.subscribe("s", "/topic/eol", "auto").await;
    let mut client = WsClient::open(broker.ws_addr).await;
    // Heart-beats before CONNECT too.
    client.send_text(b"\n").await;
    client.send_text(b"\r\n").await;
    let connected = client.stomp_connect("eol", "1.2", None).await;
    assert_eq!(connected.command(), Command::Connected, "{connected:?}");
    for i in 0..3 {
        client.send_text(b"\n").await;
        client.send_binary(b"\n\n").await;
        client.send_text(b"\r\n").await;
        client.with_receipt(support::send("/topic/eol", &format!("e{i}")), &format!("e{i}")).await;
    }
    for i in 0..3 {
        assert_eq!(body(&subscriber.expect_message().await), format!("e{i}"));
    }
    // EOLs right after a frame's NUL in the same message, then a frame.
    let mut octets = client.encode(&send("/topic/eol", "x", "x")).to_vec();
    octets.extend_from_slice(b"\n\n\n");
    client.send_text(&octets).await;
    client.send_text(b"\n").await;
    expect_receipt(&mut client, "x").await;
    client.publish("/topic/eol", "y").await;
    assert_eq!(body(&subscriber.expect_message().await), "x");
    assert_eq!(body(&subscriber.expect_message().await), "y");

    ws_client::disconnect(client).await;
    support::disconnect(subscriber).await;
    broker.stop().await;
}
