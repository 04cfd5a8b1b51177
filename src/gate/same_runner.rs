//! `fleetsim gate`: a reference and a candidate run interleaved, repeated, on one
//! runner, and a verdict with a stated confidence instead of a ratio against a baseline
//! recorded on another machine.
//!
//! # Why same-runner
//!
//! A latency swings 2× from run to run on a shared CI runner, and a baseline recorded
//! on another machine or another day adds that machine's noise on top: tolerances wide
//! enough to pass that noise pass a broker with half its CPU. Running both sides in one
//! job, interleaved (reference, candidate, reference, ...), puts the runner's drift on
//! both; repeating them measures how much runs vary, so the decision can say how sure
//! it is. The A/B machinery ([`crate::ab`]) does the running; this module decides.
//!
//! # The decision
//!
//! Every figure gets a verdict; the gate's is the worst of them.
//!
//! - **Exact counts** (`counts.csv` rows with `exact = true`: consumers, JetStream API
//!   requests by kind per agent, deliveries per write, reconnects) must be equal: the
//!   candidate's value in every run equals the reference's. They do not depend on timing,
//!   so one more consumer or one more request per agent fails on any runner, every time,
//!   with no repeats needed. A figure only one side has fails too (a new kind of request).
//!   A herd's consumer and API counts on async-nats 0.50 are not exact (a watch may take
//!   more than one recreation attempt); where each side's runs agree on one value they
//!   are held equal the same way (kind `stable`), so one more walk per reconnect fails.
//! - **Measured figures** (`[gate] figures`: latency p50/p99 and the capacity figures of
//!   `counts.csv`, like `broker.cpu_ms_per_agent`) are judged on the 95 % bootstrap
//!   interval of the candidate's relative change, signed so that positive is worse
//!   (a throughput that halved is +100 %), against the figure's effect size E:
//!   - **fail** when the whole interval is above E: worse by more than E, with 95 %
//!     confidence;
//!   - **pass** when the whole interval is below E: whatever the change, it is smaller
//!     than E;
//!   - **inconclusive** otherwise: the interval straddles E, too wide to tell; more
//!     repeats narrow it.
//!
//!   A latency below the floor (default 20 ms) on both sides is not judged: a 2 ms get
//!   doubling is scheduling noise.
//!
//! Latency intervals are the A/B comparison's two-level bootstrap (runs, then agents:
//! [`crate::ab_stats`]); a capacity figure has one value per run, so its interval
//! resamples the runs of each side and compares their means.
//!
//! # What it writes
//!
//! The A/B directory (runs, compare.csv, ...) plus `gate.csv`, one row per judged
//! figure, which `GateDecision::text` prints as a table.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::thresholds::{Known, Source, parse_figure, phase_matches};
use crate::ab::{AbReport, run_ab};
use crate::ab_stats::CompareRow;
use crate::plan::{Plan, Variant};
use crate::results::rows::{CountRow, CsvFile, RunEntry};
use crate::results::{GATE_COLUMNS, GATE_FILE, RunDir, text_table};
use crate::run::{RunError, RunOptions};

/// Repeats per side when `[gate] repeat` is not given: enough for an interval (the
/// bootstrap needs 3), few enough for a CI job.
pub const DEFAULT_REPEAT: usize = 5;
/// Effect size when `[gate] effect` is not given.
pub const DEFAULT_EFFECT: f64 = 0.25;
/// Latencies below this on both sides are not judged (ms).
pub const DEFAULT_FLOOR_MS: f64 = 20.0;
/// The figures judged when `[gate] figures` is not given: the broker's CPU per agent in
/// every phase, and the cold start's and the herds' p50. (`api.rate_per_sec` is a
/// capacity figure only in an all-at-once start, and varies ~20 % run to run on a
/// 2-core runner: name it where it fits.)
pub const DEFAULT_FIGURES: [&str; 3] =
    ["count.broker.cpu_ms_per_agent", "ready.p50", "recovery.p50"];

/// `[gate]`: how `fleetsim gate` judges a candidate against its reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateSettings {
    /// Runs per side.
    pub repeat: usize,
    /// The measured figures judged, each with its effect size.
    pub figures: Vec<GateFigure>,
    /// Latencies below this (ms) on both sides are not judged.
    pub floor_ms: f64,
}

/// One measured figure the gate judges.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateFigure {
    /// As written (`ready[3:start].p50`).
    pub text: String,
    pub source: Source,
    /// A phase selector (`3:start`, `3`, `start`, or `run` for a count's whole run);
    /// `None`: every phase (unlike a threshold, where `count.<figure>` is the whole run).
    pub phase: Option<String>,
    /// The smallest worsening (a fraction) that fails the gate when shown with 95 %
    /// confidence.
    pub effect: f64,
}

impl Default for GateSettings {
    /// No figures: what a plan holds before `[gate]` is read.
    fn default() -> Self {
        GateSettings {
            repeat: DEFAULT_REPEAT,
            figures: Vec::new(),
            floor_ms: DEFAULT_FLOOR_MS,
        }
    }
}

impl GateSettings {
    /// The defaults, with every figure of [`DEFAULT_FIGURES`] that `known` can measure.
    pub fn defaults(known: &Known) -> GateSettings {
        GateSettings {
            repeat: DEFAULT_REPEAT,
            figures: DEFAULT_FIGURES
                .iter()
                .filter_map(|text| GateFigure::parse(text, DEFAULT_EFFECT, known).ok())
                .collect(),
            floor_ms: DEFAULT_FLOOR_MS,
        }
    }
}

impl GateFigure {
    pub fn parse(text: &str, effect: f64, known: &Known) -> Result<GateFigure, String> {
        let (source, phase) = parse_figure(text, known)?;
        Ok(GateFigure {
            text: text.trim().to_string(),
            source,
            phase,
            effect,
        })
    }
}

/// The gate's verdict on one figure, or on the whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Not judged (below the floor, or measured in no run); never fails.
    Skipped,
    Pass,
    Inconclusive,
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Skipped => "skipped",
            Verdict::Pass => "pass",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Fail => "fail",
        }
    }
}

/// One row of `gate.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateRow {
    /// The phase (`3:start`, or `run`).
    pub phase: String,
    /// `ready.p50`, `count.api.consumer_create_per_agent`, ...
    pub figure: String,
    /// `exact`, `latency` or `capacity`.
    pub kind: String,
    /// The reference's value: the pooled p50/p99 (ms) of a latency, the mean over runs of
    /// a capacity figure, the value of an exact count.
    pub reference: Option<f64>,
    pub candidate: Option<f64>,
    /// The candidate's relative change, signed so that positive is worse.
    pub change: Option<f64>,
    /// The 95 % interval of `change`.
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// The effect size judged against (empty for exact counts: any change fails).
    pub effect: Option<f64>,
    pub verdict: Verdict,
    /// Why, in words.
    pub note: String,
}

impl CsvFile for GateRow {
    const FILE: &'static str = GATE_FILE;
    const COLUMNS: &'static [&'static str] = &GATE_COLUMNS;
}

/// The gate's decision on an A/B run of a reference and a candidate.
#[derive(Debug, Clone, Serialize)]
pub struct GateDecision {
    pub verdict: Verdict,
    pub rows: Vec<GateRow>,
    /// Runs that did not end `ok` (agents failed, thresholds failed, interrupted):
    /// a failed run fails the gate whatever its figures say.
    pub failed_runs: Vec<String>,
}

impl GateDecision {
    /// The verdict and, for each figure that did not pass, a line naming it.
    pub fn text(&self) -> String {
        let rows: Vec<[String; 8]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.phase.clone(),
                    r.figure.clone(),
                    r.reference.map_or(String::new(), show),
                    r.candidate.map_or(String::new(), show),
                    r.change.map_or(String::new(), percent),
                    match (r.ci_low, r.ci_high) {
                        (Some(lo), Some(hi)) => format!("{}..{}", percent(lo), percent(hi)),
                        _ => String::new(),
                    },
                    r.effect.map_or_else(|| r.kind.clone(), percent),
                    r.verdict.as_str().to_string(),
                ]
            })
            .collect();
        let mut text = text_table(
            [
                "phase",
                "figure",
                "reference",
                "candidate",
                "change",
                "95% CI",
                "effect",
                "verdict",
            ],
            &rows,
            |i| (2..=6).contains(&i),
        );
        for run in &self.failed_runs {
            text.push_str(&format!("run failed: {run}\n"));
        }
        for r in self.rows.iter().filter(|r| r.verdict == Verdict::Fail) {
            text.push_str(&format!(
                "gate failed: {} ({}): {}\n",
                r.figure, r.phase, r.note
            ));
        }
        for r in self
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Inconclusive)
        {
            text.push_str(&format!(
                "inconclusive: {} ({}): {}\n",
                r.figure, r.phase, r.note
            ));
        }
        text.push_str(&format!(
            "gate: {}",
            match self.verdict {
                Verdict::Pass | Verdict::Skipped => "pass: no figure worse beyond its effect size",
                Verdict::Fail => "FAIL",
                Verdict::Inconclusive =>
                    "inconclusive, need more repeats (no figure failed, but not every interval excludes its effect size)",
            }
        ));
        text
    }

    /// One JUnit test case per judged figure: a failure for `fail`, skipped (with the
    /// reason) for `inconclusive` and `skipped`.
    pub fn junit_suite(&self, scenario: &str) -> super::junit::Suite {
        use super::junit::{Case, Status, Suite};
        let cases = self
            .rows
            .iter()
            .map(|r| Case {
                name: format!("{} ({})", r.figure, r.phase),
                classname: format!("fleetsim.gate.{scenario}"),
                time: 0.0,
                status: match r.verdict {
                    Verdict::Pass => Status::Passed,
                    Verdict::Fail => Status::Failed {
                        message: format!("{} ({}): {}", r.figure, r.phase, r.note),
                        details: format!(
                            "reference {}, candidate {}",
                            r.reference.map_or("-".to_string(), show),
                            r.candidate.map_or("-".to_string(), show)
                        ),
                    },
                    Verdict::Inconclusive | Verdict::Skipped => Status::Skipped {
                        message: format!("{}: {}", r.verdict.as_str(), r.note),
                    },
                },
                output: r.note.clone(),
            })
            .collect();
        Suite {
            name: format!("fleetsim gate {scenario}"),
            time: 0.0,
            cases,
        }
    }

    /// 0 pass, 1 fail, 4 inconclusive (documented in docs/exit-codes.md).
    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            Verdict::Pass | Verdict::Skipped => 0,
            Verdict::Fail => 1,
            Verdict::Inconclusive => 4,
        }
    }
}

/// The names of the gate's two sides, in run order.
pub const REFERENCE: &str = "reference";
pub const CANDIDATE: &str = "candidate";

/// Why a reference and a candidate cannot be gated against each other.
#[derive(Debug, thiserror::Error)]
pub enum GateInputError {
    #[error(
        "{side} has [[variants]]: a gate scenario has none (the gate makes its own two sides, \
         reference and candidate); remove them or run the file with `fleetsim run`"
    )]
    HasVariants { side: &'static str },
    #[error(
        "the reference and the candidate run different steps ({reference} vs {candidate}): \
         the gate compares them phase by phase, so both must run the same steps"
    )]
    DifferentSteps {
        reference: String,
        candidate: String,
    },
    #[error(
        "the reference runs {reference} agents and the candidate {candidate}: per-agent \
         figures compare only at one fleet size"
    )]
    DifferentFleets { reference: usize, candidate: usize },
}

/// The A/B plan of a gate: `reference` and `candidate` as its two variants, repeated
/// `[gate] repeat` times (the reference's).
pub fn gate_plan(reference: Plan, candidate: Plan) -> Result<Plan, GateInputError> {
    if !reference.variants.is_empty() {
        return Err(GateInputError::HasVariants {
            side: "the reference",
        });
    }
    if !candidate.variants.is_empty() {
        return Err(GateInputError::HasVariants {
            side: "the candidate",
        });
    }
    let labels = |p: &Plan| {
        p.steps
            .iter()
            .map(|s| s.label())
            .collect::<Vec<_>>()
            .join(" ")
    };
    if labels(&reference) != labels(&candidate) {
        return Err(GateInputError::DifferentSteps {
            reference: labels(&reference),
            candidate: labels(&candidate),
        });
    }
    if reference.fleet.agents != candidate.fleet.agents {
        return Err(GateInputError::DifferentFleets {
            reference: reference.fleet.agents,
            candidate: candidate.fleet.agents,
        });
    }
    let mut plan = reference.clone();
    plan.repeat = reference.gate.repeat;
    plan.variants = vec![
        Variant {
            name: REFERENCE.to_string(),
            plan: reference,
        },
        Variant {
            name: CANDIDATE.to_string(),
            plan: candidate,
        },
    ];
    Ok(plan)
}

/// What `fleetsim gate` produced: the A/B run and the decision on it.
#[derive(Debug)]
pub struct GateReport {
    pub ab: AbReport,
    pub decision: GateDecision,
}

/// Runs the gate plan (see [`gate_plan`]) as an A/B run, decides, and writes `gate.csv`
/// into its directory. `shutdown` (Ctrl-C) stops it like an A/B run; what was measured
/// is judged all the same (and the interrupted run fails the gate).
pub async fn run_gate(
    plan: Plan,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<GateReport, RunError> {
    let settings = plan.gate.clone();
    let ab = run_ab(plan, options, shutdown).await?;
    let decision = decide(&ab, &settings);
    crate::results::write_file(&ab.dir, &decision.rows)?;
    Ok(GateReport { ab, decision })
}

/// Judges the A/B run `ab` of two variants (the first the reference, the second the
/// candidate) by `settings`, reading each run's `counts.csv` from its directory.
pub fn decide(ab: &AbReport, settings: &GateSettings) -> GateDecision {
    judge_runs(&ab.dir, &ab.runs, &ab.compare, settings)
}

/// Judges a gate's run directory again, from its files (`runs.csv`, `compare.csv` and
/// each run's `counts.csv`): the runs are not repeated. For new `[gate]` settings (effect
/// sizes, figures) on runs already made. Writes `gate.csv`.
pub fn judge_dir(dir: &Path, settings: &GateSettings) -> Result<GateDecision, JudgeError> {
    let run_dir = RunDir::new(dir);
    let runs = run_dir.rows::<RunEntry>()?;
    let compare = run_dir.rows::<CompareRow>()?;
    let decision = judge_runs(dir, &runs, &compare, settings);
    crate::results::write_file(dir, &decision.rows)?;
    Ok(decision)
}

/// Why a directory could not be judged again.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    #[error("{0} (is it the directory of a `fleetsim gate` or A/B run?)")]
    Read(#[from] crate::results::ReadError),
    #[error(transparent)]
    Write(#[from] crate::results::ResultsError),
}

/// The decision on the runs `runs` of the A/B directory `dir`, whose comparison is
/// `compare`.
fn judge_runs(
    dir: &Path,
    runs: &[RunEntry],
    compare: &[CompareRow],
    settings: &GateSettings,
) -> GateDecision {
    let mut names: Vec<&str> = Vec::new();
    for run in runs {
        if !names.contains(&run.variant.as_str()) {
            names.push(&run.variant);
        }
    }
    let mut failed_runs: Vec<String> = runs
        .iter()
        .filter(|r| r.status != "ok")
        .map(|r| {
            format!(
                "{} run {} ({}) {}: {}",
                r.variant, r.repeat, r.dir, r.status, r.reasons
            )
        })
        .collect();
    let counts = |variant: Option<&&str>| -> Vec<RunCounts> {
        let Some(variant) = variant else {
            return Vec::new();
        };
        runs.iter()
            .filter(|r| r.variant == *variant && r.status != "error")
            .filter_map(|r| run_counts(dir, r))
            .collect()
    };
    let reference = counts(names.first());
    let candidate = counts(names.get(1));
    for (side, runs) in [(REFERENCE, &reference), (CANDIDATE, &candidate)] {
        if runs.is_empty() {
            failed_runs.push(format!(
                "the {side} measured nothing (no run wrote counts.csv)"
            ));
        }
    }
    let mut rows = exact_rows(&reference, &candidate);
    let (ref_name, cand_name) = (
        names.first().copied().unwrap_or_default(),
        names.get(1).copied().unwrap_or_default(),
    );
    for figure in &settings.figures {
        let judged = match &figure.source {
            Source::Count { figure: name } => capacity_rows(figure, name, &reference, &candidate),
            Source::Latency { metric, stat } => latency_rows(
                figure,
                metric,
                stat,
                compare,
                (ref_name, cand_name),
                settings.floor_ms,
            ),
            _ => Vec::new(),
        };
        if judged.is_empty() {
            // Said, never silently passed: an external broker has no CPU figure, a
            // `--herd-command` renames the herd's phase, a metric no step records.
            rows.push(GateRow {
                phase: figure.phase.clone().unwrap_or_default(),
                figure: figure.text.clone(),
                kind: "not measured".to_string(),
                reference: None,
                candidate: None,
                change: None,
                ci_low: None,
                ci_high: None,
                effect: Some(figure.effect),
                verdict: Verdict::Skipped,
                note: "measured in no run of either side (an external broker has no CPU \
                       figure; --herd-command renames the herd's phase to <n>:command)"
                    .to_string(),
            });
        }
        rows.extend(judged);
    }
    let mut verdict = rows
        .iter()
        .map(|r| r.verdict)
        .max()
        .unwrap_or(Verdict::Skipped);
    if !failed_runs.is_empty() {
        verdict = Verdict::Fail;
    }
    GateDecision {
        verdict,
        rows,
        failed_runs,
    }
}

/// One run's `counts.csv`, and whether the run recorded the broker's API audit (without
/// it the API counts come from the live tap, which misses requests: never held equal).
#[derive(Clone)]
struct RunCounts {
    rows: Vec<CountRow>,
    audited: bool,
}

/// A run's counts; `None` when it has none (a run that failed before measuring).
fn run_counts(ab_dir: &Path, run: &RunEntry) -> Option<RunCounts> {
    let dir = RunDir::new(ab_dir.join(&run.dir));
    let rows = dir.rows::<CountRow>().ok()?;
    Some(RunCounts {
        rows,
        audited: dir.path(crate::results::API_FILE).exists(),
    })
}

/// Counts that are not exact only because a herd on async-nats 0.50 may take more than
/// one attempt to recreate a watch (`results::counts`): consumers and API requests by
/// kind. Where every run of each side has one value they are judged like exact counts
/// (kind `stable`): a walk added to every reconnect (the #832 class) shows here.
fn attempt_dependent(figure: &str) -> bool {
    (figure.starts_with("consumers.") && figure != "consumers.transient_per_agent")
        || (figure.starts_with("api.")
            && figure.ends_with("_per_agent")
            && figure != "api.probe_get_per_agent")
}

/// Exact counts: equal on both sides in every run, or the gate fails. Attempt-dependent
/// counts ([`attempt_dependent`], from runs with the API audit) are held to the same
/// when each side's runs agree.
fn exact_rows(reference: &[RunCounts], candidate: &[RunCounts]) -> Vec<GateRow> {
    /// Each side's values, in run order, and whether any run marked the count not exact.
    #[derive(Default)]
    struct Sides {
        values: [Vec<f64>; 2],
        any_not_exact: bool,
    }
    let mut order: Vec<String> = Vec::new();
    // (phase order, phase, figure) -> both sides' values.
    let mut counts: BTreeMap<(usize, String, String), Sides> = BTreeMap::new();
    for (side, runs) in [reference, candidate].into_iter().enumerate() {
        for run in runs {
            for row in &run.rows {
                let held_equal = row.exact || (run.audited && attempt_dependent(&row.figure));
                if !held_equal {
                    continue;
                }
                let phase_order = order
                    .iter()
                    .position(|p| *p == row.phase)
                    .unwrap_or_else(|| {
                        order.push(row.phase.clone());
                        order.len() - 1
                    });
                let entry = counts
                    .entry((phase_order, row.phase.clone(), row.figure.clone()))
                    .or_default();
                entry.values[side].push(row.value);
                entry.any_not_exact |= !row.exact;
            }
        }
    }
    let runs = [reference.len(), candidate.len()];
    let mut rows = Vec::new();
    for ((_, phase, figure), mut sides) in counts {
        let stable = sides.any_not_exact;
        // A kind of request or write with no row in a run did not occur there: 0.
        let zero_when_absent = figure.starts_with("api.") || figure.starts_with("deliveries.");
        let mut missing = Vec::new();
        for (side, values) in sides.values.iter_mut().enumerate() {
            if values.len() < runs[side] {
                if zero_when_absent {
                    values.resize(runs[side], 0.0);
                } else if !values.is_empty() {
                    missing.push(format!(
                        "missing in {} of the {}'s {} runs",
                        runs[side] - values.len(),
                        [REFERENCE, CANDIDATE][side],
                        runs[side]
                    ));
                }
            }
        }
        let [refs, cands] = &sides.values;
        let first = |v: &[f64]| v.first().copied();
        let constant = |v: &[f64]| v.windows(2).all(|w| w[0] == w[1]);
        let listed = |v: &[f64]| v.iter().map(|c| show(*c)).collect::<Vec<_>>().join(", ");
        let (verdict, note) = if refs.is_empty() {
            (
                Verdict::Fail,
                "new: only the candidate has it (a kind of request or write the reference never made)"
                    .to_string(),
            )
        } else if cands.is_empty() {
            (Verdict::Fail, "gone: only the reference has it".to_string())
        } else if !missing.is_empty() {
            (Verdict::Inconclusive, missing.join("; "))
        } else if !constant(refs) {
            (
                Verdict::Skipped,
                format!(
                    "varies over the reference's runs ({}): not judged",
                    listed(refs)
                ),
            )
        } else if cands.iter().all(|c| Some(*c) == first(refs)) {
            (Verdict::Pass, "equal".to_string())
        } else if stable && !constant(cands) {
            (
                Verdict::Inconclusive,
                format!(
                    "reference {} in every run; the candidate's runs vary ({}): a count that \
                     depends on recreation attempts (async-nats 0.50 herd)",
                    show(refs[0]),
                    listed(cands)
                ),
            )
        } else {
            let what = if stable {
                "a count, the same in every run of each side, changed"
            } else {
                "an exact count changed"
            };
            (
                Verdict::Fail,
                format!(
                    "{what}: reference {}, candidate {}",
                    show(refs[0]),
                    listed(cands)
                ),
            )
        };
        let reference = first(refs);
        let candidate = first(cands).filter(|_| constant(cands));
        rows.push(GateRow {
            phase,
            figure: format!("count.{figure}"),
            kind: if stable { "stable" } else { "exact" }.to_string(),
            reference,
            candidate,
            change: match (reference, candidate) {
                (Some(r), Some(c)) if r != 0.0 => Some(c / r - 1.0),
                _ => None,
            },
            ci_low: None,
            ci_high: None,
            effect: None,
            verdict,
            note,
        });
    }
    rows
}

/// A capacity figure of `counts.csv`, per phase it covers. Each run gives one value, so
/// the interval is Welch's t interval on the logarithms: the ratio of the two sides'
/// geometric means, with the t quantile of the few runs (a bootstrap of five values
/// per side would claim 95 % and cover less).
fn capacity_rows(
    figure: &GateFigure,
    name: &str,
    reference: &[RunCounts],
    candidate: &[RunCounts],
) -> Vec<GateRow> {
    let mut phases: Vec<String> = Vec::new();
    for row in reference.iter().chain(candidate).flat_map(|r| &r.rows) {
        let selected = figure
            .phase
            .as_deref()
            .is_none_or(|p| phase_matches(p, &row.phase));
        if row.figure == name && selected && !phases.contains(&row.phase) {
            phases.push(row.phase.clone());
        }
    }
    let values = |runs: &[RunCounts], phase: &str| -> Vec<f64> {
        runs.iter()
            .filter_map(|run| {
                run.rows
                    .iter()
                    .find(|r| r.figure == name && r.phase == phase)
                    .map(|r| r.value)
            })
            .collect()
    };
    // A throughput is better higher: its change is signed so that a drop is positive.
    let higher_is_better = name.ends_with("_per_sec");
    let mut rows = Vec::new();
    for phase in phases {
        let (refs, cands) = (values(reference, &phase), values(candidate, &phase));
        let mut row = GateRow {
            phase: phase.clone(),
            figure: format!("count.{name}"),
            kind: "capacity".to_string(),
            reference: mean(&refs),
            candidate: mean(&cands),
            change: None,
            ci_low: None,
            ci_high: None,
            effect: Some(figure.effect),
            verdict: Verdict::Inconclusive,
            note: String::new(),
        };
        let min = crate::ab_stats::MIN_REPEAT_FOR_CI;
        if refs.len() < min || cands.len() < min {
            row.note = format!(
                "measured in {} reference and {} candidate runs; an interval needs {min} of each",
                refs.len(),
                cands.len(),
            );
        } else if refs
            .iter()
            .chain(&cands)
            .any(|v| !v.is_finite() || *v < 0.0)
        {
            row.note = "a negative or non-finite value: not judged as a ratio".to_string();
        } else if higher_is_better && cands.contains(&0.0) {
            // A throughput that fell to nothing in some run: as worse as it gets.
            row.change = Some(f64::INFINITY);
            row.verdict = Verdict::Fail;
            row.note = "the candidate's throughput was 0 in a run".to_string();
        } else if refs.iter().chain(&cands).any(|v| *v == 0.0) {
            row.note = "a value of 0: a ratio cannot say how much it changed".to_string();
        } else {
            let (lo, point, hi) = log_ratio_interval(&refs, &cands);
            // Worse is up: for a throughput, the reference over the candidate.
            let (lo, point, hi) = if higher_is_better {
                (-hi, -point, -lo)
            } else {
                (lo, point, hi)
            };
            let change = |log: f64| log.exp() - 1.0;
            row.change = Some(change(point));
            row.ci_low = Some(change(lo));
            row.ci_high = Some(change(hi));
            (row.verdict, row.note) = judge(change(lo), change(hi), figure.effect);
        }
        rows.push(row);
    }
    rows
}

/// Welch's 95 % t interval of `mean(ln b) - mean(ln a)`: (low, point, high).
fn log_ratio_interval(a: &[f64], b: &[f64]) -> (f64, f64, f64) {
    let stats = |v: &[f64]| {
        let logs: Vec<f64> = v.iter().map(|x| x.ln()).collect();
        let n = logs.len() as f64;
        let mean = logs.iter().sum::<f64>() / n;
        let var = logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var / n, n)
    };
    let ((ma, sa, na), (mb, sb, nb)) = (stats(a), stats(b));
    let se2 = sa + sb;
    let point = mb - ma;
    if se2 == 0.0 {
        return (point, point, point);
    }
    // Welch–Satterthwaite degrees of freedom.
    let df = se2 * se2 / (sa * sa / (na - 1.0) + sb * sb / (nb - 1.0));
    let half = t_975(df) * se2.sqrt();
    (point - half, point, point + half)
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom (Cornish–Fisher
/// expansion around the normal's 1.96: within 0.5 % of the table from 3 degrees of
/// freedom up, 3 % low at 2, which Welch's df never goes below with 3 runs a side).
fn t_975(df: f64) -> f64 {
    let z: f64 = 1.959_964;
    let (z3, z5, z7) = (z.powi(3), z.powi(5), z.powi(7));
    z + (z3 + z) / (4.0 * df)
        + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * df * df)
        + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * df * df * df)
}

/// A latency's p50 or p99 per phase, from the A/B comparison's rows.
fn latency_rows(
    figure: &GateFigure,
    metric: &str,
    stat: &str,
    compare: &[CompareRow],
    (reference, candidate): (&str, &str),
    floor_ms: f64,
) -> Vec<GateRow> {
    let mut rows = Vec::new();
    let selected = compare.iter().filter(|r| {
        r.metric == metric
            && r.variant == candidate
            && figure
                .phase
                .as_deref()
                .is_none_or(|p| phase_matches(p, &r.phase))
    });
    for cand in selected {
        let Some(refr) = compare
            .iter()
            .find(|r| r.metric == metric && r.phase == cand.phase && r.variant == reference)
        else {
            continue;
        };
        let (r, c, lo_ms, hi_ms) = if stat == "p50" {
            (
                refr.p50,
                cand.p50,
                cand.p50_diff_ci_low,
                cand.p50_diff_ci_high,
            )
        } else {
            (
                refr.p99,
                cand.p99,
                cand.p99_diff_ci_low,
                cand.p99_diff_ci_high,
            )
        };
        let mut row = GateRow {
            phase: cand.phase.clone(),
            figure: format!("{metric}.{stat}"),
            kind: "latency".to_string(),
            reference: Some(r),
            candidate: Some(c),
            change: (r > 0.0).then(|| c / r - 1.0),
            ci_low: None,
            ci_high: None,
            effect: Some(figure.effect),
            verdict: Verdict::Skipped,
            note: String::new(),
        };
        if r < floor_ms && c < floor_ms {
            row.note = format!("below the {floor_ms} ms floor on both sides: not judged");
        } else if let (Some(lo), Some(hi)) = (lo_ms, hi_ms)
            && r > 0.0
        {
            row.ci_low = Some(lo / r);
            row.ci_high = Some(hi / r);
            (row.verdict, row.note) = judge(lo / r, hi / r, figure.effect);
        } else {
            row.verdict = Verdict::Inconclusive;
            row.note = format!(
                "no interval: fewer than {} runs per side",
                crate::ab_stats::MIN_REPEAT_FOR_CI
            );
        }
        rows.push(row);
    }
    rows
}

/// The three-way decision on an interval `lo..hi` of the worsening against `effect`.
fn judge(lo: f64, hi: f64, effect: f64) -> (Verdict, String) {
    let interval = format!("95% CI {}..{}", percent(lo), percent(hi));
    if lo > effect {
        (
            Verdict::Fail,
            format!(
                "worse by more than the {} effect size ({interval})",
                percent(effect)
            ),
        )
    } else if hi < effect {
        (
            Verdict::Pass,
            format!(
                "any worsening is below the {} effect size ({interval})",
                percent(effect)
            ),
        )
    } else {
        (
            Verdict::Inconclusive,
            format!(
                "the interval straddles the {} effect size ({interval}): more repeats narrow it",
                percent(effect)
            ),
        )
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn percent(fraction: f64) -> String {
    format!("{:+.1}%", fraction * 100.0)
}

fn show(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_above_the_effect_fails_below_passes_across_is_inconclusive() {
        assert_eq!(judge(0.30, 0.60, 0.25).0, Verdict::Fail);
        assert_eq!(judge(-0.10, 0.20, 0.25).0, Verdict::Pass);
        assert_eq!(judge(0.10, 0.40, 0.25).0, Verdict::Inconclusive);
        assert_eq!(judge(-0.50, 0.50, 0.25).0, Verdict::Inconclusive);
    }

    /// Runs of one side, each with the API audit.
    fn audited(runs: Vec<Vec<CountRow>>) -> Vec<RunCounts> {
        runs.into_iter()
            .map(|rows| RunCounts {
                rows,
                audited: true,
            })
            .collect()
    }

    /// A `[gate] figures` entry of a scenario whose one step is `1:start`, effect 20 %.
    fn start_figure(text: &str) -> GateFigure {
        let known = Known {
            consumers: Vec::new(),
            phases: vec!["0:setup".to_string(), "1:start".to_string()],
        };
        GateFigure::parse(text, 0.2, &known).expect("parses")
    }

    /// One audited run per value, each with `name` = that value in `1:start`.
    fn start_runs(name: &str, values: &[f64]) -> Vec<RunCounts> {
        audited(
            values
                .iter()
                .map(|v| vec![count("1:start", name, *v, false)])
                .collect(),
        )
    }

    fn count(phase: &str, figure: &str, value: f64, exact: bool) -> CountRow {
        CountRow {
            phase: phase.to_string(),
            covers: phase.to_string(),
            figure: figure.to_string(),
            value,
            total: None,
            unit: "count/agent".to_string(),
            exact,
        }
    }

    #[test]
    fn one_more_consumer_per_agent_fails_and_equal_counts_pass() {
        let side = |consumers: f64| {
            vec![
                vec![
                    count("1:start", "consumers.created_per_agent", consumers, true),
                    count("1:start", "api.total_per_agent", 94.0, true),
                    count("1:start", "broker.cpu_ms_per_agent", 3.0, false),
                ];
                3
            ]
        };
        let rows = exact_rows(&audited(side(7.0)), &audited(side(8.0)));
        let created = rows
            .iter()
            .find(|r| r.figure == "count.consumers.created_per_agent")
            .expect("judged");
        assert_eq!(created.verdict, Verdict::Fail);
        assert!(
            created.note.contains("reference 7, candidate 8"),
            "{}",
            created.note
        );
        let total = rows
            .iter()
            .find(|r| r.figure == "count.api.total_per_agent")
            .expect("judged");
        assert_eq!(total.verdict, Verdict::Pass);
        assert!(
            rows.iter()
                .all(|r| r.figure != "count.broker.cpu_ms_per_agent"),
            "a figure that is not exact is not held equal"
        );
        assert!(
            exact_rows(&audited(side(7.0)), &audited(side(7.0)))
                .iter()
                .all(|r| r.verdict == Verdict::Pass)
        );
    }

    #[test]
    fn a_herd_count_that_is_not_exact_is_judged_when_every_run_agrees() {
        // A herd on async-nats 0.50: counts.csv marks its consumer and API counts not
        // exact. One more walk per reconnect, in every run, fails; runs that disagree
        // are inconclusive; traffic is never held equal.
        let herd = |walks: &[f64]| -> Vec<Vec<CountRow>> {
            walks
                .iter()
                .map(|w| {
                    vec![
                        count("3:broker_restart", "consumers.walks_per_agent", *w, false),
                        count("3:broker_restart", "msgs.in_per_agent", 30.0 + w, false),
                    ]
                })
                .collect()
        };
        let judged = |reference: &[f64], candidate: &[f64]| {
            let rows = exact_rows(&audited(herd(reference)), &audited(herd(candidate)));
            assert!(rows.iter().all(|r| r.figure != "count.msgs.in_per_agent"));
            let row = rows.into_iter().next().expect("walks judged");
            assert_eq!(row.kind, "stable");
            row.verdict
        };
        assert_eq!(judged(&[1.0, 1.0, 1.0], &[2.0, 2.0, 2.0]), Verdict::Fail);
        assert_eq!(judged(&[1.0, 1.0, 1.0], &[1.0, 1.0, 1.0]), Verdict::Pass);
        assert_eq!(
            judged(&[1.0, 1.0, 1.0], &[1.0, 2.0, 1.0]),
            Verdict::Inconclusive
        );
        assert_eq!(judged(&[1.0, 2.0, 1.0], &[2.0, 2.0, 2.0]), Verdict::Skipped);
    }

    #[test]
    fn a_count_missing_from_some_runs_is_zero_for_a_request_kind_and_unknown_otherwise() {
        // The candidate makes a consumer info in 2 of its 3 runs: no row in the third
        // means none there, so its runs disagree with the reference's 0: fail.
        let reference = vec![vec![count("1:start", "api.total_per_agent", 3.0, true)]; 3];
        let mut candidate = reference.clone();
        for run in candidate.iter_mut().take(2) {
            run.push(count("1:start", "api.consumer_info_per_agent", 1.0, true));
        }
        let rows = exact_rows(&audited(reference.clone()), &audited(candidate));
        let info = rows
            .iter()
            .find(|r| r.figure == "count.api.consumer_info_per_agent")
            .expect("judged");
        assert_eq!(info.verdict, Verdict::Fail, "{info:?}");
        // A consumer listing missing from one candidate run is not a 0: unknown.
        let listed = |runs: usize| {
            vec![
                vec![count(
                    "1:start",
                    "consumers.long_lived_per_agent",
                    7.0,
                    true
                )];
                runs
            ]
        };
        let mut candidate = listed(3);
        candidate[1].clear();
        let rows = exact_rows(&audited(listed(3)), &audited(candidate));
        assert_eq!(rows[0].verdict, Verdict::Inconclusive, "{:?}", rows[0]);
        assert!(
            rows[0]
                .note
                .contains("missing in 1 of the candidate's 3 runs")
        );
    }

    #[test]
    fn api_counts_from_the_live_tap_are_never_held_equal() {
        let runs = |value: f64| {
            vec![
                RunCounts {
                    rows: vec![count(
                        "3:broker_restart",
                        "api.total_per_agent",
                        value,
                        false
                    )],
                    audited: false,
                };
                3
            ]
        };
        assert!(exact_rows(&runs(29.0), &runs(31.0)).is_empty());
    }

    #[test]
    fn welch_t_quantile_and_interval() {
        // Student's t 0.975 quantiles from the table: df 4, 10, 30.
        for (df, table) in [(4.0, 2.776), (10.0, 2.228), (30.0, 2.042)] {
            assert!(
                (t_975(df) - table).abs() / table < 0.005,
                "df {df}: {}",
                t_975(df)
            );
        }
        let (lo, point, hi) = log_ratio_interval(&[10.0, 10.0, 10.0], &[20.0, 20.0, 20.0]);
        assert_eq!((lo, hi), (point, point));
        assert!((point.exp() - 2.0).abs() < 1e-12);
        let (lo, point, hi) = log_ratio_interval(&[9.0, 10.0, 11.0], &[9.5, 10.0, 10.5]);
        assert!(lo < point && point < hi && lo < 0.0 && hi > 0.0);
    }

    #[test]
    fn a_throughput_that_fell_to_nothing_fails_and_a_zero_reference_is_not_a_ratio() {
        let rate = start_figure("count[1:start].api.rate_per_sec");
        let rows = capacity_rows(
            &rate,
            "api.rate_per_sec",
            &start_runs("api.rate_per_sec", &[2000.0, 2100.0, 1900.0]),
            &start_runs("api.rate_per_sec", &[1000.0, 0.0, 950.0]),
        );
        assert_eq!(rows[0].verdict, Verdict::Fail, "{:?}", rows[0]);
        let cpu = start_figure("count[1:start].broker.cpu_ms_per_agent");
        let rows = capacity_rows(
            &cpu,
            "broker.cpu_ms_per_agent",
            &start_runs("broker.cpu_ms_per_agent", &[0.0, 0.0, 0.0]),
            &start_runs("broker.cpu_ms_per_agent", &[1.0, 1.0, 1.0]),
        );
        assert_eq!(rows[0].verdict, Verdict::Inconclusive, "{:?}", rows[0]);
    }

    #[test]
    fn a_kind_of_request_only_the_candidate_makes_fails() {
        let reference = vec![vec![count("1:start", "api.total_per_agent", 3.0, true)]; 3];
        let mut candidate = reference.clone();
        for run in &mut candidate {
            run.push(count("1:start", "api.consumer_info_per_agent", 1.0, true));
        }
        let rows = exact_rows(&audited(reference), &audited(candidate));
        let new = rows
            .iter()
            .find(|r| r.figure == "count.api.consumer_info_per_agent")
            .expect("judged");
        assert_eq!(new.verdict, Verdict::Fail);
    }

    #[test]
    fn a_capacity_figure_is_judged_on_its_runs() {
        let figure = start_figure("count[1:start].broker.cpu_ms_per_agent");
        let side = |values: &[f64]| start_runs("broker.cpu_ms_per_agent", values);
        let same = capacity_rows(
            &figure,
            "broker.cpu_ms_per_agent",
            &side(&[3.0, 3.1, 2.9, 3.0, 3.05]),
            &side(&[3.02, 2.95, 3.1, 3.0, 2.98]),
        );
        assert_eq!(same[0].verdict, Verdict::Pass, "{:?}", same[0]);
        let doubled = capacity_rows(
            &figure,
            "broker.cpu_ms_per_agent",
            &side(&[3.0, 3.1, 2.9, 3.0, 3.05]),
            &side(&[6.0, 6.1, 5.9, 6.2, 6.0]),
        );
        assert_eq!(doubled[0].verdict, Verdict::Fail, "{:?}", doubled[0]);
        // A throughput that halved is worse, not better.
        let rate = start_figure("count[1:start].api.rate_per_sec");
        let halved = capacity_rows(
            &rate,
            "api.rate_per_sec",
            &start_runs("api.rate_per_sec", &[2000.0, 2100.0, 1900.0]),
            &start_runs("api.rate_per_sec", &[1000.0, 1050.0, 950.0]),
        );
        assert_eq!(halved[0].verdict, Verdict::Fail, "{:?}", halved[0]);
        assert!(halved[0].change.is_some_and(|c| c > 0.9));
    }
}
