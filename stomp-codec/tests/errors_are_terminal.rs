//! Malformed input gives a typed error, and an error ends the stream: every
//! later call returns it again, however much valid input follows.

mod support;

use bytes::BytesMut;
use stomp_codec::{CodecError, Error, StompCodec, Version};
use support::decode_all;
use tokio_util::codec::Decoder;

#[test]
fn malformed_frames() {
    let cases: &[(&[u8], Error)] = &[
        (b"FOO\n\n\0", Error::UnknownCommand),
        (b"send\n\n\0", Error::UnknownCommand),
        (b"SEND\nnocolon\n\n\0", Error::MalformedHeader),
        (b"SEND\n:empty-name\n\n\0", Error::MalformedHeader),
        (b"SEND\nk:\\q\n\n\0", Error::InvalidEscape),
        (b"SEND\ncontent-length:x\n\n\0", Error::InvalidContentLength),
        (b"SEND\ncontent-length:1\n\nab\0", Error::MissingNul),
    ];
    for (wire, error) in cases {
        assert_eq!(
            decode_all(wire, Version::V1_2),
            Err(*error),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
}

#[test]
fn error_repeats_after_valid_input() {
    let mut codec = StompCodec::new();
    let mut buf = BytesMut::from(&b"BAD\n\n\0"[..]);
    assert_eq!(codec.decode_item(&mut buf), Err(Error::UnknownCommand));
    buf.clear();
    buf.extend_from_slice(b"SEND\n\n\0");
    for _ in 0..3 {
        assert_eq!(codec.decode_item(&mut buf), Err(Error::UnknownCommand));
    }
}

#[test]
fn tokio_decoder_reports_protocol_errors() {
    let mut codec = StompCodec::new();
    let mut buf = BytesMut::from(&b"NOPE\n"[..]);
    let err = Decoder::decode(&mut codec, &mut buf).unwrap_err();
    assert_eq!(err.protocol(), Some(Error::UnknownCommand));
    assert_eq!(err.to_string(), "unknown command");
}

#[test]
fn eof_inside_a_frame_is_an_error() {
    let mut codec = StompCodec::new();
    let mut buf = BytesMut::from(&b"SEND\n\nhalf"[..]);
    let err = codec.decode_eof(&mut buf).unwrap_err();
    assert!(
        matches!(err, CodecError::Io(ref e) if e.kind() == std::io::ErrorKind::UnexpectedEof),
        "{err}"
    );
    let mut clean = StompCodec::new();
    assert!(clean.decode_eof(&mut BytesMut::new()).unwrap().is_none());
}

#[test]
fn error_messages_are_readable() {
    assert_eq!(
        Error::FrameTooLarge { limit: 1024 }.to_string(),
        "frame exceeds the maximum size of 1024 bytes"
    );
    assert_eq!(Error::InvalidEscape.to_string(), "undefined escape sequence in header");
}
