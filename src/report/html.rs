//! The HTML of `report.html`: one self-contained page (inline CSS and SVG, no scripts,
//! nothing fetched), every value from the run's files HTML-escaped.

use std::fmt::Write;

use serde_json::Value;

use super::read::{ChartRun, Table};
use super::{COMPARE_FILE, Chart, format};

pub const STYLE: &str = "body{font-family:sans-serif;margin:24px auto;max-width:1320px;color:#222}\
h1{margin-bottom:4px}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}\
.status{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:bold}\
.ok{background:#2c9f2c}.failed{background:#d62728}.partial{background:#e8850c}\
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}\
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;white-space:nowrap}th{background:#f3f3f3}\
td.num{text-align:right;font-variant-numeric:tabular-nums}\
svg.chart{max-width:100%;height:auto;display:block;margin:8px 0}\
.grid{display:flex;flex-wrap:wrap;gap:8px}.grid svg.chart{width:640px}\
.verdicts li{font-size:15px;margin:4px 0}.note{color:#666;font-style:italic}\
.scroll{overflow-x:auto}pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:12px}";

/// Everything one page shows.
pub struct Page<'a> {
    pub manifest: &'a Value,
    pub runs: &'a [ChartRun],
    pub timelines: &'a [Chart],
    pub percentiles: &'a [Chart],
    pub notes: &'a [String],
    pub compare: Option<&'a Table>,
    /// (file name, table) in display order.
    pub tables: &'a [(&'static str, Table)],
}

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as a cell: strings bare, nothing as a dash.
fn show(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "–".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// The first of `pointers` that `value` has.
fn pick<'v>(value: &'v Value, pointers: &[&str]) -> Option<&'v Value> {
    pointers
        .iter()
        .find_map(|p| value.pointer(p).filter(|v| !v.is_null()))
}

/// The whole page: header (what ran, how it ended), the A/B verdicts, the timelines,
/// the percentile curves, the tables, and the scenario and manifest folded away.
pub fn page(p: &Page) -> String {
    let m = p.manifest;
    let name = show(pick(m, &["/scenario/name", "/scenario"]));
    let status = show(m.get("status"));
    let mut html = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>fleetsim report: {name}</title><style>{STYLE}</style></head><body>\n\
         <header id=\"summary\"><h1>fleetsim report: {name}</h1>\
         <p><span class=\"status {class}\">{status}</span> {kind}</p>",
        name = escape(&name),
        class = escape(&status),
        status = escape(&status),
        kind = if p.runs.iter().any(|r| !r.variant.is_empty()) {
            "A/B run"
        } else {
            "single run"
        },
    );
    // An A/B manifest has no settings: the description is its runs'.
    let description = pick(m, &["/settings/description"]).or_else(|| {
        p.runs
            .iter()
            .find_map(|r| r.manifest.as_ref()?.pointer("/settings/description"))
    });
    if let Some(description) = description.filter(|d| d.as_str() != Some("")) {
        let _ = write!(
            html,
            "<p class=\"description\">{}</p>",
            escape(&show(Some(description)))
        );
    }
    if let Some(fleet) = fleet_run(m, p.runs) {
        let _ = write!(html, "<p class=\"fleet-run\">{}</p>", escape(&fleet));
    }
    let reasons: Vec<String> = match m.get("reasons") {
        Some(Value::Array(r)) => r.iter().map(|r| show(Some(r))).collect(),
        _ => Vec::new(),
    };
    if !reasons.is_empty() {
        html.push_str("<ul class=\"reasons\">");
        for r in &reasons {
            let _ = write!(html, "<li>{}</li>", escape(r));
        }
        html.push_str("</ul>");
    }
    let _ = write!(
        html,
        "<p>started {} · ended {}",
        escape(&show(m.get("started_at"))),
        escape(&show(m.get("ended_at"))),
    );
    if let Some(secs) = m.get("duration_secs").and_then(Value::as_f64) {
        let _ = write!(html, " · {secs:.1} s");
    }
    html.push_str("</p>");
    html.push_str(&facts(p.runs));
    html.push_str("</header>\n");

    if let Some(compare) = p.compare {
        html.push_str("<section id=\"compare\"><h2>A/B comparison</h2>");
        html.push_str(&verdicts(compare));
        html.push_str("</section>\n");
    }

    html.push_str("<section id=\"timeline\"><h2>Timeline</h2>");
    if p.runs.len() > 1 {
        html.push_str(
            "<p class=\"note\">Each variant's first repeat, on its own clock; \
             colour is the variant, dash the quantity.</p>",
        );
    }
    for note in p.notes {
        let _ = write!(html, "<p class=\"note\">{}</p>", escape(note));
    }
    for chart in p.timelines {
        html.push_str(&chart.svg);
        if let Some(note) = &chart.note {
            let _ = write!(
                html,
                "<p class=\"note\" id=\"note-{}\">{}</p>",
                escape(&chart.name),
                escape(note)
            );
        }
    }
    html.push_str("</section>\n<section id=\"latency\"><h2>Latency percentiles</h2>");
    if p.percentiles.is_empty() {
        html.push_str("<p class=\"note\">No latency histograms (.hgrm) to chart.</p>");
    }
    html.push_str("<div class=\"grid\">");
    for chart in p.percentiles {
        html.push_str(&chart.svg);
    }
    html.push_str("</div></section>\n<section id=\"tables\"><h2>Tables</h2>");
    for (file, t) in p.tables {
        let shown = if *file == COMPARE_FILE {
            compare_table(t, |_| true, true)
        } else {
            table(t, |_| true, "")
        };
        let _ = write!(html, "<h3>{}</h3>{shown}", escape(file));
    }
    html.push_str("</section>\n<section id=\"manifest\"><h2>Scenario and manifest</h2>");
    if let Some(text) = pick(m, &["/scenario/text", "/scenario_text"]) {
        let _ = write!(
            html,
            "<details><summary>scenario</summary><pre>{}</pre></details>",
            escape(&show(Some(text)))
        );
    }
    let pretty = serde_json::to_string_pretty(m).unwrap_or_else(|e| e.to_string());
    let _ = write!(
        html,
        "<details><summary>manifest.json</summary><pre>{}</pre></details></section>\n</body></html>\n",
        escape(&pretty)
    );
    html
}

/// The fleet actually run, beside the description, which is the file's prose and may
/// name another size: `Fleet run: 300 agents (the scenario file's [fleet] sets 1,000;
/// overridden for this run).` `None` when no run's settings are known.
fn fleet_run(m: &Value, runs: &[ChartRun]) -> Option<String> {
    let agents_of = |m: &Value| m.pointer("/settings/fleet/agents").and_then(Value::as_u64);
    let mut sizes: Vec<(&str, u64)> = runs
        .iter()
        .filter_map(|r| Some((r.variant.as_str(), agents_of(r.manifest.as_ref()?)?)))
        .collect();
    if sizes.is_empty() {
        sizes.push(("", agents_of(m)?));
    }
    let ran = if sizes.iter().all(|(_, n)| *n == sizes[0].1) {
        format!("{} agents", format::count(sizes[0].1))
    } else {
        sizes
            .iter()
            .map(|(variant, n)| format!("{variant} {} agents", format::count(*n)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = pick(m, &["/scenario/text", "/scenario_text"]).and_then(Value::as_str);
    let in_file = text
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("fleet")?.get("agents")?.as_integer())
        .and_then(|n| u64::try_from(n).ok());
    Some(match in_file {
        Some(n) if sizes.iter().any(|(_, ran)| *ran != n) => format!(
            "Fleet run: {ran} (the scenario file's [fleet] sets {}; overridden for this run).",
            format::count(n)
        ),
        _ => format!("Fleet run: {ran}."),
    })
}

/// What ran: one column per charted run (the single run, or each variant).
fn facts(runs: &[ChartRun]) -> String {
    const ROWS: [(&str, &[&str]); 7] = [
        ("fleet size", &["/settings/fleet/agents"]),
        ("profile", &["/settings/fleet/profile"]),
        ("splay", &["/settings/fleet/splay"]),
        ("broker", &["/broker/kind"]),
        ("broker version", &["/broker/version"]),
        ("agents ready / failed", &["/fleet/ready"]),
        ("host", &["/host/hostname"]),
    ];
    let mut html = String::from("<table class=\"facts\" id=\"facts\"><tr><th></th>");
    for run in runs {
        let label = if run.variant.is_empty() {
            "run"
        } else {
            &run.variant
        };
        let _ = write!(html, "<th>{}</th>", escape(label));
    }
    html.push_str("</tr>");
    for (label, pointers) in ROWS {
        let _ = write!(html, "<tr><th>{label}</th>");
        for run in runs {
            let cell = match (&run.manifest, label) {
                (None, _) => "–".to_string(),
                (Some(m), "agents ready / failed") => {
                    format!(
                        "{} / {}",
                        show(m.pointer("/fleet/ready")),
                        show(m.pointer("/fleet/failed"))
                    )
                }
                (Some(m), "fleet size") => m
                    .pointer("/settings/fleet/agents")
                    .and_then(Value::as_u64)
                    .map_or_else(
                        || "–".to_string(),
                        |n| format!("{} agents", format::count(n)),
                    ),
                (Some(m), "splay") => format::splay(m.pointer("/settings/fleet/splay")),
                (Some(m), "host") => format!(
                    "{} ({} cores)",
                    show(m.pointer("/host/hostname")),
                    show(m.pointer("/host/cores"))
                ),
                (Some(m), _) => show(pick(m, pointers)),
            };
            let _ = write!(html, "<td>{}</td>", escape(&cell));
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
    html
}

/// The verdicts of `compare.csv` (its non-empty `verdict` cells, which name variant,
/// metric and phase) and the rows of the metrics that have one.
fn verdicts(compare: &Table) -> String {
    let verdict = |row| compare.get(row, "verdict").unwrap_or("").trim();
    let judged: Vec<usize> = (0..compare.rows.len())
        .filter(|&r| !verdict(r).is_empty())
        .collect();
    if judged.is_empty() {
        return "<p class=\"note\">No verdicts in compare.csv.</p>".to_string();
    }
    let mut html = String::from("<ul class=\"verdicts\">");
    for &row in &judged {
        let _ = write!(html, "<li>{}</li>", escape(verdict(row)));
    }
    html.push_str("</ul>");
    let key = |row| (compare.get(row, "phase"), compare.get(row, "metric"));
    let keys: Vec<_> = judged.iter().map(|&r| key(r)).collect();
    html.push_str(&compare_table(
        compare,
        |row| keys.contains(&key(row)),
        false,
    ));
    html.push_str("<p class=\"note\">Every metric: compare.csv under Tables.</p>");
    html
}

/// A CSV as an HTML table (the rows `keep` accepts, without column `skip`), numbers
/// right-aligned (floating-point noise rounded, see [`format::cell`]), scrolling
/// sideways rather than squeezing the page.
pub fn table(t: &Table, keep: impl Fn(usize) -> bool, skip: &str) -> String {
    let shown = |col: &usize| t.headers.get(*col).is_none_or(|h| h != skip);
    let headers: Vec<String> = t.headers.iter().filter(|h| *h != skip).cloned().collect();
    let rows = t
        .rows
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(_, row)| {
            row.iter()
                .enumerate()
                .filter(|(c, _)| shown(c))
                .map(|(_, cell)| Cell::of(format::cell(cell)))
                .collect()
        })
        .collect();
    grid(&headers, rows)
}

/// One cell of [`grid`]: its text (escaped when written) and whether it is a number.
struct Cell {
    text: String,
    num: bool,
}

impl Cell {
    /// A cell that is right-aligned when it reads as a number.
    fn of(text: String) -> Cell {
        let num = text.parse::<f64>().is_ok();
        Cell { text, num }
    }

    /// A right-aligned cell: a value with its unit.
    fn num(text: String) -> Cell {
        Cell { text, num: true }
    }
}

/// Headers and rows as an HTML table in a sideways-scrolling box; "(no rows)" when empty.
fn grid(headers: &[String], rows: Vec<Vec<Cell>>) -> String {
    let mut html = String::from("<div class=\"scroll\"><table><tr>");
    for h in headers {
        let _ = write!(html, "<th>{}</th>", escape(h));
    }
    html.push_str("</tr>");
    let empty = rows.is_empty();
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            let class = if cell.num { " class=\"num\"" } else { "" };
            let _ = write!(html, "<td{class}>{}</td>", escape(&cell.text));
        }
        html.push_str("</tr>");
    }
    html.push_str("</table></div>");
    if empty {
        html.push_str("<p class=\"note\">(no rows)</p>");
    }
    html
}

/// `compare.csv` for reading (the rows `keep` accepts): latencies with their unit, ratios
/// and the 95 % intervals of the differences against the first variant, named in the
/// headers. The file keeps the raw values.
pub fn compare_table(t: &Table, keep: impl Fn(usize) -> bool, with_verdict: bool) -> String {
    let first = t.get(0, "variant").unwrap_or("A");
    let mut headers: Vec<String> = ["phase", "metric", "variant", "runs", "samples"]
        .into_iter()
        .chain(["p50", "p99", "max"])
        .map(String::from)
        .collect();
    headers.extend([
        format!("p50 ÷ {first}"),
        format!("p99 ÷ {first}"),
        format!("p50 − {first} (95% CI)"),
        format!("p99 − {first} (95% CI)"),
    ]);
    if with_verdict {
        headers.push("verdict".to_string());
    }
    let float = |row: usize, col: &str| {
        t.get(row, col)
            .and_then(|c| c.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite())
    };
    let dash = || "–".to_string();
    let text = |row: usize, col: &str| Cell::of(t.get(row, col).unwrap_or("").to_string());
    let rows = (0..t.rows.len())
        .filter(|&r| keep(r))
        .map(|r| {
            let latency = |col| Cell::num(float(r, col).map_or_else(dash, format::ms));
            let ratio = |col| Cell::num(float(r, col).map_or_else(dash, format::ratio));
            let interval = |q: &str| {
                let low = float(r, &format!("{q}_diff_ci_low"));
                let high = float(r, &format!("{q}_diff_ci_high"));
                Cell::num(match (low, high) {
                    (Some(low), Some(high)) => {
                        format!("{} … {}", format::signed_ms(low), format::signed_ms(high))
                    }
                    _ => dash(),
                })
            };
            let mut cells = vec![
                text(r, "phase"),
                text(r, "metric"),
                text(r, "variant"),
                text(r, "runs"),
                Cell::num(float(r, "count").map_or_else(dash, |n| format::count(n as u64))),
                latency("p50"),
                latency("p99"),
                latency("max"),
                ratio("p50_ratio"),
                ratio("p99_ratio"),
                interval("p50"),
                interval("p99"),
            ];
            if with_verdict {
                cells.push(text(r, "verdict"));
            }
            cells
        })
        .collect();
    grid(&headers, rows)
}
