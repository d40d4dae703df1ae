//! BEGIN, COMMIT and ABORT: SEND, ACK and NACK held until COMMIT.

use std::sync::Arc;

use bytes::Bytes;
use stomp_codec::Frame;

use super::{Flow, Outcome, Session, required};
use crate::error::StompError;
use crate::stats::ErrorReason;
use crate::subscription::Subscription;

/// A frame held in a transaction.
#[derive(Debug)]
pub(crate) enum TxOp {
    /// A SEND, copied out of the read buffer.
    Send(Frame),
    /// An ACK (or NACK) of a delivery.
    Ack { sub: Arc<Subscription>, tag: u64, nack: bool },
}

impl TxOp {
    /// Octets held: a SEND's headers and body.
    fn size(&self) -> usize {
        match self {
            Self::Send(frame) => {
                frame.body().len()
                    + frame.headers().iter().map(|(n, v)| n.len() + v.len() + 2).sum::<usize>()
            }
            Self::Ack { .. } => 0,
        }
    }
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
            ))
            .reason(ErrorReason::Limit));
        }
        self.transactions.insert(tx, Vec::new());
        Ok(Flow::Continue)
    }

    pub(super) async fn commit(&mut self, frame: &Frame) -> Outcome {
        let tx = required(frame, "transaction")?;
        let ops = self.transactions.remove(tx.as_bytes()).ok_or_else(|| unknown(tx.as_bytes()))?;
        self.release(&ops);
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
        let ops = self.transactions.remove(tx.as_bytes()).ok_or_else(|| unknown(tx.as_bytes()))?;
        self.release(&ops);
        Ok(Flow::Continue)
    }

    /// Counts the octets of a transaction that ended as no longer held.
    fn release(&mut self, ops: &[TxOp]) {
        self.transaction_bytes -= ops.iter().map(TxOp::size).sum::<usize>();
    }

    /// Holds `op` in transaction `tx`.
    pub(super) fn buffer(&mut self, tx: &[u8], op: TxOp) -> Result<(), StompError> {
        let max = self.shared.policy.limits.max_transaction_frames;
        let max_bytes = self.shared.policy.limits.max_transaction_bytes;
        let size = op.size();
        if self.transaction_bytes + size > max_bytes {
            return Err(StompError::new(format!("transactions hold too many bytes (the limit is {max_bytes})"))
                .reason(ErrorReason::Limit)
                .detail("The SEND frames held in this connection's open transactions would pass the limit; commit or abort first."));
        }
        let ops = self.transactions.get_mut(tx).ok_or_else(|| unknown(tx))?;
        if ops.len() >= max {
            return Err(StompError::new(format!(
                "transaction holds too many frames (the limit is {max})"
            ))
            .reason(ErrorReason::Limit));
        }
        ops.push(op);
        self.transaction_bytes += size;
        Ok(())
    }
}
