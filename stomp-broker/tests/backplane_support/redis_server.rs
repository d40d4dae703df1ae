//! Redis servers for the backplane tests: the shared one (at
//! `STOMP_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`, which
//! scripts/ensure-services starts), and [`PrivateRedis`], a server of the
//! test's own on a free port that a fault test kills and restarts without
//! disturbing the shared one. A missing server or binary is a failure
//! naming what provides it, never a skipped test.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// How long a started server may take to answer.
const START_WITHIN: Duration = Duration::from_secs(10);

const HINT: &str = "scripts/ensure-services starts it (and installs redis-server if missing)";

/// The shared Redis the tests use: `STOMP_TEST_REDIS_URL`, or
/// `redis://127.0.0.1:6379`. Panics, saying how to start it, unless it
/// answers a PING.
pub async fn shared_redis_url() -> String {
    let url = std::env::var("STOMP_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let addr = host_port(&url);
    assert!(
        ping(&addr).await,
        "no Redis answers at {url} (STOMP_TEST_REDIS_URL): these tests need a real Redis; {HINT}"
    );
    url
}

/// `host:port` of a `redis://[user[:password]@]host[:port][/db]` URL.
fn host_port(url: &str) -> String {
    let rest = url.strip_prefix("redis://").unwrap_or_else(|| panic!("not a redis:// URL: {url}"));
    let rest = rest.split('/').next().unwrap_or_default();
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    if rest.contains(':') { rest.to_owned() } else { format!("{rest}:6379") }
}

/// Whether a Redis server at `addr` answers (a PING gets any reply: a
/// server requiring a password answers `-NOAUTH`).
pub async fn ping(addr: &str) -> bool {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream.write_all(b"*1\r\n$4\r\nPING\r\n").await.ok()?;
        let mut reply = [0u8; 64];
        let n = stream.read(&mut reply).await.ok()?;
        (n > 0 && matches!(reply[0], b'+' | b'-')).then_some(())
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), exchange).await, Ok(Some(())))
}

/// A `redis-server` of the test's own on a free port of 127.0.0.1,
/// without persistence (`--save '' --appendonly no`): a restart starts
/// empty, as a crashed cache does. Killed when dropped.
pub struct PrivateRedis {
    child: Option<Child>,
    binary: PathBuf,
    port: u16,
    log: PathBuf,
}

impl PrivateRedis {
    /// Starts the server and waits until it answers.
    ///
    /// # Panics
    /// When `redis-server` is not installed, or does not answer within
    /// 10 s (with the end of its log).
    pub async fn start() -> Self {
        let binary = find_redis_server();
        let port = free_port();
        let log = std::env::temp_dir()
            .join(format!("stomp-broker-redis-{}-{port}.log", std::process::id()));
        let mut server = Self { child: None, binary, port, log };
        server.spawn_and_wait().await;
        server
    }

    /// The URL the backplane connects to.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server with SIGKILL (a crash: open connections are reset
    /// and nothing is said to clients) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fails only when it has exited already.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (killing it first if it
    /// runs) and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn_and_wait().await;
    }

    async fn spawn_and_wait(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log.display()));
        let log2 = log.try_clone().expect("clone the log file handle");
        let port = self.port.to_string();
        let mut command = Command::new(&self.binary);
        command
            .args(["--save", "", "--appendonly", "no", "--port", &port, "--bind", "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let child =
            command.spawn().unwrap_or_else(|e| panic!("cannot start {command:?}: {e}; {HINT}"));
        self.child = Some(child);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)).to_string();
        let started = Instant::now();
        while !ping(&addr).await {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("redis-server exited ({status}) before it answered{}", self.tail());
            }
            assert!(
                started.elapsed() < START_WITHIN,
                "redis-server did not answer within {START_WITHIN:?}{}",
                self.tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The end of the server's log, for failure messages.
    fn tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(20);
        format!("\n--- {} ---\n{}", self.log.display(), lines[from..].join("\n"))
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_file(&self.log);
    }
}

/// `redis-server` on the `PATH` or in an sbin directory.
fn find_redis_server() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("redis-server is not installed: {HINT}"))
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}
