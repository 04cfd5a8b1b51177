//! The JetStream API queue overflow, reproduced and seen: a tiny `request_queue_limit`
//! and a fleet starting at once make nats-server drop queued API requests. The run
//! records the broker's `API.LIMIT_REACHED` advisories (from the system account) and
//! the agents' timeouts on the same 100 ms timeline.

mod common;

use common::{num, read_csv, run_scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_api_queue_overflows_and_the_timeline_shows_advisories_then_timeouts() {
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = r#"
name = "api-queue-test"
[broker]
request_queue_limit = 5
[fleet]
agents = 150
groups = 3
catalog_entries = 3
request_timeout = "1s"
setup_retries = 10
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "90s"
"#;
    let report = run_scenario(scenario, out.path()).await;
    let ts = read_csv(&report.dir, "timeseries.csv");
    let first = |col: &str| {
        ts.iter()
            .find(|r| num(r, col) > 0)
            .map(|r| r["t_secs"].parse::<f64>().expect("t_secs"))
    };
    let advisories: u64 = ts.iter().map(|r| num(r, "api_limit_reached")).sum();
    let timeouts: u64 = ts.iter().map(|r| num(r, "errors_timeout")).sum();
    assert!(advisories > 0, "the broker said it dropped API requests");
    assert!(timeouts > 0, "agents timed out on dropped requests");
    // Cause before effect on one clock: a dropped request times out a request
    // timeout (1 s) after it was sent, so the first timeout follows the first drop.
    let (drop_at, timeout_at) = (
        first("api_limit_reached").expect("an advisory"),
        first("errors_timeout").expect("a timeout"),
    );
    assert!(
        timeout_at > drop_at,
        "drop {drop_at} s, timeout {timeout_at} s"
    );
    // The timeouts are counted by operation in errors.csv too.
    let errors = read_csv(&report.dir, "errors.csv");
    let counted: u64 = errors
        .iter()
        .filter(|e| e["kind"] == "timeout")
        .map(|e| num(e, "count"))
        .sum();
    assert_eq!(counted, timeouts);
}
