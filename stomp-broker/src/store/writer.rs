//! The batching writer: a bounded buffer between the delivery path and a
//! [`HistoryStore`].
//!
//! [`HistoryWriter::append`] never waits: it puts the message in the
//! buffer or refuses it ([`AppendError::Full`]) so the sender can be told.
//! One task writes the buffer's oldest messages as one batch (up to
//! [`WriterConfig::max_batch`] messages or [`WriterConfig::max_batch_bytes`]
//! bytes), waiting [`WriterConfig::linger`] first so that a trickle of
//! messages still makes batches; while a write is in flight, new messages
//! gather for the next one. A failed batch is retried, with exponential
//! backoff, before anything behind it, so nothing is reordered and nothing
//! accepted is dropped; appends are idempotent per `(room, id)`, so a
//! retry after a write that did reach the database stores nothing twice.
//! Messages stay readable from the buffer until their batch is written,
//! which is why reads go through the writer ([`HistoryWriter::page`],
//! [`HistoryWriter::after`]).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::stats::{Histogram, LATENCY_BOUNDS};

use super::{HistoryStore, MessageId, RoomId, StoreError, StoredMessage};

/// Settings of a [`HistoryWriter`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WriterConfig {
    /// Messages the buffer holds before appends are refused (100,000).
    pub capacity: usize,
    /// Bytes the buffer holds before appends are refused (64 MiB).
    pub capacity_bytes: usize,
    /// The most messages written in one batch (1,000).
    pub max_batch: usize,
    /// The most bytes written in one batch (4 MiB; a single larger message
    /// is written alone).
    pub max_batch_bytes: usize,
    /// How long the writer waits after the first message of a batch for
    /// more to arrive (5 ms). While a write is in flight, messages gather
    /// anyway, so this matters only at low rates.
    pub linger: Duration,
    /// The first pause after a failed write (50 ms); it doubles on each
    /// failure up to [`retry_max`](Self::retry_max).
    pub retry_initial: Duration,
    /// The longest pause between retries (5 s).
    pub retry_max: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            capacity_bytes: 64 * 1024 * 1024,
            max_batch: 1_000,
            max_batch_bytes: 4 * 1024 * 1024,
            linger: Duration::from_millis(5),
            retry_initial: Duration::from_millis(50),
            retry_max: Duration::from_secs(5),
        }
    }
}

/// Why [`HistoryWriter::append`] refused a message. Nothing was buffered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The buffer is full: the database is down or slower than the
    /// message rate. The sender should be told and may retry later.
    #[error("history buffer full ({buffered} messages, {bytes} bytes waiting to be written)")]
    Full {
        /// Messages waiting.
        buffered: usize,
        /// Bytes waiting.
        bytes: usize,
    },
    /// The message cannot be stored (see [`StoredMessage::validate`]).
    #[error("{0}")]
    Invalid(String),
    /// The writer was closed.
    #[error("history writer closed")]
    Closed,
}

/// A snapshot of a [`HistoryWriter`]'s counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriterStats {
    /// Messages waiting in the buffer (including the batch being written).
    pub buffered: usize,
    /// Bytes waiting in the buffer.
    pub buffered_bytes: usize,
    /// Messages accepted since the start.
    pub accepted: u64,
    /// Messages written to the store since the start.
    pub written: u64,
    /// Appends refused because the buffer was full.
    pub refused: u64,
    /// Batches written.
    pub batches: u64,
    /// Failed write attempts (each retried).
    pub failures: u64,
    /// Messages in the last batch written.
    pub last_batch: usize,
    /// How long the last successful batch write took.
    pub last_write: Duration,
    /// Whether the last write attempt failed (the store is unavailable).
    pub failing: bool,
}

/// Messages still buffered when [`HistoryWriter::close`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} messages could not be written before the close deadline")]
pub struct Unflushed(pub usize);

/// A bounded, batching writer in front of a [`HistoryStore`], and the way
/// to read history including what it has not written yet. Cheap to clone;
/// the writing task stops when [`close`](Self::close) is called or the
/// last clone is dropped (after writing what it holds).
#[derive(Clone)]
pub struct HistoryWriter {
    shared: Arc<Handle>,
}

impl fmt::Debug for HistoryWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistoryWriter").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

/// Dropping the last [`HistoryWriter`] closes the buffer; the task writes
/// what is left and ends.
struct Handle {
    inner: Arc<Inner>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.inner.close_buffer();
    }
}

struct Inner {
    store: Arc<dyn HistoryStore>,
    config: WriterConfig,
    max_body: usize,
    state: Mutex<State>,
    /// Wakes the writing task when a message arrives or the buffer closes.
    wake: Notify,
    /// Messages done (written), for [`HistoryWriter::flush`].
    done: watch::Sender<u64>,
    /// Stops retries at once (the close deadline passed).
    abort: CancellationToken,
    refused: AtomicU64,
    batches: AtomicU64,
    failures: AtomicU64,
    /// Messages per batch written.
    pub(crate) batch_sizes: Histogram,
    /// Microseconds per batch write attempt, by outcome: succeeded, or
    /// failed (an error, a timeout, or abandoned at the close deadline).
    /// Failed attempts are kept apart so that a store that fails slowly
    /// shows, and does not hide among the fast successes.
    pub(crate) write_times: [Histogram; 2],
}

/// The indices of `Inner::write_times`: attempts that succeeded, failed.
const SUCCEEDED: usize = 0;
const FAILED: usize = 1;

/// Messages per batch.
const BATCH_BOUNDS: &[u64] = &[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

#[derive(Default)]
struct State {
    queue: VecDeque<StoredMessage>,
    bytes: usize,
    accepted: u64,
    closed: bool,
    last_batch: usize,
    last_write: Duration,
    failing: bool,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is never held across an await or a call that can panic
        // with the state half-changed, so a poisoned lock's state is sound.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn close_buffer(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }
}

impl HistoryWriter {
    /// Starts a writer for `store` on the current Tokio runtime.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn(store: Arc<dyn HistoryStore>, config: WriterConfig) -> Self {
        let max_body = store.max_body_len();
        let inner = Arc::new(Inner {
            store,
            config,
            max_body,
            state: Mutex::default(),
            wake: Notify::new(),
            done: watch::Sender::new(0),
            abort: CancellationToken::new(),
            refused: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            batch_sizes: Histogram::new(BATCH_BOUNDS),
            write_times: [Histogram::new(LATENCY_BOUNDS), Histogram::new(LATENCY_BOUNDS)],
        });
        tokio::spawn(run(Arc::clone(&inner)));
        Self { shared: Arc::new(Handle { inner }) }
    }

    fn inner(&self) -> &Inner {
        &self.shared.inner
    }

    /// The store written to.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn HistoryStore> {
        &self.inner().store
    }

    /// Buffers a message for writing, without waiting.
    ///
    /// The caller assigns ids; a room's messages should be appended in id
    /// order (the writer keeps the order it is given).
    ///
    /// # Errors
    /// [`AppendError::Full`] when the buffer is at its bound,
    /// [`AppendError::Invalid`] for a message no backend can store,
    /// [`AppendError::Closed`] after [`close`](Self::close).
    pub fn append(&self, message: StoredMessage) -> Result<(), AppendError> {
        let inner = self.inner();
        message.validate(inner.max_body).map_err(|e| match e {
            StoreError::Invalid(why) => AppendError::Invalid(why),
            other => AppendError::Invalid(other.to_string()),
        })?;
        let weight = message.weight();
        let mut state = inner.lock();
        if state.closed {
            return Err(AppendError::Closed);
        }
        let config = &inner.config;
        if state.queue.len() >= config.capacity
            || (!state.queue.is_empty() && state.bytes + weight > config.capacity_bytes)
        {
            inner.refused.fetch_add(1, Ordering::Relaxed);
            return Err(AppendError::Full { buffered: state.queue.len(), bytes: state.bytes });
        }
        state.queue.push_back(message);
        state.bytes += weight;
        state.accepted += 1;
        drop(state);
        inner.wake.notify_one();
        Ok(())
    }

    /// Waits until every message appended before this call is written.
    /// Waits as long as the store is down.
    pub async fn flush(&self) {
        let target = self.inner().lock().accepted;
        let mut done = self.inner().done.subscribe();
        // The sender lives in `inner`, which `self` keeps alive.
        let _ = done.wait_for(|&n| n >= target).await;
    }

    /// Refuses further appends and waits up to `timeout` for the buffer to
    /// be written (for a graceful shutdown).
    ///
    /// # Errors
    /// [`Unflushed`] with the number of messages still buffered when the
    /// deadline passed; the writer then stops retrying.
    pub async fn close(&self, timeout: Duration) -> Result<(), Unflushed> {
        let inner = self.inner();
        inner.close_buffer();
        let target = inner.lock().accepted;
        let mut done = inner.done.subscribe();
        if tokio::time::timeout(timeout, done.wait_for(|&n| n >= target)).await.is_ok() {
            return Ok(());
        }
        inner.abort.cancel();
        let left = inner.lock().queue.len();
        tracing::error!(messages = left, "history writer closed with messages not written");
        Err(Unflushed(left))
    }

    /// Counters and the buffer's size.
    #[must_use]
    pub fn stats(&self) -> WriterStats {
        let inner = self.inner();
        let state = inner.lock();
        WriterStats {
            buffered: state.queue.len(),
            buffered_bytes: state.bytes,
            accepted: state.accepted,
            written: *inner.done.borrow(),
            refused: inner.refused.load(Ordering::Relaxed),
            batches: inner.batches.load(Ordering::Relaxed),
            failures: inner.failures.load(Ordering::Relaxed),
            last_batch: state.last_batch,
            last_write: state.last_write,
            failing: state.failing,
        }
    }

    /// Buffered messages of `room` matching `keep`, in buffer order.
    fn buffered(&self, room: RoomId, keep: impl Fn(MessageId) -> bool) -> Vec<StoredMessage> {
        let state = self.inner().lock();
        state.queue.iter().filter(|m| m.room == room && keep(m.id)).cloned().collect()
    }

    /// Batch sizes, and write times (microseconds) of the attempts that
    /// succeeded and of those that failed, for the metrics.
    #[cfg(feature = "metrics")]
    pub(crate) fn histograms(
        &self,
    ) -> (crate::stats::HistogramSnapshot, [crate::stats::HistogramSnapshot; 2]) {
        let inner = self.inner();
        (inner.batch_sizes.snapshot(), inner.write_times.each_ref().map(Histogram::snapshot))
    }

    /// Like [`HistoryStore::page`] (newest first, ids below `before`), and
    /// including messages not written yet.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn page(
        &self,
        room: RoomId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        // The buffer first: a message leaves it only after the store has
        // it, so reading the store second cannot miss one in between.
        let buffered = self.buffered(room, |id| before.is_none_or(|b| id < b));
        let stored = self.store().page(room, before, limit).await?;
        Ok(merge(stored, buffered, limit, |a, b| b.cmp(&a)))
    }

    /// Like [`HistoryStore::after`] (oldest first, ids above `after`), and
    /// including messages not written yet.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn after(
        &self,
        room: RoomId,
        after: MessageId,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let buffered = self.buffered(room, |id| id > after);
        let stored = self.store().after(room, after, limit).await?;
        Ok(merge(stored, buffered, limit, |a, b| a.cmp(&b)))
    }

    /// The highest id of `room`, written or buffered.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn last_id(&self, room: RoomId) -> Result<Option<MessageId>, StoreError> {
        let buffered = self.buffered(room, |_| true).iter().map(|m| m.id).max();
        let stored = self.store().last_id(room).await?;
        Ok(buffered.max(stored))
    }
}

/// Both lists, sorted by `order`, without duplicate ids, at most `limit`.
fn merge(
    mut stored: Vec<StoredMessage>,
    buffered: Vec<StoredMessage>,
    limit: usize,
    order: impl Fn(MessageId, MessageId) -> std::cmp::Ordering,
) -> Vec<StoredMessage> {
    if buffered.is_empty() {
        stored.truncate(limit);
        return stored;
    }
    stored.extend(buffered);
    stored.sort_by(|a, b| order(a.id, b.id));
    stored.dedup_by_key(|m| m.id);
    stored.truncate(limit);
    stored
}

/// The writing task.
async fn run(inner: Arc<Inner>) {
    let config = inner.config.clone();
    loop {
        let (lingering, closed) = {
            let state = inner.lock();
            (state.queue.len(), state.closed)
        };
        if lingering == 0 {
            if closed {
                return;
            }
            inner.wake.notified().await;
            continue;
        }
        if lingering < config.max_batch && !closed && !config.linger.is_zero() {
            tokio::time::sleep(config.linger).await;
        }
        let batch = take_batch(&inner.lock(), &config);
        if !write(&inner, &batch, &config).await {
            return;
        }
        let mut state = inner.lock();
        for _ in 0..batch.len() {
            if let Some(m) = state.queue.pop_front() {
                state.bytes -= m.weight();
            }
        }
        state.last_batch = batch.len();
        drop(state);
        inner.batch_sizes.observe(batch.len() as u64);
        inner.batches.fetch_add(1, Ordering::Relaxed);
        inner.done.send_modify(|n| *n += batch.len() as u64);
    }
}

/// Copies of the oldest messages, up to the batch bounds (at least one).
fn take_batch(state: &State, config: &WriterConfig) -> Vec<StoredMessage> {
    let mut bytes = 0;
    let mut batch = Vec::with_capacity(state.queue.len().min(config.max_batch));
    for message in state.queue.iter().take(config.max_batch.max(1)) {
        let weight = message.weight();
        if !batch.is_empty() && bytes + weight > config.max_batch_bytes {
            break;
        }
        bytes += weight;
        batch.push(message.clone());
    }
    batch
}

/// Writes one batch, retrying until it succeeds. Returns `false` when the
/// close deadline passed first.
async fn write(inner: &Inner, batch: &[StoredMessage], config: &WriterConfig) -> bool {
    let mut pause = config.retry_initial;
    let mut failing_since: Option<Instant> = None;
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            r = inner.store.append(batch) => r,
            () = inner.abort.cancelled() => {
                inner.write_times[FAILED].observe_micros(started.elapsed());
                return false;
            }
        };
        let elapsed = started.elapsed();
        let outcome = if result.is_ok() { SUCCEEDED } else { FAILED };
        inner.write_times[outcome].observe_micros(elapsed);
        match result {
            Ok(()) => {
                let mut state = inner.lock();
                state.last_write = elapsed;
                state.failing = false;
                drop(state);
                if let Some(since) = failing_since {
                    tracing::info!(
                        after = ?since.elapsed(),
                        "history store writable again; writing what was buffered"
                    );
                }
                return true;
            }
            Err(e) => {
                inner.failures.fetch_add(1, Ordering::Relaxed);
                inner.lock().failing = true;
                if failing_since.is_none() {
                    failing_since = Some(Instant::now());
                    if e.is_transient() {
                        tracing::warn!(error = %e, messages = batch.len(), "history write failed; retrying");
                    } else {
                        tracing::error!(error = %e, messages = batch.len(), "history write failed; retrying");
                    }
                } else {
                    tracing::debug!(error = %e, ?pause, "history write failed again");
                }
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = inner.abort.cancelled() => return false,
                }
                pause = (pause * 2).min(config.retry_max);
            }
        }
    }
}

/// An [`AppHandler`](crate::AppHandler) that stores what it is sent can
/// answer a refused append with this: the sender gets an `ERROR` frame
/// saying why (and its `receipt-id`, if it asked for a receipt), never a
/// `RECEIPT` for a message that was not kept.
impl From<AppendError> for crate::Rejection {
    fn from(e: AppendError) -> Self {
        let detail = match &e {
            AppendError::Full { .. } => {
                "The message was not accepted: history storage is behind (the database is down \
                 or slow). Nothing was stored or delivered; send it again later."
            }
            AppendError::Invalid(_) => "The message cannot be stored.",
            AppendError::Closed => "The server is shutting down; the message was not accepted.",
        };
        crate::Rejection::new(e.to_string()).with_detail(detail)
    }
}
