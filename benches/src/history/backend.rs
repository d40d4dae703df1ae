//! The stores `history-load` writes to, each opened on a fresh database so
//! that repeated runs start equal: a SQLite file removed first, a MySQL or
//! MariaDB database dropped and created again, a MongoDB database dropped.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use sqlx::Connection;
use stomp_broker::store::{HistoryStore, MemoryStore, MongoStore, MySqlStore, SqliteStore};

use super::args::Args;
use super::{Error, Result};

/// The default MySQL or MariaDB URL: a database of its own on the local
/// server.
const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/stomp_history_bench";
/// The default MongoDB URL: a database of its own on the local server.
const MONGODB_URL: &str = "mongodb://127.0.0.1:27017/stomp_history_bench?directConnection=true";
/// The default SQLite file's name, in the temporary directory.
const SQLITE_FILE: &str = "history-load-bench.sqlite";
/// What a database name must contain to be dropped by this benchmark (a
/// guard against `--url .../test` on a shared server).
const GUARD: &str = "bench";

/// The backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// `MemoryStore`, without a per-room bound: the writer and broker
    /// path without a database.
    Memory,
    /// `SqliteStore` on a file.
    Sqlite,
    /// `MySqlStore` (MySQL or MariaDB).
    Mysql,
    /// `MongoStore` (MongoDB, or a server speaking its protocol).
    Mongodb,
}

/// An open store and what to remove after the run.
pub(crate) struct Backend {
    /// The store.
    pub(crate) store: Arc<dyn HistoryStore>,
    /// Where the data is, for the report (file or URL).
    pub(crate) location: String,
    cleanup: Cleanup,
}

/// What [`Backend::remove`] removes.
enum Cleanup {
    Nothing,
    File(PathBuf),
    MySql(String),
    Mongo(String),
}

impl Backend {
    /// Opens the store `args` names on a fresh database.
    ///
    /// # Errors
    /// When the database cannot be reset or opened.
    pub(crate) async fn open(args: &Args) -> Result<Self> {
        match args.backend {
            Kind::Memory => Ok(Self {
                store: Arc::new(MemoryStore::with_max_per_room(usize::MAX)),
                location: "memory".to_owned(),
                cleanup: Cleanup::Nothing,
            }),
            Kind::Sqlite => {
                let path =
                    args.path.clone().unwrap_or_else(|| std::env::temp_dir().join(SQLITE_FILE));
                remove_sqlite(&path)?;
                let store = SqliteStore::open(&path).await?;
                let location = path.display().to_string();
                Ok(Self { store: Arc::new(store), location, cleanup: Cleanup::File(path) })
            }
            Kind::Mysql => {
                let url = args.url.clone().unwrap_or_else(|| MYSQL_URL.to_owned());
                reset_mysql(&url, true).await?;
                let store = MySqlStore::connect(&url).await?;
                Ok(Self {
                    store: Arc::new(store),
                    location: url.clone(),
                    cleanup: Cleanup::MySql(url),
                })
            }
            Kind::Mongodb => {
                let url = args.url.clone().unwrap_or_else(|| MONGODB_URL.to_owned());
                drop_mongo(&url).await?;
                let store = MongoStore::connect(&url).await?;
                Ok(Self {
                    store: Arc::new(store),
                    location: url.clone(),
                    cleanup: Cleanup::Mongo(url),
                })
            }
        }
    }

    /// Removes the database the run wrote.
    ///
    /// # Errors
    /// When it cannot be removed.
    pub(crate) async fn remove(self) -> Result<()> {
        drop(self.store);
        match self.cleanup {
            Cleanup::Nothing => Ok(()),
            Cleanup::File(path) => remove_sqlite(&path),
            Cleanup::MySql(url) => reset_mysql(&url, false).await,
            Cleanup::Mongo(url) => drop_mongo(&url).await,
        }
    }
}

/// Removes a SQLite database file and its WAL and shared-memory files.
fn remove_sqlite(path: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::new(format!(
                    "cannot remove {}: {e}",
                    Path::new(&file).display()
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Drops the database of a MySQL URL, and creates it again when `create`.
async fn reset_mysql(url: &str, create: bool) -> Result<()> {
    let (server, database) = split_mysql_url(url)?;
    check_name(&database)?;
    let options = sqlx::mysql::MySqlConnectOptions::from_str(&server)
        .map_err(|e| Error::new(format!("MySQL URL {server}: {e}")))?;
    let mysql = |e: sqlx::Error| Error::new(format!("MySQL at {server}: {e}"));
    let mut connection = sqlx::MySqlConnection::connect_with(&options).await.map_err(mysql)?;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS `{database}`"))
        .execute(&mut connection)
        .await
        .map_err(mysql)?;
    if create {
        sqlx::raw_sql(&format!("CREATE DATABASE `{database}`"))
            .execute(&mut connection)
            .await
            .map_err(mysql)?;
    }
    connection.close().await.map_err(mysql)
}

/// `mysql://u@h:p/db?x=y` as (`mysql://u@h:p?x=y`, `db`).
fn split_mysql_url(url: &str) -> Result<(String, String)> {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let (server, database) = match base[scheme_end..].rsplit_once('/') {
        Some((host, db)) if !db.is_empty() => (&base[..scheme_end + host.len()], db),
        _ => return Err(Error::new(format!("the MySQL URL {url} names no database"))),
    };
    let server = match query {
        Some(query) => format!("{server}?{query}"),
        None => server.to_owned(),
    };
    Ok((server, database.to_owned()))
}

/// Drops the database a MongoDB URL names.
async fn drop_mongo(url: &str) -> Result<()> {
    let mongo = |e: mongodb::error::Error| Error::new(format!("MongoDB at {url}: {e}"));
    let options = mongodb::options::ClientOptions::parse(url).await.map_err(mongo)?;
    let database = options
        .default_database
        .clone()
        .ok_or_else(|| Error::new(format!("the MongoDB URL {url} names no database")))?;
    check_name(&database)?;
    let client = mongodb::Client::with_options(options).map_err(mongo)?;
    client.database(&database).drop().await.map_err(mongo)?;
    client.shutdown().await;
    Ok(())
}

/// Refuses to drop a database that is not obviously the benchmark's.
fn check_name(database: &str) -> Result<()> {
    let plain = database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain && database.contains(GUARD) {
        Ok(())
    } else {
        Err(Error::new(format!(
            "refusing to drop the database {database:?}: the benchmark drops and recreates its \
             database, so give one of its own, named with letters, digits and `_` and \
             containing {GUARD:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_urls_split_into_server_and_database() {
        let (server, db) =
            split_mysql_url("mysql://root@127.0.0.1:3306/a_bench?ssl-mode=disabled").unwrap();
        assert_eq!(
            (server.as_str(), db.as_str()),
            ("mysql://root@127.0.0.1:3306?ssl-mode=disabled", "a_bench")
        );
        let (server, db) = split_mysql_url(MYSQL_URL).unwrap();
        assert_eq!(
            (server.as_str(), db.as_str()),
            ("mysql://root@127.0.0.1:3306", "stomp_history_bench")
        );
        assert!(split_mysql_url("mysql://root@127.0.0.1:3306").is_err());
        assert!(split_mysql_url("mysql://root@127.0.0.1:3306/").is_err());
    }

    #[test]
    fn only_bench_databases_are_dropped() {
        assert!(check_name("stomp_history_bench").is_ok());
        assert!(check_name("test").is_err());
        assert!(check_name("bench`; DROP DATABASE test; --").is_err());
    }
}
