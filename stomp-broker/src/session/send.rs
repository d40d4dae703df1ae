//! SEND: interceptor, transactions, application handlers, user
//! destinations, then the router.

use stomp_codec::Frame;

use super::{Flow, Outcome, Session, TxOp, required};
use crate::error::{PublishError, StompError};
use crate::{AppContext, AppMessage, Broker};

impl Session {
    pub(super) async fn send(&mut self, mut frame: Frame) -> Outcome {
        required(&frame, "destination")?;
        if let Some(interceptor) = &self.shared.interceptor {
            interceptor.on_send(self.info(), &mut frame).await?;
        }
        if let Some(tx) = frame.headers().get_bytes("transaction") {
            // Kept until COMMIT: copied out of the read buffer.
            self.buffer(&tx, TxOp::Send(frame.detached()))?;
            return Ok(Flow::Continue);
        }
        self.route(frame).await?;
        Ok(Flow::Continue)
    }

    /// Delivers a SEND that is not (or no longer) in a transaction.
    pub(super) async fn route(&mut self, frame: Frame) -> Result<(), StompError> {
        let destination = required(&frame, "destination")?.to_owned();
        if let Some((prefix, handler)) = &self.shared.app
            && let Some(path) = destination.strip_prefix(prefix.as_str())
        {
            let broker = Broker::from_shared(self.shared.clone());
            let context = AppContext { broker, session: self.info().clone() };
            let (_, headers, body) = frame.into_parts();
            let message = AppMessage { path: path.to_owned(), destination, headers, body };
            return handler.handle(&context, message).await.map_err(StompError::from);
        }
        let broker = Broker::from_shared(self.shared.clone());
        let result = match user_destination(&destination) {
            Some((user, rest)) => {
                broker.deliver_user(user, rest, frame.headers(), frame.body(), None)
            }
            None => broker.publish_ref(&destination, frame.headers(), frame.body()),
        };
        result.map(drop).map_err(|e| publish_error(&destination, &e))
    }
}

/// `/user/{name}/queue/x` as `("name", "/queue/x")`.
pub(crate) fn user_destination(destination: &str) -> Option<(&str, &str)> {
    let rest = destination.strip_prefix("/user/")?;
    let slash = rest.find('/')?;
    let (user, dest) = rest.split_at(slash);
    (!user.is_empty() && dest.len() > 1).then_some((user, dest))
}

fn publish_error(destination: &str, error: &PublishError) -> StompError {
    match error {
        PublishError::QueueFull(_) => StompError::new(format!("queue {destination} is full"))
            .detail("The queue holds as many messages as it may; the message was not accepted."),
        PublishError::QueuesFull => StompError::new(format!("queue {destination} is full")).detail(
            "The broker's queues together hold as much as it keeps; the message was not \
                 accepted.",
        ),
        other => StompError::new(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::user_destination;

    #[test]
    fn user_destinations() {
        assert_eq!(user_destination("/user/bob/queue/x"), Some(("bob", "/queue/x")));
        assert_eq!(user_destination("/user/bob/"), None);
        assert_eq!(user_destination("/user//queue/x"), None);
        assert_eq!(user_destination("/queue/x"), None);
    }
}
