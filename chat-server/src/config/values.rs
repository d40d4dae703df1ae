//! Reading values: the command line and its errors, the TOML file, and
//! the checks every numeric and URL key goes through.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, CommandFactory, FromArgMatches};

use super::{ConfigError, DEFAULT_FRAME_BYTES, FRAME_BYTES, Settings, key};

/// Why the command line could not be read.
#[derive(Debug)]
pub(crate) enum ArgsError {
    /// A value that does not parse, naming its key.
    Config(ConfigError),
    /// What clap reports itself: an unknown flag, `--help`, `--version`.
    Clap(clap::Error),
}

impl Settings {
    /// Parses `args` (the program name first) and the `CHAT_*` variables;
    /// an empty variable counts as unset.
    pub(crate) fn parse_args<I, T>(args: I) -> Result<Self, ArgsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let command = Self::command().mut_args(unset_if_empty);
        let parsed = command.try_get_matches_from(args).and_then(|m| Self::from_arg_matches(&m));
        parsed.map_err(|e| value_error(&e).map_or(ArgsError::Clap(e), ArgsError::Config))
    }
}

/// The `CHAT_*` variables that are set but empty (so ignored), to warn of.
pub(crate) fn empty_variables() -> Vec<String> {
    Settings::command()
        .get_arguments()
        .filter_map(Arg::get_env)
        .filter(|name| std::env::var_os(name).is_some_and(|value| value.is_empty()))
        .map(|name| name.to_string_lossy().into_owned())
        .collect()
}

/// `arg` without its variable when that is set but empty.
fn unset_if_empty(arg: Arg) -> Arg {
    let empty = arg.get_env().and_then(std::env::var_os).is_some_and(|value| value.is_empty());
    if empty { arg.env(None::<&'static str>) } else { arg }
}

/// clap's report of a value that does not parse, as a [`ConfigError`]
/// naming the key in all three spellings (clap names only the flag, even
/// when the value came from the variable).
fn value_error(e: &clap::Error) -> Option<ConfigError> {
    if !matches!(e.kind(), ErrorKind::ValueValidation | ErrorKind::InvalidValue) {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else { return None };
    let flag = arg.split_whitespace().next()?.strip_prefix("--")?;
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => value.as_str(),
        _ => "",
    };
    let why =
        std::error::Error::source(e).map_or_else(|| "not valid".to_owned(), |s| s.to_string());
    Some(ConfigError::new(key(&flag.replace('-', "_")), format!("invalid value '{value}': {why}")))
}

/// The file's keys. A key's own error (a value of the wrong type, or one
/// that does not parse) names it in all three spellings.
pub(super) fn read_file(path: &Path) -> Result<Settings, ConfigError> {
    let what = format!("--config (CHAT_CONFIG) {}", path.display());
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(&what, format!("cannot read it: {e}")))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| ConfigError::new(&what, e.to_string().trim_end().to_owned()))?;
    for (name, value) in &table {
        let alone = toml::Table::from_iter([(name.clone(), value.clone())]);
        if let Err(e) = toml::Value::Table(alone).try_into::<Settings>() {
            let known = Settings::command().get_arguments().any(|a| a.get_id() == name.as_str());
            let at = if known { format!("{} in {}", key(name), path.display()) } else { what };
            return Err(ConfigError::new(at, e.to_string().trim_end().to_owned()));
        }
    }
    toml::Value::Table(table).try_into().map_err(|e| ConfigError::new(what, e.to_string()))
}

/// `value` (or `default`) within `bounds`.
pub(super) fn bounded(
    value: Option<u64>,
    default: u64,
    (min, max): (u64, u64),
    name: &str,
) -> Result<u64, ConfigError> {
    let value = value.unwrap_or(default);
    if !(min..=max).contains(&value) {
        return Err(ConfigError::new(key(name), format!("{value} is not within {min}..={max}")));
    }
    Ok(value)
}

/// `value` (or `default`) within `bounds`, as a count.
pub(super) fn within(
    value: Option<u64>,
    default: u64,
    bounds: (u64, u64),
    name: &str,
) -> Result<usize, ConfigError> {
    let value = bounded(value, default, bounds, name)?;
    usize::try_from(value).map_err(|_| ConfigError::new(key(name), "too large"))
}

/// `value` (or `default`) seconds within `bounds`.
pub(super) fn secs(
    value: Option<u64>,
    default: u64,
    bounds: (u64, u64),
    name: &str,
) -> Result<Duration, ConfigError> {
    bounded(value, default, bounds, name).map(Duration::from_secs)
}

/// The frame bound: large enough for a chat message of the longest text
/// (each character may take 6 bytes in JSON, as `\u0001`; 1 KiB for the
/// rest of the frame).
pub(super) fn frame_bytes(
    value: Option<u64>,
    text_chars: Option<u64>,
) -> Result<usize, ConfigError> {
    let needed = text_chars.unwrap_or(2000).saturating_mul(6).saturating_add(1024);
    let bytes = within(value, DEFAULT_FRAME_BYTES.max(needed), FRAME_BYTES, "max_frame_bytes")?;
    if value.is_some_and(|value| value < needed) {
        return Err(ConfigError::new(
            key("max_frame_bytes"),
            format!(
                "{bytes} is too small for a message of {} (max_text_chars) characters: at \
                 least {needed}",
                text_chars.unwrap_or(2000)
            ),
        ));
    }
    Ok(bytes)
}

/// A count whose bounds keep it within `u32`.
pub(super) fn small(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A URL with one of `schemes`, or none.
pub(super) fn url(
    value: Option<String>,
    name: &str,
    schemes: &[&str],
) -> Result<Option<String>, ConfigError> {
    match value {
        Some(url) if !schemes.iter().any(|s| url.starts_with(s)) => Err(ConfigError::new(
            key(name),
            format!("'{}' does not start with {}", redact(&url), schemes.join(" or ")),
        )),
        other => Ok(other),
    }
}

/// A URL without its password, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}
