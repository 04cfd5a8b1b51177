//! The JetStream API queue overflow, reproduced and seen: a tiny `request_queue_limit`
//! and a fleet starting at once make nats-server drop queued API requests. The run
//! records the broker's `API.LIMIT_REACHED` advisories (from the system account) and
//! the agents' timeouts on the same 100 ms timeline.

mod common;

use common::{assert_secret_nowhere, num, only_dir_in, read_csv, run_scenario};

/// 150 agents starting at once, with a 1 s request timeout: a herd for a tiny API queue.
/// Each opens three watches (a bind and three creates): enough to overflow a queue of 5
/// many times over, and little enough that every agent is ready within the step's
/// timeout once the retries get through (the full kanade cold start, 17 binds, would not
/// be, with a queue of 5).
const HERD: &str = r#"
[fleet]
agents = 150
groups = 3
catalog_entries = 3
request_timeout = "1s"
setup_retries = 10
profile = "watches"
[[profiles.watches.consumers]]
name = "own"
watch = { bucket = "agent_config", key = "pcs.{pc}" }
[[profiles.watches.consumers]]
name = "group"
watch = { bucket = "agent_config", key = "groups.{group}" }
[[profiles.watches.consumers]]
name = "jobs"
watch_all = { bucket = "jobs" }
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "90s"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_api_queue_overflows_and_the_timeline_shows_advisories_then_timeouts() {
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = format!("name = \"api-queue-test\"\n[broker]\nrequest_queue_limit = 5\n{HERD}");
    let report = run_scenario(&scenario, out.path()).await;
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
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(report.dir.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["broker"]["api_limit_reached_counted"], true);
}

/// The same overflow on a broker fleetsim does not own: `--server` points the run at it,
/// and `$FLEETSIM_SYSTEM_URL` names a system-account user so the advisories are still
/// counted. The user's password reaches no output and no file of the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_broker_counts_the_advisories_through_fleetsim_system_url() {
    use fleetsim::broker::embedded::{EmbeddedBroker, EmbeddedOptions};
    let broker = EmbeddedBroker::start(EmbeddedOptions {
        max_connections: 65_536,
        request_queue_limit: 5,
        default_max_consumers: -1,
        lame_duck_duration: std::time::Duration::from_secs(30),
        lame_duck_grace_period: std::time::Duration::from_secs(1),
        keepalive: Default::default(),
    })
    .await
    .expect("a broker to stand for the external one");
    let (user, password) = broker.system_user();
    let port = broker.url().rsplit(':').next().expect("port").to_string();
    let system_url = format!("nats://{user}:{password}@127.0.0.1:{port}");

    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = format!("name = \"api-queue-external\"\n{HERD}");
    std::fs::write(dir.path().join("external.toml"), scenario).expect("scenario");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetsim"))
        .args(["run", "external.toml", "--out", "out", "--server"])
        .arg(broker.url())
        .arg("--monitor")
        .arg(broker.monitor_url())
        .env("FLEETSIM_SYSTEM_URL", &system_url)
        .current_dir(dir.path())
        .output()
        .await
        .expect("fleetsim runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{printed}");
    let run = only_dir_in(&dir.path().join("out"));
    let manifest = std::fs::read_to_string(run.join("manifest.json")).expect("manifest");
    let manifest: serde_json::Value = serde_json::from_str(&manifest).expect("json");
    assert_eq!(manifest["broker"]["kind"], "external");
    assert_eq!(manifest["broker"]["api_limit_reached_counted"], true);
    let ts = read_csv(&run, "timeseries.csv");
    let advisories: u64 = ts.iter().map(|r| num(r, "api_limit_reached")).sum();
    let timeouts: u64 = ts.iter().map(|r| num(r, "errors_timeout")).sum();
    assert!(
        advisories > 0,
        "the system-account listener counted the drops ({timeouts} timeouts)\n{printed}"
    );

    assert_secret_nowhere(password, &printed, &run);
}
