//! `chat-server`: the reference chat service on stomp-broker. A web chat
//! page, a REST API for rooms and history, STOMP over WebSocket (`/stomp`)
//! and TCP, SQLite by default, MySQL (rooms), MongoDB (history) and Redis
//! (several nodes) when configured. See README.md for every key.
//!
//! - `config`: flags, environment and TOML file.
//! - `chat`: the chat rules in the broker's hooks; `ids`: message ids.
//! - `auth`: guest nicknames and JWTs; `http`: axum routes; `web`: the page.

mod auth;
mod chat;
mod config;
mod http;
mod ids;
mod listener;
mod metrics;
mod relay;
mod web;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use stomp_broker::backplane::{RedisBackplane, RedisConfig};
use stomp_broker::store::{
    HistoryStore, HistoryWriter, MongoStore, MySqlStore, RoomStore, SqliteStore, StoreError,
    WriterConfig,
};
use stomp_broker::{Broker, Limits};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::auth::Identity;
use crate::chat::{Chat, Rules};
use crate::config::{Config, Settings, redact};
use crate::ids::{RedisSequencer, Sequencer};

/// Name of the first room, made when there is none.
const FIRST_ROOM: &str = "general";

/// HTTP connections allowed beyond `--max-connections` (which bounds
/// STOMP sessions, WebSockets included), for page loads and REST calls.
const HTTP_HEADROOM: usize = 1000;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct StartError(String);

fn main() -> ExitCode {
    let config = match Settings::parse().resolve() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("chat-server: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = match EnvFilter::try_new(&config.log) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("chat-server: invalid configuration: --log (CHAT_LOG, `log`): {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("chat-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("chat-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The stores chosen by the configuration.
struct Stores {
    rooms: Arc<dyn RoomStore>,
    history: Arc<dyn HistoryStore>,
    sqlite: Option<SqliteStore>,
    mysql: Option<MySqlStore>,
}

async fn open_stores(config: &Config) -> Result<Stores, StartError> {
    let sqlite = if config.mysql_url.is_none() || config.mongodb_url.is_none() {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            StartError(format!("--data-dir: cannot create {}: {e}", config.data_dir.display()))
        })?;
        let path = config.data_dir.join("chat.db");
        let store = SqliteStore::open(&path)
            .await
            .map_err(|e| StartError(format!("--data-dir: cannot open {}: {e}", path.display())))?;
        tracing::info!(path = %path.display(), "SQLite storage");
        Some(store)
    } else {
        None
    };
    let mysql = match &config.mysql_url {
        Some(url) => {
            let store = MySqlStore::connect(url).await.map_err(|e| {
                StartError(format!("--mysql-url: cannot use MySQL at {}: {e}", redact(url)))
            })?;
            tracing::info!(url = %redact(url), "rooms in MySQL");
            Some(store)
        }
        None => None,
    };
    let mongo = match &config.mongodb_url {
        Some(url) => {
            let store = MongoStore::connect(url).await.map_err(|e| {
                StartError(format!("--mongodb-url: cannot use MongoDB at {}: {e}", redact(url)))
            })?;
            tracing::info!(url = %redact(url), "history in MongoDB");
            Some(store)
        }
        None => None,
    };
    let rooms: Arc<dyn RoomStore> = match (&mysql, &sqlite) {
        (Some(mysql), _) => Arc::new(mysql.clone()),
        (None, Some(sqlite)) => Arc::new(sqlite.clone()),
        (None, None) => unreachable!("SQLite is opened when MySQL is not configured"),
    };
    let history: Arc<dyn HistoryStore> = match (mongo, &sqlite) {
        (Some(mongo), _) => Arc::new(mongo),
        (None, Some(sqlite)) => Arc::new(sqlite.clone()),
        (None, None) => unreachable!("SQLite is opened when MongoDB is not configured"),
    };
    Ok(Stores { rooms, history, sqlite, mysql })
}

/// Makes the first room when there is none (several nodes starting at
/// once may race: one wins, the others find the name taken).
async fn first_room(rooms: &dyn RoomStore) -> Result<(), StartError> {
    let fail = |e: StoreError| StartError(format!("cannot read rooms: {e}"));
    if rooms.rooms(None, 1).await.map_err(fail)?.is_empty() {
        match rooms.create_room(FIRST_ROOM).await {
            Ok(room) => tracing::info!(id = %room.id, "created room {FIRST_ROOM}"),
            Err(StoreError::NameTaken(_)) => {}
            Err(e) => return Err(fail(e)),
        }
    }
    Ok(())
}

async fn bind(addr: SocketAddr, key: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| StartError(format!("{key}: cannot listen on {addr}: {e}")))
}

async fn run(config: Config) -> Result<(), StartError> {
    let mut signals = Signals::new()?;
    let stores = open_stores(&config).await?;
    first_room(&*stores.rooms).await?;
    let history = HistoryWriter::spawn(stores.history.clone(), WriterConfig::default());
    let mut builder = Broker::builder()
        .limits(
            Limits::default()
                .max_connections(config.max_connections)
                .max_frame_rate(config.max_frame_rate),
        )
        .server_name(format!("chat-server/{}", env!("CARGO_PKG_VERSION")))
        .shutdown_timeout(config.shutdown_timeout.mul_f64(0.6));
    let sequencer = match &config.redis_url {
        Some(url) => {
            if config.mongodb_url.is_none() || config.mysql_url.is_none() {
                tracing::warn!(
                    "--redis-url without --mysql-url and --mongodb-url: nodes share live \
                     messages but each keeps its own rooms or history in SQLite"
                );
            }
            let backplane = RedisBackplane::connect(
                RedisConfig::new(url.clone())
                    .channel_prefix(format!("{}topic:", config.redis_prefix)),
            )
            .await
            .map_err(|e| {
                StartError(format!("--redis-url: cannot use Redis at {}: {e}", redact(url)))
            })?;
            builder = builder.backplane(backplane);
            let sequencer = RedisSequencer::new(url, &config.redis_prefix)
                .map_err(|e| StartError(format!("--redis-url: {e}")))?;
            let sequencer = Sequencer::Redis(Box::new(sequencer));
            sequencer.ping().await.map_err(|e| {
                StartError(format!("--redis-url: cannot use Redis at {}: {e}", redact(url)))
            })?;
            sequencer
        }
        None => Sequencer::Local,
    };
    let metrics = Arc::new(
        metrics::Metrics::new().map_err(|e| StartError(format!("cannot set up metrics: {e}")))?,
    );
    let chat = Arc::new(Chat::new(
        stores.rooms.clone(),
        history.clone(),
        sequencer,
        config.max_text_chars,
        config.resume_limit,
        metrics.clone(),
    ));
    let rules = Rules(chat.clone());
    let identity = Identity::new(config.jwt_secret.as_deref());
    let broker = builder
        .authenticator(identity.clone())
        .interceptor(rules.clone())
        .app_handler("/app/", rules.clone())
        .replay(rules)
        .build();
    chat.attach(broker.clone());
    metrics
        .collect_from(&broker, &history)
        .map_err(|e| StartError(format!("cannot set up metrics: {e}")))?;

    let http_listener = bind(config.http, "--http").await?;
    let stomp_listener = bind(config.stomp, "--stomp").await?;
    let (http_addr, stomp_addr) = (local(&http_listener), local(&stomp_listener));

    let stop_http = CancellationToken::new();
    let app = http::App { chat: chat.clone(), broker: broker.clone(), identity };
    let service = http::router(app).into_make_service_with_connect_info::<listener::Peer>();
    // Room beside the WebSockets for page loads and REST calls.
    let http_listener =
        listener::Limited::new(http_listener, config.max_connections + HTTP_HEADROOM);
    let http_task = tokio::spawn({
        let stop = stop_http.clone();
        async move {
            axum::serve(http_listener, service).with_graceful_shutdown(stop.cancelled_owned()).await
        }
    });
    let stomp_task = tokio::spawn({
        let broker = broker.clone();
        async move { broker.serve(stomp_listener).await }
    });

    #[expect(clippy::print_stdout, reason = "the one line that tells the user where to go")]
    {
        println!(
            "chat-server ready: open http://{http_addr}/ (STOMP over WebSocket at \
             ws://{http_addr}/stomp, over TCP at tcp://{stomp_addr})"
        );
    }
    tracing::info!(%http_addr, %stomp_addr, "listening");

    tokio::select! {
        signal = signals.recv() => tracing::info!("{signal}: shutting down"),
        result = stomp_task => return Err(StartError(format!("STOMP listener stopped: {}", describe(result)))),
    }
    let started = Instant::now();
    stop_http.cancel();
    // Sessions first (each gets an ERROR, what it sent is handled), then
    // what they posted is written.
    broker.shutdown().await;
    let left =
        config.shutdown_timeout.saturating_sub(started.elapsed()).max(Duration::from_secs(1));
    match history.close(left).await {
        Ok(()) => tracing::info!(written = history.stats().written, "history flushed"),
        Err(unflushed) => tracing::error!("{unflushed}"),
    }
    if tokio::time::timeout(Duration::from_secs(1), http_task).await.is_err() {
        tracing::debug!("HTTP connections still open at exit");
    }
    if let Some(sqlite) = stores.sqlite {
        sqlite.close().await;
    }
    if let Some(mysql) = stores.mysql {
        mysql.close().await;
    }
    tracing::info!(elapsed_ms = started.elapsed().as_millis(), "stopped");
    Ok(())
}

fn local(listener: &TcpListener) -> SocketAddr {
    listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

fn describe<E: std::fmt::Display>(result: Result<std::io::Result<()>, E>) -> String {
    match result {
        Ok(Ok(())) => "closed".to_owned(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    }
}

/// SIGINT and SIGTERM, caught from the moment this is made (before the
/// ready line: a signal right after it must stop the server gracefully).
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self, StartError> {
        use tokio::signal::unix::{SignalKind, signal};
        let catch = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| StartError(format!("cannot catch {name}: {e}")))
        };
        Ok(Self {
            interrupt: catch(SignalKind::interrupt(), "SIGINT")?,
            terminate: catch(SignalKind::terminate(), "SIGTERM")?,
        })
    }

    /// The first of them to arrive.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
