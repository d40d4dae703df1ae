//! The publisher task: drains the outbound queue into pipelines of
//! `PUBLISH` commands, one round trip per batch.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{Client, Pipeline, RedisError, cmd};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use tokio::time::Interval;

use super::retry::{Outage, Retry, Role};
use super::{State, connect_publisher, count, ping_interval, timeout};

/// How long the publisher may spend, on close, sending what is queued.
const FLUSH_ON_CLOSE: Duration = Duration::from_secs(1);

/// Batch entries allocated up front, at most (a batch grows beyond).
const PREALLOCATED: usize = 1_024;

/// What the publisher does next.
enum Next {
    /// Send the batch.
    Batch,
    /// `PING`: idle for a while, or the subscriber lost its connection
    /// (this one is likely gone too, and finding out now spares the next
    /// batch).
    Check,
    /// Closed or dropped.
    Stop,
}

/// A message on its way: the channel and the encoded envelope.
#[derive(Debug)]
pub(super) struct Outgoing {
    pub(super) channel: Arc<str>,
    pub(super) payload: Bytes,
}

/// Owns the publishing connection and the receiving end of the queue.
pub(super) struct Publisher {
    client: Client,
    connection: MultiplexedConnection,
    queue: mpsc::Receiver<Outgoing>,
    state: Arc<State>,
    token: CancellationToken,
    max_pipeline: usize,
    retry: Retry,
    /// Reused from batch to batch.
    pipeline: Pipeline,
}

impl Publisher {
    pub(super) fn new(
        client: Client,
        connection: MultiplexedConnection,
        queue: mpsc::Receiver<Outgoing>,
        state: Arc<State>,
        token: CancellationToken,
        max_pipeline: usize,
        retry: Retry,
    ) -> Self {
        let pipeline = Pipeline::with_capacity(max_pipeline.min(PREALLOCATED));
        Self { client, connection, queue, state, token, max_pipeline, retry, pipeline }
    }

    /// Runs until the backplane is closed or dropped.
    pub(super) async fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_pipeline.min(PREALLOCATED));
        let mut idle = ping_interval();
        loop {
            let (result, dropped) = match self.next(&mut batch, &mut idle).await {
                Next::Stop => break,
                Next::Batch => (self.send(&batch).await, batch.len()),
                Next::Check => (timeout(cmd("PING").exec_async(&mut self.connection)).await, 0),
            };
            batch.clear();
            if let Err(error) = result {
                self.state.dropped(dropped);
                if !self.reconnect(&error, count(dropped)).await {
                    break;
                }
            }
            idle.reset();
        }
        // Closed (or dropped): what is still queued goes out if it can.
        let flushed = tokio::time::timeout(FLUSH_ON_CLOSE, self.flush()).await;
        if flushed.is_err() {
            tracing::warn!(node = self.state.node, "Redis backplane: not all queued messages sent");
        }
        self.queue.close();
        self.drop_queued();
        self.state.publisher_up.store(false, Ordering::Release);
    }

    /// Waits for a message, then takes what else is queued, up to
    /// `max_pipeline`; or for a reason to check the connection.
    async fn next(&mut self, batch: &mut Vec<Outgoing>, idle: &mut Interval) -> Next {
        let first = tokio::select! {
            biased;
            () = self.token.cancelled() => return Next::Stop,
            message = self.queue.recv() => message,
            () = self.state.suspect.notified() => return Next::Check,
            _ = idle.tick() => return Next::Check,
        };
        let Some(first) = first else { return Next::Stop };
        batch.push(first);
        while batch.len() < self.max_pipeline {
            match self.queue.try_recv() {
                Ok(message) => batch.push(message),
                Err(_) => break,
            }
        }
        Next::Batch
    }

    /// One pipeline, one round trip.
    async fn send(&mut self, batch: &[Outgoing]) -> Result<(), RedisError> {
        self.pipeline.clear();
        for message in batch {
            self.pipeline.cmd("PUBLISH").arg(&*message.channel).arg(&message.payload[..]).ignore();
        }
        self.pipeline.exec_async(&mut self.connection).await?;
        self.state.published.fetch_add(count(batch.len()), Ordering::Relaxed);
        Ok(())
    }

    /// Sends what is queued, when connected (on close).
    async fn flush(&mut self) {
        let mut batch = Vec::with_capacity(self.max_pipeline.min(PREALLOCATED));
        while self.state.publisher_up.load(Ordering::Acquire) {
            while batch.len() < self.max_pipeline
                && let Ok(message) = self.queue.try_recv()
            {
                batch.push(message);
            }
            if batch.is_empty() {
                return;
            }
            if self.send(&batch).await.is_err() {
                self.state.dropped(batch.len());
                return;
            }
            batch.clear();
        }
    }

    /// Reconnects with backoff, dropping what is queued meanwhile. `false`
    /// if the backplane was closed or dropped first.
    async fn reconnect(&mut self, error: &RedisError, dropped: u64) -> bool {
        let mut outage = Outage::begin(&self.state, Role::Publisher, error, dropped);
        let mut backoff = self.retry.backoff();
        let token = self.token.clone();
        loop {
            self.drop_queued();
            let delay = backoff.next_delay();
            if token.run_until_cancelled(tokio::time::sleep(delay)).await.is_none() {
                return false;
            }
            self.drop_queued();
            let connecting = connect_publisher(&self.client);
            let Some(attempt) = token.run_until_cancelled(connecting).await else { return false };
            match attempt {
                Ok(connection) => {
                    self.connection = connection;
                    outage.end(&self.state);
                    return true;
                }
                Err(error) => outage.failed(&self.state, &error),
            }
        }
    }

    /// Drops (and counts) every queued message.
    fn drop_queued(&mut self) {
        let mut dropped = 0;
        while self.queue.try_recv().is_ok() {
            dropped += 1;
        }
        self.state.dropped(dropped);
    }
}
