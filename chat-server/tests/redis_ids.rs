//! Message ids on several nodes when Redis loses a room's counter (Redis
//! here keeps nothing on disk: a restart empties it). A node that knows
//! only its own posts must not start the counter again from them: ids
//! other nodes handed out are in the shared history, and a repeated id
//! would be dropped by the store as already written, losing a message
//! that got its RECEIPT.

mod support;

use std::time::Duration;

use support::chat::{assert_increasing, history_with, ids, texts};
use support::services::{MariaDb, MongoDb, REDIS_URL, RedisPrefix};
use support::{Client, Node, Transport, WAIT, unique};

/// Deletes the room's id counter, as a Redis restart without data would.
fn lose_counter(prefix: &str, room: &str) {
    let client = redis::Client::open(REDIS_URL).expect("Redis URL");
    let mut connection =
        client.get_connection_with_timeout(Duration::from_secs(2)).expect("Redis connection");
    let key = format!("{prefix}room:{room}:last");
    let deleted: u32 = redis::cmd("DEL").arg(&key).query(&mut connection).expect("DEL");
    assert_eq!(deleted, 1, "the room's counter is {key}");
}

#[tokio::test]
async fn a_lost_counter_starts_again_above_every_stored_id() {
    let (redis, mariadb, mongodb) = (RedisPrefix::new(), MariaDb::new(), MongoDb::new());
    let node = || {
        Node::new()
            .flag("--redis-url", REDIS_URL)
            .flag("--redis-prefix", redis.prefix.clone())
            .flag("--mysql-url", mariadb.url())
            .flag("--mongodb-url", mongodb.url())
    };
    let (one, two) = (node().start().await, node().start().await);
    let room = one.rest().create_room_id(&unique("counter")).await;
    let mut alice = Client::connect(&one, Transport::Tcp, "alice").await;
    let mut bob = Client::connect(&two, Transport::Tcp, "bob").await;

    // Node one knows id 1 from its own post; node two went on to 6.
    alice.say(&room, "a0").await;
    for i in 0..5 {
        bob.say(&room, &format!("b{i}")).await;
    }
    history_with(&one.rest(), &room, 6, WAIT).await;

    lose_counter(&redis.prefix, &room);
    alice.say(&room, "a1").await;
    bob.say(&room, "b5").await;

    let oldest_first = history_with(&two.rest(), &room, 8, WAIT).await;
    assert_eq!(
        texts(&oldest_first),
        ["a0", "b0", "b1", "b2", "b3", "b4", "a1", "b5"],
        "every receipted message is stored, none replaced by another with its id"
    );
    assert_eq!(ids(&oldest_first), (1..=8).collect::<Vec<u64>>());
    assert_increasing("after the counter was lost", &oldest_first);
}
