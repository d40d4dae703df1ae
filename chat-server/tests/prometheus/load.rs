//! The small load the monitoring test puts on two nodes: once, a scenario
//! that touches every kind of metric (a room created, subscribers on both
//! nodes, posts over TCP and WebSocket, a resume, a refused post, an ERROR,
//! REST calls with 2xx and 4xx answers); then, until told to stop, a
//! trickle of posts in bursts of varying size, REST calls, short sessions
//! and again the resume, refused post and ERROR now and then, so that the
//! rates have something to show while Prometheus watches.

use std::time::Duration;

use serde_json::json;
use stomp_codec::Command;
use support::stomp::{RecvError, assert_error_mentions, send_frame, subscribe_frame};
use support::{Client, Rest, Server, Transport, chat_body, unique};
use tokio_util::sync::CancellationToken;

use crate::support;

/// The room every node has (`general`, made at first start).
const GENERAL: &str = "1";

/// A room id no node has.
const NO_SUCH_ROOM: &str = "987654";

/// The pause between two rounds of the trickle.
const ROUND: Duration = Duration::from_millis(200);

/// What the scenario left running for the trickle, and what it used that
/// must never show up in a label value.
#[derive(Debug)]
pub(crate) struct Scenario {
    room: String,
    room_name: String,
}

impl Scenario {
    /// Runs the one-off part of the load on `one` and `two`.
    pub(crate) async fn run(one: &Server, two: &Server) -> Self {
        let room_name = unique("metrics");
        let room = one.rest().create_room_id(&room_name).await;
        rest_calls(&one.rest(), &room).await;

        let mut alice = Client::connect(one, Transport::Tcp, "alice-mon").await;
        for text in ["first", "second", "third"] {
            alice.say(&room, text).await;
        }
        alice.disconnect().await;
        let scenario = Self { room, room_name };
        scenario.troubles(one, two).await;
        scenario
    }

    /// A resume (of the room the scenario made: its three messages), a
    /// refused post and an ERROR for an unknown room.
    async fn troubles(&self, one: &Server, two: &Server) {
        let mut carol = Client::connect(one, Transport::Tcp, "carol-mon").await;
        let topic = format!("/topic/rooms.{}", self.room);
        carol.subscribe_with(&topic, "resumed", &[("x-resume-after", "0")]).await;
        let replayed: Vec<String> = carol.next_chats(3).await.into_iter().map(|m| m.text).collect();
        assert_eq!(replayed, ["first", "second", "third"], "the resume replays the room");
        carol.disconnect().await;

        let mut mallory = Client::connect(one, Transport::Tcp, "mallory-mon").await;
        let refused = mallory.request_refused(send_frame("/app/rooms.1", &chat_body("  "))).await;
        assert_error_mentions(&refused, "empty");
        let mut eve = Client::connect(two, Transport::Ws, "eve-mon").await;
        let unknown = subscribe_frame(&format!("/topic/rooms.{NO_SUCH_ROOM}"), "x", &[]);
        let error = eve.request_refused(unknown).await;
        assert_error_mentions(&error, NO_SUCH_ROOM);
    }

    /// Texts of the load that label values must not contain.
    pub(crate) fn needles(&self) -> Vec<&str> {
        // Every login of the load ends in `-mon`.
        vec![&self.room_name, NO_SUCH_ROOM, "-mon"]
    }

    /// Posts to `general` from both nodes (TCP on one, WebSocket on two) in
    /// bursts of 1 to 4, with subscribers on both nodes reading, REST calls,
    /// a short session every third round and the troubles of the scenario
    /// every eighth, until `stop`.
    pub(crate) async fn trickle(&self, one: &Server, two: &Server, stop: &CancellationToken) {
        let mut watcher = Client::connect(two, Transport::Tcp, "watcher-mon").await;
        watcher.join(GENERAL, "w").await;
        let mut viewer = Client::connect(one, Transport::Ws, "viewer-mon").await;
        viewer.join(GENERAL, "v").await;
        let mut alice = Client::connect(one, Transport::Tcp, "alice-mon").await;
        let mut bob = Client::connect(two, Transport::Ws, "bob-mon").await;
        let (rest_one, rest_two) = (one.rest(), two.rest());
        let mut round = 0_usize;
        while !stop.is_cancelled() {
            for n in 0..=round % 4 {
                alice.say(GENERAL, &format!("round {round}, message {n}")).await;
            }
            let even = round.is_multiple_of(2);
            if even {
                bob.say(GENERAL, &format!("round {round} from bob")).await;
            }
            drain(&mut watcher).await;
            drain(&mut viewer).await;
            let rest = if even { &rest_one } else { &rest_two };
            rest_calls(rest, if even { &self.room } else { GENERAL }).await;
            if round.is_multiple_of(3) {
                let server = if even { one } else { two };
                let transport = if even { Transport::Ws } else { Transport::Tcp };
                Client::connect(server, transport, "passer-by-mon").await.disconnect().await;
            }
            if round % 8 == 7 {
                self.troubles(one, two).await;
            }
            round += 1;
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(ROUND) => {}
            }
        }
        for client in [watcher, viewer, alice, bob] {
            client.disconnect().await;
        }
    }
}

/// Reads what a subscriber was sent, so that its outbox stays empty.
async fn drain(client: &mut Client) {
    loop {
        match client.try_recv(Duration::from_millis(5)).await {
            Ok(frame) => assert_eq!(frame.command(), Command::Message, "{frame:?}"),
            Err(RecvError::Timeout) => return,
            Err(RecvError::Closed) => panic!("a subscriber was disconnected under a small load"),
        }
    }
}

/// REST calls with 2xx and 4xx answers (unknown room and path, bad JSON).
async fn rest_calls(rest: &Rest, room: &str) {
    rest.get("/api/rooms").await.expect_json(200);
    rest.get(&format!("/api/rooms/{room}/messages?limit=5")).await.expect_json(200);
    rest.get("/api/info").await.expect_json(200);
    rest.get("/healthz").await.expect_json(200);
    rest.get(&format!("/api/rooms/{NO_SUCH_ROOM}")).await.expect_error(404, "not_found");
    let reply = rest.get(&format!("/no/such/page/{NO_SUCH_ROOM}")).await;
    assert_eq!(reply.status, 404, "{}: {}", reply.request, reply.body);
    rest.post_raw("/api/rooms", "{not json").await.expect_error(400, "bad_request");
    let taken = rest.post("/api/rooms", &json!({ "name": "general" })).await;
    assert_eq!(taken.status, 409, "{}: {}", taken.request, taken.body);
}
