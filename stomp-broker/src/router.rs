//! Destinations: topics fan out to every subscriber, queues hand each
//! message to one consumer.
//!
//! Lookup is a sharded hash map (`DashMap`), so there is no global lock on
//! the publish path: a publish takes one shard's read lock to find its
//! destination, then that destination's own lock to deliver.
//!
//! Lock order, everywhere: a shard of the map, then a queue's state, then
//! a subscription's pending list, then an outbox.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use dashmap::DashMap;

use crate::backplane::{Interest, Ready};
use crate::config::{Limits, QueueOverflow, SlowConsumerPolicy};
use crate::error::PublishError;
use crate::message::Message;
use crate::outbox::Offer;
use crate::stats::Stats;
use crate::subscription::Subscription;

/// Whether `destination` names a queue; every other destination is a topic.
pub(crate) fn is_queue(destination: &str) -> bool {
    destination.starts_with("/queue/")
}

/// How to deliver: the policies a router applies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub(crate) limits: Limits,
    pub(crate) slow_consumer: SlowConsumerPolicy,
    pub(crate) queue_overflow: QueueOverflow,
}

/// A topic: its subscribers.
#[derive(Debug, Default)]
pub(crate) struct Topic {
    subscribers: RwLock<Vec<Arc<Subscription>>>,
}

impl Topic {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Subscription>>> {
        self.subscribers.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<Subscription>>> {
        self.subscribers.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Offers `message` to every subscriber (of `only_session`, when given);
    /// returns how many took it.
    fn publish(
        &self,
        message: &Arc<Message>,
        only_session: Option<u64>,
        policy: &Policy,
        stats: &Stats,
    ) -> usize {
        let subscribers = self.read();
        let mut delivered = 0;
        for sub in subscribers.iter().filter(|s| only_session.is_none_or(|id| s.session == id)) {
            if sub.offer(message, &policy.limits, policy.slow_consumer, stats) == Offer::Queued {
                delivered += 1;
            }
        }
        delivered
    }
}

#[derive(Debug, Default)]
struct QueueState {
    /// Waiting messages, oldest first, and whether each was delivered before.
    messages: VecDeque<(Arc<Message>, bool)>,
    /// Body octets of `messages`.
    bytes: usize,
    consumers: Vec<Arc<Subscription>>,
    /// Where the round robin resumes.
    cursor: usize,
    /// Body octets of every queue of the broker, `bytes` included.
    total: Arc<AtomicUsize>,
}

impl QueueState {
    fn push_back(&mut self, message: Arc<Message>, redelivered: bool) {
        self.add_bytes(message.body().len());
        self.messages.push_back((message, redelivered));
    }

    fn push_front(&mut self, message: Arc<Message>, redelivered: bool) {
        self.add_bytes(message.body().len());
        self.messages.push_front((message, redelivered));
    }

    fn pop_front(&mut self) -> Option<(Arc<Message>, bool)> {
        let (message, redelivered) = self.messages.pop_front()?;
        self.bytes -= message.body().len();
        self.total.fetch_sub(message.body().len(), Ordering::Relaxed);
        Some((message, redelivered))
    }

    fn add_bytes(&mut self, n: usize) {
        self.bytes += n;
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    /// Which bound, if any, one more message of `len` octets would pass.
    fn over(&self, len: usize, limits: &Limits) -> Option<Bound> {
        if self.messages.len() >= limits.max_queue_messages
            || self.bytes + len > limits.max_queue_bytes
        {
            Some(Bound::Queue)
        } else if self.total.load(Ordering::Relaxed) + len > limits.max_total_queue_bytes {
            Some(Bound::AllQueues)
        } else {
            None
        }
    }
}

/// The bounds of what queues keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    /// One queue's messages or octets.
    Queue,
    /// The octets of all queues together.
    AllQueues,
}

/// A queue: waiting messages and consumers.
#[derive(Debug)]
pub(crate) struct Queue {
    name: Arc<str>,
    state: Mutex<QueueState>,
}

impl Queue {
    fn new(name: Arc<str>, total: &Arc<AtomicUsize>) -> Arc<Self> {
        let state = QueueState { total: total.clone(), ..QueueState::default() };
        Arc::new(Self { name, state: Mutex::new(state) })
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds `message`, then hands out what consumers can take.
    fn publish(&self, message: Arc<Message>, policy: &Policy) -> Result<usize, PublishError> {
        let mut state = self.lock();
        while let Some(bound) = state.over(message.body().len(), &policy.limits) {
            let refused = match bound {
                Bound::Queue => PublishError::QueueFull(self.name.to_string()),
                Bound::AllQueues => PublishError::QueuesFull,
            };
            match policy.queue_overflow {
                QueueOverflow::RejectPublish => return Err(refused),
                QueueOverflow::DropOldest => {
                    if state.pop_front().is_none() {
                        // One message larger than a queue's bound still
                        // goes into an empty queue; the broker's total is
                        // kept.
                        if bound == Bound::AllQueues {
                            return Err(refused);
                        }
                        break;
                    }
                }
            }
        }
        state.push_back(message, false);
        Ok(Self::dispatch_locked(&mut state, &policy.limits))
    }

    /// Hands waiting messages to consumers with room, round robin.
    pub(crate) fn dispatch(&self, limits: &Limits) -> usize {
        Self::dispatch_locked(&mut self.lock(), limits)
    }

    fn dispatch_locked(state: &mut QueueState, limits: &Limits) -> usize {
        let mut delivered = 0;
        while !state.messages.is_empty() {
            let n = state.consumers.len();
            let Some(pick) = (0..n)
                .map(|i| (state.cursor + i) % n)
                .find(|&i| state.consumers[i].can_take(limits))
            else {
                break;
            };
            state.cursor = (pick + 1) % n;
            let Some((message, redelivered)) = state.pop_front() else { break };
            if state.consumers[pick].deliver_queued(message.clone(), redelivered) == Offer::Closed {
                // The consumer is going away; keep the message for another.
                state.push_front(message, redelivered);
                state.consumers.remove(pick);
                state.cursor = 0;
                continue;
            }
            delivered += 1;
        }
        delivered
    }

    /// Puts messages given back (NACK, unsubscribe, disconnect) at the
    /// front, in their original order, and hands them out again.
    pub(crate) fn requeue(&self, messages: Vec<Arc<Message>>, limits: &Limits) {
        let mut state = self.lock();
        // Given back, never refused: a bound may be passed for a while.
        for message in messages.into_iter().rev() {
            state.push_front(message, true);
        }
        Self::dispatch_locked(&mut state, limits);
    }

    fn add(&self, sub: Arc<Subscription>, limits: &Limits) {
        let mut state = self.lock();
        state.consumers.push(sub);
        Self::dispatch_locked(&mut state, limits);
    }

    fn remove(&self, sub: &Arc<Subscription>) {
        let mut state = self.lock();
        state.consumers.retain(|s| !Arc::ptr_eq(s, sub));
        state.cursor = 0;
    }

    fn is_unused(&self) -> bool {
        let state = self.lock();
        state.consumers.is_empty() && state.messages.is_empty()
    }

    fn consumer_count(&self) -> usize {
        self.lock().consumers.len()
    }
}

/// Every destination of one broker.
#[derive(Debug, Default)]
pub(crate) struct Router {
    topics: DashMap<Arc<str>, Arc<Topic>>,
    queues: DashMap<Arc<str>, Arc<Queue>>,
    /// Body octets kept by all queues (bounded by `max_total_queue_bytes`).
    queued_bytes: Arc<AtomicUsize>,
    /// With a backplane: the topics this node has subscribers for.
    interest: Option<Interest>,
}

impl Router {
    pub(crate) fn new(interest: Option<Interest>) -> Self {
        Self { interest, ..Self::default() }
    }

    /// The backplane side, when the broker has a backplane.
    pub(crate) fn interest(&self) -> Option<&Interest> {
        self.interest.as_ref()
    }

    /// Destinations that exist (with subscribers, or queued messages).
    pub(crate) fn destination_count(&self) -> usize {
        self.topics.len() + self.queues.len()
    }

    /// This node's subscribers of `destination` (a queue's consumers).
    pub(crate) fn subscriber_count(&self, destination: &str) -> usize {
        if is_queue(destination) {
            self.queues.get(destination).map_or(0, |q| q.consumer_count())
        } else {
            self.topics.get(destination).map_or(0, |t| t.read().len())
        }
    }

    fn check_room(&self, limits: &Limits) -> Result<(), PublishError> {
        if self.destination_count() >= limits.max_destinations {
            return Err(PublishError::TooManyDestinations);
        }
        Ok(())
    }

    /// Makes a subscription to `route` with `make` (given the queue, for a
    /// queue) and starts delivering to it. For a topic on a broker with a
    /// backplane, also returns when the subscription is live on the other
    /// nodes.
    ///
    /// The map entry is held while the subscription is added, so that the
    /// destination cannot be removed as unused in between.
    pub(crate) fn subscribe(
        &self,
        route: &str,
        limits: &Limits,
        make: impl FnOnce(Option<Arc<Queue>>) -> Arc<Subscription>,
    ) -> Result<(Arc<Subscription>, Option<Ready>), PublishError> {
        if is_queue(route) {
            if !self.queues.contains_key(route) {
                self.check_room(limits)?;
            }
            let entry = self
                .queues
                .entry(Arc::from(route))
                .or_insert_with(|| Queue::new(Arc::from(route), &self.queued_bytes));
            let sub = make(Some(entry.clone()));
            entry.add(sub.clone(), limits);
            return Ok((sub, None));
        }
        if !self.topics.contains_key(route) {
            self.check_room(limits)?;
        }
        let entry = self.topics.entry(Arc::from(route)).or_default();
        let sub = make(None);
        entry.write().push(sub.clone());
        let ready = self.interest.as_ref().map(|i| i.add(route));
        Ok((sub, ready))
    }

    /// Adds `message` to the queue `name`, creating the queue if needed.
    fn publish_queue(
        &self,
        name: &str,
        message: Arc<Message>,
        policy: &Policy,
    ) -> Result<usize, PublishError> {
        // The read guard keeps the queue from being removed as unused
        // while the message goes in.
        if let Some(queue) = self.queues.get(name) {
            return queue.publish(message, policy);
        }
        self.check_room(&policy.limits)?;
        let entry = self
            .queues
            .entry(Arc::from(name))
            .or_insert_with(|| Queue::new(Arc::from(name), &self.queued_bytes));
        entry.publish(message, policy)
    }

    /// Stops delivering to `sub`: its unacknowledged queue messages go back
    /// to the queue (topic ones are dropped), and destinations left unused
    /// are forgotten.
    pub(crate) fn unsubscribe(&self, sub: &Arc<Subscription>, limits: &Limits) {
        if let Some(queue) = &sub.queue {
            queue.remove(sub);
            let unacked = sub.take_unacked();
            if !unacked.is_empty() {
                queue.requeue(unacked, limits);
            }
            self.release_queue(queue);
            return;
        }
        sub.take_unacked();
        if let Some(topic) = self.topics.get(&*sub.route) {
            let mut subscribers = topic.write();
            let before = subscribers.len();
            subscribers.retain(|s| !Arc::ptr_eq(s, sub));
            if subscribers.len() < before
                && let Some(interest) = &self.interest
            {
                interest.remove(&sub.route);
            }
        }
        self.topics.remove_if(&*sub.route, |_, t| t.read().is_empty());
    }

    /// Forgets `queue` if it has neither consumers nor messages.
    pub(crate) fn release_queue(&self, queue: &Queue) {
        self.queues.remove_if(&queue_key(queue), |_, q| q.is_unused());
    }

    /// Routes `message`, published on this node, to `destination`;
    /// returns the deliveries made now.
    pub(crate) fn publish(
        &self,
        destination: &str,
        message: Arc<Message>,
        only_session: Option<u64>,
        policy: &Policy,
        stats: &Stats,
    ) -> Result<usize, PublishError> {
        stats.published(1);
        self.deliver(destination, message, only_session, policy, stats)
    }

    /// Routes `message` to `destination` without counting it as published
    /// here: [`publish`](Self::publish)'s delivery, and how a message from
    /// another node (counted by the backplane as received) is routed, so
    /// that a message published once counts once in the cluster.
    pub(crate) fn deliver(
        &self,
        destination: &str,
        message: Arc<Message>,
        only_session: Option<u64>,
        policy: &Policy,
        stats: &Stats,
    ) -> Result<usize, PublishError> {
        let delivered = if is_queue(destination) {
            self.publish_queue(destination, message, policy)?
        } else {
            match self.topics.get(destination).map(|t| t.clone()) {
                Some(topic) => topic.publish(&message, only_session, policy, stats),
                None => 0,
            }
        };
        stats.delivered(delivered as u64);
        stats.fanout.observe(delivered as u64);
        Ok(delivered)
    }
}

fn queue_key(queue: &Queue) -> Arc<str> {
    queue.name.clone()
}
