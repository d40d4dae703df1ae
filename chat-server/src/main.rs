//! `chat-server`: the reference chat service on stomp-broker. A web chat
//! page, a REST API for rooms and history, STOMP over WebSocket (`/stomp`)
//! and TCP, SQLite by default, MySQL (rooms), MongoDB (history) and Redis
//! (several nodes) when configured. See README.md for every key.
//!
//! - `config`: flags, environment and TOML file.
//! - `chat`: the chat rules in the broker's hooks; `ids`: message ids.
//! - `auth`: guest nicknames and JWTs; `http`: axum routes (`api_error`:
//!   their JSON errors); `web`: the page.
//! - `listener`: the bounded HTTP server; `quota`: limits on making rooms.

mod api_error;
mod auth;
mod chat;
mod config;
mod http;
mod ids;
mod listener;
mod metrics;
mod quota;
mod relay;
mod web;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stomp_broker::backplane::{RedisBackplane, RedisConfig};
use stomp_broker::codec::Limits as FrameLimits;
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
use crate::config::{ArgsError, Config, Settings, redact};
use crate::ids::{RedisSequencer, Sequencer};
use crate::listener::HttpLimits;
use crate::quota::{RateLimiter, RoomCap};

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
    let settings = match Settings::parse_args(std::env::args_os()) {
        Ok(settings) => settings,
        Err(ArgsError::Clap(e)) => e.exit(),
        Err(ArgsError::Config(e)) => {
            eprintln!("chat-server: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match settings.resolve() {
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
    for name in config::empty_variables() {
        tracing::warn!("{name} is set but empty: treated as unset");
    }
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

/// The broker with the chat in its hooks, and what the HTTP side needs.
struct Core {
    broker: Broker,
    chat: Arc<Chat>,
    identity: Identity,
    history: HistoryWriter,
}

async fn run(config: Config) -> Result<(), StartError> {
    let mut signals = Signals::new()?;
    let stores = open_stores(&config).await?;
    first_room(&*stores.rooms).await?;
    let core = build(&config, &stores).await?;
    let http_listener = bind(config.http, "--http").await?;
    let stomp_listener = bind(config.stomp, "--stomp").await?;
    let (http_addr, stomp_addr) = (local(&http_listener), local(&stomp_listener));

    let stop_http = CancellationToken::new();
    let http_task = tokio::spawn(listener::serve(
        http_listener,
        http::router(app(&config, &core)),
        http_limits(&config),
        stop_http.clone(),
    ));
    let stomp_task = tokio::spawn({
        let broker = core.broker.clone();
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
    stop_http.cancel();
    shut_down(&config, &core, http_task, stores).await
}

/// Sessions first (each gets an ERROR, what it sent is handled), then what
/// they posted is written, then the stores are closed. Accepted messages
/// that could not be written within the bound are lost: an error, so that
/// the exit status says so.
async fn shut_down(
    config: &Config,
    core: &Core,
    http_task: tokio::task::JoinHandle<()>,
    stores: Stores,
) -> Result<(), StartError> {
    let started = Instant::now();
    core.broker.shutdown().await;
    let left =
        config.shutdown_timeout.saturating_sub(started.elapsed()).max(Duration::from_secs(1));
    let flushed = core.history.close(left).await;
    if flushed.is_ok() {
        tracing::info!(written = core.history.stats().written, "history flushed");
    }
    if tokio::time::timeout(Duration::from_secs(1), http_task).await.is_err() {
        tracing::debug!("HTTP connections still open at exit");
    }
    close_stores(stores).await;
    tracing::info!(elapsed_ms = started.elapsed().as_millis(), "stopped");
    flushed.map_err(|unflushed| {
        StartError(format!(
            "{} accepted messages were not written to history before the shutdown deadline",
            unflushed.0
        ))
    })
}

/// The broker, with the chat's rules in its hooks and the backplane and
/// id sequencer the configuration asks for.
async fn build(config: &Config, stores: &Stores) -> Result<Core, StartError> {
    let history = HistoryWriter::spawn(stores.history.clone(), WriterConfig::default());
    let mut builder = Broker::builder()
        .limits(
            Limits::default()
                .max_connections(config.max_connections)
                .max_frame_rate(config.max_frame_rate)
                .max_pending_bytes(config.max_outbox_bytes)
                .max_queue_bytes(config.max_queue_bytes)
                .max_total_queue_bytes(config.max_queue_bytes)
                .max_destinations(config.max_destinations)
                .frame(
                    FrameLimits::default()
                        .max_frame_size(config.max_frame_bytes)
                        .max_body_size(config.max_frame_bytes),
                ),
        )
        .server_name(format!("chat-server/{}", env!("CARGO_PKG_VERSION")))
        .shutdown_timeout(config.shutdown_timeout.mul_f64(0.6));
    let sequencer = match &config.redis_url {
        Some(url) => {
            let (backplane, sequencer) = redis(config, url).await?;
            builder = builder.backplane(backplane);
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
        .app_handler(chat::APP_PREFIX, rules.clone())
        .replay(rules)
        .build();
    chat.attach(broker.clone());
    metrics
        .collect_from(&broker, &history)
        .map_err(|e| StartError(format!("cannot set up metrics: {e}")))?;
    Ok(Core { broker, chat, identity, history })
}

/// The Redis backplane and the Redis id sequencer, both answering.
async fn redis(config: &Config, url: &str) -> Result<(RedisBackplane, Sequencer), StartError> {
    if config.mongodb_url.is_none() || config.mysql_url.is_none() {
        tracing::warn!(
            "--redis-url without --mysql-url and --mongodb-url: nodes share live \
             messages but each keeps its own rooms or history in SQLite"
        );
    }
    let unreachable = |e: &dyn std::fmt::Display| {
        StartError(format!("--redis-url: cannot use Redis at {}: {e}", redact(url)))
    };
    let backplane = RedisBackplane::connect(
        RedisConfig::new(url.to_owned()).channel_prefix(format!("{}topic:", config.redis_prefix)),
    )
    .await
    .map_err(|e| unreachable(&e))?;
    let sequencer = RedisSequencer::new(url, &config.redis_prefix)
        .map_err(|e| StartError(format!("--redis-url: {e}")))?;
    let sequencer = Sequencer::Redis(Box::new(sequencer));
    sequencer.ping().await.map_err(|e| unreachable(&e))?;
    Ok((backplane, sequencer))
}

/// What the HTTP handlers share.
fn app(config: &Config, core: &Core) -> http::App {
    http::App {
        chat: core.chat.clone(),
        broker: core.broker.clone(),
        identity: core.identity.clone(),
        room_cap: Arc::new(RoomCap::new(config.max_rooms)),
        room_rate: Arc::new(RateLimiter::new(config.max_room_rate)),
    }
}

fn http_limits(config: &Config) -> HttpLimits {
    HttpLimits {
        // Room beside the WebSockets for page loads and REST calls.
        max_connections: config.max_connections + HTTP_HEADROOM,
        per_network: config.max_connections_per_ip,
        header_timeout: config.http_header_timeout,
        idle_timeout: config.http_idle_timeout,
    }
}

async fn close_stores(stores: Stores) {
    if let Some(sqlite) = stores.sqlite {
        sqlite.close().await;
    }
    if let Some(mysql) = stores.mysql {
        mysql.close().await;
    }
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
