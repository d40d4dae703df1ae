//! Interoperability with the Python client stomp.py: a broker on an
//! ephemeral port, driven by `tests/interop/stomppy_interop.py` (connect in
//! 1.2, 1.1 and 1.0, topics, queues with client-individual ACK/NACK,
//! transactions, receipts, heart-beats, DISCONNECT with a receipt).
//!
//! The script runs with the workspace's `.venv/bin/python`, which
//! `scripts/ensure-venv` creates with the pinned packages of
//! `tests/interop/requirements.txt`. Without it this test fails (it never
//! skips): run `scripts/ensure-venv` first.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::TestBroker;

/// The whole script must finish within this (it takes about 10 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_py_client_interoperates() {
    let root = support::workspace_root();
    let python = root.join(".venv/bin/python");
    let script = root.join("tests/interop/stomppy_interop.py");
    assert!(
        python.exists(),
        "{} is missing: run scripts/ensure-venv (from the workspace root) to create the \
         virtualenv with stomp.py (tests/interop/requirements.txt), then run the tests again",
        python.display()
    );
    assert!(script.exists(), "{} is missing", script.display());

    let broker = TestBroker::default().await;
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(broker.addr.port().to_string())
        .current_dir(&root)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let stdout = support::drain(child.stdout.take().expect("stdout"));
    let stderr = support::drain(child.stderr.take().expect("stderr"));

    // Poll without blocking the runtime: the broker serves on it meanwhile.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    let report = format!("--- stdout ---\n{stdout}--- stderr ---\n{stderr}");

    let Some(status) = status else {
        panic!("stomp.py interop script did not finish within {SCRIPT_TIMEOUT:?}\n{report}");
    };
    assert!(status.success(), "stomp.py interop script failed ({status})\n{report}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("stomp.py interop: ") && last.ends_with(" checks passed"),
        "the script succeeded without its final summary line\n{report}"
    );
    eprintln!("{last}");
    broker.stop().await;
}
