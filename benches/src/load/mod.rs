//! The load generator behind `stomp-load`: STOMP 1.2 clients built on
//! `stomp-codec`, and the scenarios that drive them.
//!
//! # Layout
//! - `transport`: how octets reach the broker (TCP, or WebSocket with
//!   `--transport ws`; one arm of its enums each).
//! - `client`: a STOMP session over a transport: `CONNECT`, `SUBSCRIBE`
//!   with a receipt, frames in and out through our codec.
//! - `body`: the 16-octet stamp at the front of every message body
//!   (publisher, sequence number, send time).
//! - `stats`: latency histograms; `report`: the human table and the
//!   `RESULT {json}` line; `procfs`: RSS and file limits from `/proc`.
//! - `fanout`, `connections`: the scenarios. A new scenario (`rooms`,
//!   `queue`) is a module here and a variant of `Scenario` in the binary.

pub(crate) mod body;
pub(crate) mod client;
pub(crate) mod connections;
mod error;
pub(crate) mod fanout;
pub(crate) mod procfs;
pub(crate) mod report;
pub(crate) mod stats;
pub(crate) mod transport;

pub(crate) use error::{Error, Result};

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

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
        tokio::time::Instant::from_std(self.t0 + Duration::from_nanos(ns))
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
