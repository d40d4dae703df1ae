//! Fuzz target: decoding must not depend on how the input is split.
//!
//! # Input layout
//!
//! ```text
//! byte 0     protocol version: Version::ALL[b % 3]
//! byte 1     limits selector, as in decode_frame:
//!              b < 0x80: default Limits (no more prefix bytes)
//!              b >= 0x80: 4 bytes of small limits follow (see Setup in src/lib.rs)
//! next byte  n = b % 8: the number of chunk-size bytes that follow
//! n bytes    chunk sizes, used in turn and cycled; 0 is an empty read (the
//!            decoder is called with nothing new). If all are 0 or n = 0,
//!            the size is 1.
//! rest       the STOMP byte stream
//! ```
//!
//! Seeds in `fuzz/seeds/decode_stream/` start with `\x02\x00`, then the
//! chunk-size count and sizes, then the stream.
//!
//! # Checked
//!
//! The stream is decoded (a) in one piece, (b) in the chunks above, and
//! (c) one octet at a time, each with a fresh codec. The three runs must
//! give the same items, in the same order, and either all end without an
//! error, with the same octets left over and the same idleness, or all end
//! with an error after those items.
//!
//! The errors themselves must be equal, with one documented exception: when
//! a frame breaks two size limits (frame size, body size, line length), the
//! one reported can depend on the split, because the decoder checks a
//! partial line or body against the limits in the order they are crossed
//! while receiving, and a complete one in a fixed order. For example, with
//! max_frame_size 7 and max_body_size 2, `SEND\n\nabcd\0` in one piece gives
//! `BodyTooLarge`, but after the first 7 octets alone the decoder already
//! reports `FrameTooLarge`. Both are then required to be size-limit errors.
//! Set `STOMP_FUZZ_STRICT_ERRORS=1` in the environment to require equal
//! errors anyway (this finds such inputs within seconds).
#![no_main]

use std::sync::OnceLock;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use stomp_codec::{Error, Item};
use stomp_codec_fuzz::{Setup, check_error_limit, decode_available, is_size_limit_error};

/// The outcome of decoding a whole stream.
#[derive(Debug)]
struct Outcome {
    items: Vec<Item>,
    error: Option<Error>,
    /// Octets left in the buffer (a partial frame), when there is no error.
    left: Vec<u8>,
    idle: bool,
}

fn strict_errors() -> bool {
    static STRICT: OnceLock<bool> = OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("STOMP_FUZZ_STRICT_ERRORS").is_some_and(|v| v != "0"))
}

/// Decodes `stream` fed in pieces of `sizes` (cycled; 0 is an empty read).
fn decode_in_chunks(setup: &Setup, stream: &[u8], sizes: &[usize]) -> Outcome {
    let mut codec = setup.codec();
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    let mut at = 0;
    let mut sizes = sizes.iter().copied().cycle();
    loop {
        let n = sizes.next().unwrap_or(1).min(stream.len() - at);
        buf.extend_from_slice(&stream[at..at + n]);
        at += n;
        let (mut new, error) = decode_available(&mut codec, &mut buf);
        items.append(&mut new);
        if let Some(e) = error {
            check_error_limit(&e, &setup.limits);
            return Outcome { items, error: Some(e), left: Vec::new(), idle: codec.is_idle() };
        }
        if at == stream.len() {
            return Outcome { items, error: None, left: buf.to_vec(), idle: codec.is_idle() };
        }
    }
}

fn same_outcome(setup: &Setup, what: &str, whole: &Outcome, other: &Outcome) {
    assert_eq!(whole.items, other.items, "{what}: items differ ({setup:?})");
    match (whole.error, other.error) {
        (None, None) => {
            assert_eq!(whole.left, other.left, "{what}: different octets left over");
            assert_eq!(whole.idle, other.idle, "{what}: different idleness");
        }
        (Some(a), Some(b)) if a == b => {}
        (Some(a), Some(b))
            if !strict_errors() && is_size_limit_error(&a) && is_size_limit_error(&b) => {}
        (a, b) => {
            panic!("{what}: whole stream ends with {a:?}, split stream with {b:?} ({setup:?})")
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((setup, rest)) = Setup::parse(data) else { return };
    let Some((&count, rest)) = rest.split_first() else { return };
    let count = usize::from(count % 8).min(rest.len());
    let (size_bytes, stream) = rest.split_at(count);
    let mut sizes: Vec<usize> = size_bytes.iter().map(|&b| usize::from(b)).collect();
    if sizes.iter().all(|&s| s == 0) {
        sizes = vec![1];
    }

    let whole = decode_in_chunks(&setup, stream, &[stream.len()]);
    let chunked = decode_in_chunks(&setup, stream, &sizes);
    same_outcome(&setup, "chunked", &whole, &chunked);
    let bytewise = decode_in_chunks(&setup, stream, &[1]);
    same_outcome(&setup, "one octet at a time", &whole, &bytewise);
});
