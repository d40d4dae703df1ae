//! Encoder vectors: exact bytes per command and version.

use bytes::BytesMut;
use stomp_codec::{Command, Error, Frame, Item, StompCodec, Version, encode_frame};
use tokio_util::codec::Encoder;

fn encode(frame: &Frame, version: Version) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_frame(frame, version, &mut out).unwrap();
    out.to_vec()
}

#[test]
fn frame_without_body_has_no_content_length() {
    let frame = Frame::new(Command::Subscribe)
        .with_header("id", "0")
        .with_header("destination", "/queue/foo")
        .with_header("ack", "client");
    assert_eq!(
        encode(&frame, Version::V1_2),
        b"SUBSCRIBE\nid:0\ndestination:/queue/foo\nack:client\n\n\0"
    );
}

#[test]
fn body_gets_content_length() {
    let frame = Frame::new(Command::Message)
        .with_header("subscription", "0")
        .with_header("message-id", "007")
        .with_header("destination", "/queue/a")
        .with_body("hello queue a");
    assert_eq!(
        encode(&frame, Version::V1_2),
        &b"MESSAGE\nsubscription:0\nmessage-id:007\ndestination:/queue/a\ncontent-length:13\n\nhello queue a\0"[..]
    );
}

#[test]
fn connected_is_written_raw() {
    let frame =
        Frame::new(Command::Connected).with_header("version", "1.2").with_header("server", "a:b");
    assert_eq!(encode(&frame, Version::V1_2), b"CONNECTED\nversion:1.2\nserver:a:b\n\n\0");
}

#[test]
fn repeated_headers_are_kept_in_order() {
    let frame = Frame::new(Command::Send).with_header("foo", "World").with_header("foo", "Hello");
    assert_eq!(encode(&frame, Version::V1_0), b"SEND\nfoo:World\nfoo:Hello\n\n\0");
}

#[test]
fn codec_encodes_heartbeats_and_frames() {
    let mut codec = StompCodec::new();
    let mut out = BytesMut::new();
    codec.encode(Item::Heartbeat, &mut out).unwrap();
    codec.encode(Frame::new(Command::Disconnect), &mut out).unwrap();
    assert_eq!(&out[..], b"\nDISCONNECT\n\n\0");
}

#[test]
fn codec_uses_negotiated_version() {
    let mut codec = StompCodec::new();
    codec.set_version(Version::V1_0);
    let mut out = BytesMut::new();
    let err =
        codec.encode(Frame::new(Command::Send).with_header("k", "a\nb"), &mut out).unwrap_err();
    assert_eq!(err.protocol(), Some(Error::Unencodable));
    assert!(out.is_empty());
}
