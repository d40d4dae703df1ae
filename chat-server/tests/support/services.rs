//! The shared services of the multi-node tests (see DESIGN.md §5), each
//! with names of its own per test: a Redis key prefix, a MariaDB database
//! and a MongoDB database. A service that does not answer fails the test
//! loudly, naming it; `scripts/ensure-services` starts them all.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use super::unique;

/// Where Redis listens.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Where MariaDB listens (root, no password).
pub const MARIADB_ADDR: &str = "127.0.0.1:3306";
/// Where the MongoDB stand-in (nx-27017) listens.
pub const MONGODB_ADDR: &str = "127.0.0.1:27017";

const HINT: &str = "start the test services with scripts/ensure-services";

/// Panics, naming `service`, unless something accepts TCP connections at
/// `addr` within 2 s.
fn require_listening(service: &str, addr: &str) {
    let socket: SocketAddr = addr.parse().expect("service address");
    if let Err(e) = TcpStream::connect_timeout(&socket, Duration::from_secs(2)) {
        panic!("{service} is not reachable at {addr} ({e}); {HINT}");
    }
}

/// A Redis key prefix of its own; its keys are deleted (best effort) when
/// dropped.
#[derive(Debug)]
pub struct RedisPrefix {
    /// The prefix, ending in `:`.
    pub prefix: String,
}

impl RedisPrefix {
    /// A fresh prefix; panics naming Redis if it does not answer PING.
    pub fn new() -> Self {
        let mut connection = redis_connection()
            .unwrap_or_else(|e| panic!("Redis is not reachable at {REDIS_URL} ({e}); {HINT}"));
        let pong: String = redis::cmd("PING")
            .query(&mut connection)
            .unwrap_or_else(|e| panic!("Redis at {REDIS_URL} does not answer PING ({e}); {HINT}"));
        assert_eq!(pong, "PONG", "Redis at {REDIS_URL} answered PING with {pong:?}");
        Self { prefix: format!("{}:", unique("chat_test")) }
    }
}

fn redis_connection() -> redis::RedisResult<redis::Connection> {
    redis::Client::open(REDIS_URL)?.get_connection_with_timeout(Duration::from_secs(2))
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let Ok(mut connection) = redis_connection() else { return };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut connection)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut connection);
        }
    }
}

/// A MariaDB database of its own, dropped (best effort) when dropped.
#[derive(Debug)]
pub struct MariaDb {
    /// The database name.
    pub name: String,
}

impl MariaDb {
    /// Creates a fresh database with the `mysql` client; panics naming
    /// MariaDB if that fails.
    pub fn new() -> Self {
        require_listening("MariaDB", MARIADB_ADDR);
        let name = unique("chat_test");
        let output = mysql(&format!("CREATE DATABASE {name}"));
        assert!(
            output.status.success(),
            "MariaDB at {MARIADB_ADDR}: cannot create database {name} as root ({}): {}; {HINT}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Self { name }
    }

    /// The `--mysql-url` of the database.
    pub fn url(&self) -> String {
        format!("mysql://root@{MARIADB_ADDR}/{}", self.name)
    }
}

fn mysql(statement: &str) -> std::process::Output {
    Command::new("mysql")
        .args(["-uroot", "-h127.0.0.1", "-P3306", "--protocol=tcp", "-e", statement])
        .output()
        .unwrap_or_else(|e| panic!("cannot run the mysql client ({e}); install mariadb-client"))
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = Command::new("mysql")
            .args(["-uroot", "-h127.0.0.1", "-P3306", "--protocol=tcp", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS {}", self.name))
            .output();
    }
}

/// A MongoDB database name of its own (created by the server on first
/// write), dropped (best effort) when dropped, with the pymongo of the
/// workspace's `.venv` if there is one: the tests have no MongoDB client.
#[derive(Debug)]
pub struct MongoDb {
    /// The database name.
    pub name: String,
}

impl MongoDb {
    /// A fresh name; panics naming MongoDB if nothing listens.
    pub fn new() -> Self {
        require_listening("MongoDB (the nx-27017 stand-in)", MONGODB_ADDR);
        Self { name: unique("chat_test") }
    }

    /// The `--mongodb-url` of the database.
    pub fn url(&self) -> String {
        format!("mongodb://{MONGODB_ADDR}/{}?directConnection=true", self.name)
    }
}

impl Drop for MongoDb {
    fn drop(&mut self) {
        let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
        if !python.exists() {
            return;
        }
        let script = format!(
            "import pymongo; pymongo.MongoClient('mongodb://{MONGODB_ADDR}/?directConnection=true', \
             serverSelectionTimeoutMS=2000).drop_database('{}')",
            self.name
        );
        let _ = Command::new(python).args(["-c", &script]).output();
    }
}
