//! Writing frames.

use bytes::{BufMut, BytesMut};

use crate::escape::{escaped_len, put_escaped};
use crate::{Command, Error, Escaping, Frame, Headers, Result, Version};

const CONTENT_LENGTH: &[u8] = b"content-length:";

/// Writes `frame` to `dst` with the header escaping of `version`.
///
/// A frame with a body and no `content-length` header gets one, as the
/// specification recommends; that also makes bodies with NUL octets safe.
/// The space needed is reserved once, up front.
///
/// ```
/// use bytes::BytesMut;
/// use stomp_codec::{encode_frame, Command, Frame, Version};
///
/// let frame = Frame::new(Command::Send).with_header("destination", "/queue/a:b").with_body("hi");
/// let mut out = BytesMut::new();
/// encode_frame(&frame, Version::V1_2, &mut out).unwrap();
/// assert_eq!(&out[..], b"SEND\ndestination:/queue/a\\cb\ncontent-length:2\n\nhi\0");
/// ```
///
/// # Errors
/// [`Error::Unencodable`] when a header cannot be written in `version`,
/// [`Error::ContentLengthMismatch`] when the frame's `content-length`
/// disagrees with its body, [`Error::InvalidContentLength`] when it is not a
/// number. On error nothing is written.
pub fn encode_frame(frame: &Frame, version: Version, dst: &mut BytesMut) -> Result<()> {
    let escaping = version.escaping(frame.command());
    let length = missing_content_length(frame)?;
    let head = head_len(frame.command(), frame.headers(), escaping)?;
    let body = frame.body();
    dst.reserve(head.len + length.map_or(0, content_length_len) + 1 + body.len() + 1);
    put_head(dst, frame.command(), frame.headers(), head.escaping());
    if let Some(len) = length {
        put_content_length(dst, len);
    }
    dst.put_u8(b'\n');
    dst.put_slice(body);
    dst.put_u8(0);
    Ok(())
}

/// The body length when the frame needs a `content-length` header added.
pub(crate) fn missing_content_length(frame: &Frame) -> Result<Option<usize>> {
    match frame.content_length()? {
        Some(n) if n != frame.body().len() => Err(Error::ContentLengthMismatch),
        Some(_) => Ok(None),
        None if frame.body().is_empty() => Ok(None),
        None => Ok(Some(frame.body().len())),
    }
}

/// The size of a frame's head on the wire.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLen {
    /// Octets of the command line and header lines.
    pub(crate) len: usize,
    /// The escaping to write with, or `None` when no field has anything to
    /// escape, so that fields are copied without looking at them again.
    escaping: Escaping,
}

impl HeadLen {
    pub(crate) fn escaping(self) -> Escaping {
        self.escaping
    }
}

/// The octets of the command line and header lines, checking that every
/// header can be written with `escaping`.
pub(crate) fn head_len(command: Command, headers: &Headers, escaping: Escaping) -> Result<HeadLen> {
    let command_line = command.as_str().len() + 1;
    let (mut len, mut raw) = (command_line, command_line);
    for (name, value) in headers.iter() {
        len += header_len(name, value, escaping)?;
        raw += name.len() + value.len() + 2;
    }
    Ok(HeadLen { len, escaping: if len == raw { Escaping::None } else { escaping } })
}

/// The octets of one header line, or an error when it cannot be written.
pub(crate) fn header_len(name: &[u8], value: &[u8], escaping: Escaping) -> Result<usize> {
    if name.is_empty() {
        return Err(Error::Unencodable);
    }
    Ok(escaped_len(name, escaping, true)? + 1 + escaped_len(value, escaping, false)? + 1)
}

/// Writes the command line and header lines (not the blank line).
pub(crate) fn put_head(
    dst: &mut BytesMut,
    command: Command,
    headers: &Headers,
    escaping: Escaping,
) {
    dst.put_slice(command.as_str().as_bytes());
    dst.put_u8(b'\n');
    for (name, value) in headers.iter() {
        put_header(dst, name, value, escaping);
    }
}

/// Writes one header line, checked with [`header_len`].
pub(crate) fn put_header(dst: &mut BytesMut, name: &[u8], value: &[u8], escaping: Escaping) {
    put_escaped(dst, name, escaping);
    dst.put_u8(b':');
    put_escaped(dst, value, escaping);
    dst.put_u8(b'\n');
}

/// The octets of a `content-length` line for a body of `len` octets.
pub(crate) fn content_length_len(len: usize) -> usize {
    CONTENT_LENGTH.len() + decimal_digits(len) + 1
}

/// Writes a `content-length` line.
pub(crate) fn put_content_length(dst: &mut BytesMut, len: usize) {
    dst.put_slice(CONTENT_LENGTH);
    put_decimal(dst, len);
    dst.put_u8(b'\n');
}

fn decimal_digits(mut n: usize) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

fn put_decimal(dst: &mut BytesMut, n: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        // `n % 10` is below 10, so the narrowing cannot lose anything.
        buf[i] = b'0' + u8::try_from(n % 10).unwrap_or(0);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    dst.put_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(frame: &Frame, version: Version) -> Result<Vec<u8>> {
        let mut out = BytesMut::new();
        encode_frame(frame, version, &mut out).map(|()| out.to_vec())
    }

    #[test]
    fn decimal_matches_display() {
        for n in [0, 9, 10, 99, 100, 65_536, usize::MAX] {
            let mut out = BytesMut::new();
            put_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            assert_eq!(decimal_digits(n), n.to_string().len());
        }
    }

    #[test]
    fn connect_headers_are_never_escaped() {
        let frame = Frame::new(Command::Connect).with_header("passcode", "a\\b:c");
        assert_eq!(encode(&frame, Version::V1_2).unwrap(), b"CONNECT\npasscode:a\\b:c\n\n\0");
        let bad = Frame::new(Command::Connected).with_header("x", "a\nb");
        assert_eq!(encode(&bad, Version::V1_2), Err(Error::Unencodable));
    }

    #[test]
    fn stomp_1_1_cannot_carry_cr() {
        let frame = Frame::new(Command::Send).with_header("x", "a\rb");
        assert_eq!(encode(&frame, Version::V1_1), Err(Error::Unencodable));
        assert_eq!(encode(&frame, Version::V1_2).unwrap(), b"SEND\nx:a\\rb\n\n\0");
    }

    #[test]
    fn content_length_is_checked_not_duplicated() {
        let ok = Frame::new(Command::Send).with_header("content-length", "2").with_body("hi");
        assert_eq!(encode(&ok, Version::V1_2).unwrap(), b"SEND\ncontent-length:2\n\nhi\0");
        let bad = Frame::new(Command::Send).with_header("content-length", "3").with_body("hi");
        assert_eq!(encode(&bad, Version::V1_2), Err(Error::ContentLengthMismatch));
    }

    #[test]
    fn failed_encode_writes_nothing() {
        let mut out = BytesMut::from(&b"keep"[..]);
        let bad = Frame::new(Command::Send).with_header("", "v");
        assert_eq!(encode_frame(&bad, Version::V1_2, &mut out), Err(Error::Unencodable));
        assert_eq!(&out[..], b"keep");
    }
}
