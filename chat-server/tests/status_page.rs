//! The built-in status page for operators without Prometheus: `/status`
//! is an HTML page that reads `GET /api/status`, whose figures follow what
//! the server does (connections, posts, deliveries, ERROR frames, the
//! history writer), and which is open in JWT mode like `/healthz`.

mod support;

use support::{Client, Node, Transport};

#[tokio::test]
async fn the_status_figures_follow_the_traffic() {
    let server = Node::new().start().await;
    let rest = server.rest();
    let page = rest.get("/status").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.header("content-type").is_some_and(|t| t.starts_with("text/html")));
    assert!(page.body.contains("/api/status"), "the page does not read /api/status");

    let before = rest.get("/api/status").await.expect_json(200);
    assert_eq!((before["connections"].as_u64(), before["posted"].as_u64()), (Some(0), Some(0)));
    assert!(before["backplane"].is_null(), "a single node has no backplane: {before}");

    let mut alice = Client::connect(&server, Transport::Tcp, "alice").await;
    alice.join("1", "general").await;
    alice.say("1", "hello").await;
    let _ = alice.next_chat().await;
    let during = rest.get("/api/status").await.expect_json(200);
    assert_eq!(during["connections"], 1, "{during}");
    assert_eq!(during["posted"], 1, "{during}");
    assert!(during["deliveries"].as_u64().is_some_and(|n| n >= 1), "{during}");
    assert_eq!(during["history"]["accepted"], 1, "{during}");
    assert_eq!(during["history"]["failing"], false, "{during}");
    assert!(during["uptimeSeconds"].as_f64().is_some_and(|s| s > 0.0), "{during}");

    assert!(alice.try_say("1", "   ").await.is_err(), "a blank post was accepted");
    let after = rest.get("/api/status").await.expect_json(200);
    assert_eq!((after["errorsSent"].as_u64(), after["posted"].as_u64()), (Some(1), Some(1)));
    server.stop_clean().await;
}

#[tokio::test]
async fn the_status_is_open_in_jwt_mode() {
    let server = Node::new().flag("--jwt-secret", "status-page-secret").start().await;
    let rest = server.rest();
    assert_eq!(rest.get("/status").await.status, 200);
    rest.get("/api/status").await.expect_json(200);
    server.stop_clean().await;
}
