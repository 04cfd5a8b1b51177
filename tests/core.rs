//! The core contract, end to end against a real nats-server: a fleet comes up with the
//! consumers its profile says, failures are counted with their JetStream code, and the
//! run directory says what happened.

mod common;

use common::{num, read_csv, run_scenario, step_row};
use fleetsim::results::RunStatus;

fn fleet_scenario(agents: usize, profile: &str, extra_broker: &str) -> String {
    format!(
        r#"
name = "core-test"
[broker]
{extra_broker}
[fleet]
agents = {agents}
groups = 3
profile = "{profile}"
catalog_entries = 5
setup_retries = 0
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "60s"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_kanade_agents_hold_exactly_seven_consumers_each() {
    let out = tempfile::tempdir().expect("tempdir");
    let report = run_scenario(&fleet_scenario(50, "kanade", ""), out.path()).await;
    assert_eq!(
        report.status,
        RunStatus::Ok,
        "reasons: {:?}",
        report.reasons
    );

    let steps = read_csv(&report.dir, "steps.csv");
    let after_ready = step_row(&steps, "2:wait_ready");
    assert_eq!(num(after_ready, "agents_ready"), 50);
    assert_eq!(num(after_ready, "broker_consumers_long_lived"), 7 * 50);
    assert_eq!(
        num(after_ready, "broker_connections"),
        50 + 2,
        "50 agents + fleetsim's control and system-account connections"
    );

    let agents = read_csv(&report.dir, "agents.csv");
    assert_eq!(agents.len(), 50);
    assert!(agents.iter().all(|a| a["state"] == "ready"), "{agents:?}");

    let summary = read_csv(&report.dir, "summary.csv");
    let ready = summary
        .iter()
        .find(|r| r["metric"] == "ready" && r["phase"] == "1:start")
        .expect("ready latency row");
    assert_eq!(ready["count"], "50");
    for consumer in [
        "agent_config",
        "groups_config",
        "groups_subs",
        "schedules",
        "jobs",
        "freeze",
        "exec_replay",
    ] {
        let metric = format!("consumer_create.{consumer}");
        let row = summary
            .iter()
            .find(|r| r["metric"] == metric)
            .unwrap_or_else(|| panic!("{metric} row"));
        assert_eq!(row["count"], "50", "{metric}");
    }
    assert!(report.dir.join("1-ready.hgrm").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_profile_walks_the_whole_config_bucket() {
    let out = tempfile::tempdir().expect("tempdir");
    let kanade = run_scenario(&fleet_scenario(30, "kanade", ""), out.path()).await;
    let legacy = run_scenario(&fleet_scenario(30, "legacy", ""), out.path()).await;
    assert_eq!(kanade.status, RunStatus::Ok, "{:?}", kanade.reasons);
    assert_eq!(legacy.status, RunStatus::Ok, "{:?}", legacy.reasons);
    let k = read_csv(&kanade.dir, "steps.csv");
    let l = read_csv(&legacy.dir, "steps.csv");
    let (k, l) = (step_row(&k, "2:wait_ready"), step_row(&l, "2:wait_ready"));
    // Same steady footprint: 7 long-lived consumers per agent either way.
    assert_eq!(num(k, "broker_consumers_long_lived"), 7 * 30);
    assert_eq!(num(l, "broker_consumers_long_lived"), 7 * 30);
    // The legacy sync opens one more keys() consumer per agent (the agent_config walk):
    // at least one more JetStream API request per agent.
    assert!(
        num(l, "broker_api_total") >= num(k, "broker_api_total") + 30,
        "legacy api {} vs kanade {}",
        num(l, "broker_api_total"),
        num(k, "broker_api_total")
    );
    // And its sync reads every agent's config key: far slower per agent than 3-5 gets.
    let sync_p50 = |dir: &std::path::Path| -> f64 {
        read_csv(dir, "summary.csv")
            .iter()
            .find(|r| r["metric"] == "sync")
            .expect("sync row")["p50"]
            .parse()
            .expect("number")
    };
    assert!(sync_p50(&legacy.dir) > sync_p50(&kanade.dir));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_cap_failures_are_counted_with_their_jetstream_code() {
    let out = tempfile::tempdir().expect("tempdir");
    // agent_groups holds 2 watches per agent: a cap of 6 per stream admits 3 agents.
    let report = run_scenario(
        &fleet_scenario(6, "kanade", "default_max_consumers = 6"),
        out.path(),
    )
    .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(
        report.reasons.iter().any(|r| r.contains("agents failed")),
        "{:?}",
        report.reasons
    );

    let errors = read_csv(&report.dir, "errors.csv");
    let capped: u64 = errors
        .iter()
        .filter(|e| e["kind"] == "jetstream" && e["code"] == "10026")
        .map(|e| e["count"].parse::<u64>().expect("count"))
        .sum();
    assert!(
        capped >= 3,
        "expected 10026 failures, errors.csv: {errors:?}"
    );

    let agents = read_csv(&report.dir, "agents.csv");
    let failed: Vec<_> = agents.iter().filter(|a| a["state"] == "failed").collect();
    let ready = agents.iter().filter(|a| a["state"] == "ready").count();
    assert_eq!(failed.len() + ready, 6, "every agent ends ready or failed");
    // At most 3 agents can hold both agent_groups watches; which ones is a race.
    assert!(
        ready <= 3 && failed.len() >= 3,
        "ready {ready}, failed {}",
        failed.len()
    );
    assert!(
        failed.iter().all(|a| a["reason"].contains("10026")),
        "{failed:?}"
    );
}

/// A Ctrl-C that comes while the broker is still starting stops the run there: it is
/// neither swallowed (the run going on regardless) nor a crash, and the half-started
/// broker is stopped with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_during_the_broker_start_stops_the_run_before_anything_runs() {
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = fleet_scenario(5, "kanade", "");
    let plan = fleetsim::scenario::parse_str(&scenario, "test.toml").expect("valid");
    let options = fleetsim::run::RunOptions {
        scenario_path: None,
        scenario_text: scenario.clone(),
        results_base: out.path().to_path_buf(),
        run_dir: None,
        proxy_program: None,
    };
    // The interrupt is already there when the run begins.
    let result = fleetsim::run::run(plan, options, std::future::ready(())).await;
    assert!(
        matches!(result, Err(ref e) if e.is_interrupted()),
        "{result:?}"
    );
    assert!(
        std::fs::read_dir(out.path()).expect("out").next().is_none(),
        "nothing measured, no run directory"
    );
    // The broker the run may have begun to start is stopped: SIGKILLed on drop, so it
    // is gone (or a zombie) within moments.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Some(pid) = common::running_child("nats-server") {
        assert!(
            std::time::Instant::now() < deadline,
            "nats-server {pid} still running"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
