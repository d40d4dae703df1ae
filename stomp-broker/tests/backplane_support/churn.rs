//! The churn scenario: subscribers on every node subscribe and
//! unsubscribe over and over while node 1 publishes; see
//! [`churn_then_exact`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use stomp_codec::Frame;

use super::extra::{QUIET, exchange, soon, subscribe_frame, sync, unsubscribe_frame};
use super::scenarios::assert_three;
use super::{
    Cluster, all_silent, assert_all_once_in_order, read_bodies, subscription, tagged, untag,
};
use crate::support::{Client, body, send};

/// What a churning subscriber saw, in order.
#[derive(Debug)]
enum Seen {
    Message { sub: String, seq: usize },
    Unsubscribed(String),
}

fn record(seen: &mut Vec<Seen>, messages: Vec<Frame>) {
    for m in messages {
        seen.push(Seen::Message { sub: subscription(&m), seq: untag(&body(&m)).1 });
    }
}

/// Subscribes and unsubscribes `rounds` times (ids `c0`, `c1`, ...), each
/// with a receipt, then subscribes once more (id `final`) if `stay`.
async fn churn_one(mut c: Client, topic: &str, rounds: usize, stay: bool) -> (Client, Vec<Seen>) {
    let mut seen = Vec::new();
    for round in 0..rounds {
        let id = format!("c{round}");
        record(&mut seen, exchange(&mut c, subscribe_frame(&id, topic, "auto"), "s").await);
        record(&mut seen, exchange(&mut c, unsubscribe_frame(&id), "u").await);
        seen.push(Seen::Unsubscribed(id));
        // Uneven pauses, so that the churners on a node interleave.
        tokio::time::sleep(Duration::from_millis([0, 1, 2][round % 3])).await;
    }
    if stay {
        record(&mut seen, exchange(&mut c, subscribe_frame("final", topic, "auto"), "s").await);
    }
    (c, seen)
}

/// Nothing arrives for a subscription after its UNSUBSCRIBE's RECEIPT, and
/// each subscription's messages come in publish order, without gaps when
/// `contiguous` (on a node whose backplane subscription never lapsed).
fn check_windows(who: &str, seen: &[Seen], contiguous: bool) {
    let mut closed = HashSet::new();
    let mut last = HashMap::new();
    for event in seen {
        match event {
            Seen::Unsubscribed(id) => {
                closed.insert(id.clone());
            }
            Seen::Message { sub, seq } => {
                assert!(!closed.contains(sub), "{who}: message {seq} for {sub} after UNSUBSCRIBE");
                if let Some(prev) = last.insert(sub.clone(), *seq) {
                    let ok = if contiguous { *seq == prev + 1 } else { *seq > prev };
                    assert!(ok, "{who}: subscription {sub} got {seq} after {prev}");
                }
            }
        }
    }
}

/// Publishes `tagged("c", 0..)` to `topic` until `stop`; returns how many.
async fn publish_until(mut p: Client, topic: &'static str, stop: Arc<AtomicBool>) -> usize {
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        p.send(send(topic, &tagged("c", seq))).await;
        seq += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    sync(&mut p).await;
    seq
}

/// A subscriber that churned, and what it saw.
struct Churner {
    node: usize,
    /// Whether it ends subscribed (as `final`).
    stays: bool,
    client: Client,
    seen: Vec<Seen>,
}

impl Churner {
    fn who(&self) -> String {
        let what = if self.stays { "remaining" } else { "departed" };
        format!("{what} churner on node {}", self.node + 1)
    }

    /// Reads until the `k` messages of the final round arrived (churn
    /// messages still on their way are recorded), and checks them, the
    /// whole history, and that the final subscription got the end of the
    /// churn if anything (`published` messages).
    async fn check_remaining(&mut self, k: usize, published: usize) {
        let who = self.who();
        let finals = read_until_finals(&mut self.client, &mut self.seen, k).await;
        assert_all_once_in_order(&who, &finals, &[("f", k)]);
        check_windows(&who, &self.seen, true);
        let last = self.seen.iter().rev().find_map(|e| match e {
            Seen::Message { sub, seq } if sub == "final" => Some(*seq),
            _ => None,
        });
        assert!(last.is_none_or(|s| s + 1 == published), "{who}: churn ended at {last:?}");
    }
}

/// Churns on every node at once, `rounds` times each; returns when done.
/// Nodes 1 and 2 also have a steady subscriber (so the subscriptions of
/// their churners see every message in a contiguous run); node 3 has only
/// churners, so its backplane subscription comes and goes, and all of
/// them leave.
async fn churn(cluster: &Cluster, topic: &'static str, rounds: usize) -> Vec<Churner> {
    let plan = [(0, true), (0, false), (1, true), (1, false), (2, false), (2, false)];
    let mut tasks = Vec::new();
    for (k, (node, stays)) in plan.into_iter().enumerate() {
        let c = cluster.client(node, &format!("churner{k}")).await;
        tasks.push(tokio::spawn(async move {
            let (client, seen) = churn_one(c, topic, rounds, stays).await;
            Churner { node, stays, client, seen }
        }));
    }
    let mut churners = Vec::new();
    for task in tasks {
        churners.push(task.await.expect("churner"));
    }
    churners
}

/// Steady subscribers, one on node 1 and one on node 2.
async fn steady_subscribers(cluster: &Cluster, topic: &str) -> Vec<(String, Client)> {
    let mut steady = Vec::new();
    for i in [0, 1] {
        let mut c = cluster.client(i, &format!("steady{i}")).await;
        c.subscribe("steady", topic, "auto").await;
        steady.push((format!("steady subscriber on node {}", i + 1), c));
    }
    steady
}

/// Each of `clients` receives messages `0..n` of `publisher`, once each,
/// in order, next.
async fn all_receive(clients: &mut [(String, Client)], publisher: &str, n: usize) {
    for (who, c) in clients {
        let bodies = read_bodies(c, n).await;
        assert_all_once_in_order(who, &bodies, &[(publisher, n)]);
    }
}

/// Churn: subscribers on every node subscribe and unsubscribe `rounds`
/// times while node 1 publishes. Steady subscribers on nodes 1 and 2 get
/// every message once in order throughout; no churner gets anything for a
/// subscription after its UNSUBSCRIBE's receipt. Afterwards a final round
/// of `k` messages reaches exactly the subscribers that remain, once each,
/// and node 3 (whose subscribers all left) has no backplane subscription
/// and receives nothing from the backplane.
pub async fn churn_then_exact(cluster: &Cluster, rounds: usize, k: usize) {
    assert_three(cluster);
    let topic = "/topic/churn";
    let mut steady = steady_subscribers(cluster, topic).await;
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = cluster.client(0, "publisher").await;
    let publishing = tokio::spawn(publish_until(publisher, topic, stop.clone()));
    let mut churners = churn(cluster, topic, rounds).await;
    stop.store(true, Ordering::Relaxed);
    let published = publishing.await.expect("publisher");
    assert!(published > 0, "nothing was published during the churn");

    let node3_left = || cluster.stats(2).subscriptions == 0;
    soon("node 3's backplane subscription is dropped", node3_left).await;
    all_receive(&mut steady, "c", published).await;
    let node3_received = quiescent_received(cluster, 2).await;
    let mut p = cluster.client(1, "final-publisher").await;
    for seq in 0..k {
        p.publish(topic, &tagged("f", seq)).await;
    }
    all_receive(&mut steady, "f", k).await;
    for churner in &mut churners {
        if churner.stays {
            churner.check_remaining(k, published).await;
        } else {
            check_windows(&churner.who(), &churner.seen, churner.node != 2);
        }
    }
    let clients = churners.iter_mut().map(|c| &mut c.client);
    all_silent(clients.chain(steady.iter_mut().map(|(_, c)| c)), QUIET).await;
    let after = cluster.stats(2).received;
    assert_eq!(after, node3_received, "node 3 got backplane messages with no subscriber");
    interest_follows_the_last_subscriber(cluster, topic).await;
}

/// Reads a remaining churner's messages until `k` of the final round
/// arrived: churn messages still on their way are recorded in `seen`.
async fn read_until_finals(c: &mut Client, seen: &mut Vec<Seen>, k: usize) -> Vec<String> {
    let mut finals = Vec::new();
    while finals.len() < k {
        let m = c.expect_message().await;
        let text = body(&m);
        match untag(&text) {
            ("f", _) => finals.push(text),
            _ => record(seen, vec![m]),
        }
    }
    finals
}

/// Node `i`'s `received` counter once it stopped changing (messages
/// already on their way when its subscription ended are let in).
async fn quiescent_received(cluster: &Cluster, i: usize) -> u64 {
    let mut before = cluster.stats(i).received;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = cluster.stats(i).received;
        if now == before {
            return now;
        }
        before = now;
    }
    panic!("node {}'s received counter keeps growing: {}", i + 1, cluster.all_stats());
}

/// Node 3's backplane subscription to `topic` exists while it has a
/// local subscriber, however many, and ends with the last one, whether
/// it unsubscribes or disconnects.
async fn interest_follows_the_last_subscriber(cluster: &Cluster, topic: &str) {
    let subscriptions = || cluster.stats(2).subscriptions;
    let mut x = cluster.client(2, "x").await;
    let mut y = cluster.client(2, "y").await;
    x.subscribe("x", topic, "auto").await;
    assert_eq!(subscriptions(), 1, "{}", cluster.all_stats());
    y.subscribe("y", topic, "auto").await;
    assert_eq!(subscriptions(), 1, "{}", cluster.all_stats());
    x.with_receipt(unsubscribe_frame("x"), "ux").await;
    assert_eq!(subscriptions(), 1, "one subscriber is left: {}", cluster.all_stats());
    let mut p = cluster.client(0, "checker").await;
    p.publish(topic, &tagged("check", 0)).await;
    assert_eq!(body(&y.expect_message().await), tagged("check", 0));
    drop(y);
    soon("node 3's last subscriber left", || subscriptions() == 0).await;
    x.expect_silence(QUIET).await;
}
