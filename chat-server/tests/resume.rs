//! Resuming a room subscription with `x-resume-after`: the missed
//! messages then the live ones, in order, without gap or duplicate, also
//! while a sender keeps posting; a resume point past the end; the
//! `--resume-limit`; and malformed resume points.

mod support;

use std::cell::Cell;

use stomp_codec::Command;
use support::chat::{assert_increasing, history_all, history_with, ids, texts};
use support::stomp::{assert_error_mentions, chat_of, error_message, subscribe_frame};
use support::{ChatMessage, Client, Node, Server, Transport, WAIT, eventually, unique};

fn topic(room: &str) -> String {
    format!("/topic/rooms.{room}")
}

/// A fresh client subscribed to `room` as `sub`, resuming after `after`.
async fn resumed(
    server: &Server,
    transport: Transport,
    room: &str,
    sub: &str,
    after: u64,
) -> Client {
    let mut client = Client::connect(server, transport, "reader").await;
    client.subscribe_with(&topic(room), sub, &[("x-resume-after", &after.to_string())]).await;
    client
}

/// The next `n` chat messages of subscription `sub`, skipping those of
/// other (ended) subscriptions.
async fn next_of(client: &mut Client, sub: &str, n: usize) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let frame = client.next_message().await;
        if frame.header_str("subscription") == Some(sub) {
            out.push(chat_of(&frame));
        }
    }
    out
}

#[tokio::test]
async fn a_reconnecting_reader_gets_the_missed_then_the_live_messages() {
    let server = Node::new().start().await;
    let room = server.rest().create_room_id(&unique("resume")).await;
    let mut sender = Client::connect(&server, Transport::Tcp, "sender").await;
    let mut reader = Client::connect(&server, Transport::Tcp, "reader").await;
    reader.join(&room, "r").await;
    for i in 0..5 {
        sender.say(&room, &format!("m{i}")).await;
    }
    let mut got = reader.next_chats(5).await;
    reader.disconnect().await;

    for i in 5..10 {
        sender.say(&room, &format!("m{i}")).await;
    }
    let last = got.last().expect("five messages").id;
    let mut reader = resumed(&server, Transport::Ws, &room, "r2", last).await;
    let missed = reader.next_chats(5).await;
    assert_eq!(texts(&missed), ["m5", "m6", "m7", "m8", "m9"], "the missed messages, in order");
    got.extend(missed);
    for i in 10..13 {
        sender.say(&room, &format!("m{i}")).await;
    }
    got.extend(reader.next_chats(3).await);
    sender.say(&room, "marker").await;
    let marker = reader.next_chat().await;
    assert_eq!(marker.text, "marker", "a duplicate came before the marker");
    got.push(marker);

    assert_increasing("resumed reader", &got);
    let history = history_with(&server.rest(), &room, 14, WAIT).await;
    assert_eq!(history, got, "what the reader got is the whole history");
}

/// State shared by the sender and the resuming reader of the hard case.
#[derive(Default)]
struct Progress {
    receipted: Cell<usize>,
    stop: Cell<bool>,
}

/// Posts `s0`, `s1`, ... with receipts until told to stop; returns the
/// texts that got their RECEIPT.
async fn keep_sending(mut sender: Client, room: &str, progress: &Progress) -> Vec<String> {
    let mut receipted = Vec::new();
    while !progress.stop.get() {
        let text = format!("s{}", receipted.len());
        sender.say(room, &text).await;
        receipted.push(text);
        progress.receipted.set(receipted.len());
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    receipted
}

/// Subscribes, then resumes six times (alternately after UNSUBSCRIBE on
/// the same connection and on a new connection, over TCP or WebSocket),
/// each time after the sender got at least three more receipts.
async fn keep_resuming(
    server: &Server,
    room: &str,
    progress: &Progress,
) -> (Client, Vec<ChatMessage>) {
    let mut client = Client::connect(server, Transport::Tcp, "reader").await;
    client.join(room, "sub0").await;
    let mut got = next_of(&mut client, "sub0", 5).await;
    for round in 1..=6 {
        let last = got.last().expect("messages").id;
        let previous = format!("sub{}", round - 1);
        if round % 2 == 1 {
            client.unsubscribe(&previous).await;
        } else {
            client.disconnect().await;
            let transport = if round % 4 == 0 { Transport::Ws } else { Transport::Tcp };
            client = Client::connect(server, transport, "reader").await;
        }
        let target = progress.receipted.get() + 3;
        eventually("the sender posted three more", WAIT, move || async move {
            (progress.receipted.get() >= target).then_some(())
        })
        .await;
        let sub = format!("sub{round}");
        client.subscribe_with(&topic(room), &sub, &[("x-resume-after", &last.to_string())]).await;
        got.extend(next_of(&mut client, &sub, 5 + round).await);
    }
    progress.stop.set(true);
    (client, got)
}

#[tokio::test]
async fn resuming_while_a_sender_posts_loses_and_repeats_nothing() {
    let server = Node::new().start().await;
    let rest = server.rest();
    let room = rest.create_room_id(&unique("hard")).await;
    let sender = Client::connect(&server, Transport::Tcp, "sender").await;
    let progress = Progress::default();
    let (receipted, (mut reader, mut got)) = tokio::join!(
        keep_sending(sender, &room, &progress),
        keep_resuming(&server, &room, &progress)
    );

    // Once more, after the sender stopped: up to its last message.
    let last_text = receipted.last().expect("the sender sent").clone();
    let last = got.last().expect("messages").id;
    reader.subscribe_with(&topic(&room), "final", &[("x-resume-after", &last.to_string())]).await;
    while got.last().is_some_and(|m| m.text != last_text) {
        got.extend(next_of(&mut reader, "final", 1).await);
    }

    assert_increasing("the reader's messages", &got);
    let history = history_with(&rest, &room, receipted.len(), WAIT).await;
    assert_eq!(texts(&history), receipted, "history holds every receipted message once, in order");
    let start =
        history.iter().position(|m| m.id == got[0].id).expect("the first message is in history");
    assert_eq!(
        ids(&got),
        ids(&history[start..]),
        "the reader's messages are contiguous, without duplicates"
    );
    assert_eq!(got, history[start..].to_vec());
}

#[tokio::test]
async fn resuming_after_the_newest_message_delivers_only_live_ones() {
    let server = Node::new().start().await;
    let room = server.rest().create_room_id(&unique("ahead")).await;
    let mut sender = Client::connect(&server, Transport::Tcp, "sender").await;
    for i in 0..3 {
        sender.say(&room, &format!("old {i}")).await;
    }
    let newest = history_with(&server.rest(), &room, 3, WAIT).await[2].id;
    let mut at_end = resumed(&server, Transport::Tcp, &room, "a", newest).await;
    let mut beyond = resumed(&server, Transport::Ws, &room, "b", newest + 1000).await;
    sender.say(&room, "live").await;
    for reader in [&mut at_end, &mut beyond] {
        let first = reader.next_chat().await;
        assert_eq!(first.text, "live", "{:?}: only the live message", reader.transport);
        assert!(first.id > newest);
    }
}

#[tokio::test]
async fn resuming_further_back_than_the_resume_limit_is_refused() {
    let server = Node::new().flag("--resume-limit", "5").start().await;
    let rest = server.rest();
    let room = rest.create_room_id(&unique("limit")).await;
    let mut sender = Client::connect(&server, Transport::Tcp, "sender").await;
    for i in 0..8 {
        sender.say(&room, &format!("m{i}")).await;
    }
    let history = history_with(&rest, &room, 8, WAIT).await;

    for after in [history[1].id, 0] {
        let mut client = Client::connect(&server, Transport::Tcp, "reader").await;
        let frame = subscribe_frame(&topic(&room), "r", &[("x-resume-after", &after.to_string())]);
        let error = client.request_refused(frame).await;
        assert!(
            error_message(&error).starts_with("resume too far behind"),
            "resume after {after} (more than 5 to replay): {error:?}"
        );
    }

    // Exactly the limit: replayed.
    let mut reader = resumed(&server, Transport::Ws, &room, "r", history[2].id).await;
    let replayed = reader.next_chats(5).await;
    assert_eq!(replayed, history[3..].to_vec());
    sender.say(&room, "live").await;
    assert_eq!(reader.next_chat().await.text, "live");
    assert_eq!(history_all(&rest, &room).await.len(), 9);
}

#[tokio::test]
async fn a_malformed_resume_point_is_refused() {
    let server = Node::new().start().await;
    let room = server.rest().create_room_id(&unique("badresume")).await;
    for value in ["abc", "12x", "-1", "1.5", "0x10"] {
        let mut client = Client::connect(&server, Transport::Tcp, "reader").await;
        let frame = subscribe_frame(&topic(&room), "r", &[("x-resume-after", value)]);
        let error = client.request_refused(frame).await;
        assert_eq!(error.command(), Command::Error);
        assert_error_mentions(&error, "resume");
    }
}
