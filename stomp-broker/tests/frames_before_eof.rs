//! Frames a client sends right before closing its side of the connection
//! are still handled, and their answers still written.

mod support;

use stomp_codec::Command;
use support::{Client, TestBroker, body};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn send_then_half_close_is_delivered_and_receipted() {
    let broker = TestBroker::default().await;
    let mut subscriber = broker.client("s").await;
    subscriber.subscribe("s", "/topic/eof", "auto").await;

    let mut sender = Client::raw(broker.addr).await;
    sender
        .send_raw(b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/topic/eof\n\nlast words\0DISCONNECT\nreceipt:bye\n\n\0")
        .await;
    sender.stream.shutdown().await.expect("half-close");
    let frames = sender.expect_closed().await;
    let commands: Vec<_> = frames.iter().map(stomp_codec::Frame::command).collect();
    assert_eq!(commands, [Command::Connected, Command::Receipt]);
    assert_eq!(frames[1].header_str("receipt-id"), Some("bye"));
    assert_eq!(body(&subscriber.expect_message().await), "last words");
    drop(subscriber);
    broker.stop().await;
}
