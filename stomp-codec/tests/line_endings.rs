//! LF and CR LF line endings, as STOMP 1.2 allows.

mod support;

use stomp_codec::{Command, Version};
use support::{headers, one_frame, one_frame_in, pairs};

#[test]
fn crlf_frame_matches_lf_frame() {
    let lf = one_frame(b"SEND\ndestination:/queue/a\nreceipt:1\n\nbody\0");
    let crlf = one_frame(b"SEND\r\ndestination:/queue/a\r\nreceipt:1\r\n\r\nbody\0");
    assert_eq!(lf, crlf);
}

#[test]
fn mixed_line_endings() {
    let frame = one_frame(b"SEND\r\na:1\nb:2\r\n\nx\0");
    assert_eq!(frame.command(), Command::Send);
    assert_eq!(headers(&frame), pairs(&[("a", "1"), ("b", "2")]));
    assert_eq!(&frame.body()[..], b"x");
}

#[test]
fn crlf_in_every_version() {
    for version in Version::ALL {
        let frame = one_frame_in(b"MESSAGE\r\ndestination:/topic/t\r\n\r\n\0", version);
        assert_eq!(frame.header_str("destination"), Some("/topic/t"));
    }
}

#[test]
fn only_one_trailing_cr_is_a_line_ending() {
    // A CR inside a value is data; only the CR right before LF belongs to the EOL.
    let frame = one_frame_in(b"SEND\nk:a\rb\r\n\n\0", Version::V1_0);
    assert_eq!(frame.header("k"), Some(&b"a\rb"[..]));
}

#[test]
fn body_keeps_its_line_endings() {
    let frame = one_frame(b"SEND\r\n\r\nline1\r\nline2\n\0");
    assert_eq!(&frame.body()[..], b"line1\r\nline2\n");
}
