//! Fleet-size sweeps end to end: one row per size read from real runs, consumers exactly
//! 7 per agent, and the knee found where a limit of the broker is crossed.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{num, read_csv};

/// A cold start, then a hold. `default_max_consumers = 100` is the artificially tight
/// limit: at cold start a kanade agent holds three consumers on the schedules stream
/// (its watch and two walks' keys() consumers), so 34 agents fill it and the 40-agent
/// fleet cannot all come up (nats-server's own default is 1,000 per stream, the same
/// incident at 334 agents).
const SCENARIO: &str = r#"
name = "sweep-test"
[broker]
default_max_consumers = 100
[fleet]
agents = 1
groups = 2
catalog_entries = 3
setup_retries = 0
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "30s"
"#;

#[test]
fn a_sweep_writes_a_row_per_size_and_finds_the_knee() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stdout, sweep_dir) = sweep(&dir, SCENARIO, &["--agents", "10,20,40"]);
    assert!(stdout.contains("knee: 40 agents"), "{stdout}");
    let rows = read_csv(&sweep_dir, "sweep.csv");
    let sizes: Vec<u64> = rows.iter().map(|r| num(r, "agents")).collect();
    assert_eq!(sizes, [10, 20, 40]);
    for row in &rows[..2] {
        assert_eq!(row["status"], "ok", "{row:?}");
        assert_eq!(num(row, "consumers"), 7 * num(row, "agents"), "{row:?}");
        assert_eq!(row["errors_total"], "0");
    }
    let knee = &rows[2];
    assert_eq!(knee["status"], "failed", "{knee:?}");
    assert!(knee["errors_by_kind"].contains("jetstream"), "{knee:?}");
    assert!(knee["reasons"].contains("agents failed"), "{knee:?}");

    let sizing = std::fs::read_to_string(sweep_dir.join("sizing.md")).expect("sizing.md");
    assert!(sizing.contains("**Knee: 40 agents**"), "{sizing}");
    assert!(sizing.contains("| 10 | measured | 70 |"), "{sizing}");
    assert!(
        sizing.contains("| 3000 | *extrapolated* | 21000 |"),
        "{sizing}"
    );

    // The same figures in the sweep's report.html, charted over fleet size.
    let report = std::fs::read_to_string(sweep_dir.join("report.html")).expect("report.html");
    assert!(report.contains("knee: 40 agents"), "{report}");
    assert!(
        report.contains("<strong>Knee: 40 agents</strong>"),
        "{report}"
    );
    assert!(
        report.contains("<td><em>extrapolated</em></td>"),
        "{report}"
    );
    for chart in [
        "sweep-consumers",
        "sweep-broker-memory",
        "sweep-api",
        "sweep-latency",
    ] {
        assert!(report.contains(&format!("id=\"chart-{chart}\"")), "{chart}");
        assert!(
            sweep_dir.join(format!("charts/{chart}.svg")).is_file(),
            "{chart}"
        );
    }
}

/// A sweep whose runs all succeed but whose `[thresholds]` stop holding past a size: the
/// knee is the first size that breaks a threshold, and the sweep stops there when asked.
const TIGHT_THRESHOLD: &str = r#"
name = "sweep-threshold-test"
[fleet]
agents = 1
groups = 2
catalog_entries = 3
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "30s"
[thresholds]
checks = ["agents.ready < 30"]
"#;

#[test]
fn a_failed_threshold_marks_the_knee_and_stop_at_knee_stops_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stdout, sweep_dir) = sweep(
        &dir,
        TIGHT_THRESHOLD,
        &["--agents", "10,20,40,80", "--stop-at-knee"],
    );
    assert!(stdout.contains("knee: 40 agents"), "{stdout}");
    let rows = read_csv(&sweep_dir, "sweep.csv");
    let sizes: Vec<u64> = rows.iter().map(|r| num(r, "agents")).collect();
    assert_eq!(sizes, [10, 20, 40], "stops at the knee, 80 never runs");
    for row in &rows[..2] {
        assert_eq!(row["status"], "ok", "{row:?}");
    }
    let knee = &rows[2];
    assert_eq!(knee["status"], "threshold_failed", "{knee:?}");
    assert_eq!(knee["errors_total"], "0", "{knee:?}");
    assert!(knee["reasons"].contains("agents.ready < 30"), "{knee:?}");
}

#[test]
fn sweep_sizes_must_be_positive_numbers() {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetsim"))
        .args(["sweep", "x.toml", "--agents", "20,zero"])
        .output()
        .expect("fleetsim runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"zero\" is not a fleet size"));
}

/// Runs `fleetsim sweep` on `scenario` in `dir` with `args`, expecting exit 0; returns
/// its stdout and the one sweep directory it wrote.
fn sweep(dir: &tempfile::TempDir, scenario: &str, args: &[&str]) -> (String, PathBuf) {
    std::fs::write(dir.path().join("sweep.toml"), scenario).expect("scenario");
    let out = Command::new(env!("CARGO_BIN_EXE_fleetsim"))
        .args(["sweep", "sweep.toml", "--out", "out"])
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("fleetsim runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    (stdout, common::only_dir_in(&dir.path().join("out")))
}
