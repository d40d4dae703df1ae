//! `stomp-load`: a load generator for STOMP brokers, speaking STOMP 1.2
//! through `stomp-codec`.
//!
//! ```text
//! stomp-load [--target 127.0.0.1:61613] fanout --subscribers 1000 --body 100 --duration 20
//! stomp-load connections --connections 10000 --broker-pid PID
//! stomp-load --transport ws rooms --rooms 500 --members 10 --rate-per-member 1
//! stomp-load queue --producers 2 --consumers 2 --prefetch 100 --duration 20
//! ```
//!
//! Each scenario prints a table, then one line `RESULT {json}` with the
//! same figures. The exit status is 0 when the run was clean, 3 when it
//! finished but found losses, duplicates or errors, and 1 when it could
//! not run. See `benches/LOAD.md` for the method and the results.

#[path = "../load/mod.rs"]
mod load;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use load::connections::{self, ConnectionsArgs};
use load::fanout::{self, FanoutArgs};
use load::queue::{self, QueueArgs};
use load::report::Report;
use load::rooms::{self, RoomsArgs};
use load::{Common, Result};

/// A load generator for STOMP brokers.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

/// The scenarios. A new one is a variant here and a module in `load/`.
#[derive(Debug, Subcommand)]
enum Scenario {
    /// Publishers to one topic with many subscribers: throughput, latency,
    /// losses.
    Fanout(FanoutArgs),
    /// Many idle subscribed connections: the broker's memory per
    /// connection, and a message that must reach them all.
    Connections(ConnectionsArgs),
    /// Chat rooms: every member of a room publishes to it at a fixed rate
    /// and receives everything published there.
    Rooms(RoomsArgs),
    /// Producers and consumers on one queue, with individual
    /// acknowledgements: each message consumed exactly once.
    Queue(QueueArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = cli.common.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = match runtime.build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start the runtime: {error}")),
    };
    let result: Result<Report> = runtime.block_on(async {
        match &cli.scenario {
            Scenario::Fanout(args) => fanout::run(&cli.common, args).await,
            Scenario::Connections(args) => connections::run(&cli.common, args).await,
            Scenario::Rooms(args) => rooms::run(&cli.common, args).await,
            Scenario::Queue(args) => queue::run(&cli.common, args).await,
        }
    });
    // Connections still closing must not hold the exit up.
    runtime.shutdown_background();
    load::report::finish("stomp-load", result)
}

fn fail(message: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "stomp-load: {message}");
    ExitCode::FAILURE
}
