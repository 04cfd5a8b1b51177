//! `fleetsim compare RUN --baseline DIR`: a run against a committed baseline run, metric
//! by metric, failing on a regression beyond a tolerance.
//!
//! # What is compared
//!
//! The p50 and p99 of every (phase, metric) latency, as `now / baseline` ratios: higher
//! is worse. A ratio above `1 + tolerance` is a regression and fails the comparison;
//! below `1 / (1 + tolerance)` it is an improvement (reported, never a failure).
//!
//! # Robust to a noisy machine
//!
//! - Ratios, not differences, so one tolerance fits 5 ms gets and 9 s herds alike.
//! - A floor (default 5 ms): a figure below it on both sides is not compared; a 2 ms get
//!   doubling is scheduling noise, not a regression.
//! - Repeats: an A/B or `repeat = N` directory is compared through its `compare.csv`,
//!   whose p50/p99 pool every repeat's samples of a variant, so a gate can rest on
//!   hundreds of samples from several runs rather than one run. A merged `summary.csv`
//!   with `variant,repeat` columns is reduced to the median over repeats of each figure.
//! - Tolerances per metric from the scenario's `[thresholds]` (`tolerances`, `compare`)
//!   for the metrics that are known to swing.
//!
//! # Exact counts
//!
//! Beside the latencies, the exact figures of both sides' `counts.csv` (consumers and
//! JetStream API requests per agent, reconnects, deliveries per write: see
//! `results::counts`) are compared with zero tolerance, whatever the latency
//! tolerances: they do not depend on timing, so any difference is a change in what the
//! agents do. A count that went up is a regression; one that went down is a change, and
//! fails too (a lost delivery or a consumer that is no longer made is as much a change
//! as an extra one): record the baseline again when the change is intended. Figures
//! marked not exact (broker traffic, short-lived consumers) are not compared.
//!
//! A metric only one side has is listed (`missing`, `new`) but does not fail: a run that
//! lost a metric it should have is the thresholds' business (they fail "not measured").
//! Runs of different fleet sizes are refused outright (the manifests say).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::junit;
use super::thresholds::{BaselineSettings, pattern_covers};
use crate::ab_stats::CompareRow;
use crate::results::read::{AnyManifest, read_csv, read_merged};
use crate::results::rows::{CountRow, Merged, SummaryRow};
use crate::results::{COMPARE_FILE, COUNTS_FILE, ReadError, RunDir, SUMMARY_FILE, text_table};

pub const DEFAULT_TOLERANCE: f64 = 0.10;
pub const DEFAULT_FLOOR_MS: f64 = 5.0;
/// The stats compared per (phase, metric).
pub const STATS: [&str; 2] = ["p50", "p99"];

/// The figures of one side: a run directory, or a summary.csv/compare.csv file.
#[derive(Debug, Clone)]
pub struct Figures {
    /// The file the figures were read from.
    pub source: PathBuf,
    /// `summary.csv`, `summary.csv (median of N repeats)` or `compare.csv (pooled)`.
    pub kind: String,
    pub rows: Vec<FigureRow>,
    /// `fleet.agents` from the manifest next to the file, when there is one.
    pub agents: Option<u64>,
    /// The scenario text kept in that manifest.
    pub scenario_text: Option<String>,
    /// `counts.csv` next to the file, as (variant, row), an A/B directory's repeats
    /// reduced to one row each (see [`reduce_repeats`]); `None` when there is none (a
    /// run by a fleetsim before counts).
    pub counts: Option<Vec<(String, CountRow)>>,
}

/// p50 and p99 (ms) of one (variant, phase, metric); variant is empty for a single run.
#[derive(Debug, Clone, PartialEq)]
pub struct FigureRow {
    pub variant: String,
    pub phase: String,
    pub metric: String,
    pub p50: f64,
    pub p99: f64,
}

impl FigureRow {
    fn stat(&self, stat: &str) -> f64 {
        if stat == "p50" { self.p50 } else { self.p99 }
    }
}

/// Why a side cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("{}: no such file or directory", path.display())]
    NotFound { path: PathBuf },
    #[error("{}: no summary.csv or compare.csv: not a fleetsim run directory", path.display())]
    NotARunDir { path: PathBuf },
    /// A file of the run directory (summary.csv, compare.csv or the manifest) that does
    /// not read as this fleetsim writes it.
    #[error(
        "unreadable run directory: {0} (a summary.csv or compare.csv needs phase, metric, p50 and p99 columns; a baseline recorded by an older fleetsim: record it again with scripts/ci-gate.sh --update-baseline)"
    )]
    Unreadable(#[from] ReadError),
    #[error(
        "not comparable: the run has {run} agents, the baseline {baseline} ({}); compare runs of the same scenario and fleet size",
        source_file.display()
    )]
    DifferentFleets {
        run: u64,
        baseline: u64,
        source_file: PathBuf,
    },
}

/// Reads one side. `path` is a run directory (its `compare.csv` if it has one, else its
/// `summary.csv`) or one of those files; the manifest next to it, if any, gives the
/// fleet size and the scenario.
pub fn load(path: &Path) -> Result<Figures, BaselineError> {
    let (dir, file) = if path.is_dir() {
        let dir = RunDir::new(path);
        let file = if dir.has(COMPARE_FILE) {
            COMPARE_FILE
        } else if dir.has(SUMMARY_FILE) {
            SUMMARY_FILE
        } else {
            return Err(BaselineError::NotARunDir {
                path: path.to_path_buf(),
            });
        };
        let file = dir.path(file);
        (dir, file)
    } else if path.is_file() {
        let parent = path.parent().unwrap_or(Path::new("."));
        (RunDir::new(parent), path.to_path_buf())
    } else {
        return Err(BaselineError::NotFound {
            path: path.to_path_buf(),
        });
    };
    let (kind, rows) = read_figures(&file)?;
    let manifest = dir.any_manifest()?;
    let counts = if dir.has(COUNTS_FILE) {
        Some(reduce_repeats(read_merged::<CountRow>(
            &dir.path(COUNTS_FILE),
        )?))
    } else {
        None
    };
    Ok(Figures {
        source: file,
        kind,
        rows,
        agents: manifest.as_ref().and_then(AnyManifest::agents),
        scenario_text: manifest.map(|m| m.scenario_text().to_string()),
        counts,
    })
}

/// The figures of a `compare.csv` (pooled over repeats: one row per variant) or of a
/// `summary.csv`, single or merged from an A/B run's repeats (the median of each figure
/// over the repeats).
fn read_figures(path: &Path) -> Result<(String, Vec<FigureRow>), ReadError> {
    let pooled = path.file_name().and_then(|n| n.to_str()) == Some(COMPARE_FILE);
    if pooled {
        let rows: Vec<CompareRow> = read_csv(path)?;
        let rows = rows
            .into_iter()
            .map(|r| FigureRow {
                variant: r.variant,
                phase: r.phase,
                metric: r.metric,
                p50: r.p50,
                p99: r.p99,
            })
            .collect();
        return Ok(("compare.csv (pooled over repeats)".to_string(), rows));
    }
    let mut samples: BTreeMap<(String, String, String), Vec<(f64, f64)>> = BTreeMap::new();
    let mut order: Vec<(String, String, String)> = Vec::new();
    for merged in read_merged::<SummaryRow>(path)? {
        let r = merged.row;
        let key = (merged.variant.unwrap_or_default(), r.phase, r.metric);
        if !samples.contains_key(&key) {
            order.push(key.clone());
        }
        samples.entry(key).or_default().push((r.p50.0, r.p99.0));
    }
    let repeats = samples.values().map(Vec::len).max().unwrap_or(1);
    let rows = order
        .into_iter()
        .map(|key| {
            let values = &samples[&key];
            let (variant, phase, metric) = key;
            FigureRow {
                variant,
                phase,
                metric,
                p50: median(values.iter().map(|v| v.0).collect()),
                p99: median(values.iter().map(|v| v.1).collect()),
            }
        })
        .collect();
    let kind = if repeats > 1 {
        format!("summary.csv (median of {repeats} repeats)")
    } else {
        "summary.csv".to_string()
    };
    Ok((kind, rows))
}

/// One row per (variant, phase, figure): the repeats of an A/B or `repeat = N` run
/// agree on an exact count, and one that does not is marked not exact (it depends on
/// something other than what the agents do, and is not compared).
pub fn reduce_repeats(rows: Vec<Merged<CountRow>>) -> Vec<(String, CountRow)> {
    let mut out: Vec<(String, CountRow)> = Vec::new();
    for merged in rows {
        let variant = merged.variant.unwrap_or_default();
        let row = merged.row;
        match out
            .iter_mut()
            .find(|(v, r)| *v == variant && r.phase == row.phase && r.figure == row.figure)
        {
            Some((_, kept)) => kept.exact &= kept.value == row.value && row.exact,
            None => out.push((variant, row)),
        }
    }
    out
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// How the comparison judges: the tolerance (default and per metric), the floor, and
/// which metrics count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub tolerance: f64,
    pub tolerances: Vec<(String, f64)>,
    pub floor_ms: f64,
    /// Patterns of the metrics compared; empty: all.
    pub metrics: Vec<String>,
}

impl Settings {
    /// The command line's tolerance and floor win over the scenario's; the scenario's
    /// per-metric tolerances apply either way.
    pub fn resolve(
        scenario: Option<&BaselineSettings>,
        tolerance: Option<f64>,
        floor_ms: Option<f64>,
    ) -> Settings {
        let default = BaselineSettings::default();
        let s = scenario.unwrap_or(&default);
        Settings {
            tolerance: tolerance.or(s.tolerance).unwrap_or(DEFAULT_TOLERANCE),
            tolerances: s.tolerances.clone(),
            floor_ms: floor_ms.or(s.floor_ms).unwrap_or(DEFAULT_FLOOR_MS),
            metrics: s.metrics.clone(),
        }
    }

    /// The most specific tolerance: `metric.stat`, then `metric`, then `family.*`.
    pub fn tolerance_for(&self, metric: &str, stat: &str) -> f64 {
        let rank = |pattern: &str| {
            if pattern.ends_with(".*") {
                1
            } else if pattern == metric {
                2
            } else {
                3
            }
        };
        self.tolerances
            .iter()
            .filter(|(p, _)| pattern_covers(p, metric, stat))
            .max_by_key(|(p, _)| rank(p))
            .map_or(self.tolerance, |(_, t)| *t)
    }

    fn compares(&self, metric: &str) -> bool {
        self.metrics.is_empty()
            || self
                .metrics
                .iter()
                .any(|p| STATS.iter().any(|s| pattern_covers(p, metric, s)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Within the tolerance.
    Ok,
    Improved,
    /// Beyond the tolerance: the comparison fails.
    Regressed,
    /// Both sides below the floor: not compared.
    BelowFloor,
    /// In the baseline, not in the run.
    Missing,
    /// In the run, not in the baseline.
    New,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Improved => "improved",
            Verdict::Regressed => "REGRESSED",
            Verdict::BelowFloor => "below floor",
            Verdict::Missing => "missing",
            Verdict::New => "new",
        }
    }
}

/// One compared figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Compared {
    pub variant: String,
    pub phase: String,
    pub metric: String,
    pub stat: &'static str,
    /// ms
    pub baseline: Option<f64>,
    pub now: Option<f64>,
    /// now / baseline
    pub ratio: Option<f64>,
    pub tolerance: f64,
    pub verdict: Verdict,
}

impl Compared {
    /// `ready[1:start].p99`, the threshold path of this figure.
    pub fn path(&self) -> String {
        format!("{}[{}].{}", self.metric, self.phase, self.stat)
    }
}

/// What became of one exact count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CountVerdict {
    Same,
    /// Higher than the baseline: fails.
    Regressed,
    /// Lower than the baseline: fails too (record the baseline again if intended).
    Lower,
    /// In the baseline, not in the run (not compared).
    Missing,
    /// In the run, not in the baseline (not compared).
    New,
}

impl CountVerdict {
    pub fn name(self) -> &'static str {
        match self {
            CountVerdict::Same => "same",
            CountVerdict::Regressed => "REGRESSED",
            CountVerdict::Lower => "CHANGED (lower)",
            CountVerdict::Missing => "missing",
            CountVerdict::New => "new",
        }
    }

    /// Whether it fails the comparison.
    pub fn fails(self) -> bool {
        matches!(self, CountVerdict::Regressed | CountVerdict::Lower)
    }
}

/// One exact count of `counts.csv` on both sides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CountCompared {
    /// Empty unless a side has several variants.
    pub variant: String,
    pub phase: String,
    pub figure: String,
    pub unit: String,
    pub baseline: Option<f64>,
    pub now: Option<f64>,
    pub verdict: CountVerdict,
}

impl CountCompared {
    /// `count[3:broker_restart].api.consumer_create_per_agent`, its threshold path.
    pub fn path(&self) -> String {
        format!("count[{}].{}", self.phase, self.figure)
    }
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub run: String,
    pub baseline: String,
    pub settings: Settings,
    pub rows: Vec<Compared>,
    /// The exact counts, compared with zero tolerance.
    pub counts: Vec<CountCompared>,
    /// Why the counts were not compared (a side without `counts.csv`); `None` when
    /// they were.
    pub counts_skipped: Option<String>,
}

impl Comparison {
    /// Figures that fail the comparison: latencies beyond their tolerance and exact
    /// counts that changed.
    pub fn regressed(&self) -> usize {
        self.count(Verdict::Regressed) + self.counts_changed()
    }

    /// Exact counts that differ from the baseline.
    pub fn counts_changed(&self) -> usize {
        self.counts.iter().filter(|c| c.verdict.fails()).count()
    }

    fn count(&self, verdict: Verdict) -> usize {
        self.rows.iter().filter(|r| r.verdict == verdict).count()
    }
}

/// Refuses figures that cannot be compared: different fleet sizes.
pub fn comparable(run: &Figures, baseline: &Figures) -> Result<(), BaselineError> {
    match (run.agents, baseline.agents) {
        (Some(a), Some(b)) if a != b => Err(BaselineError::DifferentFleets {
            run: a,
            baseline: b,
            source_file: baseline.source.clone(),
        }),
        _ => Ok(()),
    }
}

/// Compares `run` with `baseline`, figure by figure.
pub fn compare(run: &Figures, baseline: &Figures, settings: &Settings) -> Comparison {
    // One variant on each side (a single run, or `repeat` without variants): match them
    // whatever their names; otherwise match by name.
    let distinct = |f: &Figures| {
        let mut v: Vec<&str> = f.rows.iter().map(|r| r.variant.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v.len()
    };
    let single = distinct(run) <= 1 && distinct(baseline) <= 1;
    let key = |r: &FigureRow| {
        (
            if single {
                String::new()
            } else {
                r.variant.clone()
            },
            r.phase.clone(),
            r.metric.clone(),
        )
    };
    let now: BTreeMap<_, &FigureRow> = run.rows.iter().map(|r| (key(r), r)).collect();
    let before: BTreeMap<_, &FigureRow> = baseline.rows.iter().map(|r| (key(r), r)).collect();
    let mut rows = Vec::new();
    let mut push = |b: Option<&FigureRow>, n: Option<&FigureRow>| {
        let any = n.or(b).expect("one side");
        if !settings.compares(&any.metric) {
            return;
        }
        for stat in STATS {
            let baseline = b.map(|r| r.stat(stat));
            let current = n.map(|r| r.stat(stat));
            let tolerance = settings.tolerance_for(&any.metric, stat);
            let (ratio, verdict) = match (baseline, current) {
                (Some(_), None) => (None, Verdict::Missing),
                (None, _) => (None, Verdict::New),
                (Some(b), Some(c)) if b < settings.floor_ms && c < settings.floor_ms => {
                    (ratio(c, b), Verdict::BelowFloor)
                }
                (Some(b), Some(c)) => {
                    // b >= floor > 0 or c >= floor: a zero baseline with a real value now
                    // is an unbounded regression.
                    let r = if b > 0.0 { c / b } else { f64::INFINITY };
                    let verdict = if r > 1.0 + tolerance {
                        Verdict::Regressed
                    } else if r < 1.0 / (1.0 + tolerance) {
                        Verdict::Improved
                    } else {
                        Verdict::Ok
                    };
                    (Some(r), verdict)
                }
            };
            rows.push(Compared {
                variant: if single {
                    n.map_or_else(|| any.variant.clone(), |r| r.variant.clone())
                } else {
                    any.variant.clone()
                },
                phase: any.phase.clone(),
                metric: any.metric.clone(),
                stat,
                baseline,
                now: current,
                ratio,
                tolerance,
                verdict,
            });
        }
    };
    for r in &baseline.rows {
        push(Some(r), now.get(&key(r)).copied());
    }
    for r in &run.rows {
        if !before.contains_key(&key(r)) {
            push(None, Some(r));
        }
    }
    let no_counts = |side: &Path| {
        let dir = side.parent().unwrap_or(Path::new("."));
        Some(format!("no {COUNTS_FILE} in {}", dir.display()))
    };
    let (counts, counts_skipped) = match (&run.counts, &baseline.counts) {
        (Some(now), Some(before)) => (compare_counts(now, before), None),
        (None, _) => (Vec::new(), no_counts(&run.source)),
        (_, None) => (Vec::new(), no_counts(&baseline.source)),
    };
    Comparison {
        run: run.source.display().to_string(),
        baseline: baseline.source.display().to_string(),
        settings: settings.clone(),
        rows,
        counts,
        counts_skipped,
    }
}

/// The exact counts of both sides, in the baseline's order then the run's new ones,
/// matched by variant only when a side has several (as the latencies are). An
/// `api.<kind>` count one side has no row for is 0 there when that side recorded the
/// phase's API requests (the audit only lists the kinds that occurred): a kind of
/// request the agents did not make before is a change.
pub fn compare_counts(
    now: &[(String, CountRow)],
    before: &[(String, CountRow)],
) -> Vec<CountCompared> {
    type Key = (String, String, String);
    let distinct = |rows: &[(String, CountRow)]| {
        let mut v: Vec<&str> = rows.iter().map(|(v, _)| v.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v.len()
    };
    let single = distinct(now) <= 1 && distinct(before) <= 1;
    let key = |(v, r): &(String, CountRow)| -> Key {
        (
            if single { String::new() } else { v.clone() },
            r.phase.clone(),
            r.figure.clone(),
        )
    };
    let exact = |rows: &[(String, CountRow)]| -> BTreeMap<Key, f64> {
        rows.iter()
            .filter(|(_, r)| r.exact)
            .map(|vr| (key(vr), vr.1.value))
            .collect()
    };
    let (n, b) = (exact(now), exact(before));
    let value = |side: &BTreeMap<Key, f64>, k: &Key| {
        side.get(k).copied().or_else(|| {
            let total = (k.0.clone(), k.1.clone(), "api.total_per_agent".to_string());
            (k.2.starts_with("api.") && side.contains_key(&total)).then_some(0.0)
        })
    };
    let unit = |k: &Key| {
        now.iter()
            .chain(before)
            .find(|vr| key(vr) == *k)
            .map_or_else(String::new, |(_, r)| r.unit.clone())
    };
    let mut keys: Vec<Key> = before.iter().filter(|(_, r)| r.exact).map(key).collect();
    keys.extend(
        now.iter()
            .filter(|vr| vr.1.exact && !b.contains_key(&key(vr)))
            .map(key),
    );
    keys.into_iter()
        .map(|k| {
            let (bv, nv) = (value(&b, &k), value(&n, &k));
            let verdict = match (bv, nv) {
                (Some(_), None) => CountVerdict::Missing,
                (None, _) => CountVerdict::New,
                (Some(b), Some(n)) if n > b => CountVerdict::Regressed,
                (Some(b), Some(n)) if n < b => CountVerdict::Lower,
                _ => CountVerdict::Same,
            };
            CountCompared {
                unit: unit(&k),
                variant: k.0,
                phase: k.1,
                figure: k.2,
                baseline: bv,
                now: nv,
                verdict,
            }
        })
        .collect()
}

fn ratio(now: f64, baseline: f64) -> Option<f64> {
    (baseline > 0.0).then(|| now / baseline)
}

fn ms(value: Option<f64>) -> String {
    match value {
        Some(v) if v >= 1000.0 => format!("{:.2} s", v / 1000.0),
        Some(v) => format!("{v:.1} ms"),
        None => "-".to_string(),
    }
}

/// The table printed: what moved (regressed, improved, missing, new), or every row with
/// `all`, then one line of counts.
pub fn render(c: &Comparison, all: bool) -> String {
    let header = [
        "metric",
        "phase",
        "stat",
        "baseline",
        "now",
        "ratio",
        "tolerance",
        "verdict",
    ];
    let with_variant = c.rows.iter().any(|r| !r.variant.is_empty());
    let rows: Vec<[String; 8]> = c
        .rows
        .iter()
        .filter(|r| all || !matches!(r.verdict, Verdict::Ok | Verdict::BelowFloor))
        .map(|r| {
            [
                if with_variant {
                    format!("{} ({})", r.metric, r.variant)
                } else {
                    r.metric.clone()
                },
                r.phase.clone(),
                r.stat.to_string(),
                ms(r.baseline),
                ms(r.now),
                r.ratio
                    .map_or_else(|| "-".to_string(), |x| format!("{x:.2}x")),
                format!("+{:.0}%", r.tolerance * 100.0),
                r.verdict.name().to_string(),
            ]
        })
        .collect();
    let mut out = format!("compare {} with baseline {}\n", c.run, c.baseline);
    if rows.is_empty() {
        out.push_str("nothing moved beyond its tolerance\n");
    } else {
        out.push_str(&text_table(header, &rows, |i| (3..7).contains(&i)));
    }
    out.push_str(&render_counts(c, all));
    out.push_str(&format!(
        "{}: {} regressed, {} exact counts changed, {} improved, {} within tolerance, {} below the {:.0} ms floor, {} missing, {} new\n",
        if c.regressed() > 0 { "FAIL" } else { "pass" },
        c.count(Verdict::Regressed),
        c.counts_changed(),
        c.count(Verdict::Improved),
        c.count(Verdict::Ok),
        c.count(Verdict::BelowFloor),
        c.settings.floor_ms,
        c.count(Verdict::Missing),
        c.count(Verdict::New),
    ));
    out
}

fn count_cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v}"))
}

/// The exact counts that changed (every one with `all`), then one line.
fn render_counts(c: &Comparison, all: bool) -> String {
    if let Some(why) = &c.counts_skipped {
        return format!("exact counts not compared: {why}\n");
    }
    let rows: Vec<[String; 6]> = c
        .counts
        .iter()
        .filter(|r| all || r.verdict != CountVerdict::Same)
        .map(|r| {
            let change = match (r.baseline, r.now) {
                (Some(b), Some(n)) if n != b => format!("{:+}", round6(n - b)),
                _ => String::new(),
            };
            [
                if r.variant.is_empty() {
                    r.figure.clone()
                } else {
                    format!("{} ({})", r.figure, r.variant)
                },
                r.phase.clone(),
                count_cell(r.baseline),
                count_cell(r.now),
                change,
                r.verdict.name().to_string(),
            ]
        })
        .collect();
    let same = c
        .counts
        .iter()
        .filter(|r| r.verdict == CountVerdict::Same)
        .count();
    let mut out = String::new();
    if !rows.is_empty() {
        out.push_str(&text_table(
            ["count", "phase", "baseline", "now", "change", "verdict"],
            &rows,
            |i| (2..5).contains(&i),
        ));
    }
    out.push_str(&format!(
        "exact counts (zero tolerance): {} same, {} changed\n",
        same,
        c.counts_changed()
    ));
    out
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// One JUnit case per compared figure: regressions fail, figures not compared (floor,
/// missing, new) are skipped.
pub fn junit_suite(c: &Comparison) -> junit::Suite {
    let cases = c
        .rows
        .iter()
        .map(|r| {
            let what = format!(
                "{}: {} now, baseline {} ({}, tolerance +{:.0}%)",
                r.path(),
                ms(r.now),
                ms(r.baseline),
                r.ratio
                    .map_or_else(|| "-".to_string(), |x| format!("{x:.2}x")),
                r.tolerance * 100.0
            );
            let status = match r.verdict {
                Verdict::Ok | Verdict::Improved => junit::Status::Passed,
                Verdict::Regressed => junit::Status::Failed {
                    message: format!("regressed: {what}"),
                    details: format!("run {}\nbaseline {}", c.run, c.baseline),
                },
                Verdict::BelowFloor => junit::Status::Skipped {
                    message: format!("below the {:.0} ms floor: {what}", c.settings.floor_ms),
                },
                Verdict::Missing => junit::Status::Skipped {
                    message: format!("missing from the run: {what}"),
                },
                Verdict::New => junit::Status::Skipped {
                    message: format!("not in the baseline: {what}"),
                },
            };
            junit::Case {
                name: r.path(),
                classname: if r.variant.is_empty() {
                    "fleetsim.compare".to_string()
                } else {
                    format!("fleetsim.compare.{}", r.variant)
                },
                time: 0.0,
                status,
                output: what,
            }
        })
        .chain(c.counts.iter().map(|r| {
            let what = format!(
                "{}: {} now, baseline {} ({}, exact: zero tolerance)",
                r.path(),
                count_cell(r.now),
                count_cell(r.baseline),
                r.unit
            );
            let status = if r.verdict.fails() {
                junit::Status::Failed {
                    message: format!("{}: {what}", r.verdict.name()),
                    details: format!("run {}\nbaseline {}", c.run, c.baseline),
                }
            } else if r.verdict == CountVerdict::Same {
                junit::Status::Passed
            } else {
                junit::Status::Skipped {
                    message: format!("{}: {what}", r.verdict.name()),
                }
            };
            junit::Case {
                name: r.path(),
                classname: "fleetsim.compare.counts".to_string(),
                time: 0.0,
                status,
                output: what,
            }
        }))
        .collect();
    junit::Suite {
        name: "fleetsim compare".to_string(),
        time: 0.0,
        cases,
    }
}

#[cfg(test)]
mod tests;
