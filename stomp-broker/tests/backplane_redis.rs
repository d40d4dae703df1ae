//! Three broker nodes joined through a real Redis (`RedisBackplane`, at
//! `STOMP_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`, which
//! scripts/ensure-services starts) act as one broker:
//! - every subscriber on every node receives every message exactly once,
//!   each publisher's in publish order, with publishers on all three nodes;
//! - a SUBSCRIBE's receipt means the subscription is live on Redis;
//! - subscribe/unsubscribe churn on every node leaves delivery exact for
//!   the subscribers that remain, nothing for those that left, and the
//!   node's backplane subscription following its last local subscriber;
//! - Redis itself (`PUBSUB NUMSUB`) has one subscription per node with
//!   local subscribers, made before the SUBSCRIBE's receipt and ended
//!   when the node's last subscriber unsubscribes or disconnects;
//! - user destinations reach a user's sessions on every node, no one else;
//! - queues stay node-local, as documented (`stomp_broker::backplane`).
//!
//! Each test has channels of its own (a prefix with the process id and
//! the test's name), so tests running at once on the shared Redis do not
//! see each other's messages. No Redis is a failure, never a skip.

mod backplane_support;
mod support;

use std::time::Duration;

use backplane_support::extra::unsubscribe_frame;
use backplane_support::redis_server::shared_redis_url;
use backplane_support::{Cluster, churn, redis_prefix, scenarios};
use redis::aio::MultiplexedConnection;
use support::WAIT;

async fn cluster(test: &str) -> Cluster {
    Cluster::redis(3, &shared_redis_url().await, test, |config| config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_subscriber_on_every_node_gets_every_message_once_in_order() {
    let cluster = cluster("fanout").await;
    scenarios::every_subscriber_gets_every_message_once(&cluster, 3, 300).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscribe_receipt_means_the_redis_subscription_is_live() {
    let cluster = cluster("receipt").await;
    scenarios::subscribe_receipt_means_live(&cluster, 30).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn churn_leaves_delivery_exact_for_those_who_remain() {
    let cluster = cluster("churn").await;
    churn::churn_then_exact(&cluster, 30, 20).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_destinations_reach_the_users_sessions_on_every_node() {
    let cluster = cluster("user").await;
    scenarios::user_destinations_across_nodes(&cluster, 20).await;
    cluster.stop().await;
}

/// Queues are node-local, the documented behaviour (the `backplane`
/// module's docs: "Queues stay node-local: a message sent to `/queue/x`
/// on one node is consumed by that node's consumers (or kept there)"): a
/// message sent to `/queue/jobs` on node 1 never reaches node 2's
/// consumer, and waits on node 1 for a consumer there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queues_are_pinned_to_the_node_they_were_sent_to() {
    let cluster = cluster("queue").await;
    scenarios::queues_stay_on_their_node(&cluster).await;
    cluster.stop().await;
}

/// Redis's count of subscribers to `channel` (one per node).
async fn numsub(redis: &mut MultiplexedConnection, channel: &str) -> usize {
    let (_, n): (String, usize) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(redis)
        .await
        .expect("PUBSUB NUMSUB");
    n
}

/// Waits until Redis counts `n` subscribers to `channel`.
async fn until_numsub(redis: &mut MultiplexedConnection, channel: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = numsub(redis, channel).await;
        if now == n {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{channel}: {now} subscribers, not {n}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_holds_one_subscription_per_node_with_local_subscribers() {
    let url = shared_redis_url().await;
    let cluster = Cluster::redis(3, &url, "numsub", |config| config).await;
    let topic = "/topic/interest";
    let channel = format!("{}{topic}", redis_prefix("numsub"));
    let client = redis::Client::open(url.as_str()).expect("Redis URL");
    let mut redis = client.get_multiplexed_async_connection().await.expect("connect to Redis");
    assert_eq!(numsub(&mut redis, &channel).await, 0);

    let mut a1 = cluster.client(0, "a1").await;
    a1.subscribe("s", topic, "auto").await;
    assert_eq!(numsub(&mut redis, &channel).await, 1, "subscribed before the receipt");
    let mut a2 = cluster.client(0, "a2").await;
    a2.subscribe("s", topic, "auto").await;
    let mut b = cluster.client(1, "b").await;
    b.subscribe("s", topic, "auto").await;
    assert_eq!(numsub(&mut redis, &channel).await, 2, "one subscription per node");

    a1.with_receipt(unsubscribe_frame("s"), "u").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(numsub(&mut redis, &channel).await, 2, "node 1 still has a subscriber");
    drop(a2);
    until_numsub(&mut redis, &channel, 1).await;
    b.with_receipt(unsubscribe_frame("s"), "u").await;
    until_numsub(&mut redis, &channel, 0).await;
    assert_eq!(cluster.stats(0).subscriptions + cluster.stats(1).subscriptions, 0);
    drop((a1, b));
    cluster.stop().await;
}
