//! Reconnection: exponential backoff with jitter, and the log lines and
//! counters of an outage.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::State;

/// The bounds of the waits between reconnection attempts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Retry {
    initial: Duration,
    max: Duration,
}

impl Retry {
    /// At least 1 ms, so that a zero in the configuration cannot spin.
    pub(super) fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Self { initial, max: max.max(initial) }
    }

    /// The waits of one outage.
    pub(super) fn backoff(self) -> Backoff {
        Backoff { retry: self, attempt: 0 }
    }
}

/// The waits before each attempt of one outage: `initial`, doubling up to
/// `max`, each one jittered to between half of it and all of it.
#[derive(Debug)]
pub(super) struct Backoff {
    retry: Retry,
    attempt: u32,
}

impl Backoff {
    pub(super) fn next_delay(&mut self) -> Duration {
        let factor = 1u32 << self.attempt.min(16);
        self.attempt = self.attempt.saturating_add(1);
        let full = self.retry.initial.saturating_mul(factor).min(self.retry.max);
        let half = full / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(random_u64() % nanos.saturating_add(1))
    }
}

/// A random number without a dependency: the standard library seeds
/// every `RandomState` randomly (per thread, then incremented), and the
/// time and process id are mixed in for good measure.
pub(super) fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// One task's outage: logged when it starts and when it ends.
#[derive(Debug)]
pub(super) struct Outage {
    since: Instant,
    dropped_before: u64,
    role: Role,
    failed_attempts: u64,
}

impl Outage {
    /// Marks the task's connection down and logs it. `dropped` is what the
    /// failure itself dropped (already counted).
    pub(super) fn begin(
        state: &State,
        role: Role,
        error: &dyn std::fmt::Display,
        dropped: u64,
    ) -> Self {
        role.flag(state).store(false, Ordering::Release);
        let dropped_before = state.publish_dropped.load(Ordering::Relaxed).saturating_sub(dropped);
        tracing::warn!(
            node = state.node,
            connection = role.name(),
            %error,
            "Redis backplane connection lost; local delivery goes on, messages to and from \
             other nodes are dropped until it is back"
        );
        Self { since: Instant::now(), dropped_before, role, failed_attempts: 0 }
    }

    /// Logs a failed reconnection attempt: at warn level the first time
    /// and then once per power of two (an outage that lasts shows in the
    /// log without flooding it), at debug level otherwise.
    pub(super) fn failed(&mut self, state: &State, error: &dyn std::fmt::Display) {
        self.failed_attempts += 1;
        let (attempts, down) = (self.failed_attempts, self.since.elapsed());
        if attempts.is_power_of_two() {
            tracing::warn!(node = state.node, connection = self.role.name(), %error, attempts, ?down,
                "Redis backplane still disconnected");
        } else {
            tracing::debug!(node = state.node, connection = self.role.name(), %error, attempts,
                "Redis reconnection failed");
        }
    }

    /// Marks the connection up again, counts the reconnection and logs how
    /// long it was down and what was dropped meanwhile.
    pub(super) fn end(self, state: &State) {
        self.role.flag(state).store(true, Ordering::Release);
        state.reconnects.fetch_add(1, Ordering::Relaxed);
        let dropped =
            state.publish_dropped.load(Ordering::Relaxed).saturating_sub(self.dropped_before);
        tracing::info!(
            node = state.node,
            connection = self.role.name(),
            outage = ?self.since.elapsed(),
            publish_dropped = dropped,
            "Redis backplane reconnected"
        );
    }
}

/// Which of the two connections.
#[derive(Debug, Clone, Copy)]
pub(super) enum Role {
    /// The one `PUBLISH`es go over.
    Publisher,
    /// The pub/sub one.
    Subscriber,
}

impl Role {
    /// Its name in logs.
    fn name(self) -> &'static str {
        match self {
            Self::Publisher => "publish",
            Self::Subscriber => "subscribe",
        }
    }

    /// Whether it is up.
    fn flag(self, state: &State) -> &AtomicBool {
        match self {
            Self::Publisher => &state.publisher_up,
            Self::Subscriber => &state.subscriber_up,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_max_with_jitter() {
        let retry = Retry::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut backoff = retry.backoff();
        let bounds = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000];
        for full in bounds {
            let delay = backoff.next_delay();
            let full = Duration::from_millis(full);
            assert!(delay >= full / 2 && delay <= full, "{delay:?} for {full:?}");
        }
        // Many attempts later it still neither overflows nor passes max.
        for _ in 0..100 {
            assert!(backoff.next_delay() <= Duration::from_secs(5));
        }
    }

    #[test]
    fn zero_durations_do_not_spin() {
        let mut backoff = Retry::new(Duration::ZERO, Duration::ZERO).backoff();
        assert!(backoff.next_delay() >= Duration::from_micros(500));
    }

    #[test]
    fn random_numbers_differ() {
        assert_ne!(random_u64(), random_u64());
    }
}
