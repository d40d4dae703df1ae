//! Live messages in id order on every node, when several nodes share Redis.
//!
//! Each node publishes the messages it accepts to a room's cluster topic
//! (`/topic/chat-cluster/rooms.{id}`), which the backplane carries to every
//! node. Messages of two nodes can cross on the way, so a node does not
//! hand them to its subscribers as they come: a relay per room (started
//! with the room's first local subscriber) takes them from the cluster
//! topic and publishes them to this node's `/topic/rooms.{id}` in id
//! order. An id that does not arrive (handed out, then refused) holds the
//! ones after it back at most [`GAP_WAIT`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use stomp_broker::store::{MessageId, RoomId};
use stomp_broker::{Broker, LocalSubscription, Message};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::chat::{ROOM_TOPIC, id_of, message_headers};
use crate::ids::Sequencer;

/// Where nodes publish what they accept, for the relays.
pub(crate) const CLUSTER_TOPIC: &str = "/topic/chat-cluster/rooms.";
/// The prefix of every cluster topic, which clients may not use.
pub(crate) const CLUSTER_PREFIX: &str = "/topic/chat-cluster/";
/// How long a missing id holds back the ones after it.
const GAP_WAIT: Duration = Duration::from_millis(250);
/// Most messages held back behind a missing id; past it the gap is skipped.
const MAX_HELD: usize = 10_000;
/// How long the first subscriber of a room waits for the relay to be live
/// on the other nodes.
const LIVE_WAIT: Duration = Duration::from_secs(5);

/// The relays of this node, one per room with local subscribers.
#[derive(Debug, Default)]
pub(crate) struct Relays {
    started: Mutex<HashMap<RoomId, ()>>,
}

impl Relays {
    /// Starts the relay of `room` unless it runs, and waits until it
    /// receives what other nodes publish.
    pub(crate) async fn ensure(&self, broker: &Broker, sequencer: &Arc<Sequencer>, room: RoomId) {
        let mut started = self.started.lock().await;
        if started.contains_key(&room) {
            return;
        }
        let Ok(subscription) = broker.subscribe(&format!("{CLUSTER_TOPIC}{room}")) else {
            tracing::warn!(%room, "cannot subscribe to the room's cluster topic");
            return;
        };
        if !subscription.live(LIVE_WAIT).await {
            tracing::warn!(%room, "room relay not confirmed live on the backplane in time");
        }
        // Ids up to the highest handed out so far may be in flight: they
        // are passed on as they come; order is kept from the next one.
        let issued = sequencer.issued(room).await.ok().flatten().map_or(0, MessageId::get);
        let relay = Relay {
            broker: broker.clone(),
            room,
            next: issued + 1,
            held: BTreeMap::new(),
            gap_since: None,
        };
        tokio::spawn(relay.run(subscription, Arc::downgrade(sequencer)));
        started.insert(room, ());
    }
}

struct Relay {
    broker: Broker,
    room: RoomId,
    /// The id to publish next.
    next: u64,
    /// Messages that came before their turn, by id.
    held: BTreeMap<u64, Arc<Message>>,
    /// Since when `next` has been missing while later ones wait.
    gap_since: Option<Instant>,
}

impl Relay {
    async fn run(mut self, mut subscription: LocalSubscription, sequencer: Weak<Sequencer>) {
        let topic = format!("{CLUSTER_TOPIC}{}", self.room);
        loop {
            let deadline = self.gap_since.map(|since| since + GAP_WAIT);
            tokio::select! {
                message = subscription.recv() => match message {
                    Some(message) => self.take(message),
                    None if self.broker.is_shutting_down() || sequencer.strong_count() == 0 => return,
                    None => {
                        // Ended as a slow consumer: go on with a new one.
                        tracing::warn!(room = %self.room, "room relay fell behind; resubscribing");
                        self.skip_gap();
                        match self.broker.subscribe(&topic) {
                            Ok(again) => subscription = again,
                            Err(e) => {
                                tracing::error!(room = %self.room, error = %e, "room relay stopped");
                                return;
                            }
                        }
                    }
                },
                () = sleep_until(deadline) => self.skip_gap(),
            }
        }
    }

    fn take(&mut self, message: Arc<Message>) {
        let Some(id) = id_of(&message).map(MessageId::get) else { return };
        if id < self.next {
            // Older than the order kept (in flight when the relay started,
            // or after its gap was given up): late is better than never.
            self.publish(&message);
            return;
        }
        self.held.insert(id, message);
        self.drain();
        if self.held.len() > MAX_HELD {
            self.skip_gap();
        }
    }

    /// Publishes what is next in order.
    fn drain(&mut self) {
        let before = self.next;
        while let Some(message) = self.held.remove(&self.next) {
            self.publish(&message);
            self.next += 1;
        }
        if self.held.is_empty() {
            self.gap_since = None;
        } else if self.gap_since.is_none() || self.next != before {
            self.gap_since = Some(Instant::now());
        }
    }

    /// Gives up on the missing id: goes on from the lowest one held.
    fn skip_gap(&mut self) {
        if let Some((&first, _)) = self.held.first_key_value() {
            tracing::debug!(room = %self.room, missing = self.next, next = first, "id never came");
            self.next = first;
        }
        self.gap_since = None;
        self.drain();
    }

    fn publish(&self, message: &Message) {
        let Some(id) = id_of(message) else { return };
        let topic = format!("{ROOM_TOPIC}{}", self.room);
        if let Err(e) =
            self.broker.publish_local(&topic, message_headers(id), message.body().clone())
        {
            tracing::debug!(room = %self.room, error = %e, "relayed message not delivered");
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
