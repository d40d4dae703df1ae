//! STOMP over WebSocket: the upgrade. The endpoint is at the path given to
//! `Broker::serve_ws` (other paths get HTTP 404); of the subprotocols
//! `v12.stomp`, `v11.stomp` and `v10.stomp` the broker echoes the newest
//! the client offered, and none when the client offered none or only
//! unknown ones (the handshake succeeds either way); the agreed
//! subprotocol caps the version CONNECT may negotiate.

mod support;
#[path = "support/ws_client.rs"]
mod ws_client;

use stomp_broker::websocket::tokio_tungstenite::tungstenite::http::{Response, StatusCode};
use stomp_broker::websocket::tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use stomp_codec::Command;
use ws_client::{PATH, WsBroker, WsClient, raw_upgrade, refused_status, upgrade};

/// The subprotocol a successful tungstenite handshake agreed on.
fn agreed(response: &Response<Option<Vec<u8>>>) -> Option<String> {
    response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().expect("header is text").to_owned())
}

/// Upgrades offering `offered`, checks the echoed subprotocol, and returns
/// the client (nothing sent yet).
async fn upgraded(broker: &WsBroker, offered: &str, expected: &str) -> WsClient {
    let (ws, response) = upgrade(broker.ws_addr, PATH, Some(offered)).await.expect("handshake");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(agreed(&response).as_deref(), Some(expected), "offered {offered:?}");
    WsClient::new(ws)
}

/// A CONNECTED frame's `version` header.
fn version(connected: &stomp_codec::Frame) -> &str {
    assert_eq!(connected.command(), Command::Connected, "{connected:?}");
    connected.header_str("version").expect("CONNECTED has a version header")
}

#[tokio::test]
async fn the_newest_offered_subprotocol_is_echoed() {
    let broker = WsBroker::default().await;
    for (offered, expected) in [
        ("v12.stomp", "v12.stomp"),
        ("v10.stomp, v12.stomp, v11.stomp", "v12.stomp"),
        ("v10.stomp,v11.stomp", "v11.stomp"),
        ("v10.stomp", "v10.stomp"),
        ("mqtt, v11.stomp, wamp", "v11.stomp"),
    ] {
        let mut client = upgraded(&broker, offered, expected).await;
        let connected = client.stomp_connect("sp", "1.0,1.1,1.2", None).await;
        let want = match expected {
            "v12.stomp" => "1.2",
            "v11.stomp" => "1.1",
            _ => "1.0",
        };
        assert_eq!(version(&connected), want, "offered {offered:?}");
        // The session works in the agreed version.
        client.subscribe("s", "/topic/sp", "auto").await;
        let mut publisher = broker.tcp.client("sp-pub").await;
        publisher.publish("/topic/sp", "hello").await;
        let m = client.expect_message().await;
        assert_eq!(support::body(&m), "hello");
        client.publish("/topic/sp-back", "back").await;
        ws_client::disconnect(client).await;
        support::disconnect(publisher).await;
    }
    broker.stop().await;
}

#[tokio::test]
async fn no_subprotocol_offered_none_echoed_and_any_version_allowed() {
    let broker = WsBroker::default().await;
    let (ws, response) = upgrade(broker.ws_addr, PATH, None).await.expect("handshake");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(agreed(&response), None, "no subprotocol was offered: {response:?}");
    let mut client = WsClient::new(ws);
    let connected = client.stomp_connect("none", "1.1,1.2", None).await;
    assert_eq!(version(&connected), "1.2");
    client.publish("/topic/none", "ok").await;
    ws_client::disconnect(client).await;
    broker.stop().await;
}

#[tokio::test]
async fn only_unknown_subprotocols_offered_the_handshake_succeeds_without_one() {
    // tungstenite's client refuses a server that echoes none of the offered
    // subprotocols (as RFC 6455 lets it), so the upgrade is written by hand.
    let broker = WsBroker::default().await;
    let upgrade = raw_upgrade(broker.ws_addr, PATH, Some("mqtt, wamp.2.json")).await;
    assert_eq!(upgrade.status, 101, "{:?}", upgrade.head);
    assert_eq!(upgrade.header("Sec-WebSocket-Protocol"), None, "{:?}", upgrade.head);
    let mut client = upgrade.into_client().await;
    // No subprotocol: no cap on the version.
    let connected = client.stomp_connect("unknown", "1.0,1.1,1.2", None).await;
    assert_eq!(version(&connected), "1.2");
    client.publish("/topic/unknown", "ok").await;
    ws_client::disconnect(client).await;
    broker.stop().await;
}

#[tokio::test]
async fn the_subprotocol_caps_the_connect_version() {
    let broker = WsBroker::default().await;

    // v11.stomp with accept-version 1.1,1.2: 1.1.
    let mut client = upgraded(&broker, "v11.stomp", "v11.stomp").await;
    let connected = client.stomp_connect("cap", "1.1,1.2", None).await;
    assert_eq!(version(&connected), "1.1");
    client.publish("/topic/cap", "in 1.1").await;
    ws_client::disconnect(client).await;

    // v10.stomp with accept-version 1.0,1.1,1.2: 1.0.
    let mut client = upgraded(&broker, "v10.stomp", "v10.stomp").await;
    let connected = client.stomp_connect("cap10", "1.0,1.1,1.2", None).await;
    assert_eq!(version(&connected), "1.0");
    ws_client::disconnect(client).await;

    // v11.stomp with accept-version 1.2 only: ERROR, then a close frame.
    let mut client = upgraded(&broker, "v11.stomp", "v11.stomp").await;
    client.send(&connect_frame("1.2")).await;
    let error = client.expect_error_then_close(CloseCode::Normal).await;
    let message = error.header_str("message").expect("ERROR has a message header");
    assert!(message.contains("unsupported STOMP version"), "{error:?}");

    // v10.stomp with accept-version 1.1,1.2: ERROR too.
    let mut client = upgraded(&broker, "v10.stomp", "v10.stomp").await;
    client.send(&connect_frame("1.1,1.2")).await;
    client.expect_error_then_close(CloseCode::Normal).await;

    let handle = broker.broker().clone();
    ws_client::eventually("every session is gone", || handle.connection_count() == 0).await;
    broker.stop().await;
}

/// A CONNECT frame accepting `versions`.
fn connect_frame(versions: &str) -> stomp_codec::Frame {
    stomp_codec::Frame::new(Command::Connect)
        .with_header("accept-version", versions.to_owned())
        .with_header("host", "/")
}

#[tokio::test]
async fn other_paths_get_404() {
    let broker = WsBroker::default().await;
    for path in ["/", "/ws", "/stomp/", "/stompx", "/other/stomp"] {
        let error = upgrade(broker.ws_addr, path, Some("v12.stomp"))
            .await
            .expect_err(&format!("an upgrade at {path} must be refused"));
        assert_eq!(refused_status(&error), StatusCode::NOT_FOUND, "{path}: {error:?}");
    }
    // Refused upgrades are not connections.
    assert_eq!(broker.broker().connection_count(), 0);
    // The endpoint itself still works.
    let client = broker.ws_client("after-404").await;
    ws_client::disconnect(client).await;
    broker.stop().await;
}
