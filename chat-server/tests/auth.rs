//! Identity: with `--jwt-secret`, STOMP CONNECT and REST need a valid HS256
//! token (as `passcode` or `Authorization: Bearer`), and the sender of a
//! message is the token's `name` (else `sub`); a token is refused before
//! its `nbf` as after its `exp`; in guest mode, the CONNECT `login` is the
//! nickname, within its rules (no control or invisible characters).

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::stomp::assert_error_mentions;
use support::{Client, Node, Server, Transport, unique};

const SECRET: &str = "test-secret-3f9a";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// An HS256 token of `claims`, signed with `secret`.
fn token(secret: &str, claims: &Value) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).expect("sign a token")
}

/// A valid token for `sub` (and `name`, if given), for an hour.
fn valid(sub: &str, name: Option<&str>) -> String {
    let mut claims = json!({ "sub": sub, "exp": now() + 3600 });
    if let Some(name) = name {
        claims["name"] = json!(name);
    }
    token(SECRET, &claims)
}

async fn jwt_server() -> Server {
    Node::new().flag("--jwt-secret", SECRET).start().await
}

/// Tokens the server must refuse, with what is wrong with them.
fn bad_tokens() -> Vec<(&'static str, String)> {
    vec![
        (
            "signed with another secret",
            token("another-secret", &json!({ "sub": "eve", "exp": now() + 3600 })),
        ),
        ("expired an hour ago", token(SECRET, &json!({ "sub": "eve", "exp": now() - 3600 }))),
        (
            "not valid for an hour yet (nbf)",
            token(SECRET, &json!({ "sub": "eve", "exp": now() + 7200, "nbf": now() + 3600 })),
        ),
        (
            "not valid for two minutes yet (nbf, past the leeway)",
            token(SECRET, &json!({ "sub": "eve", "exp": now() + 7200, "nbf": now() + 120 })),
        ),
        (
            "named with a zero-width space",
            token(SECRET, &json!({ "sub": "eve", "name": "Al\u{200B}ice", "exp": now() + 3600 })),
        ),
        ("without exp", token(SECRET, &json!({ "sub": "eve" }))),
        ("without sub", token(SECRET, &json!({ "name": "eve", "exp": now() + 3600 }))),
        ("garbage", "garbage".to_owned()),
        ("three garbage parts", "a.b.c".to_owned()),
    ]
}

#[tokio::test]
async fn jwt_mode_connect_needs_a_valid_token() {
    let server = jwt_server().await;
    assert_eq!(server.rest().get("/api/info").await.expect_json(200)["auth"], "jwt");

    for transport in [Transport::Tcp, Transport::Ws] {
        let error = Client::connect_refused(&server, transport, &[("login", "alice")]).await;
        assert_error_mentions(&error, "invalid token");
        for (what, bad) in bad_tokens() {
            let error = Client::connect_refused(
                &server,
                transport,
                &[("login", "eve"), ("passcode", &bad)],
            )
            .await;
            assert!(
                support::stomp::error_message(&error).contains("invalid token"),
                "a token {what} as passcode over {transport:?}: {error:?}"
            );
            let bearer = format!("Bearer {bad}");
            let error =
                Client::connect_refused(&server, transport, &[("Authorization", &bearer)]).await;
            assert!(
                support::stomp::error_message(&error).contains("invalid token"),
                "a token {what} as Authorization over {transport:?}: {error:?}"
            );
        }
    }
}

#[tokio::test]
async fn jwt_mode_a_token_valid_from_now_or_before_is_accepted() {
    let server = jwt_server().await;
    for (what, nbf) in [("an hour ago", now() - 3600), ("now", now())] {
        let good = token(SECRET, &json!({ "sub": "dave", "exp": now() + 3600, "nbf": nbf }));
        let reply = server.rest_with_token(&good).get("/api/rooms").await;
        assert_eq!(reply.status, 200, "a token valid from {what}: {reply:?}");
        let client = Client::connect_with(&server, Transport::Tcp, &[("passcode", &good)]).await;
        client.disconnect().await;
    }
}

#[tokio::test]
async fn jwt_mode_the_sender_is_the_tokens_name_or_sub() {
    let server = jwt_server().await;
    let alice_token = valid("user-1", Some("Alice"));
    let room = server.rest_with_token(&alice_token).create_room_id(&unique("jwt")).await;
    // The token wins over the login.
    let mut alice = Client::connect_with(
        &server,
        Transport::Ws,
        &[("login", "mallory"), ("passcode", &alice_token)],
    )
    .await;
    let bearer = format!("Bearer {}", valid("bob-sub", None));
    let mut bob =
        Client::connect_with(&server, Transport::Tcp, &[("Authorization", &bearer)]).await;
    alice.join(&room, "a").await;
    bob.join(&room, "b").await;

    alice.say(&room, "from alice").await;
    bob.say(&room, "from bob").await;
    for client in [&mut alice, &mut bob] {
        let got = client.next_chats(2).await;
        let pairs: Vec<(&str, &str)> =
            got.iter().map(|m| (m.sender.as_str(), m.text.as_str())).collect();
        assert_eq!(
            pairs,
            [("Alice", "from alice"), ("bob-sub", "from bob")],
            "{:?}",
            client.transport
        );
    }
}

#[tokio::test]
async fn jwt_mode_rest_needs_a_bearer_token() {
    let server = jwt_server().await;
    let anonymous = server.rest();
    let good = valid("carol", None);
    let room = server.rest_with_token(&good).create_room_id(&unique("guarded")).await;
    let guarded = [
        "/api/rooms".to_owned(),
        format!("/api/rooms/{room}"),
        format!("/api/rooms/{room}/messages"),
    ];

    for path in &guarded {
        anonymous.get(path).await.expect_error(401, "unauthorized");
        for (what, bad) in bad_tokens() {
            let reply = anonymous.with_token(Some(&bad)).get(path).await;
            assert_eq!(reply.status, 401, "GET {path} with a token {what}: {reply:?}");
            reply.expect_error(401, "unauthorized");
        }
        let basic = anonymous.get_authorization(path, "Basic Y2Fyb2w6cHc=").await;
        basic.expect_error(401, "unauthorized");
        server.rest_with_token(&good).get(path).await.expect_json(200);
    }
    anonymous
        .post("/api/rooms", &json!({ "name": unique("nope") }))
        .await
        .expect_error(401, "unauthorized");

    // The operators' pages are open too (see README: keep /metrics off the
    // public side of a proxy).
    let open_paths =
        ["/", "/healthz", "/readyz", "/api/info", "/api/status", "/status", "/metrics"];
    for open in open_paths.into_iter().chain(["/vendor/stomp.umd.min.js"]) {
        let reply = anonymous.get(open).await;
        assert_eq!(reply.status, 200, "{open} must not need a token: {reply:?}");
    }
}

#[tokio::test]
async fn guest_mode_the_login_is_the_nickname() {
    let server = Node::new().start().await;
    let room = server.rest().create_room_id(&unique("guests")).await;
    let mut watcher = Client::connect(&server, Transport::Tcp, "watcher").await;
    watcher.join(&room, "w").await;

    let longest = "n".repeat(32);
    let wide = "é".repeat(32);
    for (transport, login, text) in [
        (Transport::Tcp, "carol", "one"),
        (Transport::Ws, longest.as_str(), "two"),
        (Transport::Tcp, wide.as_str(), "three"),
    ] {
        let mut client = Client::connect(&server, transport, login).await;
        client.say(&room, text).await;
        let got = watcher.next_chat().await;
        assert_eq!((got.sender.as_str(), got.text.as_str()), (login, text));
    }

    for headers in [&[][..], &[("login", "")][..]] {
        let mut anonymous = Client::connect_with(&server, Transport::Ws, headers).await;
        anonymous.say(&room, "who am i").await;
        let got = watcher.next_chat().await;
        let number =
            got.sender.strip_prefix("guest-").unwrap_or_else(|| panic!("sender {:?}", got.sender));
        assert!(
            !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()),
            "sender {:?}",
            got.sender
        );
    }

    let too_long = "n".repeat(33);
    let bad_logins = [
        too_long.as_str(),
        "bell\u{7}",
        "tab\tbed",
        "esc\u{1b}[31m",
        "del\u{7f}",
        "car\u{200B}ol",
        "\u{202E}lorac",
        "carol\u{2066}",
        "\u{FEFF}carol",
        "\u{3164}",
    ];
    for bad in bad_logins {
        for transport in [Transport::Tcp, Transport::Ws] {
            let error = Client::connect_refused(&server, transport, &[("login", bad)]).await;
            assert_error_mentions(&error, "invalid login");
        }
    }
}
