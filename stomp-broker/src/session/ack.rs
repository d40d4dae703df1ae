//! ACK and NACK.

use std::sync::Arc;

use stomp_codec::Frame;

use super::{Flow, Outcome, Session, TxOp};
use crate::error::StompError;
use crate::subscription::Subscription;

impl Session {
    pub(super) fn ack(&mut self, frame: &Frame, nack: bool) -> Outcome {
        let (sub, tag) = self.find_delivery(frame)?;
        if let Some(tx) = frame.headers().get_bytes("transaction") {
            self.buffer(&tx, TxOp::Ack { sub, tag, nack })?;
            return Ok(Flow::Continue);
        }
        self.settle(&sub, tag, nack);
        Ok(Flow::Continue)
    }

    /// The subscription and tag an ACK or NACK refers to: by `id` (STOMP
    /// 1.2), or by `message-id` and optionally `subscription` (1.0, 1.1).
    fn find_delivery(&self, frame: &Frame) -> Result<(Arc<Subscription>, u64), StompError> {
        let unknown = |what: &str, value: &[u8]| {
            StompError::new(format!("unknown {what} '{}'", String::from_utf8_lossy(value)))
                .detail("It names no message delivered to this session and not yet acknowledged.")
        };
        if let Some(id) = frame.header("id") {
            let tag = std::str::from_utf8(id).ok().and_then(|t| t.parse::<u64>().ok());
            let found = tag.and_then(|tag| {
                self.subscriptions.values().find(|s| s.has_tag(tag)).map(|s| (s.clone(), tag))
            });
            return found.ok_or_else(|| unknown("ack id", id));
        }
        let Some(message_id) = frame.header("message-id") else {
            return Err(StompError::missing(frame.command(), "id"));
        };
        let mut candidates: Box<dyn Iterator<Item = &Arc<Subscription>>> =
            match frame.header("subscription") {
                Some(sub) => Box::new(self.subscriptions.get(sub).into_iter()),
                None => Box::new(self.subscriptions.values()),
            };
        candidates
            .find_map(|s| s.tag_of(message_id).map(|tag| (s.clone(), tag)))
            .ok_or_else(|| unknown("message-id", message_id))
    }

    /// Applies an ACK or NACK of `tag` (a no-op if it was settled already,
    /// as when a transaction commits after a cumulative ACK covered it).
    pub(super) fn settle(&self, sub: &Subscription, tag: u64, nack: bool) {
        let Some(settled) = sub.settle(tag) else { return };
        let limits = &self.shared.policy.limits;
        match &sub.queue {
            Some(queue) => {
                if nack {
                    queue.requeue(settled.into_iter().map(|u| u.message).collect(), limits);
                } else {
                    queue.dispatch(limits);
                }
            }
            None => {
                sub.refill(limits);
            }
        }
    }
}
