//! The command line of `history-load`.

use std::path::PathBuf;
use std::time::Duration;

use stomp_broker::store::WriterConfig;

use super::backend::Kind;

/// Sustained batched write rate of chat history from one broker into one
/// store: STOMP clients send to `/app/rooms.{n}`, the broker's handler
/// appends every message to a `HistoryWriter`, and the writer's counters
/// are sampled once a second.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "history-load", version, about)]
pub(crate) struct Args {
    /// The store written to.
    #[arg(long, value_enum, default_value_t = Kind::Memory)]
    pub(crate) backend: Kind,
    /// The database URL (`mysql` and `mongodb`). Its database is dropped
    /// and created again before the run and dropped after it, so its name
    /// must contain `bench`. Default: `mysql://root@127.0.0.1:3306/stomp_history_bench`,
    /// `mongodb://127.0.0.1:27017/stomp_history_bench?directConnection=true`.
    #[arg(long)]
    pub(crate) url: Option<String>,
    /// The SQLite file (`sqlite`), removed (with its `-wal` and `-shm`
    /// files) before and after the run. Default: `TMPDIR/history-load-bench.sqlite`.
    #[arg(long)]
    pub(crate) path: Option<PathBuf>,
    /// Keep the database (SQLite file, MySQL or MongoDB database) after the
    /// run, to look at it.
    #[arg(long)]
    pub(crate) keep: bool,
    /// Client connections sending messages.
    #[arg(long, default_value_t = 4)]
    pub(crate) producers: usize,
    /// Rooms the messages are spread over (ids 1 to N); every producer
    /// sends to every room in turn.
    #[arg(long, default_value_t = 16)]
    pub(crate) rooms: usize,
    /// Octets of each message body (JSON: `{"text":"..."}`, at least 12).
    #[arg(long, default_value_t = 100)]
    pub(crate) body: usize,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 20)]
    pub(crate) duration: u64,
    /// Seconds of sending before the measurement starts.
    #[arg(long, default_value_t = 3)]
    pub(crate) warmup: u64,
    /// The writer's largest batch in messages (`WriterConfig::max_batch`).
    /// [default: the writer's, 1,000]
    #[arg(long)]
    pub(crate) batch: Option<usize>,
    /// How long the writer waits for a batch to fill, in milliseconds
    /// (`WriterConfig::linger`). [default: the writer's, 5]
    #[arg(long)]
    pub(crate) linger_ms: Option<u64>,
    /// Messages the writer buffers before refusing appends
    /// (`WriterConfig::capacity`). [default: the writer's, 100,000]
    #[arg(long)]
    pub(crate) capacity: Option<usize>,
    /// Also publish every stored message to `/topic/rooms.{n}` (nobody
    /// subscribes), as the chat server will.
    #[arg(long)]
    pub(crate) publish: bool,
    /// Seconds allowed, after sending stops, for the broker to take in
    /// what was sent and for the writer to write everything.
    #[arg(long, default_value_t = 120)]
    pub(crate) drain_timeout: u64,
    /// Worker threads of the runtime (broker, clients and writer share
    /// it; default: one per CPU).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// The database server's process id, to report its CPU time from
    /// `/proc` (same machine only).
    #[arg(long)]
    pub(crate) db_pid: Option<u32>,
}

impl Args {
    /// The writer's settings: its defaults, with the flags given.
    pub(crate) fn writer_config(&self) -> WriterConfig {
        let mut config = WriterConfig::default();
        if let Some(batch) = self.batch {
            config.max_batch = batch.max(1);
        }
        if let Some(ms) = self.linger_ms {
            config.linger = Duration::from_millis(ms);
        }
        if let Some(capacity) = self.capacity {
            config.capacity = capacity.max(1);
        }
        config
    }

    /// [`drain_timeout`](Self::drain_timeout) as a duration.
    pub(crate) fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout)
    }
}
