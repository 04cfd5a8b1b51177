//! The broker's bandwidth end to end against a real nats-server: the `/varz` messages
//! and bytes in and out in `broker.csv` and `timeseries.csv` reconcile with the
//! broker's own counters read before and after the run, a write step's bytes show up
//! where it ran, and a sweep's `sizing.md` has a bandwidth line per tier.
//!
//! Counts are checked exactly (a rate times its interval is the counters' difference,
//! to the integer) or as lower bounds the scenario guarantees (every byte written
//! passes through the broker), never against timing.

mod common;

use std::time::Duration;

use common::{own_broker, rows, run_against};
use fleetsim::broker::monitor::{self, Traffic};
use fleetsim::results::RunStatus;
use fleetsim::results::rows::{BrokerRow, TimeseriesRow};

const AGENTS: u64 = 10;
const WRITES: u64 = 30;
const VALUE_SIZE: u64 = 4096;

/// Ten agents, then 30 writes of 4 KiB to `agent_config` `global`, which every agent
/// watches, then a hold: the hold's first broker sample is taken after the write step
/// (and its drain) ended, so it closes the write step's traffic.
fn scenario() -> String {
    scenario_holding("1500ms")
}

fn scenario_holding(hold: &str) -> String {
    format!(
        r#"
name = "bandwidth-test"
[fleet]
agents = {AGENTS}
groups = 2
catalog_entries = 2
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "60s"
[[steps]]
kind = "write"
target = "global"
rate = 20
count = {WRITES}
value_size = {VALUE_SIZE}
[[steps]]
kind = "hold"
duration = "{hold}"
"#
    )
}

/// The four counters of a reading, in the order in, out (msgs), in, out (bytes).
fn counters(t: &Traffic) -> [u64; 4] {
    [t.in_msgs, t.out_msgs, t.in_bytes, t.out_bytes]
}

fn broker_counters(r: &BrokerRow) -> Option<[u64; 4]> {
    Some([r.in_msgs?, r.out_msgs?, r.in_bytes?, r.out_bytes?])
}

/// `rate × interval` per counter, rounded: the count the rate stands for.
fn counts(interval: Option<f64>, rates: [Option<f64>; 4]) -> Option<[u64; 4]> {
    let secs = interval?;
    let mut out = [0; 4];
    for (o, rate) in out.iter_mut().zip(rates) {
        let n = (rate? * secs).round();
        assert!(n >= 0.0, "a negative rate: {rates:?}");
        *o = n as u64;
    }
    Some(out)
}

fn broker_counts(r: &BrokerRow) -> Option<[u64; 4]> {
    counts(
        r.interval_secs,
        [
            r.in_msgs_per_sec,
            r.out_msgs_per_sec,
            r.in_bytes_per_sec,
            r.out_bytes_per_sec,
        ],
    )
}

fn timeseries_counts(r: &TimeseriesRow) -> Option<[u64; 4]> {
    counts(
        r.broker_interval_secs,
        [
            r.broker_in_msgs_per_sec,
            r.broker_out_msgs_per_sec,
            r.broker_in_bytes_per_sec,
            r.broker_out_bytes_per_sec,
        ],
    )
}

fn add(a: [u64; 4], b: [u64; 4]) -> [u64; 4] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]]
}

/// What the write step must have moved through the broker at least: each write in
/// once with its value, and out once per agent.
const WRITE_TRAFFIC: [u64; 4] = [
    WRITES,
    WRITES * AGENTS,
    WRITES * VALUE_SIZE,
    WRITES * AGENTS * VALUE_SIZE,
];

fn at_least(got: [u64; 4], least: [u64; 4], what: &str) {
    for i in 0..4 {
        assert!(
            got[i] >= least[i],
            "{what}: {got:?} below {least:?} (in/out msgs, in/out bytes)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_traffic_reconciles_with_varz_and_shows_the_write_step() {
    // A broker the run does not own, so the test reads its counters before and after.
    let broker = own_broker().await;
    let monitor_url = broker.monitor_url();
    let read = || monitor::traffic(&monitor_url, Duration::from_secs(5));
    let before = read().await.expect("/varz before");
    let out = tempfile::tempdir().expect("tempdir");
    let report = run_against(
        &scenario(),
        broker.url(),
        Some(broker.monitor_url()),
        out.path(),
    )
    .await;
    let after = read().await.expect("/varz after");
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let (before, after) = (counters(&before), counters(&after));
    let whole_run = [0, 1, 2, 3].map(|i| after[i] - before[i]);
    at_least(whole_run, WRITE_TRAFFIC, "the broker's own counters");

    // broker.csv: every row has the counters, inside the test's own two readings, and
    // every rate times its interval is exactly the difference from the row before.
    let broker_rows: Vec<BrokerRow> = rows(&report.dir);
    let counted: Vec<[u64; 4]> = broker_rows
        .iter()
        .map(|r| broker_counters(r).unwrap_or_else(|| panic!("counters in {r:?}")))
        .collect();
    let (first, last) = (counted[0], counted[counted.len() - 1]);
    for i in 0..4 {
        assert!(
            before[i] <= first[i] && last[i] <= after[i],
            "{i}: {before:?} {first:?} {last:?} {after:?}"
        );
    }
    assert_eq!(
        broker_counts(&broker_rows[0]),
        None,
        "no rate before the first reading"
    );
    let mut summed = [0; 4];
    for (k, row) in broker_rows.iter().enumerate().skip(1) {
        let got = broker_counts(row).unwrap_or_else(|| panic!("rates in {row:?}"));
        let difference = [0, 1, 2, 3].map(|i| counted[k][i] - counted[k - 1][i]);
        assert_eq!(got, difference, "row {k}: {row:?}");
        assert!(row.interval_secs.expect("interval") > 0.0, "{row:?}");
        summed = add(summed, got);
    }
    assert_eq!(summed, [0, 1, 2, 3].map(|i| last[i] - first[i]));

    // The write step's traffic lands in its rows and the hold's first: the row before
    // them was read before the step began, the hold's first after it ended.
    let write_step = "3:write";
    let start = broker_rows
        .iter()
        .position(|r| r.step == write_step)
        .expect("a broker row of the write step");
    let end = broker_rows
        .iter()
        .position(|r| r.step == "4:hold")
        .expect("a broker row of the hold");
    let window = broker_rows[start..=end]
        .iter()
        .filter_map(broker_counts)
        .fold([0; 4], add);
    at_least(window, WRITE_TRAFFIC, "broker.csv around the write step");
    assert!(
        broker_rows[start..=end]
            .iter()
            .any(|r| r.in_bytes_per_sec > Some(0.0) && r.out_bytes_per_sec > Some(0.0)),
        "a positive rate in and out around the write step: {:?}",
        &broker_rows[start..=end]
    );

    // timeseries.csv: the same counters every 100 ms; its rates add up to one reading's
    // difference from another, both inside the test's own.
    let series: Vec<TimeseriesRow> = rows(&report.dir);
    let total = series
        .iter()
        .filter_map(timeseries_counts)
        .fold([0; 4], add);
    for i in 0..4 {
        assert!(total[i] <= whole_run[i], "{total:?} beyond {whole_run:?}");
    }
    let around_writes = series
        .iter()
        .filter(|r| r.step == write_step || r.step == "4:hold")
        .filter_map(timeseries_counts)
        .fold([0; 4], add);
    at_least(
        around_writes,
        WRITE_TRAFFIC,
        "timeseries.csv around the write step",
    );
    assert!(
        series
            .iter()
            .filter(|r| r.step == write_step)
            .any(|r| r.broker_in_bytes_per_sec > Some(0.0)),
        "bytes in during the write step"
    );
    // The run's report charts it.
    let html = fleetsim::report::write_report(&report.dir).expect("report");
    assert!(report.dir.join("charts/bandwidth.svg").is_file());
    let page = std::fs::read_to_string(html).expect("report.html");
    assert!(
        page.contains("Broker bandwidth"),
        "the chart is on the page"
    );

    // A row with a rate says over how long.
    for r in &series {
        assert_eq!(
            r.broker_interval_secs.is_some(),
            r.broker_out_bytes_per_sec.is_some(),
            "{r:?}"
        );
    }
}

/// A sweep of two small sizes: `sweep.csv` has the broker's Mbps per size and
/// `sizing.md` a bandwidth line for every size and tier, beside seed 001's figure. The
/// hold lasts 3 s so it has broker samples of its own after its first (which closes
/// the write step's interval).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_puts_bandwidth_per_tier_in_sizing_md() {
    let out = tempfile::tempdir().expect("tempdir");
    let text = scenario_holding("3s");
    let plan = fleetsim::scenario::parse_str(&text, "test.toml").expect("plan");
    let options = fleetsim::run::RunOptions {
        scenario_path: None,
        scenario_text: text,
        results_base: out.path().to_path_buf(),
        run_dir: None,
        proxy_program: None,
    };
    let report = fleetsim::sweep::sweep(plan, &[4, 8], options, false, std::future::pending())
        .await
        .expect("sweep");
    assert_eq!(report.rows.len(), 2);
    for row in &report.rows {
        assert_eq!(row.status, "ok", "{row:?}");
        // The write step's bytes are in some interval; the hold's (idle: at most the
        // consumers' heartbeats) are measured, and never above the run's busiest.
        let out_peak = row.broker_out_mbps_peak.expect("out peak");
        let in_peak = row.broker_in_mbps_peak.expect("in peak");
        assert!(out_peak > 0.0 && in_peak > 0.0, "{row:?}");
        let out_hold = row.broker_out_mbps_hold.expect("out, hold");
        let in_hold = row.broker_in_mbps_hold.expect("in, hold");
        assert!(out_hold <= out_peak && in_hold <= in_peak, "{row:?}");
    }
    let sizing = std::fs::read_to_string(report.dir.join("sizing.md")).expect("sizing.md");
    assert!(
        sizing.contains("## Broker bandwidth per tier (Mbps)"),
        "{sizing}"
    );
    for n in [4, 8] {
        assert!(sizing.contains(&format!("| {n} | measured | ")), "{sizing}");
    }
    for tier in fleetsim::sweep::TIERS {
        let line = format!("| {tier} | *extrapolated* | ");
        let seed = fleetsim::sweep::seed_001_network(tier);
        assert!(
            sizing
                .lines()
                .filter(|l| l.starts_with(&line))
                .any(|l| l.ends_with(&format!("| {seed} |"))),
            "{tier}: {sizing}"
        );
    }
    assert!(sizing.contains("Network Bandwidth Estimates"), "{sizing}");
    // The sweep's page charts it over fleet size.
    fleetsim::report::write_report(&report.dir).expect("sweep report");
    assert!(report.dir.join("charts/sweep-bandwidth.svg").is_file());
}
