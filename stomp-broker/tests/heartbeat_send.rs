//! The broker's side of heart-beating: the `heart-beat` header of
//! `CONNECTED` follows the spec's negotiation (bounded by
//! `Heartbeat::min_send` / `min_receive`), and the broker sends EOL beats
//! at the negotiated interval on its own, whether or not the client talks.
//!
//! These tests run on tokio's paused clock with real loopback TCP: the
//! runtime advances the clock only when every task is idle, and loopback
//! delivers written octets before the writer's syscall returns, so the
//! readiness of the peer socket is visible before the clock moves on. They
//! use `extra::paused_test` rather than `#[tokio::test(start_paused =
//! true)]` only to add a real-time watchdog: a busy-looping broker task
//! would otherwise freeze the paused clock and hang the test.

#[path = "support/extra.rs"]
mod extra;
mod support;

use std::time::Duration;

use stomp_broker::{Broker, Heartbeat};
use stomp_codec::{Command, Frame, Item};
use support::{Client, TestBroker};
use tokio::time::Instant;

/// Real time a paused test may take (it needs well under a second).
const REAL_LIMIT: Duration = Duration::from_secs(20);

/// Opens a STOMP 1.2 session asking for `heart-beat: {heart_beat}`;
/// returns the client and its CONNECTED frame.
async fn connect_with(broker: &TestBroker, heart_beat: Option<&str>) -> (Client, Frame) {
    let mut c = Client::raw(broker.addr).await;
    let mut raw = String::from("CONNECT\naccept-version:1.2\nhost:/\n");
    if let Some(hb) = heart_beat {
        raw.push_str(&format!("heart-beat:{hb}\n"));
    }
    raw.push_str("\n\0");
    c.send_raw(raw.as_bytes()).await;
    let connected = c.recv().await;
    assert_eq!(connected.command(), Command::Connected, "{connected:?}");
    (c, connected)
}

/// When each heart-beat arrives within `span`, relative to `from`; panics
/// on a frame or on EOF.
async fn beats_during(c: &mut Client, from: Instant, span: Duration) -> Vec<Duration> {
    let mut beats = Vec::new();
    let end = from + span;
    loop {
        // In steps shorter than the client's own wait for a frame.
        let step = end.min(Instant::now() + Duration::from_secs(4));
        match tokio::time::timeout_at(step, c.item()).await {
            Err(_) if step >= end => return beats,
            Err(_) => {}
            Ok(Some(Item::Heartbeat)) => beats.push(from.elapsed()),
            Ok(other) => panic!("expected only heart-beats, got {other:?}"),
        }
    }
}

/// Every gap between consecutive beats (and before the first) is the
/// interval, within a small slack.
fn assert_regular(beats: &[Duration], interval: Duration, expected: usize) {
    assert!(
        beats.len() >= expected,
        "{} beats in the window, wanted {expected}: {beats:?}",
        beats.len()
    );
    let slack = Duration::from_millis(50);
    let mut previous = Duration::ZERO;
    for &at in beats {
        let gap = at - previous;
        assert!(
            gap + slack >= interval && gap <= interval + slack,
            "gap of {gap:?} between beats, expected {interval:?}: {beats:?}"
        );
        previous = at;
    }
}

#[test]
fn connected_heart_beat_header_follows_the_negotiation() {
    extra::paused_test(REAL_LIMIT, || async {
        let broker = TestBroker::start(
            Broker::builder().heartbeat(
                Heartbeat::default()
                    .min_send(Duration::from_millis(500))
                    .min_receive(Duration::from_millis(2000)),
            ),
        )
        .await;
        // (client's heart-beat, expected CONNECTED heart-beat): the broker's
        // send interval is max(client's cy, min_send) or 0 when cy is 0; its
        // receive interval is max(client's cx, min_receive) or 0 when cx is 0.
        let cases = [
            (None, "0,0"),
            (Some("0,0"), "0,0"),
            (Some("0,100"), "500,0"),
            (Some("0,500"), "500,0"),
            (Some("0,3000"), "3000,0"),
            (Some("100,0"), "0,2000"),
            (Some("5000,0"), "0,5000"),
            (Some("100,100"), "500,2000"),
            (Some("10000,20000"), "20000,10000"),
        ];
        for (asked, expected) in cases {
            let (c, connected) = connect_with(&broker, asked).await;
            assert_eq!(
                connected.header_str("heart-beat"),
                Some(expected),
                "client asked for {asked:?}"
            );
            drop(c);
        }
        broker.stop().await;
    });
}

#[test]
fn broker_beats_at_the_interval_the_client_asked_for() {
    extra::paused_test(REAL_LIMIT, || async {
        let broker = TestBroker::default().await;
        let (mut c, connected) = connect_with(&broker, Some("0,1500")).await;
        let t0 = Instant::now();
        assert_eq!(connected.header_str("heart-beat"), Some("1500,0"));
        let beats = beats_during(&mut c, t0, Duration::from_millis(15_700)).await;
        assert_regular(&beats, Duration::from_millis(1500), 10);
        drop(c);
        broker.stop().await;
    });
}

#[test]
fn broker_never_beats_faster_than_min_send() {
    extra::paused_test(REAL_LIMIT, || async {
        let broker = TestBroker::start(
            Broker::builder().heartbeat(Heartbeat::default().min_send(Duration::from_millis(2000))),
        )
        .await;
        let (mut c, connected) = connect_with(&broker, Some("0,100")).await;
        let t0 = Instant::now();
        assert_eq!(connected.header_str("heart-beat"), Some("2000,0"));
        let beats = beats_during(&mut c, t0, Duration::from_millis(10_500)).await;
        assert_regular(&beats, Duration::from_millis(2000), 5);
        drop(c);
        broker.stop().await;
    });
}

#[test]
fn broker_sends_no_beats_when_the_client_wants_none() {
    extra::paused_test(REAL_LIMIT, || async {
        let broker = TestBroker::default().await;
        for asked in [None, Some("0,0"), Some("1000,0")] {
            let (mut c, _) = connect_with(&broker, asked).await;
            let t0 = Instant::now();
            if asked == Some("1000,0") {
                // This client promised beats: keep it alive while listening.
                for _ in 0..5 {
                    c.send_raw(b"\n").await;
                    let beats =
                        beats_during(&mut c, Instant::now(), Duration::from_millis(900)).await;
                    assert!(beats.is_empty(), "unasked-for beats at {beats:?}");
                }
            } else {
                let beats = beats_during(&mut c, t0, Duration::from_secs(5)).await;
                assert!(beats.is_empty(), "client asked for {asked:?}; beats at {beats:?}");
            }
            drop(c);
        }
        broker.stop().await;
    });
}

#[test]
fn broker_beats_on_its_own_schedule_while_the_client_beats_too() {
    extra::paused_test(REAL_LIMIT, || async {
        // Both sides beat every second; the client's beats do not replace the
        // broker's (they are not echoed, and not suppressed either).
        let broker = TestBroker::default().await;
        let (mut c, connected) = connect_with(&broker, Some("1000,1000")).await;
        assert_eq!(connected.header_str("heart-beat"), Some("1000,1000"));
        let t0 = Instant::now();
        let mut beats = Vec::new();
        for i in 1..=8u32 {
            // The client beats at the half seconds, out of phase with the broker.
            let at = t0 + Duration::from_millis(500) + Duration::from_secs(1) * (i - 1);
            beats.extend(beats_during(&mut c, t0, at - t0).await);
            c.send_raw(b"\n").await;
        }
        beats.extend(beats_during(&mut c, t0, Duration::from_millis(8200)).await);
        assert_regular(&beats, Duration::from_secs(1), 8);
        // Still connected and served.
        c.with_receipt(
            Frame::new(Command::Subscribe)
                .with_header("id", "s")
                .with_header("destination", "/topic/hb"),
            "alive",
        )
        .await;
        drop(c);
        broker.stop().await;
    });
}

#[test]
fn frames_written_count_as_beats() {
    extra::paused_test(REAL_LIMIT, || async {
        // Traffic from the broker resets its beat timer: while the broker
        // writes MESSAGE frames more often than the interval, no EOL is needed
        // (the spec's beats are for idle connections), and once the traffic
        // stops the beats resume within one interval.
        let broker = TestBroker::default().await;
        let (mut c, connected) = connect_with(&broker, Some("0,1000")).await;
        assert_eq!(connected.header_str("heart-beat"), Some("1000,0"));
        c.subscribe("s", "/topic/busy", "auto").await;
        let mut last_frame = Instant::now();
        for n in 0..10 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let delivered = broker
                .broker
                .publish("/topic/busy", stomp_codec::Headers::new(), format!("m{n}"))
                .expect("publish");
            assert_eq!(delivered, 1);
            loop {
                match c.item().await {
                    Some(Item::Frame(frame)) => {
                        assert_eq!(frame.command(), Command::Message, "{frame:?}");
                        assert!(last_frame.elapsed() <= Duration::from_millis(1050));
                        last_frame = Instant::now();
                        break;
                    }
                    // Beats are allowed, but only where the gap asks for one.
                    Some(Item::Heartbeat) => {
                        assert!(last_frame.elapsed() >= Duration::from_millis(950), "early beat");
                    }
                    None => panic!("closed"),
                }
            }
        }
        let beats = beats_during(&mut c, last_frame, Duration::from_millis(3500)).await;
        assert_regular(&beats, Duration::from_secs(1), 3);
        drop(c);
        broker.stop().await;
    });
}
