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
use std::path::PathBuf;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
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
/// The figures judged when `[gate] figures` is not given: the broker's CPU per agent and
/// the API throughput of every phase, and the cold start's and the herds' p50.
pub const DEFAULT_FIGURES: [&str; 4] = [
    "count.broker.cpu_ms_per_agent",
    "count.api.rate_per_sec",
    "ready.p50",
    "recovery.p50",
];
/// Bootstrap resamples of a capacity figure's interval.
const RESAMPLES: usize = 2000;

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
    /// Not judged (below the floor, or not measured on both sides); never fails.
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

impl GateReport {
    pub fn dir(&self) -> &PathBuf {
        &self.ab.dir
    }
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
    let seed = plan.seed;
    let ab = run_ab(plan, options, shutdown).await?;
    let decision = decide(&ab, &settings, seed);
    crate::results::write_file(&ab.dir, &decision.rows)?;
    Ok(GateReport { ab, decision })
}

impl GateDecision {
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

/// Judges the A/B run `ab` of two variants (the first the reference, the second the
/// candidate) by `settings`, reading each run's `counts.csv` from its directory.
pub fn decide(ab: &AbReport, settings: &GateSettings, seed: u64) -> GateDecision {
    let compare = &ab.compare;
    let mut names: Vec<&str> = Vec::new();
    for run in &ab.runs {
        if !names.contains(&run.variant.as_str()) {
            names.push(&run.variant);
        }
    }
    let failed_runs: Vec<String> = ab
        .runs
        .iter()
        .filter(|r| r.status != "ok")
        .map(|r| {
            format!(
                "{} ({} r{}) {}: {}",
                r.dir, r.variant, r.repeat, r.status, r.reasons
            )
        })
        .collect();
    let counts = |variant: Option<&&str>| -> Vec<Vec<CountRow>> {
        let Some(variant) = variant else {
            return Vec::new();
        };
        ab.runs
            .iter()
            .filter(|r| r.variant == *variant && r.status != "error")
            .filter_map(|r| run_counts(ab, r))
            .collect()
    };
    let reference = counts(names.first());
    let candidate = counts(names.get(1));
    let mut rows = exact_rows(&reference, &candidate);
    let mut rng = SmallRng::seed_from_u64(seed);
    let (ref_name, cand_name) = (
        names.first().copied().unwrap_or_default(),
        names.get(1).copied().unwrap_or_default(),
    );
    for figure in &settings.figures {
        match &figure.source {
            Source::Count { figure: name } => {
                rows.extend(capacity_rows(
                    figure, name, &reference, &candidate, &mut rng,
                ));
            }
            Source::Latency { metric, stat } => rows.extend(latency_rows(
                figure,
                metric,
                stat,
                compare,
                (ref_name, cand_name),
                settings.floor_ms,
            )),
            _ => {}
        }
    }
    let mut verdict = rows
        .iter()
        .map(|r| r.verdict)
        .max()
        .unwrap_or(Verdict::Skipped);
    if !failed_runs.is_empty() || reference.is_empty() || candidate.is_empty() {
        verdict = Verdict::Fail;
    }
    GateDecision {
        verdict,
        rows,
        failed_runs,
    }
}

/// A run's `counts.csv`; `None` when it has none (a run that failed before measuring).
fn run_counts(ab: &AbReport, run: &RunEntry) -> Option<Vec<CountRow>> {
    RunDir::new(ab.dir.join(&run.dir)).rows::<CountRow>().ok()
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
/// counts ([`attempt_dependent`]) are held to the same when each side's runs agree.
fn exact_rows(reference: &[Vec<CountRow>], candidate: &[Vec<CountRow>]) -> Vec<GateRow> {
    /// Each side's values, in run order, and whether any run marked the count not exact.
    #[derive(Default)]
    struct Sides {
        values: [Vec<f64>; 2],
        stable_only: bool,
    }
    let mut order: Vec<String> = Vec::new();
    // (phase order, phase, figure) -> both sides' values.
    let mut counts: BTreeMap<(usize, String, String), Sides> = BTreeMap::new();
    for (side, runs) in [reference, candidate].into_iter().enumerate() {
        for row in runs.iter().flatten() {
            if !row.exact && !attempt_dependent(&row.figure) {
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
            entry.stable_only |= !row.exact;
        }
    }
    let mut rows = Vec::new();
    for ((_, phase, figure), sides) in counts {
        let [refs, cands] = &sides.values;
        let stable = sides.stable_only;
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

/// A capacity figure of `counts.csv`, per phase it covers: the interval of the change
/// of the mean over runs, by resampling each side's runs.
fn capacity_rows(
    figure: &GateFigure,
    name: &str,
    reference: &[Vec<CountRow>],
    candidate: &[Vec<CountRow>],
    rng: &mut SmallRng,
) -> Vec<GateRow> {
    let mut phases: Vec<String> = Vec::new();
    for row in reference.iter().chain(candidate).flatten() {
        let selected = figure
            .phase
            .as_deref()
            .is_none_or(|p| phase_matches(p, &row.phase));
        if row.figure == name && selected && !phases.contains(&row.phase) {
            phases.push(row.phase.clone());
        }
    }
    let values = |runs: &[Vec<CountRow>], phase: &str| -> Vec<f64> {
        runs.iter()
            .filter_map(|run| {
                run.iter()
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
            figure: figure.text_for(name),
            kind: "capacity".to_string(),
            reference: mean(&refs),
            candidate: mean(&cands),
            change: None,
            ci_low: None,
            ci_high: None,
            effect: Some(figure.effect),
            verdict: Verdict::Skipped,
            note: String::new(),
        };
        let worse = |r: f64, c: f64| -> Option<f64> {
            let change = if higher_is_better { r / c } else { c / r } - 1.0;
            change.is_finite().then_some(change)
        };
        if refs.len() < crate::ab_stats::MIN_REPEAT_FOR_CI
            || cands.len() < crate::ab_stats::MIN_REPEAT_FOR_CI
        {
            row.note = format!(
                "measured in {} reference and {} candidate runs; an interval needs {} of each",
                refs.len(),
                cands.len(),
                crate::ab_stats::MIN_REPEAT_FOR_CI
            );
            row.verdict = Verdict::Inconclusive;
        } else if let (Some(r), Some(c)) = (row.reference, row.candidate) {
            row.change = worse(r, c);
            let mut changes: Vec<f64> = (0..RESAMPLES)
                .filter_map(|_| worse(resampled_mean(&refs, rng), resampled_mean(&cands, rng)))
                .collect();
            changes.sort_by(f64::total_cmp);
            if let (Some(lo), Some(hi)) = (quantile(&changes, 0.025), quantile(&changes, 0.975)) {
                row.ci_low = Some(lo);
                row.ci_high = Some(hi);
                (row.verdict, row.note) = judge(lo, hi, figure.effect);
            }
        }
        rows.push(row);
    }
    rows
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

impl GateFigure {
    /// The figure's name in `gate.csv`: `count.<figure>` for a count.
    fn text_for(&self, name: &str) -> String {
        format!("count.{name}")
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn resampled_mean(values: &[f64], rng: &mut SmallRng) -> f64 {
    let n = values.len();
    (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64
}

/// The `q` quantile of sorted `values` (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[i])
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
        let rows = exact_rows(&side(7.0), &side(8.0));
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
            exact_rows(&side(7.0), &side(7.0))
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
            let rows = exact_rows(&herd(reference), &herd(candidate));
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
    fn a_kind_of_request_only_the_candidate_makes_fails() {
        let reference = vec![vec![count("1:start", "api.total_per_agent", 3.0, true)]; 3];
        let mut candidate = reference.clone();
        for run in &mut candidate {
            run.push(count("1:start", "api.consumer_info_per_agent", 1.0, true));
        }
        let rows = exact_rows(&reference, &candidate);
        let new = rows
            .iter()
            .find(|r| r.figure == "count.api.consumer_info_per_agent")
            .expect("judged");
        assert_eq!(new.verdict, Verdict::Fail);
    }

    #[test]
    fn a_capacity_figure_is_judged_on_its_runs() {
        let known = Known {
            consumers: Vec::new(),
            phases: vec!["0:setup".to_string(), "1:start".to_string()],
        };
        let figure = GateFigure::parse("count[1:start].broker.cpu_ms_per_agent", 0.2, &known)
            .expect("parses");
        let runs = |name: &str, values: &[f64]| -> Vec<Vec<CountRow>> {
            values
                .iter()
                .map(|v| vec![count("1:start", name, *v, false)])
                .collect()
        };
        let side = |values: &[f64]| runs("broker.cpu_ms_per_agent", values);
        let mut rng = SmallRng::seed_from_u64(1);
        let same = capacity_rows(
            &figure,
            "broker.cpu_ms_per_agent",
            &side(&[3.0, 3.1, 2.9, 3.0, 3.05]),
            &side(&[3.02, 2.95, 3.1, 3.0, 2.98]),
            &mut rng,
        );
        assert_eq!(same[0].verdict, Verdict::Pass, "{:?}", same[0]);
        let doubled = capacity_rows(
            &figure,
            "broker.cpu_ms_per_agent",
            &side(&[3.0, 3.1, 2.9, 3.0, 3.05]),
            &side(&[6.0, 6.1, 5.9, 6.2, 6.0]),
            &mut rng,
        );
        assert_eq!(doubled[0].verdict, Verdict::Fail, "{:?}", doubled[0]);
        // A throughput that halved is worse, not better.
        let rate =
            GateFigure::parse("count[1:start].api.rate_per_sec", 0.2, &known).expect("parses");
        let halved = capacity_rows(
            &rate,
            "api.rate_per_sec",
            &runs("api.rate_per_sec", &[2000.0, 2100.0, 1900.0]),
            &runs("api.rate_per_sec", &[1000.0, 1050.0, 950.0]),
            &mut rng,
        );
        assert_eq!(halved[0].verdict, Verdict::Fail, "{:?}", halved[0]);
        assert!(halved[0].change.is_some_and(|c| c > 0.9));
    }
}
