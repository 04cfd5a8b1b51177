//! `[observe]`: fleetsim's observers can be turned off, and what each one measured is
//! then missing while the rest of the run is whole. With the time series, the API tap
//! and the progress line off, the broker sampler still reads both processes' CPU, so
//! counts.csv has what the cold start cost fleetsim and the broker per agent.

mod common;

use common::{rows, run_scenario};
use fleetsim::results::rows::CountRow;

const SCENARIO: &str = r#"
name = "observe"
[fleet]
agents = 10
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "60s"
[observe]
api_tap = false
timeseries = false
progress = false
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observers_turned_off_leave_their_files_empty_and_the_cpu_counts_whole() {
    let out = tempfile::tempdir().expect("tempdir");
    let report = run_scenario(SCENARIO, out.path()).await;
    assert!(report.reasons.is_empty(), "{:?}", report.reasons);
    let series = common::read_csv(&report.dir, "timeseries.csv");
    assert!(
        series.is_empty(),
        "no time series was sampled: {} rows",
        series.len()
    );
    let broker = common::read_csv(&report.dir, "broker.csv");
    assert!(!broker.is_empty(), "the broker sampler stays on");
    let counts = rows::<CountRow>(&report.dir);
    for figure in ["broker.cpu_ms_per_agent", "fleetsim.cpu_ms_per_agent"] {
        let row = counts
            .iter()
            .find(|r| r.phase == "1:start" && r.figure == figure)
            .unwrap_or_else(|| panic!("{figure} in 1:start: {counts:#?}"));
        assert!(row.value > 0.0 && !row.exact, "{row:?}");
    }
    // The API counts come from the tap when the audit is off: none without either.
    assert!(
        counts.iter().all(|r| !r.figure.starts_with("api.")),
        "{counts:#?}"
    );
}
