//! Decoding resumes where it stopped: the same items come out however the
//! input is split, and a partial frame is neither lost nor rescanned.

mod support;

use bytes::BytesMut;
use stomp_codec::{Item, StompCodec, Version};
use support::{decode_all, decode_chunked};

fn stream() -> Vec<u8> {
    let mut wire = Vec::new();
    wire.extend_from_slice(b"CONNECT\r\naccept-version:1.1,1.2\r\nhost:/\r\n\r\n\0\n");
    wire.extend_from_slice(b"SEND\ndestination:/queue/a\ncontent-length:4\n\na\0b\n\0");
    wire.extend_from_slice(b"\n\n");
    wire.extend_from_slice(b"SUBSCRIBE\nid:1\ndestination:/topic/a\\cb\n\n\0");
    wire.extend_from_slice(b"SEND\ndestination:/queue/b\n\nno length here\0\r\n");
    wire
}

#[test]
fn any_chunking_gives_the_same_items() {
    let wire = stream();
    let whole = decode_all(&wire, Version::V1_2).unwrap();
    assert_eq!(whole.iter().filter(|i| matches!(i, Item::Frame(_))).count(), 4);
    for size in 1..=wire.len() {
        assert_eq!(
            decode_chunked(&wire, &[size], Version::V1_2).unwrap(),
            whole,
            "chunk size {size}"
        );
    }
    for pattern in [&[1, 2, 3][..], &[7, 1], &[13, 5, 2, 40], &[2, 1, 1, 30]] {
        assert_eq!(decode_chunked(&wire, pattern, Version::V1_2).unwrap(), whole, "{pattern:?}");
    }
}

#[test]
fn partial_frame_leaves_the_buffer_alone() {
    let mut codec = StompCodec::new();
    let mut buf = BytesMut::from(&b"SEND\ndestination:/q"[..]);
    assert_eq!(codec.decode_item(&mut buf), Ok(None));
    assert_eq!(
        &buf[..],
        b"SEND\ndestination:/q",
        "progress is kept in the codec, not by consuming"
    );
    assert!(!codec.is_idle());
    buf.extend_from_slice(b"ueue/a\n\nx\0");
    let Some(Item::Frame(frame)) = codec.decode_item(&mut buf).unwrap() else { panic!() };
    assert_eq!(frame.header_str("destination"), Some("/queue/a"));
    assert!(buf.is_empty());
    assert!(codec.is_idle());
}

#[test]
fn large_frame_byte_at_a_time() {
    // 256 KiB of headers and body fed one octet per call: with rescanning
    // this would be tens of billions of steps; resumed, it is linear.
    let headers: String = (0..100).map(|i| format!("h{i}:{}\n", "v".repeat(100))).collect();
    let body = "b".repeat(256 * 1024);
    let wire = format!("SEND\n{headers}\n{body}\0");
    let mut codec = StompCodec::new();
    let mut buf = BytesMut::new();
    let mut frames = 0;
    for &b in wire.as_bytes() {
        buf.extend_from_slice(&[b]);
        if let Some(Item::Frame(frame)) = codec.decode_item(&mut buf).unwrap() {
            assert_eq!(frame.headers().len(), 100);
            assert_eq!(frame.body().len(), body.len());
            frames += 1;
        }
    }
    assert_eq!(frames, 1);
}

#[test]
fn content_length_reserves_the_rest_of_the_frame() {
    let mut codec = StompCodec::new();
    let mut buf = BytesMut::from(&b"SEND\ncontent-length:100000\n\n"[..]);
    assert_eq!(codec.decode_item(&mut buf), Ok(None));
    assert!(buf.capacity() > 100_000, "room for the body and its NUL was reserved at once");
}

#[test]
fn version_switch_applies_to_following_frames() {
    let mut codec = StompCodec::new();
    let mut buf = BytesMut::from(&b"CONNECT\nlogin:a\\b\n\n\0SEND\nk:a\\cb\n\n\0"[..]);
    let Some(Item::Frame(connect)) = codec.decode_item(&mut buf).unwrap() else { panic!() };
    assert_eq!(connect.header("login"), Some(&b"a\\b"[..]));
    codec.set_version(Version::V1_0);
    let Some(Item::Frame(send)) = codec.decode_item(&mut buf).unwrap() else { panic!() };
    assert_eq!(send.header("k"), Some(&b"a\\cb"[..]), "1.0 does not unescape");
}
