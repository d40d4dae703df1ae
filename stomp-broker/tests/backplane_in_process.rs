//! Three broker nodes on one `InProcessBus` act as one broker: topic
//! messages reach every subscriber on every node exactly once and in
//! order (a node's own subscribers are not served twice), a SUBSCRIBE's
//! receipt means messages from other nodes arrive, subscribe/unsubscribe
//! churn leaves delivery exact and backplane interest following the last
//! local subscriber, user destinations reach a user's sessions on every
//! node, queues stay on the node they were sent to, and `publish_local`
//! reaches only its own node.
//!
//! The same scenarios (`backplane_support::scenarios`) run against Redis
//! in `backplane_redis.rs`; here they are small and need no server.

mod backplane_support;
mod support;

use backplane_support::extra::{QUIET, exchange_expecting};
use backplane_support::{Cluster, churn, scenarios, tagged};
use support::{body, send};

#[tokio::test]
async fn every_subscriber_on_every_node_gets_every_message_once_in_order() {
    let cluster = Cluster::in_process(3).await;
    scenarios::every_subscriber_gets_every_message_once(&cluster, 2, 20).await;
    cluster.stop().await;
}

#[tokio::test]
async fn own_messages_are_delivered_once_not_again_from_the_bus() {
    let cluster = Cluster::in_process(3).await;
    let mut c = cluster.client(0, "solo").await;
    c.subscribe("s", "/topic/echo", "auto").await;
    let own = exchange_expecting(&mut c, send("/topic/echo", &tagged("solo", 0)), "r", 1).await;
    assert_eq!(body(&own[0]), tagged("solo", 0));
    c.expect_silence(QUIET).await;
    let stats = cluster.stats(0);
    assert_eq!((stats.published, stats.received), (1, 0), "{stats:?}");
    drop(c);
    cluster.stop().await;
}

#[tokio::test]
async fn a_subscribe_receipt_means_other_nodes_messages_arrive() {
    let cluster = Cluster::in_process(3).await;
    scenarios::subscribe_receipt_means_live(&cluster, 6).await;
    cluster.stop().await;
}

#[tokio::test]
async fn unsubscribe_stops_cross_node_delivery() {
    let cluster = Cluster::in_process(3).await;
    let mut c = cluster.client(2, "leaver").await;
    c.subscribe("s", "/topic/t", "auto").await;
    let mut p = cluster.client(0, "p").await;
    p.publish("/topic/t", &tagged("p", 0)).await;
    assert_eq!(body(&c.expect_message().await), tagged("p", 0));
    c.with_receipt(backplane_support::extra::unsubscribe_frame("s"), "u").await;
    assert_eq!(cluster.stats(2).subscriptions, 0, "{}", cluster.all_stats());
    let received = cluster.stats(2).received;
    p.publish("/topic/t", &tagged("p", 1)).await;
    c.expect_silence(QUIET).await;
    assert_eq!(cluster.stats(2).received, received, "the bus still sent to node 3");
    drop((c, p));
    cluster.stop().await;
}

#[tokio::test]
async fn churn_leaves_delivery_exact_for_those_who_remain() {
    let cluster = Cluster::in_process(3).await;
    churn::churn_then_exact(&cluster, 10, 5).await;
    cluster.stop().await;
}

#[tokio::test]
async fn user_destinations_reach_the_users_sessions_on_every_node() {
    let cluster = Cluster::in_process(3).await;
    scenarios::user_destinations_across_nodes(&cluster, 5).await;
    cluster.stop().await;
}

#[tokio::test]
async fn queues_stay_on_the_node_they_were_sent_to() {
    let cluster = Cluster::in_process(3).await;
    scenarios::queues_stay_on_their_node(&cluster).await;
    cluster.stop().await;
}

#[tokio::test]
async fn publish_local_stays_on_its_node() {
    let cluster = Cluster::in_process(2).await;
    let mut here = cluster.client(0, "here").await;
    let mut there = cluster.client(1, "there").await;
    here.subscribe("s", "/topic/local", "auto").await;
    there.subscribe("s", "/topic/local", "auto").await;
    let broker = &cluster.nodes[0].broker;
    let delivered = broker
        .publish_local("/topic/local", stomp_codec::Headers::new(), "node only")
        .expect("publish_local");
    assert_eq!(delivered, 1);
    assert_eq!(body(&here.expect_message().await), "node only");
    there.expect_silence(QUIET).await;
    assert_eq!(cluster.stats(0).published, 0, "it went to the backplane");
    broker.publish("/topic/local", stomp_codec::Headers::new(), "everywhere").expect("publish");
    assert_eq!(body(&here.expect_message().await), "everywhere");
    assert_eq!(body(&there.expect_message().await), "everywhere");
    drop((here, there));
    cluster.stop().await;
}
