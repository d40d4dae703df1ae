//! The grammar of a frame's lines, as nom parsers.
//!
//! The decoder finds line and frame boundaries itself, resuming where it
//! stopped (see [`decoder`](crate::decoder)); what a complete line means is
//! decided here. Each parser takes one complete line without its line
//! ending, so `Incomplete` cannot occur.

use nom::bytes::complete::{tag, take_while1};
use nom::combinator::{all_consuming, map_opt, map_res, rest};
use nom::sequence::separated_pair;
use nom::{IResult, Parser};

use crate::{Command, Error, Result};

/// `command = client-command | server-command`
fn command(line: &[u8]) -> IResult<&[u8], Command> {
    map_opt(rest, Command::from_bytes).parse(line)
}

/// `header = header-name ":" header-value`: the name is everything up to
/// the first colon and may not be empty; the value is the rest of the line.
///
/// STOMP 1.1 and 1.2 want colons in values escaped, but STOMP 1.0 peers
/// and many clients send them raw (URLs, times). As RabbitMQ and ActiveMQ
/// do, a raw colon in a value is accepted as part of the value.
fn header(line: &[u8]) -> IResult<&[u8], (&[u8], &[u8])> {
    separated_pair(name, tag(&b":"[..]), rest).parse(line)
}

/// `header-name = 1*<any octet but ":", CR, LF>` (CR and LF cannot occur in
/// a line). Equivalent to `take_till1(|b| b == b':')`, searching with
/// `memchr` instead of octet by octet.
fn name(input: &[u8]) -> IResult<&[u8], &[u8]> {
    match memchr::memchr(b':', input) {
        Some(at) if at > 0 => Ok((&input[at..], &input[..at])),
        _ => Err(nom::Err::Error(nom::error::Error::new(input, nom::error::ErrorKind::TakeTill1))),
    }
}

/// `content-length = 1*DIGIT`
fn digits(value: &[u8]) -> IResult<&[u8], usize> {
    all_consuming(map_res(take_while1(|b: u8| b.is_ascii_digit()), |d: &[u8]| {
        d.iter().try_fold(0usize, |n, &b| {
            n.checked_mul(10).and_then(|n| n.checked_add(usize::from(b - b'0'))).ok_or(())
        })
    }))
    .parse(value)
}

/// The command of a frame's first line.
pub(crate) fn command_line(line: &[u8]) -> Result<Command> {
    command(line).map(|(_, c)| c).map_err(|_| Error::UnknownCommand)
}

/// The name and value of a header line, as raw (still escaped) octets.
pub(crate) fn header_line(line: &[u8]) -> Result<(&[u8], &[u8])> {
    header(line).map(|(_, nv)| nv).map_err(|_| Error::MalformedHeader)
}

/// A `content-length` value in octets.
pub(crate) fn content_length(value: &[u8]) -> Result<usize> {
    digits(value).map(|(_, n)| n).map_err(|_| Error::InvalidContentLength)
}

/// A line without its line ending: LF, or CR LF.
pub(crate) fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_exact_and_case_sensitive() {
        for c in Command::ALL {
            assert_eq!(command_line(c.as_str().as_bytes()), Ok(c));
        }
        assert_eq!(command_line(b"send"), Err(Error::UnknownCommand));
        assert_eq!(command_line(b"SEND "), Err(Error::UnknownCommand));
        assert_eq!(command_line(b""), Err(Error::UnknownCommand));
    }

    #[test]
    fn header_splits_at_first_colon() {
        assert_eq!(header_line(b"a:b:c"), Ok((&b"a"[..], &b"b:c"[..])));
        assert_eq!(header_line(b"a:"), Ok((&b"a"[..], &b""[..])));
        assert_eq!(header_line(b":v"), Err(Error::MalformedHeader));
        assert_eq!(header_line(b"novalue"), Err(Error::MalformedHeader));
    }

    #[test]
    fn content_length_is_strict_decimal() {
        assert_eq!(content_length(b"0"), Ok(0));
        assert_eq!(content_length(b"1234"), Ok(1234));
        for bad in [&b""[..], b" 1", b"1 ", b"-1", b"0x10", b"99999999999999999999999"] {
            assert_eq!(content_length(bad), Err(Error::InvalidContentLength), "{bad:?}");
        }
    }

    #[test]
    fn strip_cr_removes_one_trailing_cr() {
        assert_eq!(strip_cr(b"ab\r"), b"ab");
        assert_eq!(strip_cr(b"ab"), b"ab");
        assert_eq!(strip_cr(b"ab\r\r"), b"ab\r");
    }
}
