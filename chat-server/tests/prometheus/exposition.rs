//! The Prometheus text format (0.0.4) as chat-server serves it at
//! `/metrics`, parsed just enough to check the naming rules: each
//! sample's name, labels and value, and each family's `# TYPE`.
//!
//! The rules ([`naming_violations`]) are those of the Prometheus naming
//! guide (<https://prometheus.io/docs/practices/naming/>) that a scrape can
//! check: counters end in `_total` and nothing else does; times are in
//! `_seconds` and sizes in `_bytes`, with the unit last; no label names a
//! per-session or per-user thing; every label has few values.

use std::collections::{BTreeMap, BTreeSet};

/// Words that must not appear in a label name (split at `_`): labels like
/// these carry one value per session, user or message, and each value is
/// a time series of its own.
const FORBIDDEN_LABEL_WORDS: &[&str] = &[
    "id",
    "uuid",
    "session",
    "user",
    "username",
    "login",
    "connection",
    "conn",
    "client",
    "peer",
    "addr",
    "address",
    "ip",
    "port",
    "subscription",
    "receipt",
    "message",
    "destination",
    "room",
    "topic",
];

/// Units that are not base units (Prometheus uses seconds and bytes).
const NON_BASE_UNITS: &[&str] = &[
    "ms",
    "millis",
    "milliseconds",
    "us",
    "micros",
    "microseconds",
    "ns",
    "nanos",
    "nanoseconds",
    "minutes",
    "hours",
    "kb",
    "kib",
    "kilobytes",
    "mb",
    "mib",
    "megabytes",
];

/// Words of a metric name that say it measures a time: it must then be in
/// `_seconds`.
const TIME_WORDS: &[&str] = &["latency", "duration", "time", "elapsed", "delay", "uptime", "age"];

/// Words of a metric name that say it measures a size: it must then be in
/// `_bytes`.
const SIZE_WORDS: &[&str] = &["memory", "size"];

/// Fewer distinct values than this per label name (`le` excepted), over
/// the whole exposition.
pub(crate) const MAX_LABEL_VALUES: usize = 20;

/// At most this many buckets per histogram.
pub(crate) const MAX_BUCKETS: usize = 40;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// The sample's name (`foo_bucket` for a histogram bucket).
    pub(crate) name: String,
    /// Its labels, in order.
    pub(crate) labels: Vec<(String, String)>,
    /// Its value.
    pub(crate) value: f64,
}

/// A parsed exposition: the `# TYPE` of each family and every sample.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    /// Family name → type (`counter`, `gauge`, `histogram`, ...).
    pub(crate) types: BTreeMap<String, String>,
    /// The samples, in order.
    pub(crate) samples: Vec<Sample>,
}

impl Exposition {
    /// Parses `text`; panics naming the first malformed line.
    pub(crate) fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("malformed TYPE line in /metrics: {line:?}"));
                out.types.insert(name.to_owned(), kind.trim().to_owned());
            } else if !line.starts_with('#') {
                out.samples.push(
                    parse_sample(line)
                        .unwrap_or_else(|| panic!("malformed sample line in /metrics: {line:?}")),
                );
            }
        }
        out
    }

    /// The family a sample belongs to: its own name if typed, else its name
    /// without `_bucket`, `_sum`, `_count` or `_total`.
    pub(crate) fn family_of<'a>(&'a self, sample: &'a str) -> Option<&'a str> {
        if self.types.contains_key(sample) {
            return Some(sample);
        }
        ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .filter_map(|suffix| sample.strip_suffix(suffix))
            .find(|family| self.types.contains_key(*family))
    }

    /// The type of the family of `sample`.
    pub(crate) fn type_of(&self, sample: &str) -> Option<&str> {
        self.family_of(sample).and_then(|family| self.types.get(family)).map(String::as_str)
    }

    /// Every distinct value of each label name (`le` excepted).
    pub(crate) fn label_values(&self) -> BTreeMap<&str, BTreeSet<&str>> {
        let mut values: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for sample in &self.samples {
            for (name, value) in sample.labels.iter().filter(|(name, _)| name != "le") {
                values.entry(name).or_default().insert(value);
            }
        }
        values
    }
}

/// `name{label="value",...} value [timestamp]`.
fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample { name, labels, value })
}

/// The labels after `{` up to the closing `}` (values may hold `{`, `}`,
/// `,` and escapes), and what follows it.
fn parse_labels(mut rest: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (name, after) = rest.split_once("=\"")?;
        let (value, after) = parse_quoted(after)?;
        labels.push((name.trim().to_owned(), value));
        rest = after;
    }
}

/// A label value up to its closing quote, unescaped, and what follows.
fn parse_quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[at + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
    None
}

/// Every naming rule `exposition` breaks, one line each.
pub(crate) fn naming_violations(exposition: &Exposition) -> Vec<String> {
    let mut out = Vec::new();
    for (family, kind) in &exposition.types {
        out.extend(family_violations(family, kind));
    }
    for sample in &exposition.samples {
        let Some(kind) = exposition.type_of(&sample.name) else {
            out.push(format!("{}: a sample without a # TYPE line", sample.name));
            continue;
        };
        if kind == "counter" && !sample.name.ends_with("_total") {
            out.push(format!("{}: a counter whose name does not end in _total", sample.name));
        }
    }
    out.extend(label_violations(exposition));
    out
}

/// The rules on a family's name.
fn family_violations(family: &str, kind: &str) -> Vec<String> {
    let mut out = Vec::new();
    let base = family.strip_suffix("_total").unwrap_or(family);
    if kind != "counter" && family.ends_with("_total") {
        out.push(format!("{family}: a {kind} whose name ends in _total (only counters may)"));
    }
    let words: Vec<&str> = base.split('_').collect();
    let has = |list: &[&str]| words.iter().any(|word| list.contains(word));
    if let Some(unit) = words.iter().find(|word| NON_BASE_UNITS.contains(word)) {
        out.push(format!("{family}: unit {unit:?} is not a base unit (use _seconds or _bytes)"));
    }
    for (unit, hints) in [("seconds", TIME_WORDS), ("bytes", SIZE_WORDS)] {
        if has(hints) && !words.contains(&unit) {
            out.push(format!("{family}: measures {hints:?}-like things but has no _{unit} unit"));
        }
        if words.contains(&unit) && words.last() != Some(&unit) {
            out.push(format!("{family}: the unit _{unit} must come last (before _total)"));
        }
    }
    out
}

/// The rules on label names and on the number of their values.
fn label_violations(exposition: &Exposition) -> Vec<String> {
    let mut out = Vec::new();
    for (name, values) in exposition.label_values() {
        if let Some(word) = name.split('_').find(|word| FORBIDDEN_LABEL_WORDS.contains(word)) {
            out.push(format!("label {name:?}: names a per-{word} thing (unbounded series)"));
        }
        if values.len() >= MAX_LABEL_VALUES {
            out.push(format!(
                "label {name:?}: {} values (at most {}): {values:?}",
                values.len(),
                MAX_LABEL_VALUES - 1
            ));
        }
    }
    let mut buckets: BTreeMap<&str, usize> = BTreeMap::new();
    for sample in exposition.samples.iter().filter(|s| s.name.ends_with("_bucket")) {
        *buckets.entry(&sample.name).or_default() += 1;
    }
    let series = |name: &str| {
        let mut sets: BTreeSet<Vec<&(String, String)>> = BTreeSet::new();
        for sample in exposition.samples.iter().filter(|s| s.name == name) {
            sets.insert(sample.labels.iter().filter(|(label, _)| label != "le").collect());
        }
        sets.len().max(1)
    };
    for (name, count) in buckets {
        let per_series = count / series(name);
        if per_series > MAX_BUCKETS {
            out.push(format!("{name}: {per_series} buckets (at most {MAX_BUCKETS})"));
        }
    }
    out
}

/// Every label value that contains one of `needles` (ids, logins, paths
/// of the load: label values must be bounded sets, not copies of input).
pub(crate) fn leaked_values(exposition: &Exposition, needles: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for sample in &exposition.samples {
        for (name, value) in &sample.labels {
            if let Some(needle) = needles.iter().find(|needle| value.contains(**needle)) {
                out.push(format!("{}{{{name}={value:?}}} holds {needle:?}", sample.name));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}
