//! Opening a session, on the wire: `CONNECT` and `STOMP` frames, the
//! version negotiated from `accept-version`, the headers of `CONNECTED`,
//! and the `ERROR`-then-close answers to a bad start (an unsupported
//! version, another frame first, a second `CONNECT`, an invalid
//! `heart-beat`, no `CONNECT` within the connect timeout).

#[path = "support/extra.rs"]
mod extra;
mod support;

use std::time::Duration;

use stomp_broker::{Broker, Heartbeat};
use stomp_codec::{Command, Frame, Version};
use support::{Client, TestBroker};

/// Sends raw octets on a fresh connection; returns the client and the
/// first frame it receives.
async fn first_answer(broker: &TestBroker, raw: &[u8]) -> (Client, Frame) {
    let mut c = Client::raw(broker.addr).await;
    c.send_raw(raw).await;
    let answer = c.recv().await;
    (c, answer)
}

/// The `version` of the CONNECTED answer to `raw`.
async fn negotiated(broker: &TestBroker, raw: &[u8]) -> String {
    let (c, connected) = first_answer(broker, raw).await;
    assert_eq!(connected.command(), Command::Connected, "{connected:?}");
    drop(c);
    connected.header_str("version").expect("CONNECTED has a version header").to_owned()
}

#[tokio::test]
async fn without_accept_version_the_session_is_stomp_1_0() {
    let broker = TestBroker::default().await;
    assert_eq!(negotiated(&broker, b"CONNECT\nlogin:a\npasscode:b\n\n\0").await, "1.0");
    assert_eq!(negotiated(&broker, b"CONNECT\n\n\0").await, "1.0");
    broker.stop().await;
}

#[tokio::test]
async fn the_newest_common_version_is_chosen() {
    let broker = TestBroker::default().await;
    let cases: [(&[u8], &str); 8] = [
        (b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:/\n\n\0", "1.2"),
        (b"CONNECT\naccept-version:1.2,1.1,1.0\nhost:/\n\n\0", "1.2"),
        (b"CONNECT\naccept-version:1.1\nhost:/\n\n\0", "1.1"),
        (b"CONNECT\naccept-version:1.0\nhost:/\n\n\0", "1.0"),
        (b"CONNECT\naccept-version:1.0,1.1\nhost:/\n\n\0", "1.1"),
        (b"CONNECT\naccept-version:1.1,2.0\nhost:/\n\n\0", "1.1"),
        (b"STOMP\naccept-version:1.2\nhost:/\n\n\0", "1.2"),
        (b"STOMP\r\naccept-version:1.1,1.2\r\nhost:/\r\n\r\n\0", "1.2"),
    ];
    for (raw, expected) in cases {
        assert_eq!(negotiated(&broker, raw).await, expected, "{}", String::from_utf8_lossy(raw));
    }
    broker.stop().await;
}

#[tokio::test]
async fn the_negotiated_version_governs_the_session() {
    // A 1.1 session: escapes apply (1.1 has \c), and the session works.
    let broker = TestBroker::default().await;
    let (mut c, connected) =
        first_answer(&broker, b"CONNECT\naccept-version:1.1\nhost:/\n\n\0").await;
    assert_eq!(connected.header_str("version"), Some("1.1"));
    c.set_version(Version::V1_1);
    c.send_raw(b"SUBSCRIBE\nid:s\ndestination:/topic/v11\nreceipt:a\\cb\n\n\0").await;
    let receipt = c.expect(Command::Receipt).await;
    assert_eq!(receipt.header_str("receipt-id"), Some("a:b"));
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn unsupported_versions_get_an_error_listing_the_supported_ones() {
    let broker = TestBroker::default().await;
    for raw in [
        &b"CONNECT\naccept-version:2.0,3.1\nhost:/\n\n\0"[..],
        b"STOMP\naccept-version:0.9\nhost:/\n\n\0",
        b"CONNECT\naccept-version:\nhost:/\n\n\0",
    ] {
        let mut c = Client::raw(broker.addr).await;
        c.send_raw(raw).await;
        let error = extra::expect_error_then_close(&mut c).await;
        extra::assert_readable_error(&error);
        let versions = error.header_str("version").expect("ERROR lists the supported versions");
        let mut listed: Vec<&str> = versions.split(',').map(str::trim).collect();
        listed.sort_unstable();
        assert_eq!(listed, ["1.0", "1.1", "1.2"], "version header {versions:?}");
    }
    extra::assert_round_trip(broker.addr, "after-bad-versions").await;
    broker.stop().await;
}

#[tokio::test]
async fn connected_carries_version_heart_beat_server_and_session() {
    let broker = TestBroker::start(Broker::builder().server_name("test-server/7.1")).await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let (c, connected) = first_answer(
            &broker,
            b"CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\nlogin:u\n\n\0",
        )
        .await;
        assert_eq!(connected.command(), Command::Connected, "{connected:?}");
        assert_eq!(connected.header_str("version"), Some("1.2"));
        assert_eq!(connected.header_str("heart-beat"), Some("0,0"));
        assert_eq!(connected.header_str("server"), Some("test-server/7.1"));
        let session = connected.header_str("session").expect("CONNECTED has a session header");
        assert!(!session.is_empty());
        assert!(connected.body().is_empty(), "CONNECTED has no body");
        sessions.push(session.to_owned());
        drop(c);
    }
    sessions.sort();
    sessions.dedup();
    assert_eq!(sessions.len(), 3, "session ids are unique: {sessions:?}");
    broker.stop().await;

    // The default server name: product/version.
    let broker = TestBroker::default().await;
    let (c, connected) = first_answer(&broker, b"STOMP\naccept-version:1.2\nhost:/\n\n\0").await;
    let server = connected.header_str("server").expect("server header");
    assert!(server.starts_with("stomp-broker/"), "{server:?}");
    assert!(connected.header_str("heart-beat").is_some(), "{connected:?}");
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn a_frame_other_than_connect_first_is_an_error() {
    let broker = TestBroker::default().await;
    for raw in [
        &b"SEND\ndestination:/topic/a\n\nhello\0"[..],
        b"SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\0",
        b"DISCONNECT\nreceipt:r\n\n\0",
        b"CONNECTED\nversion:1.2\n\n\0",
        b"BEGIN\ntransaction:t\n\n\0",
    ] {
        let mut c = Client::raw(broker.addr).await;
        c.send_raw(raw).await;
        let error = extra::expect_error_then_close(&mut c).await;
        extra::assert_readable_error(&error);
        assert!(
            extra::message(&error).contains("CONNECT"),
            "{:?} for {}",
            extra::message(&error),
            String::from_utf8_lossy(raw)
        );
    }
    // Heart-beat EOLs before CONNECT are not frames: they are allowed.
    let mut c = Client::raw(broker.addr).await;
    c.send_raw(b"\n\r\n\nCONNECT\naccept-version:1.2\nhost:/\n\n\0").await;
    c.expect(Command::Connected).await;
    drop(c);
    extra::assert_round_trip(broker.addr, "after-bad-starts").await;
    broker.stop().await;
}

#[tokio::test]
async fn a_second_connect_is_an_error() {
    let broker = TestBroker::default().await;
    for again in [
        &b"CONNECT\naccept-version:1.2\nhost:/\n\n\0"[..],
        b"STOMP\naccept-version:1.2\nhost:/\n\n\0",
    ] {
        let mut c = broker.client("twice").await;
        c.send_raw(again).await;
        let error = extra::expect_error_then_close(&mut c).await;
        extra::assert_readable_error(&error);
        assert!(extra::message(&error).contains("connected"), "{error:?}");
    }
    extra::assert_round_trip(broker.addr, "after-second-connect").await;
    broker.stop().await;
}

#[tokio::test]
async fn an_invalid_heart_beat_header_is_an_error() {
    let broker = TestBroker::default().await;
    for value in ["abc", "1000", "1000,", ",1000", "-1,0", "1,2,3", "1000;1000", "0x10,0", ""] {
        let mut c = Client::raw(broker.addr).await;
        c.send_raw(
            format!("CONNECT\naccept-version:1.2\nhost:/\nheart-beat:{value}\n\n\0").as_bytes(),
        )
        .await;
        let error = extra::expect_error_then_close(&mut c).await;
        extra::assert_readable_error(&error);
        assert!(extra::message(&error).contains("heart-beat"), "heart-beat:{value} gave {error:?}");
    }
    // Surrounding spaces are tolerated, and the values are used.
    let (c, connected) =
        first_answer(&broker, b"CONNECT\naccept-version:1.2\nhost:/\nheart-beat: 0, 5000\n\n\0")
            .await;
    assert_eq!(connected.command(), Command::Connected, "{connected:?}");
    assert_eq!(connected.header_str("heart-beat"), Some("5000,0"));
    drop(c);
    extra::assert_round_trip(broker.addr, "after-bad-heart-beats").await;
    broker.stop().await;
}

#[tokio::test]
async fn no_connect_within_the_connect_timeout_is_an_error() {
    let timeout = Duration::from_millis(300);
    let broker = TestBroker::start(
        Broker::builder().heartbeat(Heartbeat::default().connect_timeout(timeout)),
    )
    .await;
    // Silent; and chatty with heart-beats only (which are not CONNECT).
    let mut silent = Client::raw(broker.addr).await;
    let mut beating = Client::raw(broker.addr).await;
    let started = tokio::time::Instant::now();
    let beats = async {
        for _ in 0..10 {
            let _ = beating.stream.try_write(b"\n");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        extra::expect_error_then_close(&mut beating).await
    };
    let (error, beating_error) = tokio::join!(extra::expect_error_then_close(&mut silent), beats);
    assert!(started.elapsed() >= timeout, "closed after only {:?}", started.elapsed());
    drop((silent, beating));
    for error in [error, beating_error] {
        extra::assert_readable_error(&error);
        assert!(extra::message(&error).contains("CONNECT"), "{error:?}");
    }
    // A client that connected in time is not affected by the timeout.
    let mut c = broker.client("prompt").await;
    c.expect_silence(timeout * 2).await;
    c.publish("/topic/still-here", "x").await;
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn connect_headers_are_not_unescaped() {
    // CONNECT and CONNECTED frames have no escapes in any version: a
    // backslash in the login is an ordinary octet, and comes back as such
    // in the user name AllowAll gives the session.
    let broker = TestBroker::default().await;
    let (c, connected) =
        first_answer(&broker, b"CONNECT\naccept-version:1.2\nhost:/\nlogin:dom\\cuser\n\n\0").await;
    assert_eq!(connected.command(), Command::Connected, "{connected:?}");
    assert_eq!(connected.header("user-name"), Some(&b"dom\\cuser"[..]));
    drop(c);
    broker.stop().await;
}
