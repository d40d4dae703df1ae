//! The load generator behind `stomp-load`: STOMP 1.2 clients built on
//! `stomp-codec`, and the scenarios that drive them.
//!
//! # Layout
//! - `transport`: how octets reach the broker (TCP, or WebSocket with
//!   `--transport ws`; one arm of its enums each).
//! - `client`: a STOMP session over a transport: `CONNECT`, `SUBSCRIBE`
//!   with a receipt, frames in and out through our codec.
//! - `body`: the 24-octet stamp at the front of every message body
//!   (publisher, sequence number, due time, write time).
//! - `schedule`: when messages are due at a fixed rate, and when any
//!   message of a publisher was due (for the age of an undelivered one);
//!   `timer`: the precise timer that wakes publishers at those times.
//! - `stats`: latency histograms (from the due time, from the write, and
//!   with the undelivered messages at their age; the publishers' own
//!   lateness); `seq`: the sequence numbers seen (losses, duplicates);
//!   `report`: the human table and the `RESULT {json}` line; `procfs`:
//!   RSS, CPU time and file limits from `/proc`.
//! - `publisher`: a publishing connection (a fixed rate, or a receipt
//!   window and a bound on how far it runs ahead of its consumers), shared
//!   by `fanout` and `queue`; `scenario`: the rest they share (the period
//!   and the drain, the pacing and delivery figures, the verdict), some of
//!   it with `rooms`.
//! - `fanout`, `connections`, `rooms`, `queue`: the scenarios. A new one
//!   is a module here and a variant of `Scenario` in the binary.

pub(crate) mod body;
pub(crate) mod client;
pub(crate) mod connections;
mod error;
pub(crate) mod fanout;
pub(crate) mod procfs;
pub(crate) mod publisher;
pub(crate) mod queue;
pub(crate) mod report;
pub(crate) mod rooms;
pub(crate) mod scenario;
pub(crate) mod schedule;
pub(crate) mod seq;
pub(crate) mod stats;
pub(crate) mod timer;
pub(crate) mod transport;

pub(crate) use error::{Error, Result};

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use client::{Login, Session};
use report::Report;

/// Options shared by every scenario.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Common {
    /// The broker's address.
    #[arg(long, global = true, default_value = "127.0.0.1:61613")]
    pub(crate) target: SocketAddr,
    /// How to reach the broker.
    #[arg(long, global = true, value_enum, default_value_t = transport::Kind::Tcp)]
    pub(crate) transport: transport::Kind,
    /// The path of the broker's WebSocket endpoint (`--transport ws`):
    /// the URL is `ws://TARGET/PATH`.
    #[arg(long, global = true, default_value = "/stomp")]
    pub(crate) ws_path: String,
    /// Local addresses to connect from, round robin (e.g.
    /// 127.0.0.1,127.0.0.2), to open more connections than one address
    /// has ephemeral ports.
    #[arg(long, global = true, value_delimiter = ',')]
    pub(crate) source_ips: Vec<IpAddr>,
    /// Connections opening (TCP connect, CONNECT, SUBSCRIBE, RECEIPT) at
    /// once. Keep it below the broker's listen backlog (128 for a tokio
    /// `TcpListener::bind`): past it, refused SYNs are retried after 1 s.
    #[arg(long, global = true, default_value_t = 100)]
    pub(crate) connect_batch: usize,
    /// Seconds one connection may take to open.
    #[arg(long, global = true, default_value_t = 30)]
    pub(crate) connect_timeout: u64,
    /// Worker threads of the load generator (default: one per CPU).
    #[arg(long, global = true)]
    pub(crate) threads: Option<usize>,
    /// The broker's process id, to report its memory and CPU time from
    /// `/proc` (same machine only).
    #[arg(long, global = true)]
    pub(crate) broker_pid: Option<u32>,
    /// `login` header of every `CONNECT`.
    #[arg(long, global = true, default_value = "guest")]
    pub(crate) login: String,
    /// `passcode` header of every `CONNECT`.
    #[arg(long, global = true, default_value = "guest")]
    pub(crate) passcode: String,
    /// `host` header of every `CONNECT`: the virtual host (RabbitMQ
    /// refuses a host it does not know; `/` is its default one).
    #[arg(long, global = true, visible_alias = "host", default_value = "/")]
    pub(crate) vhost: String,
}

impl Common {
    /// The transport target.
    pub(crate) fn target(&self) -> transport::Target {
        transport::Target {
            kind: self.transport,
            addr: self.target,
            ws_path: self.ws_path.as_str().into(),
        }
    }

    /// The headers that identify every session.
    pub(crate) fn login(&self) -> Login {
        Login {
            login: self.login.as_str().into(),
            passcode: self.passcode.as_str().into(),
            host: self.vhost.as_str().into(),
        }
    }

    /// Opens `count` sessions with `open(i, login)` for i in `0..count`,
    /// at most [`connect_batch`](Self::connect_batch) at a time, each
    /// within [`connect_timeout`](Self::connect_timeout); in the order of
    /// `i`. `what` names them in the error, which says how many failed and
    /// the first reason; the sessions already open are then closed.
    pub(crate) async fn open_sessions<F, Fut>(
        &self,
        count: usize,
        what: &str,
        open: F,
    ) -> Result<Vec<Session>>
    where
        F: Fn(usize, Login) -> Fut,
        Fut: Future<Output = Result<Session>> + Send + 'static,
    {
        let gate = Arc::new(Semaphore::new(self.connect_batch.max(1)));
        let timeout = self.connect_timeout();
        let tasks: Vec<_> = (0..count)
            .map(|i| {
                let (gate, opening) = (gate.clone(), open(i, self.login()));
                tokio::spawn(async move {
                    let _permit = gate.acquire().await;
                    tokio::time::timeout(timeout, opening)
                        .await
                        .unwrap_or_else(|_| Err(Error::new("timed out opening the session")))
                })
            })
            .collect();
        let (mut sessions, mut failed, mut first) = (Vec::with_capacity(count), 0, None);
        for task in tasks {
            match task.await.unwrap_or_else(|e| Err(Error::new(format!("task failed: {e}")))) {
                Ok(session) => sessions.push(session),
                Err(error) => {
                    failed += 1;
                    first.get_or_insert(error);
                }
            }
        }
        match first {
            None => Ok(sessions),
            Some(error) => Err(Error::new(format!(
                "{failed} of {count} {what} could not open; the first error: {error}"
            ))),
        }
    }

    /// The source address of connection number `i`, if any were given.
    pub(crate) fn source(&self, i: usize) -> Option<IpAddr> {
        (!self.source_ips.is_empty()).then(|| self.source_ips[i % self.source_ips.len()])
    }

    /// [`connect_timeout`](Self::connect_timeout) as a duration.
    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout)
    }

    /// Checks that `connections` sockets fit in this process's open-file
    /// limit and in the ephemeral ports of the source addresses.
    pub(crate) fn check_capacity(&self, connections: usize) -> Result<()> {
        const MARGIN: u64 = 64;
        let wanted = connections as u64;
        if let Some(limit) = procfs::open_files_limit("self")?
            && wanted + MARGIN > limit
        {
            return Err(Error::new(format!(
                "{connections} connections need about {} file descriptors, but this process \
                 may open {limit} (ulimit -n). Open at most {} connections per process, or \
                 raise the limit.",
                wanted + MARGIN,
                limit.saturating_sub(MARGIN)
            )));
        }
        if let Some(ports) = procfs::ephemeral_ports()? {
            let sources = self.source_ips.len().max(1) as u64;
            if wanted > ports * sources {
                return Err(Error::new(format!(
                    "{connections} connections to one address need more than the {ports} \
                     ephemeral ports of {sources} source address(es); give more with \
                     --source-ips 127.0.0.1,127.0.0.2,..."
                )));
            }
        }
        Ok(())
    }
}

/// The clock every timestamp is read from: nanoseconds since one `Instant`
/// taken at start. Publishers and subscribers share the process, so their
/// monotonic clocks agree.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    t0: Instant,
}

impl Clock {
    /// A clock starting now.
    pub(crate) fn new() -> Self {
        Self { t0: Instant::now() }
    }

    /// Nanoseconds since the start.
    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The tokio instant `ns` nanoseconds after the start.
    pub(crate) fn instant(&self, ns: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.at(ns))
    }

    /// The instant `ns` nanoseconds after the start.
    pub(crate) fn at(&self, ns: u64) -> Instant {
        self.t0 + Duration::from_nanos(ns)
    }
}

/// How long a sending scenario runs: the same flags for each of them.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Timing {
    /// Seconds measured.
    #[arg(long, default_value_t = 20.0)]
    pub(crate) duration: f64,
    /// Seconds of sending before the measurement starts.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) warmup: f64,
    /// Seconds receivers get, after sending stops, to take the rest.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) drain_timeout: f64,
}

impl Timing {
    /// Checks the flags.
    pub(crate) fn validate(&self) -> Result<()> {
        if !(self.duration > 0.0 && self.warmup >= 0.0 && self.drain_timeout >= 0.0) {
            return Err(Error::new(
                "--duration must be positive, --warmup and --drain-timeout not negative",
            ));
        }
        if self.duration + self.warmup > 3600.0 {
            return Err(Error::new("--warmup plus --duration may be at most one hour"));
        }
        Ok(())
    }

    /// The measured period of a run whose sending starts at `start_ns`.
    pub(crate) fn window(&self, start_ns: u64) -> (u64, u64) {
        let window_start = start_ns + secs_to_ns(self.warmup);
        (window_start, window_start + secs_to_ns(self.duration))
    }
}

/// The measured period, in [`Clock`] nanoseconds: empty until it is set,
/// since tasks start before the period is known.
#[derive(Debug)]
pub(crate) struct Period {
    start: AtomicU64,
    end: AtomicU64,
}

impl Period {
    /// A period not yet known (nothing is in it).
    pub(crate) fn unknown() -> Self {
        Self { start: AtomicU64::new(u64::MAX), end: AtomicU64::new(u64::MAX) }
    }

    /// Sets the period to `start..end`.
    pub(crate) fn set(&self, start: u64, end: u64) {
        self.start.store(start, Ordering::Relaxed);
        self.end.store(end, Ordering::Relaxed);
    }

    /// Whether `ns` falls in the period.
    pub(crate) fn contains(&self, ns: u64) -> bool {
        ns >= self.start.load(Ordering::Relaxed) && ns < self.end.load(Ordering::Relaxed)
    }

    /// Whether a message due at `due` and written at `now` was published
    /// on schedule in the period (see [`on_schedule`]).
    pub(crate) fn on_schedule(&self, due: u64, now: u64) -> bool {
        let (start, end) = (self.start.load(Ordering::Relaxed), self.end.load(Ordering::Relaxed));
        on_schedule(due, now, start, end)
    }
}

/// How long after the end of the measured period a message due in it may
/// be written and still count as published on schedule: a late timer at
/// the period's edge is no shortfall of the rate; a publisher further
/// behind than this at the end is.
pub(crate) const ON_SCHEDULE_NS: u64 = 100_000_000;

/// Whether a message due at `due` and written at `now` counts toward the
/// target rate of the period `start..end`: due in it, and written at most
/// [`ON_SCHEDULE_NS`] after its end.
pub(crate) fn on_schedule(due: u64, now: u64, start: u64, end: u64) -> bool {
    due >= start && due < end && now < end.saturating_add(ON_SCHEDULE_NS)
}

/// CPU seconds used so far by this process, by its precise timer's
/// thread (part of the process's) when it has one, and by the broker when
/// its pid is known (`--broker-pid`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuTimes {
    own: f64,
    timer: Option<f64>,
    broker: Option<f64>,
}

impl CpuTimes {
    /// The times now; `None` when `/proc` cannot be read.
    pub(crate) fn now(common: &Common, timer: Option<&timer::Timer>) -> Option<Self> {
        let own = procfs::cpu_seconds("self").ok()?;
        let timer = timer.and_then(timer::Timer::cpu_seconds);
        let broker = common.broker_pid.and_then(|pid| procfs::cpu_seconds(&pid.to_string()).ok());
        Some(Self { own, timer, broker })
    }

    /// Reports the CPU used between `before` and `after`, in % of one core
    /// over `secs` seconds.
    pub(crate) fn report(
        before: Option<Self>,
        after: Option<Self>,
        secs: f64,
        report: &mut Report,
    ) {
        let (Some(before), Some(after)) = (before, after) else { return };
        let pct = |b: f64, a: f64| 100.0 * (a - b) / secs;
        report.float(
            "loadgen_cpu_pct",
            "load generator CPU",
            pct(before.own, after.own),
            0,
            "% of a core",
        );
        if let (Some(b), Some(a)) = (before.timer, after.timer) {
            let label = "  of it the precise timer";
            report.float("timer_cpu_pct", label, pct(b, a), 1, "% of a core");
        }
        if let (Some(b), Some(a)) = (before.broker, after.broker) {
            report.float("broker_cpu_pct", "broker CPU", pct(b, a), 0, "% of a core");
        }
    }
}

/// Seconds as nanoseconds.
pub(crate) fn secs_to_ns(secs: f64) -> u64 {
    Duration::from_secs_f64(secs.max(0.0)).as_nanos().try_into().unwrap_or(u64::MAX)
}

/// `x` rounded down to an integer, clamped to `0..=u64::MAX` (NaN is 0).
#[allow(
    clippy::cast_possible_truncation,
    reason = "the float-to-integer `as` saturates, which is what is wanted here"
)]
pub(crate) fn f64_to_u64(x: f64) -> u64 {
    x as u64
}

/// Polls `done` every 10 ms until it holds or `timeout` seconds pass;
/// returns whether it held, and the seconds waited.
pub(crate) async fn wait_until(timeout: f64, mut done: impl FnMut() -> bool) -> (bool, f64) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(timeout);
    let held = loop {
        if done() {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    (held, start.elapsed().as_secs_f64())
}
