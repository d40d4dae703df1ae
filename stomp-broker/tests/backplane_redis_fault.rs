//! Redis crashes in the middle of traffic: three nodes (A, B, C) joined
//! by a `RedisBackplane` on a private `redis-server`, node A publishing a
//! message every 2 ms to a topic with a subscriber on every node. Redis is
//! killed (SIGKILL) for 1.5 s and started again on the same port. The
//! test shows that
//! - A's local subscriber receives every message, outage or not;
//! - every node reports `connected == false` during the outage, and
//!   reconnects by itself once Redis is back (`reconnects >= 1`), with no
//!   node restarted;
//! - cross-node delivery resumes: every message published after the nodes
//!   report themselves connected again reaches B and C;
//! - the loss is confined to the outage and counted exactly: B and C each
//!   receive messages in order without duplicates, count as `received`
//!   exactly what their subscriber got, and count as `lost` exactly the
//!   messages they missed (published − received, from the gaps in A's
//!   sequence numbers); A counts every message either `published` or
//!   `publish_dropped`, and what it dropped is part of what B and C lost
//!   (the rest was published while their subscriptions were not yet back).
//!
//! The Redis server is the test's own (`backplane_support::redis_server`),
//! so the shared one is untouched.

mod backplane_support;
mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backplane_support::extra::eventually;
use backplane_support::redis_server::PrivateRedis;
use backplane_support::{Cluster, gaps, tagged, untag};
use support::{Client, WAIT, body, send};
use tokio::task::JoinHandle;

const TOPIC: &str = "/topic/ticks";
/// Between two messages of the publisher.
const TICK: Duration = Duration::from_millis(2);
/// How long Redis stays down.
const OUTAGE: Duration = Duration::from_millis(1500);
/// How long the publisher goes on once every node is connected again.
const AFTER_RECOVERY: Duration = Duration::from_millis(500);

/// Node A's publisher: message `seq` every [`TICK`] until stopped, then
/// an `end` message with a receipt.
struct Publisher {
    sent: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<usize>,
}

impl Publisher {
    fn start(mut client: Client) -> Self {
        let sent = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counter, stopped) = (sent.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            let mut seq = 0;
            while !stopped.load(Ordering::Relaxed) {
                tick.tick().await;
                client.send(send(TOPIC, &tagged("a", seq))).await;
                seq += 1;
                counter.store(seq, Ordering::Relaxed);
            }
            // With a receipt: the broker has handled every message.
            client.publish(TOPIC, &tagged("end", seq)).await;
            seq + 1
        });
        Self { sent, stop, task }
    }

    /// Messages written so far: every later one reaches the broker later.
    fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops; returns how many messages were published in all.
    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("publisher")
    }
}

/// A subscriber whose reader task records the sequence numbers it
/// receives, until the `end` message.
struct Receiver {
    seqs: Arc<Mutex<Vec<usize>>>,
    task: JoinHandle<Client>,
}

impl Receiver {
    async fn start(mut client: Client) -> Self {
        client.subscribe("ticks", TOPIC, "auto").await;
        let seqs = Arc::new(Mutex::new(Vec::new()));
        let record = seqs.clone();
        let task = tokio::spawn(async move {
            loop {
                let text = body(&client.expect_message().await);
                let (tag, seq) = untag(&text);
                record.lock().expect("seqs").push(seq);
                if tag == "end" {
                    return client;
                }
            }
        });
        Self { seqs, task }
    }

    fn len(&self) -> usize {
        self.seqs.lock().expect("seqs").len()
    }

    /// Waits for the `end` message; returns what was received.
    async fn finish(self) -> Vec<usize> {
        drop(self.task.await.expect("subscriber"));
        Arc::try_unwrap(self.seqs).expect("reader done").into_inner().expect("seqs")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_resumes_after_a_redis_crash_and_the_loss_is_counted() {
    let started = Instant::now();
    let mut redis = PrivateRedis::start().await;
    let retry = |c: stomp_broker::backplane::RedisConfig| {
        c.retry(Duration::from_millis(50), Duration::from_millis(300))
    };
    let cluster = Cluster::redis(3, &redis.url(), "fault", retry).await;
    let mut receivers = Vec::new();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        receivers.push(Receiver::start(cluster.client(i, name).await).await);
    }
    let publisher = Publisher::start(cluster.client(0, "ticker").await);
    let crossing = || receivers[1].len() >= 100 && receivers[2].len() >= 100;
    eventually(WAIT, "B and C receive from A", crossing).await;

    redis.kill();
    let (killed, at_kill) = (Instant::now(), receivers[1].len().min(receivers[2].len()));
    let down = || (0..3).all(|i| !cluster.stats(i).connected);
    eventually(OUTAGE, "every node reports the outage", down).await;
    let detected = killed.elapsed();
    tokio::time::sleep(OUTAGE.saturating_sub(detected)).await;

    redis.restart().await;
    let restarted = Instant::now();
    let up = || (0..3).all(|i| cluster.stats(i).connected && cluster.stats(i).reconnects >= 1);
    eventually(WAIT, "every node reconnects by itself", up).await;
    let (recovered, at_recovery) = (restarted.elapsed(), publisher.sent());
    tokio::time::sleep(AFTER_RECOVERY).await;
    let published = publisher.stop().await;

    let mut got = Vec::new();
    for receiver in receivers {
        got.push(receiver.finish().await);
    }
    let local = &got[0];
    assert!(local.iter().copied().eq(0..published), "A's local subscriber: {}", gaps(local));
    let a = &cluster;
    let accounted = || a.stats(0).published + a.stats(0).publish_dropped == published as u64;
    eventually(WAIT, "A counts each message published or dropped", accounted).await;
    let dropped = cluster.stats(0).publish_dropped;
    eprintln!(
        "published {published}; outage seen after {detected:?}, reconnected {recovered:?} after \
         the restart; A dropped {dropped}{}",
        cluster.all_stats()
    );
    for (i, name) in [(1, "B"), (2, "C")] {
        check_remote(&cluster, i, name, &got[i], published, (at_kill, at_recovery));
    }
    cluster.stop().await;
    eprintln!("done in {:?}", started.elapsed());
}

/// Node `i`'s subscriber received `seqs` of messages `0..published`:
/// in order, once each, the first and the last, everything published
/// from `recovered` on, and nothing missed before `before_kill`; its
/// node counts what it received and, exactly, what it lost.
fn check_remote(
    cluster: &Cluster,
    i: usize,
    name: &str,
    seqs: &[usize],
    published: usize,
    (before_kill, recovered): (usize, usize),
) {
    let stats = cluster.stats(i);
    let why = format!("{name}: {} {stats:?}", gaps(seqs));
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "out of order or repeated, {why}");
    assert_eq!((seqs.first(), seqs.last()), (Some(&0), Some(&(published - 1))), "{why}");
    let missed: Vec<usize> = (0..published).filter(|s| seqs.binary_search(s).is_err()).collect();
    let (first, last) = (missed.first().copied(), missed.last().copied());
    assert!(!missed.is_empty(), "nothing lost in a {OUTAGE:?} outage? {why}");
    assert!(first >= Some(before_kill), "lost {first:?}, received before the kill: {why}");
    assert!(last < Some(recovered), "lost {last:?}, published after recovery ({recovered}): {why}");
    assert_eq!(stats.received, seqs.len() as u64, "received, {why}");
    assert_eq!(stats.lost, missed.len() as u64, "published - received = lost, {why}");
    let dropped = cluster.stats(0).publish_dropped;
    assert!(dropped <= stats.lost, "A dropped {dropped}, more than {name} lost: {why}");
    eprintln!(
        "{name}: received {}, lost {} = {dropped} A dropped + {} published while {name} was away \
         (missed seqs {first:?}..={last:?}, recovery from seq {recovered})",
        seqs.len(),
        stats.lost,
        stats.lost - dropped,
    );
}
