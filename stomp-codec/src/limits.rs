//! Size limits applied while decoding.

/// Bounds on what the decoder accepts, checked before anything is buffered
/// beyond them.
///
/// The defaults are safe for a broker facing the Internet and generous for
/// chat traffic; raise them only as far as your peers need.
///
/// | limit | default | why |
/// |---|---|---|
/// | [`max_frame_size`](Self::max_frame_size) | 8 MiB | the same as `tokio_util`'s `LengthDelimitedCodec`; bounds the read buffer of one connection |
/// | [`max_body_size`](Self::max_body_size) | 8 MiB | a `content-length` above it is refused before the body is read |
/// | [`max_headers`](Self::max_headers) | 128 | real clients send fewer than 20; bounds per-frame allocation |
/// | [`max_header_line`](Self::max_header_line) | 16 KiB | room for a JWT in `passcode` with margin |
///
/// ```
/// use stomp_codec::Limits;
///
/// let limits = Limits::default().max_frame_size(1 << 20).max_headers(32);
/// assert_eq!(limits.max_frame_size, 1 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest frame in octets, from the first octet of the command to the
    /// terminating NUL inclusive.
    pub max_frame_size: usize,
    /// Largest body in octets.
    pub max_body_size: usize,
    /// Most headers in one frame.
    pub max_headers: usize,
    /// Longest command or header line in octets, without its line ending.
    pub max_header_line: usize,
}

impl Limits {
    /// Default [`max_frame_size`](Self::max_frame_size): 8 MiB.
    pub const DEFAULT_MAX_FRAME_SIZE: usize = 8 * 1024 * 1024;
    /// Default [`max_body_size`](Self::max_body_size): 8 MiB.
    pub const DEFAULT_MAX_BODY_SIZE: usize = 8 * 1024 * 1024;
    /// Default [`max_headers`](Self::max_headers): 128.
    pub const DEFAULT_MAX_HEADERS: usize = 128;
    /// Default [`max_header_line`](Self::max_header_line): 16 KiB.
    pub const DEFAULT_MAX_HEADER_LINE: usize = 16 * 1024;

    /// Sets [`max_frame_size`](Self::max_frame_size).
    #[must_use]
    pub fn max_frame_size(mut self, octets: usize) -> Self {
        self.max_frame_size = octets;
        self
    }

    /// Sets [`max_body_size`](Self::max_body_size).
    #[must_use]
    pub fn max_body_size(mut self, octets: usize) -> Self {
        self.max_body_size = octets;
        self
    }

    /// Sets [`max_headers`](Self::max_headers).
    #[must_use]
    pub fn max_headers(mut self, count: usize) -> Self {
        self.max_headers = count;
        self
    }

    /// Sets [`max_header_line`](Self::max_header_line).
    #[must_use]
    pub fn max_header_line(mut self, octets: usize) -> Self {
        self.max_header_line = octets;
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_size: Self::DEFAULT_MAX_FRAME_SIZE,
            max_body_size: Self::DEFAULT_MAX_BODY_SIZE,
            max_headers: Self::DEFAULT_MAX_HEADERS,
            max_header_line: Self::DEFAULT_MAX_HEADER_LINE,
        }
    }
}
