//! Monitoring, end to end: two chat-server nodes sharing Redis, scraped
//! every second by a private Prometheus (the shipped
//! `monitoring/prometheus.yml`, pointed at them), under a small load over
//! STOMP (TCP and WebSocket posts with receipts, subscribers on both nodes,
//! a resume, a refused post, an ERROR) and REST. Then every query of the
//! shipped `monitoring/grafana-dashboard.json` (nested rows included, with
//! `$__rate_interval` and the template variables substituted as Grafana
//! does) must parse and return data, and so must the variables' queries;
//! the raw `/metrics` must hold every family of the metrics contract and
//! follow the naming rules (counters end in `_total`, units in names, no
//! per-session labels, few values per label). Last, `monitoring/preview.mjs`
//! draws the dashboard from what Prometheus scraped into
//! `target/monitoring/dashboard.png`.
//!
//! It needs `prometheus` (`scripts/ensure-prometheus`), Redis
//! (`scripts/ensure-services`), and for the picture `node`, the packages
//! of `tests/e2e` (`scripts/ensure-node`) and `/usr/bin/chromium`
//! (`scripts/ensure-chromium`). Without them it fails, naming the script;
//! it never skips. It takes about 25 s (Prometheus' service discovery
//! holds the first scrape back for 5 s).

mod support;

#[path = "prometheus/dashboard.rs"]
mod dashboard;
#[path = "prometheus/exposition.rs"]
mod exposition;
#[path = "prometheus/load.rs"]
mod load;
#[path = "prometheus/prom.rs"]
mod prom;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dashboard::{Dashboard, Query};
use exposition::{Exposition, leaked_values, naming_violations};
use prom::Prometheus;
use support::services::{REDIS_URL, RedisPrefix};
use support::{Node, Server};
use tokio_util::sync::CancellationToken;

/// What to run when `prometheus` is missing.
const INSTALL_HINT: &str = "install it with scripts/ensure-prometheus (from the workspace root; \
                            it installs the Debian package prometheus), then run the test again";

/// The shipped files, relative to the workspace root.
const DASHBOARD: &str = "monitoring/grafana-dashboard.json";
const SCRAPE_CONFIG: &str = "monitoring/prometheus.yml";
const PREVIEW: &str = "monitoring/preview.mjs";
/// Where the picture of the dashboard goes.
const PICTURE: &str = "target/monitoring/dashboard.png";

/// The job of the shipped scrape configuration (the dashboard's default).
const JOB: &str = "chat-server";

/// Successful scrapes of each node before the queries run: enough for
/// every `rate()` over [`dashboard::RATE_INTERVAL`] and for a picture.
const SCRAPES: u32 = 15;

/// How long a query may stay empty (its series not scraped yet) before
/// the test fails.
const QUERY_WAIT: Duration = Duration::from_secs(15);

/// The browser the preview drives.
const CHROMIUM: &str = "/usr/bin/chromium";

/// How long the preview script may take.
const PREVIEW_TIMEOUT: Duration = Duration::from_secs(60);

/// Every metric family of the metrics contract (listed in
/// `monitoring/README.md`) and its type.
const CONTRACT: &[(&str, &str)] = &[
    ("stomp_connections_open", "gauge"),
    ("stomp_connections_total", "counter"),
    ("stomp_connections_refused_total", "counter"),
    ("stomp_frames_received_total", "counter"),
    ("stomp_frames_sent_total", "counter"),
    ("stomp_messages_published_total", "counter"),
    ("stomp_deliveries_total", "counter"),
    ("stomp_delivery_fanout_subscribers", "histogram"),
    ("stomp_delivery_latency_seconds", "histogram"),
    ("stomp_outbox_queued_bytes", "histogram"),
    ("stomp_outbox_backlog_bytes", "gauge"),
    ("stomp_outbox_largest_backlog_bytes", "gauge"),
    ("stomp_outbox_limit_bytes", "gauge"),
    ("stomp_slow_consumer_actions_total", "counter"),
    ("stomp_heartbeat_timeouts_total", "counter"),
    ("stomp_errors_sent_total", "counter"),
    ("stomp_backplane_connected", "gauge"),
    ("stomp_backplane_published_total", "counter"),
    ("stomp_backplane_publish_dropped_total", "counter"),
    ("stomp_backplane_received_total", "counter"),
    ("stomp_backplane_lost_total", "counter"),
    ("stomp_backplane_reconnects_total", "counter"),
    ("stomp_backplane_publish_queue_messages", "gauge"),
    ("stomp_backplane_subscriptions", "gauge"),
    ("stomp_history_buffered_messages", "gauge"),
    ("stomp_history_buffered_bytes", "gauge"),
    ("stomp_history_accepted_total", "counter"),
    ("stomp_history_written_total", "counter"),
    ("stomp_history_refused_total", "counter"),
    ("stomp_history_write_failures_total", "counter"),
    ("stomp_history_batch_messages", "histogram"),
    ("stomp_history_write_seconds", "histogram"),
    ("chat_messages_posted_total", "counter"),
    ("chat_posts_refused_total", "counter"),
    ("chat_resumes_total", "counter"),
    ("chat_replayed_messages_total", "counter"),
    ("chat_rooms_created_total", "counter"),
    ("chat_http_requests_total", "counter"),
    ("process_cpu_seconds_total", "counter"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_virtual_memory_bytes", "gauge"),
    ("process_open_fds", "gauge"),
    ("process_max_fds", "gauge"),
    ("process_start_time_seconds", "gauge"),
    ("process_threads", "gauge"),
];

/// Series each node must expose with a value above 0 (`None`: any
/// value): the label values panels split by, and the room relays' local
/// subscriptions, counted as connections of transport `local`.
const SERIES: &[(&str, (&str, &str), Option<f64>)] = &[
    ("stomp_connections_open", ("transport", "local"), Some(0.0)),
    ("stomp_connections_total", ("transport", "local"), Some(0.0)),
    ("stomp_history_write_seconds_count", ("outcome", "ok"), Some(0.0)),
    ("stomp_history_write_seconds_count", ("outcome", "error"), None),
];

/// Units a panel may show a rate of events in.
const RATE_UNITS: &[&str] = &["cps", "mps", "reqps", "ops"];

/// The workspace root: `CARGO_MANIFEST_DIR/..`.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the crate is in a workspace").to_owned()
}

/// Fails, naming the script to run, when a tool the test needs is missing.
fn check_prerequisites(root: &Path) {
    let prometheus = Command::new("prometheus").arg("--version").output();
    assert!(
        prometheus.as_ref().is_ok_and(|out| out.status.success()),
        "`prometheus --version` failed ({:?}): {INSTALL_HINT}",
        prometheus.map(|out| out.status)
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|out| out.status.success()),
        "`node --version` failed ({:?}): install Node.js 20 or later (apt-get install nodejs npm), \
         then run scripts/ensure-node from the workspace root",
        node.map(|out| out.status)
    );
    let playwright = root.join("tests/e2e/node_modules/playwright-core/package.json");
    assert!(
        playwright.exists(),
        "{} is missing: run scripts/ensure-node (from the workspace root), then the test again",
        playwright.display()
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/ensure-chromium, then run the test again"
    );
}

/// A chat-server node on Redis (its own SQLite: rooms and history stay
/// per node, live messages and ids are shared).
fn node(redis: &RedisPrefix) -> Node {
    Node::new()
        .flag("--redis-url", REDIS_URL)
        .flag("--redis-prefix", redis.prefix.clone())
        .flag("--shutdown-timeout", "2")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_data_from_a_scraped_server() {
    let root = workspace_root();
    check_prerequisites(&root);
    let started = Instant::now();
    let redis = RedisPrefix::new();
    let one = node(&redis).start().await;
    let two = node(&redis).start().await;
    let prometheus = Prometheus::start(&root.join(SCRAPE_CONFIG), &[one.http, two.http]).await;
    let booted = started.elapsed();
    let scenario = load::Scenario::run(&one, &two).await;
    let loaded = started.elapsed();

    let stop = CancellationToken::new();
    let observe = async {
        let first = prometheus.wait_for_scrapes(JOB, 2, SCRAPES, Duration::from_secs(30)).await;
        let ready = started.elapsed();
        check_queries(&prometheus, &Dashboard::load(&root.join(DASHBOARD))).await;
        check_exposition(&one, &scenario).await;
        check_exposition(&two, &scenario).await;
        let checked = started.elapsed();
        let picture = preview(&root, &prometheus, first.elapsed()).await;
        stop.cancel();
        eprintln!(
            "servers and Prometheus up after {booted:.1?}, scenario done after {loaded:.1?}, \
             scraped {SCRAPES}x after {ready:.1?}, all queries checked after {checked:.1?}, \
             picture {} after {:.1?}",
            picture.display(),
            started.elapsed()
        );
    };
    tokio::join!(scenario.trickle(&one, &two, &stop), observe);
}

/// Every query of the dashboard and of its variables parses and returns at
/// least one number (empty answers are retried for [`QUERY_WAIT`]: a
/// series may not be scraped yet).
async fn check_queries(prometheus: &Prometheus, dashboard: &Dashboard) {
    let mut problems = dashboard.layout_problems();
    problems.extend(dashboard.unresolved());
    assert!(problems.is_empty(), "{DASHBOARD}:\n{}", problems.join("\n"));

    let queries = dashboard.queries();
    assert!(queries.len() >= 40, "only {} queries in {DASHBOARD}", queries.len());
    let mut pending = queries.clone();
    let mut broken = Vec::new();
    let deadline = tokio::time::Instant::now() + QUERY_WAIT;
    loop {
        let mut empty = Vec::new();
        for query in pending {
            match outcome(prometheus, &query).await {
                Outcome::Data => {}
                Outcome::Empty(why) => empty.push((query, why)),
                Outcome::Error(why) => broken.push(why),
            }
        }
        if empty.is_empty() || tokio::time::Instant::now() >= deadline {
            broken.extend(empty.into_iter().map(|(_, why)| why));
            break;
        }
        pending = empty.into_iter().map(|(query, _)| query).collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        broken.is_empty(),
        "{} of the {} queries of {DASHBOARD} fail or return no data (Prometheus {}):\n{}",
        broken.len(),
        queries.len(),
        prometheus.url,
        broken.join("\n")
    );

    for variable in dashboard.variable_queries() {
        let values: Vec<String> = prometheus
            .samples(&variable.expr)
            .await
            .iter()
            .filter_map(|(labels, _)| labels[&variable.label].as_str().map(str::to_owned))
            .collect();
        assert!(
            !values.is_empty(),
            "variable {}: {:?} lists no values",
            variable.name,
            variable.expr
        );
        if let Some(default) = &variable.default {
            assert!(
                values.contains(default),
                "variable {}: default {default:?} is not among {values:?}",
                variable.name
            );
        }
    }
    eprintln!("{} dashboard queries return data", queries.len());
}

/// How one query went.
enum Outcome {
    /// At least one series with a number.
    Data,
    /// Parsed, but no series or only NaN (yet).
    Empty(String),
    /// Prometheus refused it.
    Error(String),
}

async fn outcome(prometheus: &Prometheus, query: &Query) -> Outcome {
    let answer = prometheus.query(&query.expr).await;
    let what = format!("{}: {}", query.what, query.expr);
    if answer["status"] != "success" {
        return Outcome::Error(format!(
            "{what}\n    -> {} {}",
            answer["errorType"], answer["error"]
        ));
    }
    let Some(series) = prom::vector(&answer["data"]) else {
        return Outcome::Error(format!("{what}\n    -> unexpected answer {answer}"));
    };
    if series.is_empty() {
        Outcome::Empty(format!("{what}\n    -> no series"))
    } else if series.iter().all(|(_, value)| value.is_nan()) {
        Outcome::Empty(format!("{what}\n    -> only NaN: {series:?}"))
    } else {
        Outcome::Data
    }
}

/// The raw `/metrics` of `server`: the text format, every family of the
/// contract with its type, the naming rules, and no label value copied
/// from the load (ids, logins, paths).
async fn check_exposition(server: &Server, scenario: &load::Scenario) {
    let reply = server.rest().get("/metrics").await;
    assert_eq!(reply.status, 200, "GET /metrics on {}: {}", server.http, reply.body);
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain") && content_type.contains("version=0.0.4"),
        "GET /metrics: content-type {content_type:?}, expected text/plain; version=0.0.4"
    );
    let exposition = Exposition::parse(&reply.body);
    let missing: Vec<String> = CONTRACT
        .iter()
        .filter(|(name, kind)| exposition.types.get(*name).map(String::as_str) != Some(*kind))
        .map(|(name, kind)| match exposition.types.get(*name) {
            Some(found) => format!("{name}: a {found}, the contract says {kind}"),
            None => format!("{name} ({kind}): missing"),
        })
        .collect();
    assert!(
        missing.is_empty(),
        "GET /metrics on {} lacks families of the contract:\n{}",
        server.http,
        missing.join("\n")
    );
    let mut problems = naming_violations(&exposition);
    problems.extend(leaked_values(&exposition, &scenario.needles()));
    problems.extend(missing_series(&exposition));
    assert!(
        problems.is_empty(),
        "GET /metrics on {} breaks the naming rules:\n{}",
        server.http,
        problems.join("\n")
    );
}

/// Runs `monitoring/preview.mjs` against Prometheus for the last `range`
/// and checks it wrote a PNG; returns its path.
async fn preview(root: &Path, prometheus: &Prometheus, range: Duration) -> PathBuf {
    let picture = root.join(PICTURE);
    std::fs::create_dir_all(picture.parent().expect("parent")).expect("create target/monitoring");
    let _ = std::fs::remove_file(&picture);
    let mut command = Command::new("node");
    command
        .arg(PREVIEW)
        .arg(&prometheus.url)
        .arg(DASHBOARD)
        .arg(&picture)
        .args(["--range", &format!("{}s", range.as_secs() + 1)])
        .args(["--scrape-interval", "1s"])
        .current_dir(root)
        .stdin(Stdio::null());
    let what = format!("{command:?}");
    let output = tokio::task::spawn_blocking(move || run_with_timeout(command, PREVIEW_TIMEOUT))
        .await
        .expect("the preview thread");
    let Some(output) = output else {
        panic!("{what} did not finish within {PREVIEW_TIMEOUT:?}");
    };
    let report = format!(
        "{what}: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the dashboard preview failed\n{report}");
    eprint!("{}", String::from_utf8_lossy(&output.stdout));
    let png = std::fs::read(&picture).unwrap_or_else(|e| panic!("{}: {e}\n{report}", PICTURE));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "{PICTURE} is not a plausible PNG ({} bytes)\n{report}",
        png.len()
    );
    picture
}

/// Runs `command`, killing it after `limit` (then `None`).
fn run_with_timeout(mut command: Command, limit: Duration) -> Option<std::process::Output> {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?} ({e}): install Node.js"));
    let id = child.id();
    let (done, wait) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let output = child.wait_with_output();
        let _ = done.send(());
        output
    });
    if wait.recv_timeout(limit).is_err() {
        let _ = Command::new("kill").args(["-KILL", &id.to_string()]).status();
        let _ = waiter.join();
        return None;
    }
    Some(waiter.join().expect("the waiting thread").expect("wait for the preview"))
}

#[test]
fn the_dashboard_is_importable_and_every_range_is_the_rate_interval() {
    let dashboard = Dashboard::load(&workspace_root().join(DASHBOARD));
    let mut problems = dashboard.layout_problems();
    problems.extend(dashboard.unresolved());
    assert!(problems.is_empty(), "{DASHBOARD}:\n{}", problems.join("\n"));
    let queries = dashboard.queries();
    let raw: Vec<&str> = queries.iter().map(|query| query.raw.as_str()).collect();
    let needles = [
        "histogram_quantile(0.999, ",
        "stomp_delivery_latency_seconds_bucket",
        "stomp_outbox_backlog_bytes",
        "stomp_outbox_largest_backlog_bytes",
        "stomp_outbox_limit_bytes",
        "sum by (le, outcome) (rate(stomp_history_write_seconds_bucket",
    ];
    for needle in needles {
        assert!(raw.iter().any(|expr| expr.contains(needle)), "no query uses {needle:?}");
    }
    let problems = expression_problems(&dashboard);
    assert!(problems.is_empty(), "{DASHBOARD}:\n{}", problems.join("\n"));
}

/// The series of [`SERIES`] that `exposition` lacks or has at 0.
fn missing_series(exposition: &Exposition) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, (label, value), above) in SERIES {
        let found = exposition.samples.iter().find(|sample| {
            sample.name == *name && sample.labels.iter().any(|(n, v)| n == label && v == value)
        });
        match (found, above) {
            (None, _) => problems.push(format!("no series {name}{{{label}=\"{value}\"}}")),
            (Some(sample), Some(floor)) if sample.value <= *floor => problems.push(format!(
                "{name}{{{label}=\"{value}\"}} is {}, expected above {floor}",
                sample.value
            )),
            _ => {}
        }
    }
    problems
}

/// What the dashboard's expressions must follow beyond parsing: rates
/// (`rate`, not `increase`, whose values change with the zoom), quantiles
/// of histograms summed by `le` (and at most other bounded labels), a
/// panel that splits by node doing so in every query, and panel units
/// that fit the metrics.
fn expression_problems(dashboard: &Dashboard) -> Vec<String> {
    let mut problems = Vec::new();
    for panel in dashboard.panels() {
        let title = format!("{} / {}", panel.row, panel.json["title"].as_str().unwrap_or_default());
        let unit = panel.json["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or_default();
        let targets = panel.json["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
        let legends: Vec<&str> =
            targets.iter().map(|t| t["legendFormat"].as_str().unwrap_or_default()).collect();
        if legends.iter().any(|l| l.contains("{{instance}}"))
            && !legends.iter().all(|l| l.contains("{{instance}}"))
        {
            problems.push(format!("{title}: some queries per node, some not: {legends:?}"));
        }
        for expr in targets.iter().filter_map(|t| t["expr"].as_str()) {
            problems.extend(shape_problem(expr).map(|why| format!("{title}: {why}: {expr}")));
            if let Some(fits) = fitting_units(expr)
                && !fits.contains(&unit)
            {
                problems.push(format!("{title}: unit {unit:?}, expected one of {fits:?}: {expr}"));
            }
        }
    }
    problems
}

/// Why `expr` is not one of the shapes allowed, if it is not.
fn shape_problem(expr: &str) -> Option<&'static str> {
    if ["increase(", "irate(", "delta("].iter().any(|f| expr.contains(f)) {
        return Some("use rate() over $__rate_interval");
    }
    let rest = expr.strip_prefix("histogram_quantile(")?;
    let grouped = rest.split_once(", sum by (").map(|(_, g)| g);
    let labels = grouped.and_then(|g| g.split_once(") (rate(")).map(|(labels, _)| labels);
    match labels {
        Some(labels) if labels.split(", ").any(|l| l == "le") => None,
        _ => Some("histogram_quantile over sum by (le, ...) (rate(..._bucket[...]))"),
    }
}

/// The name of the first metric `expr` selects.
fn first_metric(expr: &str) -> &str {
    let selector = expr.find('{').map_or(expr, |at| &expr[..at]);
    let start =
        selector.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
    &selector[start..]
}

/// The units a panel may show `expr` in, when it has a usual shape.
fn fitting_units(expr: &str) -> Option<&'static [&'static str]> {
    let metric = first_metric(expr);
    let ratio = expr.contains(" / ");
    if expr.starts_with("histogram_quantile(") || metric.ends_with("_sum") {
        return Some(if metric.contains("_seconds_") {
            &["s"]
        } else if metric.contains("_bytes_") {
            &["bytes"]
        } else {
            &["short", "none"]
        });
    }
    if expr.contains("rate(") {
        // Seconds per second: a share of one second (CPU: 1 = one core).
        return Some(if metric.ends_with("_seconds_total") {
            &["percentunit"]
        } else {
            RATE_UNITS
        });
    }
    if metric.ends_with("_bytes") {
        return Some(if ratio { &["percentunit"] } else { &["bytes"] });
    }
    metric.ends_with("_seconds").then_some(&["s"])
}

#[test]
fn the_exposition_parser_reads_labels_with_braces_quotes_and_escapes() {
    let text = "# HELP chat_http_requests_total Requests.\n\
                # TYPE chat_http_requests_total counter\n\
                chat_http_requests_total{route=\"/api/rooms/{id}\",status_class=\"2xx\"} 3\n\
                # TYPE odd gauge\n\
                odd{a=\"x,\\\"y\\\"}\",b=\"\\\\\"} +Inf 1700000000\n\
                # TYPE h_seconds histogram\n\
                h_seconds_bucket{le=\"0.5\"} 1\n\
                h_seconds_sum 0.25\n";
    let exposition = Exposition::parse(text);
    assert_eq!(exposition.samples.len(), 4);
    assert_eq!(
        exposition.samples[0].labels,
        vec![("route".into(), "/api/rooms/{id}".into()), ("status_class".into(), "2xx".into())]
    );
    assert_eq!(exposition.samples[1].labels[0].1, "x,\"y\"}");
    assert_eq!(exposition.samples[1].labels[1].1, "\\");
    assert!(exposition.samples[1].value.is_infinite());
    assert_eq!(exposition.type_of("h_seconds_sum"), Some("histogram"));
    let problems = naming_violations(&exposition);
    assert_eq!(problems, Vec::<String>::new());

    let bad = "# TYPE requests counter\nrequests{session_id=\"7\"} 1\n\
               # TYPE latency_ms histogram\nlatency_ms_count 1\n";
    let problems = naming_violations(&Exposition::parse(bad));
    assert_eq!(problems.len(), 4, "{problems:#?}");
}
