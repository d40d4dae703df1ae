//! The store behaviour suite on `MySqlStore` against the real MariaDB
//! server (scripts/ensure-services starts it; `STOMP_TEST_MYSQL_URL`
//! overrides `mysql://root@127.0.0.1:3306`). Each case gets a database of
//! its own, dropped afterwards.

#[macro_use]
mod store_suite;

use sqlx::Connection as _;
use stomp_broker::store::{HistoryStore, MessageId, MySqlStore, RoomStore};
use store_suite::Fixture;

fn server() -> String {
    std::env::var("STOMP_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

async fn admin(sql: &str) {
    let url = format!("{}/mysql", server());
    let mut conn = sqlx::MySqlConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!("MariaDB is not reachable at {url} ({e}); scripts/ensure-services starts it")
    });
    sqlx::Executor::execute(&mut conn, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn database(case: &str) -> String {
    let name = format!("stomp_suite_{case}");
    admin(&format!("DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name} CHARACTER SET utf8mb4"))
        .await;
    name
}

async fn open(case: &str) -> Fixture<MySqlStore> {
    let name = database(case).await;
    let store = MySqlStore::connect(&format!("{}/{name}", server())).await.expect("connect");
    Fixture::new(store).with_cleanup(async move {
        admin(&format!("DROP DATABASE IF EXISTS {name}")).await;
    })
}

suite!(open);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_share_one_schema() {
    let name = database("two_nodes").await;
    let url = format!("{}/{name}", server());
    // Two nodes connect at once: both run the migrations, neither fails.
    let (a, b) = tokio::join!(MySqlStore::connect(&url), MySqlStore::connect(&url));
    let (a, b) = (a.expect("node a"), b.expect("node b"));
    let room = a.create_room("shared").await.expect("create on a");
    assert!(matches!(
        b.create_room("shared").await,
        Err(stomp_broker::store::StoreError::NameTaken(_))
    ));
    a.append(&store_suite::messages(room.id, 1..=3)).await.expect("append on a");
    assert_eq!(b.last_id(room.id).await.expect("last on b"), Some(MessageId::new(3)));
    // And a third connect later finds everything applied.
    let c = MySqlStore::connect(&url).await.expect("node c");
    assert_eq!(c.rooms(None, 10).await.expect("list"), vec![room]);
    drop((a, b, c));
    admin(&format!("DROP DATABASE IF EXISTS {name}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_the_build_is_refused() {
    let name = database("newer_schema").await;
    let url = format!("{}/{name}", server());
    drop(MySqlStore::connect(&url).await.expect("first connect migrates"));
    admin(&format!(
        "INSERT INTO {name}.chat_schema_migrations (version, description, applied_at) \
         VALUES (999, 'from a newer build', 0)"
    ))
    .await;
    match MySqlStore::connect(&url).await {
        Err(stomp_broker::store::StoreError::Backend(e)) => {
            assert!(e.to_string().contains("newer than this build"), "{e}");
        }
        other => panic!("an older build must refuse a newer schema, got {other:?}"),
    }
    admin(&format!("DROP DATABASE IF EXISTS {name}")).await;
}
