//! The shipped Grafana dashboard (`monitoring/grafana-dashboard.json`):
//! its panels, nested rows included, their queries with Grafana's
//! variables substituted as Grafana would, and the checks that make it
//! importable (ids, layout, data source references).

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

/// What `$__rate_interval` becomes (Grafana: at least four scrape
/// intervals; the test scrapes every second).
pub(crate) const RATE_INTERVAL: &str = "15s";

/// What `$__interval` becomes.
const INTERVAL: &str = "5s";

/// What `$__range` becomes.
const RANGE: &str = "1m";

/// The data source every panel and query must use: the dashboard's
/// `datasource` variable, so that an import asks for nothing and a
/// provisioned copy follows the chosen data source.
const DATASOURCE_UID: &str = "${datasource}";

/// Grafana's grid is 24 columns wide.
const GRID_COLUMNS: u64 = 24;

/// One query of one panel, its variables substituted.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    /// `Row / Panel title (refId)`, for messages.
    pub(crate) what: String,
    /// The PromQL as written in the dashboard.
    pub(crate) raw: String,
    /// The PromQL as Prometheus gets it.
    pub(crate) expr: String,
}

/// A template variable that is a query (`label_values(SELECTOR, LABEL)`).
#[derive(Debug, Clone)]
pub(crate) struct VariableQuery {
    /// The variable's name.
    pub(crate) name: String,
    /// `count by (LABEL) (SELECTOR)`, substituted: what Prometheus
    /// evaluates to list the values.
    pub(crate) expr: String,
    /// The label whose values the variable offers.
    pub(crate) label: String,
    /// The value the dashboard selects by default (`None` for "All").
    pub(crate) default: Option<String>,
}

/// A panel of the dashboard.
#[derive(Debug, Clone)]
pub(crate) struct Panel<'a> {
    /// The title of the row it is in (empty above the first row).
    pub(crate) row: String,
    /// The panel's JSON.
    pub(crate) json: &'a Value,
    /// Inside a collapsed row's `panels`.
    pub(crate) nested: bool,
}

/// The parsed dashboard.
#[derive(Debug)]
pub(crate) struct Dashboard {
    json: Value,
    /// Variable name → the value substituted for it.
    variables: Vec<(String, String)>,
}

impl Dashboard {
    /// Reads and parses `path`; panics naming it.
    pub(crate) fn load(path: &Path) -> Self {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let variables = variables(&json);
        Self { json, variables }
    }

    /// Every panel (the panels of collapsed rows included), in order.
    pub(crate) fn panels(&self) -> Vec<Panel<'_>> {
        let mut out = Vec::new();
        let mut row = String::new();
        for panel in array(&self.json, "panels") {
            if panel["type"] == "row" {
                row = text(panel, "title").to_owned();
                out.push(Panel { row: row.clone(), json: panel, nested: false });
                out.extend(array(panel, "panels").iter().map(|inner| Panel {
                    row: row.clone(),
                    json: inner,
                    nested: true,
                }));
            } else {
                out.push(Panel { row: row.clone(), json: panel, nested: false });
            }
        }
        out
    }

    /// Every query of every panel.
    pub(crate) fn queries(&self) -> Vec<Query> {
        let mut out = Vec::new();
        for Panel { row, json: panel, .. } in self.panels() {
            for target in array(panel, "targets") {
                let raw = text(target, "expr").to_owned();
                let what = format!("{row} / {} ({})", text(panel, "title"), text(target, "refId"));
                out.push(Query { what, expr: self.substitute(&raw), raw });
            }
        }
        out
    }

    /// `expr` with Grafana's built-in interval variables and the
    /// dashboard's template variables replaced, as Grafana sends it.
    pub(crate) fn substitute(&self, expr: &str) -> String {
        let mut out = expr
            .replace("$__rate_interval", RATE_INTERVAL)
            .replace("$__interval", INTERVAL)
            .replace("$__range", RANGE);
        for (name, value) in &self.variables {
            out = out.replace(&format!("${{{name}}}"), value).replace(&format!("${name}"), value);
        }
        out
    }

    /// The query variables, as PromQL listing their values.
    pub(crate) fn variable_queries(&self) -> Vec<VariableQuery> {
        let mut out = Vec::new();
        for variable in array(&self.json["templating"], "list") {
            if variable["type"] != "query" {
                continue;
            }
            let name = text(variable, "name").to_owned();
            let definition = match &variable["query"] {
                Value::String(query) => query.as_str(),
                query => text(query, "query"),
            };
            let (selector, label) = label_values(definition).unwrap_or_else(|| {
                panic!("variable {name}: query {definition:?} is not label_values(SELECTOR, LABEL)")
            });
            let expr = self.substitute(&format!("count by ({label}) ({selector})"));
            let default = current_value(variable).filter(|value| value != "$__all");
            out.push(VariableQuery { name, expr, label: label.to_owned(), default });
        }
        out
    }

    /// Everything that would stop Grafana from importing the dashboard or
    /// make a panel query the wrong thing, one line each.
    pub(crate) fn layout_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let schema = self.json["schemaVersion"].as_u64().unwrap_or(0);
        if !(36..=41).contains(&schema) {
            out.push(format!("schemaVersion {schema}: expected Grafana 10/11's (about 39)"));
        }
        for key in ["uid", "title"] {
            if self.json[key].as_str().is_none_or(str::is_empty) {
                out.push(format!("no {key}"));
            }
        }
        let mut ids = BTreeSet::new();
        let mut cells: Vec<(String, [u64; 4])> = Vec::new();
        for Panel { row, json: panel, nested } in self.panels() {
            let title = format!("{row} / {}", text(panel, "title"));
            if !ids.insert(panel["id"].as_u64().unwrap_or(0)) {
                out.push(format!("{title}: id missing or used twice"));
            }
            let grid = &panel["gridPos"];
            let [x, y, w, h] = ["x", "y", "w", "h"].map(|key| grid[key].as_u64().unwrap_or(0));
            if w == 0 || h == 0 || x + w > GRID_COLUMNS {
                out.push(format!("{title}: gridPos {grid} outside the 24-column grid"));
            }
            // A collapsed row's panels keep the places they have when it is
            // open, so only the visible panels must not overlap.
            if !nested {
                for (other, [ox, oy, ow, oh]) in &cells {
                    if x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h {
                        out.push(format!("{title}: overlaps {other}"));
                    }
                }
                cells.push((title.clone(), [x, y, w, h]));
            }
            if panel["type"] != "row" {
                out.extend(panel_problems(&title, panel));
            }
        }
        out
    }

    /// Variables used in queries that the dashboard does not define, and
    /// `$` left after substitution.
    pub(crate) fn unresolved(&self) -> Vec<String> {
        self.queries()
            .into_iter()
            .filter(|query| query.expr.contains('$'))
            .map(|query| format!("{}: unresolved variable in {:?}", query.what, query.expr))
            .collect()
    }
}

/// The problems of one (non-row) panel: data source, queries, ranges.
fn panel_problems(title: &str, panel: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if panel["datasource"]["uid"] != DATASOURCE_UID {
        out.push(format!("{title}: data source {} is not {DATASOURCE_UID}", panel["datasource"]));
    }
    let targets = array(panel, "targets");
    if targets.is_empty() {
        out.push(format!("{title}: no queries"));
    }
    let mut refs = BTreeSet::new();
    for target in targets {
        let expr = text(target, "expr");
        if !refs.insert(text(target, "refId")) {
            out.push(format!("{title}: refId {:?} used twice", text(target, "refId")));
        }
        if target["datasource"]["uid"] != DATASOURCE_UID {
            out.push(format!("{title}: a query's data source is not {DATASOURCE_UID}"));
        }
        if !expr.contains("instance=~\"$instance\"") {
            out.push(format!("{title}: {expr:?} ignores the Node variable ($instance)"));
        }
        let ranges = expr.split('[').skip(1).map(|rest| rest.split(']').next().unwrap_or(""));
        for range in ranges.filter(|range| *range != "$__rate_interval") {
            out.push(format!("{title}: range [{range}] in {expr:?}: use [$__rate_interval]"));
        }
    }
    out
}

/// The value a variable is substituted with: "All" is its `allValue`
/// (a regex), anything else its current value.
fn variables(json: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = array(&json["templating"], "list")
        .iter()
        .filter(|variable| variable["type"] != "datasource")
        .map(|variable| {
            let name = text(variable, "name").to_owned();
            let value = match current_value(variable) {
                Some(value) if value == "$__all" => {
                    variable["allValue"].as_str().unwrap_or(".*").to_owned()
                }
                Some(value) => value,
                None => panic!("variable {name} has no current value"),
            };
            (name, value)
        })
        .collect();
    // Longer names first, so that `$job` never eats the start of `$jobs`.
    out.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    out
}

/// A variable's current value (the first one of a multi-value variable).
fn current_value(variable: &Value) -> Option<String> {
    match &variable["current"]["value"] {
        Value::String(value) => Some(value.clone()),
        Value::Array(values) => values.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// `label_values(SELECTOR, LABEL)` → (SELECTOR, LABEL).
fn label_values(definition: &str) -> Option<(&str, &str)> {
    let inner = definition.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    Some((selector.trim(), label.trim()))
}

fn array<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value[key].as_array().map_or(&[], Vec::as_slice)
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("")
}
