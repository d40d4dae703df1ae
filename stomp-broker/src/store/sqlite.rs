//! [`SqliteStore`]: rooms and history in one SQLite file, the embedded
//! default (sqlx, SQLite bundled).
//!
//! SQLite lets one connection write at a time, so the store keeps two
//! pools: a write pool of exactly one connection (appends and room
//! creation queue for it in the process instead of spinning on
//! `SQLITE_BUSY`) and a small read pool, which WAL mode lets read while
//! the writer writes.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{
    HistoryStore, MessageId, Room, RoomId, RoomStore, StoreError, StoredMessage, Timestamp, sql,
    validate_room_name,
};

/// The schema, oldest first; applied on open.
const MIGRATIONS: sql::Migrations =
    &[(1, "init", include_str!("../../migrations/sqlite/0001_init.sql"))];

/// SQLite's bound-parameter limit per statement (`SQLITE_MAX_VARIABLE_NUMBER`,
/// 32,766 since 3.32).
const MAX_PARAMS: usize = 32_766;

/// The most messages per `INSERT` statement: under the parameter limit.
const ROWS_PER_INSERT: usize = MAX_PARAMS / sql::PARAMS_PER_MESSAGE;

/// How long a statement waits for a lock another process holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an operation waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections of the read pool.
const READERS: u32 = 4;

/// `SELECT` of whole message rows, then `$tail`.
macro_rules! select_messages {
    ($tail:literal) => {
        concat!(
            "SELECT room_id, id, sender, content_type, body, sent_at FROM chat_messages ",
            $tail
        )
    };
}

/// A message row: room, id, sender, content type, body, sent at.
type MessageRow = (i64, i64, String, String, Vec<u8>, i64);

/// Rooms and history in SQLite.
///
/// Cheap to clone (the pools are shared). Ids above `i64::MAX` cannot be
/// stored: appending one fails with [`StoreError::Invalid`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// One connection: SQLite has one writer at a time.
    write: SqlitePool,
    /// Readers; the same pool as `write` for an in-memory database.
    read: SqlitePool,
}

impl SqliteStore {
    /// Opens the database file at `path`, creating it (and its parent
    /// directory) if missing, and brings its schema up to date.
    ///
    /// The database is in WAL mode with `synchronous = NORMAL`: a commit
    /// survives a crash of the process; a power loss may lose the last
    /// commits but never corrupts the file.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the directory or file cannot be
    /// created or the schema cannot be migrated; [`StoreError::Unavailable`]
    /// when another process keeps the database locked.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(StoreError::backend)?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        let write = writer(options.clone()).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(error)?;
        Ok(Self { write, read })
    }

    /// A new, empty database in memory, gone when the store is dropped
    /// (for tests). It lives in the one connection that reads and writes.
    ///
    /// # Errors
    /// [`StoreError::Backend`] if SQLite fails to create it.
    pub async fn memory() -> Result<Self, StoreError> {
        // A private in-memory database belongs to its connection, so the
        // pool keeps exactly one and never closes it.
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(StoreError::backend)?
            .shared_cache(false);
        let pool = writer(options).await?;
        Ok(Self { write: pool.clone(), read: pool })
    }

    /// Closes the connections, waiting for operations in progress; the
    /// last one to close checkpoints the WAL into the database file.
    /// Operations after this fail with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// Writes `batch` in one transaction, in statements of at most
    /// [`ROWS_PER_INSERT`] messages. Many rows per statement beat one
    /// prepared single-row statement per message by about four times.
    async fn insert(&self, batch: &[StoredMessage]) -> Result<(), StoreError> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(error)?;
        for chunk in sql::statements(batch, ROWS_PER_INSERT, usize::MAX) {
            let sql = sql::insert_messages("INTO", chunk.len(), "ON CONFLICT DO NOTHING");
            let mut query = sqlx::query(&sql);
            for m in chunk {
                query = query
                    .bind(sql::bind_id(m.room.get())?)
                    .bind(sql::bind_id(m.id.get())?)
                    .bind(m.sender.as_str())
                    .bind(m.content_type.as_str())
                    .bind(&m.body[..])
                    .bind(m.sent_at.unix_millis());
            }
            query.execute(&mut *tx).await.map_err(error)?;
        }
        tx.commit().await.map_err(error)
    }
}

/// The write pool: one connection, kept open (an in-memory database dies
/// with it), and migrated.
async fn writer(options: SqliteConnectOptions) -> Result<SqlitePool, StoreError> {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(error)?;
    // Holding the write lock around the run keeps two processes opening
    // a new file at once from both migrating.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(error)?;
    sql::migrate!(tx, MIGRATIONS, error);
    tx.commit().await.map_err(error)?;
    Ok(pool)
}

/// Busy and locked (another process holds the lock past the busy
/// timeout), I/O errors, a full disk and a file that cannot be opened
/// right now: worth retrying.
fn is_transient(e: &dyn DatabaseError) -> bool {
    const BUSY: i32 = 5;
    const LOCKED: i32 = 6;
    const IOERR: i32 = 10;
    const FULL: i32 = 13;
    const CANTOPEN: i32 = 14;
    // The code is SQLite's extended result code; the low byte is the
    // primary one.
    let primary = e.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
    matches!(primary, Some(BUSY | LOCKED | IOERR | FULL | CANTOPEN))
}

fn error(e: sqlx::Error) -> StoreError {
    sql::error(e, is_transient)
}

/// Binds an id read from the caller: `None` when it is above `i64::MAX`,
/// so that no stored id can match it.
fn key(n: u64) -> Option<i64> {
    i64::try_from(n).ok()
}

fn message(row: MessageRow) -> Result<StoredMessage, StoreError> {
    let (room, id, sender, content_type, body, sent_at) = row;
    Ok(StoredMessage {
        room: RoomId::new(sql::id(room)?),
        id: MessageId::new(sql::id(id)?),
        sender,
        content_type,
        body: Bytes::from(body),
        sent_at: Timestamp::from_unix_millis(sent_at),
    })
}

fn messages(rows: Vec<MessageRow>) -> Result<Vec<StoredMessage>, StoreError> {
    rows.into_iter().map(message).collect()
}

fn room(row: (i64, String, i64)) -> Result<Room, StoreError> {
    let (id, name, created_at) = row;
    Ok(Room {
        id: RoomId::new(sql::id(id)?),
        name,
        created_at: Timestamp::from_unix_millis(created_at),
    })
}

#[async_trait]
impl HistoryStore for SqliteStore {
    async fn append(&self, batch: &[StoredMessage]) -> Result<(), StoreError> {
        for m in batch {
            m.validate(self.max_body_len())?;
            sql::bind_id(m.room.get())?;
            sql::bind_id(m.id.get())?;
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.insert(batch).await
    }

    async fn page(
        &self,
        room: RoomId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let Some(room) = key(room.get()) else { return Ok(Vec::new()) };
        // An id above every storable id bounds nothing.
        let rows = match before.and_then(|id| key(id.get())) {
            Some(before) => {
                let sql = select_messages!("WHERE room_id = ? AND id < ? ORDER BY id DESC LIMIT ?");
                sqlx::query_as(sql)
                    .bind(room)
                    .bind(before)
                    .bind(sql::limit(limit))
                    .fetch_all(&self.read)
                    .await
            }
            None => {
                let sql = select_messages!("WHERE room_id = ? ORDER BY id DESC LIMIT ?");
                sqlx::query_as(sql).bind(room).bind(sql::limit(limit)).fetch_all(&self.read).await
            }
        };
        messages(rows.map_err(error)?)
    }

    async fn after(
        &self,
        room: RoomId,
        after: MessageId,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let (Some(room), Some(after)) = (key(room.get()), key(after.get())) else {
            return Ok(Vec::new());
        };
        let sql = select_messages!("WHERE room_id = ? AND id > ? ORDER BY id LIMIT ?");
        let rows = sqlx::query_as(sql)
            .bind(room)
            .bind(after)
            .bind(sql::limit(limit))
            .fetch_all(&self.read)
            .await
            .map_err(error)?;
        messages(rows)
    }

    async fn count(&self, room: RoomId) -> Result<u64, StoreError> {
        let Some(room) = key(room.get()) else { return Ok(0) };
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chat_messages WHERE room_id = ?")
            .bind(room)
            .fetch_one(&self.read)
            .await
            .map_err(error)?;
        sql::id(n)
    }

    async fn last_id(&self, room: RoomId) -> Result<Option<MessageId>, StoreError> {
        let Some(room) = key(room.get()) else { return Ok(None) };
        let max: Option<i64> =
            sqlx::query_scalar("SELECT MAX(id) FROM chat_messages WHERE room_id = ?")
                .bind(room)
                .fetch_one(&self.read)
                .await
                .map_err(error)?;
        max.map(|n| sql::id(n).map(MessageId::new)).transpose()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        ping(&self.read).await
    }
}

#[async_trait]
impl RoomStore for SqliteStore {
    async fn create_room(&self, name: &str) -> Result<Room, StoreError> {
        validate_room_name(name)?;
        let created_at = Timestamp::now();
        let done = sqlx::query("INSERT INTO chat_rooms (name, created_at) VALUES (?, ?)")
            .bind(name)
            .bind(created_at.unix_millis())
            .execute(&self.write)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation => {
                    StoreError::NameTaken(name.to_owned())
                }
                other => error(other),
            })?;
        let id = RoomId::new(sql::id(done.last_insert_rowid())?);
        Ok(Room { id, name: name.to_owned(), created_at })
    }

    async fn room(&self, id: RoomId) -> Result<Option<Room>, StoreError> {
        let Some(id) = key(id.get()) else { return Ok(None) };
        let row = sqlx::query_as("SELECT id, name, created_at FROM chat_rooms WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(error)?;
        row.map(room).transpose()
    }

    async fn rooms(&self, after: Option<RoomId>, limit: usize) -> Result<Vec<Room>, StoreError> {
        let after = match after {
            None => 0,
            Some(id) => match key(id.get()) {
                Some(id) => id,
                None => return Ok(Vec::new()),
            },
        };
        let rows = sqlx::query_as(
            "SELECT id, name, created_at FROM chat_rooms WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(after)
        .bind(sql::limit(limit))
        .fetch_all(&self.read)
        .await
        .map_err(error)?;
        rows.into_iter().map(room).collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        ping(&self.read).await
    }
}

async fn ping(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::query("SELECT 1").execute(pool).await.map(drop).map_err(StoreError::unavailable)
}
