//! Limits on making rooms: past `--max-rooms` a new room is refused (403
//! `room_limit`), also after a restart; each client may make
//! `--max-room-rate` rooms a minute (429 `too_many_requests` with
//! `Retry-After` past it), counted by address in guest mode and by the
//! token's subject in JWT mode.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use support::{Node, Reply, Rest, unique};

const SECRET: &str = "room-limits-secret";

/// A token for `sub`, named `name`, valid for an hour.
fn token(sub: &str, name: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let claims = json!({ "sub": sub, "name": name, "exp": now + 3600 });
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).expect("sign a token")
}

async fn try_create(rest: &Rest) -> Reply {
    rest.post("/api/rooms", &json!({ "name": unique("limited") })).await
}

/// Asserts a 429 whose `Retry-After` is 1 to `most` seconds.
fn assert_too_many(reply: &Reply, most: u64) {
    reply.expect_error(429, "too_many_requests");
    let retry = reply.header("retry-after").and_then(|v| v.parse::<u64>().ok());
    assert!(retry.is_some_and(|s| (1..=most).contains(&s)), "Retry-After {retry:?}: {reply:?}");
}

#[tokio::test]
async fn rooms_past_max_rooms_are_refused() {
    let node = Node::new().flag("--max-rooms", "3").flag("--max-room-rate", "0");
    let server = node.start().await;
    let rest = server.rest();
    // "general" is the first of the three.
    try_create(&rest).await.expect_json(201);
    try_create(&rest).await.expect_json(201);
    let message = try_create(&rest).await.expect_error(403, "room_limit");
    assert!(message.contains('3'), "the message does not say the limit: {message}");
    let listed = rest.get("/api/rooms").await.expect_json(200);
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");

    let server = server.restart().await;
    try_create(&server.rest()).await.expect_error(403, "room_limit");
}

#[tokio::test]
async fn an_address_may_make_only_so_many_rooms_a_minute() {
    let server = Node::new().flag("--max-room-rate", "3").start().await;
    let rest = server.rest();
    for _ in 0..3 {
        try_create(&rest).await.expect_json(201);
    }
    // A minute for 3 rooms: one every 20 s.
    assert_too_many(&try_create(&rest).await, 20);
    let elsewhere = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    try_create(&Rest::from_address(server.http, elsewhere, None)).await.expect_json(201);
}

#[tokio::test]
async fn in_jwt_mode_the_rate_is_counted_by_subject() {
    let server =
        Node::new().flag("--jwt-secret", SECRET).flag("--max-room-rate", "2").start().await;
    let alice = server.rest_with_token(&token("alice", "Alice"));
    for _ in 0..2 {
        try_create(&alice).await.expect_json(201);
    }
    assert_too_many(&try_create(&alice).await, 30);
    let renamed = server.rest_with_token(&token("alice", "Alice two"));
    assert_too_many(&try_create(&renamed).await, 30);
    let bob = server.rest_with_token(&token("bob", "Bob"));
    try_create(&bob).await.expect_json(201);
}
