//! Serving one connection: one task reads, decodes and handles frames,
//! writes what the session's outbox holds, and keeps the heart-beats.
//!
//! [`Core`] is the part every transport shares: the session, the codec and
//! its read buffer, the timers (CONNECT timeout, heart-beats both ways, the
//! closing grace), the frame-rate limit and the way a connection ends
//! (`ERROR`, then close). The transports add only their reading and
//! writing: `tcp` (a byte stream, vectored coalesced writes) and `ws` (one
//! STOMP frame per WebSocket message).
//!
//! Memory per idle connection is kept small: an idle connection holds no
//! read or write buffer, and the states used only while a frame is handled
//! or a connection closes are boxed, so the task's future stays small.

mod tcp;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use stomp_codec::{Command, Item, StompCodec};
use tokio::time::Instant;

use crate::broker::Shared;
use crate::error::StompError;
use crate::outbox::{Delivery, Outgoing};
use crate::session::{Flow, Session};
use crate::stats::{ErrorReason, Unwritten};

pub(crate) use tcp::serve_tcp;
pub use ws::{SUBPROTOCOLS, negotiate_subprotocol};
pub(crate) use ws::{config as ws_config, serve_websocket, serve_ws_tcp};

/// How long a closing connection may take to flush, and then to close.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// Writing what is queued, then closing; give up at the deadline.
    Closing(Instant),
}

/// What the timer asks of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tick {
    /// Nothing more.
    Continue,
    /// Write a heart-beat.
    Heartbeat,
    /// The closing grace is over: end now.
    End,
}

/// A token bucket of frames.
#[derive(Debug, Clone, Copy)]
struct RateLimit {
    per_second: f64,
    tokens: f64,
    refilled: Instant,
}

impl RateLimit {
    fn new(per_second: u32, now: Instant) -> Self {
        let per_second = f64::from(per_second.max(1));
        Self { per_second, tokens: per_second, refilled: now }
    }

    /// Whether a frame may be handled now; if not, when it may.
    fn check(&mut self, now: Instant) -> Result<(), Instant> {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.per_second);
        self.refilled = now;
        if self.tokens >= 1.0 {
            return Ok(());
        }
        Err(now + Duration::from_secs_f64((1.0 - self.tokens) / self.per_second))
    }

    /// Counts one frame handled.
    fn consume(&mut self) {
        self.tokens -= 1.0;
    }
}

/// The transport-independent state of one connection.
struct Core {
    shared: Arc<Shared>,
    session: Session,
    codec: StompCodec,
    /// Octets read and not yet decoded.
    rbuf: BytesMut,
    /// Items taken from the outbox, to be encoded.
    taken: Vec<Outgoing>,
    started: Instant,
    last_read: Instant,
    last_write: Instant,
    phase: Phase,
    shutting_down: bool,
    /// The peer ended its side of the connection.
    peer_closed: bool,
    rate: Option<RateLimit>,
    /// Reading is paused by the rate limit until then.
    throttled: Option<Instant>,
    /// Messages encoded for the socket and not yet written to it.
    unwritten: Unwritten,
    /// The session's outbox in [`Shared::outboxes`](crate::broker::Shared).
    outbox_slot: usize,
}

/// The messages of one batch taken from the outbox.
#[derive(Debug, Clone, Copy)]
struct Batch {
    messages: u32,
    /// When the oldest was routed ([`now_micros`](crate::message::now_micros)).
    oldest: u64,
}

impl Core {
    fn new(shared: Arc<Shared>, session: Session) -> Self {
        let now = Instant::now();
        let outbox_slot = shared.outboxes.register(&session.outbox);
        Self {
            codec: StompCodec::with_limits(shared.policy.limits.frame),
            rate: shared.policy.limits.max_frame_rate.map(|r| RateLimit::new(r, now)),
            shared,
            session,
            rbuf: BytesMut::new(),
            taken: Vec::new(),
            started: now,
            last_read: now,
            last_write: now,
            phase: Phase::Open,
            shutting_down: false,
            peer_closed: false,
            throttled: None,
            unwritten: Unwritten::default(),
            outbox_slot,
        }
    }

    /// Whether to read more: open, not throttled, and the session's own
    /// outbox not over its limit (a client that does not read its
    /// receipts is not read from).
    fn can_read(&self) -> bool {
        self.phase == Phase::Open
            && self.throttled.is_none()
            && self.session.outbox.pending_bytes() < self.shared.policy.limits.max_pending_bytes
    }

    /// Whether a closing connection has written everything.
    fn is_done(&self, written_all: bool) -> bool {
        matches!(self.phase, Phase::Closing(_))
            && written_all
            && self.session.outbox.pending_bytes() == 0
    }

    /// The broker is shutting down: say so, then close.
    fn shut_down(&mut self) {
        if !self.shutting_down {
            self.shutting_down = true;
            self.fail(
                &StompError::new("server shutting down").reason(ErrorReason::Shutdown),
                false,
            );
        }
    }

    /// The peer closed its side: answer what it sent, then close.
    fn peer_closed(&mut self) {
        self.peer_closed = true;
        self.close_after_flush();
    }

    /// [`process`](Self::process), boxed: its state (a frame being
    /// handled, the hooks' futures) exists only during a read, so it is not
    /// made part of every idle connection's future.
    async fn process_boxed(&mut self) {
        Box::pin(self.process()).await;
    }

    /// Decodes and handles every complete frame read (as far as the rate
    /// limit allows).
    async fn process(&mut self) {
        while self.phase == Phase::Open {
            if let Some(Err(until)) = self.rate.as_mut().map(|rate| rate.check(Instant::now())) {
                self.throttled = Some(until);
                return;
            }
            let frame = match self.codec.decode_item(&mut self.rbuf) {
                Ok(Some(Item::Frame(frame))) => {
                    self.rate.iter_mut().for_each(RateLimit::consume);
                    frame
                }
                Ok(Some(Item::Heartbeat)) => continue,
                Ok(None) => break,
                Err(error) => {
                    self.fail(&StompError::from(error), false);
                    break;
                }
            };
            self.shared.stats.frame_in(frame.command());
            let was_connected = self.session.is_connected();
            match self.session.handle(frame).await {
                Ok(Flow::Continue) => {
                    if !was_connected && self.session.is_connected() {
                        self.codec.set_version(self.session.version());
                    }
                }
                Ok(Flow::Disconnect) => self.close_after_flush(),
                Err(error) => self.fail(&error, false),
            }
        }
        if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            // Idle connections hold no read buffer.
            self.rbuf = BytesMut::new();
        }
    }

    /// Sends an `ERROR` frame, then closes.
    fn fail(&mut self, error: &StompError, discard_pending: bool) {
        tracing::debug!(connected = self.session.is_connected(), message = %error.message, "closing connection with ERROR");
        self.session.outbox.seal(discard_pending);
        self.session.outbox.push_frame(error.to_frame());
        self.shared.stats.error_sent(error.reason);
        self.close_after_flush();
    }

    fn close_after_flush(&mut self) {
        self.session.outbox.seal(false);
        if self.phase == Phase::Open {
            self.phase = Phase::Closing(Instant::now() + CLOSE_GRACE);
        }
    }

    fn slow_consumer(&mut self) {
        let limit = self.shared.policy.limits.max_pending_bytes;
        let error = StompError::new("slow consumer").reason(ErrorReason::SlowConsumer).detail(format!(
            "More than {limit} bytes were waiting to be written to this connection; undelivered messages were dropped."
        ));
        self.fail(&error, true);
    }

    /// The timer fired: a rate-limit pause may be over (then frames read
    /// earlier are handled), a heart-beat may be due, a timeout may have
    /// passed. `written_all`: nothing waits to be written.
    async fn on_timer(&mut self, written_all: bool) -> Tick {
        let now = Instant::now();
        if self.throttled.is_some_and(|until| now >= until) {
            self.throttled = None;
            self.process_boxed().await;
        }
        if let Phase::Closing(deadline) = self.phase {
            return if now < deadline { Tick::Continue } else { Tick::End };
        }
        let heartbeat = self.shared.heartbeat;
        if !self.session.is_connected() {
            if now >= self.started + heartbeat.connect_timeout {
                let secs = heartbeat.connect_timeout.as_secs_f64();
                let error = StompError::new(format!("no CONNECT frame within {secs} s"));
                self.fail(&error.reason(ErrorReason::Heartbeat), false);
            }
            return Tick::Continue;
        }
        let agreed = self.session.heartbeat();
        if let Some(receive) = agreed.receive.filter(|_| self.throttled.is_none())
            && now >= self.last_read + receive.mul_f64(heartbeat.tolerance)
        {
            self.shared.stats.heartbeat_timeout(1);
            let ms = receive.as_millis();
            let message = format!(
                "heart-beat timeout: nothing received within the agreed {ms} ms (with tolerance)"
            );
            self.fail(&StompError::new(message).reason(ErrorReason::Heartbeat), false);
            return Tick::Continue;
        }
        if let Some(send) = agreed.send
            && now >= self.last_write + send
            && written_all
        {
            return Tick::Heartbeat;
        }
        Tick::Continue
    }

    /// When the timer should next fire. `written_all`: nothing waits to be
    /// written.
    fn deadline(&self, written_all: bool) -> Instant {
        let mut deadline = Instant::now() + Duration::from_secs(3600);
        if let Some(until) = self.throttled {
            deadline = deadline.min(until);
        }
        if let Phase::Closing(at) = self.phase {
            return deadline.min(at);
        }
        let heartbeat = self.shared.heartbeat;
        if !self.session.is_connected() {
            return deadline.min(self.started + heartbeat.connect_timeout);
        }
        // Every deadline here must move once acted on, or the timer would
        // fire again at once: a beat is due only while nothing waits to be
        // written (writing it moves `last_write`), and silence is not
        // checked while the rate limit keeps the broker from reading.
        let agreed = self.session.heartbeat();
        if let Some(send) = agreed.send.filter(|_| written_all) {
            deadline = deadline.min(self.last_write + send);
        }
        if let Some(receive) = agreed.receive.filter(|_| self.throttled.is_none()) {
            deadline = deadline.min(self.last_read + receive.mul_f64(heartbeat.tolerance));
        }
        deadline
    }

    /// Hands what was taken from the outbox to `encode`, one item at a time
    /// (`left`: the bytes the take left in the outbox); the transport
    /// then says where its write buffer ends ([`queued`](Self::queued)).
    fn encode_taken(&mut self, left: usize, mut encode: impl FnMut(Outgoing)) -> Batch {
        let mut taken = std::mem::take(&mut self.taken);
        let batch = self.record(&taken, left);
        taken.drain(..).for_each(&mut encode);
        // Kept for the next batch only if small: idle connections hold
        // no buffers.
        if taken.capacity() <= 16 {
            self.taken = taken;
        }
        self.session.on_drained();
        batch
    }

    /// `batch` was encoded; the write buffer now ends at write position
    /// `end`.
    fn queued(&mut self, batch: Batch, end: u64) {
        self.unwritten.queued(end, batch.messages, batch.oldest);
    }

    /// The socket took the write buffer up to position `written` (`end`:
    /// where the buffer ends): the messages written get their latency.
    fn wrote(&mut self, written: u64, end: u64) {
        self.unwritten.written(written, end, &self.shared.stats.latency);
    }

    /// Everything encoded was written (a WebSocket flush completed).
    fn wrote_all(&mut self) {
        self.unwritten.all_written(&self.shared.stats.latency);
    }

    /// Counts frames about to be written by command, and samples the
    /// depth of the queue (what was taken, plus the `left` bytes still
    /// waiting); returns the batch's messages for the latency, which is
    /// observed once they are written.
    fn record(&self, taken: &[Outgoing], left: usize) -> Batch {
        let stats = &self.shared.stats;
        let mut batch = Batch { messages: 0, oldest: u64::MAX };
        let mut bytes = 0;
        for item in taken {
            match item {
                Outgoing::Message(delivery) => {
                    batch.messages = batch.messages.saturating_add(1);
                    batch.oldest = batch.oldest.min(delivery.message.routed());
                    bytes += delivery.message.size();
                }
                // The session's own frames are few: counted one by one.
                Outgoing::Frame(frame) => {
                    stats.frame_out(frame.command(), 1);
                    bytes += frame.body().len() + 128;
                }
            }
        }
        // One shared counter update per batch, not per message.
        if batch.messages > 0 {
            stats.frame_out(Command::Message, u64::from(batch.messages));
        }
        if !taken.is_empty() {
            let waiting = left + bytes;
            stats.queued.observe(u64::try_from(waiting).unwrap_or(u64::MAX));
        }
        batch
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.shared.outboxes.unregister(self.outbox_slot);
    }
}

/// Calls `f` with the per-recipient headers of `delivery`: `subscription`,
/// and `ack` and `redelivered` where they apply.
fn with_extra_headers<R>(delivery: &Delivery, f: impl FnOnce(&[(&[u8], &[u8])]) -> R) -> R {
    let mut tag = TagText::new(delivery.ack.unwrap_or(0));
    let tag = tag.as_bytes();
    let mut extra: [(&[u8], &[u8]); 3] =
        [(b"subscription", &delivery.subscription), (b"", b""), (b"", b"")];
    let mut n = 1;
    if delivery.ack.is_some() {
        extra[n] = (b"ack", tag);
        n += 1;
    }
    if delivery.redelivered {
        extra[n] = (b"redelivered", b"true");
        n += 1;
    }
    f(&extra[..n])
}

/// A tag as decimal text, without allocating.
struct TagText {
    buf: [u8; 20],
    start: usize,
}

impl TagText {
    fn new(n: u64) -> Self {
        let mut text = Self { buf: [0; 20], start: 20 };
        let mut n = n;
        loop {
            text.start -= 1;
            text.buf[text.start] = b'0' + u8::try_from(n % 10).unwrap_or(0);
            n /= 10;
            if n == 0 {
                return text;
            }
        }
    }

    fn as_bytes(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}
