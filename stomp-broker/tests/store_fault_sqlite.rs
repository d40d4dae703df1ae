//! SQLite fault test: while chat messages stream through a
//! [`HistoryWriter`] into a [`SqliteStore`], another connection takes the
//! database's write lock (`BEGIN EXCLUSIVE`, as another process would)
//! twice, and every message the writer accepted ends up stored exactly
//! once, in order, unchanged.
//!
//! SQLite has no server to crash; its fault is a database that is locked.
//! The store waits for a lock up to its busy timeout (5 s), so:
//! 1. a lock held for 2 s only stalls the writes: nothing is written while
//!    it is held, messages gather in the writer's buffer, and they are
//!    written when it is released;
//! 2. a lock held past the busy timeout, taken while the writer catches up
//!    on that backlog, makes writes fail (`SQLITE_BUSY`): the writer
//!    reports the failures, keeps buffering and retrying, and writes
//!    everything once the lock is gone.

mod store_servers;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection as _, Executor as _};
use stomp_broker::store::{HistoryStore, HistoryWriter, RoomStore, SqliteStore};
use store_servers::{
    DOWN_AT_LEAST, FLUSH_WITHIN, NOTICE_WITHIN, ScratchDir, Traffic, check_stats,
    verify_exactly_once, wait_for, writer_config,
};

/// How long the short lock is held (less than the store's busy timeout).
const SHORT_LOCK: Duration = Duration::from_secs(2);

/// Another connection to the database file, holding its write lock.
struct WriteLock(SqliteConnection);

impl WriteLock {
    /// Takes the lock, waiting up to 10 s for a write in progress.
    async fn take(path: &Path) -> Self {
        let options =
            SqliteConnectOptions::new().filename(path).busy_timeout(Duration::from_secs(10));
        let mut conn =
            SqliteConnection::connect_with(&options).await.expect("open a second connection");
        conn.execute("BEGIN EXCLUSIVE").await.expect("take the write lock");
        Self(conn)
    }

    async fn release(mut self) {
        self.0.execute("ROLLBACK").await.expect("release the write lock");
        self.0.close().await.expect("close the second connection");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_messages_survive_a_locked_database_exactly_once_in_order() {
    let started = Instant::now();
    let dir = ScratchDir::new("sqlite");
    let path = dir.path().join("chat.db");
    let store = Arc::new(SqliteStore::open(&path).await.expect("open the database"));
    let mut rooms = Vec::new();
    for name in ["일반", "random", "공지 notices"] {
        rooms.push(store.create_room(name).await.expect("create a room").id);
    }
    let history: Arc<dyn HistoryStore> = store;
    let writer = HistoryWriter::spawn(Arc::clone(&history), writer_config());
    let traffic = Traffic::start(writer.clone(), &rooms);
    wait_for(&writer, "300 messages written before any fault", Duration::from_secs(20), |s| {
        s.written >= 300
    })
    .await;

    // 1. A short lock: writes wait for it.
    let lock = WriteLock::take(&path).await;
    // A batch committed just before the lock was granted may still be
    // counted; after that nothing can be written.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let locked = writer.stats();
    tokio::time::sleep(SHORT_LOCK.saturating_sub(Duration::from_millis(100))).await;
    let before_release = writer.stats();
    assert_eq!(before_release.written, locked.written, "written while the database was locked");
    assert!(
        before_release.buffered > locked.buffered,
        "nothing buffered while locked: {before_release:?}"
    );
    lock.release().await;
    let resumed = before_release.written;
    wait_for(&writer, "the first write after the short lock", NOTICE_WITHIN, |s| {
        s.written > resumed
    })
    .await;

    // 2. A long lock, taken during the catch-up: writes fail until it goes.
    let at_long = writer.stats();
    let long_started = Instant::now();
    let lock = WriteLock::take(&path).await;
    wait_for(&writer, "a failed write while the database is locked", NOTICE_WITHIN, |s| {
        s.failures > at_long.failures && s.failing
    })
    .await;
    let noticed_after = long_started.elapsed();
    tokio::time::sleep(DOWN_AT_LEAST.saturating_sub(long_started.elapsed())).await;
    let before_release_long = writer.stats();
    lock.release().await;
    let long_for = long_started.elapsed();
    let resumed = before_release_long.written;
    wait_for(&writer, "the first write after the long lock", NOTICE_WITHIN, |s| {
        s.written > resumed
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let accepted = traffic.stop().await;
    if tokio::time::timeout(FLUSH_WITHIN, writer.flush()).await.is_err() {
        panic!(
            "the writer did not flush within {FLUSH_WITHIN:?} after the lock went: {:?}",
            writer.stats()
        );
    }
    let stats = writer.stats();
    check_stats(&stats, &accepted);
    verify_exactly_once(history.as_ref(), &accepted).await;
    eprintln!(
        "SQLite: {} messages accepted ({} refused) in {:.1?}; {} batches, {} failed attempts\n  \
         short lock ({SHORT_LOCK:?}): {} buffered 100 ms in, {} when released, {} failed attempts\n  \
         long lock ({long_for:.1?}, taken with {} buffered): first failure after {noticed_after:.1?}, \
         {} buffered when released, {} failed attempts",
        accepted.total(),
        accepted.refused,
        started.elapsed(),
        stats.batches,
        stats.failures,
        locked.buffered,
        before_release.buffered,
        before_release.failures - locked.failures,
        at_long.buffered,
        before_release_long.buffered,
        before_release_long.failures - at_long.failures,
    );
    writer.close(Duration::from_secs(5)).await.expect("close the writer");
}
