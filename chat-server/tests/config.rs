//! Configuration: a bad value (flag, `CHAT_*` variable or TOML key), an
//! unknown key or a missing file stops the server at once with status 2
//! and the key named (a bad value: as flag, variable and file key); an
//! empty variable counts as unset; a TOML file's values are used; a flag
//! beats a variable, which beats the file; an unreachable MySQL fails the
//! start.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use support::server::path_str;
use support::{Exited, Node};

/// How long a configuration error may take to stop the server.
const FAIL_FAST: Duration = Duration::from_secs(10);

/// A node with a valid STOMP address and data directory, and nothing else.
fn minimal() -> Node {
    Node::bare().flag("--stomp", "127.0.0.1:0").flag("--data-dir", "data")
}

/// Writes `text` as `chat.toml` in `node`'s directory; returns its path.
fn config_file(node: &Node, text: &str) -> PathBuf {
    let path = node.dir().join("chat.toml");
    std::fs::write(&path, text).expect("write the config file");
    path
}

/// Asserts exit status 2 and that stderr names `key`.
fn assert_config_error(exited: &Exited, key: &str) {
    assert_eq!(exited.status.code(), Some(2), "exit status: {exited}");
    assert!(exited.stderr.contains(key), "stderr does not name {key:?}: {exited}");
    assert!(exited.stdout.is_empty(), "a failed start printed on stdout: {exited}");
}

#[tokio::test]
async fn a_bad_flag_or_variable_exits_2_naming_it() {
    let cases = [
        (minimal().flag("--http", "nonsense"), "http"),
        (minimal().env("CHAT_HTTP", "nonsense"), "http"),
        (Node::bare().flag("--http", "127.0.0.1:0").flag("--stomp", "localhost:notaport"), "stomp"),
        (minimal().flag("--max-text-chars", "many"), "max-text-chars"),
        (minimal().env("CHAT_RESUME_LIMIT", "-3"), "resume"),
        (minimal().flag("--shutdown-timeout", "soon"), "shutdown-timeout"),
    ];
    for (node, key) in cases {
        let exited = node.run_to_exit(FAIL_FAST).await;
        assert_config_error(&exited, key);
    }
}

#[tokio::test]
async fn a_bad_config_file_exits_2_naming_the_key() {
    for (text, key) in [
        ("http = \"nonsense\"\n", "http"),
        ("max_text_chars = \"many\"\n", "max_text_chars"),
        ("htpp = \"127.0.0.1:0\"\n", "htpp"),
        ("http = [unclosed\n", "chat.toml"),
    ] {
        let node = minimal();
        let file = config_file(&node, text);
        let exited = node.flag("--config", path_str(&file)).run_to_exit(FAIL_FAST).await;
        assert_config_error(&exited, key);
    }

    let missing = minimal().flag("--config", "/nonexistent/chat-server-test.toml");
    let exited = missing.run_to_exit(FAIL_FAST).await;
    assert_config_error(&exited, "/nonexistent/chat-server-test.toml");
}

/// The three spellings of the key `name` (`max_rooms`): `--max-rooms`,
/// `CHAT_MAX_ROOMS` and `` `max_rooms` ``.
fn spellings(name: &str) -> [String; 3] {
    [
        format!("--{}", name.replace('_', "-")),
        format!("CHAT_{}", name.to_uppercase()),
        format!("`{name}`"),
    ]
}

#[tokio::test]
async fn a_bad_value_names_the_flag_the_variable_and_the_file_key() {
    let in_file = |text: &str| {
        let node = minimal();
        let file = config_file(&node, text);
        node.flag("--config", path_str(&file))
    };
    let cases = [
        (minimal().env("CHAT_HTTP", "nonsense"), "http"),
        (minimal().flag("--http", "nonsense"), "http"),
        (minimal().env("CHAT_MAX_CONNECTIONS", "lots"), "max_connections"),
        (minimal().env("CHAT_HTTP_IDLE_TIMEOUT", "soon"), "http_idle_timeout"),
        (minimal().flag("--http-header-timeout", "0"), "http_header_timeout"),
        (minimal().flag("--max-rooms", "0"), "max_rooms"),
        (minimal().env("CHAT_MAX_ROOM_RATE", "-1"), "max_room_rate"),
        (minimal().env("CHAT_MAX_CONNECTIONS_PER_IP", "x"), "max_connections_per_ip"),
        (in_file("http = \"nonsense\"\n"), "http"),
        (in_file("max_rooms = \"many\"\n"), "max_rooms"),
        (in_file("http_idle_timeout = 0\n"), "http_idle_timeout"),
    ];
    for (node, name) in cases {
        let exited = node.run_to_exit(FAIL_FAST).await;
        for spelling in spellings(name) {
            assert_config_error(&exited, &spelling);
        }
    }
}

#[tokio::test]
async fn an_empty_variable_is_unset() {
    let node = Node::new()
        .env("CHAT_REDIS_URL", "")
        .env("CHAT_JWT_SECRET", "")
        .env("CHAT_MYSQL_URL", "")
        .env("CHAT_MAX_TEXT_CHARS", "");
    let server = node.start().await;
    let info = server.rest().get("/api/info").await.expect_json(200);
    assert_eq!(info["auth"], "guest", "an empty CHAT_JWT_SECRET is no secret: {info}");
    assert_eq!(info["maxTextChars"], 2000, "an empty CHAT_MAX_TEXT_CHARS is the default");
    let ready = server.rest().get("/readyz").await.expect_json(200);
    assert_eq!(ready["status"], "ready", "{ready}");
    let stderr = server.stderr();
    assert!(
        stderr.contains("CHAT_JWT_SECRET is set but empty"),
        "no warning that CHAT_JWT_SECRET is ignored:\n{stderr}"
    );
    server.stop_clean().await;

    // On the command line, an empty secret is a mistake, not a choice.
    let exited = minimal().flag("--jwt-secret", "").run_to_exit(FAIL_FAST).await;
    assert_config_error(&exited, "--jwt-secret");
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

#[tokio::test]
async fn a_config_files_values_are_used() {
    let node = Node::bare();
    let port = free_port();
    let data = node.dir().join("from-file");
    let text = format!(
        "http = \"127.0.0.1:{port}\"\nstomp = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nmax_text_chars = 7\n",
        path_str(&data)
    );
    let file = config_file(&node, &text);
    let server = node.flag("--config", path_str(&file)).start().await;
    assert_eq!(server.http.port(), port, "the file's http address is not the one served");
    assert_eq!(server.rest().get("/healthz").await.status, 200);
    assert_eq!(server.rest().get("/api/info").await.expect_json(200)["maxTextChars"], 7);
    assert!(data.join("chat.db").exists(), "no chat.db in the file's data_dir {data:?}");
    server.stop_clean().await;
}

/// `GET /api/info` of `node`, started and stopped for it.
async fn info_of(node: &Node) -> Value {
    let server = node.start().await;
    let info = server.rest().get("/api/info").await.expect_json(200);
    server.stop_clean().await;
    info
}

/// A node of its own with `max_text_chars = 7` in its config file.
fn with_file() -> Node {
    let node = Node::new();
    let file = config_file(&node, "max_text_chars = 7\nresume_limit = 3\n");
    node.flag("--config", path_str(&file))
}

#[tokio::test]
async fn a_flag_beats_a_variable_which_beats_the_file() {
    let file_only = with_file();
    let env_too = with_file().env("CHAT_MAX_TEXT_CHARS", "8").env("CHAT_JWT_SECRET", "from-env");
    let flag_too = with_file().env("CHAT_MAX_TEXT_CHARS", "8").flag("--max-text-chars", "9");
    let (file_only, env_too, flag_too) =
        tokio::join!(info_of(&file_only), info_of(&env_too), info_of(&flag_too));
    assert_eq!(file_only["maxTextChars"], 7, "from the file");
    assert_eq!(file_only["auth"], "guest");
    assert_eq!(env_too["maxTextChars"], 8, "the variable beats the file");
    assert_eq!(env_too["auth"], "jwt", "CHAT_JWT_SECRET is read");
    assert_eq!(flag_too["maxTextChars"], 9, "the flag beats the variable");
}

#[tokio::test]
async fn an_unreachable_mysql_fails_the_start() {
    // Port 1 on the loopback: nothing listens, connections are refused.
    let node = Node::new().flag("--mysql-url", "mysql://root@127.0.0.1:1/chat");
    let started = std::time::Instant::now();
    let exited = node.run_to_exit(Duration::from_secs(30)).await;
    assert!(!exited.status.success(), "{exited}");
    assert!(exited.stderr.to_lowercase().contains("mysql"), "stderr does not name mysql: {exited}");
    assert!(exited.stdout.is_empty(), "printed a ready line: {exited}");
    eprintln!("unreachable MySQL: exited {} after {:?}", exited.status, started.elapsed());
}
