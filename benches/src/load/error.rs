//! The error of the load generators (`stomp-load`, and `history-load`,
//! which includes this file).

use std::fmt;

/// A load generator or benchmark error: a message for the operator.
#[derive(Debug)]
pub(crate) struct Error(String);

impl Error {
    /// An error with this message.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Self(format!("I/O error: {error}"))
    }
}

impl From<stomp_codec::Error> for Error {
    fn from(error: stomp_codec::Error) -> Self {
        Self(format!("STOMP codec error: {error}"))
    }
}

/// The result type of the load generators.
pub(crate) type Result<T> = std::result::Result<T, Error>;
