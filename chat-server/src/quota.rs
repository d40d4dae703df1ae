//! Limits on making rooms. Every room grows the chat's in-memory maps, the
//! database and the room list of every page, and in guest mode anyone may
//! make one: so their number is capped (`--max-rooms`), and each client
//! may make only so many a minute (`--max-room-rate`).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use stomp_broker::store::{Room, RoomId, RoomStore, StoreError};

/// The most clients whose rate is remembered. Past it the one remembered
/// longest is forgotten: it starts again with a full bucket, as a new
/// client does, so forgetting costs nothing but memory is bounded.
pub(crate) const MAX_CLIENTS: usize = 10_000;

/// Rooms read per query while counting them.
const COUNT_PAGE: usize = 1000;

/// Who makes a room, for the rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Client {
    /// A token's subject (JWT mode), hashed: what the map holds per client
    /// does not grow with what clients send.
    Subject(u64),
    /// An address (guest mode): an IPv4 address, or the /64 network of an
    /// IPv6 one (one host commonly has a whole /64).
    Network(IpAddr),
}

/// A token bucket per client: `per_minute` rooms a minute, with a burst of
/// as many.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// 0: no limit.
    per_minute: u32,
    hasher: RandomState,
    /// A std mutex: held for a few map operations, never across an await.
    buckets: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    by_client: HashMap<Client, Bucket>,
    /// The clients in the order they were first seen: the front is
    /// forgotten first. Holds exactly the keys of `by_client`.
    order: VecDeque<Client>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `per_minute` rooms a minute per client; 0: no limit.
    pub(crate) fn new(per_minute: u32) -> Self {
        Self { per_minute, hasher: RandomState::new(), buckets: Mutex::default() }
    }

    /// The client of a token's `subject`.
    pub(crate) fn subject(&self, subject: &str) -> Client {
        Client::Subject(self.hasher.hash_one(subject))
    }

    /// Takes one room from `client`'s bucket at `now`, or says how long
    /// until there is one.
    pub(crate) fn take(&self, client: Client, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let burst = f64::from(self.per_minute);
        let per_second = burst / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.get(client, Bucket { tokens: burst, at: now });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
    }

    /// How many clients are remembered.
    #[cfg(test)]
    fn clients(&self) -> usize {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner).by_client.len()
    }
}

impl Buckets {
    /// `client`'s bucket, made as `new` (forgetting the oldest client if
    /// the map is full) if there is none.
    fn get(&mut self, client: Client, new: Bucket) -> &mut Bucket {
        if !self.by_client.contains_key(&client) {
            if self.by_client.len() >= MAX_CLIENTS
                && let Some(oldest) = self.order.pop_front()
            {
                self.by_client.remove(&oldest);
            }
            self.order.push_back(client);
        }
        self.by_client.entry(client).or_insert(new)
    }
}

/// Why a room was not made.
#[derive(Debug)]
pub(crate) enum CreateError {
    /// There are `--max-rooms` rooms already (the number).
    Full(usize),
    /// The store refused (name taken, invalid) or failed.
    Store(StoreError),
}

impl From<StoreError> for CreateError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// The cap on the number of rooms.
///
/// Rooms are never deleted and their ids grow, so the count is kept
/// incrementally: each creation first reads the rooms after the last one
/// counted (those other nodes made, usually none). Creations on one node
/// are serialized (rare, and it keeps this node from passing the cap);
/// nodes creating rooms at the same instant may pass it by one each.
#[derive(Debug)]
pub(crate) struct RoomCap {
    max: usize,
    /// A tokio mutex: held across the store's calls.
    seen: tokio::sync::Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    count: usize,
    last: Option<RoomId>,
}

impl RoomCap {
    /// At most `max` rooms.
    pub(crate) fn new(max: usize) -> Self {
        Self { max, seen: tokio::sync::Mutex::default() }
    }

    /// Makes room `name` in `rooms` unless there are `max` rooms already.
    pub(crate) async fn create(
        &self,
        rooms: &dyn RoomStore,
        name: &str,
    ) -> Result<Room, CreateError> {
        let mut seen = self.seen.lock().await;
        seen.catch_up(rooms).await?;
        if seen.count >= self.max {
            return Err(CreateError::Full(self.max));
        }
        Ok(rooms.create_room(name).await?)
    }
}

impl Seen {
    /// Counts the rooms made since the last count.
    async fn catch_up(&mut self, rooms: &dyn RoomStore) -> Result<(), StoreError> {
        loop {
            let page = rooms.rooms(self.last, COUNT_PAGE).await?;
            self.count += page.len();
            if let Some(room) = page.last() {
                self.last = Some(room.id);
            }
            if page.len() < COUNT_PAGE {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use stomp_broker::store::MemoryStore;

    use super::*;

    fn address(last: u8) -> Client {
        Client::Network(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
    }

    #[test]
    fn a_client_gets_its_burst_then_one_room_per_interval() {
        let limiter = RateLimiter::new(10);
        let start = Instant::now();
        for _ in 0..10 {
            assert_eq!(limiter.take(address(1), start), Ok(()));
        }
        let wait = limiter.take(address(1), start).expect_err("the burst is spent");
        assert!(wait > Duration::from_millis(5990) && wait <= Duration::from_secs(6), "{wait:?}");
        assert_eq!(limiter.take(address(2), start), Ok(()), "another client has its own bucket");
        let later = start + Duration::from_secs(6);
        assert_eq!(limiter.take(address(1), later), Ok(()), "one room per 6 s comes back");
        assert!(limiter.take(address(1), later).is_err());
    }

    #[test]
    fn subjects_are_told_apart_and_zero_means_no_limit() {
        let limiter = RateLimiter::new(1);
        let now = Instant::now();
        assert_eq!(limiter.take(limiter.subject("alice"), now), Ok(()));
        assert!(limiter.take(limiter.subject("alice"), now).is_err());
        assert_eq!(limiter.take(limiter.subject("bob"), now), Ok(()));
        let unlimited = RateLimiter::new(0);
        assert!((0..1000).all(|_| unlimited.take(address(1), now).is_ok()));
    }

    #[test]
    fn the_map_of_clients_is_bounded() {
        let limiter = RateLimiter::new(1);
        let now = Instant::now();
        assert_eq!(limiter.take(address(1), now), Ok(()));
        for i in 0..MAX_CLIENTS {
            let subject = limiter.subject(&i.to_string());
            assert_eq!(limiter.take(subject, now), Ok(()));
        }
        assert_eq!(limiter.clients(), MAX_CLIENTS);
        assert_eq!(limiter.take(address(1), now), Ok(()), "the oldest client was forgotten");
    }

    #[tokio::test]
    async fn rooms_are_capped() {
        let store = MemoryStore::new();
        store.create_room("made elsewhere").await.expect("room");
        let cap = RoomCap::new(3);
        cap.create(&store, "two").await.expect("below the cap");
        store.create_room("three").await.expect("room");
        let full = cap.create(&store, "four").await;
        assert!(matches!(full, Err(CreateError::Full(3))), "{full:?}");
        assert_eq!(store.rooms(None, 10).await.expect("rooms").len(), 3);
    }
}
