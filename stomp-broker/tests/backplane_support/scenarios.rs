//! The cluster scenarios, run by `backplane_in_process` (in miniature) and
//! `backplane_redis` against three nodes: every check here holds for any
//! backplane that keeps its documented promises while it is connected.
//! The churn scenario is in [`churn`](super::churn).

use std::time::Duration;

use stomp_codec::{Frame, Headers};

use super::extra::{QUIET, soon, subscribe_expecting};
use super::{Cluster, all_silent, assert_all_once_in_order, read_bodies, tagged};
use crate::support::{Client, body, send};

/// How long a client watches for a message that must not come from
/// another node (a backplane round trip is well under it).
pub const CROSS_NODE_QUIET: Duration = Duration::from_millis(500);

pub(super) fn assert_three(cluster: &Cluster) {
    assert_eq!(cluster.nodes.len(), 3, "the scenarios run on three nodes");
}

/// A SUBSCRIBE's RECEIPT means the subscription is live on every node: a
/// message another node publishes right after it is received, `rounds`
/// times, each on a destination no node has subscribed to before.
pub async fn subscribe_receipt_means_live(cluster: &Cluster, rounds: usize) {
    assert_three(cluster);
    let mut subscribers = Vec::new();
    let mut publishers = Vec::new();
    for i in 0..3 {
        subscribers.push(cluster.client(i, &format!("sub{i}")).await);
        publishers.push(cluster.client(i, &format!("pub{i}")).await);
    }
    for round in 0..rounds {
        let (to, from) = (round % 3, (round + 1) % 3);
        let topic = format!("/topic/live.{round}");
        subscribers[to].subscribe(&format!("s{round}"), &topic, "auto").await;
        publishers[from].publish(&topic, &tagged("live", round)).await;
        let m = subscribers[to].expect_message().await;
        assert_eq!(body(&m), tagged("live", round), "round {round}, node {from} to {to}");
    }
    all_silent(&mut subscribers, QUIET).await;
}

/// Every subscriber on every node (`per_node` of them) receives every
/// message exactly once, each publisher's in publish order: one publisher
/// per node sends `n` messages, all at once.
pub async fn every_subscriber_gets_every_message_once(
    cluster: &Cluster,
    per_node: usize,
    n: usize,
) {
    assert_three(cluster);
    let topic = "/topic/fanout";
    let mut readers = Vec::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        for k in 0..per_node {
            let mut c = node.client(&format!("sub{i}.{k}")).await;
            c.subscribe("s", topic, "auto").await;
            let who = format!("node {} subscriber {k}", i + 1);
            let total = cluster.nodes.len() * n;
            readers.push(tokio::spawn(async move {
                let bodies = read_bodies(&mut c, total).await;
                (who, c, bodies)
            }));
        }
    }
    let publishers: Vec<String> = (0..cluster.nodes.len()).map(|i| format!("p{}", i + 1)).collect();
    let sending: Vec<_> = cluster
        .nodes
        .iter()
        .zip(&publishers)
        .map(|(node, name)| {
            let (addr, name) = (node.addr, name.clone());
            tokio::spawn(async move {
                let mut p = Client::connect(addr, &name).await;
                for seq in 0..n - 1 {
                    p.send(send(topic, &tagged(&name, seq))).await;
                }
                // The last one with a receipt: the broker handled them all.
                p.publish(topic, &tagged(&name, n - 1)).await;
            })
        })
        .collect();
    for publisher in sending {
        publisher.await.expect("publisher");
    }
    let expected: Vec<(&str, usize)> = publishers.iter().map(|p| (p.as_str(), n)).collect();
    let mut subscribers = Vec::new();
    for reader in readers {
        let (who, c, bodies) = reader.await.expect("subscriber");
        assert_all_once_in_order(&who, &bodies, &expected);
        subscribers.push(c);
    }
    all_silent(&mut subscribers, QUIET).await;
    // A node counts a message published once Redis answered, which may be
    // after other nodes delivered it.
    let own = n as u64;
    soon("each node published its own", || (0..3).all(|i| cluster.stats(i).published == own)).await;
    for i in 0..cluster.nodes.len() {
        let stats = cluster.stats(i);
        assert_eq!((stats.publish_dropped, stats.lost), (0, 0), "node {}: {stats:?}", i + 1);
        assert_eq!(stats.received, own * 2, "node {}: the other two's: {stats:?}", i + 1);
    }
}

/// User destinations across nodes: alice has sessions on nodes 1 and 3,
/// bob on nodes 1 and 2, all subscribed to `/user/queue/notices`. A SEND
/// to `/user/alice/queue/notices` on node 2 reaches both of alice's
/// sessions exactly once, in order, and neither of bob's; `send_to_user`
/// on node 2 for bob reaches both of his and neither of alice's.
pub async fn user_destinations_across_nodes(cluster: &Cluster, n: usize) {
    assert_three(cluster);
    let mut sessions = Vec::new();
    for (node, user) in [(0, "alice"), (2, "alice"), (0, "bob"), (1, "bob")] {
        let mut c = cluster.client(node, user).await;
        c.subscribe("n", "/user/queue/notices", "auto").await;
        sessions.push((format!("{user} on node {}", node + 1), c));
    }
    let mut carol = cluster.client(1, "carol").await;
    for seq in 0..n {
        carol.publish("/user/alice/queue/notices", &tagged("carol", seq)).await;
    }
    let broker = &cluster.nodes[1].broker;
    let mut headers = Headers::new();
    headers.push("x-kind", "notice");
    let local = broker.send_to_user("bob", "/queue/notices", headers, tagged("app", 0));
    assert_eq!(local, Ok(1), "bob's one session on node 2");
    let (alice, bob) = sessions.split_at_mut(2);
    for (who, c) in alice {
        let frames: Vec<Frame> = super::extra::messages(c, n).await;
        for m in &frames {
            assert_eq!(m.header_str("destination"), Some("/user/queue/notices"), "{who}: {m:?}");
            assert_eq!(m.header_str("subscription"), Some("n"), "{who}: {m:?}");
        }
        assert_all_once_in_order(who, &super::extra::bodies_of(&frames), &[("carol", n)]);
    }
    for (who, c) in bob {
        let m = c.expect_message().await;
        assert_eq!(body(&m), tagged("app", 0), "{who}: {m:?}");
        assert_eq!(m.header_str("x-kind"), Some("notice"), "{who}: {m:?}");
        assert_eq!(m.header_str("destination"), Some("/user/queue/notices"), "{who}: {m:?}");
    }
    all_silent(sessions.iter_mut().map(|(_, c)| c), CROSS_NODE_QUIET).await;
}

/// Queues are node-local: a message sent to `/queue/jobs` on node 1 is not
/// published on the backplane, not received by node 2's consumer, and is
/// kept for (and received by) a consumer on node 1; node 2's queue of the
/// same name is its own.
pub async fn queues_stay_on_their_node(cluster: &Cluster) {
    assert_three(cluster);
    let queue = "/queue/jobs";
    let mut worker2 = cluster.client(1, "worker2").await;
    worker2.subscribe("q", queue, "auto").await;
    assert_eq!(cluster.stats(1).subscriptions, 0, "a queue consumer subscribed on the backplane");
    let published_before = cluster.stats(0).published;
    let mut p1 = cluster.client(0, "p1").await;
    p1.publish(queue, "job for node 1").await;
    worker2.expect_silence(CROSS_NODE_QUIET).await;
    assert_eq!(cluster.stats(0).published, published_before, "a queue message left node 1");

    let mut worker1 = cluster.client(0, "worker1").await;
    let got = subscribe_expecting(&mut worker1, "q", queue, "auto", 1).await;
    assert_eq!(body(&got[0]), "job for node 1");

    let mut p2 = cluster.client(1, "p2").await;
    p2.publish(queue, "job for node 2").await;
    assert_eq!(body(&worker2.expect_message().await), "job for node 2");
    all_silent([&mut worker1, &mut worker2], CROSS_NODE_QUIET).await;
}
