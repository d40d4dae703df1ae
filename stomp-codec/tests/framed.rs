//! The codec under tokio-util's `FramedRead` and `FramedWrite`.

use futures_util::{SinkExt, StreamExt};
use stomp_codec::{Command, Frame, Item, StompCodec};
use tokio_util::codec::{FramedRead, FramedWrite};

#[tokio::test]
async fn frames_through_framed_read_and_write() {
    let (client, server) = tokio::io::duplex(64);
    let mut writer = FramedWrite::new(client, StompCodec::new());
    let mut reader = FramedRead::new(server, StompCodec::new());

    let sender = tokio::spawn(async move {
        let big =
            Frame::new(Command::Send).with_header("destination", "/q").with_body(vec![7u8; 10_000]);
        writer.send(Item::Frame(big)).await.unwrap();
        writer.send(Item::Heartbeat).await.unwrap();
        writer.send(Frame::new(Command::Disconnect).with_header("receipt", "1")).await.unwrap();
    });

    let Some(Ok(Item::Frame(big))) = reader.next().await else { panic!() };
    assert_eq!(big.body().len(), 10_000);
    assert_eq!(big.content_length(), Ok(Some(10_000)));
    assert!(matches!(reader.next().await, Some(Ok(Item::Heartbeat))));
    let Some(Ok(Item::Frame(bye))) = reader.next().await else { panic!() };
    assert_eq!(bye.command(), Command::Disconnect);
    sender.await.unwrap();
    assert!(reader.next().await.is_none(), "clean end of stream");
}

#[tokio::test]
async fn framed_read_stops_after_an_error() {
    let input: &[u8] = b"SEND\n\n\0JUNK\n\n\0SEND\n\n\0";
    let mut reader = FramedRead::new(input, StompCodec::new());
    assert!(matches!(reader.next().await, Some(Ok(Item::Frame(_)))));
    let err = reader.next().await.unwrap().unwrap_err();
    assert_eq!(err.protocol(), Some(stomp_codec::Error::UnknownCommand));
    assert!(reader.next().await.is_none(), "nothing after the error");
}

#[tokio::test]
async fn truncated_stream_is_an_error() {
    let input: &[u8] = b"SEND\ncontent-length:10\n\nabc";
    let mut reader = FramedRead::new(input, StompCodec::new());
    let err = reader.next().await.unwrap().unwrap_err();
    assert!(err.protocol().is_none(), "an I/O error: {err}");
}
