//! The behaviour suite every store runs: the same assertions for the
//! memory, SQLite, MySQL/MariaDB and MongoDB backends.
//!
//! A test file provides an async `open(name)` that returns a fresh, empty
//! store (and a way to remove it afterwards) and calls [`suite!`] with it;
//! each case below then becomes one `#[tokio::test]` of that file.
#![allow(dead_code, unreachable_pub, clippy::missing_panics_doc)]

pub mod switch;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use stomp_broker::store::{
    HistoryStore, HistoryWriter, MessageId, RoomId, RoomStore, StoreError, StoredMessage,
    Timestamp, WriterConfig,
};

/// What a backend's `open` returns: the store, and how to remove what it
/// created once the case is done.
pub struct Fixture<S> {
    pub store: Arc<S>,
    pub cleanup: Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl<S> Fixture<S> {
    pub fn new(store: S) -> Self {
        Self { store: Arc::new(store), cleanup: None }
    }

    pub fn with_cleanup(mut self, cleanup: impl Future<Output = ()> + Send + 'static) -> Self {
        self.cleanup = Some(Box::pin(cleanup));
        self
    }

    pub async fn finish(self) {
        drop(self.store);
        if let Some(cleanup) = self.cleanup {
            cleanup.await;
        }
    }
}

/// Generates one test per case for a backend. `$open` is an async fn
/// taking the case's name (unique per file, usable in a database name) and
/// returning a [`Fixture`].
#[allow(unused_macros)] // store_writer.rs uses the helpers only
macro_rules! suite {
    ($open:path) => {
        suite!(@cases $open;
            rooms_get_and_list,
            room_names_are_unique,
            room_names_race,
            room_names_validated,
            empty_room_reads,
            page_newest_first,
            after_for_resume,
            rooms_keep_their_own_messages,
            append_is_idempotent,
            unicode_and_korean,
            one_mib_bodies,
            concurrent_writers_one_room,
            large_batch,
            large_ids,
            writer_reads_through_and_flushes,
        );
    };
    (@cases $open:path; $($case:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $open(stringify!($case)).await;
                store_suite::$case(&fixture.store).await;
                fixture.finish().await;
            }
        )*
    };
}

/// A message with a body naming it.
pub fn message(room: RoomId, id: u64) -> StoredMessage {
    StoredMessage {
        room,
        id: MessageId::new(id),
        sender: format!("user{}", id % 7),
        content_type: "application/json".to_owned(),
        body: Bytes::from(format!(r#"{{"text":"message {id} in room {room}"}}"#)),
        sent_at: Timestamp::from_unix_millis(
            1_764_000_000_000 + i64::try_from(id % 1_000_000).unwrap(),
        ),
    }
}

pub fn messages(room: RoomId, ids: impl IntoIterator<Item = u64>) -> Vec<StoredMessage> {
    ids.into_iter().map(|id| message(room, id)).collect()
}

fn ids(messages: &[StoredMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.id.get()).collect()
}

/// Every message of `room`, oldest first, read page by page with `after`.
pub async fn read_all<S: HistoryStore + ?Sized>(
    store: &S,
    room: RoomId,
    page: usize,
) -> Vec<StoredMessage> {
    let mut all = Vec::new();
    let mut cursor = MessageId::new(0);
    loop {
        let batch = store.after(room, cursor, page).await.expect("after");
        assert!(batch.len() <= page, "after returned {} > limit {page}", batch.len());
        let Some(last) = batch.last() else { break };
        cursor = last.id;
        all.extend(batch);
    }
    all
}

pub async fn rooms_get_and_list<S: HistoryStore + RoomStore>(store: &Arc<S>) {
    let before = Timestamp::now().unix_millis();
    let a = store.create_room("general").await.expect("create general");
    let b = store.create_room("random").await.expect("create random");
    let c = store.create_room("잡담").await.expect("create 잡담");
    let after = Timestamp::now().unix_millis();
    assert!(a.id < b.id && b.id < c.id, "ids increase in creation order: {a:?} {b:?} {c:?}");
    assert_eq!((a.name.as_str(), b.name.as_str(), c.name.as_str()), ("general", "random", "잡담"));
    assert!(
        (before - 1000..=after + 1000).contains(&a.created_at.unix_millis()),
        "created_at {:?} is now",
        a.created_at
    );

    assert_eq!(store.room(b.id).await.expect("get"), Some(b.clone()));
    assert_eq!(store.room(c.id).await.expect("get"), Some(c.clone()));
    assert_eq!(store.room(RoomId::new(c.id.get() + 1000)).await.expect("get unknown"), None);

    let all = store.rooms(None, 100).await.expect("list");
    assert_eq!(all, vec![a.clone(), b.clone(), c.clone()]);
    assert_eq!(store.rooms(None, 2).await.expect("list 2"), vec![a.clone(), b.clone()]);
    assert_eq!(store.rooms(Some(a.id), 1).await.expect("list after a"), vec![b.clone()]);
    assert_eq!(store.rooms(Some(c.id), 10).await.expect("list after c"), vec![]);
    assert_eq!(store.rooms(None, 0).await.expect("list 0"), vec![]);
    RoomStore::ping(&**store).await.expect("ping");
}

pub async fn room_names_are_unique<S: HistoryStore + RoomStore>(store: &Arc<S>) {
    let first = store.create_room("general").await.expect("create");
    match store.create_room("general").await {
        Err(StoreError::NameTaken(name)) => assert_eq!(name, "general"),
        other => panic!("a second 'general' must be NameTaken, got {other:?}"),
    }
    // Byte-exact: case and accents make another name.
    store.create_room("General").await.expect("'General' differs from 'general'");
    store.create_room("généraL").await.expect("accented name");
    store.create_room("일반").await.expect("Korean name");
    assert!(matches!(store.create_room("일반").await, Err(StoreError::NameTaken(_))));
    let listed = store.rooms(None, 100).await.expect("list");
    assert_eq!(listed.len(), 4, "the refused creations left no room: {listed:?}");
    assert_eq!(listed[0], first);
}

pub async fn room_names_race<S: HistoryStore + RoomStore>(store: &Arc<S>) {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(store);
            tokio::spawn(async move { store.create_room("race").await })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(room) => {
                assert_eq!(room.name, "race");
                won += 1;
            }
            Err(StoreError::NameTaken(_)) => {}
            Err(other) => panic!("a lost race must be NameTaken, got {other:?}"),
        }
    }
    assert_eq!(won, 1, "exactly one concurrent create of a name succeeds");
    assert_eq!(store.rooms(None, 100).await.expect("list").len(), 1);
}

pub async fn room_names_validated<S: HistoryStore + RoomStore>(store: &Arc<S>) {
    let long = "가".repeat(34); // 102 bytes
    for bad in ["", " padded", "padded ", "new\nline", "tab\there", long.as_str()] {
        match store.create_room(bad).await {
            Err(StoreError::Invalid(why)) => assert!(!why.is_empty()),
            other => panic!("room name {bad:?} must be Invalid, got {other:?}"),
        }
    }
    let longest = "a".repeat(100);
    store.create_room(&longest).await.expect("100 bytes is allowed");
    assert_eq!(store.rooms(None, 10).await.expect("list").len(), 1);
}

pub async fn empty_room_reads<S: HistoryStore + RoomStore>(store: &Arc<S>) {
    let room = RoomId::new(7);
    assert_eq!(store.count(room).await.expect("count"), 0);
    assert_eq!(store.last_id(room).await.expect("last_id"), None);
    assert!(store.page(room, None, 10).await.expect("page").is_empty());
    assert!(store.after(room, MessageId::new(0), 10).await.expect("after").is_empty());
    store.append(&[]).await.expect("an empty batch is fine");
    HistoryStore::ping(&**store).await.expect("ping");
}

pub async fn page_newest_first<S: HistoryStore + RoomStore>(store: &Arc<S>) {
    let room = RoomId::new(1);
    store.append(&messages(room, 1..=250)).await.expect("append");
    assert_eq!(store.count(room).await.expect("count"), 250);
    assert_eq!(store.last_id(room).await.expect("last"), Some(MessageId::new(250)));

    let first = store.page(room, None, 100).await.expect("page 1");
    assert_eq!(ids(&first), (151..=250).rev().collect::<Vec<_>>());
    let second = store.page(room, Some(first[99].id), 100).await.expect("page 2");
    assert_eq!(ids(&second), (51..=150).rev().collect::<Vec<_>>());
    let third = store.page(room, Some(second[99].id), 100).await.expect("page 3");
    assert_eq!(ids(&third), (1..=50).rev().collect::<Vec<_>>(), "a short last page");
    let past = store.page(room, Some(MessageId::new(1)), 100).await.expect("before the first");
    assert!(past.is_empty());

    // `before` need not be a stored id.
    let above = store.page(room, Some(MessageId::new(10_000)), 3).await.expect("above all");
    assert_eq!(ids(&above), vec![250, 249, 248]);
    let exact = store.page(room, Some(MessageId::new(3)), 10).await.expect("before 3");
    assert_eq!(ids(&exact), vec![2, 1]);
    assert!(store.page(room, None, 0).await.expect("limit 0").is_empty());
    assert_eq!(first[0], message(room, 250), "a page returns whole messages");
}

pub async fn after_for_resume<S: HistoryStore + RoomStore>(store: &Arc<S>) {
    let room = RoomId::new(2);
    // Appended in three batches; a batch may also skip ids.
    store.append(&messages(room, 1..=100)).await.expect("append 1");
    store.append(&messages(room, 101..=200)).await.expect("append 2");
    store.append(&messages(room, [205, 210, 300])).await.expect("append 3");

    let start = store.after(room, MessageId::new(0), 100).await.expect("from the start");
    assert_eq!(ids(&start), (1..=100).collect::<Vec<_>>());
    let next = store.after(room, MessageId::new(100), 100).await.expect("after 100");
    assert_eq!(ids(&next), (101..=200).collect::<Vec<_>>());
    let gap = store.after(room, MessageId::new(200), 100).await.expect("after 200");
    assert_eq!(ids(&gap), vec![205, 210, 300]);
    let between = store.after(room, MessageId::new(206), 100).await.expect("after 206");
    assert_eq!(ids(&between), vec![210, 300], "an id that was never stored is a fine cursor");
    assert!(store.after(room, MessageId::new(300), 100).await.expect("after last").is_empty());
    let one = store.after(room, MessageId::new(299), 100).await.expect("after 299");
    assert_eq!(one, vec![message(room, 300)]);

    let all = read_all(&**store, room, 7).await;
    assert_eq!(all.len(), 203);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "strictly increasing");
}

pub async fn rooms_keep_their_own_messages<S: HistoryStore + RoomStore>(store: &Arc<S>) {
    let (a, b, c) = (RoomId::new(10), RoomId::new(11), RoomId::new(12));
    // One batch interleaving three rooms, ids overlapping between rooms.
    let mut batch = Vec::new();
    for id in 1..=30 {
        batch.push(message(a, id));
        if id % 2 == 0 {
            batch.push(message(b, id));
        }
        if id % 3 == 0 {
            batch.push(message(c, id));
        }
    }
    store.append(&batch).await.expect("append");
    assert_eq!(store.count(a).await.expect("count a"), 30);
    assert_eq!(store.count(b).await.expect("count b"), 15);
    assert_eq!(store.count(c).await.expect("count c"), 10);
    let page = store.page(b, None, 100).await.expect("page b");
    assert_eq!(ids(&page), (1..=15).rev().map(|i| i * 2).collect::<Vec<_>>());
    assert!(page.iter().all(|m| m.room == b));
    assert_eq!(page[0], message(b, 30));
    let resumed = store.after(c, MessageId::new(10), 100).await.expect("after c");
    assert_eq!(ids(&resumed), vec![12, 15, 18, 21, 24, 27, 30]);
    assert_eq!(store.last_id(c).await.expect("last c"), Some(MessageId::new(30)));
    assert_eq!(store.count(RoomId::new(13)).await.expect("count other"), 0);
}

pub async fn append_is_idempotent<S: HistoryStore + RoomStore>(store: &Arc<S>) {
    let room = RoomId::new(3);
    store.append(&messages(room, 1..=50)).await.expect("append");
    // A retry of the same batch, and one overlapping it: nothing twice,
    // and a stored message is not changed by a second write of its id.
    store.append(&messages(room, 1..=50)).await.expect("retry");
    let mut overlap = messages(room, 40..=60);
    for m in &mut overlap {
        m.body = Bytes::from_static(b"rewritten");
    }
    store.append(&overlap).await.expect("overlapping batch");
    assert_eq!(store.count(room).await.expect("count"), 60);
    let all = read_all(&**store, room, 100).await;
    assert_eq!(ids(&all), (1..=60).collect::<Vec<_>>());
    assert_eq!(all[44], message(room, 45), "the first write of an id wins");
    assert_eq!(all[59].body, Bytes::from_static(b"rewritten"), "new ids of the batch stored");
}

pub async fn unicode_and_korean<S: HistoryStore + RoomStore>(store: &Arc<S>) {
    let room = store.create_room("한국어 방 🇰🇷").await.expect("create").id;
    let texts = [
        "안녕하세요, 반갑습니다!",
        "emoji 😀🎉👍🏽 and ZWJ 👩‍👩‍👧",
        "mixed: 日本語, العربية, עברית, Ελληνικά",
        "quotes \" ' \\ and nul-free control \u{7f}",
    ];
    let sent: Vec<StoredMessage> = texts
        .iter()
        .zip(1..)
        .map(|(text, id)| StoredMessage {
            room,
            id: MessageId::new(id),
            sender: "김철수".to_owned(),
            content_type: "application/json; charset=utf-8".to_owned(),
            body: Bytes::from(format!(r#"{{"text":"{text}"}}"#)),
            sent_at: Timestamp::from_unix_millis(1_764_000_123_456),
        })
        .collect();
    store.append(&sent).await.expect("append");
    let got = read_all(&**store, room, 10).await;
    assert_eq!(got, sent, "every byte of sender and body survives");
    let room_back = store.room(room).await.expect("get").expect("exists");
    assert_eq!(room_back.name, "한국어 방 🇰🇷");
}

pub async fn one_mib_bodies<S: HistoryStore + RoomStore>(store: &Arc<S>) {
    let room = RoomId::new(4);
    let bodies: Vec<Bytes> = (0u8..3)
        .map(|seed| {
            // Not UTF-8, with NUL bytes: bodies are bytes.
            let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
            Bytes::from(
                (0..1024 * 1024)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x.to_le_bytes()[0]
                    })
                    .collect::<Vec<u8>>(),
            )
        })
        .collect();
    let sent: Vec<StoredMessage> = bodies
        .iter()
        .zip(1..)
        .map(|(body, id)| StoredMessage {
            content_type: "application/octet-stream".to_owned(),
            body: body.clone(),
            ..message(room, id)
        })
        .collect();
    store.append(&sent).await.expect("append 3 MiB in one batch");
    let got = read_all(&**store, room, 2).await;
    assert_eq!(got.len(), 3);
    for (got, sent) in got.iter().zip(&sent) {
        assert_eq!(got.body.len(), 1024 * 1024);
        assert!(got == sent, "message {} differs after the round trip", sent.id);
    }
    let newest = store.page(room, None, 1).await.expect("page");
    assert_eq!(newest[0].body, sent[2].body);
}

pub async fn concurrent_writers_one_room<S: HistoryStore + RoomStore>(store: &Arc<S>) {
    const WRITERS: u64 = 8;
    const EACH: u64 = 250;
    let room = RoomId::new(5);
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                // Writer w owns ids w+1, w+1+WRITERS, ...: interleaved ids.
                let ids: Vec<u64> = (0..EACH).map(|i| i * WRITERS + w + 1).collect();
                for chunk in ids.chunks(50) {
                    store.append(&messages(room, chunk.iter().copied())).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    let total = WRITERS * EACH;
    assert_eq!(store.count(room).await.expect("count"), total);
    let all = read_all(&**store, room, 333).await;
    assert_eq!(ids(&all), (1..=total).collect::<Vec<_>>(), "every id once, in order");
    assert!(all.iter().all(|m| *m == message(room, m.id.get())));
    let newest = store.page(room, None, 5).await.expect("page");
    assert_eq!(ids(&newest), vec![total, total - 1, total - 2, total - 3, total - 4]);
}

pub async fn large_batch<S: HistoryStore + RoomStore>(store: &Arc<S>) {
    let room = RoomId::new(6);
    // More rows than one SQL statement takes placeholders for.
    store.append(&messages(room, 1..=12_000)).await.expect("append 12,000 in one call");
    assert_eq!(store.count(room).await.expect("count"), 12_000);
    let all = read_all(&**store, room, 5_000).await;
    assert_eq!(all.len(), 12_000);
    assert!(all.windows(2).all(|w| w[0].id.get() + 1 == w[1].id.get()));
}

pub async fn large_ids<S: HistoryStore + RoomStore>(store: &Arc<S>) {
    // Above 2^53 (where JSON numbers lose precision) and near i64::MAX.
    let room = RoomId::new((1 << 53) + 1);
    let top = u64::try_from(i64::MAX).unwrap();
    let big = [(1 << 53) + 1, (1 << 53) + 2, top - 1, top];
    store.append(&messages(room, big)).await.expect("append");
    assert_eq!(ids(&store.after(room, MessageId::new(0), 10).await.expect("after")), big);
    assert_eq!(store.last_id(room).await.expect("last"), Some(MessageId::new(top)));
    let below = store.page(room, Some(MessageId::new(top)), 10).await.expect("page");
    assert_eq!(ids(&below), vec![top - 1, (1 << 53) + 2, (1 << 53) + 1]);
}

pub async fn writer_reads_through_and_flushes<S: HistoryStore + RoomStore>(store: &Arc<S>) {
    let room = RoomId::new(8);
    let dyn_store: Arc<dyn HistoryStore> = Arc::clone(store) as Arc<dyn HistoryStore>;
    let mut config = WriterConfig::default();
    config.max_batch = 300;
    config.linger = Duration::from_millis(20);
    let writer = HistoryWriter::spawn(dyn_store, config);
    for id in 1..=2_000 {
        writer.append(message(room, id)).expect("buffer has room");
    }
    // Whatever has been written by now, reads through the writer see all.
    let all: Vec<u64> = {
        let mut seen = Vec::new();
        let mut cursor = MessageId::new(0);
        loop {
            let batch = writer.after(room, cursor, 450).await.expect("after");
            let Some(last) = batch.last() else { break };
            cursor = last.id;
            seen.extend(ids(&batch));
        }
        seen
    };
    assert_eq!(all, (1..=2_000).collect::<Vec<_>>());
    let newest = writer.page(room, None, 3).await.expect("page");
    assert_eq!(ids(&newest), vec![2_000, 1_999, 1_998]);
    assert_eq!(writer.last_id(room).await.expect("last"), Some(MessageId::new(2_000)));

    tokio::time::timeout(Duration::from_secs(30), writer.flush()).await.expect("flushed");
    let stats = writer.stats();
    assert_eq!((stats.accepted, stats.written, stats.buffered), (2_000, 2_000, 0));
    assert!(stats.batches >= 7, "at most 300 per batch: {stats:?}");
    assert_eq!(store.count(room).await.expect("count"), 2_000);
    let stored: BTreeSet<u64> = ids(&read_all(&**store, room, 1_000).await).into_iter().collect();
    assert_eq!(stored.len(), 2_000);
    writer.close(Duration::from_secs(5)).await.expect("close");
}
