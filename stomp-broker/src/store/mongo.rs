//! History and rooms in MongoDB (the official `mongodb` driver).
//!
//! Written for a standalone server, a replica set or a sharded cluster
//! alike: no transactions, no aggregation pipelines of our own (only the
//! driver's `count_documents`), nothing that depends on the index names a
//! server reports. Every write is idempotent or guarded by a
//! unique index, so two nodes sharing the database need no coordination.
//!
//! # Collections
//! - `chat_messages`: `{_id: "{room}:{seq}", room, seq, sender,
//!   contentType, body (binary), sentAt (date)}` with a unique index on
//!   `{room: 1, seq: 1}`. The deterministic `_id` makes a retried append
//!   store nothing twice: duplicate-key errors of an unordered insert are
//!   success.
//! - `chat_rooms`: `{_id: room id (int64), name, createdAt}` with a unique
//!   index on `name`, which decides who wins when two nodes create the
//!   same name.
//! - `chat_counters`: `{_id: "rooms", next}`, the last room id handed out
//!   (incremented atomically; a value burned by a refused name is skipped).
//! - `chat_schema`: `{_id: "schema", version}`, the last migration applied.

use std::error::Error as StdError;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, DateTime, Document, doc};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Database, IndexModel};

use super::{
    HistoryStore, MessageId, Room, RoomId, RoomStore, StoreError, StoredMessage, Timestamp,
    validate_room_name,
};

/// The database used when the URI names none.
const DEFAULT_DATABASE: &str = "chat";
/// Server selection and connect timeout unless the URI sets its own
/// (`serverSelectionTimeoutMS`, `connectTimeoutMS`): the driver's 30 s
/// default would hold a request that long before a dead server is reported.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

const ROOMS: &str = "chat_rooms";
const MESSAGES: &str = "chat_messages";
const COUNTERS: &str = "chat_counters";
const SCHEMA: &str = "chat_schema";

/// The schema version this build brings a database to (see [`migrate`]).
const SCHEMA_VERSION: i64 = 1;

/// Messages converted and sent per `insert_many` call. The driver splits a
/// call at the server's limits anyway (100,000 documents, 48 MB per
/// command); these bounds keep the converted copy of a large batch small
/// and each call a single command.
const CHUNK_DOCS: usize = 10_000;
/// Body bytes converted per `insert_many` call (a larger message goes
/// alone).
const CHUNK_BYTES: usize = 16 * 1024 * 1024;

/// E11000: a unique index refused a document.
const DUPLICATE_KEY: i32 = 11000;
/// NamespaceExists: `create` of a collection that is there already.
const NAMESPACE_EXISTS: i32 = 48;
/// Server codes after which the same operation can succeed later: the
/// node is shutting down, stepping down or not (yet) primary, or a network
/// failure between the server and another node.
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    189,   // PrimarySteppedDown
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];
/// Labels the server or driver puts on errors worth retrying.
const TRANSIENT_LABELS: &[&str] = &["RetryableWriteError", "SystemOverloadedError"];

/// Rooms and history in MongoDB.
///
/// Cheap to clone (the driver's client is a handle to one pool).
#[derive(Debug, Clone)]
pub struct MongoStore {
    db: Database,
    rooms: Collection<Document>,
    messages: Collection<Document>,
    counters: Collection<Document>,
}

impl MongoStore {
    /// Connects to `uri` (for example
    /// `mongodb://127.0.0.1:27017/chat?directConnection=true`), using the
    /// database the URI's path names, or `chat` when it names none, and
    /// brings its schema up to date.
    ///
    /// Server selection and connecting time out after 5 s unless the URI
    /// says otherwise (`serverSelectionTimeoutMS`, `connectTimeoutMS`), so
    /// a server that is down is reported quickly.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a malformed URI,
    /// [`StoreError::Unavailable`] when the server cannot be reached,
    /// [`StoreError::Backend`] when a migration fails.
    pub async fn connect(uri: &str) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(uri).await.map_err(|e| match *e.kind {
            ErrorKind::InvalidArgument { ref message, .. } => {
                StoreError::Invalid(format!("MongoDB URI: {message}"))
            }
            _ => error(e),
        })?;
        options.server_selection_timeout.get_or_insert(DEFAULT_TIMEOUT);
        options.connect_timeout.get_or_insert(DEFAULT_TIMEOUT);
        options.app_name.get_or_insert_with(|| "stomp-broker".to_owned());
        let database =
            options.default_database.clone().unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        Self::connect_with(options, &database).await
    }

    /// Connects with `options` as given (no timeouts are changed) to the
    /// database `database`, and brings its schema up to date.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_with(options: ClientOptions, database: &str) -> Result<Self, StoreError> {
        let client = Client::with_options(options).map_err(error)?;
        let db = client.database(database);
        let store = Self {
            rooms: db.collection(ROOMS),
            messages: db.collection(MESSAGES),
            counters: db.collection(COUNTERS),
            db,
        };
        migrate(&store.db).await?;
        Ok(store)
    }

    /// The next room id from the counter document. The upsert that
    /// creates the counter can race with another node's and lose with a
    /// duplicate key; the retry then finds the document.
    async fn next_room_id(&self) -> Result<RoomId, StoreError> {
        let mut attempts = 0;
        loop {
            let result = self
                .counters
                .find_one_and_update(doc! { "_id": "rooms" }, doc! { "$inc": { "next": 1_i64 } })
                .upsert(true)
                .return_document(ReturnDocument::After)
                .await;
            match result {
                Ok(Some(counter)) => return Ok(RoomId::new(unsigned(int(&counter, "next")?)?)),
                Ok(None) => {
                    return Err(StoreError::backend("the room counter upsert returned nothing"));
                }
                Err(e) if duplicate_key(&e) && attempts < 3 => attempts += 1,
                Err(e) => return Err(error(e)),
            }
        }
    }

    /// Moves the room counter up to the highest room id stored.
    async fn counter_past_rooms(&self) -> Result<(), StoreError> {
        let highest = self.rooms.find_one(doc! {}).sort(doc! { "_id": -1 }).await.map_err(error)?;
        let Some(highest) = highest else { return Ok(()) };
        let highest = int(&highest, "_id")?;
        tracing::warn!(highest, "MongoDB room counter was behind the rooms; moved past them");
        let update = doc! { "$max": { "next": highest } };
        let bump = self.counters.update_one(doc! { "_id": "rooms" }, update).upsert(true).await;
        match bump {
            Err(e) if !duplicate_key(&e) => Err(error(e)),
            _ => Ok(()),
        }
    }

    /// One chunk of an append: an unordered insert whose duplicate keys
    /// (messages stored before) are not failures.
    async fn insert(&self, chunk: &[StoredMessage]) -> Result<(), StoreError> {
        let docs: Vec<Document> = chunk.iter().map(message_doc).collect::<Result<_, _>>()?;
        match self.messages.insert_many(docs).ordered(false).await {
            Ok(_) => Ok(()),
            Err(e) if only_duplicates(&e) => Ok(()),
            Err(e) => Err(error(e)),
        }
    }

    /// Messages of `room` matching `seq` (a condition on the id), in
    /// `direction` (1 ascending, -1 descending), at most `limit`.
    async fn messages(
        &self,
        room: RoomId,
        seq: Option<Document>,
        direction: i32,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let Ok(room_key) = i64::try_from(room.get()) else { return Ok(Vec::new()) };
        if limit == 0 {
            // MongoDB reads a limit of 0 as "no limit".
            return Ok(Vec::new());
        }
        let mut filter = doc! { "room": room_key };
        if let Some(seq) = seq {
            filter.insert("seq", seq);
        }
        let cursor = self
            .messages
            .find(filter)
            .sort(doc! { "seq": direction })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .map_err(error)?;
        let docs: Vec<Document> = cursor.try_collect().await.map_err(error)?;
        docs.into_iter().map(to_message).collect()
    }

    async fn ping_server(&self) -> Result<(), StoreError> {
        self.db.run_command(doc! { "ping": 1 }).await.map(drop).map_err(error)
    }
}

#[async_trait]
impl HistoryStore for MongoStore {
    async fn append(&self, batch: &[StoredMessage]) -> Result<(), StoreError> {
        let max_body = self.max_body_len();
        // Check everything first, so that a refused message leaves the
        // whole batch unwritten.
        for message in batch {
            message.validate(max_body)?;
            key(message.room.get())?;
            key(message.id.get())?;
        }
        let mut rest = batch;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(chunk_len(rest));
            self.insert(chunk).await?;
            rest = tail;
        }
        Ok(())
    }

    async fn page(
        &self,
        room: RoomId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        // Every stored id fits an i64, so a larger `before` bounds nothing.
        let seq = before.and_then(|b| i64::try_from(b.get()).ok()).map(|b| doc! { "$lt": b });
        self.messages(room, seq, -1, limit).await
    }

    async fn after(
        &self,
        room: RoomId,
        after: MessageId,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        // No stored id is above i64::MAX.
        let Ok(after) = i64::try_from(after.get()) else { return Ok(Vec::new()) };
        self.messages(room, Some(doc! { "$gt": after }), 1, limit).await
    }

    async fn count(&self, room: RoomId) -> Result<u64, StoreError> {
        let Ok(room) = i64::try_from(room.get()) else { return Ok(0) };
        self.messages.count_documents(doc! { "room": room }).await.map_err(error)
    }

    async fn last_id(&self, room: RoomId) -> Result<Option<MessageId>, StoreError> {
        let Ok(room) = i64::try_from(room.get()) else { return Ok(None) };
        let last = self
            .messages
            .find_one(doc! { "room": room })
            .sort(doc! { "seq": -1 })
            .projection(doc! { "_id": 0, "seq": 1 })
            .await
            .map_err(error)?;
        last.map(|d| int(&d, "seq").and_then(unsigned).map(MessageId::new)).transpose()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.ping_server().await
    }
}

#[async_trait]
impl RoomStore for MongoStore {
    async fn create_room(&self, name: &str) -> Result<Room, StoreError> {
        validate_room_name(name)?;
        let mut attempts = 0;
        loop {
            let room = Room {
                id: self.next_room_id().await?,
                name: name.to_owned(),
                created_at: Timestamp::now(),
            };
            let doc = doc! {
                "_id": key(room.id.get())?,
                "name": name,
                "createdAt": DateTime::from_millis(room.created_at.unix_millis()),
            };
            let Err(e) = self.rooms.insert_one(doc).await else { return Ok(room) };
            if !duplicate_key(&e) {
                return Err(error(e));
            }
            // The unique index on the name refused it, unless the counter
            // fell behind the rooms (its document lost or restored from an
            // older backup): then move it past them and try again.
            let taken = self.rooms.find_one(doc! { "name": name }).await.map_err(error)?;
            if taken.is_some() || attempts == 3 {
                return Err(StoreError::NameTaken(name.to_owned()));
            }
            self.counter_past_rooms().await?;
            attempts += 1;
        }
    }

    async fn room(&self, id: RoomId) -> Result<Option<Room>, StoreError> {
        let Ok(id) = i64::try_from(id.get()) else { return Ok(None) };
        let found = self.rooms.find_one(doc! { "_id": id }).await.map_err(error)?;
        found.map(to_room).transpose()
    }

    async fn rooms(&self, after: Option<RoomId>, limit: usize) -> Result<Vec<Room>, StoreError> {
        let filter = match after.map(|a| i64::try_from(a.get())) {
            None => doc! {},
            Some(Ok(after)) => doc! { "_id": { "$gt": after } },
            Some(Err(_)) => return Ok(Vec::new()),
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let cursor = self
            .rooms
            .find(filter)
            .sort(doc! { "_id": 1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .map_err(error)?;
        let docs: Vec<Document> = cursor.try_collect().await.map_err(error)?;
        docs.into_iter().map(to_room).collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.ping_server().await
    }
}

// ===== schema =====

/// Applies the migrations the database has not seen, each recorded in
/// `chat_schema` once done. Every migration is idempotent, so two nodes
/// starting together may both run one; the recorded version only grows.
async fn migrate(db: &Database) -> Result<(), StoreError> {
    let schema: Collection<Document> = db.collection(SCHEMA);
    let current = match schema.find_one(doc! { "_id": "schema" }).await.map_err(error)? {
        Some(d) => int(&d, "version")?,
        None => 0,
    };
    if current > SCHEMA_VERSION {
        tracing::warn!(current, known = SCHEMA_VERSION, "MongoDB schema is newer than this build");
    }
    for version in current + 1..=SCHEMA_VERSION {
        migration(db, version).await?;
        record_version(&schema, version).await?;
        tracing::info!(version, database = db.name(), "MongoDB schema migrated");
    }
    Ok(())
}

/// Migration `version`.
async fn migration(db: &Database, version: i64) -> Result<(), StoreError> {
    match version {
        1 => {
            for name in [ROOMS, MESSAGES, COUNTERS, SCHEMA] {
                match db.create_collection(name).await {
                    Err(e) if command_code(&e) != Some(NAMESPACE_EXISTS) => return Err(error(e)),
                    _ => {}
                }
            }
            let unique =
                |name: &str| IndexOptions::builder().unique(true).name(name.to_owned()).build();
            let by_seq = IndexModel::builder()
                .keys(doc! { "room": 1, "seq": 1 })
                .options(unique("room_seq"))
                .build();
            db.collection::<Document>(MESSAGES).create_index(by_seq).await.map_err(error)?;
            let by_name =
                IndexModel::builder().keys(doc! { "name": 1 }).options(unique("name")).build();
            db.collection::<Document>(ROOMS).create_index(by_name).await.map_err(error)?;
            Ok(())
        }
        _ => Err(StoreError::backend(format!("no MongoDB migration {version}"))),
    }
}

/// Records that `version` is applied, never lowering what another node
/// recorded. The upsert may race with another node's and lose with a
/// duplicate key: the document is there then, so once more updates it.
async fn record_version(schema: &Collection<Document>, version: i64) -> Result<(), StoreError> {
    let record = || {
        schema
            .update_one(doc! { "_id": "schema" }, doc! { "$max": { "version": version } })
            .upsert(true)
    };
    match record().await {
        Err(e) if duplicate_key(&e) => record().await.map(drop).map_err(error),
        other => other.map(drop).map_err(error),
    }
}

// ===== documents =====

/// The `_id` of a message.
fn message_id(room: i64, seq: i64) -> String {
    format!("{room}:{seq}")
}

fn message_doc(m: &StoredMessage) -> Result<Document, StoreError> {
    let (room, seq) = (key(m.room.get())?, key(m.id.get())?);
    Ok(doc! {
        "_id": message_id(room, seq),
        "room": room,
        "seq": seq,
        "sender": m.sender.as_str(),
        "contentType": m.content_type.as_str(),
        "body": Binary { subtype: BinarySubtype::Generic, bytes: m.body.to_vec() },
        "sentAt": DateTime::from_millis(m.sent_at.unix_millis()),
    })
}

/// A message document back (its body moved, not copied).
fn to_message(mut d: Document) -> Result<StoredMessage, StoreError> {
    let body = match d.remove("body") {
        Some(Bson::Binary(b)) => Bytes::from(b.bytes),
        _ => return Err(malformed("body")),
    };
    Ok(StoredMessage {
        room: RoomId::new(unsigned(int(&d, "room")?)?),
        id: MessageId::new(unsigned(int(&d, "seq")?)?),
        sender: string(&mut d, "sender")?,
        content_type: string(&mut d, "contentType")?,
        body,
        sent_at: time(&d, "sentAt")?,
    })
}

fn to_room(mut d: Document) -> Result<Room, StoreError> {
    Ok(Room {
        id: RoomId::new(unsigned(int(&d, "_id")?)?),
        name: string(&mut d, "name")?,
        created_at: time(&d, "createdAt")?,
    })
}

/// An integer field, whichever width the server stored it with.
fn int(d: &Document, field: &str) -> Result<i64, StoreError> {
    match d.get(field) {
        Some(Bson::Int64(n)) => Ok(*n),
        Some(Bson::Int32(n)) => Ok(i64::from(*n)),
        _ => Err(malformed(field)),
    }
}

fn string(d: &mut Document, field: &str) -> Result<String, StoreError> {
    match d.remove(field) {
        Some(Bson::String(s)) => Ok(s),
        _ => Err(malformed(field)),
    }
}

fn time(d: &Document, field: &str) -> Result<Timestamp, StoreError> {
    d.get_datetime(field)
        .map(|t| Timestamp::from_unix_millis(t.timestamp_millis()))
        .map_err(|_| malformed(field))
}

fn malformed(field: &str) -> StoreError {
    StoreError::backend(format!("a stored document has no valid `{field}`"))
}

/// An id as stored (ids above i64::MAX are refused).
fn key(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Invalid(format!("id {n} is above {}", i64::MAX)))
}

/// A stored id back (a negative one is not ours).
fn unsigned(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::backend(format!("negative id {n} in the database")))
}

/// How many of `batch`'s first messages go into one insert: at least one,
/// at most [`CHUNK_DOCS`], and no more than [`CHUNK_BYTES`] of bodies.
fn chunk_len(batch: &[StoredMessage]) -> usize {
    let mut bytes = 0;
    let fitting = batch.iter().take(CHUNK_DOCS).take_while(|m| {
        bytes += m.body.len();
        bytes <= CHUNK_BYTES
    });
    fitting.count().max(1)
}

// ===== errors =====

/// Maps a driver error: transient when retrying can succeed (see
/// [`transient`]), a backend failure otherwise.
fn error(e: MongoError) -> StoreError {
    if transient(&e) { StoreError::unavailable(e) } else { StoreError::backend(e) }
}

/// Whether `e`, or an error it wraps, is a network failure, a server
/// selection timeout, a cleared pool, a state-change code of a node that
/// is stepping down or shutting down, or carries a retryable label.
fn transient(e: &MongoError) -> bool {
    let mut next: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(current) = next {
        if current.downcast_ref::<MongoError>().is_some_and(transient_here) {
            return true;
        }
        next = current.source();
    }
    false
}

fn transient_here(e: &MongoError) -> bool {
    let code = match &*e.kind {
        ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::ServerSelection { .. } => return true,
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        ErrorKind::InsertMany(f) => f.write_concern_error.as_ref().map(|w| w.code),
        _ => None,
    };
    code.is_some_and(|c| TRANSIENT_CODES.contains(&c))
        || TRANSIENT_LABELS.iter().any(|label| e.contains_label(label))
}

/// The code of a command error.
fn command_code(e: &MongoError) -> Option<i32> {
    match &*e.kind {
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// Whether a single write failed on a unique index.
fn duplicate_key(e: &MongoError) -> bool {
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// Whether an unordered insert failed only on documents that are stored
/// already (and its write concern was met).
fn only_duplicates(e: &MongoError) -> bool {
    match &*e.kind {
        ErrorKind::InsertMany(f) => {
            f.write_concern_error.is_none()
                && f.write_errors
                    .as_ref()
                    .is_some_and(|w| w.iter().all(|w| w.code == DUPLICATE_KEY))
        }
        _ => false,
    }
}
