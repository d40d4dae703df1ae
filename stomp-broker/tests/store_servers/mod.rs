//! Test support for the fault tests: private database servers that a test
//! may crash and restart, the chat traffic they carry, and the check that
//! every accepted message was stored exactly once and in order.
//!
//! Other tests use the shared servers (MariaDB on :3306, nx-27017 on
//! :27017) at the same time, so a fault test never touches them: it starts
//! a server of its own on a free port with a data directory of its own
//! ([`PrivateMariaDb`], [`PrivateNx`]), kills it with SIGKILL (a crash) or
//! stops it with SIGTERM, and starts it again on the same port and data
//! directory. A missing binary is a failure naming what installs it,
//! never a skipped test.
//!
//! [`crash_and_restart`] is the scenario both server tests run: steady
//! traffic through a [`HistoryWriter`] while the server is crashed twice
//! and stopped once, then a flush and [`verify_exactly_once`].
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use stomp_broker::store::{
    AppendError, HistoryStore, HistoryWriter, MessageId, RoomId, StoredMessage, Timestamp,
    WriterConfig, WriterStats,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// How long a server may take to answer after being started (a restart
/// after a crash includes crash recovery).
const START_WITHIN: Duration = Duration::from_secs(30);
/// How long a graceful stop may take before the server is killed.
const STOP_WITHIN: Duration = Duration::from_secs(20);

const MARIADB_HINT: &str = "MariaDB is not installed: scripts/ensure-services installs it \
     (apt-get install mariadb-server, which brings mariadbd and mariadb-install-db)";
const NX_HINT: &str = "nx-27017, the MongoDB stand-in, is not installed in .venv: run \
     scripts/ensure-services (or scripts/ensure-venv tests/services/requirements.txt)";

// ----- processes and scratch directories ------------------------------------

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate is in a workspace")
        .to_path_buf()
}

/// A directory of its own under the system's temporary directory, removed
/// when dropped.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `<tmp>/stomp-broker-<what>-<pid>-<nanos>-<n>`.
    pub fn new(what: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("stomp-broker-{what}-{}-{nanos}-{n}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return Self(path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("cannot create {}: {e}", path.display()),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0 and
/// released).
pub fn free_port() -> u16 {
    let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// The first of `names` found on the `PATH` or in the sbin directories
/// (which are not on every user's `PATH`); panics with `hint` when none is.
pub fn find_binary(names: &[&str], hint: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .collect();
    names
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("none of {names:?} found: {hint}"))
}

/// Whether this process runs as root (MariaDB then needs `--user=root`).
fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status.lines().any(|line| {
            line.strip_prefix("Uid:").and_then(|ids| ids.split_whitespace().next()) == Some("0")
        })
    })
}

/// The last `lines` lines of each file, under a heading naming it.
pub fn tails(files: &[PathBuf], lines: usize) -> String {
    let mut out = String::new();
    for file in files {
        let text = fs::read(file).map(|b| String::from_utf8_lossy(&b).into_owned());
        match text {
            Ok(text) => {
                let all: Vec<&str> = text.lines().collect();
                let from = all.len().saturating_sub(lines);
                out.push_str(&format!("\n--- {} (last {lines} lines) ---\n", file.display()));
                out.push_str(&all[from..].join("\n"));
                out.push('\n');
            }
            Err(e) => out.push_str(&format!("\n--- {}: {e} ---\n", file.display())),
        }
    }
    out
}

/// A server process the test owns: its output goes to `output` (appended
/// over restarts), and it is killed and reaped when dropped.
pub struct Server {
    child: Child,
    what: &'static str,
}

impl Server {
    fn spawn(what: &'static str, mut command: Command, output: &Path) -> Self {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(output)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", output.display()));
        let log2 = log.try_clone().expect("clone the log file handle");
        command.stdin(Stdio::null()).stdout(log).stderr(log2);
        let child =
            command.spawn().unwrap_or_else(|e| panic!("cannot start {what} ({command:?}): {e}"));
        Self { child, what }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if it has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap_or_else(|e| panic!("waiting for {}: {e}", self.what))
    }

    /// SIGKILL, then reap (so that nothing sees a zombie as alive).
    fn kill(&mut self) {
        if self.exited().is_none() {
            // Fails only when it has exited in between.
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit up to [`STOP_WITHIN`]; SIGKILL after
    /// that. Returns whether it exited by itself.
    async fn terminate(&mut self) -> bool {
        if self.exited().is_some() {
            return true;
        }
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if sent {
            let deadline = Instant::now() + STOP_WITHIN;
            while Instant::now() < deadline {
                if self.exited().is_some() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.kill();
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `ready` until it returns true, for up to [`START_WITHIN`]. Panics
/// with `tail()` when the server exits first or the time runs out.
async fn wait_ready<F, Fut>(
    what: &str,
    server: &mut Server,
    tail: impl Fn() -> String,
    mut ready: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if let Some(status) = server.exited() {
            panic!("{what} exited ({status}) before it answered{}", tail());
        }
        if ready().await {
            return;
        }
        assert!(
            started.elapsed() < START_WITHIN,
            "{what} did not answer within {START_WITHIN:?} of being started{}",
            tail()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Connects to `addr` with a short timeout.
async fn probe_connect(addr: SocketAddr) -> Option<TcpStream> {
    tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await.ok()?.ok()
}

// ----- the servers -----------------------------------------------------------

/// A server a test may crash, stop and restart.
pub trait PrivateServer {
    /// What it is, for messages.
    fn name(&self) -> &'static str;
    /// Its process, while it runs.
    fn process(&mut self) -> &mut Option<Server>;
    /// The end of its logs, for failure messages.
    fn tail(&self) -> String;
    /// Starts it on its port and data directory and waits until it answers.
    async fn launch(&mut self);

    /// Kills it with SIGKILL (a crash: no shutdown, open connections
    /// reset) and reaps it.
    fn kill(&mut self) {
        if let Some(mut server) = self.process().take() {
            server.kill();
        }
    }

    /// Stops it with SIGTERM and waits for it to exit (a graceful shutdown:
    /// it may answer requests in flight with an error first).
    async fn stop(&mut self) {
        if let Some(mut server) = self.process().take() {
            let clean = server.terminate().await;
            assert!(
                clean,
                "{} did not stop within {STOP_WITHIN:?} of SIGTERM{}",
                self.name(),
                self.tail()
            );
        }
    }

    /// Starts it again on the same port and data directory and waits until
    /// it answers. Kills it first if it is running.
    async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }
}

/// A MariaDB server of the test's own: root without password (as the
/// shared server), database `test`, on a free port of 127.0.0.1 with a
/// data directory in a [`ScratchDir`].
///
/// Every commit is flushed to the log (`innodb_flush_log_at_trx_commit =
/// 1`, the default, set explicitly), so whatever the server acknowledged
/// survives a SIGKILL.
pub struct PrivateMariaDb {
    // The process is declared before the directory, so it is killed before
    // the directory is removed.
    server: Option<Server>,
    mariadbd: PathBuf,
    port: u16,
    dir: ScratchDir,
}

impl PrivateMariaDb {
    /// Options both the bootstrap and the server take: small buffers and
    /// log (a test's data is small).
    const SIZES: [&'static str; 2] = ["--innodb-buffer-pool-size=16M", "--innodb-log-file-size=8M"];

    /// Creates the data directory (`mariadb-install-db`) and starts the
    /// server.
    ///
    /// # Panics
    /// When MariaDB is not installed, the bootstrap fails, or the server
    /// does not answer within 30 s (with the end of its logs).
    pub async fn start() -> Self {
        let install = find_binary(&["mariadb-install-db", "mysql_install_db"], MARIADB_HINT);
        let mariadbd = find_binary(&["mariadbd", "mysqld"], MARIADB_HINT);
        let dir = ScratchDir::new("mariadb");
        let mut bootstrap = Command::new(&install);
        bootstrap
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            // root@localhost and root@127.0.0.1 without password, and the
            // database `test` (created unless --skip-test-db).
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-name-resolve")
            .args(Self::SIZES);
        if running_as_root() {
            bootstrap.arg("--user=root");
        }
        let out = bootstrap
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {MARIADB_HINT}", install.display()));
        assert!(
            out.status.success(),
            "{} failed ({}):\n{}{}",
            install.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut db = Self { server: None, mariadbd, port: free_port(), dir };
        db.spawn_and_wait().await;
        db
    }

    /// `mysql://root@127.0.0.1:PORT/test`.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/test", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The end of the server's logs.
    pub fn log_tail(&self) -> String {
        tails(&[self.dir.path().join("error.log"), self.dir.path().join("output.log")], 40)
    }

    async fn spawn_and_wait(&mut self) {
        let dir = self.dir.path();
        let mut command = Command::new(&self.mariadbd);
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", dir.join("error.log").display()))
            .arg(format!("--tmpdir={}", dir.display()))
            .arg("--skip-name-resolve")
            .arg("--innodb-flush-log-at-trx-commit=1")
            // A restart right after a crash may find the port still held
            // for a moment.
            .arg("--port-open-timeout=10")
            .args(Self::SIZES);
        if running_as_root() {
            command.arg("--user=root");
        }
        let mut server = Server::spawn("mariadbd", command, &dir.join("output.log"));
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        wait_ready("the private MariaDB", &mut server, || self.log_tail(), || mysql_greets(addr))
            .await;
        self.server = Some(server);
    }
}

/// Whether a MySQL server at `addr` sends its greeting (protocol 10): it
/// does only once it is ready for connections, while a TCP connect may
/// succeed earlier.
async fn mysql_greets(addr: SocketAddr) -> bool {
    let Some(mut stream) = probe_connect(addr).await else { return false };
    // A packet: 3 bytes of length, 1 of sequence, then the payload, whose
    // first byte is the protocol version (0xff would be an error packet).
    let mut head = [0_u8; 5];
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut head)).await;
    matches!(read, Ok(Ok(_))) && head[4] == 10
}

impl PrivateServer for PrivateMariaDb {
    fn name(&self) -> &'static str {
        "MariaDB"
    }

    fn process(&mut self) -> &mut Option<Server> {
        &mut self.server
    }

    fn tail(&self) -> String {
        self.log_tail()
    }

    async fn launch(&mut self) {
        self.spawn_and_wait().await;
    }
}

/// An nx-27017 (the MongoDB stand-in) of the test's own, on a free port of
/// 127.0.0.1 with a data directory in a [`ScratchDir`], run in the
/// foreground as a child process.
pub struct PrivateNx {
    server: Option<Server>,
    nx: PathBuf,
    port: u16,
    dir: ScratchDir,
}

impl PrivateNx {
    /// Starts it.
    ///
    /// # Panics
    /// When `.venv/bin/nx-27017` is missing or the server does not answer
    /// within 30 s (with the end of its logs).
    pub async fn start() -> Self {
        let nx = workspace_root().join(".venv/bin/nx-27017");
        assert!(nx.is_file(), "{} is missing: {NX_HINT}", nx.display());
        let dir = ScratchDir::new("nx27017");
        let mut server = Self { server: None, nx, port: free_port(), dir };
        server.spawn_and_wait().await;
        server
    }

    /// `mongodb://127.0.0.1:PORT/faulttest?directConnection=true`.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/faulttest?directConnection=true", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The end of the server's logs.
    pub fn log_tail(&self) -> String {
        // In the foreground it logs to both; the output also has tracebacks.
        tails(&[self.dir.path().join("nx.log"), self.dir.path().join("output.log")], 20)
    }

    async fn spawn_and_wait(&mut self) {
        let dir = self.dir.path();
        // A pid file left by a killed server would make it refuse to start
        // if another process has taken that pid since.
        let _ = fs::remove_file(dir.join("nx.pid"));
        let mut command = Command::new(&self.nx);
        command
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--host", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("--log-file")
            .arg(dir.join("nx.log"))
            .arg("--pid-file")
            .arg(dir.join("nx.pid"))
            .current_dir(dir);
        let mut server = Server::spawn("nx-27017", command, &dir.join("output.log"));
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        wait_ready(
            "the private nx-27017",
            &mut server,
            || self.log_tail(),
            || mongo_says_hello(addr),
        )
        .await;
        self.server = Some(server);
    }
}

impl PrivateServer for PrivateNx {
    fn name(&self) -> &'static str {
        "nx-27017"
    }

    fn process(&mut self) -> &mut Option<Server> {
        &mut self.server
    }

    fn tail(&self) -> String {
        self.log_tail()
    }

    async fn launch(&mut self) {
        self.spawn_and_wait().await;
    }
}

/// Whether a MongoDB server at `addr` answers `{hello: 1}` (an `OP_MSG`
/// written by hand: the test needs no client for this).
async fn mongo_says_hello(addr: SocketAddr) -> bool {
    let Some(mut stream) = probe_connect(addr).await else { return false };
    let exchange = async {
        stream.write_all(&hello_op_msg()).await?;
        let mut header = [0_u8; 16];
        stream.read_exact(&mut header).await?;
        let len = i32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        let response_to = i32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        let op_code = i32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
        let mut rest = vec![0_u8; usize::try_from(len).unwrap_or(0).saturating_sub(16)];
        stream.read_exact(&mut rest).await?;
        io::Result::Ok(response_to == HELLO_REQUEST_ID && op_code == OP_MSG && !rest.is_empty())
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), exchange).await, Ok(Ok(true)))
}

const OP_MSG: i32 = 2013;
const HELLO_REQUEST_ID: i32 = 1;

/// `OP_MSG` with one body section `{hello: 1, $db: "admin"}`.
fn hello_op_msg() -> Vec<u8> {
    let mut doc = vec![0_u8; 4];
    doc.push(0x10); // int32
    doc.extend_from_slice(b"hello\0");
    doc.extend_from_slice(&1_i32.to_le_bytes());
    doc.push(0x02); // string
    doc.extend_from_slice(b"$db\0");
    doc.extend_from_slice(&6_i32.to_le_bytes());
    doc.extend_from_slice(b"admin\0");
    doc.push(0);
    let doc_len = i32::try_from(doc.len()).expect("small");
    doc[0..4].copy_from_slice(&doc_len.to_le_bytes());
    let mut msg = Vec::new();
    let msg_len = i32::try_from(16 + 4 + 1 + doc.len()).expect("small");
    for field in [msg_len, HELLO_REQUEST_ID, 0, OP_MSG, 0] {
        msg.extend_from_slice(&field.to_le_bytes()); // header, then flagBits
    }
    msg.push(0); // section kind 0: the body
    msg.extend_from_slice(&doc);
    msg
}

// ----- traffic -----------------------------------------------------------------

/// How often [`Traffic`] appends one message to each room.
pub const TICK: Duration = Duration::from_millis(5);

/// Writer settings for the fault tests: quick retries (at most 200 ms
/// apart), so the test does not wait long after a server is back, and
/// batches small enough that catching up after an outage takes several.
pub fn writer_config() -> WriterConfig {
    let mut config = WriterConfig::default();
    config.max_batch = 100;
    config.retry_initial = Duration::from_millis(20);
    config.retry_max = Duration::from_millis(200);
    config
}

/// Message `id` of `room`: about 100 bytes of JSON, Korean included.
pub fn chat_message(room: RoomId, id: u64) -> StoredMessage {
    let body = format!(
        r#"{{"n":{id},"text":"메시지 {id}번: 서버가 죽어도 남는다 (kept across a crash)"}}"#
    );
    StoredMessage {
        room,
        id: MessageId::new(id),
        sender: format!("사용자-{}", id % 7),
        content_type: "application/json".to_owned(),
        body: Bytes::from(body),
        sent_at: Timestamp::now(),
    }
}

/// What [`Traffic`] handed to the writer.
#[derive(Debug, Default)]
pub struct Accepted {
    /// The messages the writer accepted, per room, in the order appended.
    pub by_room: BTreeMap<RoomId, Vec<StoredMessage>>,
    /// Appends refused with [`AppendError::Full`] (not accepted; their ids
    /// are skipped).
    pub refused: u64,
}

impl Accepted {
    pub fn total(&self) -> usize {
        self.by_room.values().map(Vec::len).sum()
    }
}

/// A task appending one message to each room every [`TICK`] (200 a second
/// per room), with ids 1, 2, 3… per room, until stopped.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Accepted>,
}

impl Traffic {
    pub fn start(writer: HistoryWriter, rooms: &[RoomId]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let rooms = rooms.to_vec();
        let task = tokio::spawn({
            let stop = Arc::clone(&stop);
            async move {
                let mut accepted = Accepted::default();
                let mut next = 1;
                let mut tick = tokio::time::interval(TICK);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    for &room in &rooms {
                        let message = chat_message(room, next);
                        match writer.append(message.clone()) {
                            Ok(()) => accepted.by_room.entry(room).or_default().push(message),
                            Err(AppendError::Full { .. }) => accepted.refused += 1,
                            Err(e) => panic!("append of message {next} to room {room} failed: {e}"),
                        }
                    }
                    next += 1;
                }
                accepted
            }
        });
        Self { stop, task }
    }

    /// Stops appending and returns what was accepted.
    pub async fn stop(self) -> Accepted {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the traffic task panicked")
    }
}

// ----- the scenario ------------------------------------------------------------

/// The least time a server stays down in [`crash_and_restart`].
pub const DOWN_AT_LEAST: Duration = Duration::from_millis(1500);
/// How long the writer may take to report a failed write once the server
/// is down (a backend's connect or server-selection timeout delays it).
pub const NOTICE_WITHIN: Duration = Duration::from_secs(15);
/// How long [`HistoryWriter::flush`] may take at the end.
pub const FLUSH_WITHIN: Duration = Duration::from_secs(60);

/// Waits, polling the writer's stats, until `done` holds; panics after
/// `within` naming `what`.
pub async fn wait_for(
    writer: &HistoryWriter,
    what: &str,
    within: Duration,
    done: impl Fn(&WriterStats) -> bool,
) -> WriterStats {
    let started = Instant::now();
    loop {
        let stats = writer.stats();
        if done(&stats) {
            return stats;
        }
        assert!(started.elapsed() < within, "waited {within:?} for {what}; writer: {stats:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// How a fault takes the server down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL.
    Crash,
    /// SIGTERM, waiting for the exit.
    Stop,
}

/// What one outage did to the writer.
#[derive(Debug)]
pub struct Outage {
    pub fault: Fault,
    /// Messages waiting in the writer's buffer when the server went down.
    pub buffered_at_fault: usize,
    /// Messages waiting when it came back (accepted while it was down, and
    /// before).
    pub buffered_at_restart: usize,
    /// Failed write attempts while it was down.
    pub failures: u64,
    /// From the fault to the server answering again.
    pub down_for: Duration,
    /// From the fault to the first failure the writer reported.
    pub noticed_after: Duration,
}

/// Takes `server` down (`fault`), keeps it down for at least
/// [`DOWN_AT_LEAST`] and until the writer has reported a failed write
/// (while the traffic goes on), then restarts it.
pub async fn outage(
    server: &mut impl PrivateServer,
    writer: &HistoryWriter,
    fault: Fault,
) -> Outage {
    let before = writer.stats();
    let started = Instant::now();
    match fault {
        Fault::Crash => server.kill(),
        Fault::Stop => server.stop().await,
    }
    let what =
        format!("the writer to report a failed write after the {fault:?} of {}", server.name());
    wait_for(writer, &what, NOTICE_WITHIN, |s| s.failures > before.failures && s.failing).await;
    let noticed_after = started.elapsed();
    tokio::time::sleep(DOWN_AT_LEAST.saturating_sub(started.elapsed())).await;
    let at_restart = writer.stats();
    server.restart().await;
    Outage {
        fault,
        buffered_at_fault: before.buffered,
        buffered_at_restart: at_restart.buffered,
        failures: writer.stats().failures - before.failures,
        down_for: started.elapsed(),
        noticed_after,
    }
}

/// What [`crash_and_restart`] saw.
#[derive(Debug)]
pub struct Report {
    pub outages: Vec<Outage>,
    pub accepted: usize,
    pub refused: u64,
    pub stats: WriterStats,
    pub took: Duration,
}

impl Report {
    /// A human summary for the test's output.
    pub fn summary(&self, backend: &str) -> String {
        let mut out = format!(
            "{backend}: {} messages accepted ({} refused) in {:.1?}; {} batches, {} failed attempts\n",
            self.accepted, self.refused, self.took, self.stats.batches, self.stats.failures
        );
        for (i, o) in self.outages.iter().enumerate() {
            out.push_str(&format!(
                "  outage {}: {:?}, {} buffered at the fault, {} at the restart, {} failed attempts, \
                 first after {:.0?}, down {:.1?}\n",
                i + 1,
                o.fault,
                o.buffered_at_fault,
                o.buffered_at_restart,
                o.failures,
                o.noticed_after,
                o.down_for
            ));
        }
        out
    }
}

/// The scenario of the server fault tests. Traffic to `rooms` (200
/// messages a second each) goes through `writer` into `store`, and the
/// server fails three times:
///
/// 1. a crash while the writer keeps up (between or during small batches);
/// 2. a crash right after the first write following the restart, while
///    the writer catches up on the backlog in full batches (one in flight);
/// 3. a graceful stop, again during the catch-up.
///
/// Each time the server stays down for at least [`DOWN_AT_LEAST`] and
/// until the writer reports a failed write. After the last restart the
/// traffic goes on for a second, then stops; the writer must flush within
/// [`FLUSH_WITHIN`], and the store must hold every accepted message
/// exactly once, in order, unchanged ([`verify_exactly_once`]). What
/// happened is printed (see it with `--nocapture`) before the checks.
pub async fn crash_and_restart(
    server: &mut impl PrivateServer,
    store: &Arc<dyn HistoryStore>,
    writer: &HistoryWriter,
    rooms: &[RoomId],
) -> Report {
    let started = Instant::now();
    let traffic = Traffic::start(writer.clone(), rooms);
    wait_for(writer, "300 messages written before any fault", Duration::from_secs(20), |s| {
        s.written >= 300
    })
    .await;

    let mut outages = vec![outage(server, writer, Fault::Crash).await];
    for fault in [Fault::Crash, Fault::Stop] {
        let resumed = writer.stats().written;
        wait_for(writer, "the first write after the restart", NOTICE_WITHIN, |s| {
            s.written > resumed
        })
        .await;
        outages.push(outage(server, writer, fault).await);
    }
    let resumed = writer.stats().written;
    wait_for(writer, "the first write after the last restart", NOTICE_WITHIN, |s| {
        s.written > resumed
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let accepted = traffic.stop().await;
    if tokio::time::timeout(FLUSH_WITHIN, writer.flush()).await.is_err() {
        panic!(
            "the writer did not flush within {FLUSH_WITHIN:?} after the server came back: {:?}",
            writer.stats()
        );
    }
    let report = Report {
        outages,
        accepted: accepted.total(),
        refused: accepted.refused,
        stats: writer.stats(),
        took: started.elapsed(),
    };
    // Printed before the checks, so that a failure shows what happened.
    eprintln!("{}", report.summary(server.name()));
    check_stats(&report.stats, &accepted);
    verify_exactly_once(store.as_ref(), &accepted).await;
    report
}

/// The writer's counters agree with what the traffic saw, and nothing is
/// left in its buffer.
pub fn check_stats(stats: &WriterStats, accepted: &Accepted) {
    let total = accepted.total() as u64;
    assert_eq!(stats.accepted, total, "accepted appends: writer {stats:?}");
    assert_eq!(stats.written, total, "written messages: writer {stats:?}");
    assert_eq!(stats.refused, accepted.refused, "refused appends: writer {stats:?}");
    assert_eq!(stats.buffered, 0, "messages left in the buffer: writer {stats:?}");
    assert!(!stats.failing, "still failing after the flush: {stats:?}");
}

/// Every message of `room` in the store, read with [`HistoryStore::after`]
/// from the start in pages of `page` messages. Stops (and says so) if a
/// page does not move forward, so a broken `after` cannot loop forever.
pub async fn read_all(store: &dyn HistoryStore, room: RoomId, page: usize) -> Vec<StoredMessage> {
    let mut all: Vec<StoredMessage> = Vec::new();
    let mut last = MessageId::new(0);
    loop {
        let got = store
            .after(room, last, page)
            .await
            .unwrap_or_else(|e| panic!("reading room {room}: {e}"));
        let Some(end) = got.last().map(|m| m.id) else { return all };
        assert!(end > last, "room {room}: a page after id {last} ended at id {end}, not after it");
        last = end;
        let full = got.len() == page;
        all.extend(got);
        if !full {
            return all;
        }
    }
}

/// The first few of `ids`, for messages.
fn some(ids: &[u64]) -> String {
    const SHOWN: usize = 20;
    let shown: Vec<String> = ids.iter().take(SHOWN).map(u64::to_string).collect();
    let more =
        if ids.len() > SHOWN { format!(" and {} more", ids.len() - SHOWN) } else { String::new() };
    format!("[{}]{more}", shown.join(", "))
}

/// For every room, the store holds exactly the accepted messages: each id
/// once, in increasing order, with the sender, content type, body and time
/// it was appended with; and [`HistoryStore::count`] agrees.
pub async fn verify_exactly_once(store: &dyn HistoryStore, accepted: &Accepted) {
    for (&room, sent) in &accepted.by_room {
        let stored = read_all(store, room, 1000).await;
        let mut problems = Vec::new();

        let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
        for m in &stored {
            *seen.entry(m.id.get()).or_default() += 1;
        }
        let duplicated: Vec<u64> =
            seen.iter().filter(|&(_, &n)| n > 1).map(|(&id, _)| id).collect();
        let sent_ids: BTreeSet<u64> = sent.iter().map(|m| m.id.get()).collect();
        let missing: Vec<u64> =
            sent_ids.iter().copied().filter(|id| !seen.contains_key(id)).collect();
        let unexpected: Vec<u64> =
            seen.keys().copied().filter(|id| !sent_ids.contains(id)).collect();
        let disorder: Vec<u64> =
            stored.windows(2).filter(|w| w[1].id <= w[0].id).map(|w| w[1].id.get()).collect();
        if !duplicated.is_empty() {
            problems.push(format!("stored more than once: {}", some(&duplicated)));
        }
        if !missing.is_empty() {
            problems.push(format!("accepted but not stored: {}", some(&missing)));
        }
        if !unexpected.is_empty() {
            problems.push(format!("stored but never accepted: {}", some(&unexpected)));
        }
        if !disorder.is_empty() {
            problems.push(format!("out of order (not above the id before): {}", some(&disorder)));
        }
        let by_id: BTreeMap<u64, &StoredMessage> = sent.iter().map(|m| (m.id.get(), m)).collect();
        let changed: Vec<u64> = stored
            .iter()
            .filter(|m| by_id.get(&m.id.get()).is_some_and(|sent| *sent != *m))
            .map(|m| m.id.get())
            .collect();
        if let Some(first) = changed.first() {
            let stored_first = stored.iter().find(|m| m.id.get() == *first);
            problems.push(format!(
                "stored differently from what was appended: {} (the first: appended {:?}, stored {:?})",
                some(&changed),
                by_id[first],
                stored_first
            ));
        }
        assert!(
            problems.is_empty(),
            "room {room}: {} messages accepted, {} stored:\n  {}",
            sent.len(),
            stored.len(),
            problems.join("\n  ")
        );
        let count = store.count(room).await.unwrap_or_else(|e| panic!("count of room {room}: {e}"));
        assert_eq!(count, sent.len() as u64, "count of room {room} against the accepted messages");
    }
}
