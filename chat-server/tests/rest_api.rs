//! The HTTP side of chat-server on one node (SQLite, guest mode): rooms
//! (list, create, get, the errors, no look-alike names), history paging
//! newest first, the JSON error shape, health and info endpoints, and the
//! web page with its vendored STOMP client.

mod support;

use serde_json::{Value, json};
use support::chat::{history_page, history_with, ids};
use support::{Client, Node, Rest, Transport, WAIT, assert_rfc3339_utc, unique};

/// Asserts the contract's room shape; returns the id as a number.
fn room_id(room: &Value) -> u64 {
    let object = room.as_object().unwrap_or_else(|| panic!("room is not an object: {room}"));
    assert_eq!(object.len(), 3, "room has other fields than id, name, createdAt: {room}");
    let id = room["id"].as_str().unwrap_or_else(|| panic!("room id is not a string: {room}"));
    assert!(room["name"].is_string(), "room name is not a string: {room}");
    assert_rfc3339_utc(
        room["createdAt"].as_str().unwrap_or_else(|| panic!("no createdAt: {room}")),
    );
    id.parse().unwrap_or_else(|e| panic!("room id {id:?} is not decimal ({e})"))
}

async fn rooms(rest: &Rest, query: &str) -> Vec<Value> {
    let reply = rest.get(&format!("/api/rooms{query}")).await;
    let body = reply.expect_json(200);
    body.as_array().unwrap_or_else(|| panic!("{}: not a bare array: {body}", reply.request)).clone()
}

#[tokio::test]
async fn rooms_are_listed_created_and_fetched() {
    let server = Node::new().start().await;
    let rest = server.rest();

    let initial = rooms(&rest, "").await;
    let general = initial
        .iter()
        .find(|room| room["name"] == "general")
        .unwrap_or_else(|| panic!("no room \"general\" after the first start: {initial:?}"));
    let general_id = room_id(general);

    let name = unique("lobby");
    let reply = rest.post("/api/rooms", &json!({ "name": name })).await;
    let created = reply.expect_json(201);
    let id = room_id(&created);
    assert_eq!(created["name"], name.as_str());
    assert!(id > general_id, "a new room's id {id} is not above general's {general_id}");
    let location =
        reply.header("location").unwrap_or_else(|| panic!("201 without Location: {reply:?}"));
    assert_eq!(location, format!("/api/rooms/{id}"));

    let fetched = rest.get(location).await.expect_json(200);
    assert_eq!(fetched, created, "GET {location} differs from the POST's answer");

    let other = rest.create_room(&unique("other")).await;
    let listed = rooms(&rest, "").await;
    let listed_ids: Vec<u64> = listed.iter().map(room_id).collect();
    assert!(
        listed_ids.windows(2).all(|w| w[0] < w[1]),
        "rooms not in ascending id order: {listed_ids:?}"
    );
    assert!(
        listed.contains(&created) && listed.contains(&other),
        "new rooms missing from {listed:?}"
    );

    let after = rooms(&rest, &format!("?after={general_id}&limit=1")).await;
    assert_eq!(after, vec![created.clone()], "?after={general_id}&limit=1");
    let after_all = rooms(&rest, &format!("?after={id}")).await;
    assert_eq!(after_all, vec![other], "?after={id}");
}

#[tokio::test]
async fn room_errors_are_json_with_the_documented_codes() {
    let server = Node::new().start().await;
    let rest = server.rest();
    let name = unique("taken");
    rest.create_room(&name).await;
    rest.post("/api/rooms", &json!({ "name": name })).await.expect_error(409, "conflict");

    for body in ["{", "not json", "[1,2]", r#"{"name": 5}"#, "{}", r#"{"name": ""}"#] {
        rest.post_raw("/api/rooms", body).await.expect_error(400, "bad_request");
    }
    // Look-alikes: invisible and direction-changing characters.
    for name in [
        "gen\u{200B}eral",
        "\u{202E}lareneg",
        "gen\u{2066}eral\u{2069}",
        "gen\u{AD}eral",
        "\u{FEFF}general",
        "gen\u{2060}eral",
        "tab\there",
    ] {
        let reply = rest.post("/api/rooms", &json!({ "name": name })).await;
        let message = reply.expect_error(400, "bad_request");
        assert!(message.contains("control or invisible"), "{name:?}: {message}");
    }
    let too_long = "a".repeat(101);
    rest.post("/api/rooms", &json!({ "name": too_long })).await.expect_error(400, "bad_request");
    let longest = format!("{}{}", unique("x"), "b".repeat(100))[..100].to_owned();
    rest.post("/api/rooms", &json!({ "name": longest })).await.expect_json(201);

    rest.get("/api/rooms/999999999").await.expect_error(404, "not_found");
    rest.get("/api/rooms/999999999/messages").await.expect_error(404, "not_found");
    for bad in ["abc", "1x", "-1", "1.5"] {
        rest.get(&format!("/api/rooms/{bad}")).await.expect_error(400, "bad_request");
        rest.get(&format!("/api/rooms/{bad}/messages")).await.expect_error(400, "bad_request");
    }
}

#[tokio::test]
async fn history_pages_newest_first() {
    let server = Node::new().start().await;
    let rest = server.rest();
    let room = rest.create_room_id(&unique("paged")).await;
    let mut alice = Client::connect(&server, Transport::Tcp, "alice").await;
    for i in 0..7 {
        alice.say(&room, &format!("message {i}")).await;
    }
    let all = history_with(&rest, &room, 7, WAIT).await;
    let texts: Vec<String> = all.iter().map(|m| m.text.clone()).collect();
    let expected: Vec<String> = (0..7).map(|i| format!("message {i}")).collect();
    assert_eq!(texts, expected, "history, oldest first");
    assert!(all.iter().all(|m| m.sender == "alice" && m.room_id == room), "{all:?}");

    let newest_first: Vec<u64> = ids(&all).into_iter().rev().collect();
    let whole = history_page(&rest, &room, "").await;
    assert_eq!(ids(&whole), newest_first, "default page (limit 50)");

    let mut paged = Vec::new();
    let mut query = "?limit=3".to_owned();
    for expected_len in [3, 3, 1, 0] {
        let page = history_page(&rest, &room, &query).await;
        assert_eq!(page.len(), expected_len, "page {query}: {:?}", ids(&page));
        if let Some(oldest) = page.last() {
            query = format!("?before={}&limit=3", oldest.id);
        }
        paged.extend(ids(&page));
    }
    assert_eq!(paged, newest_first, "pages concatenated");

    let before_newest = history_page(&rest, &room, &format!("?before={}", newest_first[0])).await;
    assert_eq!(ids(&before_newest), newest_first[1..].to_vec(), "before the newest");
}

#[tokio::test]
async fn history_rejects_bad_paging_parameters() {
    let server = Node::new().start().await;
    let rest = server.rest();
    let room = rest.create_room_id(&unique("params")).await;
    for query in ["?limit=abc", "?limit=-1", "?limit=1.5", "?before=xyz", "?before=-3"] {
        rest.get(&format!("/api/rooms/{room}/messages{query}"))
            .await
            .expect_error(400, "bad_request");
    }
    history_page(&rest, &room, "?limit=200").await;
}

#[tokio::test]
async fn health_ready_and_info() {
    let server = Node::new().start().await;
    let rest = server.rest();
    assert_eq!(rest.get("/healthz").await.expect_json(200), json!({ "status": "ok" }));
    let ready = rest.get("/readyz").await.expect_json(200);
    assert_eq!(
        ready,
        json!({ "status": "ready", "checks": { "history": "ok", "rooms": "ok", "backplane": "ok" } })
    );
    let info = rest.get("/api/info").await.expect_json(200);
    assert_eq!(
        info,
        json!({ "auth": "guest", "maxTextChars": 2000, "version": env!("CARGO_PKG_VERSION") })
    );
}

#[tokio::test]
async fn the_page_and_its_vendored_client_are_served() {
    let server = Node::new().start().await;
    let rest = server.rest();
    let page = rest.get("/").await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.header("content-type").is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        page.headers
    );
    assert!(
        page.body.contains("/vendor/stomp.umd.min.js"),
        "the page does not load /vendor/stomp.umd.min.js"
    );

    let script = rest.get("/vendor/stomp.umd.min.js").await;
    assert_eq!(script.status, 200, "{}", script.request);
    let script_type = script.header("content-type").unwrap_or_default();
    assert!(script_type.contains("javascript"), "content-type {script_type:?}");
    assert!(
        script.body.len() > 10_000 && script.body.contains("StompJs"),
        "not the stompjs UMD bundle"
    );

    let license = rest.get("/vendor/LICENSE-stompjs.txt").await;
    assert_eq!(license.status, 200, "{}", license.request);
    assert!(license.body.contains("License"), "{:.200}", license.body);
    let modules = ["/dom.js", "/session.js", "/rooms.js", "/messages.js", "/outbox.js"];
    for asset in
        ["/app.js", "/connection.js", "/style.css", "/favicon.svg"].into_iter().chain(modules)
    {
        let reply = rest.get(asset).await;
        assert_eq!(reply.status, 200, "{asset}");
        assert!(!reply.body.is_empty(), "{asset} is empty");
    }
}

#[tokio::test]
async fn a_created_room_is_announced_on_topic_rooms() {
    let server = Node::new().start().await;
    let mut watcher = Client::connect(&server, Transport::Ws, "watcher").await;
    watcher.subscribe("/topic/rooms", "rooms").await;
    let created = server.rest().create_room(&unique("announced")).await;
    let frame = watcher.next_message().await;
    let announced: Value = serde_json::from_slice(frame.body()).expect("room JSON");
    assert_eq!(announced, created);
}
