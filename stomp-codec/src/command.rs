//! STOMP commands.

use std::fmt;

/// A STOMP command: the first line of a frame.
///
/// The set is closed by the specification (1.0 to 1.2), so the enum is
/// exhaustive: a broker can `match` on it without a wildcard arm, and an
/// unknown command is a decoding error
/// ([`Error::UnknownCommand`](crate::Error::UnknownCommand)) rather than a
/// frame. Decoding a command copies nothing: it is recognised in the read
/// buffer and becomes a one-byte value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Client: open a session (all versions).
    Connect,
    /// Client: open a session (1.1+, the same as `CONNECT`).
    Stomp,
    /// Server: the session is open.
    Connected,
    /// Client: send a message to a destination.
    Send,
    /// Client: subscribe to a destination.
    Subscribe,
    /// Client: end a subscription.
    Unsubscribe,
    /// Client: acknowledge a message.
    Ack,
    /// Client: refuse a message (1.1+).
    Nack,
    /// Client: begin a transaction.
    Begin,
    /// Client: commit a transaction.
    Commit,
    /// Client: abort a transaction.
    Abort,
    /// Client: close the session.
    Disconnect,
    /// Server: a message for a subscription.
    Message,
    /// Server: a frame that asked for a receipt was processed.
    Receipt,
    /// Server: something went wrong; the connection closes.
    Error,
}

impl Command {
    /// Every command, in the order of the specification.
    pub const ALL: [Self; 15] = [
        Self::Connect,
        Self::Stomp,
        Self::Connected,
        Self::Send,
        Self::Subscribe,
        Self::Unsubscribe,
        Self::Ack,
        Self::Nack,
        Self::Begin,
        Self::Commit,
        Self::Abort,
        Self::Disconnect,
        Self::Message,
        Self::Receipt,
        Self::Error,
    ];

    /// The command as it appears on the wire.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::Stomp => "STOMP",
            Self::Connected => "CONNECTED",
            Self::Send => "SEND",
            Self::Subscribe => "SUBSCRIBE",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::Ack => "ACK",
            Self::Nack => "NACK",
            Self::Begin => "BEGIN",
            Self::Commit => "COMMIT",
            Self::Abort => "ABORT",
            Self::Disconnect => "DISCONNECT",
            Self::Message => "MESSAGE",
            Self::Receipt => "RECEIPT",
            Self::Error => "ERROR",
        }
    }

    /// Recognises a command line (without its line ending). Commands are
    /// case-sensitive.
    #[must_use]
    pub fn from_bytes(line: &[u8]) -> Option<Self> {
        Some(match line {
            b"SEND" => Self::Send,
            b"MESSAGE" => Self::Message,
            b"ACK" => Self::Ack,
            b"NACK" => Self::Nack,
            b"SUBSCRIBE" => Self::Subscribe,
            b"UNSUBSCRIBE" => Self::Unsubscribe,
            b"RECEIPT" => Self::Receipt,
            b"CONNECT" => Self::Connect,
            b"STOMP" => Self::Stomp,
            b"CONNECTED" => Self::Connected,
            b"BEGIN" => Self::Begin,
            b"COMMIT" => Self::Commit,
            b"ABORT" => Self::Abort,
            b"DISCONNECT" => Self::Disconnect,
            b"ERROR" => Self::Error,
            _ => return None,
        })
    }

    /// Whether header escapes apply to this command. The specification
    /// exempts the frames that open a session (`CONNECT`, `STOMP`,
    /// `CONNECTED`) so that they stay readable by STOMP 1.0 peers before a
    /// version is negotiated.
    #[must_use]
    pub const fn escapes_headers(self) -> bool {
        !matches!(self, Self::Connect | Self::Stomp | Self::Connected)
    }

    /// Whether the specification allows this command to carry a body
    /// (`SEND`, `MESSAGE`, `ERROR`).
    #[must_use]
    pub const fn allows_body(self) -> bool {
        matches!(self, Self::Send | Self::Message | Self::Error)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
