//! Test support for the chat-server binary: the process under test
//! ([`server`]), STOMP clients over TCP and WebSocket ([`stomp`]), REST
//! helpers ([`rest`]), the chat's JSON shapes ([`chat`]), the shared
//! services of the multi-node tests ([`services`]) and a TCP proxy that
//! can cut a service off ([`proxy`]).
//!
//! Each test file includes it with `mod support;`; what a file does not use
//! is dead code there, hence the `allow`.
#![allow(dead_code, unused_imports, unreachable_pub, clippy::missing_panics_doc)]

pub mod chat;
pub mod proxy;
pub mod rest;
pub mod server;
pub mod services;
pub mod stomp;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use chat::{ChatMessage, assert_rfc3339_utc, chat_body};
pub use rest::{Reply, Rest};
pub use server::{Exited, Node, Server};
pub use stomp::{Client, Transport};

/// How long a test waits for something that should happen soon (a frame,
/// a reply, a flush).
pub const WAIT: Duration = Duration::from_secs(10);

/// How long a server may take to print its ready line.
pub const READY_WAIT: Duration = Duration::from_secs(30);

/// How long a server may take to exit after SIGTERM (its shutdown timeout
/// is 10 s by default).
pub const STOP_WAIT: Duration = Duration::from_secs(15);

/// A name no other test (in this process or another) uses: `tag`, the
/// process id, a counter and the clock's nanoseconds. Only ASCII
/// lowercase letters, digits and `_`, so that it is also a valid database
/// name.
pub fn unique(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{tag}_{}_{n}_{nanos}", std::process::id())
}

/// Polls `probe` every 20 ms until it returns `Some`, for at most `limit`;
/// panics naming `what` after that.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A directory removed (best effort) when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory under the system's temporary directory.
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(unique(&format!("chat-server-test-{tag}")));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {path:?}: {e}"));
        Self(path)
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
