//! Chatting over STOMP, by TCP and by WebSocket: what subscribers of a
//! room receive, the order of ids under concurrent senders, the ERROR (and
//! close) for each kind of bad request without harm to other clients, and
//! the plain-broker destinations beside the chat.

mod support;

use std::time::{Duration, Instant};

use stomp_codec::{Command, Frame};
use support::chat::{assert_increasing, history_with, race, texts};
use support::stomp::{assert_error_mentions, assert_readable_error, send_frame, subscribe_frame};
use support::{ChatMessage, Client, Node, Server, Transport, WAIT, chat_body, unique};

async fn two_users_chat(transport: Transport) {
    let server = Node::new().start().await;
    let rest = server.rest();
    let room = rest.create_room_id(&unique("pair")).await;
    let mut alice = Client::connect(&server, transport, "alice").await;
    let mut bob = Client::connect(&server, transport, "bob").await;
    alice.join(&room, "a").await;
    bob.join(&room, "b").await;

    alice.say(&room, "hello, bob").await;
    let seen_by_alice = alice.next_chat().await;
    let seen_by_bob = bob.next_chat().await;
    assert_eq!(seen_by_alice.json, seen_by_bob.json, "both subscribers get the same JSON");
    assert_eq!(seen_by_bob.sender, "alice");
    assert_eq!(seen_by_bob.text, "hello, bob");
    assert_eq!(seen_by_bob.room_id, room);

    bob.say(&room, "hi alice ✓").await;
    let reply_a = alice.next_chat().await;
    let reply_b = bob.next_chat().await;
    assert_eq!(reply_a.json, reply_b.json);
    assert_eq!((reply_a.sender.as_str(), reply_a.text.as_str()), ("bob", "hi alice ✓"));
    assert!(reply_a.id > seen_by_bob.id, "ids {} then {}", seen_by_bob.id, reply_a.id);

    // A RECEIPT promises history within the flush interval (at most 1 s;
    // 3 s allows for a loaded machine).
    let history = history_with(&rest, &room, 2, Duration::from_secs(3)).await;
    let stored: Vec<ChatMessage> = history.into_iter().rev().take(2).collect();
    assert_eq!(stored, vec![reply_a, seen_by_bob], "REST history holds what was delivered");
}

#[tokio::test]
async fn two_users_chat_over_tcp() {
    two_users_chat(Transport::Tcp).await;
}

#[tokio::test]
async fn two_users_chat_over_websocket() {
    two_users_chat(Transport::Ws).await;
}

#[tokio::test]
async fn ids_strictly_increase_under_concurrent_senders() {
    const N: usize = 60;
    let server = Node::new().start().await;
    let rest = server.rest();
    let room = rest.create_room_id(&unique("busy")).await;
    let mut reader_tcp = Client::connect(&server, Transport::Tcp, "reader1").await;
    let mut reader_ws = Client::connect(&server, Transport::Ws, "reader2").await;
    reader_tcp.join(&room, "r").await;
    reader_ws.join(&room, "r").await;
    let mut alice = Client::connect(&server, Transport::Tcp, "alice").await;
    let mut bob = Client::connect(&server, Transport::Ws, "bob").await;

    let (got_tcp, got_ws) =
        race(&room, N, (&mut alice, &mut bob), (&mut reader_tcp, &mut reader_ws)).await;

    assert_increasing("over TCP", &got_tcp);
    assert_eq!(got_tcp, got_ws, "both subscribers get the same messages in the same order");
    for (sender, prefix) in [("alice", "a"), ("bob", "b")] {
        let own: Vec<String> =
            got_tcp.iter().filter(|m| m.sender == sender).map(|m| m.text.clone()).collect();
        let sent: Vec<String> = (0..N).map(|i| format!("{prefix}{i}")).collect();
        assert_eq!(own, sent, "{sender}'s messages, in the order sent");
    }
    let history = history_with(&rest, &room, 2 * N, WAIT).await;
    assert_eq!(history, got_tcp, "REST history equals what was delivered");
}

/// `--max-frame-rate`: a client sending faster than the limit is read no
/// faster than the limit allows, and is neither cut off nor loses anything.
#[tokio::test]
async fn a_flooding_client_is_slowed_down_not_cut_off() {
    const RATE: usize = 20;
    // A burst of RATE (CONNECT takes one), then the rest at RATE a second:
    // about two seconds to read them all.
    const SENT: usize = 3 * RATE;
    let server = Node::new().flag("--max-frame-rate", RATE.to_string()).start().await;
    let rest = server.rest();
    let room = rest.create_room_id(&unique("flood")).await;
    let mut reader = Client::connect(&server, Transport::Ws, "reader").await;
    reader.join(&room, "r").await;
    let mut flooder = Client::connect(&server, Transport::Tcp, "flooder").await;

    let started = Instant::now();
    let post = format!("/app/rooms.{room}");
    for i in 0..SENT - 1 {
        flooder.send(&send_frame(&post, &chat_body(&format!("f{i}")))).await;
    }
    // Its RECEIPT comes once every frame before it was read.
    flooder.say(&room, &format!("f{}", SENT - 1)).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500),
        "{SENT} frames at {RATE}/s read in {elapsed:?}"
    );

    let sent: Vec<String> = (0..SENT).map(|i| format!("f{i}")).collect();
    assert_eq!(texts(&reader.next_chats(SENT).await), sent, "every post delivered, in order");
    assert_eq!(texts(&history_with(&rest, &room, SENT, WAIT).await), sent, "and stored");
    flooder.say(&room, "still here").await;
}

/// Each of these, sent by a fresh client of `server`, must be answered by
/// an ERROR mentioning the given text (if any), then the connection closes.
fn bad_requests(room: &str) -> Vec<(&'static str, Frame, Option<&'static str>)> {
    let app = format!("/app/rooms.{room}");
    let send = |body: &str| send_frame(&app, body);
    vec![
        (
            "SEND to an unknown room",
            send_frame("/app/rooms.987654321", &chat_body("hi")),
            Some("unknown room"),
        ),
        ("SUBSCRIBE to an unknown room", subscribe_frame("/topic/rooms.987654321", "s", &[]), None),
        ("empty text", send(&chat_body("")), Some("text is empty")),
        ("whitespace-only text", send(&chat_body(" \t\n  ")), Some("text is empty")),
        ("text over --max-text-chars", send(&chat_body("0123456789x")), Some("text too long")),
        ("multibyte text over the limit", send(&chat_body("ééééééééééé")), Some("text too long")),
        ("a body that is not JSON", send("{\"text\": \"unterminated"), Some("bad message")),
        ("JSON without text", send(r#"{"message":"hi"}"#), Some("bad message")),
        ("a text that is not a string", send(r#"{"text":5}"#), Some("bad message")),
        ("JSON that is not an object", send(r#""hi""#), Some("bad message")),
        (
            "SEND to the room's topic",
            send_frame(&format!("/topic/rooms.{room}"), &chat_body("x")),
            None,
        ),
        ("SEND to /topic/rooms", send_frame("/topic/rooms", r#"{"id":"1","name":"fake"}"#), None),
        (
            "a chat message in a transaction (its RECEIPT could promise nothing)",
            send(&chat_body("hi")).with_header("transaction", "t1"),
            Some("transaction"),
        ),
        (
            "SEND to the room by another spelling of its id",
            send_frame(&format!("/app/rooms.0{room}"), &chat_body("hi")),
            Some("unknown room"),
        ),
        (
            "SUBSCRIBE to the room by another spelling of its id",
            subscribe_frame(&format!("/topic/rooms.0{room}"), "s", &[]),
            Some("unknown room"),
        ),
    ]
}

async fn bad_requests_fail_alone(transport: Transport) {
    let server = Node::new().flag("--max-text-chars", "10").start().await;
    let room = server.rest().create_room_id(&unique("strict")).await;
    let mut bystander = Client::connect(&server, Transport::Tcp, "bystander").await;
    bystander.join(&room, "b").await;
    let mut rooms_watcher = Client::connect(&server, Transport::Ws, "watcher").await;
    rooms_watcher.subscribe("/topic/rooms", "w").await;

    for (what, frame, mention) in bad_requests(&room) {
        let mut client = Client::connect(&server, transport, "mallory").await;
        let error = client.request_refused(frame).await;
        if let Some(mention) = mention {
            assert_error_mentions(&error, mention);
        }
        eprintln!("{what} over {transport:?}: ERROR {:?}", support::stomp::error_message(&error));
    }

    // At the limit, in characters (20 bytes): accepted.
    let mut carol = Client::connect(&server, transport, "carol").await;
    carol.say(&room, "éééééééééé").await;
    carol.say(&room, "  padded  ").await;
    // The bystander's first messages are these: nothing bad was published.
    let first = bystander.next_chat().await;
    assert_eq!((first.sender.as_str(), first.text.as_str()), ("carol", "éééééééééé"));
    let second = bystander.next_chat().await;
    assert_eq!(second.sender, "carol");
    assert_eq!(second.text.trim(), "padded");
    // No fake room event either: the next one is a real room.
    let real = server.rest().create_room(&unique("real")).await;
    let event = rooms_watcher.next_message().await;
    assert_eq!(serde_json::from_slice::<serde_json::Value>(event.body()).expect("room JSON"), real);
    assert_server_healthy(&server).await;
}

async fn assert_server_healthy(server: &Server) {
    let reply = server.rest().get("/healthz").await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

#[tokio::test]
async fn bad_requests_over_tcp_end_only_their_connection() {
    bad_requests_fail_alone(Transport::Tcp).await;
}

#[tokio::test]
async fn bad_requests_over_websocket_end_only_their_connection() {
    bad_requests_fail_alone(Transport::Ws).await;
}

#[tokio::test]
async fn other_destinations_are_a_plain_broker() {
    let server = Node::new().start().await;
    let mut tcp = Client::connect(&server, Transport::Tcp, "t").await;
    let mut ws = Client::connect(&server, Transport::Ws, "w").await;
    let mut publisher = Client::connect(&server, Transport::Tcp, "p").await;
    tcp.subscribe("/topic/x", "x").await;
    ws.subscribe("/topic/x", "x").await;
    let plain = Frame::new(Command::Send)
        .with_header("destination", "/topic/x")
        .with_header("content-type", "text/plain")
        .with_body("not a chat message");
    publisher.request(plain).await;
    for client in [&mut tcp, &mut ws] {
        let frame = client.next_message().await;
        assert_eq!(frame.header_str("destination"), Some("/topic/x"));
        assert_eq!(&frame.body()[..], b"not a chat message");
    }

    ws.subscribe("/queue/y", "y").await;
    for i in 0..3 {
        publisher.send_to("/queue/y", &format!("job {i}")).await;
    }
    for i in 0..3 {
        let frame = ws.next_message().await;
        assert_eq!(frame.header_str("destination"), Some("/queue/y"));
        assert_eq!(String::from_utf8_lossy(frame.body()), format!("job {i}"));
    }
}

/// What one client can make the server hold through the plain broker is
/// bounded: a frame by `--max-frame-bytes`, the plain queues together by
/// `--max-queue-bytes`, whatever the number of queues.
#[tokio::test]
async fn plain_queues_and_frames_are_bounded() {
    let server = Node::new().flag("--max-queue-bytes", "4096").start().await;
    let mut client = Client::connect(&server, Transport::Tcp, "hoarder").await;
    let kilobyte = "k".repeat(1024);
    for i in 0..4 {
        client.send_to(&format!("/queue/junk-{i}"), &kilobyte).await;
    }
    let error = client.request_refused(send_frame("/queue/junk-4", &kilobyte)).await;
    assert_error_mentions(&error, "is full");

    let mut big = Client::connect(&server, Transport::Ws, "big").await;
    let error = big.request_refused(send_frame("/topic/x", &"b".repeat(70 * 1024))).await;
    assert_readable_error(&error);

    // Consuming makes room again.
    let mut consumer = Client::connect(&server, Transport::Tcp, "consumer").await;
    consumer.subscribe("/queue/junk-0", "q").await;
    assert_eq!(consumer.next_message().await.body().len(), 1024);
    let mut again = Client::connect(&server, Transport::Tcp, "again").await;
    again.send_to("/queue/junk-5", &kilobyte).await;
    assert_server_healthy(&server).await;
}
