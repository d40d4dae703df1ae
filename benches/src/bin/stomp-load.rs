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
    let result = runtime.block_on(run(&cli));
    // Connections still closing must not hold the exit up.
    runtime.shutdown_background();
    load::report::finish("stomp-load", result)
}

async fn run(cli: &Cli) -> Result<Report> {
    match &cli.scenario {
        Scenario::Fanout(args) => fanout::run(&cli.common, args).await,
        Scenario::Connections(args) => connections::run(&cli.common, args).await,
        Scenario::Rooms(args) => rooms::run(&cli.common, args).await,
        Scenario::Queue(args) => queue::run(&cli.common, args).await,
    }
}

fn fail(message: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "stomp-load: {message}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use load::report::Value;
    use stomp_broker::Broker;
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// Short runs of every scenario, over both transports, against the
    /// broker of this workspace (`fanout` and `queue` also at a fixed
    /// rate): each must finish and find nothing lost, duplicated or
    /// refused, and report its latencies from the schedule and from the
    /// send.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_scenario_runs_clean_against_the_broker() {
        let broker = Broker::builder().build();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp_addr = tcp.local_addr().unwrap().to_string();
        let ws_addr = ws.local_addr().unwrap().to_string();
        let serving = broker.clone();
        tokio::spawn(async move { serving.serve(tcp).await });
        let serving = broker.clone();
        tokio::spawn(async move { serving.serve_ws(ws, "/stomp").await });

        let short = ["--duration", "0.5", "--warmup", "0.2", "--drain-timeout", "10"];
        let scenarios: [&[&str]; 6] = [
            &["fanout", "--subscribers", "5", "--publishers", "2", "--window", "40"],
            &["fanout", "--subscribers", "3", "--publishers", "2", "--rate", "400"],
            &["rooms", "--rooms", "3", "--members", "3", "--rate-per-member", "20"],
            &["queue", "--producers", "2", "--consumers", "2", "--prefetch", "10"],
            &["queue", "--producers", "2", "--consumers", "2", "--rate", "400"],
            &["connections", "--connections", "30"],
        ];
        for (transport, target) in [("tcp", &tcp_addr), ("ws", &ws_addr)] {
            for scenario in scenarios {
                let mut argv = vec!["stomp-load", "--transport", transport, "--target", target];
                argv.extend_from_slice(scenario);
                if scenario[0] != "connections" {
                    argv.extend_from_slice(&short);
                }
                let cli = Cli::try_parse_from(&argv).unwrap();
                let report = run(&cli).await.unwrap_or_else(|e| panic!("{argv:?}: {e}"));
                assert!(
                    matches!(report.get("ok"), Some(Value::Bool(true))),
                    "{argv:?}: {}",
                    report.json()
                );
                if scenario[0] != "connections" {
                    check_latencies(&report, &argv);
                }
            }
        }
        assert_eq!(broker.stats().errors_sent, 0, "no scenario was refused anything");
        broker.shutdown().await;
    }

    /// Checks the latency figures of a clean run: from the schedule, never
    /// below those from the send; nothing undelivered; at a fixed rate,
    /// the target reached.
    fn check_latencies(report: &Report, argv: &[&str]) {
        let float = |key: &str| match report.get(key) {
            Some(Value::Float(x, _)) => *x,
            other => panic!("{argv:?}: {key} is {other:?} in {}", report.json()),
        };
        let recorded = matches!(report.get("latency_count"), Some(Value::Int(n)) if *n > 0);
        assert!(recorded, "{argv:?}: {}", report.json());
        assert!(matches!(report.get("undelivered"), Some(Value::Int(0))), "{argv:?}");
        assert_eq!(float("latency_p99_with_undelivered_us"), float("latency_p99_us"));
        assert!(float("latency_max_us") >= float("latency_from_send_max_us"), "{argv:?}");
        let rated = argv.contains(&"--rate") || argv.contains(&"rooms");
        assert_eq!(report.get("published_of_target_pct").is_some(), rated, "{argv:?}");
        if rated {
            assert!(float("published_of_target_pct") >= 99.0, "{argv:?}: {}", report.json());
        }
    }
}
