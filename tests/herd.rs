//! Reconnect herds end to end against a real nats-server: every trigger makes the whole
//! fleet reconnect, every agent recovers (its consumers deliver the probe), and the
//! broker ends with 7 consumers per agent again.

mod common;

use common::{Row, float, num, read_csv, run_scenario, step_row, summary_row};
use fleetsim::results::RunStatus;

const AGENTS: u64 = 30;

/// A fleet of `AGENTS` kanade agents; `fleet_extra` goes in `[fleet]`, `herd` is the
/// herd step's body (after `kind`). Steps: 1 start, 2 wait_ready, 3 the herd, 4 wait_ready.
fn herd_scenario(fleet_extra: &str, herd: &str) -> String {
    format!(
        r#"
name = "herd-test"
[fleet]
agents = {AGENTS}
groups = 3
catalog_entries = 5
{fleet_extra}
[[steps]]
kind = "start"
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

/// Checks what every herd must show, returns the recovery row.
fn assert_recovered(dir: &std::path::Path, step: &str) -> Row {
    let recovery = read_csv(dir, "recovery.csv");
    assert_eq!(recovery.len(), 1, "{recovery:?}");
    let row = recovery[0].clone();
    assert_eq!(row["step"], step);
    assert_eq!(num(&row, "agents"), AGENTS);
    assert_eq!(num(&row, "recovered"), AGENTS, "{row:?}");
    assert_eq!(num(&row, "not_recovered"), 0);
    assert!(float(&row, "recovered_100_secs") >= float(&row, "recovered_50_secs"));
    assert_eq!(num(&row, "probe_writes"), num(&row, "probe_writes_acked"));
    assert!(read_csv(dir, "unrecovered.csv").is_empty());

    let summary = read_csv(dir, "summary.csv");
    assert_eq!(
        num(summary_row(&summary, "recovery", step), "count"),
        AGENTS
    );
    assert_eq!(
        num(summary_row(&summary, "reconnect", step), "count"),
        AGENTS
    );
    assert_eq!(num(summary_row(&summary, "resync", step), "count"), AGENTS);

    let steps = read_csv(dir, "steps.csv");
    // The herd step ends with the fleet settled: every re-sync done, not just the probes in.
    assert_eq!(
        num(step_row(&steps, step), "agents_ready"),
        AGENTS,
        "{:?}",
        step_row(&steps, step)
    );
    assert_eq!(
        num(
            step_row(&steps, "4:wait_ready"),
            "broker_consumers_long_lived"
        ),
        7 * AGENTS,
        "the broker holds 7 consumers per agent again"
    );
    assert_eq!(
        num(step_row(&steps, "4:wait_ready"), "agents_ready"),
        AGENTS
    );
    let agents = read_csv(dir, "agents.csv");
    assert!(
        agents.iter().all(|a| num(a, "connects") >= 2),
        "every agent reconnected"
    );
    row
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_every_agent_recovers() {
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = herd_scenario(
        "",
        "kind = \"broker_restart\"\nsignal = \"kill\"\ndowntime = \"1s\"",
    );
    let report = run_scenario(&scenario, out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let row = assert_recovered(&report.dir, "3:broker_restart");
    // Nobody recovers while the broker is down.
    assert!(float(&row, "recovered_50_secs") >= 1.0, "{row:?}");

    // The timeline saw the herd: agents disconnected, then consumers recreated.
    let ts = read_csv(&report.dir, "timeseries.csv");
    let herd: Vec<&Row> = ts
        .iter()
        .filter(|r| r["step"] == "3:broker_restart")
        .collect();
    assert!(
        herd.iter().any(|r| num(r, "connected") < AGENTS),
        "a dip in connections"
    );
    // Counted from advisories on fleetsim's own control connection, which reconnects
    // in the same herd: creates made before it resubscribes are not seen, so this is a
    // lower bound (that every consumer came back is checked on the broker's count above).
    let created: u64 = herd.iter().map(|r| num(r, "consumers_created")).sum();
    assert!(created > 0, "watches recreated: {created}");

    // The broker's own view: sampled throughout, the restart is a recorded gap.
    let broker = read_csv(&report.dir, "broker.csv");
    let during: Vec<&Row> = broker
        .iter()
        .filter(|r| r["step"] == "3:broker_restart")
        .collect();
    assert!(
        during
            .iter()
            .any(|r| r["ok"] == "false" && !r["error"].is_empty()),
        "{during:?}"
    );
    let last = broker.last().expect("samples");
    assert_eq!(last["ok"], "true", "{last:?}");
    assert_eq!(
        num(last, "connections"),
        AGENTS + 2,
        "agents + fleetsim's control and system connections"
    );
    // Consumers on the broker: up to 7 per agent after the start, down when the
    // restarted broker comes back holding only the durable ones, then back to 7 per agent.
    let answered = |step: &str| -> Vec<u64> {
        broker
            .iter()
            .filter(|r| r["step"] == step && r["ok"] == "true")
            .map(|r| num(r, "consumers"))
            .collect()
    };
    // (wait_ready can end between two samples: its end-of-step count is in steps.csv.)
    let steps = read_csv(&report.dir, "steps.csv");
    let settled = step_row(&steps, "2:wait_ready");
    assert_eq!(num(settled, "broker_consumers_long_lived"), 7 * AGENTS);
    let herd = answered("3:broker_restart");
    assert!(
        herd.iter().any(|&c| c < 7 * AGENTS),
        "a dip after the restart: {herd:?}"
    );
    assert!(num(last, "consumers") >= 7 * AGENTS, "{last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_cut_recovery_waits_for_the_outage_to_end() {
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = herd_scenario(
        "proxy = true",
        "kind = \"network_cut\"\nrefuse_for = \"2s\"",
    );
    let report = run_scenario(&scenario, out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    assert_recovered(&report.dir, "3:network_cut");
    // No agent recovers before the refusal ends: the fastest took at least 2 s.
    let summary = read_csv(&report.dir, "summary.csv");
    let fastest = float(summary_row(&summary, "recovery", "3:network_cut"), "min");
    assert!(
        fastest >= 2000.0,
        "fastest recovery {fastest} ms is inside the outage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_cut_through_the_proxy_process_waits_for_the_outage_and_the_child_exits() {
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = herd_scenario(
        "proxy = \"process\"",
        "kind = \"network_cut\"\nrefuse_for = \"2s\"",
    );
    let report = run_scenario(&scenario, out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    assert_recovered(&report.dir, "3:network_cut");
    let summary = read_csv(&report.dir, "summary.csv");
    let fastest = float(summary_row(&summary, "recovery", "3:network_cut"), "min");
    assert!(
        fastest >= 2000.0,
        "fastest recovery {fastest} ms is inside the outage"
    );
    // The run waited for its `fleetsim proxy` child: that process no longer exists.
    let pid = report.proxy_pid.expect("the run started a proxy process");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "proxy process {pid} outlived the run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reconnect_every_agent_recovers() {
    let out = tempfile::tempdir().expect("tempdir");
    let report = run_scenario(
        &herd_scenario("", "kind = \"client_reconnect\""),
        out.path(),
    )
    .await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    assert_recovered(&report.dir, "3:client_reconnect");
}

/// Peak consumers created per 100 ms interval during the herd step.
fn peak_creates(dir: &std::path::Path, step: &str) -> u64 {
    read_csv(dir, "timeseries.csv")
        .iter()
        .filter(|r| r["step"] == step)
        .map(|r| num(r, "consumers_created"))
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splay_reopening_watches_flattens_the_consumer_create_burst() {
    let herd = "kind = \"broker_restart\"\ndowntime = \"200ms\"";
    let out = tempfile::tempdir().expect("tempdir");
    let off = run_scenario(&herd_scenario("", herd), out.path()).await;
    let on = run_scenario(
        &herd_scenario("splay = \"3s\"\nsplay_placement = \"reopen_watches\"", herd),
        out.path(),
    )
    .await;
    assert_eq!(off.status, RunStatus::Ok, "{:?}", off.reasons);
    assert_eq!(on.status, RunStatus::Ok, "{:?}", on.reasons);
    assert_recovered(&on.dir, "3:broker_restart");
    let (peak_off, peak_on) = (
        peak_creates(&off.dir, "3:broker_restart"),
        peak_creates(&on.dir, "3:broker_restart"),
    );
    assert!(
        peak_on < peak_off,
        "peak creates per 100 ms: splay on {peak_on}, off {peak_off}"
    );

    // Each agent's re-sync waited out its own splay after it reconnected, and the
    // splays spread over the window.
    let agents = read_csv(&on.dir, "agents.csv");
    let mut splays = Vec::new();
    for a in &agents {
        let splay = float(a, "last_splay_ms");
        let waited = float(a, "last_resync_wait_ms");
        assert!(
            waited >= splay,
            "{}: waited {waited} ms < splay {splay} ms",
            a["pc"]
        );
        splays.push(splay);
    }
    let max = splays.iter().cloned().fold(0.0, f64::max);
    let min = splays.iter().cloned().fold(f64::MAX, f64::min);
    assert!(
        max - min > 1500.0,
        "splays spread over the 3 s window: {min}..{max}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splay_before_gets_delays_each_resync_by_the_agents_own_splay() {
    let out = tempfile::tempdir().expect("tempdir");
    let report = run_scenario(
        &herd_scenario("splay = \"2s\"", "kind = \"client_reconnect\""),
        out.path(),
    )
    .await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    assert_recovered(&report.dir, "3:client_reconnect");
    let agents = read_csv(&report.dir, "agents.csv");
    for a in &agents {
        let (splay, waited) = (float(a, "last_splay_ms"), float(a, "last_resync_wait_ms"));
        let expected = fleetsim::splay::delay(&a["pc"], std::time::Duration::from_secs(2));
        assert!(
            (splay - expected.as_secs_f64() * 1e3).abs() < 0.01,
            "{}: splay {splay} ms is fnv1a64(pc) mod 2000",
            a["pc"]
        );
        assert!(
            waited >= splay,
            "{}: re-sync after {waited} ms, splay {splay} ms",
            a["pc"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_command_trigger_fails_the_run_and_says_why() {
    let out = tempfile::tempdir().expect("tempdir");
    let report = run_scenario(
        &herd_scenario(
            "",
            "kind = \"command\"\ncommand = \"echo restarting; exit 3\"\ncommand_timeout = \"10s\"",
        ),
        out.path(),
    )
    .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(
        report.reasons.iter().any(|r| r.contains("exit status: 3")),
        "{:?}",
        report.reasons
    );
    let recovery = read_csv(&report.dir, "recovery.csv");
    assert!(recovery[0]["trigger_error"].contains("exit status: 3"));
    // The command did not touch the broker: every agent's consumers still deliver.
    assert_eq!(num(&recovery[0], "recovered"), AGENTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lame_duck_every_agent_recovers_after_the_server_comes_back() {
    // nats-server's minimum lame_duck_duration is 30 s: the slowest herd test.
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = herd_scenario("", "kind = \"lame_duck\"").replace(
        "[fleet]",
        "[broker]\nlame_duck_duration = \"30s\"\nlame_duck_grace_period = \"0s\"\n[fleet]",
    );
    let report = run_scenario(&scenario, out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let row = assert_recovered(&report.dir, "3:lame_duck");
    // The server closes its clients over the lame-duck duration, exits, and only the
    // restarted server takes the probes.
    assert!(float(&row, "first_probe_ack_secs") > 0.0, "{row:?}");
}
