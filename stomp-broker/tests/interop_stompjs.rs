//! Interoperability of the WebSocket transport with the JavaScript client
//! `@stomp/stompjs` (over the `ws` package, in Node): a broker serving
//! STOMP over WebSocket on an ephemeral port, driven by
//! `tests/interop/stompjs/interop.mjs` (CONNECT and the subprotocols,
//! topics, receipts, queues with client-individual ACK/NACK, transactions,
//! heart-beats, 1 MiB binary and text bodies, a clean `deactivate()`), and
//! the same broker over TCP and WebSocket at once (messages cross both ways).
//!
//! The script needs `node` and the pinned packages of
//! `tests/interop/stompjs/package-lock.json`, which `scripts/ensure-node`
//! installs into `tests/interop/stompjs/node_modules`. Without them these
//! tests fail (they never skip): run `scripts/ensure-node` first.

mod support;

use std::process::Command;
use std::time::Duration;

use stomp_broker::Broker;
use tokio::net::TcpListener;

/// The whole script must finish within this (it takes about 6 s; it has a
/// watchdog of its own at 45 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// The WebSocket endpoint's path.
const WS_PATH: &str = "/stomp";

/// Runs `node tests/interop/stompjs/interop.mjs ARGS...` from the workspace
/// root, without blocking the runtime (the broker serves on it meanwhile),
/// and asserts that it succeeded with its summary line.
async fn run_script(args: &[String]) {
    let root = support::workspace_root();
    let dir = root.join("tests/interop/stompjs");
    let script = dir.join("interop.mjs");
    assert!(script.exists(), "{} is missing", script.display());
    for package in ["@stomp/stompjs", "ws"] {
        let manifest = dir.join("node_modules").join(package).join("package.json");
        assert!(
            manifest.exists(),
            "{} is missing: run scripts/ensure-node (from the workspace root) to install the pinned \
             Node packages (tests/interop/stompjs/package-lock.json), then run the tests again",
            manifest.display()
        );
    }

    let mut command = Command::new("node");
    command.arg(&script).args(args).current_dir(&root);
    let hint = "install Node.js 20 or later (apt-get install nodejs npm)";
    support::run_interop(command, "stompjs interop", hint, SCRIPT_TIMEOUT).await;
}

/// Binds 127.0.0.1 on an ephemeral port.
async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stompjs_client_interoperates_over_websocket() {
    let broker = Broker::builder().build();
    let listener = bind().await;
    let addr = listener.local_addr().expect("local addr");
    let serving = tokio::spawn({
        let broker = broker.clone();
        async move { broker.serve_ws(listener, WS_PATH).await }
    });

    run_script(&[format!("ws://{addr}{WS_PATH}")]).await;

    broker.shutdown().await;
    serving.await.expect("serve_ws task").expect("serve_ws");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_between_tcp_and_stompjs_over_websocket() {
    let broker = Broker::builder().build();
    let ws_listener = bind().await;
    let ws_addr = ws_listener.local_addr().expect("local addr");
    let tcp_listener = bind().await;
    let tcp_addr = tcp_listener.local_addr().expect("local addr");
    let serving_ws = tokio::spawn({
        let broker = broker.clone();
        async move { broker.serve_ws(ws_listener, WS_PATH).await }
    });
    let serving_tcp = tokio::spawn({
        let broker = broker.clone();
        async move { broker.serve(tcp_listener).await }
    });

    run_script(&[format!("ws://{ws_addr}{WS_PATH}"), tcp_addr.port().to_string()]).await;

    broker.shutdown().await;
    serving_ws.await.expect("serve_ws task").expect("serve_ws");
    serving_tcp.await.expect("serve task").expect("serve");
}
