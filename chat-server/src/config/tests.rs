//! The configuration's unit tests.

use super::values::redact;
use super::*;

fn settings(args: &[&str]) -> Settings {
    Settings::try_parse_from(std::iter::once("chat-server").chain(args.iter().copied()))
        .expect("flags parse")
}

#[test]
fn defaults_are_the_documented_ones() {
    let config = settings(&[]).resolve().expect("defaults are valid");
    assert_eq!(config.http.to_string(), "127.0.0.1:8080");
    assert_eq!(config.stomp.to_string(), "127.0.0.1:61613");
    assert_eq!(config.data_dir, PathBuf::from("./data"));
    assert_eq!(config.max_text_chars, 2000);
    assert_eq!(config.max_frame_rate, Some(100));
    assert_eq!(
        (config.max_frame_bytes, config.max_outbox_bytes, config.max_queue_bytes),
        (65_536, 1 << 20, 64 << 20)
    );
    assert_eq!(config.max_destinations, 10_000);
    let unlimited = settings(&["--max-frame-rate", "0"]).resolve().expect("0 is valid");
    assert_eq!(unlimited.max_frame_rate, None);
    assert!(config.redis_url.is_none() && config.jwt_secret.is_none());
}

#[test]
fn out_of_range_values_name_their_key() {
    let error = settings(&["--max-text-chars", "0"]).resolve().unwrap_err().to_string();
    assert!(error.contains("--max-text-chars") && error.contains("max_text_chars"), "{error}");
    let error = settings(&["--redis-url", "http://x"]).resolve().unwrap_err().to_string();
    assert!(error.contains("--redis-url"), "{error}");
}

#[test]
fn the_frame_bound_holds_the_longest_text() {
    let long = settings(&["--max-text-chars", "50000"]).resolve().expect("valid");
    assert_eq!(long.max_frame_bytes, 50_000 * 6 + 1024, "raised to what the text needs");
    let error = settings(&["--max-text-chars", "50000", "--max-frame-bytes", "65536"])
        .resolve()
        .unwrap_err()
        .to_string();
    assert!(error.contains("--max-frame-bytes") && error.contains("max_text_chars"), "{error}");
    let small = settings(&["--max-text-chars", "100", "--max-frame-bytes", "4096"]).resolve();
    assert_eq!(small.expect("valid").max_frame_bytes, 4096);
}

#[test]
fn flags_win_over_the_file() {
    let dir = std::env::temp_dir().join(format!("chat-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("chat.toml");
    std::fs::write(&file, "http = \"127.0.0.1:9000\"\nstomp = \"127.0.0.1:9001\"\n")
        .expect("write");
    let path = file.to_str().expect("utf-8 path");
    let config = settings(&["--config", path, "--http", "127.0.0.1:9100"]).resolve().unwrap();
    assert_eq!(config.http.port(), 9100);
    assert_eq!(config.stomp.port(), 9001);
    std::fs::write(&file, "htp = \"x\"\n").expect("write");
    let error = settings(&["--config", path]).resolve().unwrap_err().to_string();
    assert!(error.contains("htp"), "{error}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_value_that_does_not_parse_names_all_three_spellings() {
    let error = match Settings::parse_args(["chat-server", "--http", "x"]) {
        Err(ArgsError::Config(e)) => e.to_string(),
        other => panic!("expected a configuration error, got {other:?}"),
    };
    assert!(error.contains("--http (CHAT_HTTP, `http`): invalid value 'x'"), "{error}");
    assert!(matches!(
        Settings::parse_args(["chat-server", "--no-such-flag"]),
        Err(ArgsError::Clap(_))
    ));
}

#[test]
fn passwords_are_redacted() {
    assert_eq!(redact("mysql://root:pw@host:3306/db"), "mysql://root:***@host:3306/db");
    assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
}
