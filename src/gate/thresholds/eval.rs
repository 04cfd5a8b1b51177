//! Evaluating checks against a finished run directory.
//!
//! The values are read back from the files the run wrote (`summary.csv`, `errors.csv`,
//! `recovery.csv`, `writes.csv`, `broker.csv`, `agents.csv`), not from memory, so a
//! threshold means exactly what the committed files show and any run directory can be
//! checked again later.
//!
//! Where a check covers several phases or steps (no `[phase]`, or a step kind that
//! several steps share), latencies, recovery times and fan-out ratios are checked in
//! each one and the check passes only if it passes in all of them: the value reported
//! is the first failing one, else the worst (the largest for `<`/`<=`, the smallest for
//! `>`/`>=`). Counts (errors, writes, broker counters) are summed over what is covered.
//! A name the scenario allows but the run did not measure fails with a "not measured"
//! note: a gate must not pass on a metric that was never there.

use std::path::Path;

use serde::Serialize;

use super::grammar::{BROKER_ADVISORIES, BROKER_COUNTERS, Check, Op, Source, Unit, phase_matches};
use crate::results::counts::RUN_PHASE;
use crate::results::rows::{
    AgentRow, BrokerRow, CountRow, CsvFile, ErrorRow, RecoveryRow, SummaryRow, TimeseriesRow,
    WritesRow,
};
use crate::results::{
    AGENTS_FILE, BROKER_FILE, COUNTS_FILE, ERRORS_FILE, RECOVERY_FILE, ReadError, RunDir,
    SUMMARY_FILE, TIMESERIES_FILE, WRITES_FILE,
};

/// The outcome of one check in one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckOutcome {
    /// The check as written.
    pub check: String,
    /// The measured value in [`CheckOutcome::unit`]; `None` when not measured, infinite when
    /// a recovery share was never reached.
    pub value: Option<f64>,
    pub limit: f64,
    pub unit: Unit,
    pub passed: bool,
    /// The phase or step the value comes from (empty for whole-run counts).
    pub phase: String,
    /// Why it failed or what the value covers ("not measured: ...").
    pub note: String,
}

impl CheckOutcome {
    /// `FAIL recovery.p100 < 30s: 41.20 s in 4:broker_restart (limit 30.00 s)`.
    pub fn describe(&self) -> String {
        let verdict = if self.passed { "pass" } else { "FAIL" };
        let Some(value) = self.value else {
            // The note says why: "not measured: ...".
            return format!("{verdict}  {}: {}", self.check, self.note);
        };
        let mut text = format!("{verdict}  {}: {}", self.check, self.unit.show(value));
        if !self.phase.is_empty() {
            text.push_str(&format!(" in {}", self.phase));
        }
        if !self.note.is_empty() {
            text.push_str(&format!(" ({})", self.note));
        }
        text
    }
}

/// A file's rows, read once on first use; `Err` holds what to report instead of a value
/// (not measured, or unreadable).
type Loaded<R> = Option<Result<Vec<R>, Values>>;

/// The files of a run directory, each read once, on first use, through the one reader.
struct RunFiles {
    dir: RunDir,
    summary: Loaded<SummaryRow>,
    errors: Loaded<ErrorRow>,
    agents: Loaded<AgentRow>,
    recovery: Loaded<RecoveryRow>,
    writes: Loaded<WritesRow>,
    broker: Loaded<BrokerRow>,
    timeseries: Loaded<TimeseriesRow>,
    counts: Loaded<CountRow>,
}

/// The rows of `R`'s file from `slot`, reading it the first time. A missing file is
/// "not measured" (`absent` says what that means); a malformed one fails the check with
/// the reader's error, which names the file and line.
fn load<'s, R: CsvFile>(
    dir: &RunDir,
    slot: &'s mut Loaded<R>,
    absent: &str,
) -> Result<&'s [R], Values> {
    let loaded = slot.get_or_insert_with(|| match dir.rows_if_present::<R>() {
        Ok(Some(rows)) => Ok(rows),
        Ok(None) => Err(Values::Absent(absent.to_string())),
        Err(e) => Err(Values::Unreadable(e.to_string())),
    });
    match loaded {
        Ok(rows) => Ok(rows),
        Err(values) => Err(values.clone()),
    }
}

/// The `Ok` value, or return the `Err` [`Values`] (what a check reports instead).
macro_rules! or_return {
    ($result:expr) => {
        match $result {
            Ok(rows) => rows,
            Err(values) => return values,
        }
    };
}

/// The rows of one file of `files`, or return what `load` said instead.
macro_rules! rows {
    ($files:ident . $file:ident, $absent:expr) => {
        or_return!(load(&$files.dir, &mut $files.$file, $absent))
    };
}

/// Evaluates every check against the run directory `dir`.
pub fn evaluate(dir: &Path, checks: &[Check]) -> Vec<CheckOutcome> {
    let mut files = RunFiles {
        dir: RunDir::new(dir),
        summary: None,
        errors: None,
        agents: None,
        recovery: None,
        writes: None,
        broker: None,
        timeseries: None,
        counts: None,
    };
    checks.iter().map(|c| evaluate_one(&mut files, c)).collect()
}

/// What a source yielded: values per phase/step, or why there are none.
#[derive(Debug, Clone)]
enum Values {
    /// (phase or step label, value), in file order.
    PerPhase(Vec<(String, f64)>),
    /// One whole value (a sum or a maximum) over what the check covers.
    Total(f64, String),
    /// Not measured: the run did not write what the check needs.
    Absent(String),
    /// A file the check needs exists but cannot be read (the error names file and line).
    Unreadable(String),
}

fn evaluate_one(files: &mut RunFiles, check: &Check) -> CheckOutcome {
    let mut outcome = CheckOutcome {
        check: check.text.clone(),
        value: None,
        limit: check.limit,
        unit: check.unit(),
        passed: false,
        phase: String::new(),
        note: String::new(),
    };
    let selected = |label: &str| {
        check
            .phase
            .as_deref()
            .is_none_or(|p| phase_matches(p, label))
    };
    let within = match &check.phase {
        Some(p) => format!(" in phase {p}"),
        None => String::new(),
    };
    let values = match &check.source {
        Source::Latency { metric, stat } => latency(files, metric, stat, &selected, &within),
        Source::Recovery { pct } => recovery(files, *pct, &selected, &within),
        Source::Errors { kind, code } => errors(files, kind, *code, &selected),
        Source::Fanout { kind, field } => fanout(files, kind, field, &selected, &within),
        Source::Writes { field } => writes(files, field, &selected, &within),
        Source::Broker { field } => broker(files, field, &selected, &within),
        Source::Agents { field } => agents(files, field),
        Source::Count { figure } => counts(files, figure, check.phase.as_deref()),
    };
    match values {
        Values::Absent(why) => {
            outcome.note = format!("not measured: {why}");
        }
        Values::Unreadable(why) => {
            outcome.note = format!("unreadable: {why}");
        }
        Values::Total(value, note) => {
            outcome.value = Some(value);
            outcome.passed = check.op.holds(value, check.limit);
            outcome.note = note;
        }
        Values::PerPhase(values) => {
            let failing = values
                .iter()
                .find(|(_, v)| !check.op.holds(*v, check.limit));
            let (label, value) = match failing {
                Some(f) => f.clone(),
                None => worst(&values, check.op),
            };
            outcome.value = Some(value);
            outcome.phase = label;
            outcome.passed = failing.is_none();
            if values.len() > 1 {
                outcome.note = format!(
                    "{} of {} phases pass",
                    values
                        .iter()
                        .filter(|(_, v)| check.op.holds(*v, check.limit))
                        .count(),
                    values.len()
                );
            }
            if value.is_infinite() {
                let never = "never reached: agents did not recover (see recovery.csv)";
                outcome.note = if outcome.note.is_empty() {
                    never.to_string()
                } else {
                    format!("{never}; {}", outcome.note)
                };
            }
        }
    }
    outcome
}

/// The largest value for upper bounds, the smallest for lower bounds, else the first.
fn worst(values: &[(String, f64)], op: Op) -> (String, f64) {
    let pick = |better: fn(f64, f64) -> bool| {
        values.iter().fold(values[0].clone(), |w, v| {
            if better(v.1, w.1) { v.clone() } else { w }
        })
    };
    match op {
        Op::Lt | Op::Le => pick(|a, b| a > b),
        Op::Gt | Op::Ge => pick(|a, b| a < b),
        Op::Eq | Op::Ne => values[0].clone(),
    }
}

/// The values found per phase, or why there are none.
fn per_phase(values: Vec<(String, f64)>, absent: impl FnOnce() -> String) -> Values {
    if values.is_empty() {
        Values::Absent(absent())
    } else {
        Values::PerPhase(values)
    }
}

fn latency(
    files: &mut RunFiles,
    metric: &str,
    stat: &str,
    selected: &dyn Fn(&str) -> bool,
    within: &str,
) -> Values {
    let rows = rows!(files.summary, &format!("no {SUMMARY_FILE}"));
    let values: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| r.metric == metric && selected(&r.phase))
        .filter_map(|r| Some((r.phase.clone(), r.stat(stat)?)))
        .collect();
    per_phase(values, || {
        format!("no {metric} latencies in {SUMMARY_FILE}{within}")
    })
}

fn recovery(
    files: &mut RunFiles,
    pct: u32,
    selected: &dyn Fn(&str) -> bool,
    within: &str,
) -> Values {
    let rows = rows!(
        files.recovery,
        &format!("no {RECOVERY_FILE}: the scenario ran no herd step")
    );
    let values: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| selected(&r.step))
        .map(|r| {
            // An empty cell: that share of the agents never recovered.
            let secs = r.recovered_secs(pct).flatten();
            (r.step.clone(), secs.map_or(f64::INFINITY, |s| s * 1000.0))
        })
        .collect();
    per_phase(values, || {
        format!("no herd step in {RECOVERY_FILE}{within}")
    })
}

fn errors(
    files: &mut RunFiles,
    kind: &str,
    code: Option<u64>,
    selected: &dyn Fn(&str) -> bool,
) -> Values {
    let rows = rows!(files.errors, &format!("no {ERRORS_FILE}"));
    let total: u64 = rows
        .iter()
        .filter(|r| selected(&r.phase))
        .filter(|r| kind == "total" || r.kind == kind)
        .filter(|r| code.is_none_or(|c| r.code == Some(c)))
        .map(|r| r.count)
        .sum();
    Values::Total(total as f64, String::new())
}

/// The rows of `writes.csv` that `keep` selects; `Err` with what to report when the
/// file is missing or unreadable, or `absent` when no row is selected.
fn write_rows(
    files: &mut RunFiles,
    keep: impl Fn(&WritesRow) -> bool,
    absent: impl FnOnce() -> String,
) -> Result<Vec<&WritesRow>, Values> {
    let rows = load(
        &files.dir,
        &mut files.writes,
        &format!("no {WRITES_FILE}: the scenario ran no write or exec step"),
    )?;
    let rows: Vec<&WritesRow> = rows.iter().filter(|r| keep(r)).collect();
    if rows.is_empty() {
        return Err(Values::Absent(absent()));
    }
    Ok(rows)
}

fn fanout(
    files: &mut RunFiles,
    kind: &str,
    field: &str,
    selected: &dyn Fn(&str) -> bool,
    within: &str,
) -> Values {
    let rows = or_return!(write_rows(
        files,
        |r| r.kind == kind && selected(&r.step),
        || format!("no {kind} writes in {WRITES_FILE}{within}"),
    ));
    let ratio = match field {
        "ratio" => |r: &WritesRow| r.fanout_total.0,
        "intended" => |r: &WritesRow| r.fanout_intended.0,
        _ => {
            let sum: u64 = rows.iter().map(|r| r.unintended).sum();
            return Values::Total(sum as f64, String::new());
        }
    };
    Values::PerPhase(rows.iter().map(|r| (r.step.clone(), ratio(r))).collect())
}

fn writes(
    files: &mut RunFiles,
    field: &str,
    selected: &dyn Fn(&str) -> bool,
    within: &str,
) -> Values {
    let rows = or_return!(write_rows(
        files,
        |r| selected(&r.step),
        || format!("no write or exec step in {WRITES_FILE}{within}"),
    ));
    if field == "unacked" {
        let sum: u64 = rows.iter().map(|r| r.writes.saturating_sub(r.acked)).sum();
        return Values::Total(sum as f64, String::new());
    }
    let total = match field {
        "missed" => |r: &WritesRow| r.missed,
        "superseded" => |r: &WritesRow| r.superseded,
        "duplicates" => |r: &WritesRow| r.duplicates,
        "stale_replays" => |r: &WritesRow| r.stale_replays,
        "redelivered" => |r: &WritesRow| r.redelivered,
        "retries" => |r: &WritesRow| r.retries,
        _ => return Values::Absent(format!("no {field} column in {WRITES_FILE}")),
    };
    // The reconciliation totals are the step's, repeated on each of its kind rows.
    let mut seen: Vec<&str> = Vec::new();
    let mut sum = 0;
    for r in rows {
        if !seen.contains(&r.step.as_str()) {
            seen.push(&r.step);
            sum += total(r);
        }
    }
    Values::Total(sum as f64, String::new())
}

fn broker(
    files: &mut RunFiles,
    field: &str,
    selected: &dyn Fn(&str) -> bool,
    within: &str,
) -> Values {
    if BROKER_ADVISORIES.contains(&field) {
        return advisories(files, selected);
    }
    let rows = rows!(
        files.broker,
        &format!("no {BROKER_FILE}: no monitoring endpoint")
    );
    if !rows.iter().any(|r| r.ok && selected(&r.step)) {
        return Values::Absent(format!(
            "no successful broker samples in {BROKER_FILE}{within}"
        ));
    }
    if BROKER_COUNTERS.contains(&field) {
        // The increase between consecutive successful samples, charged to the later
        // one's step. A broker restart resets the counters: it shows as a refused
        // connection in the failed samples between the two, or as a counter that went
        // down; then the later value is all increase.
        let mut sum = 0.0;
        let mut resets = 0;
        let mut before: Option<f64> = None;
        let mut was_down = false;
        for r in rows {
            if !r.ok {
                was_down |= r.error.to_ascii_lowercase().contains("connection refused");
                continue;
            }
            let Some(after) = r.figure(field) else {
                continue;
            };
            if let Some(b) = before
                && selected(&r.step)
            {
                if was_down || after < b {
                    sum += after;
                    resets += 1;
                } else {
                    sum += after - b;
                }
            }
            before = Some(after);
            was_down = false;
        }
        let note = if resets > 0 {
            format!("increase across {resets} broker restart(s)")
        } else {
            String::new()
        };
        return Values::Total(sum, note);
    }
    let max = rows
        .iter()
        .filter(|r| r.ok && selected(&r.step))
        .filter_map(|r| r.figure(field))
        .fold(0.0, f64::max);
    Values::Total(max, "maximum over the samples".to_string())
}

/// `api_limit_reached` from `timeseries.csv`, summed over the selected steps; not
/// measured when the run had no system-account listener (a zero would then mean
/// nothing).
fn advisories(files: &mut RunFiles, selected: &dyn Fn(&str) -> bool) -> Values {
    let counted = match files.dir.manifest() {
        Ok(m) => m.broker.is_some_and(|b| b.api_limit_reached_counted),
        Err(ReadError::Missing { .. }) => false,
        Err(e) => return Values::Unreadable(e.to_string()),
    };
    if !counted {
        return Values::Absent(
            "the run did not listen in the broker's system account (set FLEETSIM_SYSTEM_URL \
             for an external broker; see manifest.json broker.api_limit_reached_counted)"
                .to_string(),
        );
    }
    let rows = rows!(files.timeseries, &format!("no {TIMESERIES_FILE}"));
    let sum: u64 = rows
        .iter()
        .filter(|r| selected(&r.step))
        .map(|r| r.api_limit_reached)
        .sum();
    Values::Total(sum as f64, String::new())
}

fn agents(files: &mut RunFiles, field: &str) -> Values {
    if field == "unrecovered" {
        let rows = rows!(
            files.recovery,
            &format!("no {RECOVERY_FILE}: the scenario ran no herd step")
        );
        if rows.is_empty() {
            return Values::Absent(format!("no herd step in {RECOVERY_FILE}"));
        }
        let sum: usize = rows.iter().map(|r| r.not_recovered).sum();
        return Values::Total(sum as f64, String::new());
    }
    let rows = rows!(files.agents, &format!("no {AGENTS_FILE}"));
    let count = rows.iter().filter(|r| r.state == field).count();
    Values::Total(count as f64, String::new())
}

/// A `counts.csv` figure: the whole run's (`run`) without `[phase]` when it has one,
/// else every selected phase's. An `api.<kind>` figure a phase has no row for is 0
/// there when the phase's API requests were recorded (the audit lists the kinds that
/// occurred).
fn counts(files: &mut RunFiles, figure: &str, phase: Option<&str>) -> Values {
    let rows = rows!(
        files.counts,
        &format!("no {COUNTS_FILE}: a run by a fleetsim before counts")
    );
    let selected = |label: &str| match phase {
        Some(p) => label == p || phase_matches(p, label),
        None => true,
    };
    let mut phases: Vec<&str> = Vec::new();
    for r in rows.iter().filter(|r| selected(&r.phase)) {
        if !phases.contains(&r.phase.as_str()) {
            phases.push(&r.phase);
        }
    }
    if phase.is_none() && phases.contains(&RUN_PHASE) {
        let has_run_row = rows
            .iter()
            .any(|r| r.phase == RUN_PHASE && r.figure == figure);
        let api_recorded = rows
            .iter()
            .any(|r| r.phase == RUN_PHASE && r.figure == "api.total_per_agent" && r.exact);
        if has_run_row || (figure.starts_with("api.") && api_recorded) {
            phases = vec![RUN_PHASE];
        } else {
            phases.retain(|p| *p != RUN_PHASE);
        }
    }
    let values: Vec<(String, f64)> = phases
        .into_iter()
        .filter_map(|p| {
            let in_phase = |f: &str| rows.iter().find(|r| r.phase == p && r.figure == f);
            match in_phase(figure) {
                Some(r) => Some((p.to_string(), r.value)),
                None if figure.starts_with("api.")
                    && in_phase("api.total_per_agent").is_some_and(|r| r.exact) =>
                {
                    Some((p.to_string(), 0.0))
                }
                None => None,
            }
        })
        .collect();
    per_phase(values, || match phase {
        Some(p) => format!(
            "no {figure} in {COUNTS_FILE} in phase {p} (a wait_ready's counts are in the phase of the step before it)"
        ),
        None => format!("no {figure} in {COUNTS_FILE}"),
    })
}

#[cfg(test)]
mod tests;
