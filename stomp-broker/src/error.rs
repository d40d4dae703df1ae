//! Errors: protocol violations by a peer, and failures of the embedding API.

use bytes::Bytes;
use stomp_codec::{Command, Frame};

use crate::Rejection;
use crate::stats::ErrorReason;

/// A protocol violation or refusal, answered with an `ERROR` frame after
/// which the connection closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StompError {
    /// The `message` header: short, one line.
    pub(crate) message: String,
    /// The body: the longer explanation.
    pub(crate) detail: Option<String>,
    /// The `receipt` of the frame that caused it, echoed as `receipt-id`.
    pub(crate) receipt: Option<Bytes>,
    /// Other headers of the `ERROR` frame.
    pub(crate) extra: Vec<(&'static str, String)>,
    /// Why, for the metrics.
    pub(crate) reason: ErrorReason,
}

impl StompError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            detail: None,
            receipt: None,
            extra: Vec::new(),
            reason: ErrorReason::Protocol,
        }
    }

    /// Sets why, for the metrics.
    pub(crate) fn reason(mut self, reason: ErrorReason) -> Self {
        self.reason = reason;
        self
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.extra.push((name, value.into()));
        self
    }

    pub(crate) fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// A required header is missing from a frame.
    pub(crate) fn missing(command: Command, header: &str) -> Self {
        Self::new(format!("missing required header '{header}'"))
            .detail(format!("{command} frames must have a '{header}' header."))
    }

    /// Echo the offending frame's `receipt` header, if it had one.
    #[cfg(test)]
    pub(crate) fn for_frame(mut self, frame: &Frame) -> Self {
        if self.receipt.is_none() {
            self.receipt = frame.headers().get_bytes("receipt");
        }
        self
    }

    /// The `ERROR` frame.
    pub(crate) fn to_frame(&self) -> Frame {
        let mut frame = Frame::new(Command::Error).with_header("message", self.message.clone());
        if let Some(receipt) = &self.receipt {
            frame = frame.with_header("receipt-id", receipt.clone());
        }
        for (name, value) in &self.extra {
            frame = frame.with_header(*name, value.clone());
        }
        let body = match &self.detail {
            Some(detail) => format!("{}\n\n{detail}\n", self.message),
            None => format!("{}\n", self.message),
        };
        frame.with_header("content-type", "text/plain").with_body(body)
    }
}

impl From<Rejection> for StompError {
    fn from(r: Rejection) -> Self {
        let error = Self::new(r.message()).reason(ErrorReason::Rejected);
        match r.detail() {
            Some(detail) => error.detail(detail),
            None => error,
        }
    }
}

impl From<stomp_codec::Error> for StompError {
    fn from(e: stomp_codec::Error) -> Self {
        use stomp_codec::Error;
        let reason = match e {
            Error::FrameTooLarge { .. }
            | Error::BodyTooLarge { .. }
            | Error::TooManyHeaders { .. }
            | Error::HeaderLineTooLong { .. } => ErrorReason::Limit,
            _ => ErrorReason::Protocol,
        };
        Self::new(e.to_string()).reason(reason)
    }
}

/// Why a message published through the [`Broker`](crate::Broker) handle
/// was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The queue is full and its overflow policy refuses new messages.
    #[error("queue {0} is full")]
    QueueFull(String),
    /// All queues together hold as much as the broker keeps
    /// ([`Limits::max_total_queue_bytes`](crate::Limits::max_total_queue_bytes)).
    #[error("the broker's queues are full")]
    QueuesFull,
    /// The destination name is empty or not valid.
    #[error("invalid destination: {0}")]
    InvalidDestination(String),
    /// The broker's destination limit is reached.
    #[error("too many destinations")]
    TooManyDestinations,
    /// A header cannot be written in STOMP (an empty name).
    #[error("message cannot be encoded: {0}")]
    Encoding(#[from] stomp_codec::Error),
    /// The broker is shutting down.
    #[error("the broker is shutting down")]
    ShuttingDown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_frame_carries_message_receipt_and_body() {
        let send = Frame::new(Command::Send).with_header("receipt", "r-9");
        let frame = StompError::missing(Command::Send, "destination").for_frame(&send).to_frame();
        assert_eq!(frame.command(), Command::Error);
        assert_eq!(frame.header_str("message"), Some("missing required header 'destination'"));
        assert_eq!(frame.header_str("receipt-id"), Some("r-9"));
        assert!(std::str::from_utf8(frame.body()).unwrap().contains("SEND frames must have"));
    }
}
