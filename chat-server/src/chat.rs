//! The chat rules, plugged into the broker's hooks: posting to
//! `/app/rooms.{id}` ([`AppHandler`]), keeping clients from posting to
//! `/topic/rooms.*` themselves and from subscribing to unknown rooms
//! ([`Interceptor`]), and resuming a room after a given message
//! ([`Replay`](stomp_broker::Replay)).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use stomp_broker::codec::{Frame, Headers};
use stomp_broker::store::{
    HistoryWriter, MessageId, Room, RoomId, RoomStore, StoreError, StoredMessage, Timestamp,
};
use stomp_broker::{
    AppContext, AppHandler, AppMessage, Broker, Interceptor, Rejection, SessionInfo,
};

use crate::ids::Sequencer;
use crate::metrics::{Metrics, Refused};
use crate::relay::{CLUSTER_PREFIX, CLUSTER_TOPIC, Relays};

mod resume;

/// Where a room's messages are published.
pub(crate) const ROOM_TOPIC: &str = "/topic/rooms.";
/// Where new rooms are announced.
pub(crate) const ROOMS_TOPIC: &str = "/topic/rooms";
/// Where clients post to the chat service (the broker's application prefix).
pub(crate) const APP_PREFIX: &str = "/app/";
/// The application destination prefix of a room (after `/app/`).
const ROOM_APP_PATH: &str = "rooms.";
/// The header carrying a chat message's id on MESSAGE frames, so that a
/// resume can tell live messages it already replayed without parsing JSON.
pub(crate) const ID_HEADER: &str = "chat-message-id";
/// The header of SUBSCRIBE asking for a resume.
pub(crate) const RESUME_HEADER: &str = "x-resume-after";
/// The media type of chat messages.
const JSON: &str = "application/json";
/// How long a resume on a node sharing Redis waits for messages other
/// nodes accepted to reach the shared history.
const RESUME_CATCH_UP: Duration = Duration::from_secs(1);

/// A chat message as clients see it (REST and STOMP).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageJson<'a> {
    id: String,
    room_id: String,
    sender: &'a str,
    text: &'a str,
    sent_at: String,
}

/// A room as clients see it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoomJson {
    id: String,
    name: String,
    created_at: String,
}

impl From<&Room> for RoomJson {
    fn from(room: &Room) -> Self {
        Self {
            id: room.id.to_string(),
            name: room.name.clone(),
            created_at: rfc3339(room.created_at),
        }
    }
}

/// What a client posts.
#[derive(Debug, Deserialize)]
struct Post {
    text: String,
}

/// RFC 3339 in UTC with milliseconds: `2026-11-25T10:00:00.123Z`.
pub(crate) fn rfc3339(t: Timestamp) -> String {
    let nanos = i128::from(t.unix_millis()) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => "1970-01-01T00:00:00.000Z".to_owned(),
    }
}

/// `text` as an id, if it is one written the way ids are written.
pub(crate) fn canonical_id<T: std::str::FromStr + std::fmt::Display>(text: &str) -> Option<T> {
    let id = text.parse::<T>().ok()?;
    (id.to_string() == text).then_some(id)
}

/// The room a `/topic/rooms.{id}` destination names, if it is one.
pub(crate) fn room_of_topic(destination: &str) -> Option<&str> {
    destination.strip_prefix(ROOM_TOPIC)
}

/// A refused post: why (for the metrics) and what the client is told.
type Refusal = (Refused, Rejection);

/// Per room: who may take the next id. Holding it across "id, buffer,
/// publish" keeps a room's live messages in id order on this node.
#[derive(Debug, Default)]
struct Sequence {
    /// The highest id this node knows; `None` until read from history.
    last: Option<MessageId>,
}

/// The chat service's state, shared by its hooks and the REST API.
pub(crate) struct Chat {
    pub(crate) rooms: Arc<dyn RoomStore>,
    pub(crate) history: HistoryWriter,
    pub(crate) sequencer: Arc<Sequencer>,
    pub(crate) max_text_chars: usize,
    pub(crate) resume_limit: usize,
    pub(crate) metrics: Arc<Metrics>,
    /// The broker the hooks serve (set once it is built).
    broker: OnceLock<Broker>,
    /// With several nodes: the relays that keep live messages in id order.
    relays: Option<Relays>,
    /// Rooms known to exist (rooms are never deleted).
    known: Mutex<HashMap<RoomId, Room>>,
    sequences: Mutex<HashMap<RoomId, Arc<tokio::sync::Mutex<Sequence>>>>,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat").field("sequencer", &self.sequencer).finish_non_exhaustive()
    }
}

impl Chat {
    pub(crate) fn new(
        rooms: Arc<dyn RoomStore>,
        history: HistoryWriter,
        sequencer: Sequencer,
        max_text_chars: usize,
        resume_limit: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let relays = matches!(sequencer, Sequencer::Redis(_)).then(Relays::default);
        Self {
            rooms,
            history,
            sequencer: Arc::new(sequencer),
            max_text_chars,
            resume_limit,
            metrics,
            broker: OnceLock::new(),
            relays,
            known: Mutex::default(),
            sequences: Mutex::default(),
        }
    }

    /// Hands the hooks the broker they serve.
    pub(crate) fn attach(&self, broker: Broker) {
        let _ = self.broker.set(broker);
    }

    /// The room `id` (a decimal string as ids are written: no sign, no
    /// leading zero), if it exists. `rooms.01` is not another name of
    /// room 1: its subscribers would wait on a topic nothing is sent to.
    pub(crate) async fn room(&self, id: &str) -> Result<Option<Room>, StoreError> {
        let Some(id) = canonical_id::<RoomId>(id) else { return Ok(None) };
        if let Some(room) = lock(&self.known).get(&id) {
            return Ok(Some(room.clone()));
        }
        let room = self.rooms.room(id).await?;
        if let Some(room) = &room {
            self.remember(room);
        }
        Ok(room)
    }

    /// Notes that `room` exists.
    pub(crate) fn remember(&self, room: &Room) {
        lock(&self.known).insert(room.id, room.clone());
    }

    /// The room of a destination (`rooms.{id}` or `/topic/rooms.{id}`), or
    /// a refusal naming it.
    async fn existing_room(&self, id: &str) -> Result<Room, Refusal> {
        match self.room(id).await {
            Ok(Some(room)) => Ok(room),
            Ok(None) => Err((
                Refused::UnknownRoom,
                Rejection::new(format!("unknown room {id}"))
                    .with_detail("No room has this id: GET /api/rooms lists them."),
            )),
            Err(e) => {
                Err((Refused::Unavailable, Rejection::new(format!("rooms unavailable: {e}"))))
            }
        }
    }

    fn sequence(&self, room: RoomId) -> Arc<tokio::sync::Mutex<Sequence>> {
        lock(&self.sequences).entry(room).or_default().clone()
    }

    /// Accepts `text` from `sender` into `room`: gives it the next id,
    /// buffers it for history and publishes it.
    async fn post(
        &self,
        broker: &Broker,
        room: RoomId,
        sender: &str,
        text: &str,
    ) -> Result<(), Refusal> {
        let unavailable = |message: String| (Refused::Unavailable, Rejection::new(message));
        let sequence = self.sequence(room);
        let mut sequence = sequence.lock().await;
        // Checked before an id is taken too: on several nodes an id handed
        // out and never used holds the room's later messages back a while.
        shutting_down(broker)?;
        let last = match sequence.last {
            Some(last) => last,
            None => self
                .history
                .last_id(room)
                .await
                .map_err(|e| unavailable(format!("history unavailable: {e}")))?
                .unwrap_or(MessageId::new(0)),
        };
        let id = self
            .sequencer
            .next(room, last, || self.history.last_id(room))
            .await
            .map_err(|e| unavailable(format!("message not accepted: {e}")))?;
        let sent_at = Timestamp::now();
        let body = serde_json::to_vec(&MessageJson {
            id: id.to_string(),
            room_id: room.to_string(),
            sender,
            text,
            sent_at: rfc3339(sent_at),
        })
        .map_err(|e| unavailable(format!("message not accepted: {e}")))?;
        let body = Bytes::from(body);
        // Checked again here, with nothing to wait for between this, the
        // append and the publish: a message is stored and delivered, or
        // refused.
        shutting_down(broker)?;
        let stored = StoredMessage {
            room,
            id,
            sender: sender.to_owned(),
            content_type: JSON.to_owned(),
            body: body.clone(),
            sent_at,
        };
        self.history.append(stored).map_err(|e| (Refused::Unavailable, Rejection::from(e)))?;
        sequence.last = Some(id);
        // On several nodes the relays publish to the room, in id order.
        let topic = if self.relays.is_some() { CLUSTER_TOPIC } else { ROOM_TOPIC };
        broker
            .publish(&format!("{topic}{room}"), message_headers(id), body)
            .map_err(|e| unavailable(format!("message stored but not delivered: {e}")))?;
        Ok(())
    }

    /// Checks a posted body: JSON `{"text": ...}`, not blank, not too long.
    fn parse_post(&self, body: &[u8]) -> Result<String, Refusal> {
        let post: Post = serde_json::from_slice(body).map_err(|e| {
            let rejection = Rejection::new(format!("bad message: {e}"))
                .with_detail("Send a JSON object with a string field text: {\"text\": \"hello\"}.");
            (Refused::BadMessage, rejection)
        })?;
        if post.text.trim().is_empty() {
            return Err((Refused::Empty, Rejection::new("text is empty")));
        }
        let chars = post.text.chars().count();
        if chars > self.max_text_chars {
            let message = format!(
                "text too long: {chars} characters, at most {} are allowed",
                self.max_text_chars
            );
            return Err((Refused::TooLong, Rejection::new(message)));
        }
        Ok(post.text)
    }
}

/// Refuses a post once the server is shutting down.
fn shutting_down(broker: &Broker) -> Result<(), Refusal> {
    if broker.is_shutting_down() {
        let message = "server shutting down; send again after reconnecting";
        return Err((Refused::ShuttingDown, Rejection::new(message)));
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each update is a single insert: a panic cannot leave the map torn.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Headers of a chat message's MESSAGE frames.
pub(crate) fn message_headers(id: MessageId) -> Headers {
    let mut headers = Headers::new();
    headers.push(Bytes::from_static(b"content-type"), Bytes::from_static(JSON.as_bytes()));
    headers.push(Bytes::from_static(ID_HEADER.as_bytes()), id.to_string());
    headers
}

/// The chat id a MESSAGE frame carries.
pub(crate) fn id_of(message: &stomp_broker::Message) -> Option<MessageId> {
    message.header_str(ID_HEADER)?.parse().ok()
}

/// The hooks, over one shared [`Chat`].
#[derive(Debug, Clone)]
pub(crate) struct Rules(pub(crate) Arc<Chat>);

#[async_trait]
impl AppHandler for Rules {
    async fn handle(&self, context: &AppContext, message: AppMessage) -> Result<(), Rejection> {
        let Some(room) = message.path.strip_prefix(ROOM_APP_PATH) else {
            return Err(Rejection::new(format!("unknown destination {}", message.destination))
                .with_detail("Post chat messages to /app/rooms.{id}."));
        };
        let result = async {
            let room = self.0.existing_room(room).await?;
            let text = self.0.parse_post(&message.body)?;
            let sender = context.session().principal().name();
            self.0.post(context.broker(), room.id, sender, &text).await
        }
        .await;
        match result {
            Ok(()) => {
                self.0.metrics.posted.inc();
                Ok(())
            }
            Err((reason, rejection)) => {
                self.0.metrics.refused(reason);
                Err(rejection)
            }
        }
    }
}

#[async_trait]
impl Interceptor for Rules {
    async fn on_send(&self, _session: &SessionInfo, frame: &mut Frame) -> Result<(), Rejection> {
        let destination = frame.header("destination").unwrap_or_default();
        if destination == ROOMS_TOPIC.as_bytes()
            || destination.starts_with(ROOM_TOPIC.as_bytes())
            || destination.starts_with(CLUSTER_PREFIX.as_bytes())
        {
            return Err(Rejection::new(format!(
                "clients may not send to {}",
                String::from_utf8_lossy(destination)
            ))
            .with_detail("Post to /app/rooms.{id} with a JSON body {\"text\": ...}."));
        }
        if destination.starts_with(APP_PREFIX.as_bytes()) && frame.header("transaction").is_some() {
            // In a transaction the rules would run only at COMMIT, after
            // the SEND's RECEIPT: that RECEIPT would promise nothing.
            return Err(Rejection::new("chat messages cannot be sent in a transaction")
                .with_detail(
                    "A RECEIPT for a chat message means it was accepted. Send it without the \
                 transaction header.",
                ));
        }
        Ok(())
    }

    async fn on_subscribe(
        &self,
        _session: &SessionInfo,
        frame: &mut Frame,
    ) -> Result<(), Rejection> {
        let destination = std::str::from_utf8(frame.header("destination").unwrap_or_default())
            .map_err(|_| Rejection::new("destination is not UTF-8"))?;
        if destination.starts_with(CLUSTER_PREFIX) {
            return Err(Rejection::new(format!("{destination} is internal to the chat service"))
                .with_detail("Subscribe to /topic/rooms.{id}."));
        }
        if let Some(room) = room_of_topic(destination) {
            let room = self.0.existing_room(room).await.map_err(|(_, r)| r)?;
            if let (Some(relays), Some(broker)) = (&self.0.relays, self.0.broker.get()) {
                relays.ensure(broker, &self.0.sequencer, room.id).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(Timestamp::from_unix_millis(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(Timestamp::from_unix_millis(1_795_000_000_123)),
            "2026-11-18T11:06:40.123Z"
        );
    }
}
