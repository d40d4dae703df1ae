//! Subscriptions and their unacknowledged messages.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

use crate::config::Limits;
use crate::hooks::SkipLive;
use crate::message::Message;
use crate::outbox::{Delivery, Offer, Outbox};
use crate::router::Queue;
use crate::{SlowConsumerPolicy, stats::Stats};

/// How a subscription acknowledges messages (the `ack` header of SUBSCRIBE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckMode {
    /// Delivered is done.
    Auto,
    /// `ACK` of a message acknowledges it and every earlier one.
    Client,
    /// `ACK` acknowledges one message.
    ClientIndividual,
}

impl AckMode {
    pub(crate) fn parse(value: Option<&[u8]>) -> Option<Self> {
        match value {
            None | Some(b"auto") => Some(Self::Auto),
            Some(b"client") => Some(Self::Client),
            Some(b"client-individual") => Some(Self::ClientIndividual),
            Some(_) => None,
        }
    }
}

/// A message delivered and not yet acknowledged.
#[derive(Debug, Clone)]
pub(crate) struct Unacked {
    pub(crate) tag: u64,
    pub(crate) message: Arc<Message>,
}

#[derive(Debug, Default)]
struct Pending {
    /// Delivered, waiting for ACK or NACK, in delivery order.
    unacked: VecDeque<Unacked>,
    /// Topic messages that arrived while `unacked` was full.
    backlog: VecDeque<Arc<Message>>,
    /// Octets of `backlog` (by [`Message::size`]); bounded by the
    /// connection's `max_pending_bytes`, past which the slow-consumer
    /// policy applies, as for any other subscriber.
    backlog_bytes: usize,
    /// Live messages held while a replay is read (see [`crate::Replay`]);
    /// `None` once released.
    held: Option<VecDeque<Arc<Message>>>,
    /// Octets of `held`.
    held_bytes: usize,
}

impl Pending {
    fn push_backlog(&mut self, message: Arc<Message>) {
        self.backlog_bytes += message.size();
        self.backlog.push_back(message);
    }

    fn pop_backlog(&mut self) -> Option<Arc<Message>> {
        let message = self.backlog.pop_front()?;
        self.backlog_bytes -= message.size();
        Some(message)
    }
}

/// Where `tag` is among unacknowledged deliveries. Tags come from one
/// connection's counter and are recorded in delivery order, so the list is
/// sorted by tag.
fn position(unacked: &VecDeque<Unacked>, tag: u64) -> Option<usize> {
    unacked.binary_search_by_key(&tag, |u| u.tag).ok()
}

/// One subscription of one session.
#[derive(Debug)]
pub(crate) struct Subscription {
    /// The client's subscription id.
    pub(crate) id: Bytes,
    /// The session it belongs to.
    pub(crate) session: u64,
    pub(crate) ack: AckMode,
    pub(crate) outbox: Arc<Outbox>,
    /// The destination it is routed by.
    pub(crate) route: Arc<str>,
    /// The queue, for a queue subscription.
    pub(crate) queue: Option<Arc<Queue>>,
    pending: Mutex<Pending>,
    /// Whether live messages are held (a replay is being read). Read
    /// without the lock on the delivery path; only ever goes from `true`
    /// to `false`, under the lock, after what was held is queued.
    holding: AtomicBool,
    /// Set by a replay: live messages it already delivered, skipped for
    /// the subscription's whole life (a message held while the replay was
    /// read, or one that reaches this node late, is not delivered twice).
    skip: OnceLock<Skip>,
    /// The client's own prefetch (`prefetch-count`), within the broker's
    /// `max_unacked`; set before the subscription is routed to.
    prefetch: AtomicUsize,
}

/// A replay's [`SkipLive`], kept by its subscription.
struct Skip(SkipLive);

impl std::fmt::Debug for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Skip")
    }
}

impl Subscription {
    pub(crate) fn new(
        id: Bytes,
        session: u64,
        ack: AckMode,
        outbox: Arc<Outbox>,
        route: Arc<str>,
        queue: Option<Arc<Queue>>,
    ) -> Arc<Self> {
        let sub = Self::build(id, session, ack, outbox, route, Pending::default());
        Arc::new(Self { queue, ..sub })
    }

    /// A topic subscription that holds live messages until
    /// [`release`](Self::release) (for a replay).
    pub(crate) fn held(
        id: Bytes,
        session: u64,
        ack: AckMode,
        outbox: Arc<Outbox>,
        route: Arc<str>,
    ) -> Arc<Self> {
        let pending = Pending { held: Some(VecDeque::new()), ..Pending::default() };
        Arc::new(Self::build(id, session, ack, outbox, route, pending))
    }

    /// A topic subscription with these pending messages; holding when
    /// some are held.
    fn build(
        id: Bytes,
        session: u64,
        ack: AckMode,
        outbox: Arc<Outbox>,
        route: Arc<str>,
        pending: Pending,
    ) -> Self {
        let holding = AtomicBool::new(pending.held.is_some());
        let pending = Mutex::new(pending);
        let (skip, prefetch) = (OnceLock::new(), AtomicUsize::new(usize::MAX));
        Self { id, session, ack, outbox, route, queue: None, pending, holding, skip, prefetch }
    }

    /// Holds `message` if live messages are still held; gives it back
    /// otherwise. Past `max_pending_bytes` the connection is closed as a
    /// slow consumer: a replay must not be followed by a gap.
    fn hold(&self, message: &Arc<Message>, limits: &Limits, stats: &Stats) -> Option<Offer> {
        if !self.holding.load(Ordering::Acquire) {
            return None;
        }
        let mut pending = self.lock();
        let bytes = pending.held_bytes + message.size();
        let held = pending.held.as_mut()?;
        if bytes > limits.max_pending_bytes && !held.is_empty() {
            drop(pending);
            stats.slow_consumer(SlowConsumerPolicy::Disconnect);
            self.outbox.overflow();
            return Some(Offer::Overflowed);
        }
        held.push_back(message.clone());
        pending.held_bytes = bytes;
        Some(Offer::Queued)
    }

    /// Queues `replayed`, then the held live messages `skip` does not
    /// reject, then lets live messages through as usual, also checked by
    /// `skip` from then on. Replayed and held messages are never dropped
    /// (the replay is bounded by whoever made it, the held ones by
    /// `max_pending_bytes`).
    pub(crate) fn release(
        &self,
        replayed: Vec<Arc<Message>>,
        skip: Option<SkipLive>,
        limits: &Limits,
    ) -> usize {
        let mut pending = self.lock();
        let held = pending.held.take().unwrap_or_default();
        pending.held_bytes = 0;
        if let Some(skip) = skip {
            // Set before `holding` goes false: no live message passes
            // unchecked.
            let _ = self.skip.set(Skip(skip));
        }
        let live = held.into_iter().filter(|m| !self.skips(m));
        let mut n = 0;
        for message in replayed.into_iter().chain(live) {
            n += 1;
            if self.ack == AckMode::Auto {
                self.outbox.push_reserved(self.delivery(message, None, false));
            } else {
                // Past the prefetch bound they wait in the backlog, as
                // topic messages do.
                pending.push_backlog(message);
            }
        }
        while pending.unacked.len() < self.window(limits) {
            let Some(message) = pending.pop_backlog() else { break };
            self.deliver_locked(&mut pending, message, false);
        }
        self.holding.store(false, Ordering::Release);
        n
    }

    /// Bounds the unacknowledged messages of this subscription to `n`
    /// (the broker's `max_unacked` still applies).
    pub(crate) fn set_prefetch(&self, n: usize) {
        self.prefetch.store(n.max(1), Ordering::Relaxed);
    }

    /// How many unacknowledged messages it may hold.
    fn window(&self, limits: &Limits) -> usize {
        self.prefetch.load(Ordering::Relaxed).min(limits.max_unacked)
    }

    /// Whether the replay that started this subscription delivered
    /// `message` already.
    fn skips(&self, message: &Message) -> bool {
        self.skip.get().is_some_and(|skip| (skip.0)(message))
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Each update is a single push or removal: a panic cannot leave it torn.
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn delivery(&self, message: Arc<Message>, ack: Option<u64>, redelivered: bool) -> Delivery {
        Delivery { message, subscription: self.id.clone(), ack, redelivered }
    }

    /// Offers a topic message, under the prefetch bound and the
    /// slow-consumer policy.
    pub(crate) fn offer(
        &self,
        message: &Arc<Message>,
        limits: &Limits,
        policy: SlowConsumerPolicy,
        stats: &Stats,
    ) -> Offer {
        if let Some(offer) = self.hold(message, limits, stats) {
            return offer;
        }
        if self.skips(message) {
            return Offer::Skipped;
        }
        if self.ack == AckMode::Auto {
            let delivery = self.delivery(message.clone(), None, false);
            return self.outbox.offer(delivery, limits.max_pending_bytes, policy, stats);
        }
        let mut pending = self.lock();
        if pending.unacked.len() < self.window(limits) && pending.backlog.is_empty() {
            return self.deliver_locked(&mut pending, message.clone(), false);
        }
        if pending.backlog_bytes + message.size() <= limits.max_pending_bytes
            || pending.backlog.is_empty()
        {
            pending.push_backlog(message.clone());
            return Offer::Queued;
        }
        stats.slow_consumer(policy);
        match policy {
            SlowConsumerPolicy::Disconnect => {
                drop(pending);
                self.outbox.overflow();
                Offer::Overflowed
            }
            SlowConsumerPolicy::DropNewest => Offer::Dropped,
            SlowConsumerPolicy::DropOldest => {
                while pending.backlog_bytes + message.size() > limits.max_pending_bytes {
                    if pending.pop_backlog().is_none() {
                        break;
                    }
                }
                pending.push_backlog(message.clone());
                Offer::Dropped
            }
        }
    }

    /// Records and queues one delivery of a `client`/`client-individual`
    /// subscription.
    fn deliver_locked(
        &self,
        pending: &mut Pending,
        message: Arc<Message>,
        redelivered: bool,
    ) -> Offer {
        let tag = self.outbox.next_tag();
        pending.unacked.push_back(Unacked { tag, message: message.clone() });
        let offer = self.outbox.push_reserved(self.delivery(message, Some(tag), redelivered));
        if offer == Offer::Closed {
            // Never written: the caller keeps the message (a queue requeues it).
            pending.unacked.pop_back();
        }
        offer
    }

    /// Whether a queue may hand this consumer one more message.
    pub(crate) fn can_take(&self, limits: &Limits) -> bool {
        let prefetch_ok =
            self.ack == AckMode::Auto || self.lock().unacked.len() < self.window(limits);
        prefetch_ok && self.outbox.has_room(limits.max_pending_bytes)
    }

    /// Delivers a queue message (the queue checked [`can_take`](Self::can_take)).
    pub(crate) fn deliver_queued(&self, message: Arc<Message>, redelivered: bool) -> Offer {
        if self.ack == AckMode::Auto {
            return self.outbox.push_reserved(self.delivery(message, None, redelivered));
        }
        let mut pending = self.lock();
        self.deliver_locked(&mut pending, message, redelivered)
    }

    /// Whether `tag` is waiting for an acknowledgement.
    pub(crate) fn has_tag(&self, tag: u64) -> bool {
        position(&self.lock().unacked, tag).is_some()
    }

    /// The tag of the oldest unacknowledged delivery of `message_id` (for
    /// STOMP 1.0 and 1.1 clients, which acknowledge by message id).
    pub(crate) fn tag_of(&self, message_id: &[u8]) -> Option<u64> {
        let pending = self.lock();
        pending
            .unacked
            .iter()
            .find(|u| u.message.message_id().as_bytes() == message_id)
            .map(|u| u.tag)
    }

    /// Removes the delivery `tag` (and, for a `client` subscription, every
    /// earlier one) from the unacknowledged ones and returns them, oldest
    /// first; `None` when `tag` is not waiting.
    pub(crate) fn settle(&self, tag: u64) -> Option<Vec<Unacked>> {
        let mut pending = self.lock();
        let at = position(&pending.unacked, tag)?;
        if self.ack == AckMode::Client {
            Some(pending.unacked.drain(..=at).collect())
        } else {
            pending.unacked.remove(at).map(|u| vec![u])
        }
    }

    /// Delivers topic messages held back by the prefetch bound.
    pub(crate) fn refill(&self, limits: &Limits) -> usize {
        let mut pending = self.lock();
        let mut n = 0;
        while pending.unacked.len() < self.window(limits) {
            let Some(message) = pending.pop_backlog() else { break };
            self.deliver_locked(&mut pending, message, false);
            n += 1;
        }
        n
    }

    /// Everything delivered and not acknowledged, oldest first; the
    /// subscription ends.
    pub(crate) fn take_unacked(&self) -> Vec<Arc<Message>> {
        let mut pending = self.lock();
        pending.backlog.clear();
        pending.backlog_bytes = 0;
        pending.unacked.drain(..).map(|u| u.message).collect()
    }
}
