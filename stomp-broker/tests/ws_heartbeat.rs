//! STOMP over WebSocket: heart-beats are `"\n"` text messages both ways,
//! at the intervals CONNECT agreed; a silent client gets `ERROR` and then
//! a close frame; a WebSocket Ping gets a Pong.
//!
//! These tests use real time with short intervals (a few hundred ms, the
//! brokers' `min_send`/`min_receive` lowered to 200 ms) rather than tokio's
//! paused clock: with a paused clock, time jumps ahead whenever the runtime
//! is idle, and it is idle while it waits for the socket I/O of the
//! WebSocket handshake and of every frame, so the broker's CONNECT and
//! heart-beat timers (and the tests' own timeouts) would fire while a
//! message is merely in flight on loopback. Real intervals make the
//! timings what a client sees; the bounds below leave generous slack.

mod support;
#[path = "support/ws_client.rs"]
mod ws_client;

use std::time::Duration;

use futures::StreamExt;
use stomp_broker::websocket::tokio_tungstenite::tungstenite::Message;
use stomp_broker::websocket::tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use stomp_broker::{Broker, Heartbeat};
use stomp_codec::Command;
use tokio::time::Instant;
use ws_client::{WsBroker, WsClient};

/// The broker's shortest heart-beat intervals in these tests.
const INTERVAL: Duration = Duration::from_millis(200);

async fn broker() -> WsBroker {
    WsBroker::start(
        Broker::builder().heartbeat(Heartbeat::default().min_send(INTERVAL).min_receive(INTERVAL)),
    )
    .await
}

/// A WebSocket client CONNECTed with `heart-beat: {heart_beat}`; checks
/// the broker's answer.
async fn connect(broker: &WsBroker, heart_beat: &str, answer: &str) -> WsClient {
    let mut client = WsClient::open(broker.ws_addr).await;
    let connected = client.stomp_connect("hb", "1.2", Some(heart_beat)).await;
    assert_eq!(connected.command(), Command::Connected, "{connected:?}");
    assert_eq!(connected.header_str("heart-beat"), Some(answer), "{connected:?}");
    client
}

#[tokio::test]
async fn the_broker_sends_newline_text_messages_at_the_agreed_interval() {
    let broker = broker().await;
    // The client wants a beat every 200 ms and sends none.
    let mut client = connect(&broker, "0,200", "200,0").await;
    let start = Instant::now();
    let window = Duration::from_millis(1100);
    let mut beats = Vec::new();
    loop {
        let left = window.saturating_sub(start.elapsed());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, client.ws.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Text(text)))) => {
                assert_eq!(text.as_str(), "\n", "a heart-beat is one \"\\n\" text message");
                beats.push(start.elapsed());
            }
            Ok(other) => panic!("expected only heart-beats, got {other:?}"),
        }
    }
    // About 5 in 1.1 s; not sent more often than agreed.
    assert!((3..=7).contains(&beats.len()), "{} beats in {window:?}: {beats:?}", beats.len());
    for pair in beats.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(150), "beats {gap:?} apart: {beats:?}");
    }
    // Heart-beats do not disturb the session.
    client.publish("/topic/hb", "still here").await;
    ws_client::disconnect(client).await;
    broker.stop().await;
}

#[tokio::test]
async fn no_heartbeats_when_none_were_asked_for() {
    let broker = broker().await;
    let mut client = connect(&broker, "0,0", "0,0").await;
    match tokio::time::timeout(Duration::from_millis(600), client.ws.next()).await {
        Err(_) => {}
        Ok(other) => panic!("nothing should come, got {other:?}"),
    }
    ws_client::disconnect(client).await;
    broker.stop().await;
}

#[tokio::test]
async fn a_client_sending_newline_messages_stays_connected_and_a_silent_one_is_closed() {
    let broker = broker().await;
    // The client promises a beat every 200 ms: silent for 400 ms (the
    // tolerance of 2), it is cut off.
    let mut client = connect(&broker, "200,0", "0,200").await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1200) {
        client.send_text(b"\n").await;
        client.expect_silence(Duration::from_millis(100)).await;
    }
    // Well past the tolerance, still connected and served.
    client.publish("/topic/hb", "alive").await;

    // Now silent.
    let silent_since = Instant::now();
    let error = client.expect_error_then_close(CloseCode::Normal).await;
    let waited = silent_since.elapsed();
    let message = error.header_str("message").expect("ERROR has a message header");
    assert!(message.contains("heart-beat timeout"), "{error:?}");
    assert!(waited >= Duration::from_millis(300), "closed after only {waited:?} of silence");
    assert!(waited < Duration::from_secs(3), "closed only after {waited:?} of silence");

    let handle = broker.broker().clone();
    ws_client::eventually("the session is gone", || handle.connection_count() == 0).await;
    assert_eq!(handle.stats().heartbeat_timeouts, 1);
    broker.stop().await;
}

#[tokio::test]
async fn a_silent_client_gets_error_then_a_close_frame() {
    let broker = broker().await;
    let mut client = connect(&broker, "200,0", "0,200").await;
    let start = Instant::now();
    let error = client.expect_error_then_close(CloseCode::Normal).await;
    let waited = start.elapsed();
    let message = error.header_str("message").expect("ERROR has a message header");
    assert!(message.contains("heart-beat timeout"), "{error:?}");
    assert!(waited >= Duration::from_millis(300), "closed after only {waited:?}");
    assert!(waited < Duration::from_secs(3), "closed only after {waited:?}");
    broker.stop().await;
}

#[tokio::test]
async fn a_websocket_ping_gets_a_pong() {
    let broker = broker().await;
    let mut client = broker.ws_client("pinger").await;
    for payload in [&b"ping-1"[..], b"", b"\x00\xffbinary"] {
        client.send_message(Message::Ping(payload.to_vec().into())).await;
        match client.next_message().await {
            Some(Message::Pong(pong)) => assert_eq!(&pong[..], payload),
            other => panic!("expected a Pong, got {other:?}"),
        }
    }
    // Before CONNECT too.
    let mut fresh = WsClient::open(broker.ws_addr).await;
    fresh.send_message(Message::Ping(b"early".to_vec().into())).await;
    match fresh.next_message().await {
        Some(Message::Pong(pong)) => assert_eq!(&pong[..], b"early"),
        other => panic!("expected a Pong, got {other:?}"),
    }
    let connected = fresh.stomp_connect("late", "1.2", None).await;
    assert_eq!(connected.command(), Command::Connected, "{connected:?}");

    // The sessions are unaffected.
    client.publish("/topic/ping", "after pings").await;
    ws_client::disconnect(client).await;
    ws_client::disconnect(fresh).await;
    broker.stop().await;
}
