//! Serving one TCP connection: one task reads, decodes and handles frames,
//! writes what the session's outbox holds, and keeps the heart-beats.
//!
//! Memory per idle connection is kept small: nothing is read until the
//! socket is readable, so an idle connection holds no read buffer, and the
//! write buffer is released once written. Writes coalesce everything
//! queued (up to [`WRITE_BATCH`]) into one vectored `write`; large bodies
//! are written from the shared message buffer, not copied.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use stomp_codec::{EncodedFrame, Item, StompCodec, Version, encode_frame};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::TransportKind;
use crate::broker::Shared;
use crate::error::StompError;
use crate::outbox::{Delivery, Outgoing, Status};
use crate::session::{Flow, Session};

/// Octets read per `read` at most, and the read buffer's first size.
const READ_CHUNK: usize = 8 * 1024;
/// Octets read before other work (writes, timers) gets a turn.
const READ_BUDGET: usize = 256 * 1024;
/// Octets taken from the outbox per write.
const WRITE_BATCH: usize = 256 * 1024;
/// Bodies from this size on are written from the shared buffer, not copied.
const LARGE_BODY: usize = 16 * 1024;
/// Most slices per vectored write.
const MAX_IOV: usize = 64;
/// How long a closing connection may take to flush, and then to close.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub(crate) async fn serve_tcp(shared: Arc<Shared>, stream: TcpStream, peer: Option<SocketAddr>) {
    let _ = stream.set_nodelay(true);
    let Some(_slot) = shared.open_connection() else {
        Box::pin(refuse(stream, &shared)).await;
        return;
    };
    let session = Session::new(shared.clone(), TransportKind::Tcp, peer);
    let mut conn = Connection::new(shared.clone(), stream, session);
    let linger = conn.run().await;
    // Boxed, as are the rarer states inside `run`: a connection's future
    // lives as long as the connection, so it is kept to what an idle one
    // needs (see `tests::idle_connection_future_is_small`).
    Box::pin(conn.finish(linger)).await;
}

/// Answers a connection over the limit with an `ERROR` frame.
async fn refuse(mut stream: TcpStream, shared: &Shared) {
    let max = shared.policy.limits.max_connections;
    let error = StompError::new("too many connections")
        .detail(format!("The server accepts at most {max} connections."));
    let mut out = BytesMut::new();
    if encode_frame(&error.to_frame(), Version::V1_2, &mut out).is_ok() {
        let _ = tokio::time::timeout(CLOSE_GRACE, stream.write_all(&out)).await;
    }
    let _ = stream.shutdown().await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// Writing what is queued, then closing; give up at the deadline.
    Closing(Instant),
}

struct Connection {
    shared: Arc<Shared>,
    stream: TcpStream,
    session: Session,
    codec: StompCodec,
    rbuf: BytesMut,
    out: WriteQueue,
    taken: Vec<Outgoing>,
    started: Instant,
    last_read: Instant,
    last_write: Instant,
    phase: Phase,
    shutting_down: bool,
    /// The peer ended its side of the stream.
    peer_closed: bool,
    rate: Option<RateLimit>,
    /// Reading is paused by the rate limit until then.
    throttled: Option<Instant>,
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

impl Connection {
    fn new(shared: Arc<Shared>, stream: TcpStream, session: Session) -> Self {
        let now = Instant::now();
        let codec = StompCodec::with_limits(shared.policy.limits.frame);
        Self {
            rate: shared.policy.limits.max_frame_rate.map(|r| RateLimit::new(r, now)),
            throttled: None,
            shared,
            stream,
            session,
            codec,
            rbuf: BytesMut::new(),
            out: WriteQueue::default(),
            taken: Vec::new(),
            started: now,
            last_read: now,
            last_write: now,
            phase: Phase::Open,
            shutting_down: false,
            peer_closed: false,
        }
    }

    /// Serves until the connection ends; returns whether to linger for the
    /// peer to read a final `ERROR` before closing.
    async fn run(&mut self) -> bool {
        let token = self.shared.token.clone();
        let timer = tokio::time::sleep_until(self.deadline());
        tokio::pin!(timer);
        let mut armed = timer.deadline();
        loop {
            if matches!(self.phase, Phase::Closing(_))
                && self.out.is_empty()
                && self.session.outbox.pending_bytes() == 0
            {
                return !self.peer_closed;
            }
            let can_read = self.phase == Phase::Open
                && self.session.outbox.pending_bytes()
                    < self.shared.policy.limits.max_pending_bytes;
            tokio::select! {
                biased;
                () = token.cancelled(), if !self.shutting_down => {
                    self.shutting_down = true;
                    self.fail(&StompError::new("server shutting down"), false);
                }
                () = &mut timer => {
                    if self.throttled.is_some_and(|until| Instant::now() >= until) {
                        self.throttled = None;
                        self.process_boxed().await;
                    }
                    if !self.on_timer() {
                        return !self.peer_closed;
                    }
                }
                ready = self.stream.writable(), if !self.out.is_empty() => {
                    if ready.is_err() || self.write().is_err() {
                        return false;
                    }
                }
                status = std::future::poll_fn(|cx| {
                    // With a full write queue, only an overflow or a close wakes this.
                    let room = WRITE_BATCH.saturating_sub(self.out.len());
                    self.session.outbox.poll_take(cx, &mut self.taken, room)
                }) => {
                    match status {
                        Status::Taken => self.encode_taken(),
                        Status::Overflowed => self.slow_consumer(),
                    }
                }
                ready = self.stream.readable(), if can_read => {
                    let Ok(open) = ready.and_then(|()| self.read()) else { return false };
                    // Frames that arrived just before the end of the stream
                    // are handled, and their answers written, all the same.
                    self.process_boxed().await;
                    if !open {
                        self.peer_closed = true;
                        self.close_after_flush();
                    }
                }
            }
            let deadline = self.deadline();
            if deadline < armed || timer.is_elapsed() {
                timer.as_mut().reset(deadline);
                armed = deadline;
            }
        }
    }

    /// Reads what the socket has, up to [`READ_BUDGET`]; `false` at EOF.
    fn read(&mut self) -> io::Result<bool> {
        let mut budget = READ_BUDGET;
        loop {
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 8 {
                self.rbuf.reserve(READ_CHUNK);
            }
            match self.stream.try_read_buf(&mut self.rbuf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.last_read = Instant::now();
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        return Ok(true);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e),
            }
        }
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
            self.shared.stats.frames_in(1);
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
        tracing::debug!(session = ?self.session.is_connected(), message = %error.message, "closing connection with ERROR");
        self.session.outbox.seal(discard_pending);
        self.session.outbox.push_frame(error.to_frame());
        self.shared.stats.error_sent(1);
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
        let error = StompError::new("slow consumer")
            .detail(format!("More than {limit} bytes were waiting to be written to this connection; undelivered messages were dropped."));
        self.fail(&error, true);
    }

    /// Heart-beats and timeouts; `false` when the connection must end now.
    fn on_timer(&mut self) -> bool {
        let now = Instant::now();
        if let Phase::Closing(deadline) = self.phase {
            return now < deadline;
        }
        let heartbeat = self.shared.heartbeat;
        if !self.session.is_connected() {
            if now >= self.started + heartbeat.connect_timeout {
                let secs = heartbeat.connect_timeout.as_secs_f64();
                self.fail(&StompError::new(format!("no CONNECT frame within {secs} s")), false);
            }
            return true;
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
            self.fail(&StompError::new(message), false);
            return true;
        }
        if let Some(send) = agreed.send
            && now >= self.last_write + send
            && self.out.is_empty()
        {
            self.out.tail.put_u8(b'\n');
        }
        true
    }

    /// When the timer should next fire.
    fn deadline(&self) -> Instant {
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
        if let Some(send) = agreed.send.filter(|_| self.out.is_empty()) {
            deadline = deadline.min(self.last_write + send);
        }
        if let Some(receive) = agreed.receive.filter(|_| self.throttled.is_none()) {
            deadline = deadline.min(self.last_read + receive.mul_f64(heartbeat.tolerance));
        }
        deadline
    }

    /// Encodes what was taken from the outbox into the write queue.
    fn encode_taken(&mut self) {
        let version = self.session.version();
        let mut taken = std::mem::take(&mut self.taken);
        let frames = taken.len() as u64;
        for item in taken.drain(..) {
            if let Err(error) = self.out.encode(item, version) {
                tracing::warn!(%error, %version, "a frame could not be encoded for this client; skipped");
            }
        }
        // Kept for the next batch only if small: idle connections hold
        // no buffers.
        if taken.capacity() <= 16 {
            self.taken = taken;
        }
        self.shared.stats.frames_out(frames);
        self.session.on_drained();
    }

    /// Writes what the socket takes now.
    fn write(&mut self) -> io::Result<()> {
        let written = self.out.write_to(&self.stream)?;
        if written > 0 {
            self.last_write = Instant::now();
        }
        Ok(())
    }

    /// After the last frame: close the session, and the socket.
    async fn finish(mut self, linger: bool) {
        self.session.close();
        let _ = tokio::time::timeout(CLOSE_GRACE, self.flush()).await;
        let _ = self.stream.shutdown().await;
        if linger {
            // Closing a socket with unread input resets it, which can make
            // the peer lose the ERROR just sent; read until it closes too.
            let _ = tokio::time::timeout(CLOSE_GRACE, self.drain_input()).await;
        }
    }

    async fn flush(&mut self) {
        while !self.out.is_empty() {
            if self.stream.writable().await.is_err() || self.write().is_err() {
                return;
            }
        }
    }

    async fn drain_input(&mut self) {
        // On the heap: an array here would be part of every connection's
        // future, for its whole life.
        let mut sink = vec![0u8; 4096];
        let mut total = 0usize;
        while total < 1024 * 1024 {
            if self.stream.readable().await.is_err() {
                return;
            }
            match self.stream.try_read(&mut sink) {
                Ok(0) => return,
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
}

/// A piece of output: copied octets, or a frame written from shared buffers.
enum Chunk {
    Bytes(Bytes),
    Frame(EncodedFrame),
}

impl Chunk {
    fn buf(&self) -> &dyn Buf {
        match self {
            Self::Bytes(b) => b,
            Self::Frame(f) => f,
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            Self::Bytes(b) => b.advance(n),
            Self::Frame(f) => f.advance(n),
        }
    }
}

/// Output waiting to be written, in order: `chunks`, then `tail`.
#[derive(Default)]
struct WriteQueue {
    chunks: VecDeque<Chunk>,
    chunks_len: usize,
    /// Small frames are encoded here, back to back.
    tail: BytesMut,
}

impl WriteQueue {
    fn len(&self) -> usize {
        self.chunks_len + self.tail.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push_chunk(&mut self, chunk: Chunk) {
        if !self.tail.is_empty() {
            let copied = self.tail.split().freeze();
            self.chunks_len += copied.len();
            self.chunks.push_back(Chunk::Bytes(copied));
        }
        self.chunks_len += chunk.buf().remaining();
        self.chunks.push_back(chunk);
    }

    fn encode(&mut self, item: Outgoing, version: Version) -> stomp_codec::Result<()> {
        match item {
            Outgoing::Frame(frame) => encode_frame(&frame, version, &mut self.tail),
            Outgoing::Message(delivery) => self.encode_delivery(&delivery, version),
        }
    }

    fn encode_delivery(
        &mut self,
        delivery: &Delivery,
        version: Version,
    ) -> stomp_codec::Result<()> {
        let mut tag = itoa_buf(delivery.ack.unwrap_or(0));
        let tag = tag.as_str();
        let mut extra: [(&[u8], &[u8]); 3] =
            [(b"subscription", &delivery.subscription), (b"", b""), (b"", b"")];
        let mut n = 1;
        if delivery.ack.is_some() {
            extra[n] = (b"ack", tag.as_bytes());
            n += 1;
        }
        if delivery.redelivered {
            extra[n] = (b"redelivered", b"true");
            n += 1;
        }
        let prepared = delivery.message.prepared();
        if prepared.body().len() >= LARGE_BODY {
            let frame = prepared.to_buf(version, &extra[..n])?;
            self.push_chunk(Chunk::Frame(frame));
            return Ok(());
        }
        prepared.encode_into(version, &extra[..n], &mut self.tail)
    }

    /// Writes as much as the socket takes without waiting; the octets written.
    fn write_to(&mut self, stream: &TcpStream) -> io::Result<usize> {
        let mut written = 0;
        while !self.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for chunk in &self.chunks {
                n += chunk.buf().chunks_vectored(&mut iov[n..]);
                if n == MAX_IOV {
                    break;
                }
            }
            if n < MAX_IOV && !self.tail.is_empty() {
                iov[n] = IoSlice::new(&self.tail);
                n += 1;
            }
            match stream.try_write_vectored(&iov[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => {
                    self.advance(w);
                    written += w;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.is_empty() && self.tail.capacity() > 0 {
            // Idle connections hold no write buffer.
            self.tail = BytesMut::new();
        }
        Ok(written)
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                self.tail.advance(n);
                return;
            };
            let remaining = front.buf().remaining();
            if n < remaining {
                front.advance(n);
                self.chunks_len -= n;
                return;
            }
            n -= remaining;
            self.chunks_len -= remaining;
            self.chunks.pop_front();
        }
    }
}

/// A tag as decimal text, without allocating.
fn itoa_buf(n: u64) -> TagText {
    let mut text = TagText { buf: [0; 20], start: 20 };
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

struct TagText {
    buf: [u8; 20],
    start: usize,
}

impl TagText {
    fn as_str(&mut self) -> &str {
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory per idle connection is a first-class figure: the task's
    /// future is most of it. This pins the size so that a change that
    /// grows it (a buffer on the stack, an unboxed rare state) is noticed.
    #[tokio::test]
    async fn idle_connection_future_is_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let shared = crate::Broker::builder().build().shared().clone();
        let task = serve_tcp(shared, server, None);
        let size = size_of_val(&task);
        assert!(size <= 1536, "the connection future grew to {size} bytes");
        drop((task, client));
    }
}
