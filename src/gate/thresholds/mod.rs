//! Thresholds: pass/fail checks over a run's results, written in the scenario, evaluated
//! when the run ends (k6-style).
//!
//! ```toml
//! [thresholds]
//! checks = [
//!   "ready.p99 < 5s",
//!   "recovery.p100 < 30s",
//!   "errors.timeout == 0",
//!   "fanout.pc.ratio <= 1",
//! ]
//! tolerance = "10%"                         # fleetsim compare: allowed regression
//! tolerances = { "recovery.p99" = "25%" }   # per metric or metric.stat
//! floor = "5ms"                             # fleetsim compare: ignore smaller values
//! compare = ["ready", "recovery"]           # fleetsim compare: only these metrics
//! ```
//!
//! This module owns the grammar (`grammar`: parsing and checking names against what a
//! scenario can measure), the evaluation against a run directory (`eval`, which reads
//! it through [`crate::results::RunDir`]), and `thresholds.csv`. The scenario reader records a problem with file:line for a bad
//! check; the runner evaluates the plan's checks after the results are written; `main`
//! turns a failing check into exit code 1.

mod eval;
mod grammar;

use std::path::Path;

use serde::{Serialize, Serializer};

use crate::results::rows::ThresholdRow;
use crate::results::{self, ResultsError, write_rows};
pub use eval::{CheckOutcome, evaluate};
pub use grammar::{
    Check, Known, LATENCY_METRICS, Op, Source, Unit, check_latency_metric, parse_check,
    parse_figure, parse_percent, phase_matches,
};

pub use crate::results::{THRESHOLDS_COLUMNS, THRESHOLDS_FILE};

/// A scenario's `[thresholds]`: the checks of a run and the settings of
/// `fleetsim compare` against a baseline.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Thresholds {
    /// Evaluated at the end of every run (every run of every variant in an A/B run).
    #[serde(serialize_with = "check_texts")]
    pub checks: Vec<Check>,
    pub baseline: BaselineSettings,
}

/// How `fleetsim compare` judges a run against a baseline; unset fields take the
/// command line's values or the defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BaselineSettings {
    /// Allowed regression as a fraction (`"10%"` is 0.1).
    pub tolerance: Option<f64>,
    /// Per `metric` or `metric.stat` (`"recovery.p99"`); a trailing `.*` covers a family
    /// (`"consumer_create.*"`).
    pub tolerances: Vec<(String, f64)>,
    /// Values below this (ms) on both sides are not compared.
    pub floor_ms: Option<f64>,
    /// Metrics compared (same patterns as `tolerances` keys); empty: all.
    pub metrics: Vec<String>,
}

fn check_texts<S: Serializer>(checks: &[Check], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(checks.iter().map(|c| c.text.as_str()))
}

/// Does a `tolerances` key or `compare` entry (`recovery`, `recovery.p99`,
/// `consumer_create.*`) cover `metric`'s `stat`?
pub fn pattern_covers(pattern: &str, metric: &str, stat: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix(".*") {
        return metric
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.'));
    }
    pattern == metric
        || pattern.strip_suffix(stat).and_then(|p| p.strip_suffix('.')) == Some(metric)
}

/// The row of `thresholds.csv` for one outcome.
fn row(o: &CheckOutcome) -> ThresholdRow {
    ThresholdRow {
        check: o.check.clone(),
        value: match o.value {
            Some(v) if v.is_finite() => o.unit.cell(v),
            // Never reached (recovery) or not measured: the note says which.
            _ => String::new(),
        },
        limit: o.unit.cell(o.limit),
        unit: o.unit.name().to_string(),
        result: if o.passed { "pass" } else { "fail" }.to_string(),
        phase: o.phase.clone(),
        note: o.note.clone(),
    }
}

/// Writes `thresholds.csv` into `out`.
pub fn write_outcomes<W: std::io::Write>(outcomes: &[CheckOutcome], out: W) -> csv::Result<W> {
    write_rows(out, outcomes.iter().map(row))
}

/// Writes `dir/thresholds.csv`.
pub fn write_file(dir: &Path, outcomes: &[CheckOutcome]) -> Result<(), ResultsError> {
    let rows: Vec<ThresholdRow> = outcomes.iter().map(row).collect();
    results::write_file(dir, &rows)
}

/// The end-of-run lines: a count, then one line per check.
pub fn render(outcomes: &[CheckOutcome]) -> String {
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    let mut out = if failed == 0 {
        format!("thresholds: all {} pass\n", outcomes.len())
    } else {
        format!(
            "thresholds: {failed} of {} FAILED (thresholds.csv)\n",
            outcomes.len()
        )
    };
    for o in outcomes {
        out.push_str(&format!("  {}\n", o.describe()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_csv_columns_are_pinned() {
        let outcomes = vec![
            CheckOutcome {
                check: "ready.p99 < 5s".into(),
                value: Some(491.25),
                limit: 5000.0,
                unit: Unit::Ms,
                passed: true,
                phase: "1:start".into(),
                note: String::new(),
            },
            CheckOutcome {
                check: "recovery.p100 < 30s".into(),
                value: Some(f64::INFINITY),
                limit: 30_000.0,
                unit: Unit::Ms,
                passed: false,
                phase: "4:broker_restart".into(),
                note: "never reached".into(),
            },
            CheckOutcome {
                check: "errors.total == 0".into(),
                value: None,
                limit: 0.0,
                unit: Unit::Count,
                passed: false,
                phase: String::new(),
                note: "not measured: no errors.csv".into(),
            },
        ];
        let text =
            String::from_utf8(write_outcomes(&outcomes, Vec::new()).expect("csv")).expect("utf8");
        assert_eq!(
            text,
            "check,value,limit,unit,result,phase,note\n\
             ready.p99 < 5s,491.250,5000.000,ms,pass,1:start,\n\
             recovery.p100 < 30s,,30000.000,ms,fail,4:broker_restart,never reached\n\
             errors.total == 0,,0,count,fail,,not measured: no errors.csv\n"
        );
        let shown = render(&outcomes);
        assert!(shown.starts_with("thresholds: 2 of 3 FAILED"), "{shown}");
        assert!(
            shown.contains("pass  ready.p99 < 5s: 491.2 ms in 1:start"),
            "{shown}"
        );
        assert!(
            shown.contains("FAIL  errors.total == 0: not measured"),
            "{shown}"
        );
    }

    #[test]
    fn patterns_cover_metrics_stats_and_families() {
        assert!(pattern_covers("recovery", "recovery", "p99"));
        assert!(pattern_covers("recovery.p99", "recovery", "p99"));
        assert!(!pattern_covers("recovery.p99", "recovery", "p50"));
        assert!(pattern_covers("delivery.pc.p50", "delivery.pc", "p50"));
        assert!(pattern_covers(
            "consumer_create.*",
            "consumer_create.jobs",
            "p50"
        ));
        assert!(!pattern_covers(
            "consumer_create.*",
            "consumer_createx",
            "p50"
        ));
        assert!(!pattern_covers("ready", "ready_x", "p50"));
    }
}
