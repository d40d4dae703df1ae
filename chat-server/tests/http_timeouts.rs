//! The HTTP port's bounds on connections: one that sends nothing, or half
//! a request head, or half a body, or stays idle after an answer, is
//! closed by the server within its timeouts; a connection upgraded to a
//! STOMP WebSocket is not subject to them; one address may hold only
//! `--max-connections-per-ip` connections, others are unaffected.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use support::{Client, Node, Rest, Server, Transport, WAIT, eventually, unique};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short timeouts: 1 s for a first request head, 2 s idle.
fn short_timeouts() -> Node {
    Node::new().flag("--http-header-timeout", "1").flag("--http-idle-timeout", "2")
}

/// Well above both timeouts, so that a busy machine does not fail the
/// test, and well below forever.
const CLOSED_WITHIN: Duration = Duration::from_secs(8);

async fn open(server: &Server) -> TcpStream {
    TcpStream::connect(server.http).await.expect("connect to the HTTP port")
}

/// Reads until the server closes `stream`; panics naming `what` if it is
/// still open after [`CLOSED_WITHIN`]. Returns what the server sent.
async fn assert_closed(what: &str, stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(CLOSED_WITHIN, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "{what}: the server kept the connection open for {CLOSED_WITHIN:?}");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_connection_that_sends_nothing_or_half_a_head_is_closed() {
    let server = short_timeouts().start().await;
    let mut silent = open(&server).await;
    let mut half_head = open(&server).await;
    half_head.write_all(b"GET / HTTP/1.1\r\nHost: chat\r\n").await.expect("write");
    assert_closed("a connection that sent nothing", &mut silent).await;
    assert_closed("a connection that sent half a request head", &mut half_head).await;
    server.rest().get("/healthz").await.expect_json(200);
}

#[tokio::test]
async fn a_stalled_body_and_an_idle_kept_alive_connection_are_closed() {
    let server = short_timeouts().start().await;
    let mut stalled = open(&server).await;
    let head = "POST /api/rooms HTTP/1.1\r\nHost: chat\r\ncontent-type: application/json\r\n\
                content-length: 100\r\n\r\n{\"name\":";
    stalled.write_all(head.as_bytes()).await.expect("write");
    assert_closed("a request whose body stopped", &mut stalled).await;

    let mut kept = open(&server).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: chat\r\n\r\n").await.expect("write");
    let answered = assert_closed("a kept-alive connection left idle", &mut kept).await;
    assert!(answered.starts_with("HTTP/1.1 200"), "the request was not answered: {answered:?}");
}

#[tokio::test]
async fn an_upgraded_websocket_is_not_timed_out() {
    let server = short_timeouts().start().await;
    let room = server.rest().create_room_id(&unique("idle")).await;
    // No heart-beats: nothing crosses the connection while it waits.
    let mut idle = Client::connect(&server, Transport::Ws, "idle").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    idle.join(&room, "r").await;
    idle.say(&room, "still here").await;
    assert_eq!(idle.next_chat().await.text, "still here");
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_connections() {
    let server = Node::new()
        .flag("--max-connections-per-ip", "3")
        .flag("--http-header-timeout", "120")
        .start()
        .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(open(&server).await);
    }
    let refused = server.rest().get("/healthz").await;
    refused.expect_error(429, "too_many_requests");
    assert!(refused.header("retry-after").is_some(), "{refused:?}");

    let elsewhere = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let other = Rest::from_address(server.http, elsewhere, None);
    other.get("/healthz").await.expect_json(200);

    drop(held.pop());
    let rest = server.rest();
    eventually("a closed connection frees its address' slot", WAIT, || async {
        (rest.get("/healthz").await.status == 200).then_some(())
    })
    .await;
}
