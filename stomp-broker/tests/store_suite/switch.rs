//! A store for tests of what sits above a store: the memory store behind a
//! switch that makes it fail (a database that is down), hold writes (a slow
//! one) or lose acknowledgements (a commit whose answer never arrives).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use stomp_broker::store::{
    HistoryStore, MemoryStore, MessageId, RoomId, StoreError, StoredMessage,
};
use tokio::sync::Semaphore;

/// A memory store that can be made to fail or to hold writes, and that
/// records every batch it was asked to write.
#[derive(Default)]
pub struct Switch {
    pub inner: MemoryStore,
    /// Fail every write (the database is down).
    pub down: AtomicBool,
    /// Write, then report a failure anyway (the connection dropped after
    /// the commit): the writer must retry and nothing may be stored twice.
    pub lose_acks: AtomicUsize,
    /// When set, a write waits for a permit (a slow database).
    pub gate: Mutex<Option<Arc<Semaphore>>>,
    pub batches: Mutex<Vec<Vec<u64>>>,
    /// Write attempts, failed ones included.
    pub attempts: AtomicUsize,
}

impl Switch {
    pub fn hold(&self) -> Arc<Semaphore> {
        let gate = Arc::new(Semaphore::new(0));
        *self.gate.lock().unwrap() = Some(Arc::clone(&gate));
        gate
    }

    pub fn release(&self) {
        if let Some(gate) = self.gate.lock().unwrap().take() {
            gate.add_permits(1_000_000);
        }
    }

    pub fn batch_sizes(&self) -> Vec<usize> {
        self.batches.lock().unwrap().iter().map(Vec::len).collect()
    }
}

fn unavailable() -> StoreError {
    StoreError::Unavailable("connection refused (test switch)".into())
}

#[async_trait]
impl HistoryStore for Switch {
    async fn append(&self, batch: &[StoredMessage]) -> Result<(), StoreError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let gate = self.gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            let _permit = gate.acquire().await.expect("gate");
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(unavailable());
        }
        self.inner.append(batch).await?;
        self.batches.lock().unwrap().push(batch.iter().map(|m| m.id.get()).collect());
        if self.lose_acks.load(Ordering::SeqCst) > 0 {
            self.lose_acks.fetch_sub(1, Ordering::SeqCst);
            return Err(unavailable());
        }
        Ok(())
    }
    async fn page(
        &self,
        room: RoomId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.inner.page(room, before, limit).await
    }
    async fn after(
        &self,
        room: RoomId,
        after: MessageId,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.inner.after(room, after, limit).await
    }
    async fn count(&self, room: RoomId) -> Result<u64, StoreError> {
        self.inner.count(room).await
    }
    fn max_body_len(&self) -> usize {
        64 * 1024
    }
    async fn ping(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) { Err(unavailable()) } else { Ok(()) }
    }
}
