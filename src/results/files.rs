//! The names of every file a run directory may hold, and the column order of each CSV.
//!
//! One list, used by the writers and by the reader ([`super::read`]), so a file cannot be
//! written under one name and looked for under another. A single run writes the files
//! of [`RUN_FILES`] (plus one `.hgrm` per latency and `thresholds.csv` when the scenario
//! has checks); an A/B run adds `runs.csv` and `compare.csv` beside the runs' merged
//! CSVs; a sweep writes `sweep.csv` and `sizing.md`; the report adds `report.html` and
//! `charts/`.

pub use super::herd::{RECOVERY_COLUMNS, TIMESERIES_COLUMNS};
pub use super::writes::{RECONCILE_COLUMNS, WRITES_COLUMNS};

pub const SUMMARY_FILE: &str = "summary.csv";
pub const ERRORS_FILE: &str = "errors.csv";
pub const AGENTS_FILE: &str = "agents.csv";
pub const STEPS_FILE: &str = "steps.csv";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const TIMESERIES_FILE: &str = "timeseries.csv";
pub const RECOVERY_FILE: &str = "recovery.csv";
pub const UNRECOVERED_FILE: &str = "unrecovered.csv";
pub const WRITES_FILE: &str = "writes.csv";
pub const RECONCILE_FILE: &str = "reconcile.csv";
pub const BROKER_FILE: &str = "broker.csv";
/// Every JetStream API request of the run; only with `[broker] record_api = true`.
pub const API_FILE: &str = "api.csv";
/// The figures that do not depend on timing, per phase (see `results::counts`).
pub const COUNTS_FILE: &str = "counts.csv";
/// The scenario's `[thresholds]` outcomes; only when it has checks.
pub const THRESHOLDS_FILE: &str = "thresholds.csv";
/// A/B runs: one row per run, in run order.
pub const RUNS_FILE: &str = "runs.csv";
/// A/B runs: every variant's percentiles against the first's.
pub const COMPARE_FILE: &str = "compare.csv";
/// `fleetsim gate`: the verdict on every judged figure.
pub const GATE_FILE: &str = "gate.csv";
/// Sweeps: one row per fleet size.
pub const SWEEP_FILE: &str = "sweep.csv";
/// Sweeps: the sizing table.
pub const SIZING_FILE: &str = "sizing.md";
/// `<phase index>-<metric>.hgrm`: the extension of the percentile distributions.
pub const HGRM_EXTENSION: &str = "hgrm";
/// The sub-directory of an A/B run or a sweep that holds its single runs.
pub const RUNS_DIR: &str = "runs";

/// The fixed files of a single run, in the order they are written (`manifest.json`
/// last, so its presence means the directory is complete).
pub const RUN_FILES: [&str; 12] = [
    SUMMARY_FILE,
    ERRORS_FILE,
    AGENTS_FILE,
    STEPS_FILE,
    TIMESERIES_FILE,
    RECOVERY_FILE,
    UNRECOVERED_FILE,
    WRITES_FILE,
    BROKER_FILE,
    RECONCILE_FILE,
    COUNTS_FILE,
    MANIFEST_FILE,
];

/// Column order of `broker.csv` (the fields of [`crate::broker::sampler::BrokerSample`]).
pub const BROKER_COLUMNS: [&str; 30] = [
    "t_secs",
    "step",
    "ok",
    "error",
    "healthz",
    "connections",
    "total_connections",
    "slow_consumers",
    "mem_bytes",
    "cpu_percent",
    "streams",
    "consumers",
    "api_total",
    "api_errors",
    "api_inflight",
    "in_msgs",
    "out_msgs",
    "in_bytes",
    "out_bytes",
    "interval_secs",
    "in_msgs_per_sec",
    "out_msgs_per_sec",
    "in_bytes_per_sec",
    "out_bytes_per_sec",
    "cpu_secs",
    "pid",
    "fleetsim_cpu_secs",
    "agents_connected",
    "stale_connections",
    "double_held_consumers",
];

/// Column order of `gate.csv` (the fields of [`crate::gate::same_runner::GateRow`]).
pub const GATE_COLUMNS: [&str; 11] = [
    "phase",
    "figure",
    "kind",
    "reference",
    "candidate",
    "change",
    "ci_low",
    "ci_high",
    "effect",
    "verdict",
    "note",
];

/// Column order of `summary.csv`; scripts and committed baselines depend on it.
pub const SUMMARY_COLUMNS: [&str; 11] = [
    "phase", "metric", "unit", "count", "min", "p50", "p90", "p99", "p999", "max", "mean",
];
/// Column order of `errors.csv`.
pub const ERRORS_COLUMNS: [&str; 6] = ["phase", "operation", "kind", "code", "count", "example"];
/// Column order of `api.csv`.
pub const API_COLUMNS: [&str; 7] = [
    "t_secs", "phase", "request", "stream", "client", "error", "detail",
];
/// Column order of `counts.csv`.
pub const COUNTS_COLUMNS: [&str; 7] = [
    "phase", "covers", "figure", "value", "total", "unit", "exact",
];
/// Column order of `agents.csv`.
pub const AGENTS_COLUMNS: [&str; 9] = [
    "pc",
    "group",
    "state",
    "reason",
    "connects",
    "last_splay_ms",
    "last_resync_wait_ms",
    "core_received",
    "published",
];
/// Column order of `steps.csv`.
pub const STEPS_COLUMNS: [&str; 10] = [
    "step",
    "began_secs",
    "ended_secs",
    "agents_ready",
    "agents_failed",
    "broker_connections",
    "broker_consumers",
    "broker_consumers_long_lived",
    "broker_api_total",
    "broker_api_errors",
];
/// Column order of `unrecovered.csv`.
pub const UNRECOVERED_COLUMNS: [&str; 4] = ["step", "pc", "state", "connected"];
/// Column order of `thresholds.csv` (an A/B run's merged file has `variant,repeat` first).
pub const THRESHOLDS_COLUMNS: [&str; 7] =
    ["check", "value", "limit", "unit", "result", "phase", "note"];
/// Column order of `runs.csv`.
pub const RUNS_COLUMNS: [&str; 7] = [
    "order",
    "variant",
    "repeat",
    "status",
    "dir",
    "consumers_at_start",
    "reasons",
];
/// Column order of `compare.csv`.
pub const COMPARE_COLUMNS: [&str; 15] = [
    "phase",
    "metric",
    "variant",
    "runs",
    "count",
    "p50",
    "p99",
    "max",
    "p50_ratio",
    "p99_ratio",
    "p50_diff_ci_low",
    "p50_diff_ci_high",
    "p99_diff_ci_low",
    "p99_diff_ci_high",
    "verdict",
];
/// Column order of `sweep.csv`.
pub const SWEEP_COLUMNS: [&str; 20] = [
    "agents",
    "status",
    "consumers",
    "consumers_per_agent",
    "connections",
    "broker_mem_mib",
    "broker_cpu_percent",
    "broker_mem_kib_per_consumer",
    "broker_in_mbps_hold",
    "broker_out_mbps_hold",
    "broker_in_mbps_peak",
    "broker_out_mbps_peak",
    "api_per_agent_cold_start",
    "api_per_agent_herd",
    "recovery_p99_s",
    "recovery_p100_s",
    "ready_p99_ms",
    "errors_total",
    "errors_by_kind",
    "reasons",
];
