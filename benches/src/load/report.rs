//! A scenario's results, written twice: a table for people and one
//! `RESULT {json}` line for scripts, both from the same entries.

use std::fmt::Write as _;
use std::io::{self, Write};

/// A value in a report.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// A count.
    Int(u64),
    /// A measurement, shown with this many decimals.
    Float(f64, usize),
    /// Text.
    Text(String),
    /// A verdict.
    Bool(bool),
}

#[derive(Debug, Clone)]
struct Entry {
    key: &'static str,
    label: &'static str,
    value: Value,
    unit: &'static str,
}

/// The results of one run.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    scenario: &'static str,
    entries: Vec<Entry>,
}

impl Report {
    /// An empty report for `scenario`.
    pub(crate) fn new(scenario: &'static str) -> Self {
        Self { scenario, entries: Vec::new() }
    }

    /// Adds an entry: its JSON key, its label in the table, its value and
    /// unit (shown in the table; the key should name it too).
    pub(crate) fn add(
        &mut self,
        key: &'static str,
        label: &'static str,
        value: Value,
        unit: &'static str,
    ) {
        self.entries.push(Entry { key, label, value, unit });
    }

    /// Adds a count.
    pub(crate) fn int(&mut self, key: &'static str, label: &'static str, value: u64) {
        self.add(key, label, Value::Int(value), "");
    }

    /// Adds a measurement with its unit and decimals.
    pub(crate) fn float(
        &mut self,
        key: &'static str,
        label: &'static str,
        value: f64,
        decimals: usize,
        unit: &'static str,
    ) {
        self.add(key, label, Value::Float(value, decimals), unit);
    }

    /// Adds text.
    pub(crate) fn text(
        &mut self,
        key: &'static str,
        label: &'static str,
        value: impl Into<String>,
    ) {
        self.add(key, label, Value::Text(value.into()), "");
    }

    /// Adds a verdict.
    pub(crate) fn bool(&mut self, key: &'static str, label: &'static str, value: bool) {
        self.add(key, label, Value::Bool(value), "");
    }

    /// The value of an entry, by key.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|e| e.key == key).map(|e| &e.value)
    }

    /// The JSON object: `{"scenario":..., key: value, ...}` on one line.
    pub(crate) fn json(&self) -> String {
        let mut out = String::from("{\"scenario\":");
        push_json_string(&mut out, self.scenario);
        for entry in &self.entries {
            out.push(',');
            push_json_string(&mut out, entry.key);
            out.push(':');
            match &entry.value {
                Value::Int(n) => {
                    let _ = write!(out, "{n}");
                }
                Value::Float(x, decimals) if x.is_finite() => {
                    let _ = write!(out, "{x:.decimals$}");
                }
                Value::Float(..) => out.push_str("null"),
                Value::Text(text) => push_json_string(&mut out, text),
                Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            }
        }
        out.push('}');
        out
    }

    /// The table, then the `RESULT {json}` line.
    pub(crate) fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "== stomp-load {} ==", self.scenario)?;
        let width = self.entries.iter().map(|e| e.label.len()).max().unwrap_or(0);
        for entry in &self.entries {
            let value = match &entry.value {
                Value::Int(n) => group_thousands(*n),
                Value::Float(x, decimals) => format!("{x:.decimals$}"),
                Value::Text(text) => text.clone(),
                Value::Bool(b) => (if *b { "yes" } else { "NO" }).to_owned(),
            };
            let unit =
                if entry.unit.is_empty() { String::new() } else { format!(" {}", entry.unit) };
            writeln!(out, "  {:<width$}  {value}{unit}", entry.label)?;
        }
        writeln!(out, "RESULT {}", self.json())
    }
}

/// `12345678` as `12,345,678`.
fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Prints a run's report (or its error, prefixed with `program`) and gives
/// the exit status: 0 clean, 3 when the report says `"ok": false`, 1 when
/// the run failed or the report cannot be written.
pub(crate) fn finish<E: std::fmt::Display>(
    program: &str,
    result: Result<Report, E>,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    match result {
        Ok(report) => {
            let mut out = io::stdout().lock();
            if report.write_to(&mut out).and_then(|()| out.flush()).is_err() {
                return ExitCode::FAILURE;
            }
            match report.get("ok") {
                Some(Value::Bool(false)) => ExitCode::from(3),
                _ => ExitCode::SUCCESS,
            }
        }
        Err(error) => {
            let _ = writeln!(io::stderr(), "{program}: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_table() {
        let mut report = Report::new("fanout");
        report.int("messages", "messages", 1_234_567);
        report.float("rate_per_s", "rate", 12.345, 1, "msg/s");
        report.float("nan", "nan", f64::NAN, 1, "");
        report.text("error", "error", "a \"quoted\"\nline");
        report.bool("ok", "ok", true);
        assert_eq!(
            report.json(),
            r#"{"scenario":"fanout","messages":1234567,"rate_per_s":12.3,"nan":null,"error":"a \"quoted\"\nline","ok":true}"#
        );
        let mut out = Vec::new();
        report.write_to(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("1,234,567"));
        assert!(text.lines().last().unwrap().starts_with("RESULT {"));
    }
}
