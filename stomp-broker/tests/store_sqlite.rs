//! The store behaviour suite on `SqliteStore`, each case on a new database
//! file, plus what only SQLite has: the data survives reopening the file.

#[macro_use]
mod store_suite;

use std::path::PathBuf;

use stomp_broker::store::{HistoryStore, MessageId, RoomId, RoomStore, SqliteStore};
use store_suite::Fixture;

fn scratch(case: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("stomp-store-sqlite-{}-{case}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn open(case: &str) -> Fixture<SqliteStore> {
    let dir = scratch(case);
    // The directory does not exist yet: opening creates it.
    let store = SqliteStore::open(dir.join("history.db")).await.expect("open SQLite");
    Fixture::new(store).with_cleanup(async move {
        let _ = std::fs::remove_dir_all(dir);
    })
}

suite!(open);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_reopening() {
    let dir = scratch("reopen");
    let path = dir.join("history.db");
    let room = {
        let store = SqliteStore::open(&path).await.expect("open");
        let room = store.create_room("kept").await.expect("create").id;
        store.append(&store_suite::messages(room, 1..=10)).await.expect("append");
        store.close().await;
        room
    };
    // Opening again runs the migrations again: they were applied already.
    let store = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(store.room(room).await.expect("get").expect("room").name, "kept");
    assert_eq!(store.count(room).await.expect("count"), 10);
    assert_eq!(store.last_id(room).await.expect("last"), Some(MessageId::new(10)));
    assert!(store.count(RoomId::new(room.get() + 1)).await.expect("count") == 0);
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}
