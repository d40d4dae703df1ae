//! Header escapes by protocol version: none in 1.0, `\n \c \\` in 1.1,
//! `\r` too in 1.2, never in CONNECT, STOMP and CONNECTED frames.

mod support;

use bytes::BytesMut;
use stomp_codec::{Command, Error, Frame, Version, encode_frame};
use support::{decode_all, one_frame_in};

const ESCAPED: &[u8] = b"MESSAGE\nk\\cey:a\\nb\\cc\\\\d\n\n\0";

#[test]
fn stomp_1_2_decodes_all_four_escapes() {
    let frame = one_frame_in(b"SEND\nk:a\\rb\\nc\\cd\\\\e\n\n\0", Version::V1_2);
    assert_eq!(frame.header("k"), Some(&b"a\rb\nc:d\\e"[..]));
}

#[test]
fn escapes_apply_to_names_too() {
    for version in [Version::V1_1, Version::V1_2] {
        let frame = one_frame_in(ESCAPED, version);
        assert_eq!(frame.header("k:ey"), Some(&b"a\nb:c\\d"[..]), "{version}");
    }
}

#[test]
fn stomp_1_1_has_no_cr_escape() {
    assert_eq!(decode_all(b"SEND\nk:a\\rb\n\n\0", Version::V1_1), Err(Error::InvalidEscape));
}

#[test]
fn stomp_1_0_has_no_escapes() {
    let frame = one_frame_in(ESCAPED, Version::V1_0);
    assert_eq!(frame.header("k\\cey"), Some(&b"a\\nb\\cc\\\\d"[..]));
    // Not even undefined ones are errors: a backslash is an ordinary octet.
    let frame = one_frame_in(b"SEND\nk:a\\tb\n\n\0", Version::V1_0);
    assert_eq!(frame.header("k"), Some(&b"a\\tb"[..]));
}

#[test]
fn connect_frames_are_never_unescaped() {
    for version in Version::ALL {
        for command in ["CONNECT", "STOMP", "CONNECTED"] {
            let wire = format!("{command}\npasscode:a\\nb\\tc\n\n\0");
            let frame = one_frame_in(wire.as_bytes(), version);
            assert_eq!(frame.header("passcode"), Some(&b"a\\nb\\tc"[..]), "{command} {version}");
        }
    }
}

#[test]
fn undefined_escapes_are_errors() {
    for wire in [&b"SEND\nk:\\t\n\n\0"[..], b"SEND\nk:end\\\n\n\0", b"SEND\nk\\x:v\n\n\0"] {
        for version in [Version::V1_1, Version::V1_2] {
            assert_eq!(decode_all(wire, version), Err(Error::InvalidEscape), "{wire:?} {version}");
        }
    }
}

#[test]
fn encoder_escapes_by_version() {
    let frame = Frame::new(Command::Send).with_header("k:ey", "a\nb\\c");
    let encode = |v| {
        let mut out = BytesMut::new();
        encode_frame(&frame, v, &mut out).map(|()| out)
    };
    assert_eq!(&encode(Version::V1_2).unwrap()[..], b"SEND\nk\\cey:a\\nb\\\\c\n\n\0");
    assert_eq!(&encode(Version::V1_1).unwrap()[..], b"SEND\nk\\cey:a\\nb\\\\c\n\n\0");
    assert_eq!(encode(Version::V1_0), Err(Error::Unencodable));
    let cr = Frame::new(Command::Send).with_header("k", "a\rb");
    let mut out = BytesMut::new();
    assert_eq!(encode_frame(&cr, Version::V1_1, &mut out), Err(Error::Unencodable));
    encode_frame(&cr, Version::V1_2, &mut out).unwrap();
    assert_eq!(&out[..], b"SEND\nk:a\\rb\n\n\0");
}
