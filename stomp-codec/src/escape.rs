//! Header escaping (STOMP 1.1 and 1.2, "Value Encoding").

use bytes::{BufMut, Bytes, BytesMut};

use crate::{Error, Escaping, Result};

/// Decodes the escapes of one header name or value into a new buffer.
///
/// Only called for fields that contain a backslash and whose frame allows
/// escapes, so fields without escapes stay slices of the read buffer.
pub(crate) fn unescape(raw: &[u8], escaping: Escaping) -> Result<Bytes> {
    let mut out = BytesMut::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = memchr::memchr(b'\\', rest) {
        out.put_slice(&rest[..i]);
        let decoded = match (rest.get(i + 1), escaping) {
            (Some(b'n'), _) => b'\n',
            (Some(b'c'), _) => b':',
            (Some(b'\\'), _) => b'\\',
            (Some(b'r'), Escaping::V1_2) => b'\r',
            _ => return Err(Error::InvalidEscape),
        };
        out.put_u8(decoded);
        rest = &rest[i + 2..];
    }
    out.put_slice(rest);
    Ok(out.freeze())
}

/// What one octet of a header field needs on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Written as is.
    Plain,
    /// Written as a backslash escape where the version has one.
    Special,
}

/// Octets that need attention in a header field: `\n`, `\r`, `:`, `\`.
const fn class_of(b: u8) -> Class {
    match b {
        b'\n' | b'\r' | b':' | b'\\' => Class::Special,
        _ => Class::Plain,
    }
}

/// [`class_of`] for every octet, so that the check is one load.
static CLASS: [Class; 256] = {
    let mut table = [Class::Plain; 256];
    let mut b: u8 = 0;
    loop {
        table[b as usize] = class_of(b);
        if b == u8::MAX {
            break table;
        }
        b += 1;
    }
};

fn class(b: u8) -> Class {
    CLASS[usize::from(b)]
}

/// Whether a field can be copied to the wire unchanged.
pub(crate) fn is_plain(field: &[u8]) -> bool {
    field.iter().all(|&b| class(b) == Class::Plain)
}

/// The number of octets `field` takes on the wire, or an error when the
/// version cannot represent it. `is_name` forbids a raw `:` where there is
/// no escape for it.
pub(crate) fn escaped_len(field: &[u8], escaping: Escaping, is_name: bool) -> Result<usize> {
    let mut len = field.len();
    for &b in field {
        if class(b) == Class::Plain {
            continue;
        }
        match (escaping, b) {
            (Escaping::None, b':') if !is_name => {}
            (Escaping::None, b'\\') => {}
            (Escaping::None, _) | (Escaping::V1_1, b'\r') => return Err(Error::Unencodable),
            _ => len += 1,
        }
    }
    Ok(len)
}

/// Writes `field` with the escapes of `escaping`. The caller has checked it
/// with [`escaped_len`].
pub(crate) fn put_escaped(dst: &mut BytesMut, field: &[u8], escaping: Escaping) {
    if escaping == Escaping::None || is_plain(field) {
        dst.put_slice(field);
        return;
    }
    for &b in field {
        match b {
            b'\n' => dst.put_slice(b"\\n"),
            b'\r' => dst.put_slice(b"\\r"),
            b':' => dst.put_slice(b"\\c"),
            b'\\' => dst.put_slice(b"\\\\"),
            _ => dst.put_u8(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_1_2_defines_four_escapes() {
        let got = unescape(br"a\nb\rc\cd\\e", Escaping::V1_2).unwrap();
        assert_eq!(&got[..], b"a\nb\rc:d\\e");
    }

    #[test]
    fn unescape_1_1_has_no_carriage_return() {
        assert_eq!(unescape(br"x\ry", Escaping::V1_1), Err(Error::InvalidEscape));
        assert_eq!(&unescape(br"x\ny", Escaping::V1_1).unwrap()[..], b"x\ny");
    }

    #[test]
    fn undefined_and_dangling_escapes_are_errors() {
        assert_eq!(unescape(br"\t", Escaping::V1_2), Err(Error::InvalidEscape));
        assert_eq!(unescape(b"abc\\", Escaping::V1_2), Err(Error::InvalidEscape));
    }

    #[test]
    fn escaped_len_counts_and_refuses() {
        assert_eq!(escaped_len(b"a:b\n", Escaping::V1_2, false), Ok(6));
        assert_eq!(escaped_len(b"a:b", Escaping::None, false), Ok(3));
        assert_eq!(escaped_len(b"a:b", Escaping::None, true), Err(Error::Unencodable));
        assert_eq!(escaped_len(b"a\nb", Escaping::None, false), Err(Error::Unencodable));
        assert_eq!(escaped_len(b"a\rb", Escaping::V1_1, false), Err(Error::Unencodable));
        assert_eq!(escaped_len(b"a\\b", Escaping::None, false), Ok(3));
    }

    #[test]
    fn put_escaped_inverts_unescape() {
        let field = b"k:v\\\n\r!";
        let mut out = BytesMut::new();
        put_escaped(&mut out, field, Escaping::V1_2);
        assert_eq!(escaped_len(field, Escaping::V1_2, true), Ok(out.len()));
        assert_eq!(&unescape(&out, Escaping::V1_2).unwrap()[..], field);
    }
}
