//! The batching `HistoryWriter`: bounded buffer and refusal when full,
//! batch bounds, retries without reordering or duplicates, reads that see
//! what is not written yet, flush on close, and the close deadline.
//!
//! The store under the writer is the in-memory store behind a switch that
//! makes it fail (as a database that is down) or hold writes (as a slow
//! one); the same writer against real servers that are stopped and started
//! is in the `store_fault_*` tests.

#[macro_use]
mod store_suite;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use stomp_broker::store::{
    AppendError, HistoryStore, HistoryWriter, MessageId, RoomId, StoredMessage, Unflushed,
    WriterConfig,
};
use store_suite::switch::Switch;
use store_suite::{message, messages, read_all};

const WAIT: Duration = Duration::from_secs(10);

fn config() -> WriterConfig {
    let mut config = WriterConfig::default();
    config.linger = Duration::from_millis(1);
    config.retry_initial = Duration::from_millis(5);
    config.retry_max = Duration::from_millis(20);
    config
}

fn start(config: WriterConfig) -> (Arc<Switch>, HistoryWriter) {
    let store = Arc::new(Switch::default());
    let writer = HistoryWriter::spawn(Arc::clone(&store) as Arc<dyn HistoryStore>, config);
    (store, writer)
}

async fn flushed(writer: &HistoryWriter) {
    tokio::time::timeout(WAIT, writer.flush()).await.expect("the writer flushed in time");
}

const ROOM: RoomId = RoomId::new(1);

#[tokio::test]
async fn a_full_buffer_refuses_and_recovers() {
    let mut config = config();
    config.capacity = 10;
    let (store, writer) = start(config);
    let gate = store.hold();
    for id in 1..=10 {
        writer.append(message(ROOM, id)).expect("room in the buffer");
    }
    match writer.append(message(ROOM, 11)) {
        Err(AppendError::Full { buffered, bytes }) => {
            assert_eq!(buffered, 10);
            assert!(bytes > 0);
        }
        other => panic!("the 11th message must be refused, got {other:?}"),
    }
    assert_eq!(writer.stats().refused, 1);
    assert_eq!(writer.stats().buffered, 10);
    drop(gate);
    store.release();
    flushed(&writer).await;
    writer.append(message(ROOM, 11)).expect("room again once written");
    flushed(&writer).await;
    let stored = read_all(&*store, ROOM, 100).await;
    assert_eq!(stored, messages(ROOM, 1..=11), "the refused message was not half-kept");
}

#[tokio::test]
async fn the_buffer_is_bounded_by_bytes_too() {
    let mut config = config();
    config.capacity_bytes = 10_000;
    let (store, writer) = start(config);
    let _gate = store.hold();
    let big = |id| StoredMessage { body: Bytes::from(vec![b'x'; 3_000]), ..message(ROOM, id) };
    for id in 1..=3 {
        writer.append(big(id)).expect("fits");
    }
    assert!(matches!(writer.append(big(4)), Err(AppendError::Full { buffered: 3, .. })));
    // A small one still fits.
    writer.append(message(ROOM, 4)).expect("a small message fits");
    store.release();
    flushed(&writer).await;
    assert_eq!(store.count(ROOM).await.unwrap(), 4);
}

#[tokio::test]
async fn what_no_backend_can_store_is_refused_up_front() {
    let (store, writer) = start(config());
    let too_big = StoredMessage { body: Bytes::from(vec![0; 64 * 1024 + 1]), ..message(ROOM, 1) };
    assert!(
        matches!(writer.append(too_big), Err(AppendError::Invalid(why)) if why.contains("body"))
    );
    let long_sender = StoredMessage { sender: "s".repeat(256), ..message(ROOM, 1) };
    assert!(
        matches!(writer.append(long_sender), Err(AppendError::Invalid(why)) if why.contains("sender"))
    );
    let at_limit = StoredMessage { body: Bytes::from(vec![0; 64 * 1024]), ..message(ROOM, 1) };
    writer.append(at_limit).expect("the store's own limit is allowed");
    flushed(&writer).await;
    assert_eq!(store.count(ROOM).await.unwrap(), 1);
    assert_eq!(writer.stats().refused, 0, "invalid is not counted as full");
}

#[tokio::test]
async fn batches_stay_within_their_bounds() {
    let mut config = config();
    config.max_batch = 100;
    let (store, writer) = start(config);
    let gate = store.hold();
    for id in 1..=1_000 {
        writer.append(message(ROOM, id)).unwrap();
    }
    drop(gate);
    store.release();
    flushed(&writer).await;
    let sizes = store.batch_sizes();
    assert!(sizes.iter().all(|&n| (1..=100).contains(&n)), "{sizes:?}");
    assert!(sizes.len() >= 10);
    // While the first batch was held, the rest gathered: full batches.
    assert!(sizes[1..].iter().all(|&n| n == 100), "full batches under load: {sizes:?}");
    assert_eq!(store.count(ROOM).await.unwrap(), 1_000);

    let mut config = self::config();
    config.max_batch_bytes = 10_000;
    let (store, writer) = start(config);
    let gate = store.hold();
    let sized = |id, len| StoredMessage { body: Bytes::from(vec![b'y'; len]), ..message(ROOM, id) };
    writer.append(sized(1, 4_000)).unwrap();
    writer.append(sized(2, 4_000)).unwrap();
    writer.append(sized(3, 4_000)).unwrap();
    writer.append(sized(4, 30_000)).unwrap(); // over the batch bound: alone
    writer.append(sized(5, 100)).unwrap();
    drop(gate);
    store.release();
    flushed(&writer).await;
    let batches = store.batches.lock().unwrap().clone();
    assert!(batches.iter().all(|b| b.len() <= 2 || b.iter().all(|&id| id != 4)), "{batches:?}");
    assert!(batches.contains(&vec![4]) || batches.iter().any(|b| b[0] == 4 && b.len() == 1));
    assert_eq!(batches.concat(), vec![1, 2, 3, 4, 5], "in order, once each");
}

#[tokio::test]
async fn retries_keep_order_and_store_nothing_twice() {
    let mut config = config();
    config.max_batch = 50;
    let (store, writer) = start(config);
    store.down.store(true, Ordering::SeqCst);
    for id in 1..=120 {
        writer.append(message(ROOM, id)).unwrap();
    }
    // Down for a while: the writer retries the same first batch.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = writer.stats();
    assert!(stats.failing, "{stats:?}");
    assert!(stats.failures >= 3, "{stats:?}");
    assert_eq!(stats.written, 0);
    assert_eq!(stats.buffered, 120);
    // Back, but the first two acknowledgements are lost after the commit.
    store.lose_acks.store(2, Ordering::SeqCst);
    store.down.store(false, Ordering::SeqCst);
    for id in 121..=200 {
        writer.append(message(ROOM, id)).unwrap();
    }
    flushed(&writer).await;
    let stats = writer.stats();
    assert!(!stats.failing);
    assert_eq!((stats.accepted, stats.written, stats.buffered), (200, 200, 0));
    let stored = read_all(&*store, ROOM, 1_000).await;
    assert_eq!(stored, messages(ROOM, 1..=200), "every message once, in order");
    // The batches written (retries included) went in order: each batch
    // starts where an earlier one ended or repeats it.
    let batches = store.batches.lock().unwrap().clone();
    let mut high = 0;
    for batch in &batches {
        assert!(batch.windows(2).all(|w| w[0] + 1 == w[1]), "{batch:?}");
        assert!(batch[0] <= high + 1, "no batch jumps ahead: {batches:?}");
        high = high.max(*batch.last().unwrap());
    }
}

#[tokio::test]
async fn reads_include_messages_not_written_yet() {
    let (store, writer) = start(config());
    writer.append(message(ROOM, 1)).unwrap();
    writer.append(message(ROOM, 2)).unwrap();
    flushed(&writer).await;
    store.down.store(true, Ordering::SeqCst);
    for id in 3..=6 {
        writer.append(message(ROOM, id)).unwrap();
    }
    writer.append(message(RoomId::new(2), 1)).unwrap();
    let after = writer.after(ROOM, MessageId::new(1), 10).await.unwrap();
    assert_eq!(after, messages(ROOM, 2..=6), "stored then buffered, in order");
    let page = writer.page(ROOM, None, 3).await.unwrap();
    assert_eq!(page, messages(ROOM, [6, 5, 4]), "newest first, buffered included");
    let older = writer.page(ROOM, Some(MessageId::new(4)), 10).await.unwrap();
    assert_eq!(older, messages(ROOM, [3, 2, 1]));
    assert_eq!(writer.last_id(ROOM).await.unwrap(), Some(MessageId::new(6)));
    assert_eq!(store.count(ROOM).await.unwrap(), 2, "the store has only two");
    store.down.store(false, Ordering::SeqCst);
    flushed(&writer).await;
    assert_eq!(writer.after(ROOM, MessageId::new(1), 10).await.unwrap(), messages(ROOM, 2..=6));
    assert_eq!(read_all(&*store, ROOM, 10).await, messages(ROOM, 1..=6));
}

#[tokio::test]
async fn close_writes_what_is_buffered_then_refuses() {
    let (store, writer) = start(config());
    let gate = store.hold();
    for id in 1..=500 {
        writer.append(message(ROOM, id)).unwrap();
    }
    let closing = tokio::spawn({
        let writer = writer.clone();
        async move { writer.close(WAIT).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(writer.append(message(ROOM, 501)), Err(AppendError::Closed));
    drop(gate);
    store.release();
    closing.await.unwrap().expect("closed within the deadline");
    assert_eq!(read_all(&*store, ROOM, 1_000).await, messages(ROOM, 1..=500));
}

#[tokio::test]
async fn close_gives_up_at_its_deadline_and_says_how_much_was_lost() {
    let (store, writer) = start(config());
    store.down.store(true, Ordering::SeqCst);
    for id in 1..=30 {
        writer.append(message(ROOM, id)).unwrap();
    }
    let result = writer.close(Duration::from_millis(200)).await;
    assert_eq!(result, Err(Unflushed(30)));
    // The writer stopped retrying.
    let attempts = store.attempts.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(store.attempts.load(Ordering::SeqCst), attempts);
}

#[tokio::test]
async fn dropping_the_last_handle_still_writes_the_buffer() {
    let (store, writer) = start(config());
    let gate = store.hold();
    for id in 1..=50 {
        writer.append(message(ROOM, id)).unwrap();
    }
    drop(writer);
    drop(gate);
    store.release();
    tokio::time::timeout(WAIT, async {
        while store.count(ROOM).await.unwrap() < 50 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("written after the handle was dropped");
}
