//! The results of one run: a directory of plain files that outlives the process.
//!
//! This module owns everything a run leaves behind: naming and creating the run
//! directory, the files in it, the short summary printed at the end, and keeping secrets
//! out of all of them. It consumes what the rest of the crate measured (a
//! [`Snapshot`], the [`Plan`], agents' final states, per-step broker counts) through one
//! [`RunRecord`] and never reaches back into the run, so a run that stopped midway
//! (`partial`) is written by exactly the same code as a complete one.
//!
//! # The run directory
//!
//! `results/<UTC start YYYYMMDDTHHMMSSZ>-<scenario name>/`, created fresh (an existing
//! directory gets `-2`, `-3`, ... rather than being overwritten). Plain CSV and JSON, so
//! a spreadsheet, pandas or `jq` read it without fleetsim:
//!
//! | file | content |
//! |---|---|
//! | `summary.csv` | one row per (metric, phase): `phase,metric,unit,count,min,p50,p90,p99,p999,max,mean`; `phase` is the step label (`1:start`, `0:setup`), values in ms with 3 decimals |
//! | `<phase>-<metric>.hgrm` | one per (metric, phase), e.g. `1-consumer_create.jobs.hgrm`: the full distribution in HdrHistogram's percentile-distribution text format, in ms (see [`write_percentile_distribution`]) |
//! | `errors.csv` | `phase,operation,kind,code,count,example`: failures by phase, operation and kind; `code` is the JetStream error code, empty for other kinds; header only when nothing failed |
//! | `agents.csv` | `pc,group,state,reason,connects`: every agent's final state |
//! | `steps.csv` | `step,began_secs,ended_secs,agents_ready,agents_failed,broker_connections,broker_consumers,broker_consumers_long_lived,broker_api_total,broker_api_errors`: each step's timing (seconds since the first step began) and the broker's counts after it (empty when the broker could not be sampled) |
//! | `manifest.json` | what ran, where and how it ended: see [`Manifest`]; written last, so its presence means the directory is complete |
//!
//! `counts.csv` holds the figures that do not depend on timing, per phase (consumers,
//! API requests, messages per agent; deliveries per write; reconnects): see [`counts`].
//!
//! The CSVs of herds (`timeseries.csv`, `recovery.csv`, `unrecovered.csv`), writes
//! (`writes.csv`, `reconcile.csv`) and the broker (`broker.csv`) are described where
//! they are written; every name is in `files.rs`.
//!
//! # One module per file format, both ways
//!
//! - `files`: every file name and every CSV's column order.
//! - [`rows`]: one typed row per CSV ([`rows::CsvFile`] ties it to its file), used by
//!   the writers and the reader alike.
//! - [`manifest`](Manifest): `manifest.json`, single run and A/B, typed both ways.
//! - `write`: [`write_run`] and the per-file writers; [`summary`](render_summary): the
//!   text printed at the end.
//! - [`read`]: [`RunDir`], the one reader (thresholds, sweep, `fleetsim compare`, the
//!   report and the tests use it), with one error policy: missing is an error or an
//!   explicit "not measured", malformed names the file and line.
//!
//! # Secrets
//!
//! Every string written that came from the scenario, the broker or an error message has
//! the credentials in its URLs replaced by `***` ([`redact_urls`]); the scenario text and
//! the serialized settings also lose the values of secret-named keys (`token`,
//! `password`, `user`, `creds`, `nkey`: [`redact_scenario_text`], [`redact_json`]).

pub mod counts;
mod files;
mod herd;
mod hgrm;
mod manifest;
pub mod read;
mod redact;
pub mod rows;
mod summary;
#[cfg(test)]
mod tests;
mod time;
mod write;
mod writes;

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::broker::BrokerInfo;
use crate::broker::monitor::BrokerCounts;
use crate::broker::sampler::BrokerSample;
use crate::host::ProcessUsage;
use crate::metrics::Snapshot;
use crate::plan::Plan;
use crate::timeseries::Sample;
use crate::writes::WriteRecord;
pub use files::*;
pub use herd::{HerdRecord, Unrecovered};
pub use hgrm::{TICKS_PER_HALF_DISTANCE, write_percentile_distribution};
pub use manifest::{
    AbManifest, FleetFigures, Manifest, ManifestBroker, ManifestBrokerLimits, ManifestHost,
    ManifestScenario, RunStatus,
};
pub use read::{ReadError, RunDir};
pub use redact::{is_secret_key, redact_json, redact_scenario_text, redact_urls};
pub use rows::{CsvFile, Fixed3, Merged, RunEntry};
pub use summary::{render_summary, text_table};
pub use time::rfc3339;
pub(crate) use write::write_csv;
pub use write::{
    write_agents, write_errors, write_file, write_rows, write_run, write_steps, write_summary,
};

/// Histograms record µs; every file shows ms, the unit latency budgets are stated in.
const MICROS_PER_MS: f64 = 1000.0;

/// Everything the results of one run are made from, gathered by the runner once the fleet
/// has stopped. Borrowing the plan and the scenario text keeps the runner the owner of
/// its inputs; the rest is moved in because nothing needs it after the results.
#[derive(Debug)]
pub struct RunRecord<'a> {
    pub plan: &'a Plan,
    /// The scenario file, when the run came from one (tests pass text directly).
    pub scenario_path: Option<&'a Path>,
    /// The scenario as written, kept in `manifest.json` so a run can be reproduced from
    /// its results alone; redacted of URL credentials and secret-named keys first.
    pub scenario_text: &'a str,
    /// `None` when the broker never came up: the run is still recorded.
    pub broker: Option<BrokerInfo>,
    pub started_at: SystemTime,
    pub ended_at: SystemTime,
    pub outcome: RunOutcome,
    /// Phase index → label: `phases[0] == "0:setup"`, `phases[i]` is step `i`'s label
    /// (`"1:start"`). Snapshots tag samples with the index; files show the label.
    pub phases: Vec<String>,
    pub agents: Vec<AgentFinal>,
    pub snapshot: Snapshot,
    pub fleet: FleetFigures,
    /// Steps that ran, in order, with the broker's counts after each (`steps.csv`).
    pub steps: Vec<StepRecord>,
    /// fleetsim's own CPU time and peak memory at the end of the run (the broker excluded).
    pub process: ProcessUsage,
    /// The 100 ms timeline (`timeseries.csv`).
    pub timeseries: Vec<Sample>,
    /// One per herd step (`recovery.csv`, `unrecovered.csv`).
    pub herds: Vec<HerdRecord>,
    /// What each churn step did (`counts.csv`: `churn.flaps`).
    pub churns: Vec<crate::churn::ChurnRecord>,
    /// One per `write`/`exec` step (`writes.csv`, `reconcile.csv`).
    pub writes: Vec<WriteRecord>,
    /// The broker's monitoring endpoints over time (`broker.csv`).
    pub broker_samples: Vec<BrokerSample>,
    /// `api.csv`'s rows, when the run recorded its API requests.
    pub api: Option<Vec<rows::ApiRow>>,
}

/// The status and, unless it is `ok`, why: one human-readable reason per problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub reasons: Vec<String>,
}

/// One agent's final state: the row of `agents.csv` that says which agents failed and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFinal {
    pub pc: String,
    pub group: String,
    /// `ready` or `failed` after the run's epilogue settled every agent.
    pub state: String,
    /// Why it failed (the last error), if it did.
    pub reason: Option<String>,
    /// Connections made, reconnects included: more than 1 means it lived through a cut.
    pub connects: u64,
    /// The last reconnect's splay delay and the time from Connected to the start of its
    /// re-sync; `None` for an agent that never reconnected.
    pub last_resync: Option<(Duration, Duration)>,
    /// Messages its core subscriptions received.
    pub core_received: u64,
    /// Periodic publishes it made (acked ones once acked).
    pub published: u64,
}

/// One step as it ran: the row of `steps.csv` that ties latencies to the broker's own
/// view (connections, consumers) at the end of the step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// The step's label, `"2:wait_ready"`.
    pub label: String,
    /// Seconds from the first step's start to this step's start and end.
    pub began_secs: f64,
    pub ended_secs: f64,
    pub agents_ready: usize,
    pub agents_failed: usize,
    /// The broker's counts after the step; meaningful only when `broker_sampled`.
    pub broker: BrokerCounts,
    /// False when no monitoring endpoint was known or sampling it failed.
    pub broker_sampled: bool,
}

/// Why results could not be written, with the file that failed (a full disk or a
/// read-only `--out` must be diagnosable from the message alone).
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl ResultsError {
    pub fn io(path: &Path) -> impl FnOnce(io::Error) -> ResultsError + '_ {
        move |source| ResultsError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn csv(path: &Path) -> impl FnOnce(csv::Error) -> ResultsError + '_ {
        move |source| ResultsError::Csv {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Creates `base/<UTC timestamp>-<scenario name>` (and `base` if needed) and returns it.
///
/// The name sorts by start time and says what ran. The name is reduced to
/// `[A-Za-z0-9_-]` so it is a safe single path component everywhere. An existing
/// directory is never reused (results of an earlier run must survive a rerun within the
/// same second): `-2`, `-3`, ... are tried, and `create_dir` makes the claim atomic even
/// when two runs start at once.
pub fn create_run_dir(
    base: &Path,
    scenario_name: &str,
    now: SystemTime,
) -> Result<PathBuf, ResultsError> {
    std::fs::create_dir_all(base).map_err(ResultsError::io(base))?;
    let stem = format!(
        "{}-{}",
        time::Utc::from_system_time(now).compact(),
        sanitize_name(scenario_name)
    );
    let mut n = 1u32;
    loop {
        let name = if n == 1 {
            stem.clone()
        } else {
            format!("{stem}-{n}")
        };
        let dir = base.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 10_000 => n += 1,
            Err(e) => return Err(ResultsError::io(&dir)(e)),
        }
    }
}

/// The directory an A/B run or a sweep writes into: `explicit` when given (created if
/// needed, as a sub-run's directory is), else a fresh one under `base` as
/// [`create_run_dir`] names it.
pub fn open_run_dir(
    explicit: Option<&Path>,
    base: &Path,
    name: &str,
    now: SystemTime,
) -> Result<PathBuf, ResultsError> {
    match explicit {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(ResultsError::io(dir))?;
            Ok(dir.to_path_buf())
        }
        None => create_run_dir(base, name, now),
    }
}

/// A scenario name as one portable path component: `[A-Za-z0-9_-]`, at most 64 chars.
fn sanitize_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "run".to_string()
    } else {
        cleaned
    }
}

/// The label of phase `index`; an index the record has no label for is shown bare
/// rather than dropped, so no sample goes unreported.
fn phase_label(phases: &[String], index: usize) -> String {
    phases
        .get(index)
        .cloned()
        .unwrap_or_else(|| index.to_string())
}
