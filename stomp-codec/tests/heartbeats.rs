//! EOLs between frames are heart-beats, reported as their own items.

mod support;

use stomp_codec::{Command, Item, Version};
use support::{decode_all, decode_chunked};

fn shape(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .map(|i| match i {
            Item::Heartbeat => "HB".to_owned(),
            Item::Frame(f) => f.command().to_string(),
        })
        .collect()
}

#[test]
fn lone_eols_are_heartbeats() {
    let items = decode_all(b"\n\r\n\n", Version::V1_2).unwrap();
    assert_eq!(shape(&items), ["HB", "HB", "HB"]);
}

#[test]
fn eols_around_frames() {
    let wire = b"\nSEND\n\n\0\n\nMESSAGE\n\n\0\r\n";
    let items = decode_all(wire, Version::V1_2).unwrap();
    assert_eq!(shape(&items), ["HB", "SEND", "HB", "HB", "MESSAGE", "HB"]);
}

#[test]
fn split_crlf_heartbeat_waits_for_lf() {
    let items = decode_chunked(b"\r\nSEND\n\n\0", &[1], Version::V1_2).unwrap();
    assert_eq!(shape(&items), ["HB", "SEND"]);
}

#[test]
fn frame_follows_heartbeat_in_same_read() {
    let items = decode_all(b"\nCONNECT\naccept-version:1.2\n\n\0", Version::V1_2).unwrap();
    let [Item::Heartbeat, Item::Frame(f)] = items.as_slice() else { panic!("{items:?}") };
    assert_eq!(f.command(), Command::Connect);
}

#[test]
fn cr_not_followed_by_lf_is_not_a_heartbeat() {
    assert!(decode_all(b"\rSEND\n\n\0", Version::V1_2).is_err());
}
