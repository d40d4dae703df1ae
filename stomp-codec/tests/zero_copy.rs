//! Decoded headers and body share the read buffer; only escaped fields get
//! buffers of their own, and `detached` copies everything out.

mod support;

use bytes::BytesMut;
use stomp_codec::{Item, StompCodec};

fn within(range: &std::ops::Range<usize>, ptr: *const u8) -> bool {
    range.contains(&(ptr as usize))
}

#[test]
fn headers_and_body_point_into_the_read_buffer() {
    let mut buf = BytesMut::with_capacity(256);
    buf.extend_from_slice(b"SEND\ndestination:/queue/a\nk:esc\\cape\ncontent-length:5\n\nhello\0");
    let start = buf.as_ptr() as usize;
    let read_buffer = start..start + buf.capacity();
    let Some(Item::Frame(frame)) = StompCodec::new().decode_item(&mut buf).unwrap() else {
        panic!()
    };

    assert!(within(&read_buffer, frame.body().as_ptr()), "body is a slice");
    assert!(
        within(&read_buffer, frame.header("destination").unwrap().as_ptr()),
        "plain value is a slice"
    );
    let shared = frame.headers().get_bytes("destination").unwrap();
    assert!(within(&read_buffer, shared.as_ptr()), "get_bytes does not copy");
    let escaped = frame.header("k").unwrap();
    assert_eq!(escaped, b"esc:ape");
    assert!(!within(&read_buffer, escaped.as_ptr()), "an unescaped value has its own buffer");

    let detached = frame.detached();
    assert_eq!(detached, frame);
    assert!(!within(&read_buffer, detached.body().as_ptr()));
    assert!(!within(&read_buffer, detached.header("destination").unwrap().as_ptr()));
}
