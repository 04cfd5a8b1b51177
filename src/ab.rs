//! A/B runs: a scenario's `[[variants]]`, each run `repeat` times, interleaved
//! A B A B ... into one run directory, then compared.
//!
//! Each run is an ordinary [`run::run`] of the variant's plan, on a fresh broker state:
//! the embedded broker is started anew (new store dir) for every run; an external
//! broker has its buckets and stream recreated (`reset`) before every run after the
//! first, which also deletes the durable consumers the previous run left. Whether that
//! held is recorded: `runs.csv` has the broker's consumer count before each run's first
//! agent started.
//!
//! # The directory
//!
//! ```text
//! <results>/<stamp>-<scenario>/
//!   runs/01-off-r1/ ...      one complete single-run directory per run, in run order
//!   runs.csv                 order,variant,repeat,status,dir,consumers_at_start
//!   summary.csv, ...         every CSV of the runs, concatenated, with leading
//!                            `variant,repeat` columns
//!   compare.csv              see [`crate::ab_stats`]
//!   manifest.json            the A/B run: variants, repeat, order, status
//! ```
//!
//! Interleaving matters on a shared machine: drift (another job, thermal throttling)
//! lands on both variants instead of on whichever ran second.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use futures::FutureExt;
use tracing::{info, warn};

use crate::ab_stats::{CompareRow, VariantMeasurements, compare};
use crate::metrics::Snapshot;
use crate::plan::Plan;
use crate::results::{
    self, AbManifest, MANIFEST_FILE, RUNS_DIR, ResultsError, RunStatus, redact_json,
    redact_scenario_text, rfc3339,
};
use crate::run::{self, RunError, RunOptions};
use crate::thresholds::CheckOutcome;

/// One run of an A/B run, in the order it ran: a row of `runs.csv`.
pub use crate::results::RunEntry;

/// What an A/B run produced.
#[derive(Debug)]
pub struct AbReport {
    pub dir: PathBuf,
    pub status: RunStatus,
    pub reasons: Vec<String>,
    pub runs: Vec<RunEntry>,
    pub compare: Vec<CompareRow>,
    /// Every run's `[thresholds]` outcomes, in run order (each run also has its own
    /// `thresholds.csv`, merged into the A/B directory's with `variant,repeat` columns).
    pub thresholds: Vec<RunThresholds>,
    pub summary: String,
}

/// The threshold outcomes of one run of an A/B run.
#[derive(Debug, Clone)]
pub struct RunThresholds {
    pub variant: String,
    pub repeat: usize,
    pub outcomes: Vec<CheckOutcome>,
}

/// Runs every variant of `plan` `plan.repeat` times, interleaved, and writes the A/B
/// directory. `shutdown` (Ctrl-C) stops the current run, which is written as partial,
/// and no further run starts; what was measured is merged and compared all the same.
pub async fn run_ab(
    plan: Plan,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<AbReport, RunError> {
    let started_at = SystemTime::now();
    let dir = results::open_run_dir(
        options.run_dir.as_deref(),
        &options.results_base,
        &plan.name,
        started_at,
    )?;
    let shutdown = shutdown.boxed_local().shared();
    let total = plan.variants.len() * plan.repeat;
    let mut entries: Vec<RunEntry> = Vec::new();
    let mut measured: BTreeMap<usize, Vec<Snapshot>> = BTreeMap::new();
    let mut phases: Vec<String> = Vec::new();
    let mut reasons = Vec::new();
    let mut thresholds: Vec<RunThresholds> = Vec::new();
    let mut interrupted = false;
    'runs: for repeat in 1..=plan.repeat {
        for (index, variant) in plan.variants.iter().enumerate() {
            let order = entries.len() + 1;
            let rel = format!("{RUNS_DIR}/{order:02}-{}-r{repeat}", variant.name);
            let mut sub_plan = variant.plan.clone();
            if order > 1 && sub_plan.broker.url.is_some() {
                sub_plan.broker.reset = true;
            }
            info!(
                variant = %variant.name,
                repeat,
                "A/B run {order} of {total}"
            );
            let sub_options = RunOptions {
                scenario_path: options.scenario_path.clone(),
                scenario_text: options.scenario_text.clone(),
                results_base: dir.join(RUNS_DIR),
                run_dir: Some(dir.join(&rel)),
                proxy_program: options.proxy_program.clone(),
            };
            let mut entry = RunEntry {
                order,
                variant: variant.name.clone(),
                repeat,
                status: String::new(),
                dir: rel,
                consumers_at_start: None,
                reasons: String::new(),
            };
            match run::run(sub_plan, sub_options, shutdown.clone()).await {
                Ok(report) => {
                    entry.status = report.status.to_string();
                    entry.reasons = report.reasons.join("; ");
                    entry.consumers_at_start = report.consumers_at_start;
                    if !report.thresholds.is_empty() {
                        thresholds.push(RunThresholds {
                            variant: variant.name.clone(),
                            repeat,
                            outcomes: report.thresholds.clone(),
                        });
                    }
                    if report.status != RunStatus::Ok {
                        reasons.push(format!(
                            "run {order} ({} r{repeat}) {}: {}",
                            variant.name, report.status, entry.reasons
                        ));
                    }
                    measured.entry(index).or_default().push(report.snapshot);
                    if phases.is_empty() {
                        phases = report.phases;
                    }
                    interrupted = report.status == RunStatus::Partial;
                }
                Err(e) => {
                    warn!(error = %e, variant = %variant.name, repeat, "A/B run failed before measuring");
                    entry.status = "error".to_string();
                    entry.reasons = e.to_string();
                    reasons.push(format!("run {order} ({} r{repeat}): {e}", variant.name));
                    entries.push(entry);
                    if entries.len() == 1 {
                        // Nothing measured at all: the broker or host is the problem.
                        return Err(e);
                    }
                    interrupted = true;
                    break 'runs;
                }
            }
            entries.push(entry);
            if interrupted {
                break 'runs;
            }
        }
    }
    if interrupted {
        reasons.push(format!("stopped after {} of {total} runs", entries.len()));
    }
    let status = RunStatus::of(interrupted, &reasons);

    merge_csvs(&dir, &entries)?;
    let measurements: Vec<VariantMeasurements> = plan
        .variants
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            measured.remove(&i).map(|runs| VariantMeasurements {
                name: v.name.clone(),
                runs,
            })
        })
        .collect();
    let rows = compare(&measurements, &phases, plan.seed);
    results::write_file(&dir, &rows)?;
    results::write_file(&dir, &entries)?;

    let manifest = AbManifest {
        kind: AbManifest::KIND.to_string(),
        fleetsim_version: env!("CARGO_PKG_VERSION").to_string(),
        scenario: plan.name.clone(),
        scenario_file: options
            .scenario_path
            .as_ref()
            .map(|p| p.display().to_string()),
        scenario_text: redact_scenario_text(&options.scenario_text),
        repeat: plan.repeat,
        variants: plan
            .variants
            .iter()
            .map(|v| {
                let mut value = serde_json::json!({
                    "name": v.name,
                    "fleet": v.plan.fleet,
                    "broker": v.plan.broker,
                    "profile": v.plan.profile.name,
                });
                redact_json(&mut value);
                value
            })
            .collect(),
        runs: entries.clone(),
        started_at: rfc3339(started_at),
        ended_at: rfc3339(SystemTime::now()),
        status,
        reasons: reasons.clone(),
    };
    let path = dir.join(MANIFEST_FILE);
    let text = serde_json::to_string_pretty(&manifest).map_err(|source| ResultsError::Json {
        path: path.clone(),
        source,
    })?;
    std::fs::write(&path, text + "\n").map_err(ResultsError::io(&path))?;

    let mut summary = render_summary(&dir, status, &entries, &rows);
    summary.push_str(&render_thresholds(&thresholds));
    crate::report::write_report_line(&dir, &mut summary);
    Ok(AbReport {
        dir,
        status,
        reasons,
        runs: entries,
        compare: rows,
        thresholds,
        summary,
    })
}

/// Concatenates every CSV of the runs into one file of the same name in `dir`, with
/// `variant,repeat` in front. Runs are taken in order; a file a run lacks is skipped
/// for that run.
fn merge_csvs(dir: &Path, entries: &[RunEntry]) -> Result<(), ResultsError> {
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let Ok(read) = std::fs::read_dir(dir.join(&entry.dir)) else {
            continue;
        };
        let mut found: Vec<String> = read
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".csv"))
            .collect();
        found.sort();
        for name in found {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    for name in names {
        let path = dir.join(&name);
        let mut out = csv::Writer::from_path(&path).map_err(ResultsError::csv(&path))?;
        let mut header: Option<csv::StringRecord> = None;
        for entry in entries {
            let source = dir.join(&entry.dir).join(&name);
            let Ok(mut reader) = csv::Reader::from_path(&source) else {
                continue;
            };
            let theirs = reader
                .headers()
                .map_err(ResultsError::csv(&source))?
                .clone();
            match &header {
                None => {
                    let mut first = csv::StringRecord::from(vec!["variant", "repeat"]);
                    first.extend(theirs.iter());
                    out.write_record(&first).map_err(ResultsError::csv(&path))?;
                    header = Some(theirs);
                }
                Some(h) if *h != theirs => {
                    warn!(file = %source.display(), "columns differ from the first run's; not merged");
                    continue;
                }
                Some(_) => {}
            }
            let repeat = entry.repeat.to_string();
            for record in reader.records() {
                let record = record.map_err(ResultsError::csv(&source))?;
                let mut row = csv::StringRecord::from(vec![entry.variant.as_str(), &repeat]);
                row.extend(record.iter());
                out.write_record(&row).map_err(ResultsError::csv(&path))?;
            }
        }
        out.flush().map_err(ResultsError::io(&path))?;
    }
    Ok(())
}

/// The end-of-run text: the runs in order, then each verdict line.
fn render_summary(
    dir: &Path,
    status: RunStatus,
    entries: &[RunEntry],
    rows: &[CompareRow],
) -> String {
    let mut out = format!("A/B run {status}: {}\n", dir.display());
    for e in entries {
        out.push_str(&format!(
            "  run {:>2}  {:<16} r{}  {}{}\n",
            e.order,
            e.variant,
            e.repeat,
            e.status,
            if e.reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", e.reasons)
            }
        ));
    }
    let verdicts: Vec<&str> = rows
        .iter()
        .map(|r| r.verdict.as_str())
        .filter(|v| !v.is_empty())
        .collect();
    if !verdicts.is_empty() {
        out.push_str("verdicts (compare.csv has every metric):\n");
        for v in verdicts {
            out.push_str(&format!("  {v}\n"));
        }
    }
    out
}

/// Thresholds per variant: a check passes for a variant only if it passed in every run
/// of it; the failing runs are listed.
fn render_thresholds(runs: &[RunThresholds]) -> String {
    if runs.is_empty() {
        return String::new();
    }
    let failed: usize = runs
        .iter()
        .map(|r| r.outcomes.iter().filter(|o| !o.passed).count())
        .sum();
    let mut out = if failed == 0 {
        format!(
            "thresholds: every check passes in all {} runs\n",
            runs.len()
        )
    } else {
        format!("thresholds: {failed} FAILED (thresholds.csv has every run's outcomes)\n")
    };
    let mut variants: Vec<&str> = Vec::new();
    for r in runs {
        if !variants.contains(&r.variant.as_str()) {
            variants.push(&r.variant);
        }
    }
    for variant in variants {
        let mine: Vec<&RunThresholds> = runs.iter().filter(|r| r.variant == variant).collect();
        let mut checks: Vec<&str> = Vec::new();
        for r in &mine {
            for o in &r.outcomes {
                if !checks.contains(&o.check.as_str()) {
                    checks.push(&o.check);
                }
            }
        }
        for check in checks {
            let outcomes: Vec<(usize, &CheckOutcome)> = mine
                .iter()
                .flat_map(|r| {
                    r.outcomes
                        .iter()
                        .filter(|o| o.check == check)
                        .map(move |o| (r.repeat, o))
                })
                .collect();
            let failing: Vec<&(usize, &CheckOutcome)> =
                outcomes.iter().filter(|(_, o)| !o.passed).collect();
            if failing.is_empty() {
                out.push_str(&format!(
                    "  pass  {variant}: {check} (all {} runs)\n",
                    outcomes.len()
                ));
            } else {
                for (repeat, o) in failing {
                    out.push_str(&format!("  {variant} r{repeat}: {}\n", o.describe()));
                }
            }
        }
    }
    out
}
