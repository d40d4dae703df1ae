//! An in-memory store: for tests, examples and single-process use where
//! history need not survive a restart. Bounded: each room keeps its newest
//! messages up to a limit.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::{
    HistoryStore, MessageId, Room, RoomId, RoomStore, StoreError, StoredMessage, Timestamp,
    validate_room_name,
};

/// Rooms and history in memory. Each room keeps its newest
/// [`max_per_room`](Self::with_max_per_room) messages (10,000 by default);
/// older ones are dropped as new ones arrive.
#[derive(Debug)]
pub struct MemoryStore {
    history: Mutex<HashMap<RoomId, BTreeMap<MessageId, StoredMessage>>>,
    rooms: Mutex<Rooms>,
    next_room: AtomicU64,
    max_per_room: usize,
}

#[derive(Debug, Default)]
struct Rooms {
    by_id: BTreeMap<RoomId, Room>,
    names: HashMap<String, RoomId>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store keeping up to 10,000 messages per room.
    #[must_use]
    pub fn new() -> Self {
        Self::with_max_per_room(10_000)
    }

    /// An empty store keeping up to `max_per_room` messages per room (at
    /// least one).
    #[must_use]
    pub fn with_max_per_room(max_per_room: usize) -> Self {
        Self {
            history: Mutex::default(),
            rooms: Mutex::default(),
            next_room: AtomicU64::new(1),
            max_per_room: max_per_room.max(1),
        }
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::backend("memory store lock poisoned")
}

#[async_trait]
impl HistoryStore for MemoryStore {
    async fn append(&self, batch: &[StoredMessage]) -> Result<(), StoreError> {
        let mut history = self.history.lock().map_err(poisoned)?;
        for message in batch {
            let room = history.entry(message.room).or_default();
            room.entry(message.id).or_insert_with(|| message.clone());
            while room.len() > self.max_per_room {
                room.pop_first();
            }
        }
        Ok(())
    }

    async fn page(
        &self,
        room: RoomId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let history = self.history.lock().map_err(poisoned)?;
        let Some(messages) = history.get(&room) else { return Ok(Vec::new()) };
        let upper = before.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(messages
            .range((Bound::Unbounded, upper))
            .rev()
            .take(limit)
            .map(|(_, m)| m.clone())
            .collect())
    }

    async fn after(
        &self,
        room: RoomId,
        after: MessageId,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let history = self.history.lock().map_err(poisoned)?;
        let Some(messages) = history.get(&room) else { return Ok(Vec::new()) };
        Ok(messages
            .range((Bound::Excluded(after), Bound::Unbounded))
            .take(limit)
            .map(|(_, m)| m.clone())
            .collect())
    }

    async fn count(&self, room: RoomId) -> Result<u64, StoreError> {
        let history = self.history.lock().map_err(poisoned)?;
        Ok(history.get(&room).map_or(0, |m| m.len() as u64))
    }

    async fn last_id(&self, room: RoomId) -> Result<Option<MessageId>, StoreError> {
        let history = self.history.lock().map_err(poisoned)?;
        Ok(history.get(&room).and_then(|m| m.last_key_value()).map(|(id, _)| *id))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl RoomStore for MemoryStore {
    async fn create_room(&self, name: &str) -> Result<Room, StoreError> {
        validate_room_name(name)?;
        let mut rooms = self.rooms.lock().map_err(poisoned)?;
        if rooms.names.contains_key(name) {
            return Err(StoreError::NameTaken(name.to_owned()));
        }
        let id = RoomId::new(self.next_room.fetch_add(1, Ordering::Relaxed));
        let room = Room { id, name: name.to_owned(), created_at: Timestamp::now() };
        rooms.names.insert(room.name.clone(), id);
        rooms.by_id.insert(id, room.clone());
        Ok(room)
    }

    async fn room(&self, id: RoomId) -> Result<Option<Room>, StoreError> {
        Ok(self.rooms.lock().map_err(poisoned)?.by_id.get(&id).cloned())
    }

    async fn rooms(&self, after: Option<RoomId>, limit: usize) -> Result<Vec<Room>, StoreError> {
        let rooms = self.rooms.lock().map_err(poisoned)?;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(rooms
            .by_id
            .range((lower, Bound::Unbounded))
            .take(limit)
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
