//! The gate: what decides whether a run passes, as CI reads it.
//!
//! - [`thresholds`]: the scenario's `[thresholds]` checks, evaluated against the run
//!   directory (`thresholds.csv`).
//! - [`compare`]: `fleetsim compare RUN --baseline DIR`, a run against a committed
//!   baseline, ratio by ratio.
//! - [`same_runner`]: `fleetsim gate`, a reference and a candidate interleaved on one
//!   runner and judged figure by figure (exact counts equal, measured figures against an
//!   effect size with 95 % confidence).
//! - [`junit`]: JUnit XML of thresholds and comparisons.
//! - this module: the outcome of `fleetsim run` as a CI gate reads it: how the run
//!   ended, every threshold's outcome (per variant and repeat in an A/B run) and the key
//!   latencies, as one [`GateOutcome`] that `main` prints as text or JSON and writes as
//!   JUnit XML.
//!
//! The gate passes when the run's status is `ok` and every threshold passed; that is
//! exit code 0. Anything else that reached results is exit code 1.

pub mod compare;
pub mod junit;
pub mod same_runner;
pub mod thresholds;

use std::path::PathBuf;

use serde::Serialize;

use crate::ab::AbReport;
use crate::ab_stats::is_key_metric;
use crate::results::RunStatus;
use crate::run::RunReport;
use thresholds::CheckOutcome;

/// One run of the gate: the run itself, or one run of an A/B run.
#[derive(Debug, Clone, Serialize)]
pub struct GateRun {
    /// `run`, or the A/B run's `01-off-r1`.
    pub name: String,
    pub variant: Option<String>,
    pub repeat: Option<usize>,
    pub status: String,
    pub reasons: Vec<String>,
}

/// One threshold outcome in one run.
#[derive(Debug, Clone, Serialize)]
pub struct GateThreshold {
    pub variant: Option<String>,
    pub repeat: Option<usize>,
    pub check: String,
    /// `null` when not measured or never reached (see `note`).
    pub value: Option<f64>,
    pub limit: f64,
    pub unit: &'static str,
    pub result: &'static str,
    pub phase: String,
    pub note: String,
    #[serde(skip)]
    outcome: CheckOutcome,
}

/// A key latency (p50/p99 in ms) from the run's summary.csv or the A/B compare.csv.
#[derive(Debug, Clone, Serialize)]
pub struct KeyMetric {
    pub variant: String,
    pub phase: String,
    pub metric: String,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// What `fleetsim run` ended with.
#[derive(Debug, Clone, Serialize)]
pub struct GateOutcome {
    pub scenario: String,
    pub status: RunStatus,
    /// The run is ok and every threshold passed.
    pub passed: bool,
    pub exit_code: u8,
    pub dir: PathBuf,
    pub reasons: Vec<String>,
    pub runs: Vec<GateRun>,
    pub thresholds: Vec<GateThreshold>,
    pub metrics: Vec<KeyMetric>,
    /// The end-of-run text.
    #[serde(skip)]
    pub summary: String,
}

fn threshold(variant: Option<&str>, repeat: Option<usize>, o: &CheckOutcome) -> GateThreshold {
    GateThreshold {
        variant: variant.map(String::from),
        repeat,
        check: o.check.clone(),
        value: o.value.filter(|v| v.is_finite()),
        limit: o.limit,
        unit: o.unit.name(),
        result: if o.passed { "pass" } else { "fail" },
        phase: o.phase.clone(),
        note: o.note.clone(),
        outcome: o.clone(),
    }
}

impl GateOutcome {
    pub fn from_run(scenario: &str, report: RunReport) -> GateOutcome {
        let thresholds = report
            .thresholds
            .iter()
            .map(|o| threshold(None, None, o))
            .collect();
        let runs = vec![GateRun {
            name: "run".to_string(),
            variant: None,
            repeat: None,
            status: report.status.to_string(),
            reasons: report.reasons.clone(),
        }];
        GateOutcome::new(
            scenario,
            report.status,
            report.dir,
            report.reasons,
            runs,
            thresholds,
            report.summary,
        )
    }

    pub fn from_ab(scenario: &str, report: AbReport) -> GateOutcome {
        let thresholds = report
            .thresholds
            .iter()
            .flat_map(|r| {
                r.outcomes
                    .iter()
                    .map(|o| threshold(Some(&r.variant), Some(r.repeat), o))
            })
            .collect();
        let runs = report
            .runs
            .iter()
            .map(|e| GateRun {
                name: e.dir.rsplit('/').next().unwrap_or(&e.dir).to_string(),
                variant: Some(e.variant.clone()),
                repeat: Some(e.repeat),
                status: e.status.clone(),
                reasons: e
                    .reasons
                    .split("; ")
                    .filter(|r| !r.is_empty())
                    .map(String::from)
                    .collect(),
            })
            .collect();
        GateOutcome::new(
            scenario,
            report.status,
            report.dir,
            report.reasons,
            runs,
            thresholds,
            report.summary,
        )
    }

    fn new(
        scenario: &str,
        status: RunStatus,
        dir: PathBuf,
        reasons: Vec<String>,
        runs: Vec<GateRun>,
        thresholds: Vec<GateThreshold>,
        summary: String,
    ) -> GateOutcome {
        let passed = status == RunStatus::Ok && thresholds.iter().all(|t| t.outcome.passed);
        let metrics = compare::load(&dir)
            .map(|f| {
                f.rows
                    .into_iter()
                    .filter(|r| is_key_metric(&r.metric) || r.metric == "fleet.all_ready")
                    .map(|r| KeyMetric {
                        variant: r.variant,
                        phase: r.phase,
                        metric: r.metric,
                        p50_ms: r.p50,
                        p99_ms: r.p99,
                    })
                    .collect()
            })
            .unwrap_or_else(|e| {
                // The key latencies are a digest of files the gate has already judged;
                // a run that stopped before writing them has none to show.
                tracing::warn!(error = %e, "key latencies not read");
                Vec::new()
            });
        GateOutcome {
            scenario: scenario.to_string(),
            status,
            passed,
            exit_code: if passed { 0 } else { 1 },
            dir,
            reasons,
            runs,
            thresholds,
            metrics,
            summary,
        }
    }

    /// The failing thresholds as one line each (for stderr).
    pub fn failures(&self) -> Vec<String> {
        self.thresholds
            .iter()
            .filter(|t| !t.outcome.passed)
            .map(|t| {
                let described = t.outcome.describe();
                let text = described.trim_start_matches("FAIL").trim_start();
                match (&t.variant, t.repeat) {
                    (Some(v), Some(r)) => format!("{v} r{r}: {text}"),
                    _ => text.to_string(),
                }
            })
            .collect()
    }

    /// Two suites: `fleetsim run` (one case per run: did it end ok) and `fleetsim
    /// thresholds` (one case per threshold and run).
    pub fn junit_suites(&self) -> Vec<junit::Suite> {
        let runs = self
            .runs
            .iter()
            .map(|r| junit::Case {
                name: r.name.clone(),
                classname: format!("fleetsim.run.{}", self.scenario),
                time: 0.0,
                status: if r.status == "ok" {
                    junit::Status::Passed
                } else {
                    junit::Status::Failed {
                        message: format!("run {}: {}", r.status, r.reasons.join("; ")),
                        details: format!("results: {}", self.dir.display()),
                    }
                },
                output: String::new(),
            })
            .collect();
        let thresholds = self
            .thresholds
            .iter()
            .map(|t| {
                let mut classname = format!("fleetsim.thresholds.{}", self.scenario);
                if let (Some(v), Some(r)) = (&t.variant, t.repeat) {
                    classname.push_str(&format!(".{v}.r{r}"));
                }
                let described = t.outcome.describe();
                junit::Case {
                    name: t.check.clone(),
                    classname,
                    time: 0.0,
                    status: if t.outcome.passed {
                        junit::Status::Passed
                    } else {
                        junit::Status::Failed {
                            message: described.clone(),
                            details: format!(
                                "{} (limit {}); results: {}",
                                t.check,
                                t.outcome.unit.show(t.limit),
                                self.dir.display()
                            ),
                        }
                    },
                    output: described,
                }
            })
            .collect();
        vec![
            junit::Suite {
                name: "fleetsim run".to_string(),
                time: 0.0,
                cases: runs,
            },
            junit::Suite {
                name: "fleetsim thresholds".to_string(),
                time: 0.0,
                cases: thresholds,
            },
        ]
    }
}

/// JUnit for a run that never reached results (bad input, broker unreachable): one
/// errored case saying why.
pub fn error_suites(scenario: &str, message: &str) -> Vec<junit::Suite> {
    vec![junit::Suite {
        name: "fleetsim run".to_string(),
        time: 0.0,
        cases: vec![junit::Case {
            name: "run".to_string(),
            classname: format!("fleetsim.run.{scenario}"),
            time: 0.0,
            status: junit::Status::Error {
                message: message.to_string(),
            },
            output: String::new(),
        }],
    }]
}
