//! A/B runs end to end: two variants, repeated and interleaved, each on a fresh broker,
//! merged into one directory with a `variant` column and compared in `compare.csv`.

mod common;

use std::collections::BTreeSet;

use common::{num, read_csv};
use fleetsim::results::RunStatus;
use fleetsim::run::RunOptions;

const SCENARIO: &str = r#"
name = "ab-test"
repeat = 2

[fleet]
agents = 12
groups = 2
catalog_entries = 3

[[variants]]
name = "splay-off"

[[variants]]
name = "splay-on"
[variants.fleet]
splay = "1s"
splay_placement = "reconnect_delay"

[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "60s"
[[steps]]
kind = "client_reconnect"
recover_timeout = "60s"
[[steps]]
kind = "wait_ready"
timeout = "60s"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_variants_repeated_run_interleaved_on_fresh_brokers_and_are_compared() {
    let out = tempfile::tempdir().expect("tempdir");
    let plan = fleetsim::scenario::parse_str(SCENARIO, "ab.toml").expect("valid scenario");
    assert_eq!(plan.variants.len(), 2);
    let options = RunOptions {
        scenario_path: None,
        scenario_text: SCENARIO.to_string(),
        results_base: out.path().to_path_buf(),
        run_dir: None,
        proxy_program: None,
    };
    let report = fleetsim::ab::run_ab(plan, options, std::future::pending())
        .await
        .expect("A/B run reaches its results");
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let dir = &report.dir;

    // Interleaved A B A B, every run from a broker holding no consumers.
    let runs = read_csv(dir, "runs.csv");
    let order: Vec<(String, u64)> = runs
        .iter()
        .map(|r| (r["variant"].clone(), num(r, "repeat")))
        .collect();
    let expected = [
        ("splay-off", 1),
        ("splay-on", 1),
        ("splay-off", 2),
        ("splay-on", 2),
    ];
    assert_eq!(
        order,
        expected.map(|(v, r)| (v.to_string(), r)).to_vec(),
        "interleaved"
    );
    for run in &runs {
        assert_eq!(run["status"], "ok", "{run:?}");
        assert_eq!(num(run, "consumers_at_start"), 0, "fresh broker: {run:?}");
        assert!(dir.join(&run["dir"]).join("manifest.json").exists());
    }

    // Every merged CSV carries the variant; each run's agents are all there.
    let agents = read_csv(dir, "agents.csv");
    assert_eq!(agents.len(), 4 * 12);
    for variant in ["splay-off", "splay-on"] {
        let rows = agents.iter().filter(|a| a["variant"] == variant).count();
        assert_eq!(rows, 2 * 12, "{variant}");
    }
    for name in ["summary.csv", "steps.csv", "timeseries.csv", "recovery.csv"] {
        let rows = read_csv(dir, name);
        assert!(!rows.is_empty(), "{name} has rows");
        assert!(rows.iter().all(|r| !r["variant"].is_empty()), "{name}");
    }

    // compare.csv: both variants for every (phase, metric).
    let compare = read_csv(dir, "compare.csv");
    let keys: BTreeSet<(String, String)> = compare
        .iter()
        .map(|r| (r["phase"].clone(), r["metric"].clone()))
        .collect();
    assert!(keys.contains(&("3:client_reconnect".to_string(), "recovery".to_string())));
    for (phase, metric) in &keys {
        let variants: BTreeSet<&str> = compare
            .iter()
            .filter(|r| &r["phase"] == phase && &r["metric"] == metric)
            .map(|r| r["variant"].as_str())
            .collect();
        assert_eq!(
            variants,
            BTreeSet::from(["splay-off", "splay-on"]),
            "{phase} {metric}"
        );
    }
    let recovery_on = compare
        .iter()
        .find(|r| {
            r["phase"] == "3:client_reconnect"
                && r["metric"] == "recovery"
                && r["variant"] == "splay-on"
        })
        .expect("recovery row for splay-on");
    assert_eq!(num(recovery_on, "runs"), 2);
    assert!(!recovery_on["p99_ratio"].is_empty());
    // Two repeats: a ratio but no interval, and the verdict says why.
    assert!(recovery_on["p99_diff_ci_low"].is_empty());
    assert!(recovery_on["verdict"].contains("fewer than 3 repeats"));
}
