//! The incremental decoder.
//!
//! A frame is decoded in two phases, each resumable:
//!
//! 1. **Head**: the command line and header lines. Lines are found with
//!    `memchr` from where the previous call stopped searching
//!    ([`Head::scanned`]), so a frame arriving one byte at a time costs
//!    O(n) in total. Each complete line is parsed once, by the nom grammar
//!    in [`grammar`](crate::grammar), and recorded as ranges of the buffer.
//! 2. **Body**: with `content-length`, the decoder waits until that many
//!    octets and the NUL are buffered, reserving the room at once; without
//!    it, it searches for the NUL, again from where it stopped.
//!
//! Only when the whole frame is buffered is it split off the read buffer
//! and frozen; headers and body become slices of that one allocation.
//! Ranges are offsets from the start of `src`, which holds the frame being
//! decoded at its front: the decoder relies on the caller only appending
//! to `src` between calls, as `tokio_util::codec::FramedRead` does.

use bytes::{Buf, Bytes, BytesMut};
use memchr::memchr;

use crate::escape::unescape;
use crate::grammar::{command_line, content_length, header_line, strip_cr};
use crate::headers::{Entry, Field};
use crate::{Command, Error, Escaping, Frame, Headers, Item, Limits, Result, Version};

/// Headers a typical frame carries; the first allocation fits them.
const TYPICAL_HEADERS: usize = 8;

/// The most the decoder reserves in the read buffer at once for a body
/// announced by `content-length`.
const RESERVE_MAX: usize = 8 * 1024 * 1024;

/// Progress through the command and header lines of a frame.
#[derive(Debug)]
struct Head {
    /// Offset of the first octet of the line being read.
    line_start: usize,
    /// Offset up to which the line being read has been searched for LF.
    scanned: usize,
    /// The command, once its line is complete.
    command: Option<Command>,
    entries: Vec<Entry>,
    /// `Some` once the first `content-length` header has been read.
    content_length: Option<usize>,
}

/// Progress through the body of a frame.
#[derive(Debug)]
struct Body {
    command: Command,
    entries: Vec<Entry>,
    /// Offset of the first octet of the body.
    start: usize,
    content_length: Option<usize>,
    /// Without `content-length`: offset up to which the body has been
    /// searched for NUL.
    scanned: usize,
}

#[derive(Debug)]
enum State {
    /// Between frames.
    Idle,
    Head(Head),
    Body(Body),
    /// An error was returned; it is returned again on every call.
    Failed(Error),
}

/// The decoding half of [`StompCodec`](crate::StompCodec).
#[derive(Debug)]
pub(crate) struct Decoder {
    state: State,
}

impl Default for Decoder {
    fn default() -> Self {
        Self { state: State::Idle }
    }
}

impl Decoder {
    /// Whether the decoder is between frames (nothing partial buffered).
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// Decodes the next item at the front of `src`, or `None` when more
    /// octets are needed. Any error is terminal.
    pub(crate) fn decode(
        &mut self,
        src: &mut BytesMut,
        version: Version,
        limits: &Limits,
    ) -> Result<Option<Item>> {
        let result = self.step(src, version, limits);
        if let Err(e) = result {
            self.state = State::Failed(e);
        }
        result
    }

    fn step(
        &mut self,
        src: &mut BytesMut,
        version: Version,
        limits: &Limits,
    ) -> Result<Option<Item>> {
        loop {
            match &mut self.state {
                State::Failed(e) => return Err(*e),
                State::Idle => match heartbeat(src) {
                    Some(true) => return Ok(Some(Item::Heartbeat)),
                    Some(false) => return Ok(None),
                    None => self.state = State::Head(Head::new()),
                },
                State::Head(head) => match head.advance(src, version, limits)? {
                    Some(body) => self.state = State::Body(body),
                    None => return Ok(None),
                },
                State::Body(body) => {
                    let Some(end) = body.find_end(src, limits)? else {
                        return Ok(None);
                    };
                    let frame = body.finish(src, end);
                    self.state = State::Idle;
                    return Ok(Some(Item::Frame(frame)));
                }
            }
        }
    }
}

/// At the front of `src` between frames: `Some(true)` when a heart-beat EOL
/// was consumed, `Some(false)` when more octets are needed to tell, `None`
/// when a frame starts.
fn heartbeat(src: &mut BytesMut) -> Option<bool> {
    match src.first() {
        None => Some(false),
        Some(b'\n') => {
            src.advance(1);
            Some(true)
        }
        Some(b'\r') => match src.get(1) {
            None => Some(false),
            Some(b'\n') => {
                src.advance(2);
                Some(true)
            }
            Some(_) => None,
        },
        Some(_) => None,
    }
}

impl Head {
    fn new() -> Self {
        Self {
            line_start: 0,
            scanned: 0,
            command: None,
            entries: Vec::with_capacity(TYPICAL_HEADERS),
            content_length: None,
        }
    }

    /// Reads complete lines; returns the body state once the blank line
    /// that ends the headers has been read.
    fn advance(
        &mut self,
        src: &BytesMut,
        version: Version,
        limits: &Limits,
    ) -> Result<Option<Body>> {
        loop {
            let Some(found) = memchr(b'\n', &src[self.scanned..]) else {
                self.scanned = src.len();
                self.check_partial_line(limits)?;
                return Ok(None);
            };
            let eol = self.scanned + found;
            let start = self.line_start;
            self.line_start = eol + 1;
            self.scanned = eol + 1;
            let line = strip_cr(&src[start..eol]);
            // The same checks, in the same order, as for a partial line.
            if line.len() > limits.max_header_line {
                return Err(Error::HeaderLineTooLong { limit: limits.max_header_line });
            }
            if self.scanned > limits.max_frame_size {
                return Err(Error::FrameTooLarge { limit: limits.max_frame_size });
            }
            if let Some(body) = self.line(line, start, eol, version, limits)? {
                return Ok(Some(body));
            }
        }
    }

    /// Fails early on a line or frame that can no longer fit its limit.
    fn check_partial_line(&self, limits: &Limits) -> Result<()> {
        // One octet of slack: the line may still end in CR LF.
        if self.scanned - self.line_start > limits.max_header_line.saturating_add(1) {
            return Err(Error::HeaderLineTooLong { limit: limits.max_header_line });
        }
        if self.scanned > limits.max_frame_size {
            return Err(Error::FrameTooLarge { limit: limits.max_frame_size });
        }
        Ok(())
    }

    /// Handles the complete `line` that starts at offset `start` and whose
    /// LF is at `eol`.
    fn line(
        &mut self,
        line: &[u8],
        start: usize,
        eol: usize,
        version: Version,
        limits: &Limits,
    ) -> Result<Option<Body>> {
        let Some(command) = self.command else {
            self.command = Some(command_line(line)?);
            return Ok(None);
        };
        if line.is_empty() {
            return Ok(Some(self.take_body(command, eol + 1)));
        }
        if self.entries.len() >= limits.max_headers {
            return Err(Error::TooManyHeaders { limit: limits.max_headers });
        }
        let entry = self.header(line, start, version.escaping(command))?;
        self.entries.push(entry);
        Ok(None)
    }

    /// Records one header line found at offset `start` of the buffer.
    fn header(&mut self, line: &[u8], start: usize, escaping: Escaping) -> Result<Entry> {
        let (name, value) = header_line(line)?;
        // First wins: a repeated content-length is ignored, like any header.
        if self.content_length.is_none() && name == b"content-length" {
            self.content_length = Some(content_length(value)?);
        }
        let value_start = start + name.len() + 1;
        // One scan of the line tells whether either field has escapes.
        if escaping == Escaping::None || memchr(b'\\', line).is_none() {
            return Ok(Entry {
                name: Field::Span(start..value_start - 1),
                value: Field::Span(value_start..value_start + value.len()),
            });
        }
        Ok(Entry {
            name: field(name, start, escaping)?,
            value: field(value, value_start, escaping)?,
        })
    }

    fn take_body(&mut self, command: Command, start: usize) -> Body {
        Body {
            command,
            entries: std::mem::take(&mut self.entries),
            start,
            content_length: self.content_length,
            scanned: start,
        }
    }
}

/// A header field as a range of the buffer, or unescaped into its own
/// buffer when it contains escapes its frame allows.
fn field(raw: &[u8], offset: usize, escaping: Escaping) -> Result<Field> {
    if memchr(b'\\', raw).is_some() {
        return Ok(Field::Owned(unescape(raw, escaping)?));
    }
    Ok(Field::Span(offset..offset + raw.len()))
}

impl Body {
    /// The offset of the terminating NUL once it is buffered.
    fn find_end(&mut self, src: &mut BytesMut, limits: &Limits) -> Result<Option<usize>> {
        match self.content_length {
            Some(len) => self.find_end_by_length(src, len, limits),
            None => self.find_end_by_nul(src, limits),
        }
    }

    fn find_end_by_length(
        &self,
        src: &mut BytesMut,
        len: usize,
        limits: &Limits,
    ) -> Result<Option<usize>> {
        if len > limits.max_body_size {
            return Err(Error::BodyTooLarge { limit: limits.max_body_size });
        }
        let too_large = Error::FrameTooLarge { limit: limits.max_frame_size };
        // Checked: with "unlimited" (usize::MAX) limits a declared length
        // could otherwise wrap around.
        let end = self.start.checked_add(len).ok_or(too_large)?;
        if end >= limits.max_frame_size {
            return Err(too_large);
        }
        if src.len() <= end {
            // Room for the rest of the frame at once, but never more than
            // RESERVE_MAX in one go: a peer's declared length alone must not
            // make the buffer huge before the octets arrive.
            src.reserve((end + 1 - src.len()).min(RESERVE_MAX));
            return Ok(None);
        }
        if src[end] != 0 {
            return Err(Error::MissingNul);
        }
        Ok(Some(end))
    }

    fn find_end_by_nul(&mut self, src: &BytesMut, limits: &Limits) -> Result<Option<usize>> {
        if let Some(found) = memchr(0, &src[self.scanned..]) {
            let end = self.scanned + found;
            self.check_size(end, limits)?;
            return Ok(Some(end));
        }
        self.scanned = src.len();
        self.check_size(self.scanned, limits)?;
        Ok(None)
    }

    /// Checks a body that reaches at least to offset `end`.
    fn check_size(&self, end: usize, limits: &Limits) -> Result<()> {
        if end - self.start > limits.max_body_size {
            return Err(Error::BodyTooLarge { limit: limits.max_body_size });
        }
        if end >= limits.max_frame_size {
            return Err(Error::FrameTooLarge { limit: limits.max_frame_size });
        }
        Ok(())
    }

    /// Splits the frame ending with the NUL at `end` off `src`.
    fn finish(&mut self, src: &mut BytesMut, end: usize) -> Frame {
        let raw: Bytes = src.split_to(end + 1).freeze();
        let body = if end > self.start { raw.slice(self.start..end) } else { Bytes::new() };
        let entries = std::mem::take(&mut self.entries);
        Frame::from_parts(self.command, Headers::from_parts(raw, entries), body)
    }
}
