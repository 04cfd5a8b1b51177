//! `report.html`: a finished run directory as one page a person opens after a run.
//!
//! The CSVs say everything, but a herd is understood from its shape over time: the
//! fleet dropping and coming back, the broker's consumers rebuilt, the API burst. The
//! page shows that next to the latency tails and the tables, self-contained (inline CSS
//! and SVG, no scripts, nothing fetched), so it can be attached to an issue or opened
//! from a CI artifact. Each chart is also written as `charts/<name>.svg`.
//!
//! The header sets the scenario's description (the file's prose, which may name another
//! fleet size) beside the fleet actually run, and says when the file's `[fleet] agents`
//! was overridden. The broker chart draws the profile's long-lived consumers as a dotted
//! level and says under it why the count rises above it after every sync (see
//! `consumers`). Numbers are shown with their units (see
//! `format`); the files keep the raw values.
//!
//! It is built only from the files of the directory (see [`crate::results`]), so it can
//! be (re)generated for any run, old ones included. Every file but `manifest.json` is
//! optional; a file that exists but cannot be read is an error naming it.
//!
//! An A/B directory (one with `runs.csv`, see [`crate::ab`]) is charted from each
//! variant's first repeat (timelines on that run's clock, percentile curves from its
//! `.hgrm` files: percentile tables of several repeats cannot be merged exactly), one
//! line per variant; `compare.csv`, which pools every repeat, and its verdicts come
//! first on the page.

mod charts;
mod consumers;
mod format;
mod html;
mod read;
mod sweep;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::results::{BROKER_FILE, STEPS_FILE, TIMESERIES_FILE};
use charts::{Curve, Line, Marker, Timeline};
pub(crate) use html::escape;
use read::{ChartRun, Table};

pub const REPORT_FILE: &str = "report.html";
pub const CHARTS_DIR: &str = "charts";
/// An A/B directory's comparison (see [`crate::ab_stats`]), shown formatted.
const COMPARE_FILE: &str = "compare.csv";

/// Tables shown, in order, when present.
const TABLES: [&str; 9] = [
    "runs.csv",
    COMPARE_FILE,
    "summary.csv",
    "recovery.csv",
    "writes.csv",
    "errors.csv",
    "thresholds.csv",
    "steps.csv",
    "unrecovered.csv",
];

/// Why the report could not be made, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: not a finished run directory (no manifest.json)", dir.display())]
    NotARun { dir: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("cannot draw {}: {message}", path.display())]
    Chart { path: PathBuf, message: String },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One drawn chart: `name` is its file stem (`charts/<name>.svg`) and, as
/// `chart-<name>`, its SVG element's id in the page.
struct Chart {
    name: String,
    svg: String,
    /// What the chart cannot say by itself, shown under it.
    note: Option<String>,
}

/// Writes the page as the directory's `report.html` and returns its path.
fn write_page(dir: &Path, page: String) -> Result<PathBuf, ReportError> {
    let path = dir.join(REPORT_FILE);
    std::fs::write(&path, page).map_err(|source| ReportError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Writes `charts` into `charts_dir` as `<name>.svg`, first removing every `.svg` there:
/// a chart an earlier report drew and this one does not must not linger.
fn write_charts<'a>(
    charts_dir: &Path,
    charts: impl IntoIterator<Item = &'a Chart>,
) -> Result<(), ReportError> {
    std::fs::create_dir_all(charts_dir).map_err(|source| ReportError::Write {
        path: charts_dir.to_path_buf(),
        source,
    })?;
    for old in read::files_ending(charts_dir, ".svg")? {
        std::fs::remove_file(&old).map_err(|source| ReportError::Write { path: old, source })?;
    }
    for chart in charts {
        let path = charts_dir.join(format!("{}.svg", chart.name));
        std::fs::write(&path, &chart.svg).map_err(|source| ReportError::Write { path, source })?;
    }
    Ok(())
}

/// Writes the report of `dir` ([`write_report`]) and adds its line (`report: <path>`)
/// to the end-of-run `summary`. The page is a view of the files, so one that cannot be
/// drawn loses nothing measured: that is a warning, not a failed run.
pub fn write_report_line(dir: &Path, summary: &mut String) {
    match write_report(dir) {
        Ok(path) => {
            if !summary.is_empty() && !summary.ends_with('\n') {
                summary.push('\n');
            }
            summary.push_str(&format!("report: {}\n", path.display()));
        }
        Err(e) => tracing::warn!(error = %e, "report.html not written"),
    }
}

/// Writes `dir/report.html` and `dir/charts/*.svg` from the files of the run directory
/// `dir` (single or A/B) and returns the report's path.
///
/// A sweep directory (one with `sweep.csv`) gets the sweep's page instead: the sizing
/// table and the broker's costs over fleet size.
pub fn write_report(dir: &Path) -> Result<PathBuf, ReportError> {
    if sweep::is_sweep(dir) {
        return sweep::write(dir);
    }
    let manifest = read::manifest(dir)?.ok_or_else(|| ReportError::NotARun {
        dir: dir.to_path_buf(),
    })?;
    let runs = read::chart_runs(dir)?;
    let charts_dir = dir.join(CHARTS_DIR);
    let (timelines, notes) = timeline_charts(&runs, &charts_dir)?;
    let percentiles = percentile_charts(&runs, &charts_dir)?;

    write_charts(&charts_dir, timelines.iter().chain(&percentiles))?;

    let compare = read::csv(dir, COMPARE_FILE)?;
    let tables = TABLES
        .iter()
        .filter_map(|name| {
            read::csv(dir, name)
                .map(|t| t.map(|t| (*name, t)))
                .transpose()
        })
        .collect::<Result<Vec<(&str, Table)>, _>>()?;
    let page = html::page(&html::Page {
        manifest: &manifest,
        runs: &runs,
        timelines: &timelines,
        percentiles: &percentiles,
        notes: &notes,
        compare: compare.as_ref(),
        tables: &tables,
    });
    write_page(dir, page)
}

/// Draws a chart and gives its SVG element an id and class for the page's CSS (and for
/// tests that look for it).
fn chart(
    name: String,
    charts_dir: &Path,
    draw: impl FnOnce() -> Result<String, String>,
) -> Result<Chart, ReportError> {
    let svg = draw().map_err(|message| ReportError::Chart {
        path: charts_dir.join(format!("{name}.svg")),
        message,
    })?;
    let svg = svg.replacen(
        "<svg ",
        &format!("<svg id=\"chart-{}\" class=\"chart\" ", html::escape(&name)),
        1,
    );
    Ok(Chart {
        name,
        svg,
        note: None,
    })
}

/// A line of a timeline: in a single run coloured by quantity; in an A/B run coloured
/// by variant and dashed by quantity.
fn line(
    run: (usize, &str),
    quantity: (usize, &str),
    right: bool,
    segments: Vec<Vec<(f64, f64)>>,
) -> Line {
    let (variant_index, variant) = run;
    let (index, name) = quantity;
    let single = variant.is_empty();
    Line {
        label: if single {
            name.to_string()
        } else {
            format!("{variant} · {name}")
        },
        color: if single { index } else { variant_index },
        dash: if single { 0 } else { index },
        right,
        underlay: single && index == 0,
        segments,
    }
}

/// Step boundaries of a run: `steps.csv`, else the `begin` markers of `timeseries.csv`.
fn markers(
    run: &ChartRun,
    timeseries: Option<&Table>,
    color: Option<usize>,
    labelled: bool,
) -> Result<Vec<Marker>, ReportError> {
    let steps = read::csv(&run.dir, STEPS_FILE)?;
    let (table, column, every_row) = match (&steps, timeseries) {
        (Some(steps), _) => (steps, "began_secs", true),
        (None, Some(timeseries)) => (timeseries, "t_secs", false),
        (None, None) => return Ok(Vec::new()),
    };
    let begins = |i| {
        every_row
            || (table.get(i, "step_marker") == Some("begin") && table.get(i, "step") != Some("end"))
    };
    let times = table.floats(column)?;
    Ok(times
        .iter()
        .enumerate()
        .filter(|&(i, _)| begins(i))
        .filter_map(|(i, t)| {
            Some(Marker {
                t: (*t)?,
                label: labelled.then(|| table.get(i, "step").unwrap_or("").to_string()),
                color,
            })
        })
        .collect())
}

/// A timeline chart: which file, and which columns as lines (summed when several;
/// `true` puts the line on the right axis).
struct Spec {
    name: &'static str,
    file: &'static str,
    title: &'static str,
    axes: (&'static str, Option<&'static str>),
    lines: &'static [(&'static str, &'static [&'static str], bool)],
}

const API_KINDS: [&str; 4] = [
    "api_consumer_create",
    "api_consumer_delete",
    "api_stream_info",
    "api_other",
];

const TIMELINES: [Spec; 5] = [
    Spec {
        name: "fleet",
        file: TIMESERIES_FILE,
        title: "Agents by state",
        axes: ("agents", None),
        lines: &[
            ("connected", &["connected"], false),
            ("ready", &["ready"], false),
            ("recovering", &["recovering"], false),
            ("failed", &["failed"], false),
        ],
    },
    Spec {
        name: "broker",
        file: BROKER_FILE,
        title: "Broker (monitoring endpoints)",
        axes: ("consumers", Some("API requests in flight")),
        lines: &[
            ("consumers", &["consumers"], false),
            ("API in flight", &["api_inflight"], true),
        ],
    },
    Spec {
        name: "overlap",
        file: BROKER_FILE,
        title: "Held by the broker, not by an agent (after a silent cut: until the server's pings find them dead)",
        axes: ("count", None),
        lines: &[
            ("stale connections", &["stale_connections"], false),
            ("double-held consumers", &["double_held_consumers"], false),
        ],
    },
    Spec {
        name: "bandwidth",
        file: BROKER_FILE,
        title: "Broker bandwidth (/varz message bytes)",
        axes: ("bytes per second", None),
        lines: &[
            ("in", &["in_bytes_per_sec"], false),
            ("out", &["out_bytes_per_sec"], false),
        ],
    },
    Spec {
        name: "api",
        file: TIMESERIES_FILE,
        title: "JetStream API requests (from advisories)",
        axes: ("requests per 100 ms", Some("API limit reached per 100 ms")),
        lines: &[
            ("all API requests", &API_KINDS, false),
            ("consumer creates", &["api_consumer_create"], false),
            ("limit reached", &["api_limit_reached"], true),
        ],
    },
];

/// The timelines of [`TIMELINES`]; one without data is left out and said so in a note.
fn timeline_charts(
    runs: &[ChartRun],
    charts_dir: &Path,
) -> Result<(Vec<Chart>, Vec<String>), ReportError> {
    let (mut charts, mut notes) = (Vec::new(), Vec::new());
    for spec in &TIMELINES {
        let mut levels = Vec::new();
        let mut timeline = Timeline {
            title: spec.title.to_string(),
            y_left: spec.axes.0.to_string(),
            y_right: spec.axes.1.map(String::from),
            lines: Vec::new(),
            markers: Vec::new(),
            gaps: Vec::new(),
        };
        for (v, run) in runs.iter().enumerate() {
            let table = read::csv(&run.dir, spec.file)?;
            let color = (!run.variant.is_empty()).then_some(v);
            let timeseries = read::csv(&run.dir, TIMESERIES_FILE)?;
            timeline
                .markers
                .extend(markers(run, timeseries.as_ref(), color, v == 0)?);
            let Some(table) = table else { continue };
            for (k, (label, columns, right)) in spec.lines.iter().enumerate() {
                let segments = table.segments(columns)?;
                timeline
                    .lines
                    .push(line((v, &run.variant), (k, label), *right, segments));
            }
            timeline.gaps.extend(table.gaps()?);
            if spec.name == "broker" {
                levels.extend(consumers::level(v, run, &timeline.lines));
            }
        }
        if timeline.lines.iter().all(|l| l.segments.is_empty()) {
            notes.push(format!(
                "{}: no data ({} missing or empty, or without these columns: an older run).",
                spec.title, spec.file
            ));
            continue;
        }
        let note = consumers::note(&levels);
        timeline
            .lines
            .extend(levels.drain(..).map(|(line, _)| line));
        let mut drawn = chart(spec.name.to_string(), charts_dir, || {
            charts::timeline(&timeline)
        })?;
        drawn.note = note;
        charts.push(drawn);
    }
    Ok((charts, notes))
}

/// Metrics drawn as percentile curves; the others are in the summary table.
fn charted(metric: &str) -> bool {
    matches!(
        metric,
        "ready" | "recovery" | "resync" | "reconnect" | "connect" | "sync"
    ) || metric.starts_with("delivery.")
        || metric.starts_with("write_ack.")
}

/// A name safe as a file stem and an element id.
fn slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One chart per (phase, metric) with `.hgrm` files, one curve per charted run.
fn percentile_charts(runs: &[ChartRun], charts_dir: &Path) -> Result<Vec<Chart>, ReportError> {
    let mut by_key: BTreeMap<(usize, String), (String, Vec<Curve>)> = BTreeMap::new();
    for (v, run) in runs.iter().enumerate() {
        for file in read::hgrm_files(&run.dir)? {
            if !charted(&file.metric) {
                continue;
            }
            let rows = read::hgrm(&file.path)?;
            if rows.is_empty() {
                continue;
            }
            let phase = run
                .manifest
                .as_ref()
                .and_then(|m| m.pointer(&format!("/phases/{}", file.phase)))
                .and_then(|p| p.as_str())
                .map_or_else(|| file.phase.to_string(), String::from);
            let label = if run.variant.is_empty() {
                file.metric.clone()
            } else {
                run.variant.clone()
            };
            by_key
                .entry((file.phase, file.metric.clone()))
                .or_insert_with(|| (phase, Vec::new()))
                .1
                .push(Curve {
                    label,
                    color: v,
                    rows,
                });
        }
    }
    by_key
        .into_iter()
        .map(|((index, metric), (phase, curves))| {
            let title = format!("{metric} in {phase} (ms)");
            chart(
                slug(&format!("latency-{index}-{metric}")),
                charts_dir,
                || charts::percentiles(&title, &curves),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
