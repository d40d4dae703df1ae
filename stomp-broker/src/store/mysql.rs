//! [`MySqlStore`]: rooms and history in MySQL or MariaDB (sqlx).
//!
//! Tables are InnoDB and `utf8mb4`; room names use the `utf8mb4_bin`
//! collation so that uniqueness is byte for byte, as in the other
//! backends. The schema is migrated on connect, under a server-side lock
//! so that nodes starting together do not race.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::error::DatabaseError;
use sqlx::mysql::{
    MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlPool, MySqlPoolOptions,
};
use sqlx::{ConnectOptions as _, Connection as _};

use super::{
    DEFAULT_MAX_BODY_LEN, HistoryStore, MAX_CONTENT_TYPE_LEN, MAX_SENDER_LEN, MessageId, Room,
    RoomId, RoomStore, StoreError, StoredMessage, Timestamp, sql, validate_room_name,
};

/// The schema, oldest first; applied on connect.
const MIGRATIONS: sql::Migrations =
    &[(1, "init", include_str!("../../migrations/mysql/0001_init.sql"))];

/// The protocol's limit on placeholders per prepared statement.
const MAX_PARAMS: usize = 65_535;

/// The most messages per `INSERT` statement: under the placeholder limit.
const ROWS_PER_INSERT: usize = MAX_PARAMS / sql::PARAMS_PER_MESSAGE;

/// The most parameter bytes per `INSERT` statement (a larger message is
/// written alone); less when `max_allowed_packet` is smaller.
const BYTES_PER_INSERT: usize = 4 * 1024 * 1024;

/// Room for what a statement's packet holds besides a message's body:
/// the SQL text, the other columns, headers.
const PACKET_OVERHEAD: usize = MAX_SENDER_LEN + MAX_CONTENT_TYPE_LEN + 4 * 1024;

/// How long an operation waits for a pooled connection, including
/// connecting: a server that is down surfaces as
/// [`StoreError::Unavailable`] after this long at most.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The server-wide named lock (`GET_LOCK`) held while migrating.
const MIGRATION_LOCK: &str = "stomp_broker_migrations";

/// How long a node waits for [`MIGRATION_LOCK`] while another migrates.
const MIGRATION_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Connections of the pool [`MySqlStore::connect`] makes.
const DEFAULT_POOL_SIZE: u32 = 10;

/// `SELECT` of whole message rows, then `$tail`.
macro_rules! select_messages {
    ($tail:literal) => {
        concat!(
            "SELECT room_id, id, sender, content_type, body, sent_at FROM chat_messages ",
            $tail
        )
    };
}

/// A message row: room, id, sender, content type, body, sent at. Text
/// columns are read as bytes: sqlx takes a `utf8mb4_bin` column for a
/// binary one and refuses to decode it as a string.
type MessageRow = (u64, u64, Vec<u8>, Vec<u8>, Vec<u8>, i64);

/// A room row: id, name, created at.
type RoomRow = (u64, Vec<u8>, i64);

/// Rooms and history in MySQL (5.7 and later) or MariaDB (10.3 and later).
///
/// Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct MySqlStore {
    pool: MySqlPool,
    /// The largest body: [`DEFAULT_MAX_BODY_LEN`] or less, so that one
    /// message fits in the server's `max_allowed_packet`.
    max_body: usize,
    /// The most parameter bytes per `INSERT`.
    statement_bytes: usize,
}

impl MySqlStore {
    /// Connects to the database at `url` (`mysql://user:password@host:port/database`)
    /// with a pool of 10 connections and brings its schema up to date.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the server cannot be reached;
    /// [`StoreError::Backend`] for a malformed URL, refused credentials or
    /// a schema that cannot be migrated.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = MySqlConnectOptions::from_str(url).map_err(error)?;
        Self::connect_with(options, DEFAULT_POOL_SIZE).await
    }

    /// Connects with these options and a pool of `pool_size` connections
    /// (at least one) and brings the schema up to date.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_with(
        options: MySqlConnectOptions,
        pool_size: u32,
    ) -> Result<Self, StoreError> {
        // One connection first, on its own: it reports why the server
        // cannot be reached (the pool would only time out), and migrates.
        let mut conn = tokio::time::timeout(ACQUIRE_TIMEOUT, options.connect())
            .await
            .map_err(|_| StoreError::unavailable("timed out connecting to MySQL"))?
            .map_err(error)?;
        migrate(&mut conn).await?;
        let packet: u64 = sqlx::query_scalar("SELECT CAST(@@max_allowed_packet AS UNSIGNED)")
            .fetch_one(&mut conn)
            .await
            .map_err(error)?;
        // The schema is in place whether or not the goodbye arrives.
        let _ = conn.close().await;
        let pool = MySqlPoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        let budget = usize::try_from(packet).unwrap_or(usize::MAX).saturating_sub(PACKET_OVERHEAD);
        Ok(Self {
            pool,
            max_body: budget.min(DEFAULT_MAX_BODY_LEN),
            statement_bytes: budget.min(BYTES_PER_INSERT),
        })
    }

    /// Closes the pool's connections, waiting for operations in progress.
    /// Operations after this fail with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Writes `batch` in one transaction, in statements bounded by the
    /// placeholder limit and [`BYTES_PER_INSERT`].
    async fn insert(&self, batch: &[StoredMessage]) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for chunk in sql::statements(batch, ROWS_PER_INSERT, self.statement_bytes) {
            // A row stored already is skipped (a retried batch); INSERT
            // IGNORE would also hide truncation and other errors.
            let sql = sql::insert_messages("INTO", chunk.len(), "ON DUPLICATE KEY UPDATE id = id");
            let mut query = sqlx::query(&sql);
            for m in chunk {
                query = query
                    .bind(m.room.get())
                    .bind(m.id.get())
                    .bind(m.sender.as_str())
                    .bind(m.content_type.as_str())
                    .bind(&m.body[..])
                    .bind(m.sent_at.unix_millis());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await
    }
}

/// Applies the migrations missing from the database, holding a named lock
/// so that nodes starting together apply each migration once. If this
/// fails, the caller drops `conn`, which releases the lock.
async fn migrate(conn: &mut MySqlConnection) -> Result<(), StoreError> {
    // A bounded wait: `GET_LOCK(name, -1)` (wait forever) is answered by
    // MariaDB with NULL at once instead of waiting.
    let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, ?)")
        .bind(MIGRATION_LOCK)
        .bind(MIGRATION_LOCK_WAIT.as_secs())
        .fetch_one(&mut *conn)
        .await
        .map_err(error)?;
    if locked != Some(1) {
        return Err(StoreError::unavailable(format!(
            "lock {MIGRATION_LOCK:?} not granted in {MIGRATION_LOCK_WAIT:?}: another node is migrating"
        )));
    }
    // DDL commits on its own in MySQL: each script is idempotent instead,
    // and recorded once it has run whole.
    sql::migrate!(conn, MIGRATIONS, error);
    sqlx::query("DO RELEASE_LOCK(?)").bind(MIGRATION_LOCK).execute(conn).await.map_err(error)?;
    Ok(())
}

/// Errors worth retrying: lock wait timeout and deadlock, too many
/// connections, the server shutting down or the connection lost or
/// killed, the server read-only (a failover in progress).
fn is_transient(e: &dyn DatabaseError) -> bool {
    let Some(e) = e.try_downcast_ref::<MySqlDatabaseError>() else { return false };
    matches!(
        e.number(),
        1040 // ER_CON_COUNT_ERROR: too many connections
            | 1053 // ER_SERVER_SHUTDOWN
            | 1077..=1080 // ER_NORMAL_SHUTDOWN .. ER_FORCING_CLOSE
            | 1152 // ER_ABORTING_CONNECTION
            | 1158..=1161 // ER_NET_READ_ERROR .. ER_NET_WRITE_INTERRUPTED
            | 1203 // ER_TOO_MANY_USER_CONNECTIONS
            | 1205 // ER_LOCK_WAIT_TIMEOUT
            | 1213 // ER_LOCK_DEADLOCK
            | 1290 // ER_OPTION_PREVENTS_STATEMENT: --read-only
            | 1317 // ER_QUERY_INTERRUPTED
            | 1927 // ER_CONNECTION_KILLED (MariaDB)
            | 2002 | 2003 | 2006 | 2013 // client: cannot connect, gone away, lost
            | 4031 // ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8)
    )
}

fn error(e: sqlx::Error) -> StoreError {
    sql::error(e, is_transient)
}

/// Whether `e` is MySQL's duplicate-key error (1062, `ER_DUP_ENTRY`).
fn is_duplicate(e: &sqlx::Error) -> bool {
    const ER_DUP_ENTRY: u16 = 1062;
    e.as_database_error()
        .and_then(|db| db.try_downcast_ref::<MySqlDatabaseError>())
        .is_some_and(|db| db.number() == ER_DUP_ENTRY)
}

/// A text column read as bytes.
fn text(bytes: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(bytes).map_err(StoreError::backend)
}

fn message(row: MessageRow) -> Result<StoredMessage, StoreError> {
    let (room, id, sender, content_type, body, sent_at) = row;
    Ok(StoredMessage {
        room: RoomId::new(room),
        id: MessageId::new(id),
        sender: text(sender)?,
        content_type: text(content_type)?,
        body: Bytes::from(body),
        sent_at: Timestamp::from_unix_millis(sent_at),
    })
}

fn messages(rows: Vec<MessageRow>) -> Result<Vec<StoredMessage>, StoreError> {
    rows.into_iter().map(message).collect()
}

fn room(row: RoomRow) -> Result<Room, StoreError> {
    let (id, name, created_at) = row;
    Ok(Room {
        id: RoomId::new(id),
        name: text(name)?,
        created_at: Timestamp::from_unix_millis(created_at),
    })
}

#[async_trait]
impl HistoryStore for MySqlStore {
    async fn append(&self, batch: &[StoredMessage]) -> Result<(), StoreError> {
        for m in batch {
            m.validate(self.max_body)?;
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.insert(batch).await.map_err(error)
    }

    async fn page(
        &self,
        room: RoomId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let rows: Vec<MessageRow> = match before {
            Some(before) => {
                let sql = select_messages!("WHERE room_id = ? AND id < ? ORDER BY id DESC LIMIT ?");
                sqlx::query_as(sql)
                    .bind(room.get())
                    .bind(before.get())
                    .bind(sql::limit(limit))
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                let sql = select_messages!("WHERE room_id = ? ORDER BY id DESC LIMIT ?");
                sqlx::query_as(sql)
                    .bind(room.get())
                    .bind(sql::limit(limit))
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(error)?;
        messages(rows)
    }

    async fn after(
        &self,
        room: RoomId,
        after: MessageId,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let sql = select_messages!("WHERE room_id = ? AND id > ? ORDER BY id LIMIT ?");
        let rows: Vec<MessageRow> = sqlx::query_as(sql)
            .bind(room.get())
            .bind(after.get())
            .bind(sql::limit(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(error)?;
        messages(rows)
    }

    async fn count(&self, room: RoomId) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chat_messages WHERE room_id = ?")
            .bind(room.get())
            .fetch_one(&self.pool)
            .await
            .map_err(error)?;
        sql::id(n)
    }

    async fn last_id(&self, room: RoomId) -> Result<Option<MessageId>, StoreError> {
        let max: Option<u64> =
            sqlx::query_scalar("SELECT MAX(id) FROM chat_messages WHERE room_id = ?")
                .bind(room.get())
                .fetch_one(&self.pool)
                .await
                .map_err(error)?;
        Ok(max.map(MessageId::new))
    }

    fn max_body_len(&self) -> usize {
        self.max_body
    }

    async fn ping(&self) -> Result<(), StoreError> {
        ping(&self.pool).await
    }
}

#[async_trait]
impl RoomStore for MySqlStore {
    async fn create_room(&self, name: &str) -> Result<Room, StoreError> {
        validate_room_name(name)?;
        let created_at = Timestamp::now();
        let done = sqlx::query("INSERT INTO chat_rooms (name, created_at) VALUES (?, ?)")
            .bind(name)
            .bind(created_at.unix_millis())
            .execute(&self.pool)
            .await
            .map_err(|e| {
                if is_duplicate(&e) { StoreError::NameTaken(name.to_owned()) } else { error(e) }
            })?;
        Ok(Room { id: RoomId::new(done.last_insert_id()), name: name.to_owned(), created_at })
    }

    async fn room(&self, id: RoomId) -> Result<Option<Room>, StoreError> {
        let row: Option<RoomRow> =
            sqlx::query_as("SELECT id, name, created_at FROM chat_rooms WHERE id = ?")
                .bind(id.get())
                .fetch_optional(&self.pool)
                .await
                .map_err(error)?;
        row.map(room).transpose()
    }

    async fn rooms(&self, after: Option<RoomId>, limit: usize) -> Result<Vec<Room>, StoreError> {
        let rows: Vec<RoomRow> = sqlx::query_as(
            "SELECT id, name, created_at FROM chat_rooms WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(after.map_or(0, RoomId::get))
        .bind(sql::limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(error)?;
        rows.into_iter().map(room).collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        ping(&self.pool).await
    }
}

async fn ping(pool: &MySqlPool) -> Result<(), StoreError> {
    sqlx::query("SELECT 1").execute(pool).await.map(drop).map_err(StoreError::unavailable)
}
