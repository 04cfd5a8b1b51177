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
///
/// The broker holds 7 consumers per agent again: exactly, when the agents ran async-nats
/// 0.51, which deletes each watch's old consumer before it creates the new one; at least,
/// with 0.50 (the kanade profile's, the real agent's), which deletes nothing and sends a
/// `CONSUMER.CREATE` per recreation attempt it makes while the server is away: the old
/// consumers and the attempts whose reply came too late stay until the server reaps them
/// after their inactivity threshold (docs/fidelity.md, the library experiment).
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
    let consumers = num(
        step_row(&steps, "4:wait_ready"),
        "broker_consumers_long_lived",
    );
    if common::manifest(dir).async_nats_version == "0.51" {
        assert_eq!(
            consumers,
            7 * AGENTS,
            "the broker holds 7 consumers per agent again"
        );
    } else {
        assert!(
            consumers >= 7 * AGENTS,
            "the broker holds at least 7 consumers per agent again: {consumers}"
        );
    }
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
    // Consumers on the broker: 7 per agent after the start; the restarted broker comes
    // back with only the durable ones (the watches' memory consumers die with the old
    // process), then holds 7 per agent again. (Whether a sample lands before the agents
    // recreate them is a race: the restart is checked by the broker's own count of
    // connections since it started, which a new process begins again.)
    // (wait_ready can end between two samples: its end-of-step count is in steps.csv.)
    let steps = read_csv(&report.dir, "steps.csv");
    let settled = step_row(&steps, "2:wait_ready");
    assert_eq!(num(settled, "broker_consumers_long_lived"), 7 * AGENTS);
    // Before the restart every client was connected once; the old process would have
    // counted every agent's reconnect on top of that.
    let connected = num(settled, "broker_connections");
    assert_eq!(connected, AGENTS + 2);
    assert!(
        num(last, "total_connections") < connected + AGENTS,
        "a new server process: {} connections since it started, {connected} before the restart",
        num(last, "total_connections")
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

/// `link_latency` reaches the run's proxy: no agent is ready, nor recovered from a cut,
/// sooner than one round trip through the link (twice the latency; the handshake alone
/// is more), and the cut works as without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_cut_over_a_slow_link_recovers_and_every_agent_pays_the_latency() {
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = herd_scenario(
        "proxy = true\nlink_latency = \"50ms\"",
        "kind = \"network_cut\"",
    );
    let report = run_scenario(&scenario, out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    assert_recovered(&report.dir, "3:network_cut");
    let summary = read_csv(&report.dir, "summary.csv");
    for (metric, phase) in [("ready", "1:start"), ("recovery", "3:network_cut")] {
        let fastest = float(summary_row(&summary, metric, phase), "min");
        assert!(
            fastest >= 100.0,
            "fastest {metric} in {phase}: {fastest} ms, less than a round trip of the link"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_cut_through_the_proxy_process_waits_for_the_outage_and_the_child_exits() {
    let out = tempfile::tempdir().expect("tempdir");
    // On fleetsim's own async-nats 0.51, so that one herd here checks the exact count:
    // 7 consumers per agent again, each old one deleted by the library.
    let scenario = herd_scenario(
        "proxy = \"process\"\nasync_nats = \"0.51\"",
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

/// The watches of the kanade profile: every consumer but the durable EXEC one.
const WATCHES: [&str; 6] = [
    "agent_config",
    "groups_config",
    "groups_subs",
    "schedules",
    "jobs",
    "freeze",
];

/// Checks each agent's splay against [`fleetsim::splay::delay`] and that its re-sync
/// came after it; returns the splays in ms.
fn assert_own_splays(agents: &[Row], window: std::time::Duration) -> Vec<f64> {
    assert_eq!(agents.len() as u64, AGENTS, "one row per agent");
    agents
        .iter()
        .map(|a| {
            let (splay, waited) = (float(a, "last_splay_ms"), float(a, "last_resync_wait_ms"));
            let expected = fleetsim::splay::delay(&a["pc"], window);
            assert!(
                (splay - expected.as_secs_f64() * 1e3).abs() < 0.01,
                "{}: splay {splay} ms is fnv1a64(pc) mod {} ms",
                a["pc"],
                window.as_millis()
            );
            assert!(
                waited >= splay,
                "{}: re-sync after {waited} ms, splay {splay} ms",
                a["pc"]
            );
            splay
        })
        .collect()
}

/// What flattens the burst, checked in one run by counts and causes: each agent
/// reopened each of its watches once, after its own splay, and the splays spread the
/// re-opens over the window. (How flat the broker's peak gets is a measurement, for an
/// A/B scenario with `[[variants]]` and repeats; compared between two single runs on a
/// shared machine it is a race.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splay_reopening_watches_reopens_each_agents_watches_after_its_own_splay() {
    let herd = "kind = \"broker_restart\"\ndowntime = \"200ms\"";
    let out = tempfile::tempdir().expect("tempdir");
    let on = run_scenario(
        &herd_scenario("splay = \"3s\"\nsplay_placement = \"reopen_watches\"", herd),
        out.path(),
    )
    .await;
    assert_eq!(on.status, RunStatus::Ok, "{:?}", on.reasons);
    assert_recovered(&on.dir, "3:broker_restart");
    // Every watch reopened once per agent in the herd; the durable EXEC consumer
    // survives the reconnect and is not.
    let summary = read_csv(&on.dir, "summary.csv");
    for watch in WATCHES {
        let metric = format!("consumer_create.{watch}");
        assert_eq!(
            num(summary_row(&summary, &metric, "3:broker_restart"), "count"),
            AGENTS,
            "{metric}"
        );
    }
    assert!(
        !summary
            .iter()
            .any(|r| r["metric"] == "consumer_create.exec_replay"
                && r["phase"] == "3:broker_restart"),
        "the durable consumer is not reopened"
    );

    let window = std::time::Duration::from_secs(3);
    let splays = assert_own_splays(&read_csv(&on.dir, "agents.csv"), window);
    // Spread over the window: the busiest 100 ms (the timeline's interval) holds at
    // most a fifth of the fleet's re-opens, where without a splay it holds them all.
    let mut per_interval = std::collections::BTreeMap::new();
    for splay in &splays {
        *per_interval.entry((splay / 100.0) as u64).or_insert(0u64) += 1;
    }
    let busiest = per_interval.values().max().copied().unwrap_or(0);
    assert!(
        busiest <= AGENTS / 5,
        "{busiest} of {AGENTS} splays in one 100 ms: {per_interval:?}"
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
    assert_own_splays(
        &read_csv(&report.dir, "agents.csv"),
        std::time::Duration::from_secs(2),
    );
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
    // The server closes its clients over the lame-duck duration and exits; fleetsim
    // starts it again. In the broker's own samples: answers from the old server in
    // lame-duck mode (unhealthy, still counting its clients), then a healthy one again,
    // which can only be the new server.
    let broker = read_csv(&report.dir, "broker.csv");
    let samples: Vec<&Row> = broker.iter().collect();
    let lame = |r: &&Row| r["ok"] == "false" && !r["connections"].is_empty();
    let first_lame = samples
        .iter()
        .position(|r| r["step"] == "3:lame_duck" && lame(r))
        .expect("the server in lame-duck mode during the step");
    // Each step is sampled as it begins: 4:wait_ready's sample at the latest.
    let back = first_lame
        + samples[first_lame..]
            .iter()
            .position(|r| r["ok"] == "true")
            .expect("a healthy server again after the lame duck");
    let old_seen_last = samples[..back]
        .iter()
        .rev()
        .find(|r| lame(r))
        .map(|r| float(r, "t_secs"))
        .expect("checked");
    // The old server still answered at `old_seen_last` (a sample's time is when it
    // began): the first probe acknowledged and every agent's recovery came after it,
    // from the server that came back.
    let trigger = float(&row, "trigger_secs");
    let first_ack = trigger + float(&row, "first_probe_ack_secs");
    assert!(
        first_ack > old_seen_last,
        "first probe acknowledged at {first_ack} s, the old server still answered at {old_seen_last} s"
    );
    let summary = read_csv(&report.dir, "summary.csv");
    let first_recovery =
        trigger + float(summary_row(&summary, "recovery", "3:lame_duck"), "min") / 1e3;
    assert!(
        first_recovery > old_seen_last,
        "an agent recovered at {first_recovery} s, the old server still answered at {old_seen_last} s"
    );
}
