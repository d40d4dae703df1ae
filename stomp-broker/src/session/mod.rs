//! One client session: the STOMP protocol state, independent of the
//! transport. A connection task feeds it frames and writes what it puts in
//! its outbox; it can be driven without any I/O.
//!
//! One file per group of commands: `connect`, `send`, `subscribe`
//! (with UNSUBSCRIBE), `ack` (ACK and NACK), `transaction` (BEGIN, COMMIT,
//! ABORT).

mod ack;
mod connect;
mod send;
mod subscribe;
mod transaction;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use stomp_codec::{Command, Frame, Version};

use crate::broker::Shared;
use crate::config::Negotiated;
use crate::error::StompError;
use crate::outbox::Outbox;
use crate::subscription::Subscription;
use crate::{SessionInfo, TransportKind};

pub(crate) use transaction::TxOp;

/// What the connection does after a frame was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Go on reading.
    Continue,
    /// The client sent DISCONNECT: write what is queued (its RECEIPT), then close.
    Disconnect,
}

type Outcome = Result<Flow, StompError>;

/// The protocol state of one session.
#[derive(Debug)]
pub(crate) struct Session {
    shared: Arc<Shared>,
    pub(crate) outbox: Arc<Outbox>,
    /// Broker-wide session number.
    num: u64,
    transport: TransportKind,
    peer: Option<SocketAddr>,
    /// Set by a successful CONNECT.
    info: Option<SessionInfo>,
    heartbeat: Negotiated,
    /// The newest version CONNECT may agree on (a WebSocket subprotocol's).
    max_version: Option<Version>,
    subscriptions: HashMap<Bytes, Arc<Subscription>>,
    transactions: HashMap<Bytes, Vec<TxOp>>,
    /// Octets of the SEND frames held in `transactions`.
    transaction_bytes: usize,
}

impl Session {
    pub(crate) fn new(
        shared: Arc<Shared>,
        transport: TransportKind,
        peer: Option<SocketAddr>,
    ) -> Self {
        let num = shared.next_session();
        Self {
            shared,
            outbox: Outbox::new(),
            num,
            transport,
            peer,
            info: None,
            heartbeat: Negotiated::default(),
            max_version: None,
            subscriptions: HashMap::new(),
            transactions: HashMap::new(),
            transaction_bytes: 0,
        }
    }

    /// Caps the version CONNECT may agree on (with `None`, no cap): the
    /// version of the WebSocket subprotocol agreed in the upgrade.
    pub(crate) fn cap_version(&mut self, max: Option<Version>) {
        self.max_version = max;
    }

    /// Whether CONNECT succeeded.
    pub(crate) fn is_connected(&self) -> bool {
        self.info.is_some()
    }

    /// The negotiated protocol version (1.2 until CONNECT).
    pub(crate) fn version(&self) -> Version {
        self.info.as_ref().map_or(Version::V1_2, |i| i.version)
    }

    /// The negotiated heart-beat intervals.
    pub(crate) fn heartbeat(&self) -> Negotiated {
        self.heartbeat
    }

    fn info(&self) -> &SessionInfo {
        // Every caller runs after CONNECT (see `handle`).
        self.info.as_ref().expect("session is connected")
    }

    /// Handles one frame from the client. A RECEIPT is queued for a frame
    /// that asked for one and succeeded; an error carries its `receipt-id`.
    pub(crate) async fn handle(&mut self, frame: Frame) -> Outcome {
        let receipt = frame.headers().get_bytes("receipt");
        let command = frame.command();
        let result = if self.info.is_none() {
            self.connect(frame).await
        } else {
            self.dispatch(frame).await
        };
        match result {
            Ok(flow) => {
                if let Some(receipt) =
                    receipt.filter(|_| !matches!(command, Command::Connect | Command::Stomp))
                {
                    self.outbox.push_frame(
                        Frame::new(Command::Receipt).with_header("receipt-id", receipt),
                    );
                }
                Ok(flow)
            }
            Err(mut error) => {
                error.receipt = error.receipt.or(receipt);
                Err(error)
            }
        }
    }

    async fn dispatch(&mut self, frame: Frame) -> Outcome {
        match frame.command() {
            Command::Send => self.send(frame).await,
            Command::Subscribe => self.subscribe(frame).await,
            Command::Unsubscribe => self.unsubscribe(&frame),
            Command::Ack => self.ack(&frame, false),
            Command::Nack => self.ack(&frame, true),
            Command::Begin => self.begin(&frame),
            Command::Commit => self.commit(&frame).await,
            Command::Abort => self.abort(&frame),
            Command::Disconnect => Ok(Flow::Disconnect),
            Command::Connect | Command::Stomp => Err(StompError::new("already connected")
                .detail("A session sends CONNECT (or STOMP) once, as its first frame.")),
            command @ (Command::Connected
            | Command::Message
            | Command::Receipt
            | Command::Error) => Err(StompError::new(format!("{command} is a server frame"))
                .detail(format!("Clients may not send {command} frames."))),
        }
    }

    /// Queue subscriptions waiting for this session's outbox to drain get
    /// another chance.
    pub(crate) fn on_drained(&self) {
        if self.outbox.take_wants_room() {
            let limits = &self.shared.policy.limits;
            for queue in self.subscriptions.values().filter_map(|s| s.queue.as_ref()) {
                queue.dispatch(limits);
            }
        }
    }

    /// Ends the session: aborts its transactions, ends its subscriptions
    /// (their unacknowledged queue messages go back to their queues).
    pub(crate) fn close(&mut self) {
        self.outbox.close();
        self.transactions.clear();
        self.transaction_bytes = 0;
        for (_, sub) in self.subscriptions.drain() {
            self.shared.router.unsubscribe(&sub, &self.shared.policy.limits);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

/// The value of a required header, as UTF-8.
fn required<'f>(frame: &'f Frame, name: &str) -> Result<&'f str, StompError> {
    let value = frame.header(name).ok_or_else(|| StompError::missing(frame.command(), name))?;
    std::str::from_utf8(value).map_err(|_| StompError::new(format!("header '{name}' is not UTF-8")))
}
