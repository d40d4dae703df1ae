//! The store behaviour suite on `MongoStore` against the MongoDB stand-in
//! nx-27017 (scripts/ensure-services starts it; `STOMP_TEST_MONGODB_URL`
//! overrides `mongodb://127.0.0.1:27017`). Each case gets a database of
//! its own, dropped afterwards.

#[macro_use]
mod store_suite;

use stomp_broker::store::{HistoryStore, MessageId, MongoStore, RoomStore};
use store_suite::Fixture;

fn server() -> String {
    std::env::var("STOMP_TEST_MONGODB_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into())
}

fn uri(database: &str) -> String {
    format!("{}/{database}?directConnection=true&serverSelectionTimeoutMS=5000", server())
}

async fn drop_database(name: &str) {
    let client = mongodb::Client::with_uri_str(uri(name)).await.expect("client");
    client.database(name).drop().await.unwrap_or_else(|e| {
        panic!(
            "the MongoDB stand-in is not reachable at {} ({e}); scripts/ensure-services starts it",
            server()
        )
    });
}

async fn open(case: &str) -> Fixture<MongoStore> {
    let name = format!("stomp_suite_{case}");
    drop_database(&name).await;
    let store = MongoStore::connect(&uri(&name)).await.expect("connect");
    Fixture::new(store).with_cleanup(async move { drop_database(&name).await })
}

suite!(open);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_share_one_schema() {
    let name = "stomp_suite_two_nodes";
    drop_database(name).await;
    let url = uri(name);
    let (a, b) = tokio::join!(MongoStore::connect(&url), MongoStore::connect(&url));
    let (a, b) = (a.expect("node a"), b.expect("node b"));
    let room = a.create_room("shared").await.expect("create on a");
    assert!(matches!(
        b.create_room("shared").await,
        Err(stomp_broker::store::StoreError::NameTaken(_))
    ));
    a.append(&store_suite::messages(room.id, 1..=3)).await.expect("append on a");
    assert_eq!(b.last_id(room.id).await.expect("last on b"), Some(MessageId::new(3)));
    let c = MongoStore::connect(&uri(name)).await.expect("node c");
    assert_eq!(c.rooms(None, 10).await.expect("list"), vec![room]);
    drop((a, b, c));
    drop_database(name).await;
}
