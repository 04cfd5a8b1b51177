//! fleetsim as a CI gate, through the binary as a pipeline runs it: `[thresholds]` decide
//! the exit code and land in thresholds.csv, JUnit and JSON; `fleetsim compare` catches
//! a regression against a baseline; `scripts/ci-gate.sh --no-docker` runs end to end;
//! the docker files say what the gate needs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fleetsim, project_root, text};
use serde::Deserialize;

/// How many checks `scenarios/ci-gate.toml`'s `[thresholds]` holds.
fn ci_gate_checks() -> usize {
    let path = project_root().join("scenarios/ci-gate.toml");
    let scenario: toml::Table = std::fs::read_to_string(&path)
        .expect("scenarios/ci-gate.toml")
        .parse()
        .expect("TOML");
    let checks = scenario["thresholds"]["checks"]
        .as_array()
        .expect("[thresholds] checks");
    assert!(!checks.is_empty(), "the gate has checks");
    checks.len()
}

/// A row of `thresholds.csv`; unknown columns fail the test.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdRow {
    check: String,
    value: String,
    limit: String,
    unit: String,
    result: String,
    phase: String,
    note: String,
}

/// A row of an A/B run's merged `thresholds.csv`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MergedThresholdRow {
    variant: String,
    repeat: usize,
    check: String,
    #[allow(dead_code)]
    value: String,
    #[allow(dead_code)]
    limit: String,
    #[allow(dead_code)]
    unit: String,
    result: String,
    #[allow(dead_code)]
    phase: String,
    note: String,
}

fn rows<R: for<'de> Deserialize<'de>>(path: &Path) -> Vec<R> {
    csv::Reader::from_path(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .deserialize()
        .map(|r| r.expect("row"))
        .collect()
}

/// The one run directory under `out`.
fn run_dir(out: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .expect("out dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

fn junit(path: &Path) -> junit_parser::TestSuites {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    junit_parser::from_reader(std::io::BufReader::new(file)).expect("valid JUnit XML")
}

/// A small run with a cold start, per-PC writes and a quick herd (client_reconnect):
/// every family of metric a threshold can name, in a few seconds.
const RUN: &str = r#"name = "gate-test"
[fleet]
agents = 12
groups = 3
catalog_entries = 3

[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "60s"
[[steps]]
kind = "write"
target = "pc"
rate = 40
count = 12
drain_timeout = "2s"
[[steps]]
kind = "client_reconnect"
recover_timeout = "60s"
[[steps]]
kind = "wait_ready"
timeout = "60s"
"#;

const PASSING: &str = r#"
[thresholds]
checks = [
  "ready.p99 < 60s",
  "consumer_create.jobs[1:start].max < 60s",
  "recovery.p100 < 60s",
  "errors.timeout == 0",
  "fanout.pc.ratio <= 100%",
  "writes.missed == 0",
  "broker[start].api_errors == 0",
  "agents.failed == 0",
  "ready.count == 12",
]
"#;

const FAILING: &str = r#"
[thresholds]
checks = [
  "ready.p99 < 60s",
  "ready.p50 < 1ms",
  "agents.ready < 12",
  "delivery.jobs.p99 < 1s",
]
"#;

#[test]
fn passing_thresholds_exit_0_with_a_row_and_a_junit_case_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("gate.toml"), format!("{RUN}{PASSING}")).expect("write");
    let out = fleetsim(
        &[
            "run",
            "gate.toml",
            "--out",
            "out",
            "--junit",
            "junit.xml",
            "--json",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // --json: stdout is one JSON document and nothing else.
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", text(&out.stdout)));
    assert_eq!(json["status"], "ok");
    assert_eq!(json["passed"], true);
    assert_eq!(json["exit_code"], 0);
    assert_eq!(json["thresholds"].as_array().map(Vec::len), Some(9));
    assert!(
        json["metrics"]
            .as_array()
            .is_some_and(|m| m.iter().any(|r| r["metric"] == "recovery")),
        "{json:#}"
    );
    // The table went to stderr instead.
    assert!(
        text(&out.stderr).contains("thresholds: all 9 pass"),
        "{}",
        text(&out.stderr)
    );

    let run = run_dir(&dir.path().join("out"));
    let found: Vec<ThresholdRow> = rows(&run.join("thresholds.csv"));
    assert_eq!(found.len(), 9);
    for row in &found {
        assert_eq!(row.result, "pass", "{row:?}");
        assert!(!row.value.is_empty(), "{row:?}");
        assert!(
            row.note.is_empty() || !row.note.starts_with("not measured"),
            "{row:?}"
        );
    }
    let recovery = &found[2];
    assert_eq!(
        (
            recovery.check.as_str(),
            recovery.unit.as_str(),
            recovery.limit.as_str()
        ),
        ("recovery.p100 < 60s", "ms", "60000.000")
    );
    assert_eq!(recovery.phase, "4:client_reconnect");
    assert_eq!(found[4].unit, "ratio");
    assert_eq!(found[4].value, "1.000");
    assert_eq!(found[8].value, "12");

    // JUnit: the run, and one passing case per threshold named by its check.
    let suites = junit(&dir.path().join("junit.xml"));
    assert_eq!(suites.suites.len(), 2);
    assert_eq!(suites.suites[0].name, "fleetsim run");
    assert!(suites.suites[0].cases[0].status.is_success());
    let thresholds = &suites.suites[1];
    assert_eq!(thresholds.name, "fleetsim thresholds");
    let names: Vec<&str> = thresholds
        .cases
        .iter()
        .map(|c| c.original_name.as_str())
        .collect();
    let checks: Vec<&str> = found.iter().map(|r| r.check.as_str()).collect();
    assert_eq!(names, checks);
    assert!(thresholds.cases.iter().all(|c| c.status.is_success()));
    assert_eq!((thresholds.tests, thresholds.failures), (9, 0));
}

#[test]
fn failing_thresholds_exit_1_and_say_which_and_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("gate.toml"), format!("{RUN}{FAILING}")).expect("write");
    let out = fleetsim(
        &["run", "gate.toml", "--out", "out", "--junit", "junit.xml"],
        dir.path(),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("status: ok"),
        "the run itself passed: {stdout}"
    );
    assert!(stdout.contains("thresholds: 3 of 4 FAILED"), "{stdout}");
    assert!(err.contains("threshold failed: ready.p50 < 1ms"), "{err}");
    assert!(!err.contains("run failed"), "{err}");

    let found: Vec<ThresholdRow> = rows(&run_dir(&dir.path().join("out")).join("thresholds.csv"));
    let results: Vec<(&str, &str)> = found
        .iter()
        .map(|r| (r.check.as_str(), r.result.as_str()))
        .collect();
    assert_eq!(
        results,
        [
            ("ready.p99 < 60s", "pass"),
            ("ready.p50 < 1ms", "fail"),
            ("agents.ready < 12", "fail"),
            ("delivery.jobs.p99 < 1s", "fail"),
        ]
    );
    assert_eq!(found[2].value, "12");
    // A metric the scenario allows but the run never measured fails, and says so.
    assert_eq!(found[3].value, "");
    assert_eq!(
        found[3].note,
        "not measured: no delivery.jobs latencies in summary.csv"
    );

    let suites = junit(&dir.path().join("junit.xml"));
    let thresholds = &suites.suites[1];
    assert_eq!((thresholds.tests, thresholds.failures), (4, 3));
    let failed: Vec<&str> = thresholds
        .cases
        .iter()
        .filter(|c| c.status.is_failure())
        .map(|c| c.original_name.as_str())
        .collect();
    assert_eq!(
        failed,
        [
            "ready.p50 < 1ms",
            "agents.ready < 12",
            "delivery.jobs.p99 < 1s"
        ]
    );
    let message = &thresholds.cases[3].status.failure_as_ref().message;
    assert!(message.contains("not measured"), "{message}");
}

#[test]
fn a_malformed_threshold_exits_2_naming_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = format!(
        "{RUN}\n[thresholds]\nchecks = [\n  \"ready.p99 < 5s\",\n  \"ready.p99 < 5\",\n  \"raedy.p99 < 5s\",\n]\n"
    );
    let line = |needle: &str| {
        scenario
            .lines()
            .position(|l| l.contains(needle))
            .expect("line")
            + 1
    };
    std::fs::write(dir.path().join("gate.toml"), &scenario).expect("write");
    let out = fleetsim(&["validate", "gate.toml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let unit = format!(
        "gate.toml:{}: thresholds.checks[2]: ready.p99 is a latency: give the limit a unit",
        line("\"ready.p99 < 5\",")
    );
    let name = format!(
        "gate.toml:{}: thresholds.checks[3]: unknown metric \"raedy\"",
        line("raedy")
    );
    assert!(err.contains(&unit), "{err}");
    assert!(err.contains(&name), "{err}");

    // `run` refuses it before starting anything, and still says so in JUnit and JSON.
    let out = fleetsim(
        &[
            "run",
            "gate.toml",
            "--out",
            "out",
            "--junit",
            "junit.xml",
            "--json",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(&unit));
    assert!(!dir.path().join("out").exists());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["exit_code"], 2);
    assert!(json["error"].as_str().is_some_and(|e| e.contains(&unit)));
    let suites = junit(&dir.path().join("junit.xml"));
    assert!(suites.suites[0].cases[0].status.is_error());
}

/// A copy of the committed baseline's summary.csv and manifest.json in `dir`, with
/// `metric`'s p50 and p99 multiplied by `factor`.
fn baseline_copy(dir: &Path, metric: &str, factor: f64) {
    let baseline = project_root().join("results/baseline");
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::copy(baseline.join("manifest.json"), dir.join("manifest.json")).expect("manifest");
    let mut reader = csv::Reader::from_path(baseline.join("summary.csv")).expect("summary.csv");
    let headers = reader.headers().expect("header").clone();
    let mut writer = csv::Writer::from_path(dir.join("summary.csv")).expect("write");
    writer.write_record(&headers).expect("header");
    let col = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let mut changed = 0;
    for record in reader.records() {
        let mut cells: Vec<String> = record.expect("row").iter().map(String::from).collect();
        if cells[col("metric")] == metric {
            for stat in ["p50", "p99"] {
                let v: f64 = cells[col(stat)].parse().expect("number");
                cells[col(stat)] = format!("{:.3}", v * factor);
            }
            changed += 1;
        }
        writer.write_record(&cells).expect("row");
    }
    writer.flush().expect("flush");
    assert!(changed > 0, "the baseline has no {metric} row");
}

#[test]
fn compare_flags_an_injected_2x_regression_and_passes_an_identical_run() {
    let root = project_root();
    let baseline = root.join("results/baseline");
    let dir = tempfile::tempdir().expect("tempdir");

    // The baseline against itself: nothing moved.
    let same = dir.path().join("same");
    baseline_copy(&same, "recovery", 1.0);
    let out = fleetsim(
        &[
            "compare",
            same.to_str().unwrap(),
            "--baseline",
            baseline.to_str().unwrap(),
        ],
        &root,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("pass: 0 regressed"),
        "{}",
        text(&out.stdout)
    );

    // Recovery twice as slow: beyond the scenario's 50 % tolerance.
    let slow = dir.path().join("slow");
    baseline_copy(&slow, "recovery", 2.0);
    let out = fleetsim(
        &[
            "compare",
            slow.join("summary.csv").to_str().unwrap(),
            "--baseline",
            baseline.to_str().unwrap(),
            "--junit",
            dir.path().join("compare.xml").to_str().unwrap(),
        ],
        &root,
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    let regressed: Vec<&str> = stdout.lines().filter(|l| l.contains("REGRESSED")).collect();
    assert_eq!(regressed.len(), 2, "{stdout}");
    assert!(
        regressed
            .iter()
            .all(|l| l.starts_with("recovery") && l.contains("2.00x")),
        "{stdout}"
    );
    let suites = junit(&dir.path().join("compare.xml"));
    let failed: Vec<&str> = suites.suites[0]
        .cases
        .iter()
        .filter(|c| c.status.is_failure())
        .map(|c| c.original_name.as_str())
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed
            .iter()
            .all(|n| n.starts_with("recovery[") && (n.ends_with(".p50") || n.ends_with(".p99")))
    );

    // The same regression with a tolerance of 150 % for recovery passes: tolerances
    // per metric come from the scenario, here one given on the command line.
    let lenient = dir.path().join("lenient.toml");
    let text_of = std::fs::read_to_string(root.join("scenarios/ci-gate.toml")).expect("scenario");
    std::fs::write(
        &lenient,
        text_of.replace("tolerances = {", "tolerances = { \"recovery\" = \"150%\","),
    )
    .expect("write");
    let out = fleetsim(
        &[
            "compare",
            slow.to_str().unwrap(),
            "--baseline",
            baseline.to_str().unwrap(),
            "--scenario",
            lenient.to_str().unwrap(),
            "--json",
        ],
        &root,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(json["passed"], true);
    assert!(
        json["comparison"]["rows"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    );

    // A run of another fleet size is not comparable.
    let manifest = std::fs::read_to_string(same.join("manifest.json")).expect("manifest");
    let mut value: serde_json::Value = serde_json::from_str(&manifest).expect("json");
    value["settings"]["fleet"]["agents"] = 30.into();
    std::fs::write(same.join("manifest.json"), value.to_string()).expect("write");
    let out = fleetsim(
        &[
            "compare",
            same.to_str().unwrap(),
            "--baseline",
            baseline.to_str().unwrap(),
        ],
        &root,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not comparable"),
        "{}",
        text(&out.stderr)
    );
}

const AB: &str = r#"name = "gate-ab"
[fleet]
agents = 8
groups = 2
catalog_entries = 2

[[variants]]
name = "a"

[[variants]]
name = "b"
fleet = { groups = 4 }
thresholds = ["delivery.jobs.p99 < 1s"]

[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "60s"

[thresholds]
checks = ["ready.p99 < 60s", "agents.failed == 0"]
"#;

#[test]
fn an_ab_run_checks_every_run_of_every_variant() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ab.toml"), AB).expect("write");
    let out = fleetsim(
        &["run", "ab.toml", "--out", "out", "--junit", "junit.xml"],
        dir.path(),
    );
    let stdout = text(&out.stdout);
    // b's own check is not measured (no jobs writes): the gate fails for b only.
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("pass  a: ready.p99 < 60s (all 1 runs)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("b r1: FAIL  delivery.jobs.p99 < 1s"),
        "{stdout}"
    );

    let ab = run_dir(&dir.path().join("out"));
    let merged: Vec<MergedThresholdRow> = rows(&ab.join("thresholds.csv"));
    let seen: Vec<(&str, usize, &str, &str)> = merged
        .iter()
        .map(|r| {
            (
                r.variant.as_str(),
                r.repeat,
                r.check.as_str(),
                r.result.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("a", 1, "ready.p99 < 60s", "pass"),
            ("a", 1, "agents.failed == 0", "pass"),
            ("b", 1, "ready.p99 < 60s", "pass"),
            ("b", 1, "agents.failed == 0", "pass"),
            ("b", 1, "delivery.jobs.p99 < 1s", "fail"),
        ]
    );
    assert!(merged[4].note.starts_with("not measured"));
    // Each run's own directory has its own thresholds.csv.
    assert!(ab.join("runs/01-a-r1/thresholds.csv").is_file());

    let suites = junit(&dir.path().join("junit.xml"));
    assert_eq!(suites.suites[0].cases.len(), 2, "one case per run");
    let classes: Vec<&str> = suites.suites[1]
        .cases
        .iter()
        .filter_map(|c| c.classname.as_deref())
        .collect();
    assert_eq!(classes.len(), 5);
    assert!(
        classes[0].ends_with(".a.r1") && classes[4].ends_with(".b.r1"),
        "{classes:?}"
    );
}

#[test]
fn ci_gate_script_runs_end_to_end_without_docker() {
    let root = project_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("gate");
    // A baseline slower than anything a 30-agent run measures, however loaded this
    // machine is: ten times the committed baseline's figures plus a minute (the paced
    // gate's cold start is ~15 ms per agent there, and a 30-agent run beside the rest of
    // the test suite has taken 0.9 s). The comparison runs, and improves.
    let baseline = dir.path().join("baseline");
    std::fs::create_dir_all(&baseline).expect("mkdir");
    let mut reader =
        csv::Reader::from_path(root.join("results/baseline/summary.csv")).expect("summary");
    let headers = reader.headers().expect("header").clone();
    let mut writer = csv::Writer::from_path(baseline.join("summary.csv")).expect("write");
    writer.write_record(&headers).expect("header");
    for record in reader.records() {
        let record = record.expect("row");
        let cells: Vec<String> = headers
            .iter()
            .zip(record.iter())
            .map(|(h, v)| match (h, v.parse::<f64>()) {
                ("p50" | "p99", Ok(x)) => format!("{:.3}", x * 10.0 + 60_000.0),
                _ => v.to_string(),
            })
            .collect();
        writer.write_record(&cells).expect("row");
    }
    writer.flush().expect("flush");

    let output = Command::new("bash")
        .arg(root.join("scripts/ci-gate.sh"))
        .arg("--no-docker")
        .current_dir(&root)
        .env("AGENTS", "30")
        .env("OUT", &out)
        .env("BASELINE", &baseline)
        .env("FLEETSIM", env!("CARGO_BIN_EXE_fleetsim"))
        .env("FLEETSIM_LOG", "warn")
        .output()
        .expect("bash runs");
    let log = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("ci-gate: gate passed"), "{log}");
    let checks = ci_gate_checks();
    assert!(
        log.contains(&format!("thresholds: all {checks} pass")),
        "{log}"
    );

    let suites = junit(&out.join("junit.xml"));
    let thresholds = &suites.suites[1];
    assert_eq!((thresholds.tests, thresholds.failures), (checks as u64, 0));
    let compare = junit(&out.join("junit-compare.xml"));
    assert!(compare.suites[0].tests > 0 && compare.suites[0].failures == 0);
    let run = std::fs::read_dir(&out)
        .expect("out")
        .map(|e| e.expect("entry").path())
        .find(|p| p.is_dir())
        .expect("a run directory");
    let found: Vec<ThresholdRow> = rows(&run.join("thresholds.csv"));
    assert!(found.iter().all(|r| r.result == "pass"), "{found:?}");
}

/// A stand-in for `docker` on PATH: `compose up/down/logs` and `restart` run nats-server
/// from docker/nats-server.conf (store and ports moved into the test's own), as the
/// container would. Every call is logged to `calls`.
const FAKE_DOCKER: &str = r##"#!/usr/bin/env bash
set -u
state="$FAKE_DOCKER_STATE"
echo "$*" >> "$state/calls"
start() {
  printf '%s' "${NATS_SYS_PASSWORD:-}" > "$state/sys_password"
  sed -e "s#\"/data\"#\"$state/store\"#" \
      -e "s#0.0.0.0:4222#127.0.0.1:$FAKE_NATS_PORT#" \
      -e "s#0.0.0.0:8222#127.0.0.1:$FAKE_MONITOR_PORT#" "$FAKE_NATS_CONF" > "$state/nats.conf"
  "$FAKE_NATS_SERVER" -c "$state/nats.conf" >>"$state/server.log" 2>&1 </dev/null &
  echo $! > "$state/pid"
}
# Every thread of process $1 has exited: it is gone, or a zombie nobody reaps. (A
# zombie's first thread can be one while the others still exit, holding its sockets.)
exited() {
  local task st
  for task in /proc/"$1"/task/*; do
    st=$(sed -e 's/.*) //' "$task/stat" 2>/dev/null | cut -d' ' -f1)
    case "$st" in ''|Z|X) ;; *) return 1 ;; esac
  done
}
listening() { (: >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
stop() {
  if [ -f "$state/pid" ]; then
    pid=$(cat "$state/pid")
    kill -9 "$pid" 2>/dev/null
    rm -f "$state/pid"
    # As docker does, return once the old server has exited and its ports are free
    # for the next one. Within 10 s, or fail.
    for _ in $(seq 500); do
      if exited "$pid" && ! listening "$FAKE_NATS_PORT" && ! listening "$FAKE_MONITOR_PORT"; then
        return 0
      fi
      sleep 0.02
    done
    echo "fake docker: nats-server $pid still running 10 s after SIGKILL" >&2
    exit 1
  fi
}
if [ "$1" = compose ]; then
  if [ "$2" = version ]; then echo "fake compose"; exit 0; fi
  case "$4" in
    up) start ;;
    down) stop ;;
    logs) cat "$state/server.log" ;;
  esac
  exit 0
fi
if [ "$1" = restart ]; then stop; start; exit 0; fi
echo "fake docker: unsupported: $*" >&2
exit 1
"##;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn nats_server_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("NATS_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    let local = project_root().join(".tools/bin/nats-server");
    if local.is_file() {
        local
    } else {
        PathBuf::from("nats-server")
    }
}

#[test]
fn ci_gate_script_drives_the_container_in_docker_mode() {
    use std::os::unix::fs::PermissionsExt;

    let root = project_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    let state = dir.path().join("docker");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::fs::create_dir_all(&state).expect("mkdir");
    let docker = bin.join("docker");
    std::fs::write(&docker, FAKE_DOCKER).expect("write");
    std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (port, monitor) = (free_port(), free_port());
    let out = dir.path().join("gate");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let output = Command::new("bash")
        .arg(root.join("scripts/ci-gate.sh"))
        .current_dir(&root)
        .env("PATH", path)
        .env("FAKE_DOCKER_STATE", &state)
        .env("FAKE_NATS_PORT", port.to_string())
        .env("FAKE_MONITOR_PORT", monitor.to_string())
        .env("FAKE_NATS_CONF", root.join("docker/nats-server.conf"))
        .env("FAKE_NATS_SERVER", nats_server_bin())
        .env("NATS_URL", format!("nats://127.0.0.1:{port}"))
        .env("NATS_MONITOR", format!("http://127.0.0.1:{monitor}"))
        .env("AGENTS", "30")
        .env("OUT", &out)
        .env("FLEETSIM", env!("CARGO_BIN_EXE_fleetsim"))
        .env("FLEETSIM_LOG", "warn")
        .env_remove("FLEETSIM_SYSTEM_URL")
        .env_remove("NATS_SYS_PASSWORD")
        .output()
        .expect("bash runs");
    let log = format!("{}{}", text(&output.stdout), text(&output.stderr));
    let calls = std::fs::read_to_string(state.join("calls")).unwrap_or_default();
    let server_log = std::fs::read_to_string(state.join("server.log")).unwrap_or_default();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{log}\ncalls:\n{calls}\nnats-server's log:\n{server_log}"
    );
    assert!(log.contains("ci-gate: gate passed"), "{log}");
    // The herd was the container's restart: the broker_restart step became a command.
    assert!(
        log.contains("recovery.p100 < 40s:") && log.contains("in 4:command"),
        "{log}"
    );
    assert!(log.contains("baseline comparison skipped"), "{log}");
    let lines: Vec<&str> = calls.lines().collect();
    assert!(lines.iter().any(|l| l.ends_with("up -d")), "{calls}");
    assert!(lines.contains(&"restart -t 0 fleetsim-nats"), "{calls}");
    assert!(
        lines
            .last()
            .is_some_and(|l| l.ends_with("down -v --remove-orphans")),
        "torn down last: {calls}"
    );
    assert!(!state.join("pid").exists(), "the broker is stopped");

    let run = std::fs::read_dir(&out)
        .expect("out")
        .map(|e| e.expect("entry").path())
        .find(|p| p.is_dir())
        .expect("a run directory");
    let found: Vec<ThresholdRow> = rows(&run.join("thresholds.csv"));
    let checks = ci_gate_checks();
    assert_eq!(found.len(), checks);
    assert!(found.iter().all(|r| r.result == "pass"), "{found:?}");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["broker"]["kind"], "external");
    assert_eq!(manifest["broker"]["limits"]["max_connections"], 65536);
    // The container's system user (a random password from ci-gate.sh, handed over as
    // FLEETSIM_SYSTEM_URL) let the run count LIMIT_REACHED; the password is nowhere.
    assert_eq!(manifest["broker"]["api_limit_reached_counted"], true);
    let password = std::fs::read_to_string(state.join("sys_password"))
        .expect("the fake docker recorded the password it was given");
    assert!(password.len() >= 16, "a random password: {password:?}");
    common::assert_secret_nowhere(&password, &log, &out);
    let suites = junit(&out.join("junit.xml"));
    assert_eq!(
        (suites.suites[1].tests, suites.suites[1].failures),
        (checks as u64, 0)
    );
}

#[test]
fn the_docker_files_declare_the_broker_the_gate_needs() {
    let root = project_root();
    let text_of =
        |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let compose: serde_norway::Value =
        serde_norway::from_str(&text_of("docker/docker-compose.yml")).expect("compose YAML");
    let nats = &compose["services"]["nats"];
    let image = nats["image"].as_str().expect("image");
    assert!(
        image.contains("nats:2.1"),
        "the official nats image: {image}"
    );
    let command: Vec<&str> = nats["command"]
        .as_sequence()
        .expect("command list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(command.contains(&"-js"), "{command:?}");
    assert!(
        command.contains(&"/etc/nats/nats-server.conf"),
        "{command:?}"
    );
    let ports: Vec<&str> = nats["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(ports.iter().any(|p| p.ends_with(":4222:4222")), "{ports:?}");
    assert!(ports.iter().any(|p| p.ends_with(":8222:8222")), "{ports:?}");
    let volumes: Vec<&str> = nats["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(volumes.contains(&"nats-data:/data"), "{volumes:?}");
    assert!(
        volumes
            .iter()
            .any(|v| v.starts_with("./nats-server.conf:/etc/nats/nats-server.conf"))
    );
    assert!(
        compose["volumes"].get("nats-data").is_some(),
        "a named volume"
    );
    // The script restarts the container by the name the compose file gives it.
    let name = nats["container_name"].as_str().expect("container_name");
    let script = text_of("scripts/ci-gate.sh");
    assert!(
        script.contains(&format!("NATS_CONTAINER:-{name}")),
        "ci-gate.sh uses {name}"
    );
    assert!(
        script.contains("trap teardown EXIT"),
        "always tears the container down"
    );
    // The system account's password reaches the container from the environment the
    // script exports, and never has a default written in a file.
    let password = nats["environment"]["NATS_SYS_PASSWORD"]
        .as_str()
        .expect("environment.NATS_SYS_PASSWORD");
    assert!(password.starts_with("${NATS_SYS_PASSWORD:?"), "{password}");
    assert!(
        script.contains("export NATS_SYS_PASSWORD"),
        "ci-gate.sh hands it over"
    );

    // The server config holds the limits fleetsim recommends, and nats-server accepts it.
    let conf = text_of("docker/nats-server.conf");
    for needle in [
        "max_connections: 65536",
        "request_queue_limit: 10000",
        "default_max_consumers: -1",
        "lame_duck_duration: \"30s\"",
        "store_dir: \"/data\"",
        "http: 0.0.0.0:8222",
        "system_account: SYS",
        "password: $NATS_SYS_PASSWORD",
    ] {
        assert!(conf.contains(needle), "nats-server.conf lacks {needle}");
    }
    if let Ok(bin) = std::env::var("NATS_SERVER_BIN") {
        let out = Command::new(bin)
            .args(["-t", "-c"])
            .arg(root.join("docker/nats-server.conf"))
            // The compose file hands the container this variable (ci-gate.sh sets it).
            .env("NATS_SYS_PASSWORD", "checked-by-a-test")
            .output()
            .expect("nats-server runs");
        assert!(
            out.status.success(),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    // The example workflow is YAML whose two jobs run the gate and keep their reports:
    // the same-runner A/B gate on pull requests, thresholds in docker on main.
    let workflow: serde_norway::Value =
        serde_norway::from_str(&text_of("examples/ci/github-actions.yml")).expect("workflow YAML");
    for (job, needs) in [
        ("ab-gate", "--candidate"),
        ("thresholds", "scripts/ci-gate.sh"),
    ] {
        let steps = workflow["jobs"][job]["steps"]
            .as_sequence()
            .unwrap_or_else(|| panic!("job {job} has steps"));
        let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
        assert!(
            runs.iter()
                .any(|r| r.contains("scripts/ci-gate.sh") && r.contains(needs)),
            "{job}: {runs:?}"
        );
        let uses: Vec<&str> = steps.iter().filter_map(|s| s["uses"].as_str()).collect();
        assert!(
            uses.iter()
                .any(|u| u.starts_with("actions/upload-artifact")),
            "{job}: {uses:?}"
        );
    }
}

/// `scripts/ci-gate.sh --candidate`: the same-runner A/B gate end to end. A candidate
/// whose agents open one more watch fails on the exact counts (one run a side: no
/// interval, so the counts alone decide), and the script says so and exits 1.
#[test]
fn ci_gate_script_ab_mode_fails_a_candidate_with_one_more_consumer() {
    let root = project_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let gate = std::fs::read_to_string(root.join("scenarios/ci-gate.toml")).expect("scenario");
    let eight = common::eight_consumers();
    let (key, tables) = eight
        .split_once('\n')
        .expect("profile key, then its tables");
    let candidate = dir.path().join("candidate.toml");
    let body = gate.replacen("[fleet]\n", &format!("[fleet]\n{key}\n"), 1);
    std::fs::write(&candidate, format!("{body}\n{tables}")).expect("write candidate");
    let script = |args: &[&str]| {
        let output = Command::new("bash")
            .arg(root.join("scripts/ci-gate.sh"))
            .args(args)
            .current_dir(&root)
            .env("AGENTS", "20")
            .env("REPEAT", "1")
            .env("OUT", dir.path().join("gate"))
            .env("FLEETSIM", env!("CARGO_BIN_EXE_fleetsim"))
            .env("FLEETSIM_LOG", "warn")
            .output()
            .expect("bash runs");
        let log = format!("{}{}", text(&output.stdout), text(&output.stderr));
        (output.status.code(), log)
    };
    let candidate = candidate.to_str().expect("utf-8 path");
    let (code, log) = script(&["--no-docker", "--candidate", candidate]);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("gate failed: count.consumers.created_per_agent (1:start)"),
        "{log}"
    );
    assert!(log.contains("ci-gate: GATE FAILED: see gate.csv"), "{log}");
    let suites = junit(&dir.path().join("gate/junit.xml"));
    let figures = suites.suites.last().expect("the gate's suite");
    assert!(
        figures.name.starts_with("fleetsim gate"),
        "{}",
        figures.name
    );
    assert!(figures.failures > 0);

    // A baseline is a single run's: the A/B mode refuses to record one.
    let (code, log) = script(&["--no-docker", "--candidate", candidate, "--update-baseline"]);
    assert_eq!(code, Some(2), "{log}");
}

#[test]
fn an_external_broker_needs_a_herd_command_to_restart() {
    let root = project_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = root.join("scenarios/ci-gate.toml");
    let scenario = scenario.to_str().expect("utf-8 path");
    // Nothing listens on port 1: had the run started, it would end with exit 3.
    let out = fleetsim(
        &["run", scenario, "--server", "nats://127.0.0.1:1"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("step 4:broker_restart restarts the embedded broker")
            && err.contains("--herd-command"),
        "{err}"
    );
    let out = fleetsim(&["run", scenario, "--herd-command", "true"], dir.path());
    assert_eq!(out.status.code(), Some(2), "--herd-command needs --server");
    let out = fleetsim(
        &[
            "run",
            scenario,
            "--server",
            "nats://127.0.0.1:1",
            "--herd-command",
            "true",
            "--out",
            "out",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}
