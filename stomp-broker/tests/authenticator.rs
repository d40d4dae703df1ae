//! Authentication on CONNECT: a custom `Authenticator` accepts known
//! login/passcode pairs (its principal becomes `user-name` in CONNECTED and
//! keys user destinations) and refuses others with a `Rejection`, which the
//! client sees as an `ERROR` carrying its message before the connection
//! closes; the default `AllowAll` names the principal after `login`, or
//! the session id without one.

#[path = "support/extra.rs"]
mod extra;
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use stomp_broker::{Authenticator, Broker, ConnectRequest, Principal, Rejection, TransportKind};
use stomp_codec::{Command, Frame};
use support::{Client, TestBroker, body};

/// What the authenticator was shown for one CONNECT.
#[derive(Debug, Clone)]
struct Seen {
    login: Option<String>,
    host: Option<String>,
    session_id: String,
    transport: TransportKind,
    has_peer: bool,
    custom_header: Option<String>,
}

/// Accepts the login/passcode pairs it knows, as principal `user:{login}`.
#[derive(Clone)]
struct Passwords {
    users: HashMap<&'static str, &'static str>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Passwords {
    fn new() -> Self {
        let users = HashMap::from([("alice", "wonderland"), ("bob", "builder")]);
        Self { users, seen: Arc::default() }
    }
}

#[async_trait]
impl Authenticator for Passwords {
    async fn authenticate(&self, request: &ConnectRequest<'_>) -> Result<Principal, Rejection> {
        self.seen.lock().unwrap().push(Seen {
            login: request.login.map(str::to_owned),
            host: request.host.map(str::to_owned),
            session_id: request.session_id.to_owned(),
            transport: request.transport,
            has_peer: request.peer.is_some(),
            custom_header: request.frame.header_str("x-client").map(str::to_owned),
        });
        // An authenticator may wait (a database, a token service).
        tokio::task::yield_now().await;
        let Some(login) = request.login else {
            return Err(Rejection::new("login required"));
        };
        match (self.users.get(login), request.passcode) {
            (Some(expected), Some(given)) if *expected == given => {
                Ok(Principal::new(format!("user:{login}")))
            }
            _ => Err(Rejection::new("bad credentials")
                .with_detail(format!("The passcode given for '{login}' is wrong."))),
        }
    }
}

/// CONNECTs with the given login and passcode headers; the first answer.
async fn connect_as(
    broker: &TestBroker,
    login: Option<&str>,
    passcode: Option<&str>,
) -> (Client, Frame) {
    let mut raw = String::from("CONNECT\naccept-version:1.2\nhost:vhost-1\nx-client:test-suite\n");
    if let Some(login) = login {
        raw.push_str(&format!("login:{login}\n"));
    }
    if let Some(passcode) = passcode {
        raw.push_str(&format!("passcode:{passcode}\n"));
    }
    raw.push_str("\n\0");
    let mut c = Client::raw(broker.addr).await;
    c.send_raw(raw.as_bytes()).await;
    let answer = c.recv().await;
    (c, answer)
}

#[tokio::test]
async fn known_credentials_are_accepted_as_the_authenticators_principal() {
    let auth = Passwords::new();
    let broker = TestBroker::start(Broker::builder().authenticator(auth.clone())).await;
    let (alice, connected) = connect_as(&broker, Some("alice"), Some("wonderland")).await;
    assert_eq!(connected.command(), Command::Connected, "{connected:?}");
    assert_eq!(connected.header_str("user-name"), Some("user:alice"));
    let session = connected.header_str("session").unwrap().to_owned();
    let (bob, connected) = connect_as(&broker, Some("bob"), Some("builder")).await;
    assert_eq!(connected.header_str("user-name"), Some("user:bob"));

    let seen = auth.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let first = &seen[0];
    assert_eq!(first.login.as_deref(), Some("alice"));
    assert_eq!(first.host.as_deref(), Some("vhost-1"));
    assert_eq!(first.session_id, session, "the request's session id is CONNECTED's session");
    assert_eq!(first.transport, TransportKind::Tcp);
    assert!(first.has_peer);
    assert_eq!(first.custom_header.as_deref(), Some("test-suite"), "the whole frame is visible");
    drop((alice, bob));
    broker.stop().await;
}

#[tokio::test]
async fn the_principal_keys_user_destinations() {
    let broker = TestBroker::start(Broker::builder().authenticator(Passwords::new())).await;
    let (mut alice, _) = connect_as(&broker, Some("alice"), Some("wonderland")).await;
    alice.subscribe("inbox", "/user/queue/inbox", "auto").await;
    let (mut bob, _) = connect_as(&broker, Some("bob"), Some("builder")).await;
    bob.publish("/user/user:alice/queue/inbox", "for alice").await;
    let m = alice.expect_message().await;
    assert_eq!(body(&m), "for alice");
    assert_eq!(
        broker.broker.send_to_user(
            "user:alice",
            "/queue/inbox",
            stomp_codec::Headers::new(),
            "from rust"
        ),
        Ok(1)
    );
    assert_eq!(body(&alice.expect_message().await), "from rust");
    // The login alone is not the principal.
    assert_eq!(
        broker.broker.send_to_user("alice", "/queue/inbox", stomp_codec::Headers::new(), "lost"),
        Ok(0)
    );
    drop((alice, bob));
    broker.stop().await;
}

#[tokio::test]
async fn rejections_are_sent_as_error_and_the_connection_closes() {
    let broker = TestBroker::start(Broker::builder().authenticator(Passwords::new())).await;
    for (login, passcode, expected) in [
        (Some("alice"), Some("guess"), "bad credentials"),
        (Some("alice"), None, "bad credentials"),
        (Some("mallory"), Some("wonderland"), "bad credentials"),
        (None, Some("wonderland"), "login required"),
        (None, None, "login required"),
    ] {
        let (mut c, answer) = connect_as(&broker, login, passcode).await;
        assert_eq!(answer.command(), Command::Error, "{login:?}/{passcode:?}: {answer:?}");
        assert_eq!(extra::message(&answer), expected);
        let text = body(&answer);
        assert!(text.contains(expected), "{text:?}");
        if expected == "bad credentials" {
            let detail = format!("The passcode given for '{}' is wrong.", login.unwrap());
            assert!(text.contains(&detail), "the rejection's detail is the body: {text:?}");
        }
        let after = c.expect_closed().await;
        assert!(after.is_empty(), "frames after the ERROR: {after:?}");
    }
    extra::eventually("rejected connections are closed", || broker.broker.connection_count() == 0)
        .await;
    // A rejected attempt does not stop a good one.
    let (c, connected) = connect_as(&broker, Some("alice"), Some("wonderland")).await;
    assert_eq!(connected.command(), Command::Connected, "{connected:?}");
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn a_rejected_client_cannot_send_anything() {
    // Frames pipelined behind a rejected CONNECT are not handled.
    let broker = TestBroker::start(Broker::builder().authenticator(Passwords::new())).await;
    let (mut watcher, _) = connect_as(&broker, Some("bob"), Some("builder")).await;
    watcher.subscribe("w", "/topic/guarded", "auto").await;
    let mut c = Client::raw(broker.addr).await;
    c.send_raw(
        b"CONNECT\naccept-version:1.2\nhost:/\nlogin:alice\npasscode:nope\n\n\0\
          SEND\ndestination:/topic/guarded\nreceipt:r\n\nsneaky\0",
    )
    .await;
    let error = extra::expect_error_then_close(&mut c).await;
    assert_eq!(extra::message(&error), "bad credentials");
    drop(c);
    watcher.expect_silence(std::time::Duration::from_millis(200)).await;
    drop(watcher);
    broker.stop().await;
}

#[tokio::test]
async fn allow_all_names_the_principal_after_login_or_the_session() {
    let broker = TestBroker::default().await;
    let (named, connected) = connect_as(&broker, Some("carol"), None).await;
    assert_eq!(connected.command(), Command::Connected, "{connected:?}");
    assert_eq!(connected.header_str("user-name"), Some("carol"));

    for login in [None, Some("")] {
        let (anonymous, connected) = connect_as(&broker, login, Some("whatever")).await;
        assert_eq!(connected.command(), Command::Connected, "{connected:?}");
        let session = connected.header_str("session").expect("session header");
        assert_eq!(connected.header_str("user-name"), Some(session), "login {login:?}");
        drop(anonymous);
    }
    drop(named);
    broker.stop().await;
}
