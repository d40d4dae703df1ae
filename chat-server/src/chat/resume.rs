//! Resuming a room: SUBSCRIBE `/topic/rooms.{id}` with `x-resume-after`
//! replays what was stored after that id ([`Replay`]), then live messages,
//! never one the subscriber has.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use stomp_broker::codec::Frame;
use stomp_broker::store::{MessageId, RoomId, StoredMessage};
use stomp_broker::{Rejection, Replay, ReplayBatch, SessionInfo};

use super::{
    Chat, RESUME_CATCH_UP, RESUME_HEADER, ROOM_TOPIC, Rules, id_of, message_headers, room_of_topic,
};

impl Chat {
    /// The messages of `room` after `after`, reading again for up to
    /// [`RESUME_CATCH_UP`] while other nodes have handed out ids that have
    /// not reached the shared history yet; and the live messages the
    /// subscription must never be given (those up to the newest replayed,
    /// or up to `after` as far as the room has such ids).
    async fn resume(&self, room: RoomId, after: MessageId) -> Result<Resumed, Rejection> {
        let unavailable = |e: &dyn std::fmt::Display| Rejection::new(format!("resume failed: {e}"));
        let issued = self.sequencer.issued(room).await.map_err(|e| unavailable(&e))?;
        let messages = self.read_after(room, after, issued).await?;
        let known = match issued {
            Some(issued) => issued,
            None => self
                .history
                .last_id(room)
                .await
                .map_err(|e| unavailable(&e))?
                .unwrap_or(MessageId::new(0)),
        };
        // An `after` beyond every id of the room (a client of a history
        // since lost) must not hide the room's next messages.
        let seen = messages.last().map_or(after.min(known), |m| m.id.max(after.min(known)));
        Ok(Resumed { messages, seen })
    }

    async fn read_after(
        &self,
        room: RoomId,
        after: MessageId,
        issued: Option<MessageId>,
    ) -> Result<Vec<StoredMessage>, Rejection> {
        let unavailable = |e: &dyn std::fmt::Display| Rejection::new(format!("resume failed: {e}"));
        let deadline = Instant::now() + RESUME_CATCH_UP;
        loop {
            let messages = self
                .history
                .after(room, after, self.resume_limit + 1)
                .await
                .map_err(|e| unavailable(&e))?;
            if messages.len() > self.resume_limit {
                return Err(Rejection::new(format!(
                    "resume too far behind: more than {} messages after {after}",
                    self.resume_limit
                ))
                .with_detail(
                    "Load the room's recent history with GET /api/rooms/{id}/messages, then \
                     subscribe again after its newest message.",
                ));
            }
            let newest = messages.last().map_or(after, |m| m.id);
            if issued.is_none_or(|issued| newest >= issued) || Instant::now() >= deadline {
                return Ok(messages);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What a resume delivers, and the newest id the subscriber has from it.
struct Resumed {
    messages: Vec<StoredMessage>,
    /// Live messages up to this id are not delivered to the subscription.
    seen: MessageId,
}

#[async_trait]
impl Replay for Rules {
    fn wants_replay(&self, _session: &SessionInfo, frame: &Frame) -> bool {
        frame.header(RESUME_HEADER).is_some()
            && frame.header("destination").is_some_and(|d| d.starts_with(ROOM_TOPIC.as_bytes()))
    }

    async fn replay(
        &self,
        _session: &SessionInfo,
        frame: &Frame,
    ) -> Result<ReplayBatch, Rejection> {
        let value = frame.header(RESUME_HEADER).unwrap_or_default();
        let after: MessageId =
            std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()).ok_or_else(|| {
                Rejection::new(format!(
                    "invalid {RESUME_HEADER}: '{}' is not a message id",
                    String::from_utf8_lossy(value)
                ))
            })?;
        let destination = std::str::from_utf8(frame.header("destination").unwrap_or_default())
            .unwrap_or_default();
        let room = room_of_topic(destination).unwrap_or_default();
        let room = self.0.existing_room(room).await.map_err(|(_, r)| r)?;
        let Resumed { messages, seen } = self.0.resume(room.id, after).await?;
        self.0.metrics.resumes.inc();
        self.0.metrics.replayed.inc_by(messages.len() as u64);
        let batch = messages.into_iter().map(|m| (message_headers(m.id), m.body)).collect();
        Ok(ReplayBatch::new(batch).skip_live(move |live| id_of(live).is_some_and(|id| id <= seen)))
    }
}
