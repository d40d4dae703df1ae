//! The broker's receiving side of heart-beating: a client that promised
//! beats and stays silent for `tolerance` × the agreed interval gets an
//! `ERROR` (mentioning the heart-beat) and is closed, counted in
//! `Broker::stats().heartbeat_timeouts`; any inbound octet (an EOL beat, a
//! frame, even part of one) counts as a sign of life.
//!
//! On tokio's paused clock with real loopback TCP (see `heartbeat_send.rs`
//! for why that is reliable, and `extra::paused_test` for the watchdog).

#[path = "support/extra.rs"]
mod extra;
mod support;

use std::time::Duration;

use stomp_broker::{Broker, Heartbeat};
use stomp_codec::{Command, Frame, Version};
use support::{Client, TestBroker};
use tokio::time::Instant;

/// Real time a paused test may take (it needs well under a second).
const REAL_LIMIT: Duration = Duration::from_secs(20);

/// Opens a session with `CONNECT` headers `headers` (one per line, each
/// ending in LF); returns the client and its CONNECTED frame.
async fn connect_raw(broker: &TestBroker, headers: &str) -> (Client, Frame) {
    let mut c = Client::raw(broker.addr).await;
    c.send_raw(format!("CONNECT\n{headers}\n\0").as_bytes()).await;
    let connected = c.recv().await;
    assert_eq!(connected.command(), Command::Connected, "{connected:?}");
    (c, connected)
}

/// Sends `frame` with a receipt and checks the RECEIPT: the session is alive.
async fn assert_alive(c: &mut Client, receipt: &str) {
    let frame = Frame::new(Command::Subscribe)
        .with_header("id", receipt.to_owned())
        .with_header("destination", "/topic/alive");
    c.with_receipt(frame, receipt).await;
}

#[test]
fn silent_client_is_closed_after_tolerance_times_the_interval() {
    extra::paused_test(REAL_LIMIT, || async {
        let broker = TestBroker::default().await;
        let (mut c, connected) =
            connect_raw(&broker, "accept-version:1.2\nhost:/\nheart-beat:1000,0\n").await;
        let t0 = Instant::now();
        assert_eq!(connected.header_str("heart-beat"), Some("0,1000"));
        let error = extra::expect_error_then_close(&mut c).await;
        let waited = t0.elapsed();
        let message = extra::message(&error);
        assert!(message.contains("heart-beat"), "{message:?}");
        extra::assert_readable_error(&error);
        // Default tolerance: 2 intervals of silence.
        assert!(waited >= Duration::from_millis(2000), "closed after only {waited:?}");
        assert!(waited <= Duration::from_millis(2100), "closed only after {waited:?}");
        assert_eq!(broker.broker.stats().heartbeat_timeouts, 1);
        broker.stop().await;
    });
}

#[test]
fn every_timed_out_connection_is_counted() {
    extra::paused_test(REAL_LIMIT, || async {
        let broker = TestBroker::default().await;
        let mut silent = Vec::new();
        for _ in 0..3 {
            silent.push(
                connect_raw(&broker, "accept-version:1.2\nhost:/\nheart-beat:1000,0\n").await.0,
            );
        }
        // A client that promised nothing is left alone.
        let (mut quiet, _) =
            connect_raw(&broker, "accept-version:1.2\nhost:/\nheart-beat:0,0\n").await;
        for c in &mut silent {
            let error = extra::expect_error_then_close(c).await;
            assert!(extra::message(&error).contains("heart-beat"), "{error:?}");
        }
        assert_eq!(broker.broker.stats().heartbeat_timeouts, 3);
        quiet.expect_silence(Duration::from_secs(10)).await;
        assert_alive(&mut quiet, "quiet").await;
        assert_eq!(broker.broker.stats().heartbeat_timeouts, 3);
        drop(quiet);
        broker.stop().await;
    });
}

#[test]
fn tolerance_and_min_receive_are_configurable() {
    extra::paused_test(REAL_LIMIT, || async {
        let heartbeat = Heartbeat::default().min_receive(Duration::from_millis(500)).tolerance(3.0);
        let broker = TestBroker::start(Broker::builder().heartbeat(heartbeat)).await;
        // The client can beat every 100 ms; the broker asks for no more
        // than every 500 ms, and waits 3 × 500 ms.
        let (mut c, connected) =
            connect_raw(&broker, "accept-version:1.2\nhost:/\nheart-beat:100,0\n").await;
        let t0 = Instant::now();
        assert_eq!(connected.header_str("heart-beat"), Some("0,500"));
        let error = extra::expect_error_then_close(&mut c).await;
        let waited = t0.elapsed();
        assert!(extra::message(&error).contains("heart-beat"), "{error:?}");
        assert!(waited >= Duration::from_millis(1500), "closed after only {waited:?}");
        assert!(waited <= Duration::from_millis(1600), "closed only after {waited:?}");
        assert_eq!(broker.broker.stats().heartbeat_timeouts, 1);
        broker.stop().await;
    });
}

#[test]
fn eol_beats_keep_a_client_connected_for_a_long_time() {
    extra::paused_test(REAL_LIMIT, || async {
        let broker = TestBroker::default().await;
        let (mut c, connected) =
            connect_raw(&broker, "accept-version:1.2\nhost:/\nheart-beat:1000,0\n").await;
        assert_eq!(connected.header_str("heart-beat"), Some("0,1000"));
        // Ten minutes of beats exactly at the interval, LF and CR LF.
        for i in 0..600 {
            c.send_raw(if i % 2 == 0 { b"\n" } else { b"\r\n" }).await;
            c.expect_silence(Duration::from_secs(1)).await;
        }
        assert_alive(&mut c, "after-beats").await;
        assert_eq!(broker.broker.stats().heartbeat_timeouts, 0);
        drop(c);
        broker.stop().await;
    });
}

#[test]
fn beats_slower_than_asked_but_within_tolerance_keep_a_client_connected() {
    extra::paused_test(REAL_LIMIT, || async {
        let broker = TestBroker::default().await;
        // The client offers 100 ms; min_receive (1 s) raises it to 1 s, so
        // beats every 1.8 s are late but within the tolerance of 2.
        let (mut c, connected) =
            connect_raw(&broker, "accept-version:1.2\nhost:/\nheart-beat:100,0\n").await;
        assert_eq!(connected.header_str("heart-beat"), Some("0,1000"));
        for _ in 0..50 {
            c.expect_silence(Duration::from_millis(1800)).await;
            c.send_raw(b"\n").await;
        }
        assert_alive(&mut c, "late-beats").await;
        assert_eq!(broker.broker.stats().heartbeat_timeouts, 0);
        drop(c);
        broker.stop().await;
    });
}

#[test]
fn any_inbound_octet_counts_even_part_of_a_frame() {
    extra::paused_test(REAL_LIMIT, || async {
        let broker = TestBroker::default().await;
        let (mut c, _) =
            connect_raw(&broker, "accept-version:1.2\nhost:/\nheart-beat:1000,0\n").await;
        // One octet of a SUBSCRIBE every 1.5 s: no beat and no whole frame
        // for far longer than the 2 s tolerance, yet never 2 s of silence.
        let frame = b"SUBSCRIBE\nid:slow\ndestination:/topic/slow\nreceipt:slow-done\n\n\0";
        let t0 = Instant::now();
        for &octet in frame {
            c.expect_silence(Duration::from_millis(1500)).await;
            c.send_raw(&[octet]).await;
        }
        assert!(t0.elapsed() > Duration::from_secs(60));
        let receipt = c.expect(Command::Receipt).await;
        assert_eq!(receipt.header_str("receipt-id"), Some("slow-done"));
        // And frames count too: SENDs every 1.5 s, no EOL beats.
        for n in 0..20 {
            c.expect_silence(Duration::from_millis(1500)).await;
            c.send(support::send("/topic/slow", &format!("m{n}"))).await;
            assert_eq!(support::body(&c.expect_message().await), format!("m{n}"));
        }
        assert_eq!(broker.broker.stats().heartbeat_timeouts, 0);
        drop(c);
        broker.stop().await;
    });
}

#[test]
fn clients_that_promise_no_beats_are_never_timed_out() {
    extra::paused_test(REAL_LIMIT, || async {
        let broker = TestBroker::default().await;
        let (mut none, connected) = connect_raw(&broker, "accept-version:1.2\nhost:/\n").await;
        assert_eq!(connected.header_str("heart-beat"), Some("0,0"));
        let (mut zero, _) =
            connect_raw(&broker, "accept-version:1.2\nhost:/\nheart-beat:0,1000\n").await;
        // STOMP 1.0 has no heart-beats: the header is not negotiated.
        let (mut old, connected) = connect_raw(&broker, "login:old\nheart-beat:1000,1000\n").await;
        assert_eq!(connected.header_str("version"), Some("1.0"));
        old.set_version(Version::V1_0);
        for c in [&mut none, &mut zero, &mut old] {
            c.expect_silence(Duration::from_secs(4)).await;
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
        for (i, c) in [&mut none, &mut zero, &mut old].into_iter().enumerate() {
            assert_alive(c, &format!("idle-{i}")).await;
        }
        assert_eq!(broker.broker.stats().heartbeat_timeouts, 0);
        drop((none, zero, old));
        broker.stop().await;
    });
}
