//! STOMP over WebSocket and over TCP share one broker: topic messages
//! cross between the transports both ways, and a queue consumed over both
//! hands its messages round robin.

mod support;
#[path = "support/ws_client.rs"]
mod ws_client;

use std::collections::BTreeSet;

use stomp_codec::{Command, Frame};
use support::body;
use ws_client::WsBroker;

#[tokio::test]
async fn topic_messages_cross_between_tcp_and_websocket() {
    let broker = WsBroker::default().await;
    let mut tcp_sub = broker.tcp.client("tcp-sub").await;
    let mut tcp_pub = broker.tcp.client("tcp-pub").await;
    let mut ws_sub = broker.ws_client("ws-sub").await;
    let mut ws_pub = broker.ws_client("ws-pub").await;
    tcp_sub.subscribe("t", "/topic/bridge", "auto").await;
    ws_sub.subscribe("w", "/topic/bridge", "auto").await;

    // TCP to WebSocket (and to the TCP subscriber).
    let frame = support::send("/topic/bridge", "from tcp").with_header("colour", "blue");
    tcp_pub.with_receipt(frame, "p1").await;
    let m = ws_sub.expect_message().await;
    assert_eq!(body(&m), "from tcp");
    assert_eq!(m.header_str("destination"), Some("/topic/bridge"));
    assert_eq!(m.header_str("subscription"), Some("w"));
    assert_eq!(m.header_str("colour"), Some("blue"), "{m:?}");
    let m = tcp_sub.expect_message().await;
    assert_eq!((body(&m).as_str(), m.header_str("subscription")), ("from tcp", Some("t")));

    // WebSocket to TCP (and to the WebSocket subscriber).
    let frame = support::send("/topic/bridge", "from ws").with_header("colour", "red");
    ws_pub.with_receipt(frame, "p2").await;
    let m = tcp_sub.expect_message().await;
    assert_eq!(body(&m), "from ws");
    assert_eq!(m.header_str("subscription"), Some("t"));
    assert_eq!(m.header_str("colour"), Some("red"), "{m:?}");
    let m = ws_sub.expect_message().await;
    assert_eq!((body(&m).as_str(), m.header_str("subscription")), ("from ws", Some("w")));

    // A binary body crosses intact both ways.
    let raw = vec![0u8, 0xff, 0x10, 0x80, b'\n'];
    let binary = Frame::new(Command::Send)
        .with_header("destination", "/topic/bridge")
        .with_body(raw.clone());
    tcp_pub.with_receipt(binary.clone(), "p3").await;
    let (m, kind) = ws_sub.recv_kind().await;
    assert_eq!((&m.body()[..], kind), (&raw[..], ws_client::Kind::Binary));
    assert_eq!(&tcp_sub.expect_message().await.body()[..], &raw[..]);
    let binary = binary.with_header("receipt", "p4");
    let octets = ws_pub.encode(&binary);
    ws_pub.send_binary(&octets).await;
    assert_eq!(ws_pub.expect(Command::Receipt).await.header_str("receipt-id"), Some("p4"));
    assert_eq!(&tcp_sub.expect_message().await.body()[..], &raw[..]);
    assert_eq!(&ws_sub.expect_message().await.body()[..], &raw[..]);

    // Nothing else arrived.
    tcp_sub.expect_silence(std::time::Duration::from_millis(50)).await;
    ws_sub.expect_silence(std::time::Duration::from_millis(1)).await;

    ws_client::disconnect(ws_sub).await;
    ws_client::disconnect(ws_pub).await;
    support::disconnect(tcp_sub).await;
    support::disconnect(tcp_pub).await;
    broker.stop().await;
}

#[tokio::test]
async fn a_queue_shared_by_a_tcp_and_a_websocket_consumer_round_robins() {
    const N: usize = 10;
    let broker = WsBroker::default().await;
    let mut tcp = broker.tcp.client("tcp-consumer").await;
    let mut ws = broker.ws_client("ws-consumer").await;
    tcp.subscribe("q", "/queue/bridge", "auto").await;
    ws.subscribe("q", "/queue/bridge", "auto").await;

    // Published from both transports, each SEND acknowledged by a receipt.
    let mut ws_pub = broker.ws_client("ws-pub").await;
    let mut tcp_pub = broker.tcp.client("tcp-pub").await;
    for i in 0..N {
        let frame = support::send("/queue/bridge", &format!("m{i}"));
        if i % 2 == 0 {
            tcp_pub.with_receipt(frame, &format!("r{i}")).await;
        } else {
            ws_pub.with_receipt(frame, &format!("r{i}")).await;
        }
    }

    let number = |f: &Frame| -> usize {
        assert_eq!(f.header_str("destination"), Some("/queue/bridge"), "{f:?}");
        assert_eq!(f.header_str("subscription"), Some("q"), "{f:?}");
        body(f).trim_start_matches('m').parse().expect("body m{n}")
    };
    let mut got_tcp = Vec::new();
    let mut got_ws = Vec::new();
    for _ in 0..N / 2 {
        got_tcp.push(number(&tcp.expect_message().await));
        got_ws.push(number(&ws.expect_message().await));
    }
    tcp.expect_silence(std::time::Duration::from_millis(100)).await;
    ws.expect_silence(std::time::Duration::from_millis(1)).await;

    // Each message to exactly one consumer, the two taking turns.
    let all: BTreeSet<usize> = got_tcp.iter().chain(&got_ws).copied().collect();
    assert_eq!(all, (0..N).collect(), "tcp {got_tcp:?}, ws {got_ws:?}");
    let (first, second) = if got_tcp[0] == 0 { (&got_tcp, &got_ws) } else { (&got_ws, &got_tcp) };
    let evens: Vec<usize> = (0..N).step_by(2).collect();
    let odds: Vec<usize> = (1..N).step_by(2).collect();
    assert_eq!((first, second), (&evens, &odds), "not in turn: tcp {got_tcp:?}, ws {got_ws:?}");

    ws_client::disconnect(ws).await;
    ws_client::disconnect(ws_pub).await;
    support::disconnect(tcp).await;
    support::disconnect(tcp_pub).await;
    broker.stop().await;
}
