//! The plain broker: STOMP over TCP and over WebSocket, open to any login.
//!
//! Used by the interop tests and the benchmarks:
//!
//! ```text
//! cargo run --release --example broker -- --tcp 127.0.0.1:61613 --ws 127.0.0.1:15674
//! ```
//!
//! The WebSocket endpoint is at `/stomp` (`ws://127.0.0.1:15674/stomp`).
//! With `--redis-url redis://127.0.0.1:6379`, several of these processes
//! are one cluster: topics and user destinations cross nodes.
//!
//! Stops gracefully on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use stomp_broker::backplane::{RedisBackplane, RedisConfig};
use stomp_broker::{Broker, Heartbeat, Limits, SlowConsumerPolicy};
use tokio::net::{TcpListener, TcpSocket};

/// A plain STOMP broker.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address for STOMP over TCP.
    #[arg(long, default_value = "127.0.0.1:61613")]
    tcp: SocketAddr,
    /// Address for STOMP over WebSocket (endpoint `/stomp`); none by default.
    #[arg(long)]
    ws: Option<SocketAddr>,
    /// Most connections at once.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Bytes waiting to be written to one connection before the
    /// slow-consumer policy applies.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    max_pending_bytes: usize,
    /// What to do with slow consumers: disconnect, drop-oldest, drop-newest.
    #[arg(long, default_value = "disconnect", value_parser = parse_policy)]
    slow_consumer: SlowConsumerPolicy,
    /// Shortest heart-beat interval the broker agrees to, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    min_heartbeat_ms: u64,
    /// Listen backlog: connections the kernel holds before they are
    /// accepted (tokio's default of 128 drops bursts of new connections).
    #[arg(long, default_value_t = 4096)]
    backlog: u32,
    /// Join other nodes through Redis pub/sub (e.g. redis://127.0.0.1:6379):
    /// topics and user destinations then reach every node's subscribers.
    #[arg(long)]
    redis_url: Option<String>,
    /// Prefix of the Redis channels (nodes of one cluster share it).
    #[arg(long, default_value = "stomp:")]
    redis_prefix: String,
}

/// A listener with a backlog of `backlog`.
fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

fn parse_policy(s: &str) -> Result<SlowConsumerPolicy, String> {
    match s {
        "disconnect" => Ok(SlowConsumerPolicy::Disconnect),
        "drop-oldest" => Ok(SlowConsumerPolicy::DropOldest),
        "drop-newest" => Ok(SlowConsumerPolicy::DropNewest),
        other => Err(format!("'{other}' is not one of disconnect, drop-oldest, drop-newest")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter(env_filter()).with_writer(std::io::stderr).init();
    let args = Args::parse();
    let listener = match listen(args.tcp, args.backlog) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(address = %args.tcp, %error, "cannot listen (--tcp)");
            return ExitCode::FAILURE;
        }
    };
    let ws_listener = match args.ws.map(|addr| listen(addr, args.backlog)).transpose() {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(address = ?args.ws, %error, "cannot listen (--ws)");
            return ExitCode::FAILURE;
        }
    };
    let interval = Duration::from_millis(args.min_heartbeat_ms);
    let mut builder = Broker::builder();
    if let Some(url) = &args.redis_url {
        let config = RedisConfig::new(url.as_str()).channel_prefix(args.redis_prefix.as_str());
        match RedisBackplane::connect(config).await {
            Ok(backplane) => {
                tracing::info!(redis = %url, node = backplane.node_id(), "joined the Redis backplane");
                builder = builder.backplane(backplane);
            }
            Err(error) => {
                tracing::error!(redis = %url, %error, "cannot reach Redis (--redis-url)");
                return ExitCode::FAILURE;
            }
        }
    }
    let broker = builder
        .limits(
            Limits::default()
                .max_connections(args.max_connections)
                .max_pending_bytes(args.max_pending_bytes),
        )
        .heartbeat(Heartbeat::default().min_send(interval).min_receive(interval))
        .slow_consumer(args.slow_consumer)
        .build();
    if let Some(listener) = ws_listener {
        let broker = broker.clone();
        tracing::info!(ws = ?args.ws, path = "/stomp", "STOMP over WebSocket listening");
        tokio::spawn(async move { broker.serve_ws(listener, "/stomp").await });
    }
    tracing::info!(tcp = %args.tcp, "STOMP over TCP listening");
    match broker.serve_with_shutdown(listener, shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "serving failed");
            ExitCode::FAILURE
        }
    }
}

fn env_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
