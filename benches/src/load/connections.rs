//! The `connections` scenario: many idle connections, each with one
//! subscription, and what they cost the broker.
//!
//! 1. The broker's resident memory is read (`--broker-pid`).
//! 2. C connections open, at most `--connect-batch` at a time, each with
//!    `CONNECT` (no heart-beats) and one `SUBSCRIBE` to the same topic whose
//!    receipt is awaited. With `--source-ips`, they are spread over several
//!    local addresses, round robin, each with its own ephemeral ports.
//! 3. After `--settle` seconds, the broker's memory is read again:
//!    (after − before) / C is the cost of one idle subscribed connection.
//! 4. Unless `--no-probe`: one more connection sends one message to the
//!    topic, and every connection must receive it once, within
//!    `--probe-timeout` seconds. The time each took is recorded. With
//!    `--await-probe`, nothing is sent: the probe is expected from another
//!    process (through another broker node, say), and `--ready-file` is
//!    written once the connections are open and settled, for whoever sends
//!    it (its latency is not recorded: the clocks differ).
//! 5. After `--hold` more seconds, every connection closes.
//!
//! One process can hold at most its open-file limit (`ulimit -n`) of
//! sockets; the scenario refuses to start when C does not fit in it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use stomp_codec::{Command, Frame};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use super::body::Stamp;
use super::client::{Session, error_frame};
use super::procfs::{self, Rss};
use super::report::Report;
use super::stats::{Latencies, Summary};
use super::{Clock, Common, Error, Result};

/// Options of the `connections` scenario.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConnectionsArgs {
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Seconds to wait, once all are open, before reading the broker's
    /// memory.
    #[arg(long, default_value_t = 5.0)]
    settle: f64,
    /// The topic every connection subscribes to.
    #[arg(long, default_value = "/topic/load.idle")]
    topic: String,
    /// Do not check that a message to the topic reaches every connection.
    #[arg(long)]
    no_probe: bool,
    /// Seconds the probe message may take to reach every connection.
    #[arg(long, default_value_t = 30.0)]
    probe_timeout: f64,
    /// Seconds to keep the connections open at the end (to look at the
    /// broker from outside).
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// Send no probe: wait for one sent by another process.
    #[arg(long, conflicts_with = "no_probe")]
    await_probe: bool,
    /// A file written (`open N`) once the connections are open and
    /// settled.
    #[arg(long)]
    ready_file: Option<std::path::PathBuf>,
}

/// Spare read room of an idle connection: the probe is small.
const READ_CHUNK: usize = 1024;
/// Open-file headroom kept for everything but the connections.
const FD_MARGIN: u64 = 64;

impl ConnectionsArgs {
    fn validate(&self) -> Result<()> {
        if self.connections == 0 {
            return Err(Error::new("--connections must be at least 1"));
        }
        let secs = [self.settle, self.probe_timeout, self.hold];
        if secs.iter().any(|s| !(0.0..=3600.0).contains(s)) {
            return Err(Error::new("--settle, --probe-timeout and --hold: 0 to 3600 seconds"));
        }
        Ok(())
    }
}

/// What the connection tasks share.
#[derive(Debug)]
struct Shared {
    clock: Clock,
    /// Probe messages received, all connections together.
    received: AtomicU64,
    /// Time from the probe's send to each receipt.
    latencies: Latencies,
}

/// Runs the scenario.
pub(crate) async fn run(common: &Common, args: &ConnectionsArgs) -> Result<Report> {
    args.validate()?;
    common.check_capacity(args.connections + 1)?;
    let broker = common.broker_pid.map(|pid| pid.to_string());
    if let Some(pid) = &broker
        && let Some(limit) = procfs::open_files_limit(pid)?
        && args.connections as u64 + FD_MARGIN > limit
    {
        return Err(Error::new(format!(
            "the broker (pid {pid}) may open {limit} files, too few for {} connections",
            args.connections
        )));
    }
    let rss_before = broker.as_deref().map(procfs::rss).transpose()?;
    let own_before = procfs::rss("self")?;
    let shared = Arc::new(Shared {
        clock: Clock::new(),
        received: AtomicU64::new(0),
        latencies: Latencies::new(4),
    });

    // Open.
    let opening = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(common.connect_batch.max(1)));
    let (ready_tx, mut ready_rx) = mpsc::channel(args.connections);
    let topic: Arc<str> = args.topic.as_str().into();
    let tasks: Vec<JoinHandle<Option<String>>> = (0..args.connections)
        .map(|idx| {
            let task = Idle {
                idx,
                common: common.clone(),
                topic: topic.clone(),
                gate: gate.clone(),
                ready: ready_tx.clone(),
                shared: shared.clone(),
                stop: stop_rx.clone(),
            };
            tokio::spawn(task.run())
        })
        .collect();
    drop(ready_tx);
    let (mut open, mut failed, mut first_error) = (0u64, 0u64, None);
    while open + failed < args.connections as u64 {
        match ready_rx.recv().await {
            Some(Ok(())) => open += 1,
            Some(Err(error)) => {
                failed += 1;
                first_error.get_or_insert(error.to_string());
            }
            None => break,
        }
    }
    let open_secs = opening.elapsed().as_secs_f64();

    // Measure.
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let rss_after = broker.as_deref().map(procfs::rss).transpose()?;
    let own_after = procfs::rss("self")?;

    if let Some(path) = &args.ready_file {
        std::fs::write(path, format!("open {open}\n"))
            .map_err(|e| Error::new(format!("--ready-file {}: {e}", path.display())))?;
    }

    // Probe.
    let probe = if args.no_probe || open == 0 {
        None
    } else if args.await_probe {
        Some(await_probe(args, &shared, open).await)
    } else {
        Some(probe(common, args, &shared, open).await)
    };
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;

    // Close.
    let _ = stop_tx.send(true);
    let mut dropped = 0u64;
    for task in tasks {
        if let Ok(Some(error)) = task.await {
            dropped += 1;
            first_error.get_or_insert(error);
        }
    }

    let mut report = Report::new("connections");
    report.int("connections", "connections asked", args.connections as u64);
    report.int("open", "connections open", open);
    report.int("failed", "connections failed", failed);
    report.float("open_s", "time to open all", open_secs, 2, "s");
    report.float("opened_per_s", "opened/s", open as f64 / open_secs.max(1e-9), 0, "conn/s");
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        add_rss(&mut report, before, after, open);
    }
    let own = own_after.total_kib.saturating_sub(own_before.total_kib);
    report.float(
        "loadgen_kib_per_conn",
        "load generator RSS per conn",
        own as f64 / open.max(1) as f64,
        2,
        "KiB",
    );
    let mut ok = failed == 0 && dropped == 0;
    if let Some(probe) = &probe {
        ok &= probe.received == open && probe.error.is_none();
        report.int("probe_received", "probe received by", probe.received);
        report.bool("probe_all", "probe reached every connection", probe.received == open);
        if let Some(error) = &probe.error {
            first_error.get_or_insert(error.clone());
        }
    }
    if probe.is_some() && !args.await_probe {
        let latency = Summary::of(&shared.latencies.merged());
        report.float("probe_first_us", "probe first receipt", latency.min_us, 1, "µs");
        report.float("probe_p50_us", "probe p50", latency.p50_us, 1, "µs");
        report.float("probe_p99_us", "probe p99", latency.p99_us, 1, "µs");
        report.float("probe_last_us", "probe last receipt", latency.max_us, 1, "µs");
    }
    report.int("dropped", "connections closed early", dropped);
    if let Some(error) = first_error {
        report.text("first_error", "first error", error);
    }
    report.bool("ok", "ok (all open, probe everywhere)", ok);
    Ok(report)
}

fn add_rss(report: &mut Report, before: Rss, after: Rss, open: u64) {
    let per = |a: u64, b: u64| (a as f64 - b as f64) / open.max(1) as f64;
    report.int("broker_rss_before_kib", "broker RSS before", before.total_kib);
    report.int("broker_rss_after_kib", "broker RSS after", after.total_kib);
    report.float(
        "broker_kib_per_conn",
        "broker RSS per connection",
        per(after.total_kib, before.total_kib),
        2,
        "KiB",
    );
    report.float(
        "broker_anon_kib_per_conn",
        "broker anonymous RSS per connection",
        per(after.anon_kib, before.anon_kib),
        2,
        "KiB",
    );
}

/// How the probe went.
#[derive(Debug)]
struct Probe {
    received: u64,
    error: Option<String>,
}

/// Sends one message to the topic and waits until `open` connections have
/// it, or the timeout.
async fn probe(common: &Common, args: &ConnectionsArgs, shared: &Shared, open: u64) -> Probe {
    let deadline = Instant::now() + Duration::from_secs_f64(args.probe_timeout);
    let sent = async {
        let source = common.source(args.connections);
        let mut session =
            Session::connect(common.target(), &common.login(), source, READ_CHUNK).await?;
        let stamp = Stamp::now(0, 0, shared.clock.now_ns());
        let send = Frame::new(Command::Send)
            .with_header("destination", args.topic.clone())
            .with_header("receipt", "probe")
            .with_body(stamp.body(64, &mut bytes::BytesMut::new()));
        session.writer.send(&send).await?;
        session.reader.expect(Command::Receipt).await?;
        Ok::<_, Error>(session)
    };
    let timeout = deadline.saturating_duration_since(Instant::now());
    let error = match tokio::time::timeout(timeout, sent).await {
        Ok(Ok(_session)) => loop {
            if shared.received.load(Ordering::Relaxed) >= open {
                break None;
            }
            if Instant::now() >= deadline {
                break Some("the probe did not reach every connection in time".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        },
        Ok(Err(error)) => Some(format!("probe: {error}")),
        Err(_) => Some("probe: timed out sending".to_owned()),
    };
    Probe { received: shared.received.load(Ordering::Relaxed), error }
}

/// Waits until `open` connections have a probe another process sent, or
/// the timeout.
async fn await_probe(args: &ConnectionsArgs, shared: &Shared, open: u64) -> Probe {
    let deadline = Instant::now() + Duration::from_secs_f64(args.probe_timeout);
    let error = loop {
        if shared.received.load(Ordering::Relaxed) >= open {
            break None;
        }
        if Instant::now() >= deadline {
            break Some("no probe reached every connection in time".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Probe { received: shared.received.load(Ordering::Relaxed), error }
}

/// One idle connection.
struct Idle {
    idx: usize,
    common: Common,
    topic: Arc<str>,
    gate: Arc<Semaphore>,
    ready: mpsc::Sender<Result<()>>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
}

impl Idle {
    /// Opens, subscribes, then waits; returns what ended the connection
    /// before it was told to stop, if anything.
    async fn run(mut self) -> Option<String> {
        let opened = {
            let _permit = self.gate.acquire().await;
            let open = async {
                let source = self.common.source(self.idx);
                let (target, login) = (self.common.target(), self.common.login());
                let mut session = Session::connect(target, &login, source, READ_CHUNK).await?;
                session.subscribe("0", &self.topic).await?;
                Ok::<_, Error>(session)
            };
            tokio::time::timeout(self.common.connect_timeout(), open)
                .await
                .unwrap_or_else(|_| Err(Error::new("timed out subscribing")))
        };
        let mut session = match opened {
            Ok(session) => session,
            Err(error) => {
                let _ = self.ready.send(Err(error)).await;
                return None;
            }
        };
        session.reader.release_buffer();
        session.writer.release_buffer();
        let _ = self.ready.send(Ok(())).await;
        drop(self.ready);
        let idx = self.idx;
        loop {
            let frame = tokio::select! {
                biased;
                _ = self.stop.changed() => return None,
                frame = session.reader.next_frame() => frame,
            };
            match frame {
                Ok(Some(frame)) if frame.command() == Command::Message => {
                    let now = self.shared.clock.now_ns();
                    if let Some(stamp) = Stamp::read(frame.body()) {
                        self.shared.latencies.record(idx, [stamp.since_sent(now)]);
                    }
                    self.shared.received.fetch_add(1, Ordering::Relaxed);
                    session.reader.release_buffer();
                }
                Ok(Some(frame)) if frame.command() == Command::Error => {
                    return Some(format!("connection {idx}: {}", error_frame(&frame)));
                }
                Ok(Some(_)) => {}
                Ok(None) => return Some(format!("connection {idx}: closed by the broker")),
                Err(error) => return Some(format!("connection {idx}: {error}")),
            }
        }
    }
}
