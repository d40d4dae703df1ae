//! The chat page in a real browser: the `chat-server` binary on ephemeral
//! ports with a fresh data directory, driven by `tests/e2e/chat.mjs`
//! (playwright-core and headless Chromium). Two users in one room see each
//! other's messages live; a room one creates appears in the other's list; a
//! reload shows the history; scrolling up loads older pages; a user whose
//! network drops (a TCP proxy in the script cuts and refuses connections for
//! 3 s) sees the messages sent meanwhile once each, in order, and one who
//! missed more than `--resume-limit` reloads and goes on; the page refuses
//! empty and too long texts itself; messages sent into a half-open line
//! show "sending…" and end up in the room exactly once, in order; one a
//! server refuses (a second, "strict" server with a smaller
//! `--max-text-chars`, to which the script's proxy moves that user) shows
//! "Not sent" with Retry and Discard; 300 rooms arrive in the list live and
//! a reconnect fetches only the newer ones. Screenshots (desktop and phone
//! width) go to `target/e2e/`. A second server with `--jwt-secret` checks
//! sign-in with tokens: the token field, refused tokens, `?token=` in the URL.
//!
//! It needs `node`, the pinned packages of `tests/e2e/package-lock.json`
//! (`scripts/ensure-node`) and `/usr/bin/chromium` (`scripts/ensure-chromium`).
//! Without them this test fails, naming the script to run; it never skips.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the server may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The whole script must finish within this (it takes about 30 s and has
/// a watchdog of its own at 90 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The server's `--resume-limit`, small so that the script can miss more
/// than that while offline and check that the page recovers.
const RESUME_LIMIT: &str = "20";

/// The browser the script drives (Playwright's own download does not work
/// on these machines).
const CHROMIUM: &str = "/usr/bin/chromium";

/// The `--jwt-secret` of the server in JWT mode.
const JWT_SECRET: &str = "e2e-browser-test-secret";

/// The `--max-text-chars` of the second ("strict") server: below what the
/// page learnt from the first, so that a message it lets through is refused
/// there with an ERROR the page cannot foresee.
const STRICT_MAX_TEXT_CHARS: &str = "40";

/// The browser tests run one at a time (each starts a Chromium; the outage
/// check measures seconds).
static ONE_BROWSER: Mutex<()> = Mutex::new(());

/// The most of the server's log kept for a failure report.
const LOG_TAIL_BYTES: usize = 16 * 1024;

/// A running `chat-server`; dropping it kills the process and removes its
/// data directory, also when the test fails.
struct Server {
    child: Child,
    data_dir: PathBuf,
    /// Its stderr (the logs), collected by a thread as it comes.
    log: Arc<Mutex<String>>,
    /// That thread; joined when the server has exited, so that a report has all of the log.
    log_reader: Option<JoinHandle<()>>,
    /// The `http://HOST:PORT/` of its ready line.
    url: String,
}

impl Server {
    /// Starts the binary with `extra` flags and waits for its ready line.
    fn start(extra: &[&str]) -> Self {
        let data_dir = fresh_data_dir();
        let mut command = Command::new(env!("CARGO_BIN_EXE_chat-server"));
        command
            .args(["--http", "127.0.0.1:0", "--stomp", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CHAT_") {
                command.env_remove(key);
            }
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let log_reader = collect_lines(child.stderr.take().expect("stderr"), Arc::clone(&log));
        let ready = first_line(child.stdout.take().expect("stdout"));
        let mut server =
            Self { child, data_dir, log, log_reader: Some(log_reader), url: String::new() };
        let line = server.wait_ready(&ready);
        server.url = http_url(&line)
            .unwrap_or_else(|| panic!("no http://HOST:PORT/ in the ready line {line:?}"));
        server
    }

    /// Waits for the first line on stdout; fails if the server exits first
    /// or takes too long.
    fn wait_ready(&mut self, ready: &mpsc::Receiver<String>) -> String {
        let started = Instant::now();
        loop {
            match ready.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => return line,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().expect("wait for chat-server");
                    self.join_log();
                    self.fail(&format!(
                        "chat-server closed stdout without its ready line ({status})"
                    ));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Some(status) = self.child.try_wait().expect("poll chat-server") {
                self.join_log();
                self.fail(&format!("chat-server exited before it was ready ({status})"));
            }
            if started.elapsed() > READY_TIMEOUT {
                self.fail(&format!("chat-server printed no ready line within {READY_TIMEOUT:?}"));
            }
        }
    }

    /// Waits until all of the log of an exited server is collected.
    fn join_log(&mut self) {
        if let Some(reader) = self.log_reader.take() {
            let _ = reader.join();
        }
    }

    /// The last part of the server's log.
    fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut start = log.len().saturating_sub(LOG_TAIL_BYTES);
        while !log.is_char_boundary(start) {
            start += 1;
        }
        log[start..].to_owned()
    }

    fn fail(&self, message: &str) -> ! {
        panic!("{message}\n--- chat-server log (stderr) ---\n{}", self.log_tail());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A new, empty directory for the server's SQLite file.
fn fresh_data_dir() -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("chat-e2e-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the data directory");
    dir
}

/// Sends the first line of `pipe` to the receiver, then keeps draining it.
fn first_line(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(pipe).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        lines.for_each(drop);
    });
    rx
}

/// Appends every line of `pipe` to `log`, on a thread of its own.
fn collect_lines(pipe: impl Read + Send + 'static, log: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut log = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            log.push_str(&line);
            log.push('\n');
        }
    })
}

/// The first `http://HOST:PORT/` in the ready line.
fn http_url(line: &str) -> Option<String> {
    let start = line.find("http://")?;
    let rest = &line[start + "http://".len()..];
    let end = rest.find('/')?;
    let host_port = &rest[..end];
    host_port.contains(':').then(|| format!("http://{host_port}/"))
}

/// The workspace root: `CARGO_MANIFEST_DIR/..`.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate is in a workspace")
        .to_path_buf()
}

/// Fails, naming the fix, when node, the Node packages or Chromium are missing.
fn check_prerequisites(root: &Path) {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|out| out.status.success()),
        "`node --version` failed ({node:?}): install Node.js 20 or later (apt-get install nodejs npm), \
         then run scripts/ensure-node from the workspace root"
    );
    let manifest = root.join("tests/e2e/node_modules/playwright-core/package.json");
    assert!(
        manifest.exists(),
        "{} is missing: run scripts/ensure-node (from the workspace root) to install the pinned Node \
         packages of tests/e2e/package-lock.json, then run the test again",
        manifest.display()
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/ensure-chromium (it installs the Debian package chromium), \
         then run the test again"
    );
}

/// Reads all of a child's pipe on a thread of its own.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs the command for at most `timeout`; `None` status when it was killed.
fn run_with_timeout(
    command: &mut Command,
    timeout: Duration,
) -> (Option<ExitStatus>, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {command:?} ({e}): install Node.js (apt-get install nodejs npm)")
        });
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    (status, stdout, stderr)
}

/// Starts a server with `server_flags` (and, with `strict`, a second one
/// with a smaller `--max-text-chars`, passed as `--strict-server URL`), runs
/// `node tests/e2e/chat.mjs URL SCREENSHOT SCRIPT_ARGS...` from the
/// workspace root against it, and asserts that the script passed with its
/// summary line.
fn run_browser_test(server_flags: &[&str], screenshot: &str, script_args: &[&str], strict: bool) {
    let _one = ONE_BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = workspace_root();
    check_prerequisites(&root);
    let screenshot = root.join("target/e2e").join(screenshot);
    std::fs::create_dir_all(screenshot.parent().expect("parent")).expect("create target/e2e");

    let server = Server::start(server_flags);
    let strict = strict.then(|| Server::start(&["--max-text-chars", STRICT_MAX_TEXT_CHARS]));
    let mut command = Command::new("node");
    command
        .arg("tests/e2e/chat.mjs")
        .arg(&server.url)
        .arg(&screenshot)
        .args(script_args)
        .current_dir(&root);
    if let Some(strict) = &strict {
        command.arg("--strict-server").arg(&strict.url);
    }
    let started = Instant::now();
    let (status, stdout, stderr) = run_with_timeout(&mut command, SCRIPT_TIMEOUT);
    let strict_log = strict.as_ref().map_or(String::new(), |strict| {
        format!("--- strict chat-server log (stderr, last part) ---\n{}", strict.log_tail())
    });
    let report = format!(
        "{command:?}\n--- script stdout ---\n{stdout}--- script stderr ---\n{stderr}\
         --- chat-server log (stderr, last part) ---\n{}{strict_log}",
        server.log_tail()
    );
    let Some(status) = status else {
        panic!("the browser test did not finish within {SCRIPT_TIMEOUT:?}\n{report}");
    };
    assert!(status.success(), "the browser test failed ({status})\n{report}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("chat e2e: ") && last.ends_with(" checks passed"),
        "the browser test succeeded without its summary line\n{report}"
    );
    eprintln!("{stdout}the browser test took {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn two_browsers_chat_live_and_recover_from_a_network_drop() {
    let limit = ["--resume-limit", RESUME_LIMIT];
    // The script creates 300 rooms from one address: no room creation rate.
    let flags = ["--resume-limit", RESUME_LIMIT, "--max-room-rate", "0"];
    run_browser_test(&flags, "chat-page.png", &limit, true);
}

#[test]
fn jwt_mode_signs_in_with_a_token() {
    let secret = ["--jwt-secret", JWT_SECRET];
    run_browser_test(&secret, "chat-login-jwt.png", &secret, false);
}

#[test]
fn the_ready_line_gives_the_http_url() {
    let line = "chat-server ready: open http://127.0.0.1:8080/ (STOMP over WebSocket at \
                ws://127.0.0.1:8080/stomp, over TCP at tcp://127.0.0.1:61613)";
    assert_eq!(http_url(line).as_deref(), Some("http://127.0.0.1:8080/"));
    assert_eq!(http_url("chat-server ready"), None);
}
