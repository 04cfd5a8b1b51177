//! The core contract, end to end against a real nats-server: a fleet comes up with the
//! consumers its profile says, failures are counted with their JetStream code, and the
//! run directory says what happened.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use common::{Listener, num, own_broker, read_csv, run_against, run_scenario, step_row};
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

    // The manifest names the async-nats the agents ran (the kanade profile's 0.50, the
    // real agent's), one of the two lines Cargo.lock pins (major.minor for 0.x).
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(report.dir.join("manifest.json")).expect("manifest.json"),
    )
    .expect("manifest.json is JSON");
    assert_eq!(manifest["async_nats_version"], "0.50");
    let lines: Vec<String> = locked_versions("async-nats")
        .iter()
        .map(|v| {
            v.rsplit_once('.')
                .map_or(v.clone(), |(line, _)| line.to_string())
        })
        .collect();
    assert_eq!(lines, ["0.50", "0.51"], "Cargo.lock links both versions");
}

/// The versions of package `name` in Cargo.lock, sorted.
fn locked_versions(name: &str) -> Vec<String> {
    let lock: toml::Table = std::fs::read_to_string(common::project_root().join("Cargo.lock"))
        .expect("Cargo.lock")
        .parse()
        .expect("Cargo.lock is TOML");
    let packages = lock["package"].as_array().expect("[[package]]");
    let mut versions: Vec<String> = packages
        .iter()
        .filter(|p| p["name"].as_str() == Some(name))
        .filter_map(|p| p["version"].as_str())
        .map(String::from)
        .collect();
    versions.sort();
    versions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_profile_walks_the_whole_config_bucket() {
    let kanade = run_counting_config_gets(30, "kanade").await;
    let legacy = run_counting_config_gets(30, "legacy").await;
    let k = read_csv(&kanade.report.dir, "steps.csv");
    let l = read_csv(&legacy.report.dir, "steps.csv");
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
    // And its sync reads every agent's config key, where kanade's gets its own 3: the
    // gets the broker was asked for, counted on the wire.
    assert!(
        legacy.keys > 30,
        "a key per agent and more: {}",
        legacy.keys
    );
    // A get that failed was retried (and counted in errors.csv): on a loaded machine a
    // timed-out get asks the broker again, so each counted failure allows one more.
    let kanade_retries = config_get_failures(&kanade.report.dir);
    assert!(
        (30 * 3..=30 * 3 + kanade_retries).contains(&kanade.gets),
        "kanade: global, pcs.<pc>, groups.<group>: {} gets, {kanade_retries} retried",
        kanade.gets
    );
    let legacy_retries = config_get_failures(&legacy.report.dir);
    assert!(
        (30 * legacy.keys..=30 * legacy.keys + legacy_retries).contains(&legacy.gets),
        "legacy: every key of the bucket, by every agent: {} gets for {} keys, {legacy_retries} retried",
        legacy.gets,
        legacy.keys
    );
}

/// Failed sync reads of `agent_config` the run counted in errors.csv: each was retried.
fn config_get_failures(dir: &std::path::Path) -> u64 {
    read_csv(dir, "errors.csv")
        .iter()
        .filter(|r| {
            r["operation"].starts_with("sync_") && r["operation"].ends_with(".agent_config")
        })
        .map(|r| r["count"].parse::<u64>().expect("count"))
        .sum()
}

/// A run against a broker of the test's own, and what the broker saw of it.
struct CountedRun {
    report: fleetsim::run::RunReport,
    /// KV gets on `agent_config` the broker was asked for.
    gets: u64,
    /// Keys in `agent_config` after the run.
    keys: u64,
    /// Holds the run directory.
    _out: tempfile::TempDir,
}

/// Runs a fleet of `agents` with `profile` against an embedded broker the test owns,
/// counting the gets on `agent_config`: each is a request to
/// `$JS.API.DIRECT.GET.KV_agent_config.<key>` (KV buckets allow direct gets), which a
/// plain subscriber in the same account receives too.
async fn run_counting_config_gets(agents: usize, profile: &str) -> CountedRun {
    use futures::StreamExt;
    let broker = own_broker().await;
    let client = async_nats::connect(broker.url()).await.expect("connect");
    let counting = Listener::start(
        &client,
        "$JS.API.DIRECT.GET.KV_agent_config.>",
        0u64,
        |n, _| *n += 1,
    )
    .await;

    let scenario = fleet_scenario(agents, profile, "");
    let out = tempfile::tempdir().expect("tempdir");
    let report = run_against(
        &scenario,
        broker.url(),
        Some(broker.monitor_url()),
        out.path(),
    )
    .await;
    assert_eq!(
        report.status,
        RunStatus::Ok,
        "{profile}: {:?}",
        report.reasons
    );

    // Every request the run made reached this connection before the reply to a later
    // PING: then the subscription ends, and the count is complete.
    client.flush().await.expect("flush");
    let js = async_nats::jetstream::new(client.clone());
    let keys = js
        .get_key_value("agent_config")
        .await
        .expect("agent_config")
        .keys()
        .await
        .expect("keys")
        .count()
        .await as u64;
    let gets = counting.finish().await;
    CountedRun {
        report,
        gets,
        keys,
        _out: out,
    }
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
#[test]
fn an_interrupt_during_the_broker_start_stops_the_run_before_anything_runs() {
    // The brokers of this test are told apart from those of tests running beside it in
    // this process (`cargo test`) by the threads that started them.
    let (runtime, threads) = common::TestThreads::runtime();
    let scenario = fleet_scenario(5, "kanade", "");
    let any_broker = || threads.running_child("nats-server", |_| true);

    // An interrupt already there when the run begins: no broker is started at all.
    interrupted_run(&runtime, &scenario, std::future::ready(()));
    assert_eq!(any_broker(), None);

    // An interrupt while the broker starts: as soon as this test's nats-server process
    // runs (the run has not seen it healthy yet). The check is made each time the run
    // is polled, before the broker's start goes on, and every 5 ms.
    let started = std::sync::Mutex::new(None);
    let mut tick: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let server_up = std::future::poll_fn(|cx| {
        let server = threads.running_child("nats-server", |args| args.iter().any(|a| a == "-c"));
        if let Some(server) = server {
            *started.lock().expect("lock") = Some(server);
            return Poll::Ready(());
        }
        let every = Duration::from_millis(5);
        let tick = tick.get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
        while tick.as_mut().poll(cx).is_ready() {
            tick.as_mut().reset(tokio::time::Instant::now() + every);
        }
        Poll::Pending
    });
    interrupted_run(&runtime, &scenario, server_up);
    let server = started
        .lock()
        .expect("lock")
        .take()
        .expect("the run was interrupted by its nats-server starting");
    // SIGKILLed when the half-started broker is dropped: gone (or a zombie) within
    // moments, and no other nats-server of this test is left.
    server.wait_gone(Duration::from_secs(10), "the half-started nats-server");
    assert_eq!(any_broker(), None);
}

/// Runs `scenario` until `shutdown`, which must come before the broker is up: the run
/// ends `Interrupted`, without a run directory.
fn interrupted_run(
    runtime: &tokio::runtime::Runtime,
    scenario: &str,
    shutdown: impl Future<Output = ()>,
) {
    let out = tempfile::tempdir().expect("tempdir");
    let options = fleetsim::run::RunOptions {
        scenario_path: None,
        scenario_text: scenario.to_string(),
        results_base: out.path().to_path_buf(),
        run_dir: None,
        proxy_program: None,
    };
    let plan = fleetsim::scenario::parse_str(scenario, "test.toml").expect("valid");
    let result = runtime.block_on(fleetsim::run::run(plan, options, shutdown));
    assert!(
        matches!(result, Err(ref e) if e.is_interrupted()),
        "{result:?}"
    );
    assert!(
        std::fs::read_dir(out.path()).expect("out").next().is_none(),
        "nothing measured, no run directory"
    );
}

/// An all-at-once `start` lasts microseconds, less than one broker sample takes: the runner
/// waits until the broker sampler has begun a sample of each step, so every step has one
/// (the gate's `broker[start].api_errors` reads them; without it the check was "not
/// measured" whenever the previous step's sample was still in flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_gets_a_broker_sample_however_short() {
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = format!(
        "{}\n[[steps]]\nkind = \"hold\"\nduration = \"10ms\"\n[[steps]]\nkind = \"hold\"\nduration = \"10ms\"\n",
        fleet_scenario(5, "kanade", "")
    );
    let report = run_scenario(&scenario, out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let rows = read_csv(&report.dir, "broker.csv");
    for step in ["1:start", "2:wait_ready", "3:hold", "4:hold"] {
        assert!(
            rows.iter().any(|r| r["step"] == step),
            "no broker sample of {step}: {:?}",
            rows.iter().map(|r| &r["step"]).collect::<Vec<_>>()
        );
    }
}
