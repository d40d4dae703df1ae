//! Several chat-server processes as one service: two nodes sharing Redis
//! (backplane and ids), MariaDB (rooms) and the MongoDB stand-in
//! (history) see the same rooms, messages and history; a node restarted
//! while the other keeps posting loses no message that got a RECEIPT; a
//! node whose history writer still holds messages when SIGTERM comes
//! writes every receipted one before it exits; and a node stops
//! gracefully on a SIGTERM right after its ready line.

mod support;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use stomp_codec::{Command, Frame};
use support::chat::{assert_increasing, history_all, ids, race, texts};
use support::proxy::Proxy;
use support::services::{MONGODB_ADDR, MariaDb, MongoDb, REDIS_URL, RedisPrefix};
use support::stomp::{RecvError, chat_of};
use support::{
    ChatMessage, Client, Node, Rest, Server, Transport, WAIT, chat_body, eventually, unique,
};

/// A Redis prefix, a MariaDB database and a MongoDB database of this test.
struct Cluster {
    redis: RedisPrefix,
    mariadb: MariaDb,
    mongodb: MongoDb,
}

impl Cluster {
    fn new() -> Self {
        Self { redis: RedisPrefix::new(), mariadb: MariaDb::new(), mongodb: MongoDb::new() }
    }

    /// A node of the cluster (its own data directory, ephemeral ports).
    fn node(&self) -> Node {
        Node::new()
            .flag("--redis-url", REDIS_URL)
            .flag("--redis-prefix", self.redis.prefix.clone())
            .flag("--mysql-url", self.mariadb.url())
            .flag("--mongodb-url", self.mongodb.url())
            .flag("--shutdown-timeout", "5")
    }
}

/// Both nodes' whole history of `room`, once both hold every text of
/// `expected` and agree (polled for at most [`WAIT`]); asserts that they
/// come to that.
async fn same_history(one: &Rest, two: &Rest, room: &str, expected: &[String]) -> Vec<ChatMessage> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let from_one = history_all(one, room).await;
        let from_two = history_all(two, room).await;
        let stored = texts(&from_one);
        let missing: Vec<&String> = expected.iter().filter(|text| !stored.contains(text)).collect();
        if missing.is_empty() && from_one == from_two {
            return from_one;
        }
        if tokio::time::Instant::now() >= deadline {
            assert!(
                missing.is_empty(),
                "receipted messages missing from history after {WAIT:?}: {missing:?}"
            );
            assert_eq!(ids(&from_one), ids(&from_two), "the two nodes serve different histories");
            assert_eq!(from_one, from_two, "the two nodes serve different histories");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn two_nodes_share_rooms_messages_and_history() {
    let cluster = Cluster::new();
    let one = cluster.node().start().await;
    let two = cluster.node().start().await;
    for server in [&one, &two] {
        let ready = server.rest().get("/readyz").await.expect_json(200);
        assert_eq!(ready["status"], "ready", "{ready}");
    }

    let rooms_two: Vec<Value> =
        two.rest().get("/api/rooms").await.expect_json(200).as_array().cloned().unwrap_or_default();
    let generals = rooms_two.iter().filter(|room| room["name"] == "general").count();
    assert_eq!(generals, 1, "one room \"general\" for the cluster: {rooms_two:?}");

    let mut bob = Client::connect(&two, Transport::Ws, "bob").await;
    bob.subscribe("/topic/rooms", "rooms").await;
    let room = one.rest().create_room(&unique("shared")).await;
    let id = room["id"].as_str().expect("room id").to_owned();
    assert_eq!(two.rest().get(&format!("/api/rooms/{id}")).await.expect_json(200), room);
    let announced = bob.next_message().await;
    assert_eq!(
        serde_json::from_slice::<Value>(announced.body()).expect("room JSON"),
        room,
        "announced on node 2"
    );

    let mut alice = Client::connect(&one, Transport::Tcp, "alice").await;
    alice.join(&id, "a").await;
    bob.join(&id, "b").await;
    alice.say(&id, "hello from node 1").await;
    bob.say(&id, "hello from node 2").await;
    let seen_by_alice = alice.next_chats(2).await;
    let seen_by_bob = bob.next_chats(2).await;
    assert_eq!(seen_by_alice, seen_by_bob, "both users see the same messages, ids and order");
    let pairs: Vec<(&str, &str)> =
        seen_by_bob.iter().map(|m| (m.sender.as_str(), m.text.as_str())).collect();
    assert_eq!(pairs, [("alice", "hello from node 1"), ("bob", "hello from node 2")]);
    assert_increasing("cluster", &seen_by_bob);

    let history = same_history(&one.rest(), &two.rest(), &id, &texts(&seen_by_bob)).await;
    assert_eq!(history, seen_by_bob);
}

#[tokio::test]
async fn concurrent_senders_on_two_nodes_are_seen_in_id_order_everywhere() {
    const N: usize = 40;
    let cluster = Cluster::new();
    let one = cluster.node().start().await;
    let two = cluster.node().start().await;
    let room = one.rest().create_room_id(&unique("race")).await;
    let mut reader_one = Client::connect(&one, Transport::Tcp, "reader1").await;
    let mut reader_two = Client::connect(&two, Transport::Ws, "reader2").await;
    reader_one.join(&room, "r").await;
    reader_two.join(&room, "r").await;
    let mut alice = Client::connect(&one, Transport::Tcp, "alice").await;
    let mut bob = Client::connect(&two, Transport::Tcp, "bob").await;
    let (got_one, got_two) =
        race(&room, N, (&mut alice, &mut bob), (&mut reader_one, &mut reader_two)).await;

    let expected: Vec<String> = got_one.iter().map(|m| m.text.clone()).collect();
    let history = same_history(&one.rest(), &two.rest(), &room, &expected).await;
    assert_eq!(history.len(), 2 * N, "history: {:?}", ids(&history));
    assert_increasing("history", &history);
    assert_increasing("live on node 1", &got_one);
    assert_increasing("live on node 2", &got_two);
    assert_eq!(ids(&got_one), ids(&got_two), "the two nodes deliver in different orders");
    assert_eq!(got_one, history);
}

/// What the concurrent parts of the restart test share.
#[derive(Default)]
struct Shared {
    /// Texts that got a RECEIPT, from every sender.
    receipted: RefCell<Vec<String>>,
    /// Receipts of the sender on node 1.
    on_one: Cell<usize>,
    /// Receipts of the first sender on node 2.
    on_two: Cell<usize>,
    stop: Cell<bool>,
    senders_done: Cell<usize>,
}

impl Shared {
    fn receipt(&self, text: String, counter: &Cell<usize>) {
        self.receipted.borrow_mut().push(text);
        counter.set(counter.get() + 1);
    }
}

/// Posts `{prefix}{i}` with receipts, every 2 ms, until told to stop or
/// the connection is lost.
async fn keep_sending(
    mut client: Client,
    room: &str,
    prefix: &str,
    shared: &Shared,
    counter: &Cell<usize>,
) {
    let mut i = 0;
    while !shared.stop.get() {
        let text = format!("{prefix}{i}");
        if client.try_say(room, &text).await.is_err() {
            break;
        }
        shared.receipt(text, counter);
        i += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    shared.senders_done.set(shared.senders_done.get() + 1);
}

async fn wait_until(what: &str, limit: Duration, condition: impl Fn() -> bool) {
    eventually(what, limit, || {
        let met = condition();
        async move { met.then_some(()) }
    })
    .await;
}

/// Restarts node 2 once both senders got ten receipts; posts ten messages
/// on the restarted node; stops everything once node 1's sender got ten
/// more receipts. Returns the restarted node.
async fn restart_two(two: Server, room: &str, shared: &Shared) -> Server {
    let enough = || shared.on_one.get() >= 10 && shared.on_two.get() >= 10;
    wait_until("both senders got ten receipts", WAIT, enough).await;
    let node = two.node.clone();
    two.stop_clean().await;
    let two = node.start().await;
    let mut carol = Client::connect(&two, Transport::Ws, "carol").await;
    for i in 0..10 {
        let text = format!("three-{i}");
        carol.say(room, &text).await;
        shared.receipted.borrow_mut().push(text);
    }
    let target = shared.on_one.get() + 10;
    wait_until("node 1's sender got ten more receipts", WAIT, || shared.on_one.get() >= target)
        .await;
    shared.stop.set(true);
    two
}

/// Reads the room on `watcher` until the senders are done and every
/// receipted message came.
async fn watch(mut watcher: Client, shared: &Shared) -> Vec<ChatMessage> {
    let mut got = Vec::new();
    let mut seen = HashSet::new();
    let mut deadline = None;
    loop {
        if shared.senders_done.get() == 2 && shared.stop.get() {
            if shared.receipted.borrow().iter().all(|text| seen.contains(text)) {
                return got;
            }
            let limit = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + WAIT);
            assert!(
                tokio::time::Instant::now() < limit,
                "the watcher on node 1 missed receipted messages"
            );
        }
        match watcher.try_recv(Duration::from_millis(100)).await {
            Ok(frame) => {
                let message = chat_of(&frame);
                seen.insert(message.text.clone());
                got.push(message);
            }
            Err(RecvError::Timeout) => {}
            Err(RecvError::Closed) => panic!("the watcher on node 1 was disconnected"),
        }
    }
}

#[tokio::test]
async fn a_restarted_node_loses_no_receipted_message() {
    let cluster = Cluster::new();
    let one = cluster.node().start().await;
    let two = cluster.node().start().await;
    let room = one.rest().create_room_id(&unique("restart")).await;
    let mut watcher = Client::connect(&one, Transport::Tcp, "watcher").await;
    watcher.join(&room, "w").await;
    let alice = Client::connect(&one, Transport::Tcp, "alice").await;
    let bob = Client::connect(&two, Transport::Tcp, "bob").await;
    let shared = Shared::default();

    let ((), (), two, watched) = tokio::join!(
        keep_sending(alice, &room, "one-", &shared, &shared.on_one),
        keep_sending(bob, &room, "two-", &shared, &shared.on_two),
        restart_two(two, &room, &shared),
        watch(watcher, &shared),
    );

    let receipted = shared.receipted.take();
    let history = same_history(&one.rest(), &two.rest(), &room, &receipted).await;
    assert_increasing("history", &history);
    let stored = texts(&history);
    for text in &receipted {
        let copies = stored.iter().filter(|t| *t == text).count();
        assert_eq!(copies, 1, "receipted message {text:?} is {copies} times in history");
    }
    let unique_texts: HashSet<&String> = stored.iter().collect();
    assert_eq!(unique_texts.len(), stored.len(), "a message stored twice: {stored:?}");

    let live_ids: HashSet<u64> = ids(&watched).into_iter().collect();
    let unseen: Vec<(&ChatMessage, bool)> = history
        .iter()
        .filter(|m| !live_ids.contains(&m.id))
        .map(|m| (m, receipted.contains(&m.text)))
        .collect();
    assert!(
        unseen.is_empty(),
        "in history, never delivered to a live subscriber on node 1 (message, got a RECEIPT): {unseen:?}"
    );
    assert_eq!(
        live_ids.len(),
        watched.len(),
        "a live subscriber on node 1 got duplicates: {:?}",
        ids(&watched)
    );
    assert_increasing("live on node 1, messages of both nodes", &watched);
}

/// Pipelines `count` SENDs with receipts to `room` (texts `{tag}-{i}`),
/// then waits for every RECEIPT; returns the texts.
async fn pipelined(client: &mut Client, room: &str, tag: &str, count: usize) -> Vec<String> {
    let texts: Vec<String> = (0..count).map(|i| format!("{tag}-{i}")).collect();
    for text in &texts {
        let frame = Frame::new(Command::Send)
            .with_header("destination", format!("/app/rooms.{room}"))
            .with_header("receipt", text.clone())
            .with_body(chat_body(text));
        client.send(&frame).await;
    }
    for text in &texts {
        let receipt = client.recv().await;
        assert_eq!(receipt.command(), Command::Receipt, "{receipt:?}");
        assert_eq!(receipt.header_str("receipt-id"), Some(text.as_str()));
    }
    texts
}

#[tokio::test]
async fn sigterm_flushes_every_receipted_message() {
    const N: usize = 300;
    // History in the MongoDB stand-in, through a proxy that the test
    // pauses: the receipted messages are certainly still in the writer's
    // buffer when SIGTERM comes, and the database answers again only two
    // seconds later. A shutdown that did not wait for the flush would be
    // gone by then, and the messages with it.
    let mongodb = MongoDb::new();
    let proxy = Proxy::start(MONGODB_ADDR.parse().expect("MongoDB address")).await;
    let url = format!("mongodb://{}/{}?directConnection=true", proxy.addr, mongodb.name);
    let node = Node::new().flag("--mongodb-url", url).flag("--max-frame-rate", "0");
    let server = node.start().await;
    let rest = server.rest();
    let room = rest.create_room_id(&unique("flush")).await;
    let mut one = Client::connect(&server, Transport::Tcp, "flusher1").await;
    let mut two = Client::connect(&server, Transport::Ws, "flusher2").await;
    let mut receipted = pipelined(&mut one, &room, "before", 10).await;
    let written = || async {
        let status = rest.get("/api/status").await.expect_json(200);
        (status["history"]["buffered"] == 0).then_some(())
    };
    eventually("the first messages are written", WAIT, written).await;

    proxy.pause();
    let (a, b) =
        tokio::join!(pipelined(&mut one, &room, "one", N), pipelined(&mut two, &room, "two", N));
    receipted.extend(a.into_iter().chain(b));
    let status = rest.get("/api/status").await.expect_json(200);
    let buffered = status["history"]["buffered"].as_u64().expect("history.buffered");
    assert!(buffered >= 2 * N as u64, "not all receipted messages wait in the buffer: {status}");
    // Without sessions to close the rest of the shutdown takes moments; the
    // flush alone must keep the server up until the database is back.
    drop((one, two));
    let (exited, ()) = tokio::join!(server.stop(), async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        proxy.resume();
    });
    assert!(exited.status.success(), "SIGTERM did not end in exit 0: {exited}");

    let server = node.start().await;
    let history = history_all(&server.rest(), &room).await;
    let mut stored = texts(&history);
    stored.sort();
    receipted.sort();
    assert_eq!(stored, receipted, "history after SIGTERM and a restart (sorted texts)");
    assert_increasing("history", &history);
}

#[tokio::test]
async fn sigterm_right_after_the_ready_line_exits_0() {
    // The ready line says the server is up: from then on, SIGTERM must be
    // a graceful stop (exit 0), however soon it comes.
    for round in 0..50 {
        let server = Node::new().start().await;
        let exited = server.stop().await;
        assert!(
            exited.status.success(),
            "round {round}: SIGTERM right after the ready line: {exited}"
        );
    }
}
