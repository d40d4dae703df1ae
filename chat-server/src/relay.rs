//! Live messages in id order on every node, when several nodes share Redis.
//!
//! Each node publishes the messages it accepts to a room's cluster topic
//! (`/topic/chat-cluster/rooms.{id}`), which the backplane carries to every
//! node. Messages of two nodes can cross on the way, so a node does not
//! hand them to its subscribers as they come: a relay per room (started
//! with the room's first local subscriber, stopped a while after its last) takes them from the cluster
//! topic and publishes them to this node's `/topic/rooms.{id}` in id
//! order. An id that does not arrive (handed out, then refused) holds the
//! ones after it back at most [`GAP_WAIT`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use stomp_broker::store::{MessageId, RoomId};
use stomp_broker::{Broker, LocalSubscription, Message};
use tokio::sync::OnceCell;
use tokio::time::{Instant, MissedTickBehavior};

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
/// How long a relay outlives its room's last local subscriber: about this
/// long, at most twice it.
const IDLE: Duration = Duration::from_secs(30);
/// How long the first subscriber of a room waits for the relay to be live
/// on the other nodes.
const LIVE_WAIT: Duration = Duration::from_secs(5);

/// The relays of this node, one per room with local subscribers.
#[derive(Debug)]
pub(crate) struct Relays {
    running: Arc<Mutex<HashMap<RoomId, Entry>>>,
    /// How long a relay outlives its room's last local subscriber.
    idle: Duration,
}

/// A room's relay, as the room's subscribers see it.
#[derive(Debug)]
struct Entry {
    /// When a subscriber last asked for the relay.
    asked: Instant,
    /// Set once the relay runs and is live (`true`), or could not start.
    started: Arc<OnceCell<bool>>,
}

impl Default for Relays {
    fn default() -> Self {
        Self::with_idle(IDLE)
    }
}

/// The map of relays, locked (never across an await).
fn lock(
    running: &Mutex<HashMap<RoomId, Entry>>,
) -> std::sync::MutexGuard<'_, HashMap<RoomId, Entry>> {
    running.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Relays {
    /// Relays that stop once their room has had no local subscriber for
    /// about `idle` (between one and two times it).
    fn with_idle(idle: Duration) -> Self {
        Self { running: Arc::default(), idle }
    }

    /// Starts the relay of `room` unless it runs, and waits until it
    /// receives what other nodes publish. Subscribers of one room wait for
    /// the same start; other rooms' subscribers do not wait for it.
    pub(crate) async fn ensure(&self, broker: &Broker, sequencer: &Arc<Sequencer>, room: RoomId) {
        let started = {
            let mut running = lock(&self.running);
            let entry = running
                .entry(room)
                .or_insert_with(|| Entry { asked: Instant::now(), started: Arc::default() });
            entry.asked = Instant::now();
            entry.started.clone()
        };
        let start = || self.start(broker, sequencer, room, &started);
        if !*started.get_or_init(start).await {
            // The room's next subscriber tries again.
            forget(&self.running, room, &started);
        }
    }

    async fn start(
        &self,
        broker: &Broker,
        sequencer: &Arc<Sequencer>,
        room: RoomId,
        started: &Arc<OnceCell<bool>>,
    ) -> bool {
        let Ok(subscription) = broker.subscribe(&format!("{CLUSTER_TOPIC}{room}")) else {
            tracing::warn!(%room, "cannot subscribe to the room's cluster topic");
            return false;
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
            running: Arc::downgrade(&self.running),
            started: started.clone(),
            idle: self.idle,
        };
        tokio::spawn(relay.run(subscription, Arc::downgrade(sequencer)));
        true
    }
}

/// Removes `room`'s entry if it is still the one of `started`.
fn forget(running: &Mutex<HashMap<RoomId, Entry>>, room: RoomId, started: &Arc<OnceCell<bool>>) {
    let mut running = lock(running);
    if running.get(&room).is_some_and(|entry| Arc::ptr_eq(&entry.started, started)) {
        running.remove(&room);
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
    /// The running relays, to leave when the room has no local subscriber.
    running: Weak<Mutex<HashMap<RoomId, Entry>>>,
    /// This relay's start, as its entry in `running` holds it.
    started: Arc<OnceCell<bool>>,
    idle: Duration,
}

impl Relay {
    async fn run(mut self, subscription: LocalSubscription, sequencer: Weak<Sequencer>) {
        self.relay(subscription, &sequencer).await;
        if let Some(running) = self.running.upgrade() {
            forget(&running, self.room, &self.started);
        }
    }

    /// Relays until the room has no local subscriber, or the node stops.
    async fn relay(&mut self, mut subscription: LocalSubscription, sequencer: &Weak<Sequencer>) {
        let topic = format!("{CLUSTER_TOPIC}{}", self.room);
        let mut idle_check = tokio::time::interval_at(Instant::now() + self.idle, self.idle);
        idle_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
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
                _ = idle_check.tick() => if self.retire() {
                    return;
                },
            }
        }
    }

    /// Whether to end: the room has had no local subscriber since the
    /// last check and nothing is held back.
    ///
    /// Decided only when no subscriber has asked for the relay for `idle`:
    /// a subscriber asks (in the interceptor) just before its subscription
    /// is added, so one on its way in is not missed. The entry is removed
    /// under the same lock, so that the room's next subscriber starts a
    /// new relay.
    fn retire(&self) -> bool {
        let Some(running) = self.running.upgrade() else { return true };
        let mut running = lock(&running);
        let asked_long_ago = running.get(&self.room).is_none_or(|e| e.asked.elapsed() >= self.idle);
        let topic = format!("{ROOM_TOPIC}{}", self.room);
        if !asked_long_ago || !self.held.is_empty() || self.broker.subscriber_count(&topic) > 0 {
            return false;
        }
        running.remove(&self.room);
        tracing::debug!(room = %self.room, "room relay stopped: no local subscriber");
        true
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

#[cfg(test)]
mod tests {
    use super::*;

    fn is_running(relays: &Relays, room: RoomId) -> bool {
        lock(&relays.running).contains_key(&room)
    }

    async fn relayed(member: &mut LocalSubscription) -> Option<MessageId> {
        let message = tokio::time::timeout(Duration::from_secs(5), member.recv()).await.ok()??;
        id_of(&message)
    }

    #[tokio::test]
    async fn a_relay_runs_while_its_room_has_local_subscribers_and_then_stops() {
        let broker = Broker::builder().build();
        let sequencer = Arc::new(Sequencer::Local);
        let idle = Duration::from_millis(100);
        let relays = Relays::with_idle(idle);
        let room = RoomId::new(7);
        let cluster = format!("{CLUSTER_TOPIC}{room}");
        let send = |id: u64| {
            let id = MessageId::new(id);
            broker.publish(&cluster, message_headers(id), "{}").unwrap();
        };

        relays.ensure(&broker, &sequencer, room).await;
        let mut member = broker.subscribe(&format!("{ROOM_TOPIC}{room}")).unwrap();
        tokio::time::sleep(idle * 4).await;
        assert!(is_running(&relays, room), "a room with a subscriber keeps its relay");
        send(1);
        assert_eq!(relayed(&mut member).await, Some(MessageId::new(1)));

        drop(member);
        let stopped = Instant::now() + Duration::from_secs(5);
        while is_running(&relays, room) || broker.subscriber_count(&cluster) > 0 {
            assert!(Instant::now() < stopped, "the relay of a room nobody here follows runs on");
            tokio::time::sleep(idle / 4).await;
        }

        // The room's next subscriber starts it again.
        relays.ensure(&broker, &sequencer, room).await;
        let mut member = broker.subscribe(&format!("{ROOM_TOPIC}{room}")).unwrap();
        send(1);
        send(2);
        assert_eq!(relayed(&mut member).await, Some(MessageId::new(1)));
        assert_eq!(relayed(&mut member).await, Some(MessageId::new(2)));
        assert_eq!(broker.subscriber_count(&cluster), 1);

        // Subscribers arriving together start one relay.
        let other = RoomId::new(8);
        tokio::join!(
            relays.ensure(&broker, &sequencer, other),
            relays.ensure(&broker, &sequencer, other),
            relays.ensure(&broker, &sequencer, other),
        );
        assert_eq!(broker.subscriber_count(&format!("{CLUSTER_TOPIC}{other}")), 1);
        assert_eq!(broker.subscriber_count(&cluster), 1);
    }
}
