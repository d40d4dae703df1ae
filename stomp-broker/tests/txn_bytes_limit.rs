//! What open transactions hold is bounded in bytes per connection
//! (`Limits::max_transaction_bytes`): past it the SEND gets an ERROR; what
//! a COMMIT or ABORT releases counts no more.

mod support;

use stomp_broker::{Broker, Limits};
use stomp_codec::{Command, Frame};
use support::{TestBroker, body, send};

fn begin(tx: &str) -> Frame {
    Frame::new(Command::Begin).with_header("transaction", tx.to_owned())
}

#[tokio::test]
async fn sends_past_the_byte_limit_are_refused_and_released_bytes_count_no_more() {
    let limits = Limits::default().max_transaction_bytes(10_000);
    let broker = TestBroker::start(Broker::builder().limits(limits)).await;
    let mut subscriber = broker.client("s").await;
    subscriber.subscribe("s", "/topic/tx", "auto").await;
    let mut client = broker.client("c").await;
    let big = "x".repeat(4_000);

    // Two 4 kB SENDs fit; aborting releases them, so two more fit again.
    client.with_receipt(begin("t1"), "b1").await;
    for n in 0..2 {
        client
            .with_receipt(
                send("/topic/tx", &big).with_header("transaction", "t1"),
                &format!("s{n}"),
            )
            .await;
    }
    client.with_receipt(Frame::new(Command::Abort).with_header("transaction", "t1"), "a1").await;
    client.with_receipt(begin("t2"), "b2").await;
    for n in 0..2 {
        client
            .with_receipt(
                send("/topic/tx", &big).with_header("transaction", "t2"),
                &format!("t{n}"),
            )
            .await;
    }
    client.with_receipt(Frame::new(Command::Commit).with_header("transaction", "t2"), "c2").await;
    for _ in 0..2 {
        assert_eq!(body(&subscriber.expect_message().await).len(), 4_000);
    }

    // A third one in one transaction passes the limit.
    client.with_receipt(begin("t3"), "b3").await;
    for n in 0..2 {
        client
            .with_receipt(
                send("/topic/tx", &big).with_header("transaction", "t3"),
                &format!("u{n}"),
            )
            .await;
    }
    client
        .send(
            send("/topic/tx", &big).with_header("transaction", "t3").with_header("receipt", "over"),
        )
        .await;
    let error = client.expect(Command::Error).await;
    assert_eq!(
        error.header_str("message"),
        Some("transactions hold too many bytes (the limit is 10000)")
    );
    assert_eq!(error.header_str("receipt-id"), Some("over"));
    assert!(client.expect_closed().await.is_empty());
    subscriber.expect_silence(std::time::Duration::from_millis(100)).await;
    drop((client, subscriber));
    broker.stop().await;
}
