//! Test support for the backplane tests: a [`Cluster`] of broker nodes
//! joined by one backplane, checks on what each subscriber received, the
//! scenarios the in-process and the Redis tests both run ([`scenarios`],
//! [`churn`]), and a private Redis server a fault test may kill and
//! restart ([`redis_server`]).
//!
//! Message bodies are `"{publisher}:{seq}"`, so that a subscriber's
//! stream can be checked for loss, duplicates and order per publisher.
#![allow(dead_code, unreachable_pub, clippy::missing_panics_doc)]

pub mod churn;
#[path = "../support/extra_destinations.rs"]
pub mod extra;
pub mod redis_server;
pub mod scenarios;

use std::collections::BTreeMap;
use std::time::Duration;

use stomp_broker::BrokerBuilder;
use stomp_broker::backplane::{BackplaneStats, InProcessBus};
#[cfg(feature = "redis")]
use stomp_broker::backplane::{RedisBackplane, RedisConfig};
use stomp_codec::Frame;

use crate::support::{Client, TestBroker, body};

/// Broker nodes joined by one backplane, each serving on a port of its
/// own. Nodes are numbered from 1 in messages and from 0 in indexes.
pub struct Cluster {
    pub nodes: Vec<TestBroker>,
}

impl Cluster {
    /// Starts a node for each builder (each with its own backplane).
    pub async fn start(builders: impl IntoIterator<Item = BrokerBuilder>) -> Self {
        let mut nodes = Vec::new();
        for builder in builders {
            nodes.push(TestBroker::start(builder).await);
        }
        Self { nodes }
    }

    /// `n` nodes on one [`InProcessBus`].
    pub async fn in_process(n: usize) -> Self {
        let bus = InProcessBus::new();
        Self::start((0..n).map(|_| stomp_broker::Broker::builder().backplane(bus.node()))).await
    }

    /// `n` nodes, each with a `RedisBackplane` of its own on the Redis at
    /// `url`, on channels whose prefix is unique to this process and
    /// `test` (tests running at once on one Redis do not meet). `tune`
    /// adjusts each node's configuration.
    #[cfg(feature = "redis")]
    pub async fn redis(
        n: usize,
        url: &str,
        test: &str,
        tune: impl Fn(RedisConfig) -> RedisConfig,
    ) -> Self {
        let prefix = redis_prefix(test);
        let mut builders = Vec::new();
        for _ in 0..n {
            let config = tune(RedisConfig::new(url).channel_prefix(prefix.clone()));
            let backplane = RedisBackplane::connect(config).await.unwrap_or_else(|e| {
                panic!("cannot connect to Redis at {url}: {e}; scripts/ensure-services starts it")
            });
            builders.push(stomp_broker::Broker::builder().backplane(backplane));
        }
        Self::start(builders).await
    }

    /// A connected client of node `i` (from 0) logged in as `login`.
    pub async fn client(&self, i: usize, login: &str) -> Client {
        self.nodes[i].client(login).await
    }

    /// Node `i`'s backplane counters.
    pub fn stats(&self, i: usize) -> BackplaneStats {
        self.nodes[i].broker.backplane_stats().expect("every node has a backplane")
    }

    /// Every node's backplane counters, for failure messages.
    pub fn all_stats(&self) -> String {
        (0..self.nodes.len()).map(|i| format!("\n  node {}: {:?}", i + 1, self.stats(i))).collect()
    }

    /// Shuts every node down, all at once.
    pub async fn stop(self) {
        futures::future::join_all(self.nodes.into_iter().map(TestBroker::stop)).await;
    }
}

/// The channel prefix of [`Cluster::redis`]'s nodes for `test`: unique
/// to this process and test.
pub fn redis_prefix(test: &str) -> String {
    format!("stomp-test:{}:{test}:", std::process::id())
}

/// The body of message `seq` of `publisher`.
pub fn tagged(publisher: &str, seq: usize) -> String {
    format!("{publisher}:{seq}")
}

/// Splits a [`tagged`] body into publisher and sequence number.
pub fn untag(body: &str) -> (&str, usize) {
    let (publisher, seq) = body.rsplit_once(':').unwrap_or_else(|| panic!("untagged: {body:?}"));
    (publisher, seq.parse().unwrap_or_else(|_| panic!("bad sequence number: {body:?}")))
}

/// Checks that `bodies` (what one subscriber received, in arrival order)
/// hold messages `0..n` of each `(publisher, n)` of `expected` exactly
/// once, each publisher's in publish order, and nothing else.
pub fn assert_all_once_in_order(who: &str, bodies: &[String], expected: &[(&str, usize)]) {
    let mut seen: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for body in bodies {
        let (publisher, seq) = untag(body);
        seen.entry(publisher).or_default().push(seq);
    }
    for &(publisher, n) in expected {
        let got = seen.remove(publisher).unwrap_or_default();
        if !got.iter().copied().eq(0..n) {
            panic!(
                "{who}: from {publisher} expected 0..{n} once each in order, got {}",
                gaps(&got)
            );
        }
    }
    assert!(seen.is_empty(), "{who}: messages from unexpected publishers: {seen:?}");
}

/// Describes a sequence that should have been `0..n`: its length, the
/// first place order breaks, duplicates, and its ends.
pub fn gaps(seqs: &[usize]) -> String {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    let unique = {
        let mut u = sorted.clone();
        u.dedup();
        u.len()
    };
    let disorder = seqs.windows(2).position(|w| w[0] >= w[1]);
    format!(
        "{} messages ({unique} distinct), first {:?}, last {:?}, order breaks at index {disorder:?}",
        seqs.len(),
        seqs.first(),
        seqs.last()
    )
}

/// The `subscription` header of a MESSAGE.
pub fn subscription(message: &Frame) -> String {
    message
        .header_str("subscription")
        .unwrap_or_else(|| panic!("no subscription: {message:?}"))
        .to_owned()
}

/// The bodies of the next `n` messages `client` receives.
pub async fn read_bodies(client: &mut Client, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(body(&client.expect_message().await));
    }
    out
}

/// No frame arrives on any of `clients` within `wait` (watched at once).
pub async fn all_silent<'a>(clients: impl IntoIterator<Item = &'a mut Client>, wait: Duration) {
    futures::future::join_all(clients.into_iter().map(|c| c.expect_silence(wait))).await;
}
