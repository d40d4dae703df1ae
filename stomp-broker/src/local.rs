//! Subscriptions from Rust code, without a socket.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::outbox::{Outbox, Outgoing, Status};
use crate::subscription::{AckMode, Subscription};
use crate::{Broker, Message, PublishError, TransportKind};

/// Messages of one destination, received in-process: a
/// [`Stream`](futures_core::Stream) of [`Message`]s, or
/// [`recv`](Self::recv) them.
///
/// Subject to the broker's slow-consumer policy like a network subscriber:
/// under the default policy, a subscriber that falls more than
/// `max_pending_bytes` behind is ended (the stream returns `None`).
/// Dropping it unsubscribes.
///
/// In the metrics it is a connection of transport `local` (opened here,
/// closed when dropped), and what waits for it counts in the outbox
/// backlog; it is not one of [`Broker::connection_count`]'s and does not
/// count against the connection limit.
#[derive(Debug)]
pub struct LocalSubscription {
    broker: Broker,
    sub: Arc<Subscription>,
    outbox: Arc<Outbox>,
    /// With a backplane: resolves when the subscription is live on other nodes.
    live: Option<crate::backplane::Ready>,
    ready: VecDeque<Arc<Message>>,
    taken: Vec<Outgoing>,
    ended: bool,
    /// Its outbox in the broker's registry (for the backlog gauges).
    outbox_slot: usize,
}

impl LocalSubscription {
    pub(crate) fn new(broker: Broker, destination: &str) -> Result<Self, PublishError> {
        let shared = broker.shared().clone();
        let outbox = Outbox::new();
        let session = shared.next_session();
        let limits = shared.policy.limits;
        let id = Bytes::from(format!("local-{session}"));
        let route = Arc::<str>::from(destination);
        let (sub, live) = shared.router.subscribe(destination, &limits, |queue| {
            Subscription::new(id, session, AckMode::Auto, outbox.clone(), route, queue)
        })?;
        shared.stats.connection_opened(TransportKind::Local);
        let outbox_slot = shared.outboxes.register(&outbox);
        Ok(Self {
            broker,
            sub,
            outbox,
            live,
            ready: VecDeque::new(),
            taken: Vec::new(),
            ended: false,
            outbox_slot,
        })
    }

    /// On a broker with a backplane, waits (at most `timeout`) until
    /// messages other nodes publish to the destination reach this
    /// subscription; returns whether they do. `true` at once without a
    /// backplane and for queues (which are node-local).
    pub async fn live(&self, timeout: std::time::Duration) -> bool {
        match &self.live {
            Some(live) => live.clone().wait(timeout).await,
            None => true,
        }
    }

    /// The next message, or `None` once the subscription has ended (slow
    /// consumer, or broker shut down).
    pub async fn recv(&mut self) -> Option<Arc<Message>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Arc<Message>>> {
        loop {
            if let Some(message) = self.ready.pop_front() {
                return Poll::Ready(Some(message));
            }
            if self.ended || self.outbox.is_closed() || self.broker.is_shutting_down() {
                return Poll::Ready(None);
            }
            match self.outbox.poll_take(cx, &mut self.taken, usize::MAX) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Status::Overflowed) => self.ended = true,
                Poll::Ready(Status::Taken { .. }) => {
                    for item in self.taken.drain(..) {
                        if let Outgoing::Message(delivery) = item {
                            self.ready.push_back(delivery.message);
                        }
                    }
                    self.sub.queue.iter().for_each(|q| {
                        q.dispatch(&self.broker.shared().policy.limits);
                    });
                }
            }
        }
    }
}

impl futures_core::Stream for LocalSubscription {
    type Item = Arc<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl Drop for LocalSubscription {
    fn drop(&mut self) {
        self.outbox.close();
        let shared = self.broker.shared();
        shared.router.unsubscribe(&self.sub, &shared.policy.limits);
        shared.outboxes.unregister(self.outbox_slot);
        shared.stats.connection_closed(TransportKind::Local);
    }
}
