//! Configuration: command-line flags, `CHAT_*` environment variables and an
//! optional TOML file, in that order of precedence, then the defaults.
//!
//! Every key has the same name everywhere: `--redis-url`, `CHAT_REDIS_URL`,
//! `redis_url` in the file. A bad value stops the server before it binds
//! anything, with a message naming the key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// The limits a numeric key must stay within.
const TEXT_CHARS: (u64, u64) = (1, 100_000);
const RESUME_LIMIT: (u64, u64) = (1, 100_000);
const SHUTDOWN_SECS: (u64, u64) = (1, 600);
const CONNECTIONS: (u64, u64) = (1, 1_000_000);
const FRAME_RATE: (u64, u64) = (0, 1_000_000);

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

    /// Frames per second one STOMP connection may send, with a burst of as
    /// many; past it the server stops reading from the connection until the
    /// rate allows (the client is slowed down, not cut off); 0: no limit [default: 100]
    #[arg(long, env = "CHAT_MAX_FRAME_RATE", value_name = "N")]
    pub(crate) max_frame_rate: Option<u64>,

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
    /// `None`: no limit.
    pub(crate) max_frame_rate: Option<u32>,
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
            max_frame_rate: self.max_frame_rate.or(file.max_frame_rate),
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
            max_frame_rate: match within(s.max_frame_rate, 100, FRAME_RATE, "max_frame_rate")? {
                0 => None,
                rate => Some(u32::try_from(rate).unwrap_or(u32::MAX)),
            },
            shutdown_timeout: Duration::from_secs(
                within(s.shutdown_timeout, 10, SHUTDOWN_SECS, "shutdown_timeout")?
                    .try_into()
                    .unwrap_or(u64::MAX),
            ),
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

fn read_file(path: &Path) -> Result<Settings, ConfigError> {
    let what = format!("--config (CHAT_CONFIG) {}", path.display());
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(&what, format!("cannot read it: {e}")))?;
    toml::from_str(&text).map_err(|e| ConfigError::new(what, e.to_string().trim_end().to_owned()))
}

/// `value` (or `default`) within `bounds`.
fn within(
    value: Option<u64>,
    default: u64,
    (min, max): (u64, u64),
    name: &str,
) -> Result<usize, ConfigError> {
    let value = value.unwrap_or(default);
    if !(min..=max).contains(&value) {
        return Err(ConfigError::new(key(name), format!("{value} is not within {min}..={max}")));
    }
    usize::try_from(value).map_err(|_| ConfigError::new(key(name), "too large"))
}

/// A URL with one of `schemes`, or none.
fn url(value: Option<String>, name: &str, schemes: &[&str]) -> Result<Option<String>, ConfigError> {
    match value {
        Some(url) if !schemes.iter().any(|s| url.starts_with(s)) => Err(ConfigError::new(
            key(name),
            format!("'{}' does not start with {}", redact(&url), schemes.join(" or ")),
        )),
        other => Ok(other),
    }
}

/// A URL without its password, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Settings {
        Settings::try_parse_from(std::iter::once("chat-server").chain(args.iter().copied()))
            .expect("flags parse")
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = settings(&[]).resolve().expect("defaults are valid");
        assert_eq!(config.http.to_string(), "127.0.0.1:8080");
        assert_eq!(config.stomp.to_string(), "127.0.0.1:61613");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.max_text_chars, 2000);
        assert_eq!(config.max_frame_rate, Some(100));
        let unlimited = settings(&["--max-frame-rate", "0"]).resolve().expect("0 is valid");
        assert_eq!(unlimited.max_frame_rate, None);
        assert!(config.redis_url.is_none() && config.jwt_secret.is_none());
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let error = settings(&["--max-text-chars", "0"]).resolve().unwrap_err().to_string();
        assert!(error.contains("--max-text-chars") && error.contains("max_text_chars"), "{error}");
        let error = settings(&["--redis-url", "http://x"]).resolve().unwrap_err().to_string();
        assert!(error.contains("--redis-url"), "{error}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = std::env::temp_dir().join(format!("chat-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("chat.toml");
        std::fs::write(&file, "http = \"127.0.0.1:9000\"\nstomp = \"127.0.0.1:9001\"\n")
            .expect("write");
        let path = file.to_str().expect("utf-8 path");
        let config = settings(&["--config", path, "--http", "127.0.0.1:9100"]).resolve().unwrap();
        assert_eq!(config.http.port(), 9100);
        assert_eq!(config.stomp.port(), 9001);
        std::fs::write(&file, "htp = \"x\"\n").expect("write");
        let error = settings(&["--config", path]).resolve().unwrap_err().to_string();
        assert!(error.contains("htp"), "{error}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("mysql://root:pw@host:3306/db"), "mysql://root:***@host:3306/db");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
