//! The store behaviour suite on `MemoryStore`, and its retention bound.

#[macro_use]
mod store_suite;

use stomp_broker::store::{HistoryStore, MemoryStore, MessageId, RoomId};
use store_suite::Fixture;

async fn open(_case: &str) -> Fixture<MemoryStore> {
    Fixture::new(MemoryStore::with_max_per_room(100_000))
}

suite!(open);

#[tokio::test]
async fn keeps_the_newest_messages_per_room() {
    let store = MemoryStore::with_max_per_room(100);
    let room = RoomId::new(1);
    store.append(&store_suite::messages(room, 1..=250)).await.expect("append");
    store.append(&store_suite::messages(RoomId::new(2), 1..=5)).await.expect("append");
    assert_eq!(store.count(room).await.expect("count"), 100);
    let oldest = store.after(room, MessageId::new(0), 1).await.expect("after");
    assert_eq!(oldest[0].id, MessageId::new(151));
    assert_eq!(store.count(RoomId::new(2)).await.expect("count"), 5);
}
