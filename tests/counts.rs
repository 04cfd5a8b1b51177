//! The exact counts of `counts.csv` decide a comparison on their own: an agent that makes
//! one more consumer fails `fleetsim compare` against a baseline of the real profile,
//! whatever the timings (the scenario's latency tolerance is set so wide that no timing
//! can fail), and two runs of the same scenario have identical counts, so a repeat
//! passes.

mod common;

use std::path::{Path, PathBuf};

use common::{fleetsim, rows, run_scenario, text};
use fleetsim::results::rows::CountRow;

/// 10 agents come up, the broker restarts under them, they settle again; the broker
/// records every API request. The latency tolerance is 1,000,000 %: only the counts
/// can fail a comparison. On async-nats 0.51, whose recreation of a watch is one DELETE
/// and one CREATE whatever the outage: on 0.50 (kanade's default) a herd phase's
/// consumer and API counts depend on how many recreation attempts the outage took, and
/// counts.csv marks them not exact.
const SCENARIO: &str = r#"
name = "counts-NAME"
[broker]
record_api = true
[fleet]
agents = 10
groups = 2
catalog_entries = 2
async_nats = "0.51"
PROFILE
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "60s"
[[steps]]
kind = "broker_restart"
downtime = "1s"
recover_timeout = "60s"
[[steps]]
kind = "wait_ready"
timeout = "60s"
[thresholds]
tolerance = "1000000%"
checks = [
  "count[start].consumers.created_per_agent == 7",
  "count[broker_restart].api.consumer_create_per_agent <= 7",
]
"#;

fn scenario(name: &str, profile: &str) -> String {
    // The profile's tables go last: [fleet]'s keys must stay in [fleet].
    let text = SCENARIO
        .replace("NAME", name)
        .replace("PROFILE\n", &profile_key(profile));
    format!("{text}{}", profile_tables(profile))
}

fn profile_key(profile: &str) -> String {
    profile
        .lines()
        .next()
        .filter(|l| l.starts_with("profile ="))
        .map_or_else(String::new, |l| format!("{l}\n"))
}

fn profile_tables(profile: &str) -> String {
    match profile.split_once('\n') {
        Some((first, rest)) if first.starts_with("profile =") => rest.to_string(),
        _ => profile.to_string(),
    }
}

/// Runs one scenario; returns its directory and the checks that failed.
async fn run(name: &str, profile: &str, out: &Path) -> (PathBuf, Vec<String>) {
    let report = run_scenario(&scenario(name, profile), out).await;
    assert!(report.reasons.is_empty(), "{name}: {:?}", report.reasons);
    let failed = report
        .thresholds
        .iter()
        .filter(|o| !o.passed)
        .map(|o| o.describe())
        .collect();
    (report.dir, failed)
}

/// The exact counts of a run, as (phase, figure, value, total).
fn exact(dir: &Path) -> Vec<(String, String, f64, Option<u64>)> {
    rows::<CountRow>(dir)
        .into_iter()
        .filter(|r| r.exact)
        .map(|r| (r.phase, r.figure, r.value, r.total))
        .collect()
}

fn value(counts: &[(String, String, f64, Option<u64>)], phase: &str, figure: &str) -> f64 {
    counts
        .iter()
        .find(|c| c.0 == phase && c.1 == figure)
        .unwrap_or_else(|| panic!("{figure} in {phase}: {counts:#?}"))
        .2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_more_consumer_per_agent_fails_the_comparison_on_the_counts_alone() {
    let out = tempfile::tempdir().expect("tempdir");
    let (seven, failed) = run("seven", "", &out.path().join("seven")).await;
    assert!(failed.is_empty(), "{failed:?}");
    let (again, _) = run("seven", "", &out.path().join("again")).await;
    let (eight, failed) = run(
        "eight",
        &common::eight_consumers(),
        &out.path().join("eight"),
    )
    .await;
    // The thresholds name counts too: 8 consumers made at start where kanade makes 7,
    // and 8 creates across the restart (7 watches recreated, one keys() walk) where
    // kanade makes 7.
    assert_eq!(
        failed,
        [
            "FAIL  count[start].consumers.created_per_agent == 7: 8 in 1:start",
            "FAIL  count[broker_restart].api.consumer_create_per_agent <= 7: 8 in 3:broker_restart",
        ]
    );

    // The counts are the same run to run: that is what makes them gateable exactly.
    let (a, b) = (exact(&seven), exact(&again));
    assert!(a.len() > 20, "{a:#?}");
    assert_eq!(a, b, "two runs of one scenario count the same");
    assert_eq!(value(&a, "1:start", "consumers.long_lived_per_agent"), 7.0);
    assert_eq!(value(&a, "1:start", "consumers.created_per_agent"), 7.0);
    let e = exact(&eight);
    assert_eq!(value(&e, "1:start", "consumers.long_lived_per_agent"), 8.0);
    assert_eq!(value(&e, "1:start", "consumers.created_per_agent"), 8.0);

    let compare = |run: &Path, baseline: &Path| {
        let output = fleetsim(
            &[
                "compare",
                run.to_str().unwrap(),
                "--baseline",
                baseline.to_str().unwrap(),
            ],
            out.path(),
        );
        (
            output.status.code(),
            text(&output.stdout),
            text(&output.stderr),
        )
    };
    let (code, stdout, stderr) = compare(&eight, &seven);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    for figure in [
        "consumers.long_lived_per_agent",
        "consumers.created_per_agent",
        "api.consumer_create_per_agent",
        "api.total_per_agent",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(figure) && l.contains("1:start") && l.contains("REGRESSED")),
            "{figure} regressed in 1:start:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("FAIL: 0 regressed,"),
        "no latency moved beyond its 1,000,000 % tolerance; the counts alone fail:\n{stdout}"
    );

    let (code, stdout, stderr) = compare(&again, &seven);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "exact counts (zero tolerance): {} same, 0 changed",
            a.len()
        )),
        "{stdout}"
    );
}
