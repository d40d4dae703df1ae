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

use std::process::Command;
use std::time::Duration;

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
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .arg(broker.addr.port().to_string())
        .current_dir(&root)
        .env("PYTHONUNBUFFERED", "1");
    support::run_interop(command, "stomp.py interop", "run scripts/ensure-venv", SCRIPT_TIMEOUT)
        .await;
    broker.stop().await;
}
