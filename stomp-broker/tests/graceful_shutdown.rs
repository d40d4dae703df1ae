//! Graceful shutdown with many clients: `Broker::shutdown` with 1,000
//! CONNECTed, subscribed clients returns (well within a generous bound),
//! every client receives an `ERROR` saying the server is shutting down and
//! then end of stream, the serve future returns `Ok`, and no connection is
//! left open.

#[path = "support/extra.rs"]
mod extra;
mod support;

use std::time::Duration;

use stomp_broker::{Broker, PublishError};
use stomp_codec::{Command, Headers};
use support::{Client, TestBroker};
use tokio::task::JoinSet;

const CLIENTS: usize = 1_000;
/// CONNECTs in flight at once.
const BATCH: usize = 100;
/// A liveness bound on `shutdown`, not a performance target.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(10);

/// What one client saw after shutdown began.
#[derive(Debug)]
enum Seen {
    /// An ERROR with this message, then EOF.
    ErrorThenEof(String),
    /// Anything else: these frames, then EOF.
    Other(#[allow(dead_code, reason = "shown by Debug in failures")] String),
}

/// Reads until end of stream; the frames in order.
async fn read_to_end(mut c: Client) -> Seen {
    let frames = c.expect_closed().await;
    match frames.as_slice() {
        [error] if error.command() == Command::Error => {
            Seen::ErrorThenEof(error.header_str("message").unwrap_or_default().to_owned())
        }
        other => Seen::Other(format!("{other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_closes_a_thousand_clients_with_an_error_each() {
    let broker = TestBroker::default().await;
    let handle = broker.broker.clone();
    let addr = broker.addr;

    let mut clients = Vec::with_capacity(CLIENTS);
    for batch in 0..CLIENTS / BATCH {
        let mut connecting = JoinSet::new();
        for i in 0..BATCH {
            let n = batch * BATCH + i;
            connecting.spawn(async move {
                let mut c = Client::connect(addr, &format!("user-{n}")).await;
                c.subscribe(&format!("s{n}"), &format!("/topic/shutdown.{}", n % 10), "auto").await;
                (n, c)
            });
        }
        while let Some(c) = connecting.join_next().await {
            clients.push(c.expect("connect and subscribe"));
        }
    }
    assert_eq!(handle.connection_count(), CLIENTS);
    // Deliveries queued before shutdown still arrive before the ERROR.
    assert_eq!(handle.publish("/topic/shutdown.0", Headers::new(), "before"), Ok(CLIENTS / 10));
    let mut readers = JoinSet::new();
    for (n, mut c) in clients {
        readers.spawn(async move {
            if n % 10 == 0 {
                let m = c.expect_message().await;
                assert_eq!(support::body(&m), "before");
            }
            read_to_end(c).await
        });
    }

    let stopping = tokio::time::timeout(SHUTDOWN_BOUND, broker.stop()).await;
    assert!(stopping.is_ok(), "shutdown did not complete within {SHUTDOWN_BOUND:?}");
    // (`TestBroker::stop` also asserts that the serve future returned Ok.)

    let mut seen = Vec::with_capacity(CLIENTS);
    while let Some(result) = readers.join_next().await {
        seen.push(result.expect("client task"));
    }
    assert_eq!(seen.len(), CLIENTS);
    let wrong: Vec<&Seen> = seen
        .iter()
        .filter(|s| !matches!(s, Seen::ErrorThenEof(m) if m.contains("shutting down")))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} clients saw something else, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(3)]
    );
    assert_eq!(handle.connection_count(), 0);
    assert!(handle.is_shutting_down());
    assert_eq!(
        handle.publish("/topic/shutdown.0", Headers::new(), "after"),
        Err(PublishError::ShuttingDown)
    );
    assert!(handle.stats().errors_sent >= CLIENTS as u64);
}

#[tokio::test]
async fn shutdown_stops_accepting_and_ends_serving() {
    let broker = TestBroker::start(Broker::builder()).await;
    let handle = broker.broker.clone();
    let addr = broker.addr;
    let mut c = broker.client("last").await;
    let reader = tokio::spawn(async move {
        let error = extra::expect_error_then_close(&mut c).await;
        extra::message(&error).to_owned()
    });
    tokio::time::timeout(SHUTDOWN_BOUND, broker.stop()).await.expect("shutdown completes");
    assert!(reader.await.expect("reader").contains("shutting down"));
    assert_eq!(handle.connection_count(), 0);
    // The listener is gone: connecting fails, or is closed at once.
    if let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await {
        let (octets, ended) = extra::read_until_closed(&mut stream, support::WAIT).await;
        assert_ne!(ended, extra::Ended::TimedOut, "a connection after shutdown was served");
        assert!(octets.is_empty() || extra::frames(&octets)[0].command() == Command::Error);
    }
}
