//! Helpers shared by the `stomp-codec` fuzz targets.
//!
//! - [`Setup`]: the common input prefix of `decode_frame` and
//!   `decode_stream` (protocol version and [`Limits`]).
//! - [`check_decoded_frame`]: what every frame the decoder returns must
//!   satisfy.
//! - [`model_encode`] / [`reference_encoding`]: an independent statement of
//!   what `encode_frame` accepts and writes, so that the targets can check
//!   the encoder's result exactly rather than only "it did not panic".
//! - [`decode_exactly_one`]: decodes an encoder's output, which must be one
//!   complete frame and nothing else.

use bytes::{Bytes, BytesMut};
use stomp_codec::{Error, Escaping, Frame, Item, Limits, StompCodec, Version};

/// Limits large enough never to be hit by a fuzz input, for decoding what
/// the encoder wrote. Deliberately far from `usize::MAX`: the decoder adds
/// to `max_header_line` and to a declared `content-length`.
pub fn roomy_limits() -> Limits {
    Limits::default()
        .max_frame_size(1 << 40)
        .max_body_size(1 << 40)
        .max_headers(1 << 20)
        .max_header_line(1 << 40)
}

/// The protocol version and limits chosen by the first input bytes.
///
/// Layout (shared by `decode_frame` and `decode_stream`):
///
/// ```text
/// byte 0        version: Version::ALL[b % 3]   (0 = 1.0, 1 = 1.1, 2 = 1.2)
/// byte 1        limits selector:
///                 b < 0x80  -> Limits::default(); the prefix ends here
///                 b >= 0x80 -> four more bytes of small limits:
/// byte 2          max_frame_size  = 1 + 2 * b      (1..=511)
/// byte 3          max_body_size   = b              (0..=255)
/// byte 4          max_headers     = b % 16         (0..=15)
/// byte 5          max_header_line = b              (0..=255)
/// ```
///
/// So `"\x02\x00SEND\n\n\0"` is a STOMP 1.2 stream with default limits and
/// `"\x02\x80\x40\x10\x04\x20SEND..."` one with a 129-octet frame limit, a
/// 16-octet body limit, 4 headers and 32-octet lines.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// The negotiated version given to the codec.
    pub version: Version,
    /// The limits given to the codec.
    pub limits: Limits,
    /// Whether the small limits were chosen.
    pub small_limits: bool,
}

impl Setup {
    /// Splits the prefix off `data`; `None` when `data` is too short.
    pub fn parse(data: &[u8]) -> Option<(Self, &[u8])> {
        let (&v, rest) = data.split_first()?;
        let version = Version::ALL[usize::from(v) % 3];
        let (&sel, rest) = rest.split_first()?;
        if sel < 0x80 {
            let setup = Self { version, limits: Limits::default(), small_limits: false };
            return Some((setup, rest));
        }
        let (l, rest) = rest.split_first_chunk::<4>()?;
        let limits = Limits::default()
            .max_frame_size(1 + 2 * usize::from(l[0]))
            .max_body_size(usize::from(l[1]))
            .max_headers(usize::from(l[2] % 16))
            .max_header_line(usize::from(l[3]));
        Some((Self { version, limits, small_limits: true }, rest))
    }

    /// A codec configured with this setup.
    pub fn codec(&self) -> StompCodec {
        let mut codec = StompCodec::with_limits(self.limits);
        codec.set_version(self.version);
        codec
    }
}

/// Whether `e` is one of the errors for a size limit that is checked both
/// on partial input and on complete lines/bodies. When a frame breaks two of
/// these limits, which one is reported can depend on how the input was
/// split (see `decode_stream`).
pub fn is_size_limit_error(e: &Error) -> bool {
    matches!(
        e,
        Error::FrameTooLarge { .. } | Error::BodyTooLarge { .. } | Error::HeaderLineTooLong { .. }
    )
}

/// A limit error must carry the limit in force.
pub fn check_error_limit(e: &Error, limits: &Limits) {
    match *e {
        Error::FrameTooLarge { limit } => assert_eq!(limit, limits.max_frame_size, "{e:?}"),
        Error::BodyTooLarge { limit } => assert_eq!(limit, limits.max_body_size, "{e:?}"),
        Error::TooManyHeaders { limit } => assert_eq!(limit, limits.max_headers, "{e:?}"),
        Error::HeaderLineTooLong { limit } => assert_eq!(limit, limits.max_header_line, "{e:?}"),
        Error::Unencodable | Error::ContentLengthMismatch => {
            panic!("encoding-only error from the decoder: {e:?}")
        }
        _ => {}
    }
}

/// Decodes everything in `buf` until the codec wants more input or fails.
/// Returns the items and the error, if any.
pub fn decode_available(codec: &mut StompCodec, buf: &mut BytesMut) -> (Vec<Item>, Option<Error>) {
    let mut items = Vec::new();
    loop {
        match codec.decode_item(buf) {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return (items, None),
            Err(e) => return (items, Some(e)),
        }
    }
}

/// Strict decimal, as the codec's `content-length` grammar: one or more
/// ASCII digits, no sign, no spaces, no overflow.
pub fn parse_decimal(value: &[u8]) -> Option<usize> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0usize, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(usize::from(b - b'0'))
    })
}

/// Invariants of every frame the decoder returns under `limits`.
///
/// `wire` is exactly the octets the decoder consumed for this frame.
pub fn check_decoded_frame(frame: &Frame, wire: &[u8], limits: &Limits) {
    let command = frame.command().as_str().as_bytes();
    assert!(wire.len() <= limits.max_frame_size, "frame of {} octets passed the limit", wire.len());
    assert!(wire.starts_with(command), "frame does not start with its command");
    assert_eq!(wire.last(), Some(&0), "frame does not end with NUL");
    // Command line, blank line, NUL: at least the command and 3 octets.
    assert!(wire.len() >= command.len() + 3);
    assert!(frame.headers().len() <= limits.max_headers);
    assert!(frame.body().len() <= limits.max_body_size);
    assert!(frame.body().len() < wire.len());
    // The body is the octets right before the NUL.
    assert_eq!(&wire[wire.len() - 1 - frame.body().len()..wire.len() - 1], &frame.body()[..]);
    for (name, _value) in frame.headers().iter() {
        assert!(!name.is_empty(), "decoded a header with an empty name");
    }
    match frame.header("content-length") {
        // The decoder framed the body with the first content-length, so it
        // must be valid and agree with the body.
        Some(_) => assert_eq!(frame.content_length(), Ok(Some(frame.body().len()))),
        // Without it, the first NUL ends the body.
        None => assert!(!frame.body().contains(&0), "NUL in a body framed by NUL"),
    }
    assert_eq!(frame.headers().len(), frame.headers().iter().count());
    let detached = frame.detached();
    assert_eq!(&detached, frame);
}

/// Whether `field` can be written with `escaping` (see `escape.rs`): no
/// line breaks without escapes, no CR in 1.1, no raw `:` in a name where
/// there are no escapes. Backslash is always writable.
pub fn field_encodable(field: &[u8], escaping: Escaping, is_name: bool) -> bool {
    match escaping {
        Escaping::None => {
            !field.contains(&b'\n')
                && !field.contains(&b'\r')
                && !(is_name && field.contains(&b':'))
        }
        Escaping::V1_1 => !field.contains(&b'\r'),
        Escaping::V1_2 => true,
    }
}

/// What `encode_frame(frame, version, ..)` must return: `Ok(Some(n))` when a
/// `content-length: n` header is to be appended, `Ok(None)` when nothing is
/// added, or the error, checked in the encoder's order (content-length
/// first, then every header in order).
pub fn model_encode(frame: &Frame, version: Version) -> Result<Option<usize>, Error> {
    let body_len = frame.body().len();
    let first_cl = frame.headers().iter().find(|(n, _)| *n == b"content-length");
    let added = match first_cl {
        Some((_, value)) => match parse_decimal(value) {
            None => return Err(Error::InvalidContentLength),
            Some(n) if n != body_len => return Err(Error::ContentLengthMismatch),
            Some(_) => None,
        },
        None if body_len == 0 => None,
        None => Some(body_len),
    };
    let escaping = version.escaping(frame.command());
    for (name, value) in frame.headers().iter() {
        if name.is_empty()
            || !field_encodable(name, escaping, true)
            || !field_encodable(value, escaping, false)
        {
            return Err(Error::Unencodable);
        }
    }
    Ok(added)
}

/// Writes a field the way the specification says: in 1.1 and 1.2 frames
/// (other than CONNECT, STOMP, CONNECTED) `\n` `\r` `:` `\` become `\n` `\r`
/// `\c` `\\`; otherwise the octets are written as they are.
fn put_reference_field(out: &mut Vec<u8>, field: &[u8], escaping: Escaping) {
    if escaping == Escaping::None {
        out.extend_from_slice(field);
        return;
    }
    for &b in field {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b':' => out.extend_from_slice(b"\\c"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            _ => out.push(b),
        }
    }
}

/// The exact octets `encode_frame` must write for an encodable frame, with
/// `added` as returned by [`model_encode`].
pub fn reference_encoding(frame: &Frame, version: Version, added: Option<usize>) -> Vec<u8> {
    let escaping = version.escaping(frame.command());
    let mut out = Vec::new();
    out.extend_from_slice(frame.command().as_str().as_bytes());
    out.push(b'\n');
    for (name, value) in frame.headers().iter() {
        put_reference_field(&mut out, name, escaping);
        out.push(b':');
        put_reference_field(&mut out, value, escaping);
        out.push(b'\n');
    }
    if let Some(n) = added {
        out.extend_from_slice(format!("content-length:{n}\n").as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(frame.body());
    out.push(0);
    out
}

/// `frame` with a `content-length` header appended when `added` says so.
pub fn with_added_content_length(frame: &Frame, added: Option<usize>) -> Frame {
    let mut frame = frame.clone();
    if let Some(n) = added {
        frame.headers_mut().push("content-length", n.to_string());
    }
    frame
}

/// Decodes `wire`, which must be exactly one frame, with `version` and
/// roomy limits. Panics on anything else.
pub fn decode_exactly_one(wire: &[u8], version: Version) -> Frame {
    let mut codec = StompCodec::with_limits(roomy_limits());
    codec.set_version(version);
    let mut buf = BytesMut::from(wire);
    let frame = match codec.decode_item(&mut buf) {
        Ok(Some(Item::Frame(frame))) => frame,
        other => panic!(
            "encoded frame did not decode: {other:?}\nwire: {:?}",
            Bytes::copy_from_slice(wire)
        ),
    };
    assert!(buf.is_empty(), "octets left after the encoded frame: {buf:?}");
    assert!(codec.is_idle());
    assert_eq!(codec.decode_item(&mut buf), Ok(None));
    frame
}

/// Encodes `frame` with `encode_frame` and checks the result against the
/// model: the same verdict, the exact reference octets, nothing written on
/// error, and a decode that gives the frame back (with the `content-length`
/// the encoder adds). Returns the encoded octets when encoding succeeded.
pub fn check_encode_roundtrip(frame: &Frame, version: Version) -> Option<Vec<u8>> {
    const SENTINEL: &[u8] = b"previous output";
    let expected = model_encode(frame, version);
    let mut dst = BytesMut::from(SENTINEL);
    let got = stomp_codec::encode_frame(frame, version, &mut dst);
    let added = match (got, expected) {
        (Ok(()), Ok(added)) => added,
        (Err(e), Err(m)) => {
            assert_eq!(
                e, m,
                "encode_frame error differs from the model for {frame:?} in {version}"
            );
            assert_eq!(&dst[..], SENTINEL, "a failed encode_frame wrote something");
            return None;
        }
        (got, expected) => {
            panic!("encode_frame gave {got:?}, the model {expected:?}, for {frame:?} in {version}")
        }
    };
    assert!(dst.starts_with(SENTINEL), "encode_frame changed what was already in dst");
    let wire = dst.split_off(SENTINEL.len());
    let reference = reference_encoding(frame, version, added);
    assert_eq!(
        Bytes::copy_from_slice(&wire),
        Bytes::from(reference),
        "encode_frame octets differ from the reference for {frame:?} in {version}"
    );
    let decoded = decode_exactly_one(&wire, version);
    let expected = with_added_content_length(frame, added);
    assert_eq!(decoded.command(), expected.command());
    assert_eq!(
        decoded.headers().iter().collect::<Vec<_>>(),
        expected.headers().iter().collect::<Vec<_>>(),
        "headers changed in a round trip in {version}"
    );
    assert_eq!(decoded.body(), expected.body());
    assert_eq!(decoded, expected);
    Some(wire.to_vec())
}
