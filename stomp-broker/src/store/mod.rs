//! Chat history and rooms: the storage traits, their implementations, and
//! the batching writer that keeps the database off the delivery path.
//!
//! - [`HistoryStore`]: append messages in batches, page a room newest
//!   first, read everything after a message id (resume), count.
//! - [`RoomStore`]: create rooms with unique names, get one, list them.
//! - Implementations: [`MemoryStore`] (always there), `SqliteStore`
//!   (feature `sqlite`, the embedded default), `MySqlStore` (feature
//!   `mysql`, MySQL and MariaDB) and `MongoStore` (feature `mongodb`).
//! - [`HistoryWriter`]: a bounded buffer in front of a [`HistoryStore`];
//!   one batch insert per flush, retried with backoff while the database is
//!   down, never reordered, and a refusal ([`AppendError::Full`]) instead
//!   of a silent drop when the buffer is full. Reads through the writer
//!   ([`HistoryWriter::page`], [`HistoryWriter::after`]) include messages
//!   not written yet.
//!
//! Message ids are assigned by the application before a message reaches
//! the store (so a message can be delivered before it is written); they
//! are ordered per room, which makes "after id X" exact. Appends are
//! idempotent per `(room, id)`: a batch retried after a failure that
//! happened after the database committed it stores nothing twice.

use std::error::Error as StdError;
use std::fmt;
use std::num::ParseIntError;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;

mod memory;
mod writer;

#[cfg(feature = "mongodb")]
mod mongo;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::MemoryStore;
#[cfg(feature = "mongodb")]
pub use mongo::MongoStore;
#[cfg(feature = "mysql")]
pub use mysql::MySqlStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use writer::{AppendError, HistoryWriter, Unflushed, WriterConfig, WriterStats};

/// The most bytes a room name may take (UTF-8).
pub const MAX_ROOM_NAME_LEN: usize = 100;
/// The most bytes a message's sender may take (UTF-8).
pub const MAX_SENDER_LEN: usize = 255;
/// The most bytes a message's content type may take.
pub const MAX_CONTENT_TYPE_LEN: usize = 255;
/// The largest body any backend is asked to store by default (8 MiB, the
/// broker's default frame limit; below MongoDB's 16 MiB document limit and
/// MySQL's `MEDIUMBLOB`).
pub const DEFAULT_MAX_BODY_LEN: usize = 8 * 1024 * 1024;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Written and parsed as a decimal string (JSON and STOMP headers
        /// carry it as a string); the order is numeric.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u64);

        impl $name {
            /// The id with this number.
            #[must_use]
            pub const fn new(n: u64) -> Self {
                Self(n)
            }

            /// Its number.
            #[must_use]
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIntError;

            /// Decimal digits only: no sign, no spaces.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.starts_with('+') {
                    // u64::from_str accepts a leading '+'; an id does not.
                    return "+".parse::<u64>().map(Self);
                }
                s.parse().map(Self)
            }
        }

        impl From<u64> for $name {
            fn from(n: u64) -> Self {
                Self(n)
            }
        }
    };
}

id_type!(
    /// A room's id, assigned by the [`RoomStore`] when the room is created.
    RoomId
);
id_type!(
    /// A message's id: unique within its room and increasing in the order
    /// the room's messages were accepted.
    MessageId
);

/// A point in time with millisecond precision, as every backend stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Now, truncated to the millisecond.
    #[must_use]
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// Milliseconds since 1970-01-01T00:00:00Z.
    #[must_use]
    pub const fn from_unix_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since 1970-01-01T00:00:00Z.
    #[must_use]
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// As a [`SystemTime`].
    #[must_use]
    pub fn to_system_time(self) -> SystemTime {
        let magnitude = Duration::from_millis(self.0.unsigned_abs());
        if self.0 >= 0 { UNIX_EPOCH + magnitude } else { UNIX_EPOCH - magnitude }
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        let ms = match t.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
        };
        Self(ms)
    }
}

/// One chat message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The room it was posted to.
    pub room: RoomId,
    /// Its id within the room.
    pub id: MessageId,
    /// Who sent it.
    pub sender: String,
    /// The body's media type (`application/json` for chat messages).
    pub content_type: String,
    /// The body.
    pub body: Bytes,
    /// When the server accepted it.
    pub sent_at: Timestamp,
}

impl StoredMessage {
    /// Checks the sizes every backend can store: sender and content type
    /// at most 255 bytes, the body at most `max_body` bytes.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] naming the field.
    pub fn validate(&self, max_body: usize) -> Result<(), StoreError> {
        if self.sender.len() > MAX_SENDER_LEN {
            return Err(StoreError::Invalid(format!(
                "sender is {} bytes, more than {MAX_SENDER_LEN}",
                self.sender.len()
            )));
        }
        if self.content_type.len() > MAX_CONTENT_TYPE_LEN {
            return Err(StoreError::Invalid(format!(
                "content type is {} bytes, more than {MAX_CONTENT_TYPE_LEN}",
                self.content_type.len()
            )));
        }
        if self.body.len() > max_body {
            return Err(StoreError::Invalid(format!(
                "body is {} bytes, more than {max_body}",
                self.body.len()
            )));
        }
        Ok(())
    }

    /// Bytes this message holds in memory, roughly (for buffer bounds).
    #[must_use]
    pub fn weight(&self) -> usize {
        self.body.len() + self.sender.len() + self.content_type.len() + 64
    }
}

/// A chat room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// Its id.
    pub id: RoomId,
    /// Its name, unique among rooms (compared byte for byte).
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// Checks a room name: not empty, no leading or trailing whitespace, no
/// control or invisible characters ([`is_invisible_char`]: two names that
/// look the same must not both exist), at most [`MAX_ROOM_NAME_LEN`]
/// bytes. Every [`RoomStore`] calls it before creating a room.
///
/// # Errors
/// [`StoreError::Invalid`] saying what is wrong.
pub fn validate_room_name(name: &str) -> Result<(), StoreError> {
    let problem = if name.is_empty() {
        "a room name must not be empty".to_owned()
    } else if name.len() > MAX_ROOM_NAME_LEN {
        "a room name must be at most 100 bytes".to_owned()
    } else if name.trim() != name {
        "a room name must not start or end with whitespace".to_owned()
    } else if let Some(c) = name.chars().find(|&c| is_invisible_char(c)) {
        format!(
            "a room name must not contain control or invisible characters (U+{:04X})",
            u32::from(c)
        )
    } else {
        return Ok(());
    };
    Err(StoreError::Invalid(problem))
}

/// What [`is_invisible_char`] refuses besides control characters, as
/// inclusive ranges: every format character (Cf) of Unicode 15.1, U+2028
/// and U+2029, and the Hangul fillers. An explicit table rather than a
/// Unicode crate: it is short, and it is a decision about names.
const INVISIBLE: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x115F, 0x1160),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x2028, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Whether `c` has no visible form of its own or changes how the text
/// around it is shown: a control character (Cc), a format character (Cf:
/// zero-width spaces and joiners, bidirectional marks and overrides, the
/// soft hyphen, the byte order mark, tags...), a line or paragraph
/// separator, or a blank Hangul filler. A name (of a room, or a nickname)
/// with one can pass for another name, so names may not contain them.
///
/// ```
/// use stomp_broker::store::is_invisible_char;
/// assert!(is_invisible_char('\u{200B}')); // zero width space
/// assert!(is_invisible_char('\u{202E}')); // right-to-left override
/// assert!(is_invisible_char('\n'));
/// assert!(!is_invisible_char('é') && !is_invisible_char('🎉'));
/// ```
#[must_use]
pub fn is_invisible_char(c: char) -> bool {
    let code = u32::from(c);
    c.is_control() || INVISIBLE.iter().any(|&(first, last)| (first..=last).contains(&code))
}

/// A failure of a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database cannot be reached or is busy right now (connection
    /// refused or lost, pool timeout, lock timeout). Worth retrying.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync>),
    /// A room with this name exists already.
    #[error("a room named {0:?} exists already")]
    NameTaken(String),
    /// The input cannot be stored (too long, empty, malformed).
    #[error("invalid: {0}")]
    Invalid(String),
    /// Anything else the database reported.
    #[error("store error: {0}")]
    Backend(#[source] Box<dyn StdError + Send + Sync>),
}

impl StoreError {
    /// Whether retrying the same operation later can succeed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    #[cfg_attr(
        not(any(feature = "sqlite", feature = "mysql", feature = "mongodb")),
        allow(dead_code)
    )]
    pub(crate) fn unavailable(e: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Unavailable(e.into())
    }

    pub(crate) fn backend(e: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Backend(e.into())
    }
}

/// Stores chat messages.
///
/// Implementations must make [`append`](Self::append) idempotent per
/// `(room, id)` and must return messages of a room in id order.
#[async_trait]
pub trait HistoryStore: Send + Sync + 'static {
    /// Stores a batch of messages (possibly of several rooms) as one write
    /// where the database allows. A message whose `(room, id)` is stored
    /// already is left as it was, so a batch may be retried safely.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached
    /// (nothing, or only part of the batch, may be stored; retrying is
    /// safe); other variants for input the database refuses.
    async fn append(&self, batch: &[StoredMessage]) -> Result<(), StoreError>;

    /// At most `limit` messages of `room` with ids below `before` (all ids
    /// when `None`), newest first.
    ///
    /// # Errors
    /// When the database fails.
    async fn page(
        &self,
        room: RoomId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError>;

    /// At most `limit` messages of `room` with ids above `after`, oldest
    /// first. Call again with the last id returned to read on.
    ///
    /// # Errors
    /// When the database fails.
    async fn after(
        &self,
        room: RoomId,
        after: MessageId,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError>;

    /// How many messages `room` holds.
    ///
    /// # Errors
    /// When the database fails.
    async fn count(&self, room: RoomId) -> Result<u64, StoreError>;

    /// The highest message id stored for `room`, if any (to continue a
    /// room's sequence after a restart).
    ///
    /// # Errors
    /// When the database fails.
    async fn last_id(&self, room: RoomId) -> Result<Option<MessageId>, StoreError> {
        Ok(self.page(room, None, 1).await?.first().map(|m| m.id))
    }

    /// The largest body this store accepts (see [`DEFAULT_MAX_BODY_LEN`]).
    fn max_body_len(&self) -> usize {
        DEFAULT_MAX_BODY_LEN
    }

    /// Checks that the database answers (for readiness probes).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when it does not.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Stores chat rooms.
#[async_trait]
pub trait RoomStore: Send + Sync + 'static {
    /// Creates a room. Names are unique (byte for byte) and checked with
    /// [`validate_room_name`].
    ///
    /// # Errors
    /// [`StoreError::NameTaken`] when the name is in use (also when two
    /// nodes race to create it: exactly one wins), [`StoreError::Invalid`]
    /// for a bad name.
    async fn create_room(&self, name: &str) -> Result<Room, StoreError>;

    /// The room with this id, if there is one.
    ///
    /// # Errors
    /// When the database fails.
    async fn room(&self, id: RoomId) -> Result<Option<Room>, StoreError>;

    /// At most `limit` rooms with ids above `after` (from the first when
    /// `None`), in id (creation) order.
    ///
    /// # Errors
    /// When the database fails.
    async fn rooms(&self, after: Option<RoomId>, limit: usize) -> Result<Vec<Room>, StoreError>;

    /// Checks that the database answers (for readiness probes).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when it does not.
    async fn ping(&self) -> Result<(), StoreError>;
}

#[async_trait]
impl<T: HistoryStore + ?Sized> HistoryStore for Arc<T> {
    async fn append(&self, batch: &[StoredMessage]) -> Result<(), StoreError> {
        (**self).append(batch).await
    }
    async fn page(
        &self,
        room: RoomId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        (**self).page(room, before, limit).await
    }
    async fn after(
        &self,
        room: RoomId,
        after: MessageId,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        (**self).after(room, after, limit).await
    }
    async fn count(&self, room: RoomId) -> Result<u64, StoreError> {
        (**self).count(room).await
    }
    async fn last_id(&self, room: RoomId) -> Result<Option<MessageId>, StoreError> {
        (**self).last_id(room).await
    }
    fn max_body_len(&self) -> usize {
        (**self).max_body_len()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        HistoryStore::ping(&**self).await
    }
}

#[async_trait]
impl<T: RoomStore + ?Sized> RoomStore for Arc<T> {
    async fn create_room(&self, name: &str) -> Result<Room, StoreError> {
        (**self).create_room(name).await
    }
    async fn room(&self, id: RoomId) -> Result<Option<Room>, StoreError> {
        (**self).room(id).await
    }
    async fn rooms(&self, after: Option<RoomId>, limit: usize) -> Result<Vec<Room>, StoreError> {
        (**self).rooms(after, limit).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        RoomStore::ping(&**self).await
    }
}

/// The SQL backends' shared conversions, statements and migrations.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) mod sql {
    use std::fmt::Write as _;

    use super::{StoreError, StoredMessage};

    /// The columns of `chat_messages`, in the order [`insert_messages`]
    /// binds them.
    pub(crate) const MESSAGE_COLUMNS: &str = "room_id, id, sender, content_type, body, sent_at";

    /// Parameters bound per message by [`insert_messages`].
    pub(crate) const PARAMS_PER_MESSAGE: usize = 6;

    /// Maps an sqlx error: connection-level failures are transient, and
    /// so are the database errors `transient` picks (each backend knows
    /// its own codes: busy, lock timeout, server shutting down).
    pub(crate) fn error(
        e: sqlx::Error,
        transient: impl Fn(&dyn sqlx::error::DatabaseError) -> bool,
    ) -> StoreError {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => StoreError::unavailable(e),
            sqlx::Error::Database(ref db) if transient(&**db) => StoreError::unavailable(e),
            other => StoreError::backend(other),
        }
    }

    /// Converts a row's unsigned id column read as `i64`.
    pub(crate) fn id(n: i64) -> Result<u64, StoreError> {
        u64::try_from(n)
            .map_err(|_| StoreError::backend(format!("negative id {n} in the database")))
    }

    /// Converts an id for binding as `i64` (ids above `i64::MAX` are refused).
    #[cfg(feature = "sqlite")]
    pub(crate) fn bind_id(n: u64) -> Result<i64, StoreError> {
        i64::try_from(n).map_err(|_| StoreError::Invalid(format!("id {n} is above {}", i64::MAX)))
    }

    /// Caps a `limit` for binding.
    pub(crate) fn limit(limit: usize) -> i64 {
        i64::try_from(limit).unwrap_or(i64::MAX)
    }

    /// `INSERT {verb} chat_messages (...) VALUES (?, ...), ... {tail}` for
    /// `rows` messages, to be bound in [`MESSAGE_COLUMNS`] order.
    pub(crate) fn insert_messages(verb: &str, rows: usize, tail: &str) -> String {
        const ROW: &str = "(?,?,?,?,?,?),";
        let mut sql = String::with_capacity(64 + verb.len() + tail.len() + rows * ROW.len());
        let _ = write!(sql, "INSERT {verb} chat_messages ({MESSAGE_COLUMNS}) VALUES ");
        for _ in 0..rows {
            sql.push_str(ROW);
        }
        sql.pop();
        sql.push(' ');
        sql.push_str(tail);
        sql
    }

    /// Splits `batch` into the messages of one `INSERT` each: at most
    /// `max_rows` messages and about `max_bytes` bytes of parameters (a
    /// larger message alone), and a power of two long, so that however
    /// batches are sized a connection prepares (and caches) only a dozen
    /// distinct statements.
    pub(crate) fn statements(
        batch: &[StoredMessage],
        max_rows: usize,
        max_bytes: usize,
    ) -> impl Iterator<Item = &[StoredMessage]> {
        let mut rest = batch;
        std::iter::from_fn(move || {
            let mut rows = 0_usize;
            let mut bytes = 0;
            for m in rest.iter().take(max_rows.max(1)) {
                bytes += m.weight();
                if rows > 0 && bytes > max_bytes {
                    break;
                }
                rows += 1;
            }
            let rows = 1_usize.checked_shl(rows.checked_ilog2()?)?;
            let (statement, tail) = rest.split_at(rows);
            rest = tail;
            Some(statement)
        })
    }

    /// A backend's migrations, compiled in: `(version, description, sql)`
    /// in version order. Scripts use `IF NOT EXISTS`, so one that failed
    /// halfway (MySQL commits each DDL statement) can simply run again.
    pub(crate) type Migrations = &'static [(i64, &'static str, &'static str)];

    /// The table recording applied migrations. Named for this crate rather
    /// than sqlx's shared `_sqlx_migrations`, so that an application whose
    /// own sqlx migrations live in the same database is not disturbed.
    pub(crate) const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS \
         chat_schema_migrations (version BIGINT NOT NULL PRIMARY KEY, \
         description VARCHAR(200) NOT NULL, applied_at BIGINT NOT NULL)";

    /// Records that `version` was applied.
    pub(crate) const RECORD_MIGRATION: &str =
        "INSERT INTO chat_schema_migrations (version, description, applied_at) VALUES (?, ?, ?)";

    /// Applies the migrations of `$migrations` missing on the connection
    /// `$conn` (an `&mut` connection or transaction), recording each once it
    /// has run whole; `$error` maps `sqlx::Error`. A macro, not a function
    /// generic over the database: both backends' connection types get the
    /// same statements without sqlx's executor bounds spelled out.
    macro_rules! migrate {
        ($conn:expr, $migrations:expr, $error:expr) => {{
            sqlx::raw_sql(sql::CREATE_MIGRATIONS_TABLE)
                .execute(&mut *$conn)
                .await
                .map_err($error)?;
            let applied: Vec<i64> =
                sqlx::query_scalar("SELECT version FROM chat_schema_migrations")
                    .fetch_all(&mut *$conn)
                    .await
                    .map_err($error)?;
            for (version, description, script) in sql::pending($migrations, &applied)? {
                sqlx::raw_sql(script).execute(&mut *$conn).await.map_err($error)?;
                sqlx::query(sql::RECORD_MIGRATION)
                    .bind(version)
                    .bind(description)
                    .bind($crate::store::Timestamp::now().unix_millis())
                    .execute(&mut *$conn)
                    .await
                    .map_err($error)?;
            }
        }};
    }
    pub(crate) use migrate;

    /// The migrations of `migrations` not in `applied`, in order; an error
    /// when the database has a version this build does not know (a newer
    /// build migrated it: running an older one against it is refused).
    pub(crate) fn pending(
        migrations: Migrations,
        applied: &[i64],
    ) -> Result<Vec<(i64, &'static str, &'static str)>, StoreError> {
        let known = migrations.last().map_or(0, |m| m.0);
        if let Some(newer) = applied.iter().copied().filter(|&v| v > known).max() {
            return Err(StoreError::backend(format!(
                "the database schema is at version {newer}, newer than this build knows \
                 ({known}); run a newer build against it"
            )));
        }
        Ok(migrations.iter().filter(|m| !applied.contains(&m.0)).copied().collect())
    }
}
