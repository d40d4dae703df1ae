//! The subscriber task: owns the pub/sub connection, batches
//! (un)subscriptions, hands other nodes' messages to the broker, and
//! subscribes to everything again after a reconnection.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ::redis::aio::{PubSub, PubSubSink, PubSubStream};
use ::redis::{Client, Msg, RedisError};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::retry::{Outage, Retry, Role};
use super::sequence::Gaps;
use super::{Envelope, ReadySignal, State, connect_subscriber, ping_interval, timeout};

/// Channels per `SUBSCRIBE` or `UNSUBSCRIBE` command, at most.
const CHANNELS_PER_COMMAND: usize = 1_000;

/// From the backplane to its subscriber task, in the order the broker's
/// interest changed.
#[derive(Debug)]
pub(super) enum Command {
    Subscribe(Box<str>, ReadySignal),
    Unsubscribe(Box<str>),
}

/// Why the connected loop ended.
enum Exit {
    /// Closed or dropped: the task ends.
    Stop,
    /// Redis is gone: reconnect.
    Lost(RedisError),
}

/// Owns the pub/sub connection (between reconnections) and the set of
/// destinations this node wants.
pub(super) struct Subscriber {
    client: Client,
    commands: mpsc::UnboundedReceiver<Command>,
    state: Arc<State>,
    token: CancellationToken,
    retry: Retry,
    /// The destinations this node has subscribers for: what Redis is
    /// subscribed to whenever the connection is up.
    wanted: HashSet<Box<str>>,
    gaps: Gaps,
}

impl Subscriber {
    pub(super) fn new(
        client: Client,
        commands: mpsc::UnboundedReceiver<Command>,
        state: Arc<State>,
        token: CancellationToken,
        retry: Retry,
    ) -> Self {
        Self {
            client,
            commands,
            state,
            token,
            retry,
            wanted: HashSet::new(),
            gaps: Gaps::default(),
        }
    }

    /// Runs until the backplane is closed or dropped.
    pub(super) async fn run(mut self, connection: PubSub) {
        let mut connection = Some(connection.split());
        while let Some((mut sink, mut stream)) = connection.take() {
            let exit = self.serve(&mut sink, &mut stream).await;
            // Closed now: a connection given up on (a `PING` unanswered)
            // must not go on receiving.
            drop((sink, stream));
            let Exit::Lost(error) = exit else { break };
            // The publishing connection has likely gone the same way.
            self.state.suspect.notify_one();
            connection = self.reconnect(&error).await;
        }
        self.state.subscriber_up.store(false, Ordering::Release);
    }

    /// Connected: commands, messages and pings until Redis goes away or
    /// the backplane closes.
    async fn serve(&mut self, sink: &mut PubSubSink, stream: &mut PubSubStream) -> Exit {
        let mut ping = ping_interval();
        loop {
            tokio::select! {
                biased;
                () = self.token.cancelled() => return Exit::Stop,
                command = self.commands.recv() => {
                    let Some(command) = command else { return Exit::Stop };
                    if let Err(error) = self.apply_round(command, sink).await {
                        return Exit::Lost(error);
                    }
                }
                message = stream.next() => match message {
                    Some(message) => self.on_message(&message),
                    None => return Exit::Lost(closed()),
                },
                _ = ping.tick() => {
                    if let Err(error) = timeout(sink.ping::<::redis::Value>()).await {
                        return Exit::Lost(error);
                    }
                }
            }
        }
    }

    /// Applies `first` and every other command already waiting, then sends
    /// the net change as one `SUBSCRIBE` and one `UNSUBSCRIBE` (in chunks)
    /// and confirms the new subscriptions. On failure every waiting
    /// subscription is confirmed anyway: local delivery does not wait.
    async fn apply_round(
        &mut self,
        first: Command,
        sink: &mut PubSubSink,
    ) -> Result<(), RedisError> {
        let mut round = Round::default();
        round.apply(first, &mut self.wanted, &mut self.gaps);
        while let Ok(command) = self.commands.try_recv() {
            round.apply(command, &mut self.wanted, &mut self.gaps);
        }
        let (subscribe, unsubscribe) = round.changes(&self.wanted);
        let result = async {
            self.send(sink, &subscribe, true).await?;
            self.send(sink, &unsubscribe, false).await
        }
        .await;
        round.confirm();
        result
    }

    /// One command per chunk of channels.
    async fn send(
        &self,
        sink: &mut PubSubSink,
        destinations: &[&str],
        subscribe: bool,
    ) -> Result<(), RedisError> {
        for chunk in destinations.chunks(CHANNELS_PER_COMMAND) {
            let channels: Vec<String> = chunk.iter().map(|d| self.state.channel(d)).collect();
            if subscribe {
                timeout(sink.subscribe(&channels)).await?;
            } else {
                timeout(sink.unsubscribe(&channels)).await?;
            }
        }
        Ok(())
    }

    /// After a (re)connection: subscribes to every destination wanted.
    async fn resubscribe(&self, sink: &mut PubSubSink) -> Result<(), RedisError> {
        let all: Vec<&str> = self.wanted.iter().map(|d| &**d).collect();
        self.send(sink, &all, true).await
    }

    /// A message from Redis: decoded, checked, counted and delivered.
    fn on_message(&mut self, message: &Msg) {
        let payload = Bytes::copy_from_slice(message.get_payload_bytes());
        let envelope = match Envelope::decode(payload) {
            Ok(envelope) => envelope,
            Err(error) => return self.malformed(message.get_channel_name(), &error),
        };
        if envelope.node == self.state.node {
            return;
        }
        let channel = message.get_channel_name();
        if channel.strip_prefix(self.state.prefix.as_str()) != Some(envelope.destination.as_str()) {
            return self.malformed(channel, &"destination does not match the channel");
        }
        if !self.wanted.contains(envelope.destination.as_str()) {
            // Unsubscribed while it was on its way.
            return;
        }
        let state = &self.state;
        state.received.fetch_add(1, Ordering::Relaxed);
        let lost = self.gaps.observe(envelope.node, &envelope.destination, envelope.seq);
        if lost > 0 {
            state.lost.fetch_add(lost, Ordering::Relaxed);
        }
        if let Some(inbound) = state.inbound.get() {
            let _ = inbound.deliver(&envelope.destination, &envelope.headers, &envelope.body);
        }
    }

    fn malformed(&self, channel: &str, error: &dyn std::fmt::Display) {
        let malformed = self.state.malformed.fetch_add(1, Ordering::Relaxed) + 1;
        // Once per power of two: a foreign publisher may send many.
        if malformed.is_power_of_two() {
            tracing::warn!(node = self.state.node, %channel, %error, malformed, "malformed backplane message");
        }
    }

    /// Reconnects with backoff and subscribes to every destination
    /// wanted; meanwhile subscriptions are recorded and confirmed at once.
    /// `None` if the backplane was closed or dropped first.
    async fn reconnect(&mut self, error: &RedisError) -> Option<(PubSubSink, PubSubStream)> {
        let mut outage = Outage::begin(&self.state, Role::Subscriber, error, 0);
        let mut backoff = self.retry.backoff();
        loop {
            self.offline(tokio::time::sleep(backoff.next_delay())).await?;
            let client = self.client.clone();
            let attempt = self.offline(async move { connect_subscriber(&client).await }).await?;
            let result = match attempt {
                Ok(pubsub) => {
                    let (mut sink, stream) = pubsub.split();
                    self.resubscribe(&mut sink).await.map(|()| (sink, stream))
                }
                Err(error) => Err(error),
            };
            match result {
                Ok(connection) => {
                    outage.end(&self.state);
                    return Some(connection);
                }
                Err(error) => outage.failed(&self.state, &error),
            }
        }
    }

    /// Drives `future` while disconnected, applying commands as they come
    /// (each subscription confirmed at once). `None` if the backplane was
    /// closed or dropped first.
    async fn offline<F: Future>(&mut self, future: F) -> Option<F::Output> {
        tokio::pin!(future);
        loop {
            tokio::select! {
                biased;
                () = self.token.cancelled() => return None,
                output = &mut future => return Some(output),
                command = self.commands.recv() => {
                    let mut round = Round::default();
                    round.apply(command?, &mut self.wanted, &mut self.gaps);
                    round.confirm();
                }
            }
        }
    }
}

/// The commands taken in one go, and what they change.
#[derive(Default)]
struct Round {
    ready: Vec<ReadySignal>,
    /// Destinations the round touched, and whether they were wanted before.
    touched: HashMap<Box<str>, bool>,
}

impl Round {
    fn apply(&mut self, command: Command, wanted: &mut HashSet<Box<str>>, gaps: &mut Gaps) {
        match command {
            Command::Subscribe(destination, ready) => {
                let was = wanted.contains(&destination);
                self.touched.entry(destination.clone()).or_insert(was);
                wanted.insert(destination);
                self.ready.push(ready);
            }
            Command::Unsubscribe(destination) => {
                let was = wanted.remove(&destination);
                gaps.forget(&destination);
                self.touched.entry(destination).or_insert(was);
            }
        }
    }

    /// Destinations to subscribe to and to unsubscribe from.
    fn changes(&self, wanted: &HashSet<Box<str>>) -> (Vec<&str>, Vec<&str>) {
        let mut subscribe = Vec::new();
        let mut unsubscribe = Vec::new();
        for (destination, &was) in &self.touched {
            match (was, wanted.contains(destination)) {
                (false, true) => subscribe.push(&**destination),
                (true, false) => unsubscribe.push(&**destination),
                _ => {}
            }
        }
        (subscribe, unsubscribe)
    }

    fn confirm(self) {
        for ready in self.ready {
            ready.set();
        }
    }
}

fn closed() -> RedisError {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "pub/sub connection closed").into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::backplane::Ready;

    fn subscribe(destination: &str) -> (Command, Ready) {
        let (signal, ready) = Ready::pair();
        (Command::Subscribe(destination.into(), signal), ready)
    }

    fn unsubscribe(destination: &str) -> Command {
        Command::Unsubscribe(destination.into())
    }

    fn sorted(mut v: Vec<&str>) -> Vec<&str> {
        v.sort_unstable();
        v
    }

    #[tokio::test]
    async fn a_round_sends_only_the_net_change_and_confirms_every_subscription() {
        let mut wanted: HashSet<Box<str>> = ["/topic/old", "/topic/gone"].map(Box::from).into();
        let mut gaps = Gaps::default();
        gaps.observe(1, "/topic/gone", 1);
        let mut round = Round::default();
        let (a, ready_a) = subscribe("/topic/a");
        let (flap, ready_flap) = subscribe("/topic/flap");
        let (old, ready_old) = subscribe("/topic/old");
        let commands = [
            a,
            flap,
            unsubscribe("/topic/flap"),
            unsubscribe("/topic/old"),
            old,
            unsubscribe("/topic/gone"),
        ];
        for command in commands {
            round.apply(command, &mut wanted, &mut gaps);
        }
        let (subscribe, unsubscribe) = round.changes(&wanted);
        // `flap` came and went, `old` went and came back: no command for them.
        assert_eq!(
            (sorted(subscribe), sorted(unsubscribe)),
            (vec!["/topic/a"], vec!["/topic/gone"])
        );
        round.confirm();
        for ready in [ready_a, ready_flap, ready_old] {
            assert!(ready.wait(Duration::ZERO).await);
        }
        assert_eq!(gaps.observe(1, "/topic/gone", 9), 0, "forgotten on unsubscribe");
    }
}
