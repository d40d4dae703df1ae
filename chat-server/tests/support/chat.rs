//! The chat's JSON shapes and the history helpers built on REST.

use std::time::Duration;

use serde_json::Value;

use super::{Rest, eventually};

/// A chat message as the contract shapes it (`{"id","roomId","sender",
/// "text","sentAt"}`), with its id as a number for ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `id`, parsed from its decimal string.
    pub id: u64,
    /// `roomId`.
    pub room_id: String,
    /// `sender`.
    pub sender: String,
    /// `text`.
    pub text: String,
    /// `sentAt`.
    pub sent_at: String,
    /// The JSON as received.
    pub json: Value,
}

impl ChatMessage {
    /// Parses and checks a message JSON: exactly the five fields, all
    /// strings, `id` and `roomId` decimal, `sentAt` RFC 3339 UTC.
    pub fn from_json(json: &Value) -> Self {
        let object = json.as_object().unwrap_or_else(|| panic!("message is not an object: {json}"));
        let field = |name: &str| -> String {
            object
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("message field {name:?} missing or not a string: {json}"))
                .to_owned()
        };
        assert_eq!(
            object.len(),
            5,
            "message has other fields than id, roomId, sender, text, sentAt: {json}"
        );
        let id = decimal_id(&field("id"), json);
        let room_id = field("roomId");
        decimal_id(&room_id, json);
        let sent_at = field("sentAt");
        assert_rfc3339_utc(&sent_at);
        Self {
            id,
            room_id,
            sender: field("sender"),
            text: field("text"),
            sent_at,
            json: json.clone(),
        }
    }

    /// Parses a message from a MESSAGE body.
    pub fn from_body(body: &[u8]) -> Self {
        let json: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!("MESSAGE body is not JSON ({e}): {:?}", String::from_utf8_lossy(body))
        });
        Self::from_json(&json)
    }
}

fn decimal_id(text: &str, json: &Value) -> u64 {
    assert!(
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()),
        "id {text:?} is not a decimal string: {json}"
    );
    text.parse().unwrap_or_else(|e| panic!("id {text:?} ({e}): {json}"))
}

/// The body of a SEND to `/app/rooms.{id}`: `{"text": text}`.
pub fn chat_body(text: &str) -> String {
    serde_json::json!({ "text": text }).to_string()
}

/// Asserts `text` is an RFC 3339 timestamp in UTC:
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)`, fields in range.
pub fn assert_rfc3339_utc(text: &str) {
    let ok = (|| {
        let (main, fraction) = match text.split_once('.') {
            Some((main, rest)) => (main, Some(rest)),
            None => (text, None),
        };
        let zone_ok = |tail: &str| tail == "Z" || tail == "+00:00";
        let main = match fraction {
            Some(rest) => {
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                (digits > 0 && zone_ok(&rest[digits..])).then_some(main)?
            }
            None => main.strip_suffix('Z').or_else(|| main.strip_suffix("+00:00"))?,
        };
        let b = main.as_bytes();
        let shape = b.len() == 19
            && [4, 7].iter().all(|&i| b[i] == b'-')
            && b[10] == b'T'
            && [13, 16].iter().all(|&i| b[i] == b':')
            && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
                .iter()
                .all(|&i| b[i].is_ascii_digit());
        let num = |r: std::ops::Range<usize>| main[r].parse::<u32>().ok();
        let ranges = (1..=12).contains(&num(5..7)?)
            && (1..=31).contains(&num(8..10)?)
            && num(11..13)? < 24
            && num(14..16)? < 60
            && num(17..19)? < 61;
        Some(shape && ranges)
    })();
    assert_eq!(ok, Some(true), "{text:?} is not an RFC 3339 UTC timestamp");
}

/// One page of a room's history, newest first (`query` like
/// `?limit=3&before=17`, or empty); asserts 200.
pub async fn history_page(rest: &Rest, room: &str, query: &str) -> Vec<ChatMessage> {
    let reply = rest.get(&format!("/api/rooms/{room}/messages{query}")).await;
    let body = reply.expect_json(200);
    let array =
        body.as_array().unwrap_or_else(|| panic!("{}: not a bare array: {body}", reply.request));
    array.iter().map(ChatMessage::from_json).collect()
}

/// A room's whole history, oldest first, read newest first in pages of 200
/// (`before` the oldest of the previous page). Asserts the pages are in
/// strictly decreasing id order.
pub async fn history_all(rest: &Rest, room: &str) -> Vec<ChatMessage> {
    let mut all: Vec<ChatMessage> = Vec::new();
    loop {
        let query = match all.last() {
            Some(oldest) => format!("?limit=200&before={}", oldest.id),
            None => "?limit=200".to_owned(),
        };
        let page = history_page(rest, room, &query).await;
        let done = page.len() < 200;
        all.extend(page);
        if done {
            break;
        }
    }
    assert!(
        all.windows(2).all(|w| w[0].id > w[1].id),
        "history is not newest first: {:?}",
        ids(&all)
    );
    all.reverse();
    all
}

/// Polls the history until it holds at least `count` messages (the flush
/// interval is at most 1 s; allows `limit`); returns it, oldest first.
pub async fn history_with(
    rest: &Rest,
    room: &str,
    count: usize,
    limit: Duration,
) -> Vec<ChatMessage> {
    let what = format!("room {room}'s history holds {count} messages");
    eventually(&what, limit, move || async move {
        let all = history_all(rest, room).await;
        (all.len() >= count).then_some(all)
    })
    .await
}

/// The ids of `messages`.
pub fn ids(messages: &[ChatMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.id).collect()
}

/// The texts of `messages`.
pub fn texts(messages: &[ChatMessage]) -> Vec<String> {
    messages.iter().map(|m| m.text.clone()).collect()
}

/// Asserts ids strictly increase.
pub fn assert_increasing(what: &str, messages: &[ChatMessage]) {
    assert!(
        messages.windows(2).all(|w| w[0].id < w[1].id),
        "{what}: ids not strictly increasing: {:?}",
        ids(messages)
    );
}

/// Two senders post `n` messages each to `room` at the same time (`a0`,
/// `a1`, ... and `b0`, `b1`, ...) while two readers read all `2 n`;
/// returns what each reader got, in the order it got them.
pub async fn race(
    room: &str,
    n: usize,
    senders: (&mut super::Client, &mut super::Client),
    readers: (&mut super::Client, &mut super::Client),
) -> (Vec<ChatMessage>, Vec<ChatMessage>) {
    async fn send(client: &mut super::Client, room: &str, tag: &str, n: usize) {
        for i in 0..n {
            client.say(room, &format!("{tag}{i}")).await;
        }
    }
    let (alice, bob) = senders;
    let (one, two) = readers;
    let ((), (), got_one, got_two) = tokio::join!(
        send(alice, room, "a", n),
        send(bob, room, "b", n),
        one.next_chats(2 * n),
        two.next_chats(2 * n)
    );
    (got_one, got_two)
}
