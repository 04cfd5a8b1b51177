//! `fire_skew`, how sharply a herd fired, is recorded for every agent of a start step and
//! of a herd step against a real nats-server: one sample per agent, in the step's own
//! phase of `summary.csv`. (How sharp is a benchmark's question, never a test's.)

mod common;

use common::{float, num, read_csv, run_scenario, summary_row};
use fleetsim::results::RunStatus;

const AGENTS: u64 = 20;

/// Steps: 1 start (`start` is its body), 2 wait_ready, 3 the herd, 4 wait_ready.
fn scenario(start: &str, herd: &str) -> String {
    format!(
        r#"
name = "fire-skew-test"
[fleet]
agents = {AGENTS}
groups = 2
catalog_entries = 5
[[steps]]
kind = "start"
{start}
[[steps]]
kind = "wait_ready"
timeout = "60s"
[[steps]]
{herd}
recover_timeout = "90s"
[[steps]]
kind = "wait_ready"
timeout = "60s"
"#
    )
}

/// `fire_skew` of `phase` has one sample per agent, none negative.
fn assert_one_skew_per_agent(summary: &[common::Row], phase: &str) {
    let row = summary_row(summary, "fire_skew", phase);
    assert_eq!(num(row, "count"), AGENTS, "{row:?}");
    assert!(float(row, "min") >= 0.0, "{row:?}");
    assert!(float(row, "max") >= float(row, "min"), "{row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_all_at_once_start_and_a_broker_restart_record_fire_skew_per_agent() {
    let out = tempfile::tempdir().expect("tempdir");
    let text = scenario(
        "mode = \"all_at_once\"",
        "kind = \"broker_restart\"\nsignal = \"kill\"\ndowntime = \"500ms\"",
    );
    let report = run_scenario(&text, out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let summary = read_csv(&report.dir, "summary.csv");
    assert_one_skew_per_agent(&summary, "1:start");
    // The first attempt is also when `connect_attempt_at` is taken: one each.
    assert_eq!(
        num(
            summary_row(&summary, "connect_attempt_at", "1:start"),
            "count"
        ),
        AGENTS
    );
    // The restarted broker cannot be reached before it is started again, so every
    // agent's reconnect counts from that instant and none came early.
    assert_one_skew_per_agent(&summary, "3:broker_restart");
    assert!(
        !summary.iter().any(|r| r["metric"] == "fire_skew_early"),
        "no agent reconnects to a broker not started yet"
    );
    assert!(
        !summary
            .iter()
            .any(|r| r["metric"] == "fire_skew" && r["phase"].ends_with("wait_ready")),
        "fire_skew belongs to the step that fired"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_start_and_a_client_reconnect_record_fire_skew_per_agent() {
    let out = tempfile::tempdir().expect("tempdir");
    let text = scenario("mode = \"rate\"\nrate = 100", "kind = \"client_reconnect\"");
    let report = run_scenario(&text, out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let summary = read_csv(&report.dir, "summary.csv");
    assert_one_skew_per_agent(&summary, "1:start");
    assert_one_skew_per_agent(&summary, "3:client_reconnect");
}
