//! Property tests: encode then decode gives the frame back; decoding does
//! not depend on how the input is split; no input makes the decoder panic.

mod support;

use bytes::{Buf, BytesMut};
use proptest::prelude::*;
use stomp_codec::{
    Command, Error, Escaping, Frame, Item, Limits, PreparedFrame, StompCodec, Version, encode_frame,
};
use support::{decode_all, decode_chunked, decode_limited};

/// Header octets, weighted towards the ones that need escaping.
fn octet() -> impl Strategy<Value = u8> {
    prop_oneof![
        8 => b'a'..=b'z',
        1 => Just(b':'),
        1 => Just(b'\\'),
        1 => Just(b'\n'),
        1 => Just(b'\r'),
        1 => any::<u8>(),
    ]
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(octet(), 1..12)
        .prop_filter("content-length is checked against the body", |n| n != b"content-length")
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(octet(), 0..24)
}

fn command() -> impl Strategy<Value = Command> {
    prop::sample::select(Command::ALL.to_vec())
}

fn version() -> impl Strategy<Value = Version> {
    prop::sample::select(Version::ALL.to_vec())
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        3 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::collection::vec(Just(0u8), 1..4),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    (command(), prop::collection::vec((name(), value()), 0..6), body()).prop_map(
        |(c, headers, body)| {
            headers.into_iter().fold(Frame::new(c), |f, (n, v)| f.with_header(n, v)).with_body(body)
        },
    )
}

/// Whether `frame` can be written in `version`, by the specification's rules.
fn encodable(frame: &Frame, version: Version) -> bool {
    let fits = |field: &[u8], is_name: bool| match version.escaping(frame.command()) {
        Escaping::None => {
            !field.iter().any(|&b| b == b'\n' || b == b'\r' || (is_name && b == b':'))
        }
        Escaping::V1_1 => !field.contains(&b'\r'),
        Escaping::V1_2 => true,
    };
    frame.headers().iter().all(|(n, v)| fits(n, true) && fits(v, false))
}

/// What decoding the encoding of `frame` must give: the frame, with the
/// `content-length` header the encoder adds to a non-empty body.
fn expected(frame: &Frame) -> Frame {
    let mut expected = frame.clone();
    if !frame.body().is_empty() {
        expected.headers_mut().push("content-length", frame.body().len().to_string());
    }
    expected
}

fn encode(frame: &Frame, version: Version) -> Result<BytesMut, Error> {
    let mut out = BytesMut::new();
    encode_frame(frame, version, &mut out).map(|()| out)
}

proptest! {
    #[test]
    fn encode_then_decode_round_trips(frame in frame(), version in version()) {
        match encode(&frame, version) {
            Ok(wire) => {
                prop_assert!(encodable(&frame, version));
                let items = decode_all(&wire, version).expect("own output decodes");
                prop_assert_eq!(items, vec![Item::Frame(expected(&frame))]);
            }
            Err(e) => {
                prop_assert_eq!(e, Error::Unencodable);
                prop_assert!(!encodable(&frame, version));
            }
        }
    }

    #[test]
    fn stomp_1_2_encodes_every_message(frame in frame()) {
        prop_assume!(frame.command().escapes_headers());
        prop_assert!(encode(&frame, Version::V1_2).is_ok());
    }

    #[test]
    fn prepared_frame_round_trips(frame in frame(), version in version(), subscription in value()) {
        let Ok(prepared) = PreparedFrame::new(frame.clone()) else { unreachable!("no content-length given") };
        let extra: &[(&[u8], &[u8])] = &[(b"subscription", &subscription)];
        let mut copied = BytesMut::new();
        match prepared.encode_into(version, extra, &mut copied) {
            Ok(()) => {
                let mut vectored = prepared.to_buf(version, extra).unwrap();
                prop_assert_eq!(&vectored.copy_to_bytes(vectored.remaining())[..], &copied[..]);
                let mut want = expected(&frame);
                want.headers_mut().push("subscription", subscription.clone());
                prop_assert_eq!(decode_all(&copied, version).unwrap(), vec![Item::Frame(want)]);
            }
            Err(e) => {
                prop_assert_eq!(e, Error::Unencodable);
                prop_assert!(copied.is_empty(), "nothing written on error");
            }
        }
    }

    #[test]
    fn chunking_does_not_change_a_valid_stream(
        frames in prop::collection::vec((frame(), 0usize..3), 1..6),
        sizes in prop::collection::vec(1usize..40, 1..8),
        version in version(),
    ) {
        let mut wire = Vec::new();
        for (frame, heartbeats) in &frames {
            if let Ok(bytes) = encode(frame, version) {
                wire.extend_from_slice(&bytes);
            }
            wire.extend(std::iter::repeat_n(b'\n', *heartbeats));
        }
        let whole = decode_all(&wire, version).expect("valid stream");
        prop_assert_eq!(decode_chunked(&wire, &sizes, version), Ok(whole));
    }

    #[test]
    fn chunking_does_not_change_arbitrary_bytes(
        input in prop::collection::vec(prop_oneof![4 => octet(), 1 => Just(0u8)], 0..300),
        sizes in prop::collection::vec(1usize..16, 1..8),
        version in version(),
    ) {
        // Complete items and the first error are the same in one piece or in
        // chunks (a trailing partial frame yields nothing either way).
        let mut framed = b"SEND\n".to_vec();
        framed.extend_from_slice(&input);
        for input in [&input, &framed] {
            prop_assert_eq!(decode_chunked(input, &sizes, version), decode_all(input, version));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_under_small_limits(
        input in prop::collection::vec(any::<u8>(), 0..512),
        frame_size in 1usize..256,
        body_size in 0usize..128,
        headers in 0usize..8,
        line in 0usize..64,
        sizes in prop::collection::vec(1usize..64, 1..4),
    ) {
        let limits = Limits::default()
            .max_frame_size(frame_size)
            .max_body_size(body_size)
            .max_headers(headers)
            .max_header_line(line);
        let whole = decode_limited(&input, limits);
        let mut codec = StompCodec::with_limits(limits);
        let mut buf = BytesMut::new();
        let mut chunked = Ok(());
        for chunk in input.chunks(sizes[0]) {
            buf.extend_from_slice(chunk);
            if let Err(e) = (|| { while codec.decode_item(&mut buf)?.is_some() {} Ok::<_, Error>(()) })() {
                chunked = Err(e);
                break;
            }
        }
        prop_assert_eq!(whole.is_ok(), chunked.is_ok());
    }
}
