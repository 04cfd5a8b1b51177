//! Network faults end to end against a real nats-server, through the fault proxy: a
//! silent cut (blackhole) is noticed only through the agents' keepalive, a reset at
//! once; a partial cut leaves the agents it spares working.
//!
//! The agents' `ping_interval` is 1 s here so the keepalive's verdict comes in seconds.
//! async-nats (0.51, `MAX_PENDING_PINGS = 2`, not configurable) sends a PING each
//! interval without a server op and gives up at the third: with nothing arriving from
//! the fault on, an agent notices between 2 and 3 intervals after it.

mod common;

use common::{Row, float, num, read_csv, run_scenario, summary_row};
use fleetsim::results::RunStatus;

const AGENTS: u64 = 20;
const PING_SECS: f64 = 1.0;

/// `AGENTS` kanade agents on async-nats 0.51 behind the in-process proxy, pinging every
/// second; `cut` is the network_cut's body (after `kind`). Steps: 1 start, 2 wait_ready,
/// 3 the cut, 4 wait_ready.
fn cut_scenario(cut: &str) -> String {
    format!(
        r#"
name = "network-fault-test"
[fleet]
agents = {AGENTS}
groups = 4
catalog_entries = 5
proxy = true
async_nats = "0.51"
ping_interval = "{PING_SECS}s"
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "60s"
[[steps]]
kind = "network_cut"
{cut}
recover_timeout = "60s"
[[steps]]
kind = "wait_ready"
timeout = "60s"
"#
    )
}

fn recovery_row(dir: &std::path::Path) -> Row {
    let recovery = read_csv(dir, "recovery.csv");
    assert_eq!(recovery.len(), 1, "{recovery:?}");
    recovery[0].clone()
}

/// A blackhole longer than the keepalive: no agent notices before two ping intervals,
/// every one by three (plus the scheduling slack of a loaded 2-core machine), and then
/// reconnects and recovers once the hole lifts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackhole_is_noticed_only_through_the_keepalive() {
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = cut_scenario("mode = \"blackhole\"\ndowntime = \"6s\"");
    let report = run_scenario(&scenario, out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let row = recovery_row(&report.dir);
    assert_eq!(row["step"], "3:network_cut");
    assert_eq!(num(&row, "recovered"), AGENTS, "{row:?}");
    assert_eq!(
        num(&row, "detected"),
        AGENTS,
        "every agent noticed: {row:?}"
    );
    let summary = read_csv(&report.dir, "summary.csv");
    let detect = summary_row(&summary, "detect", "3:network_cut");
    assert_eq!(num(detect, "count"), AGENTS);
    let (first, last) = (float(detect, "min") / 1e3, float(detect, "max") / 1e3);
    assert!(
        first >= 2.0 * PING_SECS - 0.1,
        "an agent noticed the blackhole after {first:.3} s, before two ping intervals"
    );
    assert!(
        last <= 3.0 * PING_SECS + 1.5,
        "an agent noticed the blackhole only after {last:.3} s, past three ping intervals"
    );
    // Nobody got the probes through the hole: the fastest recovery came after it.
    let fastest = float(summary_row(&summary, "recovery", "3:network_cut"), "min") / 1e3;
    assert!(
        fastest >= 6.0,
        "recovered after {fastest:.3} s, inside the 6 s blackhole"
    );
    // The server pings every 2 minutes (its default): through the hole it still holds
    // every agent's old connection after the agents gave them up, and counts say so.
    let broker = read_csv(&report.dir, "broker.csv");
    let stale_max = broker
        .iter()
        .filter(|r| r["step"] == "3:network_cut" && !r["stale_connections"].is_empty())
        .map(|r| num(r, "stale_connections"))
        .max();
    assert!(
        stale_max.is_some_and(|m| m >= AGENTS),
        "the broker's stale connections during the blackhole peaked at {stale_max:?}, \
         fewer than the {AGENTS} agents that gave theirs up"
    );
    // As the cut began, every agent still believed in its connection: none stale (the
    // step's first sample is taken as it begins; nobody notices a blackhole for 2 s).
    let first = broker
        .iter()
        .find(|r| r["step"] == "3:network_cut")
        .expect("a sample of the cut");
    assert_eq!(num(first, "stale_connections"), 0, "{first:?}");
    let timeseries = read_csv(&report.dir, "timeseries.csv");
    assert!(
        timeseries.iter().any(|r| r["stale_connections"]
            .parse::<u64>()
            .is_ok_and(|n| n >= AGENTS)),
        "timeseries.csv never showed the stale connections"
    );
}

/// A reset cut is noticed at once: every agent's Disconnected event comes within a
/// fraction of one ping interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_cut_is_noticed_at_once() {
    let out = tempfile::tempdir().expect("tempdir");
    let report = run_scenario(&cut_scenario("mode = \"reset\""), out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let row = recovery_row(&report.dir);
    assert_eq!(num(&row, "detected"), AGENTS, "{row:?}");
    let summary = read_csv(&report.dir, "summary.csv");
    let last = float(summary_row(&summary, "detect", "3:network_cut"), "max") / 1e3;
    assert!(
        last < PING_SECS / 2.0,
        "an agent noticed a reset only after {last:.3} s"
    );
}

/// A blackhole shorter than the keepalive goes unnoticed: nobody disconnects, and the
/// probes written into it arrive through the same connections once it lifts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackhole_shorter_than_the_keepalive_goes_unnoticed() {
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = cut_scenario("mode = \"blackhole\"\ndowntime = \"800ms\"");
    let report = run_scenario(&scenario, out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let row = recovery_row(&report.dir);
    assert_eq!(num(&row, "recovered"), AGENTS, "{row:?}");
    assert_eq!(num(&row, "detected"), 0, "nobody noticed: {row:?}");
    let summary = read_csv(&report.dir, "summary.csv");
    let fastest = float(summary_row(&summary, "recovery", "3:network_cut"), "min") / 1e3;
    assert!(fastest >= 0.8, "a probe crossed the hole: {fastest:.3} s");
    // No agent reconnected: the step's `reconnect` metric has no sample.
    assert!(
        summary
            .iter()
            .all(|r| !(r["metric"] == "reconnect" && r["phase"] == "3:network_cut")),
        "an agent reconnected"
    );
}

/// A 30 % partial cut: the hit agents reconnect, the spared 70 % keep their
/// connections and get the probes at once, reported apart (`recovery_spared`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_cut_leaves_the_spared_agents_working() {
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = cut_scenario("fraction = 0.3\nrefuse_for = \"2s\"");
    let report = run_scenario(&scenario, out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let row = recovery_row(&report.dir);
    let hit = (AGENTS as f64 * 0.3).ceil() as u64;
    assert_eq!(num(&row, "agents"), hit, "{row:?}");
    assert_eq!(num(&row, "recovered"), hit);
    assert_eq!(num(&row, "detected"), hit);
    assert_eq!(num(&row, "spared"), AGENTS - hit);
    assert_eq!(num(&row, "spared_recovered"), AGENTS - hit);
    let summary = read_csv(&report.dir, "summary.csv");
    let phase = "3:network_cut";
    let hit_fastest = float(summary_row(&summary, "recovery", phase), "min") / 1e3;
    assert!(
        hit_fastest >= 2.0,
        "a hit agent recovered inside the refusal"
    );
    let spared = summary_row(&summary, "recovery_spared", phase);
    assert_eq!(num(spared, "count"), AGENTS - hit);
    let spared_slowest = float(spared, "max") / 1e3;
    assert!(
        spared_slowest < 2.0,
        "a spared agent got its probe only after {spared_slowest:.3} s: it was cut too"
    );
    // Only the hit agents reconnected.
    assert_eq!(num(summary_row(&summary, "reconnect", phase), "count"), hit);
}

/// Churn: single-agent flaps at the configured rate (a seeded Poisson process: 4 a
/// second over 10 s is 40 expected, a standard deviation of 6.3), each costing its agent
/// exactly one reconnect, and no herd: never more agents down at once than the rate and
/// downtime make likely, and every other agent ready throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_flaps_single_agents_at_the_rate() {
    let out = tempfile::tempdir().expect("tempdir");
    // 1,200 % of 20 agents a minute: 4 flaps a second.
    let scenario = cut_scenario("").replace(
        "kind = \"network_cut\"\n\nrecover_timeout = \"60s\"",
        "kind = \"churn\"\nrate = \"1200%/min\"\nduration = \"10s\"\ndowntime = \"500ms\"",
    );
    assert!(scenario.contains("churn"), "{scenario}");
    let report = run_scenario(&scenario, out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let counts = read_csv(&report.dir, "counts.csv");
    let total = |figure: &str| -> u64 {
        let row = counts
            .iter()
            .find(|r| r["phase"] == "3:churn" && r["figure"] == figure)
            .unwrap_or_else(|| panic!("no {figure} in 3:churn: {counts:?}"));
        num(row, "total")
    };
    let flaps = total("churn.flaps_per_agent");
    assert!(
        (40 - 20..=40 + 20).contains(&flaps),
        "{flaps} flaps, expected 40 ± 20"
    );
    assert_eq!(
        total("reconnects_per_agent"),
        flaps,
        "each flap is one reconnect of one agent"
    );
    // Never a herd: the timeline's connected agents never fell below the fleet minus
    // the few flapping at once (4 a second, each down for about 0.5 s plus its
    // reconnect).
    let timeline = read_csv(&report.dir, "timeseries.csv");
    let lowest = timeline
        .iter()
        .filter(|r| r["step"] == "3:churn")
        .map(|r| num(r, "connected"))
        .min()
        .expect("the churn step has samples");
    assert!(
        lowest >= AGENTS - 8,
        "{lowest} of {AGENTS} connected at once"
    );
}

/// `max_reconnects` with nats.go's fixed wait: behind a cut that refuses every
/// connection for longer than the attempts last, async-nats gives up and closes each
/// client, and every agent ends `failed`, saying why, instead of hanging on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_that_run_out_of_reconnect_attempts_end_failed_saying_why() {
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = cut_scenario("mode = \"reset\"\nrefuse_for = \"8s\"")
        .replace("recover_timeout = \"60s\"", "recover_timeout = \"20s\"")
        .replace(
        "ping_interval = \"1s\"",
        "ping_interval = \"1s\"\nmax_reconnects = 3\nreconnect_wait = \"300ms\"\nreconnect_wait_jitter = \"100ms\"",
    );
    let report = run_scenario(&scenario, out.path()).await;
    assert_ne!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let agents = read_csv(&report.dir, "agents.csv");
    assert_eq!(agents.len() as u64, AGENTS);
    for agent in &agents {
        assert_eq!(agent["state"], "failed", "{agent:?}");
        assert!(
            agent["reason"].contains("max_reconnects"),
            "{}: {}",
            agent["pc"],
            agent["reason"]
        );
    }
    let row = recovery_row(&report.dir);
    assert_eq!(num(&row, "recovered"), 0, "{row:?}");
}

/// A bandwidth cap shows in delivery latency: a 64 KiB value through a link that carries
/// 256 KiB/s each way cannot arrive sooner than a quarter second after it was written
/// (a lower bound only: the machine adds its own), while the cold start, small
/// messages, still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bandwidth_cap_shows_in_delivery_latency() {
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = r#"
name = "slow-link-test"
[fleet]
agents = 4
groups = 1
catalog_entries = 2
proxy = true
link_bandwidth = "256KiB/s"
link_jitter = "5ms"
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "60s"
[[steps]]
kind = "write"
target = "pc_each"
rate = 2
count = 4
value_size = 65536
drain_timeout = "30s"
"#;
    let report = run_scenario(scenario, out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let summary = read_csv(&report.dir, "summary.csv");
    let delivery = summary_row(&summary, "delivery.pc", "3:write");
    assert_eq!(num(delivery, "count"), 4);
    let fastest = float(delivery, "min");
    assert!(
        fastest >= 250.0,
        "a 64 KiB write arrived in {fastest} ms through a 256 KiB/s link"
    );
}

/// An agent stops reading its socket (`mode = "stop_reading"`) while 256 KiB writes to
/// its key stream to its KV watch: JetStream's flow control holds the deliveries back
/// (the server waits for the stalled agent's flow-control reply), so its socket never
/// fills and the broker never flags it a slow consumer; when it reads again its watch
/// resumes from the stream, where the bucket kept only the newest 5 values of its key:
/// the older writes are `superseded`, every write is accounted for, none missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_behind_a_stalled_socket_is_held_back_not_flagged_and_reconciled() {
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = r#"
name = "stalled-watch-test"
[broker]
write_deadline = "1s"
[fleet]
agents = 3
groups = 1
catalog_entries = 2
proxy = true
async_nats = "0.51"
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "60s"
[[steps]]
kind = "write"
target = "pcs"
agents = [0]
rate = 10
count = 40
value_size = 262144
drain_timeout = "20s"
background = true
[[steps]]
kind = "network_cut"
mode = "stop_reading"
agents = [0]
downtime = "6s"
recover_timeout = "60s"
[[steps]]
kind = "wait_ready"
timeout = "60s"
"#;
    let report = run_scenario(scenario, out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    assert_eq!(slow_consumers_flagged(&report.dir), 0);
    let reconcile = read_csv(&report.dir, "reconcile.csv");
    let row = reconcile
        .iter()
        .find(|r| r["pc"] == "pc-00000")
        .expect("a reconcile.csv row for pc-00000");
    assert_eq!(num(row, "expected"), 40, "{row:?}");
    assert_eq!(num(row, "missed"), 0, "{row:?}");
    assert_eq!(num(row, "received") + num(row, "superseded"), 40, "{row:?}");
    assert!(
        num(row, "received") >= 1,
        "its newest value arrived: {row:?}"
    );
}

/// The broker's slow-consumer count over the run (broker.csv's counter, last - first).
fn slow_consumers_flagged(dir: &std::path::Path) -> u64 {
    let counts: Vec<u64> = read_csv(dir, "broker.csv")
        .iter()
        .filter(|r| !r["slow_consumers"].is_empty())
        .map(|r| num(r, "slow_consumers"))
        .collect();
    counts.last().copied().unwrap_or(0) - counts.first().copied().unwrap_or(0)
}
