//! Shared helpers for integration tests: run a scenario text against a real embedded
//! nats-server (fleetsim starts it on loopback with free ports and a temp store dir, and
//! stops it) and read the run directory back.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use fleetsim::results::rows::*;
use fleetsim::results::*;
use fleetsim::run::{RunOptions, RunReport};

/// Runs `scenario` (TOML text) to completion; results go under `out`.
pub async fn run_scenario(scenario: &str, out: &Path) -> RunReport {
    let plan =
        fleetsim::scenario::parse_str(scenario, "test.toml").expect("test scenario is valid");
    let options = RunOptions {
        scenario_path: None,
        scenario_text: scenario.to_string(),
        results_base: out.to_path_buf(),
        run_dir: None,
        proxy_program: Some(env!("CARGO_BIN_EXE_fleetsim").into()),
    };
    fleetsim::run::run(plan, options, std::future::pending())
        .await
        .expect("run reaches its results")
}

/// Reads a CSV file of a run into rows of (header -> value).
///
/// The file is first read through the run directory's own reader as the writer's row
/// type (`deny_unknown_fields`), so a column added, renamed or dropped on either side
/// fails the test that reads it, even one that looks at a single cell.
pub fn read_csv(dir: &Path, name: &str) -> Vec<std::collections::HashMap<String, String>> {
    assert_typed(dir, name);
    let mut reader =
        csv::Reader::from_path(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let headers = reader.headers().expect("csv header").clone();
    reader
        .records()
        .map(|r| {
            let r = r.expect("csv row");
            headers
                .iter()
                .map(String::from)
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect()
}

/// Every row of `R`'s file in `dir`, typed (`deny_unknown_fields`); panics naming the
/// file and line otherwise.
pub fn rows<R: CsvFile>(dir: &Path) -> Vec<R> {
    RunDir::new(dir).rows().unwrap_or_else(|e| panic!("{e}"))
}

/// The rows of `R`'s file where an A/B run may have merged it (`variant,repeat` first).
pub fn merged_rows<R: CsvFile>(dir: &Path) -> Vec<Merged<R>> {
    RunDir::new(dir)
        .merged_rows()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A single run's `manifest.json`, typed (`deny_unknown_fields`).
pub fn manifest(dir: &Path) -> Manifest {
    RunDir::new(dir)
        .manifest()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Reads `dir/name` as the row type its writer uses, when it is a file of the run
/// directory; a file this list does not know is a test that needs a new entry.
fn assert_typed(dir: &Path, name: &str) {
    fn check<R: CsvFile>(dir: &Path) {
        merged_rows::<R>(dir);
    }
    match name {
        SUMMARY_FILE => check::<SummaryRow>(dir),
        ERRORS_FILE => check::<ErrorRow>(dir),
        AGENTS_FILE => check::<AgentRow>(dir),
        STEPS_FILE => check::<StepRow>(dir),
        TIMESERIES_FILE => check::<TimeseriesRow>(dir),
        RECOVERY_FILE => check::<RecoveryRow>(dir),
        UNRECOVERED_FILE => check::<UnrecoveredRow>(dir),
        WRITES_FILE => check::<WritesRow>(dir),
        RECONCILE_FILE => check::<ReconcileRow>(dir),
        BROKER_FILE => check::<BrokerRow>(dir),
        THRESHOLDS_FILE => check::<ThresholdRow>(dir),
        RUNS_FILE => check::<RunEntry>(dir),
        COMPARE_FILE => check::<fleetsim::ab_stats::CompareRow>(dir),
        SWEEP_FILE => check::<fleetsim::sweep::SweepRow>(dir),
        other => panic!("{other}: not a file of a run directory (add its row type here)"),
    }
}

pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub type Row = std::collections::HashMap<String, String>;

/// The `steps.csv` row of step `label` (e.g. `"2:wait_ready"`).
pub fn step_row<'a>(rows: &'a [Row], label: &str) -> &'a Row {
    rows.iter()
        .find(|r| r["step"] == label)
        .unwrap_or_else(|| panic!("no row for step {label}"))
}

/// A numeric cell.
pub fn num(row: &Row, col: &str) -> u64 {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col} = {:?} is not a number", row[col]))
}

/// A decimal cell.
pub fn float(row: &Row, col: &str) -> f64 {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col} = {:?} is not a number", row[col]))
}

/// The `summary.csv` row of `metric` in `phase`.
pub fn summary_row<'a>(rows: &'a [Row], metric: &str, phase: &str) -> &'a Row {
    rows.iter()
        .find(|r| r["metric"] == metric && r["phase"] == phase)
        .unwrap_or_else(|| panic!("no summary row for {metric} in {phase}"))
}

/// The one directory a run (or sweep) wrote under `out`.
pub fn only_dir_in(out: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap_or_else(|e| panic!("{}: {e}", out.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(
        dirs.len(),
        1,
        "one directory under {}: {dirs:?}",
        out.display()
    );
    dirs.into_iter().next().expect("checked")
}

/// Every file under `dir`, at any depth.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// `secret` is in neither what the process printed nor any file under `dir`.
pub fn assert_secret_nowhere(secret: &str, printed: &str, dir: &Path) {
    assert!(
        !printed.contains(secret),
        "the secret was printed:\n{printed}"
    );
    for file in files_under(dir) {
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "{} holds the secret",
            file.display()
        );
    }
}

/// A child process of this test process whose command name starts with `name` and that
/// is still running (not a zombie), by pid.
pub fn running_child(name: &str) -> Option<String> {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    for task in tasks {
        let children = std::fs::read_to_string(task.expect("task").path().join("children"))
            .unwrap_or_default();
        for pid in children.split_whitespace() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if comm.starts_with(name) && !stat.contains(") Z ") {
                return Some(pid.to_string());
            }
        }
    }
    None
}
