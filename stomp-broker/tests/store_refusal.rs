//! Storing from an application handler: a message the history writer
//! accepted gets its RECEIPT; when the writer's buffer is full (the
//! database is down) the sender gets an ERROR naming the reason, with its
//! receipt id, and the message is neither stored nor delivered, while other
//! clients carry on. Once the database is back, everything accepted is
//! stored, in order.

#[macro_use]
mod store_suite;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use stomp_broker::store::{
    HistoryStore, HistoryWriter, MessageId, RoomId, StoredMessage, Timestamp, WriterConfig,
};
use stomp_broker::{AppContext, AppHandler, AppMessage, Broker, Rejection};
use stomp_codec::{Command, Headers};
use store_suite::switch::Switch;
use support::{TestBroker, body, send};

/// Stores each message sent to `/app/log`, then publishes it to
/// `/topic/log` with its id.
struct Recorder {
    history: HistoryWriter,
    next: AtomicU64,
}

const ROOM: RoomId = RoomId::new(1);

#[async_trait]
impl AppHandler for Recorder {
    async fn handle(&self, context: &AppContext, message: AppMessage) -> Result<(), Rejection> {
        let id = MessageId::new(self.next.fetch_add(1, Ordering::SeqCst));
        let stored = StoredMessage {
            room: ROOM,
            id,
            sender: context.session().principal().name().to_owned(),
            content_type: "text/plain".to_owned(),
            body: message.body.clone(),
            sent_at: Timestamp::now(),
        };
        // A refusal becomes an ERROR frame for the sender; the id it would
        // have had is given back so the room's ids stay without gaps.
        if let Err(refused) = self.history.append(stored) {
            self.next.fetch_sub(1, Ordering::SeqCst);
            return Err(refused.into());
        }
        let mut headers = Headers::new();
        headers.push("x-id", id.to_string());
        context
            .broker()
            .publish("/topic/log", headers, message.body)
            .map_err(|e| Rejection::new(e.to_string()))?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_history_buffer_is_an_error_for_the_sender_only() {
    let database = Arc::new(Switch::default());
    let mut config = WriterConfig::default();
    config.capacity = 5;
    config.retry_initial = Duration::from_millis(10);
    config.retry_max = Duration::from_millis(50);
    let history = HistoryWriter::spawn(Arc::clone(&database) as Arc<dyn HistoryStore>, config);
    let recorder = Recorder { history: history.clone(), next: AtomicU64::new(1) };
    let broker = TestBroker::start(Broker::builder().app_handler("/app/", recorder)).await;

    let mut watcher = broker.client("watcher").await;
    watcher.subscribe("w", "/topic/log", "auto").await;
    database.down.store(true, Ordering::SeqCst);

    let mut alice = broker.client("alice").await;
    for n in 1..=5 {
        let receipt = format!("r{n}");
        alice
            .send(send("/app/log", &format!("m{n}")).with_header("receipt", receipt.clone()))
            .await;
        let answer = alice.expect(Command::Receipt).await;
        assert_eq!(answer.header_str("receipt-id"), Some(receipt.as_str()));
    }
    alice.send(send("/app/log", "m6").with_header("receipt", "r6")).await;
    let error = alice.expect(Command::Error).await;
    assert_eq!(error.header_str("receipt-id"), Some("r6"), "the refused frame is named");
    let message = error.header_str("message").unwrap_or_default();
    assert!(message.contains("history buffer full"), "{message}");
    assert!(body(&error).contains("send it again later"), "{}", body(&error));
    alice.expect_closed().await;

    // The watcher got the five accepted messages, not the refused one.
    for n in 1..=5 {
        let got = watcher.expect_message().await;
        assert_eq!(body(&got), format!("m{n}"));
        assert_eq!(got.header_str("x-id"), Some(n.to_string().as_str()));
    }
    watcher.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(history.stats().refused, 1);

    // The database returns: what was accepted is stored, in order, and
    // sending works again.
    database.down.store(false, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(10), history.flush()).await.expect("flushed");
    let mut bob = broker.client("bob").await;
    bob.send(send("/app/log", "m7").with_header("receipt", "r7")).await;
    bob.expect(Command::Receipt).await;
    tokio::time::timeout(Duration::from_secs(10), history.flush()).await.expect("flushed");
    let stored = database.after(ROOM, MessageId::new(0), 100).await.unwrap();
    let bodies: Vec<String> =
        stored.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect();
    assert_eq!(bodies, ["m1", "m2", "m3", "m4", "m5", "m7"]);
    assert_eq!(stored.iter().map(|m| m.id.get()).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    assert_eq!(stored[5].sender, "bob");
    history.close(Duration::from_secs(5)).await.expect("closed");
    broker.stop().await;
}
