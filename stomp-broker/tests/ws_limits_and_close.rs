//! STOMP over WebSocket: limits and the end of a connection. A WebSocket
//! message larger than the STOMP frame limit plus 64 KiB is refused and
//! the connection ends, without disturbing others; a STOMP protocol error
//! ends with `ERROR` and a close frame (1000); DISCONNECT with RECEIPT and
//! a close frame (1000); a broker shutdown with `ERROR` ("server shutting
//! down") and a close frame (1001), `Broker::shutdown` waiting for every
//! WebSocket session; the connection limit counts TCP and WebSocket
//! connections together.

mod support;
#[path = "support/ws_client.rs"]
mod ws_client;

use std::time::Duration;

use futures::SinkExt;
use stomp_broker::websocket::tokio_tungstenite::tungstenite::Message;
use stomp_broker::websocket::tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use stomp_broker::{Broker, Limits};
use stomp_codec::{Command, Frame};
use support::{Client, WAIT, body};
use ws_client::{WsBroker, WsClient};

/// The STOMP frame limit in these tests: WebSocket messages may be up to
/// this plus 64 KiB (128 KiB).
const FRAME_LIMIT: usize = 64 * 1024;
const MESSAGE_LIMIT: usize = FRAME_LIMIT + 64 * 1024;

async fn small_frames_broker() -> WsBroker {
    let frame = stomp_codec::Limits::default().max_frame_size(FRAME_LIMIT);
    WsBroker::start(Broker::builder().limits(Limits::default().frame(frame))).await
}

/// The `message` header of an ERROR frame.
fn message(error: &Frame) -> &str {
    assert_eq!(error.command(), Command::Error, "{error:?}");
    error.header_str("message").expect("ERROR has a message header")
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_refused_and_others_are_unaffected() {
    let broker = small_frames_broker().await;
    let handle = broker.broker().clone();
    assert_eq!(handle.websocket_config().max_message_size, Some(MESSAGE_LIMIT));

    let mut watcher = broker.tcp.client("watcher").await;
    watcher.subscribe("w", "/topic/big", "auto").await;
    let mut bystander = broker.ws_client("bystander").await;
    bystander.subscribe("b", "/topic/big", "auto").await;

    // Under the message limit: two frames of 50 KiB in one 100 KiB message
    // (the slack above the frame limit is what allows it).
    let mut sender = broker.ws_client("sender").await;
    let half = "h".repeat(50 * 1024);
    let mut batch = Vec::new();
    for receipt in ["h1", "h2"] {
        let frame = support::send("/topic/big", &half).with_header("receipt", receipt);
        batch.extend_from_slice(&sender.encode(&frame));
    }
    assert!(batch.len() > FRAME_LIMIT && batch.len() < MESSAGE_LIMIT, "{}", batch.len());
    sender.send_binary(&batch).await;
    for receipt in ["h1", "h2"] {
        let r = sender.expect(Command::Receipt).await;
        assert_eq!(r.header_str("receipt-id"), Some(receipt));
        assert_eq!(watcher.expect_message().await.body().len(), half.len());
        assert_eq!(bystander.expect_message().await.body().len(), half.len());
    }

    // Over it: a 200 KiB message of small SENDs, each one a valid frame
    // well under the frame limit: the message is refused as a whole (so it
    // is the WebSocket limit at work, not the codec's), none of its SENDs
    // is handled, and the connection ends.
    let mut offender = broker.ws_client("offender").await;
    let mut octets = Vec::new();
    let small = "s".repeat(1024);
    for i in 0..200 {
        let frame = support::send("/topic/big", &small).with_header("receipt", format!("big{i}"));
        octets.extend_from_slice(&offender.encode(&frame));
    }
    assert!(octets.len() > MESSAGE_LIMIT);
    // The broker may close while the message is still being written.
    let _ = tokio::time::timeout(WAIT, offender.ws.send(Message::binary(octets))).await;
    let ending = offender.expect_end().await;
    assert_eq!(ending.frames.len(), 1, "exactly one ERROR before the end: {ending:?}");
    assert_eq!(ending.frames[0].command(), Command::Error, "{ending:?}");
    assert_eq!(ending.frames[0].header_str("message"), Some("WebSocket message too large"));
    assert_eq!(ending.close_code(), CloseCode::Size, "1009, message too big: {ending:?}");
    ws_client::eventually("the offender's connection is closed", || handle.connection_count() == 3)
        .await;

    // The others never saw the big message, and still work.
    watcher.expect_silence(Duration::from_millis(100)).await;
    bystander.expect_silence(Duration::from_millis(1)).await;
    sender.publish("/topic/big", "after").await;
    assert_eq!(body(&watcher.expect_message().await), "after");
    assert_eq!(body(&bystander.expect_message().await), "after");
    let fresh = broker.ws_client("fresh").await;

    ws_client::disconnect(fresh).await;
    ws_client::disconnect(sender).await;
    ws_client::disconnect(bystander).await;
    support::disconnect(watcher).await;
    broker.stop().await;
}

#[tokio::test]
async fn a_protocol_error_gives_error_then_a_close_frame() {
    let broker = small_frames_broker().await;

    // An unknown command after CONNECT.
    let mut client = broker.ws_client("bogus").await;
    client.send_text(b"BOGUS\n\n\0").await;
    let error = client.expect_error_then_close(CloseCode::Normal).await;
    assert!(!message(&error).is_empty(), "{error:?}");

    // A frame before CONNECT.
    let mut client = WsClient::open(broker.ws_addr).await;
    client.send(&support::send("/topic/x", "too early")).await;
    let error = client.expect_error_then_close(CloseCode::Normal).await;
    assert!(message(&error).contains("expected CONNECT"), "{error:?}");

    // A STOMP frame over the frame limit, in a message under the message
    // limit: the codec refuses it.
    let mut client = broker.ws_client("large").await;
    let body = "L".repeat(FRAME_LIMIT + 1024);
    let octets = client.encode(&support::send("/topic/x", &body));
    assert!(octets.len() < MESSAGE_LIMIT);
    client.send_binary(&octets).await;
    let error = client.expect_error_then_close(CloseCode::Normal).await;
    assert!(!message(&error).is_empty(), "{error:?}");

    // A SEND without a destination.
    let mut client = broker.ws_client("nodest").await;
    client.send(&Frame::new(Command::Send).with_body("x")).await;
    client.expect_error_then_close(CloseCode::Normal).await;

    let handle = broker.broker().clone();
    ws_client::eventually("every session is gone", || handle.connection_count() == 0).await;
    assert_eq!(handle.stats().errors_sent, 4);
    broker.stop().await;
}

#[tokio::test]
async fn disconnect_gives_the_receipt_then_a_normal_close() {
    let broker = WsBroker::default().await;
    let handle = broker.broker().clone();

    // With a receipt: RECEIPT, then close 1000 (checked by the helper).
    let client = broker.ws_client("bye").await;
    ws_client::disconnect(client).await;

    // Queued frames come before the RECEIPT.
    let mut client = broker.ws_client("busy").await;
    client.subscribe("s", "/topic/bye", "auto").await;
    let mut publisher = broker.tcp.client("pub").await;
    for i in 0..3 {
        publisher.publish("/topic/bye", &format!("m{i}")).await;
    }
    client.send(&Frame::new(Command::Disconnect).with_header("receipt", "last")).await;
    let ending = client.expect_end().await;
    let commands: Vec<Command> = ending.frames.iter().map(Frame::command).collect();
    assert_eq!(
        commands,
        [Command::Message, Command::Message, Command::Message, Command::Receipt],
        "{ending:?}"
    );
    assert_eq!(ending.frames[3].header_str("receipt-id"), Some("last"));
    assert_eq!(ending.close_code(), CloseCode::Normal);

    // Without a receipt: just the close.
    let mut client = broker.ws_client("quiet").await;
    client.send(&Frame::new(Command::Disconnect)).await;
    let ending = client.expect_end().await;
    assert!(ending.frames.is_empty(), "{ending:?}");
    assert_eq!(ending.close_code(), CloseCode::Normal);

    support::disconnect(publisher).await;
    ws_client::eventually("every session is gone", || handle.connection_count() == 0).await;
    broker.stop().await;
}

#[tokio::test]
async fn shutdown_closes_200_websocket_sessions_with_error_and_going_away() {
    const CLIENTS: usize = 200;
    // A long shutdown timeout, so that `shutdown` returning in time means
    // the sessions ended, not that the broker stopped waiting for them.
    let broker = WsBroker::start(Broker::builder().shutdown_timeout(Duration::from_secs(60))).await;
    let handle = broker.broker().clone();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut client = broker.ws_client(&format!("c{i}")).await;
        if i % 10 == 0 {
            client.subscribe("s", "/topic/shutdown", "auto").await;
        }
        clients.push(client);
    }
    // A TCP client too.
    let mut tcp = broker.tcp.client("tcp").await;
    tcp.publish("/topic/shutdown", "before").await;
    assert_eq!(handle.connection_count(), CLIENTS + 1);

    // Every client reads until its connection ends.
    let readers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| tokio::spawn(async move { (i, client.expect_end().await) }))
        .collect();
    let tcp_reader = tokio::spawn(async move { tcp.expect_closed().await });

    let start = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), handle.shutdown())
        .await
        .expect("shutdown did not return within 10 s");
    let took = start.elapsed();
    assert_eq!(handle.connection_count(), 0, "shutdown returned with sessions open");
    assert!(took < Duration::from_secs(10), "{took:?}");

    for reader in readers {
        let (i, ending) = reader.await.expect("reader");
        let mut frames = ending.frames.iter();
        if i % 10 == 0 {
            let m = frames.next().expect("the message published before shutdown");
            assert_eq!((m.command(), body(m).as_str()), (Command::Message, "before"), "{ending:?}");
        }
        let error = frames.next().unwrap_or_else(|| panic!("client {i}: no ERROR: {ending:?}"));
        assert_eq!(message(error), "server shutting down", "client {i}");
        assert!(frames.next().is_none(), "client {i}: frames after the ERROR: {ending:?}");
        assert_eq!(ending.close_code(), CloseCode::Away, "client {i}: {ending:?}");
    }
    let frames = tcp_reader.await.expect("tcp reader");
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(message(&frames[0]), "server shutting down");

    // The accept loops end too, and nothing new is accepted.
    let ws_addr = broker.ws_addr;
    broker.stop().await;
    assert!(
        tokio::net::TcpStream::connect(ws_addr).await.is_err(),
        "the WebSocket listener still accepts after shutdown"
    );
}

#[tokio::test]
async fn a_client_that_does_not_answer_the_close_is_given_up_on() {
    // Shutdown waits for the WebSocket close handshake, but not forever:
    // a client that reads nothing is abandoned after the closing grace.
    let broker = WsBroker::start(Broker::builder().shutdown_timeout(Duration::from_secs(60))).await;
    let handle = broker.broker().clone();
    let deaf = broker.ws_client("deaf").await;
    let start = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), handle.shutdown())
        .await
        .expect("shutdown did not return within 10 s");
    assert_eq!(handle.connection_count(), 0);
    assert!(start.elapsed() < Duration::from_secs(10));
    drop(deaf);
    broker.stop().await;
}

/// A connection over the limit: for WebSocket, the upgrade succeeds, then
/// ERROR ("too many connections") and a close frame (1013, Try Again).
async fn expect_ws_refused(broker: &WsBroker) {
    let mut client = WsClient::open(broker.ws_addr).await;
    let error = client.expect_error_then_close(CloseCode::Again).await;
    assert!(message(&error).contains("too many connections"), "{error:?}");
}

/// A TCP connection over the limit: ERROR, then the end of the stream.
async fn expect_tcp_refused(broker: &WsBroker) {
    let mut client = Client::raw(broker.tcp.addr).await;
    let frames = client.expect_closed().await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert!(message(&frames[0]).contains("too many connections"), "{frames:?}");
}

#[tokio::test]
async fn the_connection_limit_counts_tcp_and_websocket_together() {
    let broker =
        WsBroker::start(Broker::builder().limits(Limits::default().max_connections(2))).await;
    let handle = broker.broker().clone();

    let tcp = broker.tcp.client("tcp").await;
    let ws = broker.ws_client("ws").await;
    assert_eq!(handle.connection_count(), 2);
    expect_ws_refused(&broker).await;
    expect_tcp_refused(&broker).await;
    assert_eq!(handle.connection_count(), 2);
    assert_eq!(handle.stats().connections_refused, 2);

    // The WebSocket client leaves: a TCP client takes its slot.
    ws_client::disconnect(ws).await;
    ws_client::eventually("the WebSocket session is no longer counted", || {
        handle.connection_count() == 1
    })
    .await;
    let tcp2 = broker.tcp.client("tcp2").await;
    assert_eq!(handle.connection_count(), 2);
    expect_ws_refused(&broker).await;

    // Both TCP clients leave: two WebSocket clients fill the limit.
    support::disconnect(tcp).await;
    support::disconnect(tcp2).await;
    ws_client::eventually("the TCP sessions are no longer counted", || {
        handle.connection_count() == 0
    })
    .await;
    let ws1 = broker.ws_client("ws1").await;
    let ws2 = broker.ws_client("ws2").await;
    assert_eq!(handle.connection_count(), 2);
    expect_tcp_refused(&broker).await;
    expect_ws_refused(&broker).await;

    ws_client::disconnect(ws1).await;
    ws_client::disconnect(ws2).await;
    ws_client::eventually("every session is gone", || handle.connection_count() == 0).await;
    broker.stop().await;
}
