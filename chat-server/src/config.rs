//! Configuration: command-line flags, `CHAT_*` environment variables and an
//! optional TOML file, in that order of precedence, then the defaults.
//!
//! Every key has the same name everywhere: `--redis-url`, `CHAT_REDIS_URL`,
//! `redis_url` in the file. A bad value stops the server before it binds
//! anything, with a message naming the key in all three spellings. An
//! empty `CHAT_*` variable counts as unset (`CHAT_REDIS_URL=` in a unit
//! file or a compose file is how one leaves a key out).

mod values;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

pub(crate) use values::{ArgsError, empty_variables, redact};
use values::{frame_bytes, read_file, secs, small, url, within};

/// The limits a numeric key must stay within.
const TEXT_CHARS: (u64, u64) = (1, 100_000);
const RESUME_LIMIT: (u64, u64) = (1, 100_000);
const SHUTDOWN_SECS: (u64, u64) = (1, 600);
const CONNECTIONS: (u64, u64) = (1, 1_000_000);
const PER_IP: (u64, u64) = (0, 1_000_000);
const FRAME_RATE: (u64, u64) = (0, 1_000_000);
const HTTP_SECS: (u64, u64) = (1, 3600);
const ROOMS: (u64, u64) = (1, 10_000_000);
const ROOM_RATE: (u64, u64) = (0, 100_000);
const FRAME_BYTES: (u64, u64) = (4096, 64 * 1024 * 1024);
const OUTBOX_BYTES: (u64, u64) = (64 * 1024, 1 << 30);
const QUEUE_BYTES: (u64, u64) = (0, 1 << 40);
const DESTINATIONS: (u64, u64) = (1, 10_000_000);
/// The smallest `max_frame_bytes` by default.
const DEFAULT_FRAME_BYTES: u64 = 64 * 1024;

/// The reference chat service on stomp-broker: a web chat page, a REST
/// API, and STOMP over WebSocket and TCP.
///
/// Every flag can also be set with the environment variable in brackets or
/// as a key of the TOML file given with --config (the flag's name with
/// underscores: `redis_url = "redis://..."`). Flags win over the
/// environment, which wins over the file.
#[derive(Debug, Default, Parser, Deserialize)]
#[command(name = "chat-server", version, about, long_about = None)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    /// HTTP address: the web page, the REST API, STOMP over WebSocket at /stomp [default: 127.0.0.1:8080]
    #[arg(long, env = "CHAT_HTTP", value_name = "ADDR")]
    pub(crate) http: Option<SocketAddr>,

    /// STOMP over TCP address [default: 127.0.0.1:61613]
    #[arg(long, env = "CHAT_STOMP", value_name = "ADDR")]
    pub(crate) stomp: Option<SocketAddr>,

    /// Directory of the embedded SQLite database (chat.db), used for what
    /// --mysql-url and --mongodb-url do not cover [default: ./data]
    #[arg(long, env = "CHAT_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,

    /// Redis, to run several nodes: the backplane between them and the
    /// cluster-wide order of each room's messages
    #[arg(long, env = "CHAT_REDIS_URL", value_name = "URL")]
    pub(crate) redis_url: Option<String>,

    /// Prefix of every Redis key and channel the server uses [default: chat:]
    #[arg(long, env = "CHAT_REDIS_PREFIX", value_name = "PREFIX")]
    pub(crate) redis_prefix: Option<String>,

    /// MySQL or MariaDB for rooms (mysql://user:password@host:3306/database;
    /// the database must exist, tables are created)
    #[arg(long, env = "CHAT_MYSQL_URL", value_name = "URL")]
    pub(crate) mysql_url: Option<String>,

    /// MongoDB for message history (mongodb://host:27017/database)
    #[arg(long, env = "CHAT_MONGODB_URL", value_name = "URL")]
    pub(crate) mongodb_url: Option<String>,

    /// Require an HS256 JWT signed with this secret on CONNECT and REST
    /// calls (without it, CONNECT's login is the nickname)
    #[arg(long, env = "CHAT_JWT_SECRET", value_name = "SECRET", hide_env_values = true)]
    pub(crate) jwt_secret: Option<String>,

    /// Longest message text, in characters [default: 2000]
    #[arg(long, env = "CHAT_MAX_TEXT_CHARS", value_name = "N")]
    pub(crate) max_text_chars: Option<u64>,

    /// Most messages one resume (SUBSCRIBE with x-resume-after) replays [default: 1000]
    #[arg(long, env = "CHAT_RESUME_LIMIT", value_name = "N")]
    pub(crate) resume_limit: Option<u64>,

    /// Most STOMP connections at once, over TCP and WebSocket [default: 10000]
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", value_name = "N")]
    pub(crate) max_connections: Option<u64>,

    /// Most HTTP connections (WebSockets included) from one address (for
    /// IPv6, one /64 network) at once; 0: no limit [default: 256]
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub(crate) max_connections_per_ip: Option<u64>,

    /// Seconds a new HTTP connection has to send its first request head [default: 10]
    #[arg(long, env = "CHAT_HTTP_HEADER_TIMEOUT", value_name = "SECS")]
    pub(crate) http_header_timeout: Option<u64>,

    /// Seconds an HTTP connection may keep the server waiting: idle
    /// between requests, or stalled within one (WebSockets excepted) [default: 60]
    #[arg(long, env = "CHAT_HTTP_IDLE_TIMEOUT", value_name = "SECS")]
    pub(crate) http_idle_timeout: Option<u64>,

    /// Most rooms; past it, creating one is refused [default: 10000]
    #[arg(long, env = "CHAT_MAX_ROOMS", value_name = "N")]
    pub(crate) max_rooms: Option<u64>,

    /// Rooms one client (its token's subject, else its address) may create
    /// per minute, with a burst of as many; 0: no limit [default: 10]
    #[arg(long, env = "CHAT_MAX_ROOM_RATE", value_name = "N")]
    pub(crate) max_room_rate: Option<u64>,

    /// Frames per second one STOMP connection may send, with a burst of as
    /// many; past it the server stops reading from the connection until the
    /// rate allows (the client is slowed down, not cut off); 0: no limit [default: 100]
    #[arg(long, env = "CHAT_MAX_FRAME_RATE", value_name = "N")]
    pub(crate) max_frame_rate: Option<u64>,

    /// Largest STOMP frame in bytes, headers and body [default: 65536, or
    /// more if --max-text-chars needs it]
    #[arg(long, env = "CHAT_MAX_FRAME_BYTES", value_name = "BYTES")]
    pub(crate) max_frame_bytes: Option<u64>,

    /// Bytes of messages waiting to be written to one STOMP connection; a
    /// client that falls further behind is disconnected as a slow consumer
    /// (the page reconnects and resumes) [default: 1048576]
    #[arg(long, env = "CHAT_MAX_OUTBOX_BYTES", value_name = "BYTES")]
    pub(crate) max_outbox_bytes: Option<u64>,

    /// Bytes of message bodies that plain /queue/* destinations keep, all
    /// queues together, while nobody consumes them; past it a SEND to a
    /// queue is refused [default: 67108864]
    #[arg(long, env = "CHAT_MAX_QUEUE_BYTES", value_name = "BYTES")]
    pub(crate) max_queue_bytes: Option<u64>,

    /// Most STOMP destinations at once (topics with subscribers, queues
    /// holding messages) [default: 10000]
    #[arg(long, env = "CHAT_MAX_DESTINATIONS", value_name = "N")]
    pub(crate) max_destinations: Option<u64>,

    /// Seconds a graceful shutdown may take (close sessions, write history) [default: 10]
    #[arg(long, env = "CHAT_SHUTDOWN_TIMEOUT", value_name = "SECS")]
    pub(crate) shutdown_timeout: Option<u64>,

    /// Log filter (tracing's EnvFilter syntax, e.g. `info,stomp_broker=debug`) [default: info]
    #[arg(long, env = "CHAT_LOG", value_name = "FILTER")]
    pub(crate) log: Option<String>,

    /// A TOML file with any of the keys above
    #[arg(long, env = "CHAT_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub(crate) config: Option<PathBuf>,
}

/// The configuration the server runs with.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) http: SocketAddr,
    pub(crate) stomp: SocketAddr,
    pub(crate) data_dir: PathBuf,
    pub(crate) redis_url: Option<String>,
    pub(crate) redis_prefix: String,
    pub(crate) mysql_url: Option<String>,
    pub(crate) mongodb_url: Option<String>,
    pub(crate) jwt_secret: Option<String>,
    pub(crate) max_text_chars: usize,
    pub(crate) resume_limit: usize,
    pub(crate) max_connections: usize,
    /// 0: no limit.
    pub(crate) max_connections_per_ip: usize,
    pub(crate) http_header_timeout: Duration,
    pub(crate) http_idle_timeout: Duration,
    pub(crate) max_rooms: usize,
    /// 0: no limit.
    pub(crate) max_room_rate: u32,
    /// `None`: no limit.
    pub(crate) max_frame_rate: Option<u32>,
    pub(crate) max_frame_bytes: usize,
    pub(crate) max_outbox_bytes: usize,
    pub(crate) max_queue_bytes: usize,
    pub(crate) max_destinations: usize,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) log: String,
}

/// A configuration error: which key, and what is wrong with it.
#[derive(Debug)]
pub(crate) struct ConfigError {
    key: String,
    problem: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self { key: key.into(), problem: problem.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}: {}", self.key, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// How a key is named in messages: all three spellings.
fn key(name: &str) -> String {
    format!("--{} (CHAT_{}, `{name}`)", name.replace('_', "-"), name.to_uppercase())
}

impl Settings {
    /// Fills what is not set from `file`.
    fn or(self, file: Self) -> Self {
        Self {
            http: self.http.or(file.http),
            stomp: self.stomp.or(file.stomp),
            data_dir: self.data_dir.or(file.data_dir),
            redis_url: self.redis_url.or(file.redis_url),
            redis_prefix: self.redis_prefix.or(file.redis_prefix),
            mysql_url: self.mysql_url.or(file.mysql_url),
            mongodb_url: self.mongodb_url.or(file.mongodb_url),
            jwt_secret: self.jwt_secret.or(file.jwt_secret),
            max_text_chars: self.max_text_chars.or(file.max_text_chars),
            resume_limit: self.resume_limit.or(file.resume_limit),
            max_connections: self.max_connections.or(file.max_connections),
            max_connections_per_ip: self.max_connections_per_ip.or(file.max_connections_per_ip),
            http_header_timeout: self.http_header_timeout.or(file.http_header_timeout),
            http_idle_timeout: self.http_idle_timeout.or(file.http_idle_timeout),
            max_rooms: self.max_rooms.or(file.max_rooms),
            max_room_rate: self.max_room_rate.or(file.max_room_rate),
            max_frame_rate: self.max_frame_rate.or(file.max_frame_rate),
            max_frame_bytes: self.max_frame_bytes.or(file.max_frame_bytes),
            max_outbox_bytes: self.max_outbox_bytes.or(file.max_outbox_bytes),
            max_queue_bytes: self.max_queue_bytes.or(file.max_queue_bytes),
            max_destinations: self.max_destinations.or(file.max_destinations),
            shutdown_timeout: self.shutdown_timeout.or(file.shutdown_timeout),
            log: self.log.or(file.log),
            config: self.config,
        }
    }

    /// Reads the file named by `--config`, if any, and settles every key.
    pub(crate) fn resolve(self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => Self::default(),
        };
        let s = self.or(file);
        let config = Config {
            http: s.http.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            stomp: s.stomp.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 61613))),
            data_dir: s.data_dir.unwrap_or_else(|| PathBuf::from("./data")),
            redis_url: url(s.redis_url, "redis_url", &["redis://", "rediss://", "unix://"])?,
            redis_prefix: s.redis_prefix.unwrap_or_else(|| "chat:".to_owned()),
            mysql_url: url(s.mysql_url, "mysql_url", &["mysql://", "mariadb://"])?,
            mongodb_url: url(s.mongodb_url, "mongodb_url", &["mongodb://", "mongodb+srv://"])?,
            jwt_secret: s.jwt_secret,
            max_text_chars: within(s.max_text_chars, 2000, TEXT_CHARS, "max_text_chars")?,
            resume_limit: within(s.resume_limit, 1000, RESUME_LIMIT, "resume_limit")?,
            max_connections: within(s.max_connections, 10_000, CONNECTIONS, "max_connections")?,
            max_connections_per_ip: within(
                s.max_connections_per_ip,
                256,
                PER_IP,
                "max_connections_per_ip",
            )?,
            http_header_timeout: secs(s.http_header_timeout, 10, HTTP_SECS, "http_header_timeout")?,
            http_idle_timeout: secs(s.http_idle_timeout, 60, HTTP_SECS, "http_idle_timeout")?,
            max_rooms: within(s.max_rooms, 10_000, ROOMS, "max_rooms")?,
            max_room_rate: small(within(s.max_room_rate, 10, ROOM_RATE, "max_room_rate")?),
            max_frame_rate: match within(s.max_frame_rate, 100, FRAME_RATE, "max_frame_rate")? {
                0 => None,
                rate => Some(small(rate)),
            },
            max_frame_bytes: frame_bytes(s.max_frame_bytes, s.max_text_chars)?,
            max_outbox_bytes: within(
                s.max_outbox_bytes,
                1 << 20,
                OUTBOX_BYTES,
                "max_outbox_bytes",
            )?,
            max_queue_bytes: within(s.max_queue_bytes, 64 << 20, QUEUE_BYTES, "max_queue_bytes")?,
            max_destinations: within(s.max_destinations, 10_000, DESTINATIONS, "max_destinations")?,
            shutdown_timeout: secs(s.shutdown_timeout, 10, SHUTDOWN_SECS, "shutdown_timeout")?,
            log: s.log.unwrap_or_else(|| "info".to_owned()),
        };
        if config.jwt_secret.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::new(key("jwt_secret"), "must not be empty"));
        }
        if config.redis_prefix.is_empty() || config.redis_prefix.len() > 64 {
            return Err(ConfigError::new(key("redis_prefix"), "must be 1 to 64 bytes"));
        }
        if config.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::new(key("data_dir"), "must not be empty"));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests;
