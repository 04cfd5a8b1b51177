//! Write fan-out end to end against a real nats-server: who receives a write, how many
//! deliveries a write costs under each profile, and the reconciliation that counts what
//! each agent missed.

mod common;

use common::{Row, float, num, own_broker, read_csv, run_against, run_scenario, step_row};
use fleetsim::results::RunStatus;

fn scenario(agents: usize, fleet_extra: &str, steps: &str) -> String {
    format!(
        r#"
name = "writes-test"
[fleet]
agents = {agents}
groups = 3
catalog_entries = 5
{fleet_extra}
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "60s"
{steps}
"#
    )
}

fn kind_row(dir: &std::path::Path, kind: &str) -> Row {
    read_csv(dir, "writes.csv")
        .into_iter()
        .find(|r| r["kind"] == kind)
        .unwrap_or_else(|| panic!("no writes.csv row for {kind}"))
}

const PC_AND_JOBS: &str = r#"
[[steps]]
kind = "write"
target = "pc_each"
rate = 50
count = 20
[[steps]]
kind = "write"
target = "jobs"
rate = 10
count = 5
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_profile_delivers_a_pc_write_to_one_agent_and_a_jobs_write_to_all() {
    let out = tempfile::tempdir().expect("tempdir");
    let report = run_scenario(&scenario(20, "", PC_AND_JOBS), out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let pc = kind_row(&report.dir, "pc");
    assert_eq!(num(&pc, "acked"), 20);
    assert_eq!(num(&pc, "delivered"), 20, "one delivery per pcs.<pc> write");
    assert_eq!(num(&pc, "unintended"), 0);
    assert_eq!(float(&pc, "fanout_total"), 1.0);
    let jobs = kind_row(&report.dir, "jobs");
    assert_eq!(
        num(&jobs, "delivered"),
        5 * 20,
        "every agent gets every jobs write"
    );
    assert_eq!(float(&jobs, "fanout_intended"), 20.0);
    for row in read_csv(&report.dir, "writes.csv") {
        assert_eq!(num(&row, "missed"), 0, "{row:?}");
    }
    let summary = read_csv(&report.dir, "summary.csv");
    let delivery = summary
        .iter()
        .find(|r| r["metric"] == "delivery.pc")
        .expect("delivery latency recorded");
    assert_eq!(num(delivery, "count"), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_profile_delivers_a_pc_write_to_every_agent() {
    let out = tempfile::tempdir().expect("tempdir");
    let report = run_scenario(
        &scenario(20, "profile = \"legacy\"", PC_AND_JOBS),
        out.path(),
    )
    .await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let pc = kind_row(&report.dir, "pc");
    assert_eq!(num(&pc, "delivered"), 20);
    assert_eq!(
        num(&pc, "unintended"),
        20 * 19,
        "the other 19 agents classify and drop it"
    );
    assert_eq!(float(&pc, "fanout_total"), 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_a_network_cut_reach_every_agent_after_recovery() {
    let out = tempfile::tempdir().expect("tempdir");
    let steps = r#"
[[steps]]
kind = "write"
target = "pc_each"
rate = 10
count = 30
drain_timeout = "60s"
background = true
[[steps]]
kind = "network_cut"
refuse_for = "2s"
[[steps]]
kind = "wait_ready"
"#;
    let report = run_scenario(&scenario(15, "proxy = true", steps), out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let pc = kind_row(&report.dir, "pc");
    assert_eq!(num(&pc, "acked"), 30);
    assert_eq!(num(&pc, "delivered"), 30);
    assert_eq!(num(&pc, "missed"), 0);
    let reconcile = read_csv(&report.dir, "reconcile.csv");
    assert_eq!(reconcile.len(), 15, "every agent expected writes");
    assert!(
        reconcile.iter().all(|r| num(r, "missed") == 0),
        "{reconcile:?}"
    );
    // The writes straddled the outage, by the run's own clocks: writes are paced by
    // intended time (the step's start + i / rate, never earlier), and some fell due
    // while the proxy refused the agents (from the cut's trigger for `refuse_for`).
    let began = float(
        step_row(&read_csv(&report.dir, "steps.csv"), "3:write"),
        "began_secs",
    );
    let recovery = read_csv(&report.dir, "recovery.csv");
    assert_eq!(recovery.len(), 1, "{recovery:?}");
    let cut = float(&recovery[0], "trigger_secs");
    let during_refusal = (0..30)
        .map(|i| began + f64::from(i) / 10.0)
        .filter(|due| (cut..cut + 2.0).contains(due))
        .count();
    assert!(
        during_refusal > 0,
        "no write fell due in the refusal {cut}..{} s (writes from {began} s)",
        cut + 2.0
    );
    // Every agent was cut off (it reconnected) and recovered, and still got every write.
    assert_eq!(num(&recovery[0], "recovered"), 15, "{recovery:?}");
    let agents = read_csv(&report.dir, "agents.csv");
    assert_eq!(agents.len(), 15);
    assert!(agents.iter().all(|a| num(a, "connects") >= 2), "{agents:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_consumer_shows_up_as_missed_deliveries_for_that_agent() {
    let out = tempfile::tempdir().expect("tempdir");
    let steps = r#"
[[steps]]
kind = "drop_consumer"
agent = 3
consumer = "jobs"
[[steps]]
kind = "write"
target = "jobs"
rate = 20
count = 5
drain_timeout = "3s"
"#;
    let report = run_scenario(&scenario(10, "", steps), out.path()).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(
        report.reasons.iter().any(|r| r.contains("missed")),
        "{:?}",
        report.reasons
    );
    let reconcile = read_csv(&report.dir, "reconcile.csv");
    assert_eq!(reconcile.len(), 10, "every agent expected the jobs writes");
    for row in &reconcile {
        let expected_missed = if row["pc"] == "pc-00003" { 5 } else { 0 };
        assert_eq!(num(row, "missed"), expected_missed, "{row:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_commands_reach_their_durable_consumers() {
    let out = tempfile::tempdir().expect("tempdir");
    let steps = r#"
[[steps]]
kind = "exec"
target = "all"
rate = 20
count = 4
[[steps]]
kind = "exec"
target = "pc"
rate = 20
count = 10
"#;
    let report = run_scenario(&scenario(10, "", steps), out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    assert_eq!(num(&kind_row(&report.dir, "exec_all"), "delivered"), 4 * 10);
    let pc = kind_row(&report.dir, "exec_pc");
    assert_eq!(num(&pc, "delivered"), 10);
    assert_eq!(float(&pc, "fanout_total"), 1.0);
}

/// `[fleet] exec_ack_wait` is the `ack_wait` of every agent's durable EXEC consumer on
/// the broker; left out, the server's default (30 s), as the real agent creates it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_ack_wait_reaches_the_durable_consumer_on_the_broker() {
    // A broker the runs do not own, so the durable consumers outlive each run.
    let broker = own_broker().await;
    let client = async_nats::connect(broker.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    for (setting, expected) in [("exec_ack_wait = \"7s\"", 7), ("", 30)] {
        let scenario = format!(
            "name = \"ack-wait\"\n[fleet]\nagents = 3\ngroups = 1\ncatalog_entries = 1\n{setting}\n\
             [[steps]]\nkind = \"start\"\n[[steps]]\nkind = \"wait_ready\"\ntimeout = \"30s\"\n"
        );
        let out = tempfile::tempdir().expect("tempdir");
        let report = run_against(&scenario, broker.url(), None, out.path()).await;
        assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
        let stream = js.get_stream("EXEC").await.expect("EXEC");
        for pc in ["pc-00000", "pc-00002"] {
            let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
                .get_consumer(&format!("agent_replay_{pc}"))
                .await
                .expect("the agent's durable consumer");
            let info = consumer.info().await.expect("consumer info");
            assert_eq!(
                info.config.ack_wait,
                std::time::Duration::from_secs(expected),
                "{setting:?}: {pc}"
            );
        }
    }
}

/// A background write step (3) with a foreground write step (4) issued while it runs.
const BACKGROUND_THEN_WRITE: &str = r#"
[[steps]]
kind = "write"
target = "pc_each"
rate = 10
count = 20
drain_timeout = "30s"
background = true
[[steps]]
kind = "write"
target = "jobs"
rate = 20
count = 5
drain_timeout = "30s"
"#;

/// Each write job keeps its own ledger: a write step started while a background one
/// runs does not wipe what the background step's agents received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_write_keeps_its_reconciliation_when_another_write_step_follows() {
    let out = tempfile::tempdir().expect("tempdir");
    let report = run_scenario(&scenario(10, "", BACKGROUND_THEN_WRITE), out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let writes = read_csv(&report.dir, "writes.csv");
    let row = |step: &str, kind: &str| {
        writes
            .iter()
            .find(|r| r["step"] == step && r["kind"] == kind)
            .unwrap_or_else(|| panic!("no writes.csv row for {step} {kind}: {writes:?}"))
    };
    let background = row("3:write", "pc");
    assert_eq!(num(background, "acked"), 20);
    assert_eq!(num(background, "delivered"), 20, "{background:?}");
    assert_eq!(num(background, "missed"), 0, "{background:?}");
    let jobs = row("4:write", "jobs");
    assert_eq!(num(jobs, "delivered"), 5 * 10, "{jobs:?}");
    assert_eq!(num(jobs, "missed"), 0, "{jobs:?}");
    let reconcile = read_csv(&report.dir, "reconcile.csv");
    let background_rows: Vec<&Row> = reconcile
        .iter()
        .filter(|r| r["step"] == "3:write")
        .collect();
    assert_eq!(background_rows.len(), 10, "every agent expected a pc write");
    for r in background_rows {
        assert_eq!((num(r, "expected"), num(r, "missed")), (2, 0), "{r:?}");
    }
}

/// A background write's acks and deliveries are tagged with the step that issued them,
/// not with whatever step runs when they arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_write_samples_stay_in_the_phase_of_their_step() {
    let out = tempfile::tempdir().expect("tempdir");
    let report = run_scenario(&scenario(10, "", BACKGROUND_THEN_WRITE), out.path()).await;
    // The status is the ledger's business (the test above); this one reads the phases.
    let summary = read_csv(&report.dir, "summary.csv");
    let count = |metric: &str, phase: &str| {
        summary
            .iter()
            .find(|r| r["metric"] == metric && r["phase"] == phase)
            .map_or(0, |r| num(r, "count"))
    };
    assert_eq!(count("write_ack.pc_each", "3:write"), 20, "{summary:?}");
    assert_eq!(count("write_ack.pc_each", "4:write"), 0, "{summary:?}");
    assert_eq!(count("delivery.pc", "3:write"), 20, "{summary:?}");
    assert_eq!(count("delivery.pc", "4:write"), 0, "{summary:?}");
    assert_eq!(count("write_ack.jobs", "4:write"), 5, "{summary:?}");
    assert_eq!(count("delivery.jobs", "4:write"), 5 * 10, "{summary:?}");
}

/// Writes sent across a broker crash with `retry = "until_acked"`: the sender publishes
/// each unacknowledged write again, as a backend would, so every write ends acked and
/// accounted for (delivered, or superseded: out of its bucket's history, a newer value
/// of its key delivered), the run passes,
/// and what a retry cost is in `writes.csv` (`retries`, with any write that arrived
/// twice counted as a duplicate, never lost). Whether a write needed a retry depends on
/// the instant of the crash; the retry loop itself is unit-tested in `src/writes/step.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_retried_until_acked_survive_a_broker_crash() {
    let out = tempfile::tempdir().expect("tempdir");
    let steps = r#"
[[steps]]
kind = "write"
target = "pc_each"
rate = 20
count = 80
drain_timeout = "40s"
background = true
retry = "until_acked"
[[steps]]
kind = "broker_restart"
signal = "kill"
downtime = "2s"
recover_timeout = "60s"
[[steps]]
kind = "wait_ready"
"#;
    let report = run_scenario(&scenario(10, "", steps), out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let pc = kind_row(&report.dir, "pc");
    assert_eq!(num(&pc, "writes"), 80);
    assert_eq!(num(&pc, "acked"), 80, "{pc:?}");
    assert_eq!(num(&pc, "missed"), 0, "{pc:?}");
    // A watch recreated after the crash resumes from the stream, where the bucket kept
    // only each key's newest 5 values: the writes older than those are superseded.
    assert_eq!(num(&pc, "delivered") + num(&pc, "superseded"), 80, "{pc:?}");
    // The column is there, whatever this run needed.
    let _ = num(&pc, "retries");
}
