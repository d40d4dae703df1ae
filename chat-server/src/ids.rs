//! Message ids: per room, strictly increasing in the order messages are
//! accepted. On one node a counter does it; nodes sharing Redis take ids
//! from one Redis counter per room.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use stomp_broker::store::{MessageId, RoomId};
use tokio::sync::Mutex;

/// How long one Redis command may take before the message is refused.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Increments the room's counter, never to a value at or below `ARGV[1]`
/// (the highest id the calling node knows).
///
/// A counter that does not exist (Redis restarted without its data, or
/// the key was evicted) is not made from the caller's own knowledge, which
/// may be behind what other nodes handed out: the script answers `-1`
/// unless `ARGV[2]` is `1`, and the caller asks again with a floor read
/// from the shared history. Nodes doing so at once agree through `INCR`.
const NEXT_ID: &str = r"
local floor = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[2] ~= '1' then
    return -1
  end
  redis.call('SET', KEYS[1], floor, 'NX')
end
local v = redis.call('INCR', KEYS[1])
if v <= floor then
  v = floor + 1
  redis.call('SET', KEYS[1], v)
end
return v
";

/// Where ids come from.
#[derive(Debug)]
pub(crate) enum Sequencer {
    /// This node is the only one: the room's last id plus one.
    Local,
    /// Nodes share one counter per room in Redis.
    Redis(Box<RedisSequencer>),
}

/// Ids from Redis counters `{prefix}room:{id}:last`.
pub(crate) struct RedisSequencer {
    client: redis::Client,
    prefix: String,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl std::fmt::Debug for RedisSequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSequencer").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// Why no id could be had.
#[derive(Debug, thiserror::Error)]
#[error("message ids unavailable: {0}")]
pub(crate) struct SequenceError(String);

impl RedisSequencer {
    pub(crate) fn new(url: &str, prefix: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        Ok(Self { client, prefix: prefix.to_owned(), conn: Mutex::new(None) })
    }

    fn key(&self, room: RoomId) -> String {
        format!("{}room:{room}:last", self.prefix)
    }

    /// A connection, made again after a failure.
    async fn connection(&self) -> Result<MultiplexedConnection, SequenceError> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok(c.clone());
        }
        let made =
            tokio::time::timeout(REDIS_TIMEOUT, self.client.get_multiplexed_async_connection())
                .await
                .map_err(|_| SequenceError("timed out connecting to Redis".into()))?
                .map_err(|e| SequenceError(e.to_string()))?;
        *conn = Some(made.clone());
        Ok(made)
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, SequenceError> {
        let mut conn = self.connection().await?;
        let result = tokio::time::timeout(REDIS_TIMEOUT, cmd.query_async::<T>(&mut conn)).await;
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                *self.conn.lock().await = None;
                Err(SequenceError(e.to_string()))
            }
            Err(_) => {
                *self.conn.lock().await = None;
                Err(SequenceError("Redis did not answer in time".into()))
            }
        }
    }

    /// The next id of `room`, above `floor`; `None` when the counter is
    /// missing and `create` is false.
    async fn next(
        &self,
        room: RoomId,
        floor: MessageId,
        create: bool,
    ) -> Result<Option<MessageId>, SequenceError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(NEXT_ID).arg(1).arg(self.key(room)).arg(floor.get()).arg(u8::from(create));
        let id = self.run::<i64>(&cmd).await?;
        Ok(u64::try_from(id).ok().map(MessageId::new))
    }

    /// Checks that Redis answers.
    pub(crate) async fn ping(&self) -> Result<(), SequenceError> {
        self.run::<String>(&redis::cmd("PING")).await.map(drop)
    }
}

impl Sequencer {
    /// The id after `last` (the highest this node knows for `room`).
    ///
    /// When the shared counter is missing, `shared_last` is asked for the
    /// highest id of the room in the shared history (which every node
    /// writes), and the counter starts again above both.
    pub(crate) async fn next<F, E>(
        &self,
        room: RoomId,
        last: MessageId,
        shared_last: impl FnOnce() -> F,
    ) -> Result<MessageId, SequenceError>
    where
        F: Future<Output = Result<Option<MessageId>, E>>,
        E: std::fmt::Display,
    {
        let Self::Redis(redis) = self else {
            return last
                .get()
                .checked_add(1)
                .map(MessageId::new)
                .ok_or_else(|| SequenceError("the room has used every id".into()));
        };
        if let Some(id) = redis.next(room, last, false).await? {
            return Ok(id);
        }
        let stored = shared_last()
            .await
            .map_err(|e| SequenceError(format!("cannot read the room's newest id: {e}")))?;
        let floor = stored.map_or(last, |stored| stored.max(last));
        tracing::info!(%room, %floor, "shared id counter missing; starting it again from history");
        let id = redis.next(room, floor, true).await?;
        id.ok_or_else(|| SequenceError("the shared id counter could not be made".into()))
    }

    /// The highest id handed out for `room` by any node, when nodes share
    /// a counter (`None` on one node, where this node knows it).
    pub(crate) async fn issued(&self, room: RoomId) -> Result<Option<MessageId>, SequenceError> {
        match self {
            Self::Local => Ok(None),
            Self::Redis(redis) => {
                let value: Option<u64> = redis.run(redis::cmd("GET").arg(redis.key(room))).await?;
                Ok(value.map(MessageId::new))
            }
        }
    }

    /// Checks the shared counter's server, if any.
    pub(crate) async fn ping(&self) -> Result<(), SequenceError> {
        match self {
            Self::Local => Ok(()),
            Self::Redis(redis) => redis.ping().await,
        }
    }
}
