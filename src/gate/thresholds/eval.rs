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
use crate::results::rows::{
    AgentRow, BrokerRow, CsvFile, ErrorRow, RecoveryRow, SummaryRow, TimeseriesRow, WritesRow,
};
use crate::results::{
    AGENTS_FILE, BROKER_FILE, ERRORS_FILE, RECOVERY_FILE, ReadError, RunDir, SUMMARY_FILE,
    TIMESERIES_FILE, WRITES_FILE,
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

/// The rows of one file of `files`, or return what `load` said instead.
macro_rules! rows {
    ($files:ident . $file:ident, $absent:expr) => {
        match load(&$files.dir, &mut $files.$file, $absent) {
            Ok(rows) => rows,
            Err(values) => return values,
        }
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
    if values.is_empty() {
        return Values::Absent(format!("no {metric} latencies in {SUMMARY_FILE}{within}"));
    }
    Values::PerPhase(values)
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
    if values.is_empty() {
        return Values::Absent(format!("no herd step in {RECOVERY_FILE}{within}"));
    }
    Values::PerPhase(values)
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

fn fanout(
    files: &mut RunFiles,
    kind: &str,
    field: &str,
    selected: &dyn Fn(&str) -> bool,
    within: &str,
) -> Values {
    let rows = rows!(
        files.writes,
        &format!("no {WRITES_FILE}: the scenario ran no write or exec step")
    );
    let rows: Vec<&WritesRow> = rows
        .iter()
        .filter(|r| r.kind == kind && selected(&r.step))
        .collect();
    if rows.is_empty() {
        return Values::Absent(format!("no {kind} writes in {WRITES_FILE}{within}"));
    }
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
    let rows = rows!(
        files.writes,
        &format!("no {WRITES_FILE}: the scenario ran no write or exec step")
    );
    let rows: Vec<&WritesRow> = rows.iter().filter(|r| selected(&r.step)).collect();
    if rows.is_empty() {
        return Values::Absent(format!("no write or exec step in {WRITES_FILE}{within}"));
    }
    if field == "unacked" {
        let sum: u64 = rows.iter().map(|r| r.writes.saturating_sub(r.acked)).sum();
        return Values::Total(sum as f64, String::new());
    }
    let total = match field {
        "missed" => |r: &WritesRow| r.missed,
        "duplicates" => |r: &WritesRow| r.duplicates,
        "stale_replays" => |r: &WritesRow| r.stale_replays,
        "redelivered" => |r: &WritesRow| r.redelivered,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thresholds::grammar::{Known, parse_check};

    fn known() -> Known {
        Known {
            consumers: vec!["jobs".to_string()],
            phases: [
                "0:setup",
                "1:start",
                "2:write",
                "3:broker_restart",
                "4:broker_restart",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    /// A run directory with hand-written files.
    fn run_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        dir
    }

    fn eval(dir: &Path, check: &str) -> CheckOutcome {
        let check = parse_check(check, &known()).expect("valid check");
        evaluate(dir, &[check]).remove(0)
    }

    const SUMMARY: &str = "phase,metric,unit,count,min,p50,p90,p99,p999,max,mean\n\
        1:start,ready,ms,30,400.000,480.000,490.000,495.500,495.500,495.500,470.000\n\
        3:broker_restart,resync,ms,30,500.000,550.000,570.000,580.000,580.000,580.000,555.000\n\
        4:broker_restart,resync,ms,30,500.000,650.000,670.000,1680.000,1680.000,1680.000,655.000\n";
    const RECOVERY: &str = "step,trigger,trigger_secs,agents,recovered,not_recovered,probe_writes,probe_writes_acked,first_probe_ack_secs,recovered_50_secs,recovered_90_secs,recovered_99_secs,recovered_100_secs,trigger_error\n\
        3:broker_restart,broker_restart,1.0,30,30,0,35,35,0.1,9.2,9.3,9.3,9.4,\n\
        4:broker_restart,broker_restart,20.0,30,29,1,35,35,0.1,9.2,9.3,,,\n";
    const ERRORS: &str = "phase,operation,kind,code,count,example\n\
        1:start,consumer_create.jobs,jetstream,10026,3,max consumers\n\
        3:broker_restart,watch.jobs,other,,20,missed idle heartbeat\n\
        4:broker_restart,watch.jobs,timeout,,2,timed out\n";
    const WRITES: &str = "step,kind,writes,acked,delivered,unintended,fanout_intended,fanout_total,missed,duplicates,stale_replays,redelivered,drained\n\
        2:write,pc,20,20,20,0,1.000,1.000,1,0,0,0,true\n\
        2:write,jobs,10,9,270,0,30.000,30.000,1,0,0,0,true\n";
    const BROKER: &str = "t_secs,step,ok,error,healthz,connections,total_connections,slow_consumers,mem_bytes,cpu_percent,streams,consumers,api_total,api_errors,api_inflight\n\
        0.0,1:start,true,,ok,2,2,0,1,0,6,0,23,12,0\n\
        1.0,2:write,true,,ok,32,32,0,1,0,6,210,300,12,0\n\
        2.0,3:broker_restart,false,Connection refused (os error 111),,,,,,,,,,,\n\
        3.0,3:broker_restart,true,,ok,32,32,0,1,0,6,150,90,60,4\n\
        4.0,3:broker_restart,true,,ok,32,32,0,1,0,6,210,400,190,0\n";
    const AGENTS: &str = "pc,group,state,reason,connects,last_splay_ms,last_resync_wait_ms\n\
        pc-1,g-1,ready,,2,,\npc-2,g-2,failed,timeout,1,,\npc-3,g-3,ready,,2,,\n";

    fn full() -> tempfile::TempDir {
        run_dir(&[
            ("summary.csv", SUMMARY),
            ("recovery.csv", RECOVERY),
            ("errors.csv", ERRORS),
            ("writes.csv", WRITES),
            ("broker.csv", BROKER),
            ("agents.csv", AGENTS),
        ])
    }

    #[test]
    fn latencies_pass_only_if_every_phase_passes() {
        let dir = full();
        let o = eval(dir.path(), "ready.p99 < 500ms");
        assert!(o.passed, "{o:?}");
        assert_eq!((o.value, o.phase.as_str()), (Some(495.5), "1:start"));
        let o = eval(dir.path(), "resync.p99 < 1s");
        assert!(!o.passed);
        assert_eq!(
            (o.value, o.phase.as_str()),
            (Some(1680.0), "4:broker_restart")
        );
        assert_eq!(o.note, "1 of 2 phases pass");
        let o = eval(dir.path(), "resync[3].p99 < 1s");
        assert!(o.passed, "{o:?}");
        // A lower bound reports the smallest value.
        let o = eval(dir.path(), "resync.p50 >= 500ms");
        assert!(o.passed);
        assert_eq!(o.value, Some(550.0));
        let o = eval(dir.path(), "ready.count == 30");
        assert!(o.passed);
    }

    #[test]
    fn a_valid_metric_the_run_did_not_measure_fails() {
        let dir = full();
        let o = eval(dir.path(), "delivery.jobs.p99 < 1s");
        assert!(!o.passed);
        assert_eq!(o.value, None);
        assert_eq!(
            o.note,
            "not measured: no delivery.jobs latencies in summary.csv"
        );
        let empty = run_dir(&[("summary.csv", SUMMARY)]);
        for check in [
            "recovery.p100 < 30s",
            "fanout.pc.ratio <= 1",
            "writes.missed == 0",
            "broker.api_errors == 0",
            "agents.failed == 0",
            "errors.total == 0",
        ] {
            let o = eval(empty.path(), check);
            assert!(
                !o.passed && o.note.starts_with("not measured"),
                "{check}: {o:?}"
            );
        }
    }

    #[test]
    fn recovery_never_reached_fails_any_upper_bound() {
        let dir = full();
        let o = eval(dir.path(), "recovery[3:broker_restart].p100 < 30s");
        assert!(o.passed);
        assert_eq!(o.value, Some(9400.0));
        let o = eval(dir.path(), "recovery.p100 < 1h");
        assert!(!o.passed);
        assert_eq!(o.phase, "4:broker_restart");
        assert!(o.value.is_some_and(f64::is_infinite));
        assert!(o.note.contains("never reached"), "{}", o.note);
        assert!(o.describe().contains("never"), "{}", o.describe());
        let o = eval(dir.path(), "recovery.p50 < 10s");
        assert!(o.passed);
    }

    #[test]
    fn counts_are_summed() {
        let dir = full();
        assert_eq!(eval(dir.path(), "errors.total == 25").value, Some(25.0));
        assert!(eval(dir.path(), "errors.total == 25").passed);
        assert_eq!(eval(dir.path(), "errors.timeout == 0").value, Some(2.0));
        assert_eq!(
            eval(dir.path(), "errors.jetstream_10026 == 0").value,
            Some(3.0)
        );
        assert_eq!(
            eval(dir.path(), "errors.jetstream_10008 == 0").value,
            Some(0.0)
        );
        assert_eq!(
            eval(dir.path(), "errors[broker_restart].total == 0").value,
            Some(22.0)
        );
        assert_eq!(eval(dir.path(), "writes.missed == 0").value, Some(1.0));
        assert_eq!(eval(dir.path(), "writes.unacked == 0").value, Some(1.0));
        assert_eq!(eval(dir.path(), "agents.failed == 0").value, Some(1.0));
        assert_eq!(eval(dir.path(), "agents.ready == 2").value, Some(2.0));
        assert_eq!(eval(dir.path(), "agents.unrecovered == 0").value, Some(1.0));
    }

    #[test]
    fn fanout_ratios_per_step() {
        let dir = full();
        let o = eval(dir.path(), "fanout.pc.ratio <= 1");
        assert!(o.passed);
        assert_eq!((o.value, o.phase.as_str()), (Some(1.0), "2:write"));
        let o = eval(dir.path(), "fanout.jobs.ratio <= 1");
        assert!(!o.passed);
        assert_eq!(o.value, Some(30.0));
        assert_eq!(
            eval(dir.path(), "fanout.jobs.unintended == 0").value,
            Some(0.0)
        );
    }

    #[test]
    fn broker_counters_survive_a_restart_and_gauges_take_the_maximum() {
        let dir = full();
        // 12 -> 12 (start to write); the refused sample shows a restart, so the 60 after
        // it is all increase (although above 12); then 60 -> 190: 0 + 60 + 130.
        let o = eval(dir.path(), "broker.api_errors == 0");
        assert_eq!(o.value, Some(190.0));
        assert!(o.note.contains("1 broker restart"), "{}", o.note);
        assert_eq!(
            eval(dir.path(), "broker[2:write].api_errors == 0").value,
            Some(0.0)
        );
        assert_eq!(
            eval(dir.path(), "broker[broker_restart].api_total == 0").value,
            Some(400.0)
        );
        assert_eq!(
            eval(dir.path(), "broker.consumers < 1000").value,
            Some(210.0)
        );
        assert_eq!(
            eval(dir.path(), "broker.api_inflight < 1000").value,
            Some(4.0)
        );
    }

    #[test]
    fn limit_reached_advisories_count_only_where_the_run_listened() {
        use crate::results::{
            FleetFigures, Manifest, ManifestBroker, ManifestHost, ManifestScenario, RunStatus,
            TIMESERIES_COLUMNS,
        };
        // Every column of timeseries.csv, `api_limit_reached` set.
        let timeseries = |rows: &[(&str, &str, &str)]| {
            let mut text = TIMESERIES_COLUMNS.join(",") + "\n";
            for (t, step, limit) in rows {
                let mut cells = vec!["0"; TIMESERIES_COLUMNS.len()];
                let at = |name| TIMESERIES_COLUMNS.iter().position(|c| *c == name).unwrap();
                cells[at("t_secs")] = t;
                cells[at("step")] = step;
                cells[at("api_limit_reached")] = limit;
                cells[at("step_marker")] = "";
                text += &(cells.join(",") + "\n");
            }
            text
        };
        let manifest = |counted: bool| {
            let m = Manifest {
                fleetsim_version: "0.1.0".to_string(),
                async_nats_version: "0.51".to_string(),
                scenario: ManifestScenario {
                    name: "t".to_string(),
                    path: None,
                    text: String::new(),
                },
                settings: serde_json::Value::Null,
                seed: 1,
                broker: Some(ManifestBroker {
                    kind: "external".to_string(),
                    url: "nats://h:4222".to_string(),
                    monitor_url: None,
                    version: None,
                    limits: Default::default(),
                    api_limit_reached_counted: counted,
                }),
                host: ManifestHost {
                    hostname: "h".to_string(),
                    os: "linux".to_string(),
                    cores: 1,
                    memory_bytes: None,
                },
                started_at: String::new(),
                ended_at: String::new(),
                duration_secs: 1.0,
                status: RunStatus::Ok,
                reasons: Vec::new(),
                fleet: FleetFigures::default(),
                process: Default::default(),
                phases: Vec::new(),
                files: Vec::new(),
            };
            serde_json::to_string(&m).expect("json")
        };
        let listened_series = timeseries(&[
            ("0.1", "1:start", "0"),
            ("0.2", "1:start", "3"),
            ("0.3", "1:start", "2"),
            ("5.0", "3:broker_restart", "4"),
        ]);
        let listened = manifest(true);
        let dir = run_dir(&[
            ("timeseries.csv", &listened_series),
            ("manifest.json", &listened),
        ]);
        let o = eval(dir.path(), "broker.api_limit_reached == 0");
        assert_eq!((o.value, o.passed), (Some(9.0), false), "{o:?}");
        let o = eval(dir.path(), "broker[1:start].api_limit_reached <= 5");
        assert_eq!((o.value, o.passed), (Some(5.0), true), "{o:?}");

        // No system-account listener: a zero would be a guess, so the gate fails.
        let deaf = manifest(false);
        let dir = run_dir(&[
            ("timeseries.csv", &timeseries(&[("0.1", "1:start", "0")])),
            ("manifest.json", &deaf),
        ]);
        let o = eval(dir.path(), "broker.api_limit_reached == 0");
        assert!(!o.passed && o.value.is_none(), "{o:?}");
        assert!(o.note.contains("FLEETSIM_SYSTEM_URL"), "{}", o.note);
    }

    #[test]
    fn a_malformed_file_fails_its_checks_naming_file_and_line() {
        let bad = SUMMARY.replace("495.500,495.500,495.500", "495.500,fast,495.500");
        let dir = run_dir(&[("summary.csv", &bad), ("errors.csv", ERRORS)]);
        let o = eval(dir.path(), "ready.p99 < 500ms");
        assert!(!o.passed && o.value.is_none(), "{o:?}");
        assert!(o.note.contains("summary.csv: line 2"), "{}", o.note);
        // A check reading another file is unaffected.
        assert!(eval(dir.path(), "errors.total == 25").passed);
    }
}
