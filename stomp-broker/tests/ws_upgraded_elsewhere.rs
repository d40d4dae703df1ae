//! `Broker::serve_websocket` takes a WebSocket that an HTTP framework
//! upgraded itself (as chat-server does on an axum route): here a minimal
//! "framework" answers the HTTP upgrade by hand, negotiates the
//! subprotocol with `websocket::negotiate_subprotocol`, wraps the socket
//! with `from_raw_socket` and the broker's `websocket_config`, and hands it
//! over. The session then behaves as on `serve_ws`, shutdown included.

mod support;
#[path = "support/ws_client.rs"]
mod ws_client;

use std::time::Duration;

use stomp_broker::websocket::negotiate_subprotocol;
use stomp_broker::websocket::tokio_tungstenite::WebSocketStream;
use stomp_broker::websocket::tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use stomp_broker::websocket::tokio_tungstenite::tungstenite::protocol::Role;
use stomp_broker::{Broker, codec::Headers};
use stomp_codec::{Command, Version};
use support::body;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use ws_client::WsClient;

/// Reads an HTTP request head (bounded) and returns its header lines.
async fn read_head(stream: &mut TcpStream) -> Vec<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 16 * 1024, "request head too long");
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.expect("request head");
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("UTF-8 head").lines().map(str::to_owned).collect()
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Accepts one connection, upgrades it "by hand", and gives it to the broker.
async fn framework(listener: TcpListener, broker: Broker) {
    let (mut stream, peer) = listener.accept().await.expect("accept");
    let head = read_head(&mut stream).await;
    let key = header(&head, "sec-websocket-key").expect("a WebSocket upgrade request");
    let accept = derive_accept_key(key.as_bytes());
    let agreed = header(&head, "sec-websocket-protocol").and_then(negotiate_subprotocol);
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some((name, _)) = agreed {
        response.push_str(&format!("Sec-WebSocket-Protocol: {name}\r\n"));
    }
    response.push_str("\r\n");
    stream.write_all(response.as_bytes()).await.expect("101");
    let ws =
        WebSocketStream::from_raw_socket(stream, Role::Server, Some(broker.websocket_config()))
            .await;
    broker.serve_websocket(ws, Some(peer), agreed.map(|(_, version)| version));
}

async fn setup(protocols: &str) -> (Broker, WsClient, Option<String>) {
    let broker = Broker::builder().build();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let serving = tokio::spawn(framework(listener, broker.clone()));
    let (ws, response) =
        ws_client::upgrade(addr, "/anywhere", Some(protocols)).await.expect("upgrade");
    serving.await.expect("framework task");
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().expect("ASCII").to_owned());
    (broker, WsClient::new(ws), protocol)
}

#[tokio::test]
async fn a_websocket_upgraded_by_a_framework_is_a_full_session() {
    let (broker, mut client, protocol) = setup("v11.stomp, v12.stomp").await;
    assert_eq!(protocol.as_deref(), Some("v12.stomp"));
    let connected = client.stomp_connect("amy", "1.1,1.2", None).await;
    assert_eq!(connected.header_str("version"), Some("1.2"));
    assert_eq!(broker.connection_count(), 1);

    client.subscribe("s", "/topic/framework", "auto").await;
    broker.publish("/topic/framework", Headers::new(), "from Rust").expect("publish");
    assert_eq!(body(&client.expect_message().await), "from Rust");

    // Shutdown waits for this session too, and ends it with a close.
    tokio::time::timeout(Duration::from_secs(10), broker.shutdown())
        .await
        .expect("shutdown within the bound");
    let ending = client.expect_end().await;
    assert_eq!(ending.frames.last().map(stomp_codec::Frame::command), Some(Command::Error));
    assert_eq!(broker.connection_count(), 0);
}

#[tokio::test]
async fn the_framework_subprotocol_caps_the_stomp_version() {
    let (broker, mut client, protocol) = setup("v11.stomp").await;
    assert_eq!(protocol.as_deref(), Some("v11.stomp"));
    let connected = client.stomp_connect("amy", "1.1,1.2", None).await;
    assert_eq!(connected.header("version").and_then(Version::from_bytes), Some(Version::V1_1));
    drop(client);
    broker.shutdown().await;
}
