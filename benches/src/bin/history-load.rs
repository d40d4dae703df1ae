//! `history-load`: the sustained rate at which one broker stores chat
//! messages through its batching `HistoryWriter` into one backend.
//!
//! ```text
//! history-load --backend sqlite --producers 4 --rooms 16 --body 100 --duration 20
//! history-load --backend mysql --url mysql://root@127.0.0.1:3306/stomp_history_bench
//! ```
//!
//! The store, the writer, an in-process broker and the STOMP clients all
//! run in this process. It prints a progress line a second on stderr, then
//! a table and one line `RESULT {json}` on stdout, as `stomp-load` does.
//! The exit status is 0 when every message sent was stored, in order; 3
//! when the run finished but the checks failed (`"ok": false`); 1 when it
//! could not run. See `benches/HISTORY.md` for the method and the results.

#[path = "../history/mod.rs"]
mod history;
#[allow(dead_code, reason = "shared with stomp-load, which uses more of it")]
#[path = "../load/procfs.rs"]
mod procfs;
#[path = "../load/report.rs"]
mod report;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use history::args::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = match runtime.build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start the runtime: {error}")),
    };
    let result = runtime.block_on(history::run::run(&args));
    runtime.shutdown_background();
    report::finish("history-load", result)
}

fn fail(message: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "history-load: {message}");
    ExitCode::FAILURE
}
