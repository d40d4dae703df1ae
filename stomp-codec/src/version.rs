//! Protocol versions and what they change on the wire.

use std::fmt;

use crate::Command;

/// A STOMP protocol version.
///
/// The version decides how header names and values are escaped (see
/// [`Escaping`]). Ordered, so that `max` picks the newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Version {
    /// STOMP 1.0: no header escapes.
    V1_0,
    /// STOMP 1.1: `\n`, `\c` and `\\` escapes.
    V1_1,
    /// STOMP 1.2: `\r`, `\n`, `\c` and `\\` escapes.
    #[default]
    V1_2,
}

impl Version {
    /// Every version, oldest first.
    pub const ALL: [Self; 3] = [Self::V1_0, Self::V1_1, Self::V1_2];

    /// The version as written in `accept-version` and `version` headers.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::V1_0 => "1.0",
            Self::V1_1 => "1.1",
            Self::V1_2 => "1.2",
        }
    }

    /// Parses `1.0`, `1.1` or `1.2`.
    #[must_use]
    pub fn from_bytes(text: &[u8]) -> Option<Self> {
        match text {
            b"1.0" => Some(Self::V1_0),
            b"1.1" => Some(Self::V1_1),
            b"1.2" => Some(Self::V1_2),
            _ => None,
        }
    }

    /// The version to use for a `CONNECT` frame's `accept-version` header:
    /// the newest one offered that is also supported, STOMP 1.0 when the
    /// header is absent, and `None` when nothing offered is supported (the
    /// server then answers with an `ERROR` frame). Unknown entries in the
    /// list are skipped.
    ///
    /// ```
    /// use stomp_codec::Version;
    ///
    /// assert_eq!(Version::negotiate(None), Some(Version::V1_0));
    /// assert_eq!(Version::negotiate(Some(b"1.1,1.2")), Some(Version::V1_2));
    /// assert_eq!(Version::negotiate(Some(b"1.1,2.0")), Some(Version::V1_1));
    /// assert_eq!(Version::negotiate(Some(b"3.0")), None);
    /// ```
    #[must_use]
    pub fn negotiate(accept_version: Option<&[u8]>) -> Option<Self> {
        let Some(list) = accept_version else {
            return Some(Self::V1_0);
        };
        list.split(|&b| b == b',').filter_map(|v| Self::from_bytes(v.trim_ascii())).max()
    }

    /// The header escaping that applies to a frame with this command in
    /// this version.
    #[must_use]
    pub const fn escaping(self, command: Command) -> Escaping {
        if !command.escapes_headers() {
            return Escaping::None;
        }
        match self {
            Self::V1_0 => Escaping::None,
            Self::V1_1 => Escaping::V1_1,
            Self::V1_2 => Escaping::V1_2,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How header names and values are escaped in one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Escaping {
    /// No escapes: STOMP 1.0, and `CONNECT`, `STOMP`, `CONNECTED` frames in
    /// every version. A backslash is an ordinary octet.
    None,
    /// STOMP 1.1: `\n` (LF), `\c` (colon), `\\` (backslash).
    V1_1,
    /// STOMP 1.2: the 1.1 escapes and `\r` (CR).
    V1_2,
}
