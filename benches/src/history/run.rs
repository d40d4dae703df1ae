//! One run: the store, the writer, the broker and the producers in this
//! process; then sampling, draining, checking and the report.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stomp_broker::Broker;
use stomp_broker::store::{HistoryWriter, WriterConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::args::Args;
use super::backend::Backend;
use super::handler::{Handler, Rooms};
use super::machine;
use super::producer::{Producer, Sent};
use super::sampler::{self, Sample, Summary};
use super::verify::{self, Verdict};
use super::{Error, Result};
use crate::report::Report;

/// The rate the issue asks of MariaDB and SQLite, in messages per second.
const TARGET_PER_S: f64 = 50_000.0;

/// How sending ended: what was sent, the producers' errors, and how long
/// the drain took.
#[derive(Debug, Default)]
struct Drain {
    sent: u64,
    errors: Vec<String>,
    /// From the end of sending until every producer had its receipt.
    received: Duration,
    /// From the end of sending until the writer had written everything;
    /// `None` when it had not within the drain timeout.
    flushed: Option<Duration>,
}

/// Runs the benchmark `args` describes.
///
/// # Errors
/// When the store cannot be opened or read back, or the broker or the
/// clients cannot start. Problems found during the run are in the report
/// (`"ok": false`).
pub(crate) async fn run(args: &Args) -> Result<Report> {
    let load = machine::load_average().unwrap_or_default();
    let backend = Backend::open(args).await?;
    let config = args.writer_config();
    let writer = HistoryWriter::spawn(Arc::clone(&backend.store), config.clone());
    let rooms = Rooms::new(writer.clone(), args.rooms.max(1), args.publish);
    let broker = Broker::builder().app_handler("/app/", Handler(Arc::clone(&rooms))).build();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let serving = tokio::spawn({
        let broker = broker.clone();
        async move { broker.serve(listener).await }
    });

    let stop = CancellationToken::new();
    let producers = start_producers(args, addr, &stop).await?;
    let start = Instant::now();
    let samples =
        sampler::sample(&writer, &rooms, args.db_pid, start, args.warmup + args.duration).await;
    stop.cancel();
    let drain = drain(producers, &writer, args.drain_timeout()).await;
    let verdict = match drain.flushed {
        Some(_) => Some(verify::verify(&*backend.store, &rooms, args.rooms.max(1)).await?),
        None => None,
    };
    let end = writer.stats();

    broker.shutdown().await;
    let _ = serving.await;
    let _ = writer.close(Duration::from_secs(5)).await;
    drop((broker, rooms, writer));
    let location = backend.location.clone();
    if !args.keep {
        backend.remove().await?;
    }
    let summary = Summary::of(&samples, args.warmup);
    let mut report = Report::new("history");
    describe(&mut report, args, &config, &location);
    report.text("load_average", "load average at the start", load);
    measured(&mut report, &summary);
    checked(&mut report, &samples, &drain, verdict.as_ref(), end.failures);
    Ok(report)
}

/// Connects the producers and starts them sending.
async fn start_producers(
    args: &Args,
    addr: SocketAddr,
    stop: &CancellationToken,
) -> Result<Vec<JoinHandle<Result<Sent>>>> {
    let mut producers = Vec::with_capacity(args.producers);
    for index in 0..args.producers.max(1) {
        let producer = Producer::connect(addr, index, args.rooms.max(1), args.body).await?;
        producers.push(producer);
    }
    let timeout = args.drain_timeout();
    Ok(producers.into_iter().map(|p| tokio::spawn(p.run(stop.clone(), timeout))).collect())
}

/// Waits for the producers' final receipts, then for the writer.
async fn drain(
    producers: Vec<JoinHandle<Result<Sent>>>,
    writer: &HistoryWriter,
    timeout: Duration,
) -> Drain {
    let stopped = Instant::now();
    let mut drain = Drain::default();
    for producer in producers {
        match producer.await {
            Ok(Ok(sent)) => drain.sent += sent.total,
            Ok(Err(e)) => drain.errors.push(e.to_string()),
            Err(e) => drain.errors.push(Error::new(format!("producer task: {e}")).to_string()),
        }
    }
    drain.received = stopped.elapsed();
    let left = timeout.saturating_sub(drain.received);
    if tokio::time::timeout(left, writer.flush()).await.is_ok() {
        drain.flushed = Some(stopped.elapsed());
    } else {
        drain.errors.push(format!("the writer did not write everything within {timeout:?}"));
    }
    drain
}

/// The run's settings.
fn describe(report: &mut Report, args: &Args, config: &WriterConfig, location: &str) {
    report.text("backend", "backend", format!("{:?}", args.backend).to_lowercase());
    report.text("location", "database", location);
    report.int("producers", "producer connections", args.producers as u64);
    report.int("rooms", "rooms", args.rooms as u64);
    report.int("body_octets", "body", args.body as u64);
    report.int("max_batch", "writer max batch", config.max_batch as u64);
    report.float("linger_ms", "writer linger", config.linger.as_secs_f64() * 1e3, 0, "ms");
    report.int("capacity", "writer capacity (messages)", config.capacity as u64);
    report.bool("publish", "publish to /topic/rooms.N", args.publish);
}

/// The measured period.
fn measured(report: &mut Report, s: &Summary) {
    report.float("measured_s", "measured", s.seconds, 1, "s");
    report.float(
        "written_per_s_median",
        "WRITTEN/s, median of 1 s samples",
        s.written_median,
        0,
        "msg/s",
    );
    report.float("written_per_s_min", "written/s, lowest second", s.written_min, 0, "msg/s");
    report.float("written_per_s_max", "written/s, highest second", s.written_max, 0, "msg/s");
    report.float("written_per_s_mean", "written/s, mean", s.written_mean, 0, "msg/s");
    report.float("written_per_s_first5", "written/s, first 5 s", s.written_first5, 0, "msg/s");
    report.float("written_per_s_last5", "written/s, last 5 s", s.written_last5, 0, "msg/s");
    report.float("accepted_per_s_median", "accepted/s, median", s.accepted_median, 0, "msg/s");
    report.float("accepted_per_s_mean", "accepted/s, mean", s.accepted_mean, 0, "msg/s");
    report.int("written", "written in the period", s.written);
    report.int("batches", "batches in the period", s.batches);
    report.float("batch_mean", "messages per batch, mean", s.batch_mean, 1, "");
    report.float("write_ms_median", "batch write time, median sample", s.write_ms_median, 2, "ms");
    report.float("buffered_mean", "buffered, mean of samples", s.buffered_mean, 0, "msg");
    report.int("buffered_max", "buffered, largest sample", s.buffered_max as u64);
    report.int("full_waits", "appends that waited (buffer full)", s.full_waits);
    report.int("failures", "failed batch writes", s.failures);
    report.float("cpu_pct", "CPU of this process", s.cpu_pct.unwrap_or(f64::NAN), 0, "% of a core");
    report.float(
        "db_cpu_pct",
        "CPU of the database server",
        s.db_cpu_pct.unwrap_or(f64::NAN),
        0,
        "% of a core",
    );
    let machine = s.machine_cpu_pct.unwrap_or(f64::NAN);
    let others = machine - s.cpu_pct.unwrap_or(0.0) - s.db_cpu_pct.unwrap_or(0.0);
    report.float("machine_cpu_pct", "CPU of the whole machine", machine, 0, "% of a core");
    report.float("others_cpu_pct", "CPU of other processes", others, 0, "% of a core");
    report.bool("target_met", "median ≥ 50,000 msg/s", s.written_median >= TARGET_PER_S);
}

/// The end of the run and the checks.
fn checked(
    report: &mut Report,
    samples: &[Sample],
    drain: &Drain,
    verdict: Option<&Verdict>,
    failures: u64,
) {
    let last = samples.last().cloned().unwrap_or_default();
    report.int("buffered_at_stop", "buffered when sending stopped", last.buffered as u64);
    report.int("full_waits_total", "appends that waited, whole run", last.full_waits);
    report.int("failures_total", "failed batch writes, whole run", failures);
    report.float(
        "receipts_s",
        "time to the producers' last receipt",
        drain.received.as_secs_f64(),
        2,
        "s",
    );
    let flushed = drain.flushed.map_or(f64::NAN, |d| d.as_secs_f64());
    report.float("flushed_s", "time until all was written", flushed, 2, "s");
    report.int("sent", "messages sent", drain.sent);
    let verdict = verdict.cloned().unwrap_or_default();
    report.int("accepted", "messages accepted", verdict.accepted);
    report.int("stored", "messages stored (count of every room)", verdict.stored);
    report.text("count_mismatches", "rooms with stored ≠ accepted", verdict.mismatches.join("; "));
    report.int("walked", "room 1 read back in order", verdict.walked);
    report.float(
        "walk_ms",
        "time to read room 1 back",
        verdict.walk_time.as_secs_f64() * 1e3,
        0,
        "ms",
    );
    report.text(
        "walk_fault",
        "first gap or disorder in room 1",
        verdict.walk_fault.clone().unwrap_or_default(),
    );
    report.text("errors", "errors", drain.errors.join("; "));
    let ok = drain.errors.is_empty()
        && drain.flushed.is_some()
        && verdict.ok()
        && drain.sent == verdict.accepted;
    report.bool("ok", "every message stored, in order", ok);
}
