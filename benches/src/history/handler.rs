//! The broker's handler for `/app/`: what the chat server does with a chat
//! message, minus the refusal.
//!
//! A message to `/app/rooms.{n}` gets the next id of room `n`, the
//! sender's login, its `content-type` and the time, and is appended to the
//! [`HistoryWriter`]. Nothing is published unless `--publish` is given.
//!
//! **Back-pressure instead of refusal.** When the writer's buffer is full
//! ([`AppendError::Full`]), the chat server answers the sender with an
//! `ERROR` (see `stomp-broker/tests/store_refusal.rs`). A throughput
//! benchmark wants the producers slowed down instead, so this handler
//! sleeps 1 ms and tries again. The broker runs the handler on the sending
//! connection's task, so while it waits the broker reads nothing more from
//! that connection and TCP slows the producer down. The waits are counted
//! and reported: many waits mean the store, not the broker, sets the pace.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use stomp_broker::store::{
    AppendError, HistoryWriter, MessageId, RoomId, StoredMessage, Timestamp,
};
use stomp_broker::{AppContext, AppHandler, AppMessage, Rejection};
use stomp_codec::Headers;

/// How long a message waits before trying a full buffer again.
const FULL_PAUSE: Duration = Duration::from_millis(1);

/// The content type of a message without one.
const DEFAULT_CONTENT_TYPE: &str = "application/json";

/// What the handler shares with the run: the rooms' sequences and the
/// counters.
#[derive(Debug)]
pub(crate) struct Rooms {
    writer: HistoryWriter,
    /// The next id of each room (room `n` at index `n - 1`), behind a lock
    /// held from taking the id to appending the message: a room's messages
    /// then reach the writer in id order, as the writer asks, even when
    /// several connections send to the room at once; and an id is used
    /// only once its message is accepted, so ids have no gaps. The lock is
    /// a std one, held for one append (no await inside), never contended
    /// for long.
    next: Vec<Mutex<u64>>,
    /// Appends that found the buffer full (each a 1 ms pause).
    full_waits: AtomicU64,
    publish: bool,
}

impl Rooms {
    /// Rooms `1..=rooms`, each starting at id 1.
    pub(crate) fn new(writer: HistoryWriter, rooms: usize, publish: bool) -> Arc<Self> {
        let next = (0..rooms).map(|_| Mutex::new(1)).collect();
        Arc::new(Self { writer, next, full_waits: AtomicU64::new(0), publish })
    }

    /// Messages accepted by room `room` (1-based) so far.
    pub(crate) fn accepted(&self, room: usize) -> u64 {
        *self.next[room - 1].lock().unwrap_or_else(PoisonError::into_inner) - 1
    }

    /// Appends that found the buffer full so far.
    pub(crate) fn full_waits(&self) -> u64 {
        self.full_waits.load(Ordering::Relaxed)
    }

    /// The room of `path` (`rooms.{n}`), if it is one of ours.
    fn room(&self, path: &str) -> Option<usize> {
        let n: usize = path.strip_prefix("rooms.")?.parse().ok()?;
        (1..=self.next.len()).contains(&n).then_some(n)
    }

    /// Takes the room's next id and appends the message with it.
    fn append(&self, room: usize, draft: &Draft<'_>) -> Result<MessageId, AppendError> {
        let mut next = self.next[room - 1].lock().unwrap_or_else(PoisonError::into_inner);
        let id = MessageId::new(*next);
        self.writer.append(StoredMessage {
            room: RoomId::new(room as u64),
            id,
            sender: draft.sender.to_owned(),
            content_type: draft.content_type.to_owned(),
            body: draft.body.clone(),
            sent_at: Timestamp::now(),
        })?;
        *next += 1;
        Ok(id)
    }
}

/// A message's fields before it gets its id.
struct Draft<'a> {
    sender: &'a str,
    content_type: &'a str,
    body: Bytes,
}

/// The [`AppHandler`] over shared [`Rooms`].
#[derive(Debug)]
pub(crate) struct Handler(pub(crate) Arc<Rooms>);

#[async_trait]
impl AppHandler for Handler {
    async fn handle(&self, context: &AppContext, message: AppMessage) -> Result<(), Rejection> {
        let rooms = &self.0;
        let Some(room) = rooms.room(&message.path) else {
            return Err(Rejection::new(format!("no such room: {}", message.destination)));
        };
        let draft = Draft {
            sender: context.session().principal().name(),
            content_type: message.headers.get_str("content-type").unwrap_or(DEFAULT_CONTENT_TYPE),
            // The frame's body is a view into the connection's read
            // buffer; kept in the writer's buffer it would pin all of it.
            body: Bytes::copy_from_slice(&message.body),
        };
        let id = loop {
            match rooms.append(room, &draft) {
                Ok(id) => break id,
                Err(AppendError::Full { .. }) => {
                    rooms.full_waits.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(FULL_PAUSE).await;
                }
                Err(refused) => return Err(refused.into()),
            }
        };
        if rooms.publish {
            let mut headers = Headers::new();
            headers.push("message-id", id.to_string());
            headers.push("content-type", draft.content_type.to_owned());
            let topic = format!("/topic/rooms.{room}");
            context
                .broker()
                .publish(&topic, headers, draft.body)
                .map_err(|e| Rejection::new(e.to_string()))?;
        }
        Ok(())
    }
}
