//! `fleetsim gate`: a reference and a candidate run interleaved on one runner and judged.
//! An agent that makes one more consumer fails on the exact counts alone (one run per
//! side: no interval, so no timing can decide), an A/A gate of identical sides passes
//! every figure, and a candidate whose every link is 50 ms slower each way fails on the
//! cold start's latency, the verdict naming it.

mod common;

use std::path::Path;

use common::{fleetsim, text};
use fleetsim::gate::same_runner::{GateRow, Verdict};

/// A small kanade fleet: an all-at-once cold start, every API request recorded. The
/// figures judged beside the exact counts: the broker's CPU per agent, the API
/// throughput and the cold start's p50; `EFFECT` is their effect size.
const SCENARIO: &str = r#"
name = "gate-NAME"
[broker]
record_api = true
[fleet]
agents = 30
groups = 3
proxy = true
LINK
PROFILE
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "60s"
[gate]
repeat = REPEAT
effect = "EFFECT"
floor = "1ms"
figures = ["count[1:start].broker.cpu_ms_per_agent", "count[1:start].api.rate_per_sec", "ready.p50"]
"#;

fn write_scenario(dir: &Path, name: &str, profile: &str, repeat: usize, effect: &str) -> String {
    write_linked(dir, name, profile, repeat, effect, "0s")
}

/// The scenario with `[fleet] link_latency = link`.
fn write_linked(
    dir: &Path,
    name: &str,
    profile: &str,
    repeat: usize,
    effect: &str,
    link: &str,
) -> String {
    let (key, tables) = match profile.split_once('\n') {
        Some((first, rest)) if first.starts_with("profile =") => (format!("{first}\n"), rest),
        _ => (String::new(), profile),
    };
    let text = SCENARIO
        .replace("NAME", name)
        .replace("PROFILE\n", &key)
        .replace("REPEAT", &repeat.to_string())
        .replace("EFFECT", effect)
        .replace("LINK", &format!("link_latency = \"{link}\""));
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, format!("{text}{tables}")).expect("write scenario");
    path.to_str().expect("utf-8 path").to_string()
}

/// Runs `fleetsim gate` in `dir`; returns the exit code, stdout+stderr and gate.csv.
fn gate(dir: &Path, args: &[&str]) -> (Option<i32>, String, Vec<GateRow>) {
    let mut all = vec!["gate"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", "out"]);
    let output = fleetsim(&all, dir);
    let printed = format!("{}{}", text(&output.stdout), text(&output.stderr));
    let run = common::only_dir_in(&dir.join("out"));
    let rows = common::rows::<GateRow>(&run);
    (output.status.code(), printed, rows)
}

#[test]
fn one_more_consumer_per_agent_fails_the_gate_on_the_counts_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = write_scenario(dir.path(), "seven", "", 1, "25%");
    let candidate = write_scenario(dir.path(), "eight", &common::eight_consumers(), 1, "25%");
    let (code, printed, rows) = gate(dir.path(), &[&reference, "--candidate", &candidate]);
    assert_eq!(code, Some(1), "{printed}");
    let created = rows
        .iter()
        .find(|r| r.phase == "1:start" && r.figure == "count.consumers.created_per_agent")
        .unwrap_or_else(|| panic!("judged: {rows:#?}"));
    assert_eq!(created.verdict, Verdict::Fail);
    assert_eq!(
        (created.reference, created.candidate),
        (Some(7.0), Some(8.0))
    );
    assert!(
        printed.contains("gate failed: count.consumers.created_per_agent (1:start)"),
        "the verdict names the figure:\n{printed}"
    );
    // One run per side gives no interval: every measured figure is inconclusive, so
    // the counts alone failed the gate, whatever the timings were.
    for row in rows.iter().filter(|r| r.kind != "exact") {
        assert_ne!(row.verdict, Verdict::Fail, "{row:?}");
    }
    assert!(
        rows.iter()
            .any(|r| r.kind == "latency" && r.verdict == Verdict::Inconclusive)
    );
}

#[test]
fn an_a_a_gate_of_identical_sides_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Five runs a side, the gate's default. The effect size is wide (a tripling)
    // because 30 agents on a shared 2-core machine, beside other tests, vary a lot
    // between runs: what this shows is that identical sides are judged equal, not how
    // fine the gate is (results/bench/gate-power.csv says that).
    let reference = write_scenario(dir.path(), "same", "", 5, "200%");
    let (code, printed, rows) = gate(dir.path(), &[&reference]);
    assert_eq!(code, Some(0), "{printed}");
    assert!(printed.contains("gate: pass"), "{printed}");
    let exact: Vec<&GateRow> = rows.iter().filter(|r| r.kind == "exact").collect();
    assert!(exact.len() > 10, "{rows:#?}");
    assert!(
        exact.iter().all(|r| r.verdict == Verdict::Pass),
        "{exact:#?}"
    );
    for figure in [
        "count.broker.cpu_ms_per_agent",
        "count.api.rate_per_sec",
        "ready.p50",
    ] {
        let row = rows
            .iter()
            .find(|r| r.figure == figure && r.phase == "1:start")
            .unwrap_or_else(|| panic!("{figure} judged: {rows:#?}"));
        assert_eq!(row.verdict, Verdict::Pass, "{row:?}");
        let (lo, hi) = (
            row.ci_low.expect("interval"),
            row.ci_high.expect("interval"),
        );
        assert!(lo <= hi && hi < 2.0, "{row:?}");
    }
}

#[test]
fn a_candidate_on_slower_links_fails_on_the_figure_that_moved() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 50 ms more each way on every agent's link: every round trip of the cold start
    // costs 100 ms more, a cold start of about 0.4 s takes well over 1 s. The effect size
    // is a doubling, so only a change that large can fail it.
    let reference = write_linked(dir.path(), "near", "", 3, "100%", "0s");
    let candidate = write_linked(dir.path(), "far", "", 3, "100%", "50ms");
    let (code, printed, rows) = gate(dir.path(), &[&reference, "--candidate", &candidate]);
    assert_eq!(code, Some(1), "{printed}");
    let ready = rows
        .iter()
        .find(|r| r.figure == "ready.p50" && r.phase == "1:start")
        .unwrap_or_else(|| panic!("judged: {rows:#?}"));
    assert_eq!(ready.verdict, Verdict::Fail, "{ready:?}");
    assert!(ready.ci_low.is_some_and(|lo| lo > 1.0), "{ready:?}");
    assert!(
        printed.contains(
            "gate failed: ready.p50 (1:start): worse by more than the +100.0% effect size"
        ),
        "the verdict names the figure:\n{printed}"
    );
    // What the agents asked of the broker did not change: the counts are equal.
    let exact: Vec<&GateRow> = rows.iter().filter(|r| r.kind == "exact").collect();
    assert!(!exact.is_empty());
    assert!(
        exact.iter().all(|r| r.verdict == Verdict::Pass),
        "{exact:#?}"
    );
}
