//! After the run: everything accepted must be in the store, and a room
//! read back in order must have every id once, without a gap.

use std::time::{Duration, Instant};

use stomp_broker::store::{HistoryStore, MessageId, RoomId};

use super::Result;
use super::handler::Rooms;

/// Messages per `after` call of the walk.
const PAGE: usize = 10_000;

/// What the checks found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Verdict {
    /// Messages the store holds, over every room.
    pub(crate) stored: u64,
    /// Messages accepted by the handler, over every room.
    pub(crate) accepted: u64,
    /// Rooms whose stored count differs from their accepted count, as
    /// `room: stored/accepted`.
    pub(crate) mismatches: Vec<String>,
    /// Messages read back from room 1, oldest first.
    pub(crate) walked: u64,
    /// How long reading room 1 back took.
    pub(crate) walk_time: Duration,
    /// The first fault of the walk: an id out of order or missing.
    pub(crate) walk_fault: Option<String>,
}

impl Verdict {
    /// Whether every check passed.
    pub(crate) fn ok(&self) -> bool {
        self.mismatches.is_empty() && self.walk_fault.is_none() && self.stored == self.accepted
    }
}

/// Compares the store's count of each of rooms `1..=rooms` with what the
/// handler accepted, and reads room 1 back with `after`.
///
/// # Errors
/// When the store fails.
pub(crate) async fn verify(
    store: &dyn HistoryStore,
    accepted: &Rooms,
    rooms: usize,
) -> Result<Verdict> {
    let mut verdict = Verdict::default();
    for room in 1..=rooms {
        let stored = store.count(RoomId::new(room as u64)).await?;
        let wanted = accepted.accepted(room);
        verdict.stored += stored;
        verdict.accepted += wanted;
        if stored != wanted {
            verdict.mismatches.push(format!("room {room}: {stored}/{wanted}"));
        }
    }
    let started = Instant::now();
    let (walked, fault) = walk(store, RoomId::new(1), accepted.accepted(1)).await?;
    verdict.walk_time = started.elapsed();
    verdict.walked = walked;
    verdict.walk_fault = fault;
    Ok(verdict)
}

/// Reads `room` from the start: its ids must be 1, 2, 3... up to `last`.
/// Returns how many messages were read and the first fault.
async fn walk(store: &dyn HistoryStore, room: RoomId, last: u64) -> Result<(u64, Option<String>)> {
    let mut read = 0;
    let mut previous = 0;
    loop {
        let page = store.after(room, MessageId::new(previous), PAGE).await?;
        let Some(end) = page.last() else { break };
        for message in &page {
            if message.room != room {
                return Ok((
                    read,
                    Some(format!("a message of room {} in room {room}", message.room)),
                ));
            }
            if message.id.get() != previous + 1 {
                let fault = format!("id {} after id {previous} in room {room}", message.id);
                return Ok((read, Some(fault)));
            }
            previous = message.id.get();
            read += 1;
        }
        previous = end.id.get();
    }
    let fault =
        (previous != last).then(|| format!("room {room} ends at id {previous}, not {last}"));
    Ok((read, fault))
}
