//! STOMP over TCP: readiness-based reads into the core's buffer, and
//! writes that coalesce everything queued (up to [`WRITE_BATCH`]) into one
//! vectored `write`, with large bodies written from the shared message
//! buffer rather than copied. Nothing is read until the socket is
//! readable, so an idle connection holds no read buffer.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use stomp_codec::{EncodedFrame, Version, encode_frame};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{CLOSE_GRACE, Core, Tick, with_extra_headers};
use crate::TransportKind;
use crate::broker::Shared;
use crate::error::StompError;
use crate::outbox::{Delivery, Outgoing, Status};
use crate::session::Session;

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

pub(crate) async fn serve_tcp(shared: Arc<Shared>, stream: TcpStream, peer: Option<SocketAddr>) {
    let _ = stream.set_nodelay(true);
    let Some(_slot) = shared.open_connection(TransportKind::Tcp) else {
        Box::pin(refuse(stream, &shared)).await;
        return;
    };
    let session = Session::new(shared.clone(), TransportKind::Tcp, peer);
    let mut conn =
        Connection { core: Core::new(shared.clone(), session), stream, out: WriteQueue::default() };
    let linger = conn.run().await;
    // Boxed, as are the rarer states inside `run`: a connection's future
    // lives as long as the connection, so it is kept to what an idle one
    // needs (see `tests::idle_connection_future_is_small`).
    Box::pin(conn.finish(linger)).await;
}

/// Answers a connection over the limit with an `ERROR` frame (counted
/// once written, as a session's are).
async fn refuse(mut stream: TcpStream, shared: &Shared) {
    let mut out = BytesMut::new();
    let error = too_many_connections(shared);
    if encode_frame(&error.to_frame(), Version::V1_2, &mut out).is_ok()
        && let Ok(Ok(())) = tokio::time::timeout(CLOSE_GRACE, stream.write_all(&out)).await
    {
        shared.stats.error_written(error.reason);
    }
    let _ = stream.shutdown().await;
}

/// The error for a connection over [`Limits::max_connections`](crate::Limits).
pub(super) fn too_many_connections(shared: &Shared) -> StompError {
    let max = shared.policy.limits.max_connections;
    StompError::new("too many connections")
        .reason(crate::stats::ErrorReason::Limit)
        .detail(format!("The server accepts at most {max} connections."))
}

struct Connection {
    core: Core,
    stream: TcpStream,
    out: WriteQueue,
}

impl Connection {
    /// Serves until the connection ends; returns whether to linger for the
    /// peer to read a final `ERROR` before closing.
    async fn run(&mut self) -> bool {
        let token = self.core.shared.token.clone();
        let timer = tokio::time::sleep_until(self.core.deadline(true));
        tokio::pin!(timer);
        let mut armed = timer.deadline();
        loop {
            if self.core.is_done(self.out.is_empty()) {
                return !self.core.peer_closed;
            }
            let can_read = self.core.can_read();
            tokio::select! {
                biased;
                () = token.cancelled(), if !self.core.shutting_down => self.core.shut_down(),
                () = &mut timer => match self.core.on_timer(self.out.is_empty()).await {
                    Tick::Continue => {}
                    Tick::Heartbeat => self.out.tail.put_u8(b'\n'),
                    Tick::End => return !self.core.peer_closed,
                },
                ready = self.stream.writable(), if !self.out.is_empty() => {
                    if ready.is_err() || self.write().is_err() {
                        return false;
                    }
                }
                status = std::future::poll_fn(|cx| {
                    // With a full write queue, only an overflow or a close wakes this.
                    let room = WRITE_BATCH.saturating_sub(self.out.len());
                    self.core.session.outbox.poll_take(cx, &mut self.core.taken, room)
                }) => match status {
                    Status::Taken { left } => self.encode_taken(left),
                    Status::Overflowed => self.core.slow_consumer(),
                },
                ready = self.stream.readable(), if can_read => {
                    let Ok(open) = ready.and_then(|()| self.read()) else { return false };
                    // Frames that arrived just before the end of the stream
                    // are handled, and their answers written, all the same.
                    self.core.process_boxed().await;
                    if !open {
                        self.core.peer_closed();
                    }
                }
            }
            let deadline = self.core.deadline(self.out.is_empty());
            if deadline < armed || timer.is_elapsed() {
                timer.as_mut().reset(deadline);
                armed = deadline;
            }
        }
    }

    /// Reads what the socket has, up to [`READ_BUDGET`]; `false` at EOF.
    fn read(&mut self) -> io::Result<bool> {
        let mut budget = READ_BUDGET;
        let rbuf = &mut self.core.rbuf;
        loop {
            if rbuf.capacity() - rbuf.len() < READ_CHUNK / 8 {
                rbuf.reserve(READ_CHUNK);
            }
            match self.stream.try_read_buf(rbuf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.core.last_read = Instant::now();
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

    /// Encodes what was taken from the outbox into the write queue.
    fn encode_taken(&mut self, left: usize) {
        let version = self.core.session.version();
        let out = &mut self.out;
        let batch = self.core.encode_taken(left, |item| {
            if let Err(error) = out.encode(item, version) {
                tracing::warn!(%error, %version, "a frame could not be encoded for this client; skipped");
            }
        });
        self.core.queued(batch, self.out.end());
    }

    /// Writes what the socket takes now.
    fn write(&mut self) -> io::Result<()> {
        let written = self.out.write_to(&self.stream)?;
        if written > 0 {
            self.core.last_write = Instant::now();
            self.core.wrote(self.out.written, self.out.end());
        }
        Ok(())
    }

    /// After the last frame: close the session, and the socket.
    async fn finish(mut self, linger: bool) {
        self.core.session.close();
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
    /// Octets written since the connection opened: the write position
    /// that the delivery latency compares the ends of batches with.
    written: u64,
}

impl WriteQueue {
    fn len(&self) -> usize {
        self.chunks_len + self.tail.len()
    }

    /// The write position just past the last octet queued.
    fn end(&self) -> u64 {
        self.written + self.len() as u64
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
        let prepared = delivery.message.prepared();
        if prepared.body().len() >= LARGE_BODY {
            let frame = with_extra_headers(delivery, |extra| prepared.to_buf(version, extra))?;
            self.push_chunk(Chunk::Frame(frame));
            return Ok(());
        }
        with_extra_headers(delivery, |extra| prepared.encode_into(version, extra, &mut self.tail))
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
                    self.written += w as u64;
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
