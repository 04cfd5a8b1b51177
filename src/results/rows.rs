//! One typed row per CSV file of a run directory, each tied to its file name and column
//! order by [`CsvFile`].
//!
//! The writers of `summary.csv`, `errors.csv`, `agents.csv`, `steps.csv` and
//! `thresholds.csv` serialize these very types, and every reader deserializes them
//! with `deny_unknown_fields`, so writing and reading cannot drift apart: a renamed,
//! added or dropped column breaks a test (`tests.rs` writes a run and reads every file
//! back). `timeseries.csv` and `broker.csv` are written and read as the types of the
//! code that measures them (`timeseries::Sample`, `broker::sampler::BrokerSample`,
//! re-exported here as [`TimeseriesRow`] and [`BrokerRow`]). The other files are written
//! from the types of their own writers (`results/herd.rs`, `results/writes.rs`,
//! `ab_stats::CompareRow`, `sweep::SweepRow`); their rows here are the reading side,
//! pinned to the same column lists by that round trip.
//!
//! Figures written with a fixed number of decimals are [`Fixed3`]: `12.345` on disk,
//! an `f64` in memory.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::files::*;

/// A CSV file of a run directory: its name, its columns, and the row type both the
/// writer and the reader use.
pub trait CsvFile: Serialize + DeserializeOwned {
    /// The file's name in the run directory (`summary.csv`).
    const FILE: &'static str;
    /// The header, in order.
    const COLUMNS: &'static [&'static str];
}

/// A number written with exactly three decimals (`0.250`), read back as `f64`.
///
/// Three decimals of ms is µs, what the histograms record; of seconds, ms.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Fixed3(pub f64);

impl Fixed3 {
    /// µs → ms. Exact: for any whole number of µs below 2^53 the double nearest
    /// `micros / 1000` prints as the integer division would.
    pub fn ms_from_micros(micros: u64) -> Fixed3 {
        Fixed3(micros as f64 / 1000.0)
    }
}

impl fmt::Display for Fixed3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}", self.0)
    }
}

impl Serialize for Fixed3 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fixed3 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fixed3, D::Error> {
        f64::deserialize(d).map(Fixed3)
    }
}

/// Implements [`CsvFile`] for a row type: `csv_file!(Row, FILE, COLUMNS)`.
macro_rules! csv_file {
    ($row:ty, $file:expr, $columns:expr) => {
        impl CsvFile for $row {
            const FILE: &'static str = $file;
            const COLUMNS: &'static [&'static str] = &$columns;
        }
    };
}

/// `summary.csv`: one latency metric in one phase, in ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryRow {
    /// The phase label (`1:start`, `0:setup`).
    pub phase: String,
    pub metric: String,
    /// Always `ms`.
    pub unit: String,
    pub count: u64,
    pub min: Fixed3,
    pub p50: Fixed3,
    pub p90: Fixed3,
    pub p99: Fixed3,
    pub p999: Fixed3,
    pub max: Fixed3,
    pub mean: Fixed3,
}
csv_file!(SummaryRow, SUMMARY_FILE, SUMMARY_COLUMNS);

impl SummaryRow {
    /// A statistic by its column name (`p99`, `count`); `None` for another name.
    pub fn stat(&self, name: &str) -> Option<f64> {
        Some(match name {
            "count" => self.count as f64,
            "min" => self.min.0,
            "p50" => self.p50.0,
            "p90" => self.p90.0,
            "p99" => self.p99.0,
            "p999" => self.p999.0,
            "max" => self.max.0,
            "mean" => self.mean.0,
            _ => return None,
        })
    }
}

/// `errors.csv`: failures of one kind in one (phase, operation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRow {
    pub phase: String,
    pub operation: String,
    /// `timeout`, `no_responders`, `jetstream`, ...
    pub kind: String,
    /// The JetStream error code; empty for the other kinds.
    pub code: Option<u64>,
    pub count: u64,
    /// One message, URL credentials redacted.
    pub example: String,
}
csv_file!(ErrorRow, ERRORS_FILE, ERRORS_COLUMNS);

/// `agents.csv`: one agent's final state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRow {
    pub pc: String,
    pub group: String,
    /// `ready` or `failed`.
    pub state: String,
    /// Why it failed; empty otherwise.
    pub reason: String,
    pub connects: u64,
    /// The last reconnect's splay delay and wait until its re-sync; empty for an agent
    /// that never reconnected.
    pub last_splay_ms: Option<Fixed3>,
    pub last_resync_wait_ms: Option<Fixed3>,
    /// Messages its core subscriptions received (absent in runs before profiles had
    /// subscriptions: read as 0).
    #[serde(default)]
    pub core_received: u64,
    /// Periodic publishes it made (absent before profiles had publishes: read as 0).
    #[serde(default)]
    pub published: u64,
}
csv_file!(AgentRow, AGENTS_FILE, AGENTS_COLUMNS);

/// `api.csv`: one JetStream API request the broker received (`[broker] record_api`),
/// in the order the broker stored them (see `broker::audit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiRow {
    /// Seconds since the run's clock started (the clock of `steps.csv`).
    pub t_secs: Fixed3,
    /// The step running then (`0:setup` before the first).
    pub phase: String,
    /// `STREAM.INFO`, `CONSUMER.CREATE`, `CONSUMER.DELETE`, `DIRECT.GET`, …
    pub request: String,
    /// The stream it is about (`KV_jobs`, `EXEC`).
    pub stream: String,
    /// The sending connection's name (an agent's pc id); empty for direct gets.
    pub client: String,
    /// JetStream error code of a failed request.
    pub error: Option<u64>,
    /// Consumer creates: deliver policy and filter; direct gets: the subject asked for.
    pub detail: String,
}
csv_file!(ApiRow, API_FILE, API_COLUMNS);

/// `counts.csv`: one figure that does not depend on timing (or says it does, `exact =
/// false`) in one phase (see `results::counts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountRow {
    /// The phase's first step (`3:broker_restart`), or `run` for the whole run.
    pub phase: String,
    /// The steps the phase covers, space-separated (`3:broker_restart 4:wait_ready`).
    pub covers: String,
    /// `api.consumer_create_per_agent`, `consumers.long_lived_per_agent`, …
    pub figure: String,
    /// Per agent (or per write): the total divided, six decimals at most.
    pub value: f64,
    /// The whole count the value divides; empty where there is none.
    pub total: Option<u64>,
    /// `count/agent` or `count/write`.
    pub unit: String,
    /// Counted one by one from a record that loses nothing (compared with zero
    /// tolerance), or dependent on when it was sampled.
    pub exact: bool,
}
csv_file!(CountRow, COUNTS_FILE, COUNTS_COLUMNS);

/// `steps.csv`: one step's timing and the broker's counts after it (empty when the
/// broker could not be sampled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRow {
    pub step: String,
    pub began_secs: Fixed3,
    pub ended_secs: Fixed3,
    pub agents_ready: usize,
    pub agents_failed: usize,
    pub broker_connections: Option<u64>,
    pub broker_consumers: Option<u64>,
    pub broker_consumers_long_lived: Option<u64>,
    pub broker_api_total: Option<u64>,
    pub broker_api_errors: Option<u64>,
}
csv_file!(StepRow, STEPS_FILE, STEPS_COLUMNS);

/// `timeseries.csv`: the fleet every 100 ms, the very type the sampler writes.
pub use crate::timeseries::Sample as TimeseriesRow;
csv_file!(TimeseriesRow, TIMESERIES_FILE, TIMESERIES_COLUMNS);

/// `recovery.csv`: one herd step; an empty `recovered_*` cell means that share of the
/// agents never recovered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryRow {
    pub step: String,
    pub trigger: String,
    pub trigger_secs: Fixed3,
    pub agents: usize,
    pub recovered: usize,
    pub not_recovered: usize,
    pub probe_writes: usize,
    pub probe_writes_acked: usize,
    pub first_probe_ack_secs: Option<Fixed3>,
    pub recovered_50_secs: Option<Fixed3>,
    pub recovered_90_secs: Option<Fixed3>,
    pub recovered_99_secs: Option<Fixed3>,
    pub recovered_100_secs: Option<Fixed3>,
    pub trigger_error: String,
    /// Hit agents whose client noticed the fault (empty in files of before it).
    #[serde(default)]
    pub detected: Option<usize>,
    /// Agents a partial network cut spared, how many delivered the probe, and by when
    /// 99 % of them had.
    #[serde(default)]
    pub spared: Option<usize>,
    #[serde(default)]
    pub spared_recovered: Option<usize>,
    #[serde(default)]
    pub spared_99_secs: Option<Fixed3>,
}
csv_file!(RecoveryRow, RECOVERY_FILE, RECOVERY_COLUMNS);

impl RecoveryRow {
    /// Seconds until `pct` % of the agents recovered (50, 90, 99, 100): `Some(None)`
    /// when they never did, `None` for a share the file has no column for.
    pub fn recovered_secs(&self, pct: u32) -> Option<Option<f64>> {
        let secs = match pct {
            50 => self.recovered_50_secs,
            90 => self.recovered_90_secs,
            99 => self.recovered_99_secs,
            100 => self.recovered_100_secs,
            _ => return None,
        };
        Some(secs.map(|s| s.0))
    }
}

/// `unrecovered.csv`: an agent a herd step left behind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnrecoveredRow {
    pub step: String,
    pub pc: String,
    pub state: String,
    pub connected: bool,
}
csv_file!(UnrecoveredRow, UNRECOVERED_FILE, UNRECOVERED_COLUMNS);

/// `writes.csv`: one kind of write in one write or exec step; the reconciliation
/// totals (`missed` ... `redelivered`) and `retries` are the step's, repeated on each
/// kind's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WritesRow {
    pub step: String,
    pub kind: String,
    pub writes: u64,
    pub acked: u64,
    /// Publishes beyond each write's first (`retry = "until_acked"`); written since
    /// that option existed, so an older file reads as 0.
    #[serde(default)]
    pub retries: u64,
    pub delivered: u64,
    pub unintended: u64,
    pub fanout_intended: Fixed3,
    pub fanout_total: Fixed3,
    pub missed: u64,
    /// Writes not received whose key a newer received write replaced (absent before
    /// it was counted: read as 0, and such writes were in `missed`).
    #[serde(default)]
    pub superseded: u64,
    pub duplicates: u64,
    pub stale_replays: u64,
    pub redelivered: u64,
    pub drained: bool,
}
csv_file!(WritesRow, WRITES_FILE, WRITES_COLUMNS);

/// `reconcile.csv`: one agent's deliveries in one write step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRow {
    pub step: String,
    pub pc: String,
    pub expected: u64,
    pub received: u64,
    pub missed: u64,
    #[serde(default)]
    pub superseded: u64,
    pub duplicates: u64,
    pub stale_replays: u64,
    pub redelivered: u64,
    pub unintended: u64,
}
csv_file!(ReconcileRow, RECONCILE_FILE, RECONCILE_COLUMNS);

/// `broker.csv`: one sample of the broker's monitoring endpoints, the very type the
/// broker sampler writes.
pub use crate::broker::sampler::BrokerSample as BrokerRow;
csv_file!(BrokerRow, BROKER_FILE, BROKER_COLUMNS);

/// `thresholds.csv`: one check's outcome. `value` and `limit` are written in the
/// check's unit (`491.000` ms, `12` count), `value` empty when not measured or never
/// reached (the note says which).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdRow {
    pub check: String,
    pub value: String,
    pub limit: String,
    pub unit: String,
    /// `pass` or `fail`.
    pub result: String,
    pub phase: String,
    pub note: String,
}
csv_file!(ThresholdRow, THRESHOLDS_FILE, THRESHOLDS_COLUMNS);

/// `runs.csv` of an A/B run: one run, in the order it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunEntry {
    pub order: usize,
    pub variant: String,
    pub repeat: usize,
    pub status: String,
    /// The run's directory, relative to the A/B directory.
    pub dir: String,
    pub consumers_at_start: Option<u64>,
    /// Why the run failed (empty when ok); `;`-separated.
    pub reasons: String,
}
csv_file!(RunEntry, RUNS_FILE, RUNS_COLUMNS);

/// A row of a file an A/B run merged from its runs: the run's `variant,repeat` in
/// front, empty for a single run's own file.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged<R> {
    pub variant: Option<String>,
    pub repeat: Option<usize>,
    pub row: R,
}
