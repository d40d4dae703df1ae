//! A private Prometheus for one test: the `prometheus` binary (Debian's
//! `/usr/bin/prometheus`, see `scripts/ensure-prometheus`) on a free port
//! of 127.0.0.1, with the shipped `monitoring/prometheus.yml` pointed at the
//! test's servers and scraping every second, its TSDB in a temporary
//! directory. Dropping it kills the process (and prints the end of its log
//! if the test is failing).

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::TempDir;

/// How long Prometheus may take to answer `/-/ready`.
const READY_WAIT: Duration = Duration::from_secs(20);

/// The end of the log printed when a test fails.
const LOG_TAIL_BYTES: usize = 6000;

/// What the shipped scrape configuration must contain (and what the test
/// replaces in it).
const SHIPPED_TARGETS: &str = "- targets: ['127.0.0.1:8080']";

/// Starts `prometheus` with its files in `dir` on a free port; returns it
/// and its base URL.
fn spawn(dir: &Path) -> (Child, String) {
    let address = free_address();
    let log = File::create(dir.join("prometheus.log")).expect("create prometheus.log");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address={address}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log file"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start prometheus ({e}): {}", super::INSTALL_HINT));
    (child, format!("http://{address}"))
}

/// A running Prometheus.
pub(crate) struct Prometheus {
    child: Child,
    dir: TempDir,
    client: reqwest::Client,
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (chat-server HTTP addresses)
    /// every second with the job and path of `shipped` (the path of
    /// `monitoring/prometheus.yml`); waits until it is ready.
    pub(crate) async fn start(shipped: &Path, targets: &[SocketAddr]) -> Self {
        let dir = TempDir::new("prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, scrape_config(shipped, targets)).expect("write prometheus.yml");
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("build the HTTP client");
        let (child, url) = spawn(dir.path());
        let mut prometheus = Self { child, dir, client, url };
        prometheus.wait_ready().await;
        prometheus
    }

    /// Waits until it answers `/-/ready`.
    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + READY_WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll prometheus") {
                panic!("prometheus exited at start ({status})\n{}", self.log_tail());
            }
            let ready = self.client.get(format!("{}/-/ready", self.url)).send().await;
            if ready.is_ok_and(|reply| reply.status().is_success()) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus was not ready within {READY_WAIT:?}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET /api/v1/query?query=EXPR` at the current time: the whole JSON
    /// answer (`status`, `data` or `error`), errors included.
    pub(crate) async fn query(&self, expr: &str) -> Value {
        let url = format!("{}/api/v1/query?query={}", self.url, percent_encode(expr));
        let reply = self
            .client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("query {expr:?}: {e}\n{}", self.log_tail()));
        let body = reply.text().await.unwrap_or_else(|e| panic!("query {expr:?}: {e}"));
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("query {expr:?}: the answer is not JSON ({e}): {body:?}"))
    }

    /// The samples of an instant query that must succeed: each series'
    /// labels and value (NaN for none).
    pub(crate) async fn samples(&self, expr: &str) -> Vec<(Value, f64)> {
        let answer = self.query(expr).await;
        assert_eq!(answer["status"], "success", "query {expr:?}: {answer}");
        vector(&answer["data"]).unwrap_or_default()
    }

    /// Waits until every one of `targets` was scraped successfully at least
    /// `scrapes` times in the last minute. Returns about when the first
    /// scrape was seen (Prometheus' service discovery holds the first one
    /// back up to 5 s after its start).
    pub(crate) async fn wait_for_scrapes(
        &self,
        job: &str,
        targets: usize,
        scrapes: u32,
        limit: Duration,
    ) -> Instant {
        let counts = format!("count_over_time(up{{job=\"{job}\"}}[1m])");
        let down = format!("up{{job=\"{job}\"}} == 0");
        let deadline = tokio::time::Instant::now() + limit;
        let mut first = None;
        loop {
            let seen = self.samples(&counts).await;
            let failing = self.samples(&down).await;
            if !seen.is_empty() {
                first.get_or_insert_with(Instant::now);
            }
            let enough = seen.iter().all(|(_, n)| *n >= f64::from(scrapes));
            if seen.len() == targets && enough && failing.is_empty() {
                return first.unwrap_or_else(Instant::now);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "after {limit:?}, Prometheus had not scraped the {targets} targets of job {job} \
                 {scrapes} times each: {seen:?}; failing (up == 0): {failing:?} (see \
                 {}/targets while it runs)\n{}",
                self.url,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The end of its log.
    pub(crate) fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let mut start = log.len().saturating_sub(LOG_TAIL_BYTES);
        while !log.is_char_boundary(start) {
            start += 1;
        }
        format!("--- prometheus log (last part) ---\n{}", &log[start..])
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}

/// The series of an instant query's `data` (a vector, or a scalar as one
/// series without labels); `None` for anything else.
pub(crate) fn vector(data: &Value) -> Option<Vec<(Value, f64)>> {
    let number = |value: &Value| value[1].as_str().and_then(|v| v.parse::<f64>().ok());
    match data["resultType"].as_str()? {
        "vector" => Some(
            data["result"]
                .as_array()?
                .iter()
                .map(|series| {
                    (series["metric"].clone(), number(&series["value"]).unwrap_or(f64::NAN))
                })
                .collect(),
        ),
        "scalar" => Some(vec![(Value::Null, number(&data["result"]).unwrap_or(f64::NAN))]),
        _ => None,
    }
}

/// The shipped configuration with the test's targets and a 1 s scrape
/// interval; panics if it lost what the dashboard relies on.
fn scrape_config(shipped: &Path, targets: &[SocketAddr]) -> String {
    let text = std::fs::read_to_string(shipped)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", shipped.display()));
    for needle in [
        "job_name: chat-server",
        "metrics_path: /metrics",
        "scrape_interval: 5s",
        "scrape_timeout: 4s",
        SHIPPED_TARGETS,
    ] {
        assert!(text.contains(needle), "{} no longer contains {needle:?}", shipped.display());
    }
    let list: Vec<String> = targets.iter().map(|target| format!("'{target}'")).collect();
    text.replace("scrape_interval: 5s", "scrape_interval: 1s")
        .replace("evaluation_interval: 5s", "evaluation_interval: 1s")
        .replace("scrape_timeout: 4s", "scrape_timeout: 1s")
        .replace(SHIPPED_TARGETS, &format!("- targets: [{}]", list.join(", ")))
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address")
}

/// `text` percent-encoded for a query string (all but unreserved bytes).
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
