//! Every limit gives its typed error, before the input past it is buffered.

mod support;

use bytes::BytesMut;
use stomp_codec::{Error, Limits, StompCodec};
use support::decode_limited;

fn limits() -> Limits {
    Limits::default().max_frame_size(256).max_body_size(128).max_headers(4).max_header_line(32)
}

#[test]
fn defaults_are_documented_values() {
    let d = Limits::default();
    assert_eq!(d.max_frame_size, 8 * 1024 * 1024);
    assert_eq!(d.max_body_size, 8 * 1024 * 1024);
    assert_eq!(d.max_headers, 128);
    assert_eq!(d.max_header_line, 16 * 1024);
}

#[test]
fn too_many_headers() {
    let wire = b"SEND\na:1\nb:2\nc:3\nd:4\ne:5\n\n\0";
    assert_eq!(decode_limited(wire, limits()), Err(Error::TooManyHeaders { limit: 4 }));
    assert!(decode_limited(b"SEND\na:1\nb:2\nc:3\nd:4\n\n\0", limits()).is_ok());
}

#[test]
fn header_line_too_long_complete_and_partial() {
    let long = format!("SEND\nk:{}\n\n\0", "v".repeat(31));
    assert_eq!(
        decode_limited(long.as_bytes(), limits()),
        Err(Error::HeaderLineTooLong { limit: 32 })
    );
    // Still unterminated: refused as soon as it is past the limit.
    let partial = format!("SEND\nk:{}", "v".repeat(40));
    assert_eq!(
        decode_limited(partial.as_bytes(), limits()),
        Err(Error::HeaderLineTooLong { limit: 32 })
    );
    let exact = format!("SEND\nk:{}\r\n\n\0", "v".repeat(30));
    assert!(decode_limited(exact.as_bytes(), limits()).is_ok(), "CR LF does not count");
}

#[test]
fn command_line_is_a_line_too() {
    let wire = "X".repeat(100);
    assert_eq!(
        decode_limited(wire.as_bytes(), limits()),
        Err(Error::HeaderLineTooLong { limit: 32 })
    );
}

#[test]
fn declared_body_too_large_is_refused_before_reading_it() {
    let mut codec = StompCodec::with_limits(Limits::default());
    let mut buf = BytesMut::from(&b"SEND\ncontent-length:100000000\n\n"[..]);
    assert_eq!(
        codec.decode_item(&mut buf),
        Err(Error::BodyTooLarge { limit: Limits::DEFAULT_MAX_BODY_SIZE })
    );
    assert!(buf.capacity() < 1024 * 1024, "nothing was reserved for the body");
}

#[test]
fn scanned_body_too_large() {
    let wire = format!("SEND\n\n{}", "b".repeat(129));
    assert_eq!(decode_limited(wire.as_bytes(), limits()), Err(Error::BodyTooLarge { limit: 128 }));
    let ok = format!("SEND\n\n{}\0", "b".repeat(128));
    assert!(decode_limited(ok.as_bytes(), limits()).is_ok());
}

#[test]
fn frame_too_large_by_headers_or_declared_body() {
    let l = limits().max_header_line(200).max_headers(100);
    let headers: String = (0..20).map(|i| format!("h{i:02}:{}\n", "x".repeat(10))).collect();
    let wire = format!("SEND\n{headers}\n\0");
    assert_eq!(decode_limited(wire.as_bytes(), l), Err(Error::FrameTooLarge { limit: 256 }));
    let declared = format!("SEND\npad:{}\ncontent-length:128\n\n", "p".repeat(150));
    assert_eq!(decode_limited(declared.as_bytes(), l), Err(Error::FrameTooLarge { limit: 256 }));
}

#[test]
fn limits_count_from_the_frame_not_the_connection() {
    // Many small frames in one buffer are fine, however large the buffer.
    let wire = b"SEND\nk:v\n\n0123456789\0".repeat(100);
    assert_eq!(decode_limited(&wire, limits()).unwrap().len(), 100);
}

#[test]
fn unlimited_limits_do_not_overflow() {
    let unlimited = Limits::default()
        .max_frame_size(usize::MAX)
        .max_body_size(usize::MAX)
        .max_headers(usize::MAX)
        .max_header_line(usize::MAX);
    // A declared length that would wrap the frame's end around.
    let wire = b"SEND\nx:\0\ncontent-length:18446744073709551577\n\n";
    assert_eq!(decode_limited(wire, unlimited), Err(Error::FrameTooLarge { limit: usize::MAX }));
    // A partial line under an unlimited line length just waits.
    assert_eq!(decode_limited(b"SEND\nk:vvvv", unlimited), Ok(vec![]));
    // A large declared body is not reserved in full before it arrives.
    let mut codec = StompCodec::with_limits(unlimited);
    let mut buf = BytesMut::from(&b"SEND\ncontent-length:1000000000000\n\n"[..]);
    assert_eq!(codec.decode_item(&mut buf), Ok(None));
    assert!(buf.capacity() < 64 * 1024 * 1024);
}
