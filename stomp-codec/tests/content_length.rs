//! `content-length` bodies: NUL octets inside, exact lengths, bad values.

mod support;

use stomp_codec::{Error, Item, Version};
use support::{decode_all, decode_chunked, one_frame};

#[test]
fn body_with_nul_octets() {
    let frame = one_frame(b"SEND\ncontent-length:5\n\na\0b\0c\0");
    assert_eq!(&frame.body()[..], b"a\0b\0c");
}

#[test]
fn zero_length_body() {
    let frame = one_frame(b"SEND\ncontent-length:0\n\n\0");
    assert!(frame.body().is_empty());
}

#[test]
fn without_content_length_the_first_nul_ends_the_body() {
    let items = decode_all(b"SEND\n\nab\0cd\0\n", Version::V1_2);
    // "cd\0" is not a frame: "cd\0" is no command.
    assert_eq!(items, Err(Error::UnknownCommand));
    let frame = one_frame(b"SEND\n\nab\0");
    assert_eq!(&frame.body()[..], b"ab");
}

#[test]
fn missing_nul_after_declared_length() {
    assert_eq!(
        decode_all(b"SEND\ncontent-length:2\n\nabc\0", Version::V1_2),
        Err(Error::MissingNul)
    );
}

#[test]
fn invalid_content_length_values() {
    for value in ["", "-1", "abc", " 5", "5 ", "1e3", "184467440737095516160"] {
        let wire = format!("SEND\ncontent-length:{value}\n\n\0");
        assert_eq!(
            decode_all(wire.as_bytes(), Version::V1_2),
            Err(Error::InvalidContentLength),
            "{value:?}"
        );
    }
}

#[test]
fn first_content_length_wins() {
    let frame = one_frame(b"SEND\ncontent-length:3\ncontent-length:1\n\na\0b\0");
    assert_eq!(&frame.body()[..], b"a\0b");
}

#[test]
fn waits_for_the_whole_declared_body() {
    let wire = b"SEND\ncontent-length:10\n\n0123\x004567\0\0";
    for size in 1..wire.len() {
        let items = decode_chunked(wire, &[size], Version::V1_2).unwrap();
        let [Item::Frame(frame)] = items.as_slice() else { panic!("chunk {size}: {items:?}") };
        assert_eq!(&frame.body()[..], b"0123\x004567\0", "chunk {size}");
    }
}
