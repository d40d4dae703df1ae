//! BEGIN, COMMIT and ABORT: SEND, ACK and NACK held until COMMIT.

use std::sync::Arc;

use bytes::Bytes;
use stomp_codec::Frame;

use super::{Flow, Outcome, Session, required};
use crate::error::StompError;
use crate::subscription::Subscription;

/// A frame held in a transaction.
#[derive(Debug)]
pub(crate) enum TxOp {
    /// A SEND, copied out of the read buffer.
    Send(Frame),
    /// An ACK (or NACK) of a delivery.
    Ack { sub: Arc<Subscription>, tag: u64, nack: bool },
}

fn unknown(tx: &[u8]) -> StompError {
    StompError::new(format!("unknown transaction '{}'", String::from_utf8_lossy(tx)))
        .detail("The transaction was never begun, or was already committed or aborted.")
}

impl Session {
    pub(super) fn begin(&mut self, frame: &Frame) -> Outcome {
        let tx = Bytes::copy_from_slice(required(frame, "transaction")?.as_bytes());
        if self.transactions.contains_key(&tx) {
            return Err(StompError::new(format!(
                "transaction '{}' is already begun",
                String::from_utf8_lossy(&tx)
            )));
        }
        let max = self.shared.policy.limits.max_transactions;
        if self.transactions.len() >= max {
            return Err(StompError::new(format!(
                "too many open transactions (the limit is {max})"
            )));
        }
        self.transactions.insert(tx, Vec::new());
        Ok(Flow::Continue)
    }

    pub(super) async fn commit(&mut self, frame: &Frame) -> Outcome {
        let tx = required(frame, "transaction")?;
        let ops = self.transactions.remove(tx.as_bytes()).ok_or_else(|| unknown(tx.as_bytes()))?;
        for op in ops {
            match op {
                TxOp::Send(frame) => self.route(frame).await?,
                TxOp::Ack { sub, tag, nack } => self.settle(&sub, tag, nack),
            }
        }
        Ok(Flow::Continue)
    }

    pub(super) fn abort(&mut self, frame: &Frame) -> Outcome {
        let tx = required(frame, "transaction")?;
        self.transactions.remove(tx.as_bytes()).ok_or_else(|| unknown(tx.as_bytes()))?;
        Ok(Flow::Continue)
    }

    /// Holds `op` in transaction `tx`.
    pub(super) fn buffer(&mut self, tx: &[u8], op: TxOp) -> Result<(), StompError> {
        let max = self.shared.policy.limits.max_transaction_frames;
        let ops = self.transactions.get_mut(tx).ok_or_else(|| unknown(tx))?;
        if ops.len() >= max {
            return Err(StompError::new(format!(
                "transaction holds too many frames (the limit is {max})"
            )));
        }
        ops.push(op);
        Ok(())
    }
}
