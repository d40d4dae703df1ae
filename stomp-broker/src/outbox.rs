//! The bounded queue of frames waiting to be written to one connection.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use stomp_codec::Frame;

use crate::SlowConsumerPolicy;
use crate::message::Message;
use crate::stats::Stats;

/// One message for one subscription.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) message: Arc<Message>,
    /// The client's subscription id.
    pub(crate) subscription: Bytes,
    /// The `ack` tag, for `client` and `client-individual` subscriptions.
    pub(crate) ack: Option<u64>,
    /// Delivered before and given back (NACK, disconnect).
    pub(crate) redelivered: bool,
}

/// Something to write.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A message for a subscription.
    Message(Delivery),
    /// A frame of the session itself: `CONNECTED`, `RECEIPT`, `ERROR`.
    Frame(Frame),
}

/// What became of a delivery offered to an outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Queued for writing.
    Queued,
    /// Dropped under the slow-consumer policy (this one or older ones).
    Dropped,
    /// The connection is over its limit and will be closed.
    Overflowed,
    /// The connection is closed.
    Closed,
    /// Not for this subscription: a replay delivered it already.
    Skipped,
}

#[derive(Debug, Default)]
struct Inner {
    items: VecDeque<(Outgoing, usize, bool)>,
    /// Sum of the sizes of `items`.
    bytes: usize,
    waker: Option<Waker>,
    /// Whether the waker wants to hear of new items, or only of an
    /// overflow or a close (its write queue is full).
    wants_items: bool,
    overflowed: bool,
    /// No more deliveries are taken (the connection is closing), but the
    /// session's own frames still are, and what waits is still written.
    sealed: bool,
    closed: bool,
    /// A queue skipped this connection for lack of room; it wants to hear
    /// when the outbox has drained.
    wants_room: bool,
}

/// The outbound queue of one connection (or local subscriber), shared by
/// every task that delivers to it and drained by the connection's task.
///
/// A `std::sync::Mutex`, not a tokio one: it is held for a push or a pop,
/// never across an `.await`, and most deliveries to it come from other
/// connections' tasks, where an async lock would cost a future per message.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    inner: Mutex<Inner>,
    next_tag: AtomicU64,
}

impl Outbox {
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the queue inconsistent
        // (every update is a single push, pop or flag), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new `ack` tag, unique on this connection.
    pub(crate) fn next_tag(&self) -> u64 {
        self.next_tag.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues a frame of the session itself, whatever the limit: the
    /// connection stops reading while its outbox is full, so a client
    /// cannot make these grow without bound.
    pub(crate) fn push_frame(&self, frame: Frame) {
        let size = frame.body().len() + 128;
        self.push(Outgoing::Frame(frame), size, false);
    }

    /// Queues a delivery that must not be dropped (queue messages, and
    /// messages waiting for an ack), whatever the limit: the caller checked
    /// [`has_room`](Self::has_room) first.
    pub(crate) fn push_reserved(&self, delivery: Delivery) -> Offer {
        let size = delivery.message.size();
        self.push(Outgoing::Message(delivery), size, false)
    }

    fn push(&self, item: Outgoing, size: usize, droppable: bool) -> Offer {
        let mut inner = self.lock();
        if inner.closed || (inner.sealed && matches!(item, Outgoing::Message(_))) {
            return Offer::Closed;
        }
        inner.items.push_back((item, size, droppable));
        inner.bytes += size;
        wake_for_items(inner);
        Offer::Queued
    }

    /// Offers a topic delivery, applying `policy` when the outbox would go
    /// past `limit` bytes.
    pub(crate) fn offer(
        &self,
        delivery: Delivery,
        limit: usize,
        policy: SlowConsumerPolicy,
        stats: &Stats,
    ) -> Offer {
        let size = delivery.message.size();
        let mut inner = self.lock();
        if inner.closed || inner.sealed {
            return Offer::Closed;
        }
        if inner.overflowed {
            return Offer::Overflowed;
        }
        if inner.bytes + size <= limit || inner.items.is_empty() {
            inner.items.push_back((Outgoing::Message(delivery), size, true));
            inner.bytes += size;
            wake_for_items(inner);
            return Offer::Queued;
        }
        stats.slow_consumer(policy);
        match policy {
            SlowConsumerPolicy::Disconnect => {
                inner.overflowed = true;
                wake(inner);
                Offer::Overflowed
            }
            SlowConsumerPolicy::DropNewest => Offer::Dropped,
            SlowConsumerPolicy::DropOldest => {
                while inner.bytes + size > limit {
                    let Some(i) = inner.items.iter().position(|(_, _, droppable)| *droppable)
                    else {
                        break;
                    };
                    if let Some((_, dropped, _)) = inner.items.remove(i) {
                        inner.bytes -= dropped;
                    }
                }
                inner.items.push_back((Outgoing::Message(delivery), size, true));
                inner.bytes += size;
                wake_for_items(inner);
                Offer::Dropped
            }
        }
    }

    /// Takes no more deliveries; with `discard`, drops the ones waiting
    /// (a slow consumer's), and clears the overflow.
    pub(crate) fn seal(&self, discard: bool) {
        let mut inner = self.lock();
        inner.sealed = true;
        inner.overflowed = false;
        if discard {
            inner.items.retain(|(item, _, _)| matches!(item, Outgoing::Frame(_)));
            inner.bytes = inner.items.iter().map(|(_, size, _)| size).sum();
        }
    }

    /// Marks the connection as too slow, to be closed.
    pub(crate) fn overflow(&self) {
        let mut inner = self.lock();
        inner.overflowed = true;
        wake(inner);
    }

    /// Whether the outbox holds fewer than `limit` bytes.
    pub(crate) fn has_room(&self, limit: usize) -> bool {
        let mut inner = self.lock();
        let room = inner.bytes < limit && !inner.closed && !inner.sealed;
        if !room {
            inner.wants_room = true;
        }
        room
    }

    /// Whether a queue waits for this outbox to drain; clears the flag.
    pub(crate) fn take_wants_room(&self) -> bool {
        std::mem::take(&mut self.lock().wants_room)
    }

    /// Bytes waiting.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Moves waiting items into `out`, up to about `max_bytes`; returns
    /// `Ready` when something was moved or the outbox overflowed, and
    /// registers the task to be woken otherwise: on new items if
    /// `max_bytes > 0`, and always on an overflow or a close (so that a
    /// connection whose write queue is full still notices it must close).
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        out: &mut Vec<Outgoing>,
        max_bytes: usize,
    ) -> Poll<Status> {
        let mut inner = self.lock();
        if inner.overflowed {
            return Poll::Ready(Status::Overflowed);
        }
        let mut taken = 0;
        while taken < max_bytes {
            let Some((item, size, _)) = inner.items.pop_front() else { break };
            inner.bytes -= size;
            taken += size;
            out.push(item);
        }
        if taken > 0 {
            if inner.items.is_empty() {
                // An idle connection keeps no queue storage.
                inner.items = VecDeque::new();
            }
            return Poll::Ready(Status::Taken { left: inner.bytes });
        }
        inner.wants_items = max_bytes > 0;
        if !inner.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            inner.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Closes the outbox: it takes nothing more, and what waits is dropped.
    pub(crate) fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.items.clear();
        inner.bytes = 0;
        wake(inner);
    }

    /// Whether the outbox was closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// Every live outbox of a broker (connections and local subscriptions),
/// so that the metrics can read what waits in them at scrape time: a
/// stalled connection takes nothing, so nothing sampled at a take shows
/// its backlog growing.
///
/// Reading at scrape time costs the hot path nothing (no shared counter
/// per delivery); registering costs a lock per connection opened or
/// closed, and a connection 8 bytes here plus its slot number.
#[derive(Debug, Default)]
pub(crate) struct Outboxes {
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    live: Vec<Option<Arc<Outbox>>>,
    /// Indices of the `None`s of `live`, reused first.
    free: Vec<usize>,
}

impl Outboxes {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        // Every update is a single push, pop or store: sound after a panic.
        self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds `outbox`; returns its slot, for [`unregister`](Self::unregister).
    pub(crate) fn register(&self, outbox: &Arc<Outbox>) -> usize {
        let mut slots = self.lock();
        let entry = Some(Arc::clone(outbox));
        if let Some(slot) = slots.free.pop() {
            slots.live[slot] = entry;
            return slot;
        }
        slots.live.push(entry);
        slots.live.len() - 1
    }

    /// Removes the outbox in `slot`.
    pub(crate) fn unregister(&self, slot: usize) {
        let mut slots = self.lock();
        if slots.live.get_mut(slot).and_then(Option::take).is_some() {
            slots.free.push(slot);
        }
    }

    /// Bytes waiting now: in all outboxes, and in the fullest one.
    #[cfg(feature = "metrics")]
    pub(crate) fn backlog(&self) -> (u64, u64) {
        let slots = self.lock();
        let sizes = slots.live.iter().flatten().map(|outbox| outbox.pending_bytes() as u64);
        sizes.fold((0, 0), |(total, largest), bytes| (total + bytes, largest.max(bytes)))
    }
}

/// What [`Outbox::poll_take`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Items were moved out; `left` bytes still wait.
    Taken {
        /// Bytes still waiting after the take.
        left: usize,
    },
    /// The slow-consumer limit was passed: close the connection.
    Overflowed,
}

/// Wakes the draining task if it waits for items, after releasing the lock.
fn wake_for_items(inner: MutexGuard<'_, Inner>) {
    if inner.wants_items {
        wake(inner);
    }
}

/// Wakes the draining task, after releasing the lock.
fn wake(mut inner: MutexGuard<'_, Inner>) {
    let waker = inner.waker.take();
    drop(inner);
    if let Some(waker) = waker {
        waker.wake();
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;

    fn frame_of(size: usize) -> Frame {
        Frame::new(stomp_codec::Command::Receipt).with_body(vec![b'x'; size])
    }

    #[test]
    fn the_registry_sums_live_outboxes_and_forgets_dropped_ones() {
        let outboxes = Outboxes::default();
        let (a, b) = (Outbox::new(), Outbox::new());
        let slot_a = outboxes.register(&a);
        let slot_b = outboxes.register(&b);
        a.push_frame(frame_of(1000));
        b.push_frame(frame_of(100));
        let (a_bytes, b_bytes) = (a.pending_bytes() as u64, b.pending_bytes() as u64);
        assert_eq!(outboxes.backlog(), (a_bytes + b_bytes, a_bytes));
        outboxes.unregister(slot_a);
        outboxes.unregister(slot_a);
        assert_eq!(outboxes.backlog(), (b_bytes, b_bytes));
        let slot_c = outboxes.register(&Outbox::new());
        assert_eq!(slot_c, slot_a, "a freed slot is reused");
        outboxes.unregister(slot_b);
        outboxes.unregister(slot_c);
        assert_eq!(outboxes.backlog(), (0, 0));
    }
}
