//! `thresholds.rs`: `[thresholds]` checks and compare settings, a variant's own checks.
//! Invalid thresholds: `tests/scenarios/invalid/thresholds`.

use super::*;

const GATED: &str = r#"[fleet]
agents = 5

[[steps]]
kind = "start"

[[steps]]
kind = "broker_restart"
"#;

#[test]
fn thresholds_are_parsed_with_their_lines_and_compare_settings() {
    let text = format!(
        "{GATED}\n[thresholds]\nchecks = [\n  \"ready.p99 < 5s\",\n  \"recovery[2:broker_restart].p100 < 30s\",\n  \"consumer_create.jobs.max <= 2s\",\n]\ntolerance = \"15%\"\ntolerances = {{ \"recovery.p99\" = \"25%\", \"consumer_create.*\" = \"50%\" }}\nfloor = \"10ms\"\ncompare = [\"ready\", \"recovery\"]\n"
    );
    let plan = plan(&text);
    let t = &plan.thresholds;
    let texts: Vec<(&str, usize)> = t.checks.iter().map(|c| (c.text.as_str(), c.line)).collect();
    assert_eq!(
        texts,
        [
            ("ready.p99 < 5s", 12),
            ("recovery[2:broker_restart].p100 < 30s", 13),
            ("consumer_create.jobs.max <= 2s", 14),
        ]
    );
    assert_eq!(t.baseline.tolerance, Some(0.15));
    assert_eq!(
        t.baseline.tolerances,
        [
            ("consumer_create.*".to_string(), 0.5),
            ("recovery.p99".to_string(), 0.25)
        ]
    );
    assert_eq!(t.baseline.floor_ms, Some(10.0));
    assert_eq!(t.baseline.metrics, ["ready", "recovery"]);
    assert!(plan.variants.is_empty());
}

#[test]
fn variants_get_the_files_checks_and_their_own() {
    let text = r#"repeat = 2

[fleet]
agents = 5

[[steps]]
kind = "start"

[thresholds]
checks = ["ready.p99 < 5s"]

[[variants]]
name = "a"
thresholds = ["consumer_create.jobs.p99 < 1s"]

[[variants]]
name = "b"
fleet = { profile = "legacy" }
"#;
    let plan = plan(text);
    assert_eq!(plan.thresholds.checks.len(), 1);
    let checks = |i: usize| -> Vec<&str> {
        plan.variants[i]
            .plan
            .thresholds
            .checks
            .iter()
            .map(|c| c.text.as_str())
            .collect()
    };
    assert_eq!(
        checks(0),
        ["ready.p99 < 5s", "consumer_create.jobs.p99 < 1s"]
    );
    assert_eq!(checks(1), ["ready.p99 < 5s"]);
}

#[test]
fn repeat_without_variants_carries_the_checks() {
    let text = format!("repeat = 3\n{GATED}\n[thresholds]\nchecks = [\"recovery.p100 < 30s\"]\n");
    let plan = plan(&text);
    assert_eq!(plan.variants.len(), 1);
    assert_eq!(plan.variants[0].plan.thresholds, plan.thresholds);
}
