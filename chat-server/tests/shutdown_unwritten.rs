//! A graceful shutdown that cannot write every accepted message to
//! history (the database went away after the messages got their RECEIPT)
//! ends with a non-zero exit status and says how many messages were not
//! written: those messages are lost, and whoever runs the server must
//! know.

mod support;

use serde_json::Value;
use support::proxy::Proxy;
use support::services::{MONGODB_ADDR, MongoDb};
use support::{Client, Node, Rest, Transport, WAIT, eventually, unique};

/// `history` of `GET /api/status`.
async fn history_status(rest: &Rest) -> Value {
    rest.get("/api/status").await.expect_json(200)["history"].clone()
}

#[tokio::test]
async fn messages_left_unwritten_at_shutdown_make_the_exit_status_non_zero() {
    let mongodb = MongoDb::new();
    let proxy = Proxy::start(MONGODB_ADDR.parse().expect("MongoDB address")).await;
    let url = format!("mongodb://{}/{}?directConnection=true", proxy.addr, mongodb.name);
    let node = Node::new().flag("--mongodb-url", url).flag("--shutdown-timeout", "2");
    let server = node.start().await;
    let rest = server.rest();
    let room = rest.create_room_id(&unique("unwritten")).await;
    let mut client = Client::connect(&server, Transport::Tcp, "writer").await;
    client.say(&room, "written").await;
    eventually("the first message is written to MongoDB", WAIT, || async {
        let history = history_status(&rest).await;
        (history["written"] == 1 && history["buffered"] == 0).then_some(())
    })
    .await;

    proxy.cut().await;
    for i in 0..5 {
        client.say(&room, &format!("unwritten {i}")).await;
    }
    assert_eq!(history_status(&rest).await["buffered"], 5, "the five wait in the buffer");

    let exited = server.stop().await;
    assert!(!exited.status.success(), "exit 0 with receipted messages lost: {exited}");
    assert!(
        exited.stderr.contains("5 accepted messages were not written to history"),
        "stderr does not say how many messages were lost: {exited}"
    );
}
