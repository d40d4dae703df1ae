//! The chat-server process under test: how it is started ([`Node`]), a
//! running one ([`Server`]) and one that has ended ([`Exited`]).
//!
//! A [`Node`] is the recipe (flags, environment, data directory); starting
//! it twice starts the same node again, on the same data directory, as a
//! restart does. A [`Server`] kills its process when dropped, so that a
//! failing test leaves nothing behind, and prints the server's stderr
//! then.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::{READY_WAIT, Rest, STOP_WAIT, TempDir};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_chat-server");

/// How to start one chat-server: its arguments, extra environment and the
/// data directory it owns (its working directory too).
#[derive(Debug, Clone)]
pub struct Node {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    dir: Arc<TempDir>,
}

impl Node {
    /// Ephemeral HTTP and STOMP ports on 127.0.0.1, a fresh data
    /// directory, and no limit on making rooms per minute
    /// (`CHAT_MAX_ROOM_RATE=0`: every client of a test comes from
    /// 127.0.0.1, which would count as one; a test of the limit sets
    /// `--max-room-rate`, which wins over the variable).
    pub fn new() -> Self {
        let node = Self::bare();
        let data = node.dir().join("data");
        node.flag("--http", "127.0.0.1:0")
            .flag("--stomp", "127.0.0.1:0")
            .flag("--data-dir", data.to_str().expect("UTF-8 temp dir"))
            .env("CHAT_MAX_ROOM_RATE", "0")
    }

    /// No arguments at all: the working directory is a fresh directory, so
    /// that the default `./data` lands there.
    pub fn bare() -> Self {
        Self { args: Vec::new(), envs: Vec::new(), dir: Arc::new(TempDir::new("node")) }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends a flag and its value.
    pub fn flag(self, name: &str, value: impl Into<String>) -> Self {
        self.arg(name).arg(value)
    }

    /// Sets an environment variable of the process.
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.envs.push((name.to_owned(), value.into()));
        self
    }

    /// The node's own directory (working directory; `data/` is below it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The command line, for messages.
    pub fn describe(&self) -> String {
        format!("chat-server {} (env {:?})", self.args.join(" "), self.envs)
    }

    fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        command.args(&self.args).current_dir(self.dir());
        // Nothing from the environment of the test run may configure it.
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("CHAT_")) {
            command.env_remove(name);
        }
        command.envs(self.envs.iter().map(|(k, v)| (k, v)));
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        command
    }

    fn spawn(&self) -> (Child, Pipes) {
        let mut child = self
            .command()
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {BIN} ({e}); was it built?"));
        let pipes = Pipes::new(&mut child);
        (child, pipes)
    }

    /// Starts the server and waits for its ready line; panics (with its
    /// stderr) if it exits or stays silent for [`READY_WAIT`].
    pub async fn start(&self) -> Server {
        match self.try_start().await {
            Ok(server) => server,
            Err(exited) => panic!("{} did not start: {exited}", self.describe()),
        }
    }

    /// Starts the server: `Ok` once it printed its ready line, `Err` with
    /// its status and output if it exited before.
    pub async fn try_start(&self) -> Result<Server, Exited> {
        let (child, mut pipes) = self.spawn();
        let ready = pipes.ready.take().expect("ready line receiver");
        let mut guard = Guard(Some(child));
        let line = match tokio::time::timeout(READY_WAIT, ready).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) => return Err(wait_exit(guard.take(), pipes, READY_WAIT).await),
            Err(_) => panic!(
                "{} printed no ready line within {READY_WAIT:?}\n--- stderr ---\n{}",
                self.describe(),
                pipes.stderr_text()
            ),
        };
        let (http, tcp) = parse_ready(&line)
            .unwrap_or_else(|| panic!("unexpected ready line {line:?} (contract: `chat-server ready: open http://HOST:PORT/ ... tcp://HOST:PORT)`)"));
        Ok(Server { child: guard.take(), pipes, http, tcp, node: self.clone() })
    }

    /// Runs the server expecting it to exit by itself within `limit`
    /// (a configuration error); panics, killing it, if it is still running
    /// then or if it became ready.
    pub async fn run_to_exit(&self, limit: Duration) -> Exited {
        let (child, mut pipes) = self.spawn();
        let ready = pipes.ready.take().expect("ready line receiver");
        let mut guard = Guard(Some(child));
        match tokio::time::timeout(limit, ready).await {
            Ok(Ok(line)) => panic!(
                "{} started ({line:?}) but was expected to fail\n--- stderr ---\n{}",
                self.describe(),
                pipes.stderr_text()
            ),
            Ok(Err(_)) => wait_exit(guard.take(), pipes, limit).await,
            Err(_) => panic!(
                "{} neither exited nor became ready within {limit:?}\n--- stderr ---\n{}",
                self.describe(),
                pipes.stderr_text()
            ),
        }
    }
}

/// Kills the child unless taken: a panic while starting leaves no process.
struct Guard(Option<Child>);

impl Guard {
    fn take(&mut self) -> Child {
        self.0.take().expect("child already taken")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The threads reading a child's stdout and stderr.
#[derive(Debug)]
struct Pipes {
    /// The first stdout line; dropped without a value at end of stdout.
    ready: Option<oneshot::Receiver<String>>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Pipes {
    fn new(child: &mut Child) -> Self {
        let (ready_tx, ready) = oneshot::channel();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("stdout piped");
        let err = child.stderr.take().expect("stderr piped");
        let readers = vec![
            read_stdout(out, ready_tx, Arc::clone(&stdout)),
            read_all(err, Arc::clone(&stderr)),
        ];
        Self { ready: Some(ready), stdout, stderr, readers }
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    fn stdout_text(&self) -> String {
        self.stdout.lock().expect("stdout lock").clone()
    }

    /// Waits (on a blocking thread) for both pipes to reach their end.
    async fn finish(&mut self) {
        let readers = std::mem::take(&mut self.readers);
        let join = tokio::task::spawn_blocking(move || {
            for reader in readers {
                let _ = reader.join();
            }
        });
        // A grandchild holding the pipes open must not hang the test.
        let _ = tokio::time::timeout(Duration::from_secs(5), join).await;
    }
}

fn read_stdout(
    pipe: impl Read + Send + 'static,
    ready: oneshot::Sender<String>,
    all: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut first = String::new();
        if reader.read_line(&mut first).unwrap_or(0) == 0 {
            return;
        }
        all.lock().expect("stdout lock").push_str(&first);
        let _ = ready.send(first.trim_end().to_owned());
        let mut rest = String::new();
        let _ = reader.read_to_string(&mut rest);
        all.lock().expect("stdout lock").push_str(&rest);
    })
}

fn read_all(
    pipe: impl Read + Send + 'static,
    all: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            all.lock().expect("stderr lock").push_str(&line);
            line.clear();
        }
    })
}

/// Waits up to `limit` for `child` to exit, killing it after that.
async fn wait_exit(mut child: Child, mut pipes: Pipes, limit: Duration) -> Exited {
    let Some(status) = wait_status(&mut child, limit).await else {
        let _ = child.kill();
        let status = child.wait().expect("wait after kill");
        pipes.finish().await;
        panic!(
            "chat-server did not exit within {limit:?} (killed: {status})\n--- stderr ---\n{}",
            pipes.stderr_text()
        );
    };
    pipes.finish().await;
    Exited { status, stdout: pipes.stdout_text(), stderr: pipes.stderr_text() }
}

/// The exit status, polled every 10 ms for at most `limit`.
async fn wait_status(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The HTTP address (the first `http://HOST:PORT/`) and the STOMP TCP
/// address (`tcp://HOST:PORT`) of a ready line.
pub fn parse_ready(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    if !line.starts_with("chat-server ready") {
        return None;
    }
    let after = |scheme: &str| {
        let start = line.find(scheme)? + scheme.len();
        let rest = &line[start..];
        let end =
            rest.find(|c: char| c == '/' || c == ')' || c.is_whitespace()).unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    Some((after("http://")?, after("tcp://")?))
}

/// A chat-server that printed its ready line.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pipes: Pipes,
    /// The HTTP (and WebSocket) address.
    pub http: SocketAddr,
    /// The STOMP-over-TCP address.
    pub tcp: SocketAddr,
    /// How it was started (to start it again).
    pub node: Node,
}

impl Server {
    /// `http://HOST:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// A REST client of this server, without a token.
    pub fn rest(&self) -> Rest {
        Rest::new(self.http, None)
    }

    /// A REST client of this server sending `token` as a Bearer token.
    pub fn rest_with_token(&self, token: &str) -> Rest {
        Rest::new(self.http, Some(token.to_owned()))
    }

    /// What the server wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.pipes.stderr_text()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {} failed: {status}", self.pid());
    }

    /// SIGTERM, then waits up to [`STOP_WAIT`] for the exit (SIGKILL and a
    /// panic after that). Returns how it ended.
    pub async fn stop(mut self) -> Exited {
        self.sigterm();
        let Some(status) = wait_status(&mut self.child, STOP_WAIT).await else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!(
                "chat-server did not exit within {STOP_WAIT:?} of SIGTERM (killed)\n--- stderr ---\n{}",
                self.stderr()
            );
        };
        self.pipes.finish().await;
        Exited { status, stdout: self.pipes.stdout_text(), stderr: self.stderr() }
    }

    /// [`stop`](Self::stop), asserting a clean exit (status 0).
    pub async fn stop_clean(self) {
        let exited = self.stop().await;
        assert!(exited.status.success(), "chat-server did not exit 0 after SIGTERM: {exited}");
    }

    /// Stops it cleanly, then starts the same node again (same flags, same
    /// data directory; new ephemeral ports).
    pub async fn restart(self) -> Self {
        let node = self.node.clone();
        self.stop_clean().await;
        node.start().await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let stderr = self.stderr();
            let tail_start = stderr.len().saturating_sub(8000);
            let tail = stderr.get(tail_start..).unwrap_or(&stderr);
            eprintln!(
                "--- stderr of {} (pid {}), last 8000 bytes ---\n{tail}",
                self.node.describe(),
                self.child.id()
            );
        }
    }
}

/// How a chat-server process ended.
#[derive(Debug)]
pub struct Exited {
    /// Its exit status.
    pub status: ExitStatus,
    /// All it wrote on stdout.
    pub stdout: String,
    /// All it wrote on stderr.
    pub stderr: String,
}

impl std::fmt::Display for Exited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n--- stdout ---\n{}--- stderr ---\n{}", self.status, self.stdout, self.stderr)
    }
}

/// A path as a `&str` (temp paths are UTF-8 here).
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}
