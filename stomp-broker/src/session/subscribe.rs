//! SUBSCRIBE and UNSUBSCRIBE.

use std::sync::Arc;

use bytes::Bytes;
use stomp_codec::{Frame, Version};

use super::{Flow, Outcome, Session, required};
use crate::Replay;
use crate::error::StompError;
use crate::message::Message;
use crate::router::is_queue;
use crate::stats::ErrorReason;
use crate::subscription::{AckMode, Subscription};

/// The headers by which clients ask for a prefetch of their own:
/// RabbitMQ's, then ActiveMQ's.
const PREFETCH_HEADERS: [&str; 2] = ["prefetch-count", "activemq.prefetchSize"];

/// The prefetch a SUBSCRIBE asks for, if any: a positive number (0, as in
/// RabbitMQ, asks for no bound of its own).
fn prefetch_of(frame: &Frame) -> Result<Option<usize>, StompError> {
    let Some((name, value)) =
        PREFETCH_HEADERS.iter().find_map(|name| Some((*name, frame.header(name)?)))
    else {
        return Ok(None);
    };
    let n = std::str::from_utf8(value).ok().and_then(|v| v.parse::<usize>().ok());
    match n {
        Some(0) => Ok(None),
        Some(n) => Ok(Some(n)),
        None => Err(StompError::new(format!("invalid {name}")).detail(format!(
            "{name} must be a whole number of messages, not '{}'.",
            String::from_utf8_lossy(value)
        ))),
    }
}

/// How long a SUBSCRIBE waits for the backplane to confirm.
const BACKPLANE_READY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Session {
    pub(super) async fn subscribe(&mut self, mut frame: Frame) -> Outcome {
        required(&frame, "destination")?;
        if let Some(interceptor) = &self.shared.interceptor {
            interceptor.on_subscribe(self.info(), &mut frame).await?;
        }
        let destination = required(&frame, "destination")?;
        let id = self.subscription_id(&frame)?;
        if self.subscriptions.contains_key(&id) {
            return Err(StompError::new(format!(
                "subscription id '{}' is already in use",
                String::from_utf8_lossy(&id)
            ))
            .detail("Each SUBSCRIBE of a session needs an id of its own; UNSUBSCRIBE frees it."));
        }
        let limits = self.shared.policy.limits;
        if self.subscriptions.len() >= limits.max_subscriptions {
            return Err(StompError::new(format!(
                "too many subscriptions (the limit is {})",
                limits.max_subscriptions
            ))
            .reason(ErrorReason::Limit));
        }
        let ack = AckMode::parse(frame.header("ack")).ok_or_else(|| {
            StompError::new("invalid ack mode")
                .detail("The ack header must be auto, client or client-individual.")
        })?;
        let prefetch = prefetch_of(&frame)?;
        let route = self.route_of(destination);
        let replay = self
            .shared
            .replay
            .clone()
            .filter(|r| !is_queue(&route) && r.wants_replay(self.info(), &frame));
        let (num, outbox, sub_id) = (self.num, self.outbox.clone(), id.clone());
        let (sub, ready) = self
            .shared
            .router
            .subscribe(&route, &limits, |queue| {
                let sub = match replay {
                    Some(_) => Subscription::held(sub_id, num, ack, outbox, route.as_str().into()),
                    None => {
                        Subscription::new(sub_id, num, ack, outbox, route.as_str().into(), queue)
                    }
                };
                if let Some(n) = prefetch {
                    sub.set_prefetch(n);
                }
                sub
            })
            .map_err(|e| StompError::new(e.to_string()))?;
        self.subscriptions.insert(id.clone(), sub.clone());
        // The RECEIPT (if asked for) follows once other nodes' messages
        // for the destination reach this one.
        if let Some(ready) = ready
            && !ready.wait(BACKPLANE_READY_WAIT).await
        {
            tracing::warn!(%route, "backplane subscription not confirmed in time; going on");
        }
        if let Some(replay) = replay {
            let destination = destination.to_owned();
            self.replay(&*replay, &frame, &destination, &id, &sub).await?;
        }
        Ok(Flow::Continue)
    }

    /// Reads what `replay` gives the new subscription `sub` and delivers
    /// it ahead of the live messages held meanwhile. On a refusal the
    /// subscription is ended.
    async fn replay(
        &mut self,
        replay: &dyn Replay,
        frame: &Frame,
        destination: &str,
        id: &Bytes,
        sub: &Arc<Subscription>,
    ) -> Result<(), StompError> {
        let limits = self.shared.policy.limits;
        let batch = match replay.replay(self.info(), frame).await {
            Ok(batch) => batch,
            Err(rejection) => {
                self.subscriptions.remove(id);
                self.shared.router.unsubscribe(sub, &limits);
                return Err(rejection.into());
            }
        };
        let mut messages = Vec::with_capacity(batch.messages.len());
        for (headers, body) in &batch.messages {
            let message = Message::new(destination, self.shared.next_message(), headers, body)
                .map_err(|e| StompError::new(format!("replayed message refused: {e}")))?;
            messages.push(message);
        }
        let delivered = sub.release(messages, batch.skip_live, &limits);
        self.shared.stats.delivered(delivered as u64);
        Ok(())
    }

    pub(super) fn unsubscribe(&mut self, frame: &Frame) -> Outcome {
        let id = self.subscription_id(frame)?;
        let sub = self.subscriptions.remove(&id).ok_or_else(|| {
            StompError::new(format!("no subscription with id '{}'", String::from_utf8_lossy(&id)))
        })?;
        self.shared.router.unsubscribe(&sub, &self.shared.policy.limits);
        Ok(Flow::Continue)
    }

    /// The `id` header; STOMP 1.0 subscriptions may go without one and are
    /// then known by their destination.
    fn subscription_id(&self, frame: &Frame) -> Result<Bytes, StompError> {
        if let Some(id) = frame.headers().get_bytes("id") {
            return Ok(Bytes::copy_from_slice(&id));
        }
        match (self.version(), frame.headers().get_bytes("destination")) {
            (Version::V1_0, Some(destination)) => Ok(Bytes::copy_from_slice(&destination)),
            _ => Err(StompError::missing(frame.command(), "id")),
        }
    }

    /// The destination a subscription is routed by: user destinations
    /// (`/user/queue/x`) become the session user's own (`/user/{name}/queue/x`).
    fn route_of(&self, destination: &str) -> String {
        match destination.strip_prefix("/user/") {
            Some(rest) => format!("/user/{}/{rest}", self.info().principal.name()),
            None => destination.to_owned(),
        }
    }
}
