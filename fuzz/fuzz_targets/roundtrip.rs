//! Fuzz target: encode an arbitrary frame, decode it back.
//!
//! # Input layout
//!
//! ```text
//! byte 0     protocol version: Version::ALL[b % 3] (the first one tried;
//!            the frame is then encoded in the other two versions as well)
//! byte 1     command: Command::ALL[b % 15]
//!            (0 CONNECT, 1 STOMP, 2 CONNECTED, 3 SEND, 4 SUBSCRIBE,
//!             5 UNSUBSCRIBE, 6 ACK, 7 NACK, 8 BEGIN, 9 COMMIT, 10 ABORT,
//!             11 DISCONNECT, 12 MESSAGE, 13 RECEIPT, 14 ERROR)
//! byte 2     flags:
//!              bits 0-1  content-length header added by the harness:
//!                        0 none, 1 correct one first, 2 correct one last,
//!                        3 a wrong one (body length + 1) first
//!              bits 2-4  k: the last k header pairs are not frame headers
//!                        but the per-recipient headers of PreparedFrame
//! byte 3     separator octet
//! rest       fields separated by the separator octet:
//!              name1 SEP value1 SEP name2 SEP value2 ... SEP body
//!            the last field is the body; the others pair up as headers (an
//!            odd one out is a name with an empty value). Names and values
//!            are arbitrary octets (empty, NUL, LF, CR, ':', '\' included).
//! ```
//!
//! For example `"\x02\x03\x00|destination|/queue/a|hello"` is a STOMP 1.2
//! `SEND` with one header and body `hello`.
//!
//! # Checked
//!
//! - `encode_frame` accepts exactly the frames the model (`model_encode` in
//!   `src/lib.rs`) says it can encode, with the same error otherwise, and
//!   writes nothing then.
//! - On success it writes exactly the reference octets (spec escaping;
//!   `content-length` appended when the body is non-empty and there is
//!   none), and decoding them gives the same command, the same headers in
//!   order (plus that `content-length`), and the same body.
//! - `PreparedFrame::new` fails exactly when the content-length is wrong;
//!   its `encode_into`, `to_buf` and `encoded_len` agree with each other and
//!   with `encode_frame` of the frame with the extra headers appended, and
//!   what they write decodes to that frame. Each version is tried, in an
//!   order that starts with the chosen one, to exercise the head cache.
#![no_main]

use bytes::{Buf, Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use stomp_codec::{Command, Frame, Headers, PreparedFrame, Version};
use stomp_codec_fuzz::{
    check_encode_roundtrip, decode_exactly_one, model_encode, reference_encoding,
};

struct Input {
    first_version: usize,
    frame: Frame,
    extras: Vec<(Bytes, Bytes)>,
}

fn parse(data: &[u8]) -> Option<Input> {
    let (head, rest) = data.split_first_chunk::<4>()?;
    let [version, command, flags, sep] = *head;
    let command = Command::ALL[usize::from(command) % Command::ALL.len()];
    let mut fields: Vec<&[u8]> = rest.split(|&b| b == sep).collect();
    let body = fields.pop().unwrap_or_default();
    let mut pairs: Vec<(Bytes, Bytes)> = fields
        .chunks(2)
        .map(|p| {
            (
                Bytes::copy_from_slice(p[0]),
                Bytes::copy_from_slice(p.get(1).copied().unwrap_or_default()),
            )
        })
        .collect();
    let k = usize::from((flags >> 2) & 0b111).min(pairs.len());
    let extras: Vec<(Bytes, Bytes)> = pairs
        .split_off(pairs.len() - k)
        .into_iter()
        // A per-recipient content-length would change the framing; the
        // documentation asks for per-recipient headers that the shared
        // part does not have.
        .filter(|(n, _)| n.as_ref() != b"content-length")
        .collect();
    let len = body.len();
    match flags & 0b11 {
        1 => pairs.insert(0, (Bytes::from_static(b"content-length"), Bytes::from(len.to_string()))),
        2 => pairs.push((Bytes::from_static(b"content-length"), Bytes::from(len.to_string()))),
        3 => pairs
            .insert(0, (Bytes::from_static(b"content-length"), Bytes::from((len + 1).to_string()))),
        _ => {}
    }
    let headers: Headers = pairs.into_iter().collect();
    let frame = Frame::from_parts(command, headers, Bytes::copy_from_slice(body));
    Some(Input { first_version: usize::from(version) % 3, frame, extras })
}

fn versions_from(first: usize) -> impl Iterator<Item = Version> {
    (0..3).map(move |i| Version::ALL[(first + i) % 3])
}

/// `PreparedFrame` against the model and against `encode_frame`.
fn check_prepared(input: &Input) {
    let frame = &input.frame;
    let prepared = PreparedFrame::new(frame.clone());
    // PreparedFrame::new checks only the content-length: the model's
    // verdict for a frame with no headers but that one tells.
    let cl_only: Headers = frame
        .headers()
        .iter()
        .filter(|(n, _)| *n == b"content-length")
        .take(1)
        .map(|(n, v)| (Bytes::copy_from_slice(n), Bytes::copy_from_slice(v)))
        .collect();
    let cl_frame = Frame::from_parts(frame.command(), cl_only, frame.body().clone());
    let cl_model = model_encode(&cl_frame, Version::V1_2);
    let prepared = match (prepared, cl_model) {
        (Ok(p), Ok(added)) => {
            let mut expected = frame.headers().clone();
            if let Some(n) = added {
                expected.push("content-length", n.to_string());
            }
            assert_eq!(p.headers(), &expected, "PreparedFrame headers");
            assert_eq!(p.body(), frame.body());
            assert_eq!(p.command(), frame.command());
            p
        }
        (Err(e), Err(m)) => {
            assert_eq!(e, m);
            return;
        }
        (got, model) => {
            panic!("PreparedFrame::new gave {:?}, the model {model:?}", got.map(|_| ()))
        }
    };

    let extra: Vec<(&[u8], &[u8])> =
        input.extras.iter().map(|(n, v)| (n.as_ref(), v.as_ref())).collect();
    // The frame each recipient must get: the shared headers (content-length
    // included), then its own.
    let mut whole_headers = prepared.headers().clone();
    for (n, v) in &input.extras {
        whole_headers.push(n.clone(), v.clone());
    }
    let whole = Frame::from_parts(frame.command(), whole_headers, frame.body().clone());

    for version in versions_from(input.first_version) {
        const SENTINEL: &[u8] = b"earlier frames";
        let mut out = BytesMut::from(SENTINEL);
        let got = prepared.encode_into(version, &extra, &mut out);
        let model = model_encode(&whole, version);
        match (got, model) {
            (Ok(()), Ok(None)) => {}
            (Ok(()), Ok(Some(n))) => {
                panic!("model wants content-length {n} added to a prepared frame")
            }
            (Err(e), Err(m)) => {
                assert_eq!(e, m, "encode_into error in {version}");
                assert_eq!(&out[..], SENTINEL, "a failed encode_into wrote something");
                assert_eq!(prepared.to_buf(version, &extra).err(), Some(e));
                assert_eq!(prepared.encoded_len(version, &extra), Err(e));
                continue;
            }
            (got, model) => {
                panic!("encode_into gave {got:?}, the model {model:?}, in {version} for {whole:?}")
            }
        }
        assert!(out.starts_with(SENTINEL));
        let wire = out.split_off(SENTINEL.len());
        assert_eq!(
            Bytes::copy_from_slice(&wire),
            Bytes::from(reference_encoding(&whole, version, None)),
            "encode_into octets in {version}"
        );
        assert_eq!(prepared.encoded_len(version, &extra), Ok(wire.len()));
        let mut buf = prepared.to_buf(version, &extra).expect("to_buf after encode_into");
        assert_eq!(buf.remaining(), wire.len());
        let vectored = buf.copy_to_bytes(buf.remaining());
        assert_eq!(&vectored[..], &wire[..], "to_buf octets in {version}");
        let mut direct = BytesMut::new();
        stomp_codec::encode_frame(&whole, version, &mut direct)
            .expect("encode_frame of the prepared frame");
        assert_eq!(&direct[..], &wire[..], "encode_into differs from encode_frame in {version}");
        let decoded = decode_exactly_one(&wire, version);
        assert_eq!(decoded, whole, "prepared frame round trip in {version}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = parse(data) else { return };
    for version in versions_from(input.first_version) {
        let _ = check_encode_roundtrip(&input.frame, version);
    }
    check_prepared(&input);
});
