//! Frames encoded once and written to many recipients.

use std::sync::OnceLock;

use bytes::buf::Chain;
use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::encoder::{head_len, header_len, missing_content_length, put_head, put_header};
use crate::escape::is_plain;
use crate::{Command, Frame, Headers, Result, Version};

/// The NUL that ends every frame.
static NUL: &[u8] = b"\0";

/// A frame whose command and headers are encoded once, for fan-out.
///
/// A broker delivering one message to many subscribers writes the same
/// command line, the same headers (`destination`, `message-id`, content
/// headers) and the same body to each; only a few headers differ per
/// subscriber (`subscription`, `ack`). `PreparedFrame` encodes the shared
/// head once per protocol version actually used, and at most once when no
/// header needs escaping (the usual case), and never copies the body: each
/// recipient gets the shared head, its own headers, the shared body and a
/// NUL, either copied into its write buffer
/// ([`encode_into`](Self::encode_into), best for small frames that are
/// coalesced with others) or as a [`Buf`] of shared chunks for a vectored
/// write ([`to_buf`](Self::to_buf), best for large bodies).
///
/// It is `Send + Sync`: put it in an `Arc` and hand it to every connection.
///
/// The per-recipient headers follow the shared ones; since the first
/// occurrence of a header wins, they must not repeat a shared header's name.
///
/// ```
/// use bytes::BytesMut;
/// use stomp_codec::{Command, Frame, PreparedFrame, Version};
///
/// let message = Frame::new(Command::Message)
///     .with_header("destination", "/topic/chat")
///     .with_header("message-id", "42")
///     .with_body("hello");
/// let prepared = PreparedFrame::new(message).unwrap();
///
/// let mut out = BytesMut::new();
/// prepared.encode_into(Version::V1_2, &[(b"subscription", b"sub-1")], &mut out).unwrap();
/// assert_eq!(
///     &out[..],
///     &b"MESSAGE\ndestination:/topic/chat\nmessage-id:42\ncontent-length:5\nsubscription:sub-1\n\nhello\0"[..]
/// );
/// ```
#[derive(Debug)]
pub struct PreparedFrame {
    frame: Frame,
    /// Whether no header needs escaping, so one head serves every version.
    uniform: bool,
    /// The encoded head (command and shared header lines, `content-length`
    /// included, no blank line) per version, filled on first use.
    heads: [OnceLock<Result<Bytes>>; 3],
}

/// One recipient's copy of a [`PreparedFrame`], as shared chunks: the head,
/// the recipient's own headers with the blank line, the body and the NUL.
///
/// Implements [`Buf`], with `chunks_vectored` for `writev`.
#[derive(Debug)]
pub struct EncodedFrame {
    chunks: Chain<Chain<Chain<Bytes, Bytes>, Bytes>, &'static [u8]>,
}

impl PreparedFrame {
    /// Prepares `frame` for writing to many recipients.
    ///
    /// # Errors
    /// [`Error::ContentLengthMismatch`](crate::Error::ContentLengthMismatch)
    /// or [`Error::InvalidContentLength`](crate::Error::InvalidContentLength)
    /// when the frame's `content-length` header is wrong.
    pub fn new(mut frame: Frame) -> Result<Self> {
        if let Some(len) = missing_content_length(&frame)? {
            frame.headers_mut().push("content-length", len.to_string());
        }
        let uniform = frame.headers().iter().all(|(n, v)| is_plain(n) && is_plain(v));
        Ok(Self { frame, uniform, heads: Default::default() })
    }

    /// The command.
    #[must_use]
    pub fn command(&self) -> Command {
        self.frame.command()
    }

    /// The shared headers (`content-length` included).
    #[must_use]
    pub fn headers(&self) -> &Headers {
        self.frame.headers()
    }

    /// The body, shared by every recipient.
    #[must_use]
    pub fn body(&self) -> &Bytes {
        self.frame.body()
    }

    /// The encoded head for `version`, encoding it on first use.
    ///
    /// # Errors
    /// [`Error::Unencodable`](crate::Error::Unencodable) when a shared
    /// header cannot be written in `version`.
    pub fn head(&self, version: Version) -> Result<&Bytes> {
        let slot = if self.uniform { 0 } else { version as usize };
        let head = self.heads[slot].get_or_init(|| self.encode_head(version));
        head.as_ref().map_err(|e| *e)
    }

    fn encode_head(&self, version: Version) -> Result<Bytes> {
        let escaping = version.escaping(self.command());
        let len = head_len(self.command(), self.headers(), escaping)?;
        let mut head = BytesMut::with_capacity(len.len);
        put_head(&mut head, self.command(), self.headers(), len.escaping());
        Ok(head.freeze())
    }

    /// The number of octets a recipient with these headers receives.
    ///
    /// # Errors
    /// As [`encode_into`](Self::encode_into).
    pub fn encoded_len(&self, version: Version, extra: &[(&[u8], &[u8])]) -> Result<usize> {
        Ok(self.head(version)?.len() + self.extra_len(version, extra)? + self.body().len() + 1)
    }

    fn extra_len(&self, version: Version, extra: &[(&[u8], &[u8])]) -> Result<usize> {
        let escaping = version.escaping(self.command());
        let mut len = 1;
        for (name, value) in extra {
            len += header_len(name, value, escaping)?;
        }
        Ok(len)
    }

    fn put_extra(&self, version: Version, extra: &[(&[u8], &[u8])], dst: &mut BytesMut) {
        let escaping = version.escaping(self.command());
        for (name, value) in extra {
            put_header(dst, name, value, escaping);
        }
        dst.put_u8(b'\n');
    }

    /// Appends one recipient's copy, with its own `extra` headers, to `dst`.
    ///
    /// # Errors
    /// [`Error::Unencodable`](crate::Error::Unencodable) when a header
    /// cannot be written in `version`. Nothing is written then.
    pub fn encode_into(
        &self,
        version: Version,
        extra: &[(&[u8], &[u8])],
        dst: &mut BytesMut,
    ) -> Result<()> {
        let head = self.head(version)?;
        let extra_len = self.extra_len(version, extra)?;
        dst.reserve(head.len() + extra_len + self.body().len() + 1);
        dst.put_slice(head);
        self.put_extra(version, extra, dst);
        dst.put_slice(self.body());
        dst.put_u8(0);
        Ok(())
    }

    /// One recipient's copy as shared chunks, for a vectored write: only the
    /// recipient's own headers are written to a new buffer.
    ///
    /// # Errors
    /// As [`encode_into`](Self::encode_into).
    pub fn to_buf(&self, version: Version, extra: &[(&[u8], &[u8])]) -> Result<EncodedFrame> {
        let head = self.head(version)?.clone();
        let mut own = BytesMut::with_capacity(self.extra_len(version, extra)?);
        self.put_extra(version, extra, &mut own);
        let chunks = head.chain(own.freeze()).chain(self.body().clone()).chain(NUL);
        Ok(EncodedFrame { chunks })
    }
}

impl Buf for EncodedFrame {
    fn remaining(&self) -> usize {
        self.chunks.remaining()
    }

    fn chunk(&self) -> &[u8] {
        self.chunks.chunk()
    }

    fn advance(&mut self, cnt: usize) {
        self.chunks.advance(cnt);
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        self.chunks.chunks_vectored(dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, encode_frame};

    fn message(destination: &str) -> Frame {
        Frame::new(Command::Message)
            .with_header("destination", destination.to_owned())
            .with_header("message-id", "7")
            .with_body(vec![b'x'; 100])
    }

    #[test]
    fn copy_and_vectored_paths_agree_with_encode_frame() {
        for version in Version::ALL {
            let prepared = PreparedFrame::new(message("/topic/a")).unwrap();
            let extra: &[(&[u8], &[u8])] = &[(b"subscription", b"s1"), (b"ack", b"a-1")];
            let mut copied = BytesMut::new();
            prepared.encode_into(version, extra, &mut copied).unwrap();
            let mut buf = prepared.to_buf(version, extra).unwrap();
            let vectored = buf.copy_to_bytes(buf.remaining());
            let whole = message("/topic/a")
                .with_header("content-length", "100")
                .with_header("subscription", "s1")
                .with_header("ack", "a-1");
            let mut expected = BytesMut::new();
            encode_frame(&whole, version, &mut expected).unwrap();
            assert_eq!(copied.len(), prepared.encoded_len(version, extra).unwrap());
            assert_eq!(copied, vectored);
            assert_eq!(copied, expected);
        }
    }

    #[test]
    fn uniform_frames_share_one_head() {
        let prepared = PreparedFrame::new(message("/topic/a")).unwrap();
        let a = prepared.head(Version::V1_0).unwrap().as_ptr();
        let b = prepared.head(Version::V1_2).unwrap().as_ptr();
        assert_eq!(a, b);
    }

    #[test]
    fn escaping_differs_by_version() {
        let prepared = PreparedFrame::new(message("/topic/a:b")).unwrap();
        assert!(prepared.head(Version::V1_2).unwrap().windows(3).any(|w| w == b"a\\c"));
        assert!(prepared.head(Version::V1_0).unwrap().windows(3).any(|w| w == b"a:b"));
        let bad = PreparedFrame::new(message("/topic/a\nb")).unwrap();
        assert_eq!(bad.head(Version::V1_0), Err(Error::Unencodable));
        assert_eq!(bad.to_buf(Version::V1_0, &[]).err(), Some(Error::Unencodable));
    }
}
