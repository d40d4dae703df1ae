//! [`InProcessBus`]: several brokers in one process as nodes of one
//! cluster, without a network (tests, and applications that run several
//! brokers side by side).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use stomp_codec::Headers;

use super::{Backplane, BackplaneStats, Inbound, ReadySignal};

/// A bus joining brokers in one process. Each broker gets its own
/// [`InProcessNode`] from [`node`](Self::node); a message published on one
/// node reaches the subscribers of every other node, synchronously and in
/// order, exactly once.
#[derive(Debug, Clone, Default)]
pub struct InProcessBus {
    nodes: Arc<Mutex<Vec<Arc<Node>>>>,
}

#[derive(Debug, Default)]
struct Node {
    inbound: OnceLock<Inbound>,
    interest: Mutex<HashSet<String>>,
    published: AtomicU64,
    received: AtomicU64,
}

impl Node {
    fn interest(&self) -> MutexGuard<'_, HashSet<String>> {
        self.interest.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl InProcessBus {
    /// A bus with no nodes yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A new node on this bus, for one broker
    /// ([`BrokerBuilder::backplane`](crate::BrokerBuilder::backplane)).
    #[must_use]
    pub fn node(&self) -> InProcessNode {
        let node = Arc::new(Node::default());
        self.nodes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(node.clone());
        InProcessNode { bus: self.clone(), node }
    }
}

/// One broker's connection to an [`InProcessBus`].
#[derive(Debug)]
pub struct InProcessNode {
    bus: InProcessBus,
    node: Arc<Node>,
}

impl Backplane for InProcessNode {
    fn attach(&self, inbound: Inbound) {
        let _ = self.node.inbound.set(inbound);
    }

    fn publish(&self, destination: &str, headers: &Headers, body: &Bytes) {
        self.node.published.fetch_add(1, Ordering::Relaxed);
        let others: Vec<Arc<Node>> = self
            .bus
            .nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|n| !Arc::ptr_eq(n, &self.node))
            .cloned()
            .collect();
        for other in others {
            if !other.interest().contains(destination) {
                continue;
            }
            if let Some(inbound) = other.inbound.get() {
                other.received.fetch_add(1, Ordering::Relaxed);
                let _ = inbound.deliver(destination, headers, body);
            }
        }
    }

    fn subscribe(&self, destination: &str, ready: ReadySignal) {
        self.node.interest().insert(destination.to_owned());
        ready.set();
    }

    fn unsubscribe(&self, destination: &str) {
        self.node.interest().remove(destination);
    }

    fn stats(&self) -> BackplaneStats {
        BackplaneStats {
            connected: true,
            published: self.node.published.load(Ordering::Relaxed),
            received: self.node.received.load(Ordering::Relaxed),
            subscriptions: self.node.interest().len(),
            ..BackplaneStats::default()
        }
    }
}
