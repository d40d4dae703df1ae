//! Helpers shared by the codec's tests.
#![allow(dead_code, unreachable_pub)]

use bytes::BytesMut;
use stomp_codec::{Error, Frame, Item, Limits, StompCodec, Version};

/// Decodes every item of `input` (given in one piece) with `codec`.
pub fn decode_with(codec: &mut StompCodec, input: &[u8]) -> Result<Vec<Item>, Error> {
    let mut buf = BytesMut::from(input);
    let mut items = Vec::new();
    while let Some(item) = codec.decode_item(&mut buf)? {
        items.push(item);
    }
    Ok(items)
}

/// Decodes every item of `input` in `version` with default limits.
pub fn decode_all(input: &[u8], version: Version) -> Result<Vec<Item>, Error> {
    let mut codec = StompCodec::new();
    codec.set_version(version);
    decode_with(&mut codec, input)
}

/// Decodes every item of `input` with `limits`.
pub fn decode_limited(input: &[u8], limits: Limits) -> Result<Vec<Item>, Error> {
    decode_with(&mut StompCodec::with_limits(limits), input)
}

/// Decodes `input`, which must hold exactly one frame, in STOMP 1.2.
pub fn one_frame(input: &[u8]) -> Frame {
    one_frame_in(input, Version::V1_2)
}

/// Decodes `input`, which must hold exactly one frame, in `version`.
pub fn one_frame_in(input: &[u8], version: Version) -> Frame {
    let items = decode_all(input, version).expect("decodes");
    match items.as_slice() {
        [Item::Frame(frame)] => frame.clone(),
        other => panic!("expected one frame, got {other:?}"),
    }
}

/// The headers of `frame` as (name, value) strings, in order.
pub fn headers(frame: &Frame) -> Vec<(String, String)> {
    frame
        .headers()
        .iter()
        .map(|(n, v)| {
            (String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned())
        })
        .collect()
}

/// Owned (name, value) pairs from string literals.
pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
}

/// Decodes `input` fed in pieces of `sizes` (cycled), collecting items
/// until the input is exhausted or an error occurs.
pub fn decode_chunked(input: &[u8], sizes: &[usize], version: Version) -> Result<Vec<Item>, Error> {
    let mut codec = StompCodec::new();
    codec.set_version(version);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    let mut at = 0;
    let mut sizes = sizes.iter().copied().cycle();
    while at < input.len() {
        let n = sizes.next().unwrap_or(1).max(1).min(input.len() - at);
        buf.extend_from_slice(&input[at..at + n]);
        at += n;
        while let Some(item) = codec.decode_item(&mut buf)? {
            items.push(item);
        }
    }
    Ok(items)
}
