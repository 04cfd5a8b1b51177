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
//! # Secrets
//!
//! Every string written that came from the scenario, the broker or an error message has
//! the credentials in its URLs replaced by `***` ([`redact_urls`]); the scenario text and
//! the serialized settings also lose the values of secret-named keys (`token`,
//! `password`, `user`, `creds`, `nkey`: [`redact_scenario_text`], [`redact_json`]).

mod herd;
mod hgrm;
mod redact;
mod time;
mod writes;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::broker::BrokerInfo;
use crate::broker::monitor::BrokerCounts;
use crate::broker::sampler::BrokerSample;
use crate::host::ProcessUsage;
use crate::metrics::Snapshot;
use crate::plan::Plan;
use crate::timeseries::Sample;
use crate::writes::WriteRecord;
pub use herd::{HerdRecord, Unrecovered};

pub use hgrm::{TICKS_PER_HALF_DISTANCE, write_percentile_distribution};
pub use redact::{is_secret_key, redact_json, redact_scenario_text, redact_urls};
pub use time::rfc3339;

/// The async-nats release line fleetsim is built against, recorded because connection
/// and consumer behaviour under a herd depends on the client as much as on the server.
pub const ASYNC_NATS_VERSION: &str = "0.51";

/// Histograms record µs; every file shows ms, the unit latency budgets are stated in.
const MICROS_PER_MS: f64 = 1000.0;

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
/// Column order of `broker.csv` (the fields of [`BrokerSample`]).
pub const BROKER_COLUMNS: [&str; 15] = [
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
];

/// Column order of `summary.csv`; scripts and committed baselines depend on it.
pub const SUMMARY_COLUMNS: [&str; 11] = [
    "phase", "metric", "unit", "count", "min", "p50", "p90", "p99", "p999", "max", "mean",
];
/// Column order of `errors.csv`.
pub const ERRORS_COLUMNS: [&str; 6] = ["phase", "operation", "kind", "code", "count", "example"];
/// Column order of `agents.csv`.
pub const AGENTS_COLUMNS: [&str; 7] = [
    "pc",
    "group",
    "state",
    "reason",
    "connects",
    "last_splay_ms",
    "last_resync_wait_ms",
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
    pub outcome: Outcome,
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
    /// One per `write`/`exec` step (`writes.csv`, `reconcile.csv`).
    pub writes: Vec<WriteRecord>,
    /// The broker's monitoring endpoints over time (`broker.csv`).
    pub broker_samples: Vec<BrokerSample>,
}

/// How many agents got where, the four numbers a reader checks first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFigures {
    pub started: usize,
    pub ready: usize,
    pub failed: usize,
    /// Agents still connecting or syncing when the run ended; they are marked failed.
    pub unfinished: usize,
}

/// How a run ended. It decides the exit code and is what a CI gate reads first.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every step completed and every agent became ready.
    Ok,
    /// The run completed but a step's condition was not met (agents failed, timeouts).
    Failed,
    /// The run stopped midway (an error, Ctrl-C): what was measured is still written.
    Partial,
}

impl RunStatus {
    /// The name used in the manifest and the summary.
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
            RunStatus::Partial => "partial",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status and, unless it is `ok`, why: one human-readable reason per problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
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

/// `manifest.json`: what ran, against what, on what, and how it ended. Enough to rerun
/// the scenario (its text and resolved settings, the seed) and to judge whether two runs
/// are comparable (versions, broker limits, host).
///
/// `deny_unknown_fields` on read: a reader built for this layout fails loudly on a
/// manifest with keys it does not know instead of silently ignoring them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub fleetsim_version: String,
    pub async_nats_version: String,
    pub scenario: ManifestScenario,
    /// The resolved [`Plan`] (defaults applied, command-line overrides included), redacted.
    /// Kept as JSON so the manifest does not need `Plan` to be deserializable.
    pub settings: serde_json::Value,
    pub seed: u64,
    /// The broker's kind, URL (redacted), version and limits; null when it never came up.
    pub broker: Option<serde_json::Value>,
    pub host: ManifestHost,
    /// RFC 3339, UTC, milliseconds.
    pub started_at: String,
    pub ended_at: String,
    pub duration_secs: f64,
    pub status: RunStatus,
    pub reasons: Vec<String>,
    pub fleet: FleetFigures,
    /// fleetsim's own CPU seconds and peak RSS: the cost of the simulator, per run.
    pub process: ProcessUsage,
    /// Phase index → label, as used in the `phase` columns and `.hgrm` file names.
    pub phases: Vec<String>,
    /// Every file of the run directory, this manifest included.
    pub files: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestScenario {
    pub name: String,
    pub path: Option<String>,
    /// The scenario file's text, secrets redacted.
    pub text: String,
}

/// The machine the fleet ran on: a fleet's latencies depend on its cores and memory as
/// much as on the broker's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestHost {
    pub hostname: String,
    /// `linux 6.8.0-45-generic x86_64`: OS, kernel release when known, architecture.
    pub os: String,
    /// CPUs this process may use (cgroup and affinity limits applied).
    pub cores: usize,
    /// MemTotal from /proc/meminfo; null where it cannot be read.
    pub memory_bytes: Option<u64>,
}

impl ManifestHost {
    /// Reads the current host's description; never fails, unknown parts are left out.
    pub fn current() -> ManifestHost {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
        };
        let hostname = read("/proc/sys/kernel/hostname")
            .or_else(|| read("/etc/hostname"))
            .or_else(|| std::env::var("HOSTNAME").ok())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".to_string());
        let os = match read("/proc/sys/kernel/osrelease") {
            Some(release) => format!(
                "{} {release} {}",
                std::env::consts::OS,
                std::env::consts::ARCH
            ),
            None => format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        };
        ManifestHost {
            hostname,
            os,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes: std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|m| mem_total_bytes(&m)),
        }
    }
}

/// `MemTotal:       16318412 kB` → bytes.
fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut fields = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
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

/// Writes every file of a run into `dir` (see the module docs), `manifest.json` last.
///
/// Stops at the first file that cannot be written: a partial directory without a
/// manifest is recognisable as incomplete.
pub fn write_run(dir: &Path, record: &RunRecord) -> Result<(), ResultsError> {
    let mut files = Vec::new();

    let path = dir.join(SUMMARY_FILE);
    let out = create(&path)?;
    finish(write_summary(&record.snapshot, &record.phases, out), &path)?;
    files.push(SUMMARY_FILE.to_string());

    files.extend(write_hgrm_files(dir, record)?);

    let path = dir.join(ERRORS_FILE);
    finish(
        write_errors(&record.snapshot, &record.phases, create(&path)?),
        &path,
    )?;
    files.push(ERRORS_FILE.to_string());

    let path = dir.join(AGENTS_FILE);
    finish(write_agents(&record.agents, create(&path)?), &path)?;
    files.push(AGENTS_FILE.to_string());

    let path = dir.join(STEPS_FILE);
    finish(write_steps(&record.steps, create(&path)?), &path)?;
    files.push(STEPS_FILE.to_string());

    let path = dir.join(TIMESERIES_FILE);
    finish(
        herd::write_timeseries(&record.timeseries, create(&path)?),
        &path,
    )?;
    files.push(TIMESERIES_FILE.to_string());

    let path = dir.join(RECOVERY_FILE);
    finish(herd::write_recovery(&record.herds, create(&path)?), &path)?;
    files.push(RECOVERY_FILE.to_string());

    let path = dir.join(UNRECOVERED_FILE);
    finish(
        herd::write_unrecovered(&record.herds, create(&path)?),
        &path,
    )?;
    files.push(UNRECOVERED_FILE.to_string());

    let path = dir.join(WRITES_FILE);
    finish(writes::write_fanout(&record.writes, create(&path)?), &path)?;
    files.push(WRITES_FILE.to_string());

    let path = dir.join(BROKER_FILE);
    finish(
        write_csv(create(&path)?, &BROKER_COLUMNS, &record.broker_samples),
        &path,
    )?;
    files.push(BROKER_FILE.to_string());

    let path = dir.join(RECONCILE_FILE);
    finish(
        writes::write_reconcile(&record.writes, create(&path)?),
        &path,
    )?;
    files.push(RECONCILE_FILE.to_string());

    files.push(MANIFEST_FILE.to_string());
    let path = dir.join(MANIFEST_FILE);
    let manifest = build_manifest(record, files, ManifestHost::current()).map_err(|source| {
        ResultsError::Json {
            path: path.clone(),
            source,
        }
    })?;
    let mut out = create(&path)?;
    serde_json::to_writer_pretty(&mut out, &manifest).map_err(|source| ResultsError::Json {
        path: path.clone(),
        source,
    })?;
    out.write_all(b"\n").map_err(ResultsError::io(&path))?;
    out.flush().map_err(ResultsError::io(&path))?;
    Ok(())
}

fn create(path: &Path) -> Result<BufWriter<File>, ResultsError> {
    File::create(path)
        .map(BufWriter::new)
        .map_err(ResultsError::io(path))
}

/// Flushes what a CSV writer returned and attributes any failure to `path`.
fn finish(written: csv::Result<BufWriter<File>>, path: &Path) -> Result<(), ResultsError> {
    let mut out = written.map_err(ResultsError::csv(path))?;
    out.flush().map_err(ResultsError::io(path))
}

/// The label of phase `index`; an index the record has no label for is shown bare
/// rather than dropped, so no sample goes unreported.
fn phase_label(phases: &[String], index: usize) -> String {
    phases
        .get(index)
        .cloned()
        .unwrap_or_else(|| index.to_string())
}

/// µs → ms with exactly 3 decimals, by integer arithmetic (no float rounding).
fn ms(micros: u64) -> String {
    format!("{}.{:03}", micros / 1000, micros % 1000)
}

/// One row of `summary.csv`; field order is [`SUMMARY_COLUMNS`].
#[derive(Debug, Serialize)]
struct SummaryRow<'a> {
    phase: String,
    metric: &'a str,
    unit: &'static str,
    count: u64,
    min: String,
    p50: String,
    p90: String,
    p99: String,
    p999: String,
    max: String,
    mean: String,
}

/// One row of `errors.csv`; field order is [`ERRORS_COLUMNS`].
#[derive(Debug, Serialize)]
struct ErrorRow {
    phase: String,
    operation: String,
    kind: &'static str,
    code: Option<u64>,
    count: u64,
    example: String,
}

/// One row of `agents.csv`; field order is [`AGENTS_COLUMNS`].
#[derive(Debug, Serialize)]
struct AgentRow<'a> {
    pc: &'a str,
    group: &'a str,
    state: &'a str,
    reason: String,
    connects: u64,
    last_splay_ms: Option<String>,
    last_resync_wait_ms: Option<String>,
}

/// One row of `steps.csv`; field order is [`STEPS_COLUMNS`].
#[derive(Debug, Serialize)]
struct StepRow<'a> {
    step: &'a str,
    began_secs: String,
    ended_secs: String,
    agents_ready: usize,
    agents_failed: usize,
    broker_connections: Option<u64>,
    broker_consumers: Option<u64>,
    broker_consumers_long_lived: Option<u64>,
    broker_api_total: Option<u64>,
    broker_api_errors: Option<u64>,
}

/// Writes a header (always, so an empty table is still a valid CSV with known columns)
/// and the rows, and hands the underlying writer back.
fn write_csv<W: Write, R: Serialize>(
    out: W,
    columns: &[&str],
    rows: impl IntoIterator<Item = R>,
) -> csv::Result<W> {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(out);
    writer.write_record(columns)?;
    for row in rows {
        writer.serialize(row)?;
    }
    writer.flush()?;
    writer
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))
}

/// `summary.csv`: one row per (metric, phase) of `snapshot`, in the snapshot's order.
pub fn write_summary<W: Write>(snapshot: &Snapshot, phases: &[String], out: W) -> csv::Result<W> {
    let rows = snapshot.histograms.iter().map(|h| {
        let hist = &h.histogram;
        SummaryRow {
            phase: phase_label(phases, h.phase),
            metric: &h.metric,
            unit: "ms",
            count: hist.len(),
            min: ms(hist.min()),
            p50: ms(hist.value_at_quantile(0.5)),
            p90: ms(hist.value_at_quantile(0.9)),
            p99: ms(hist.value_at_quantile(0.99)),
            p999: ms(hist.value_at_quantile(0.999)),
            max: ms(hist.max()),
            mean: format!("{:.3}", hist.mean() / MICROS_PER_MS),
        }
    });
    write_csv(out, &SUMMARY_COLUMNS, rows)
}

/// `errors.csv`: failures by (phase, operation, kind), with one example message each.
pub fn write_errors<W: Write>(snapshot: &Snapshot, phases: &[String], out: W) -> csv::Result<W> {
    let rows = snapshot.errors.iter().map(|e| {
        let (kind, code) = e.kind.columns();
        ErrorRow {
            phase: phase_label(phases, e.phase),
            operation: redact_urls(&e.operation),
            kind,
            code,
            count: e.count,
            example: redact_urls(&e.example),
        }
    });
    write_csv(out, &ERRORS_COLUMNS, rows)
}

/// `agents.csv`: one row per agent, in fleet order.
pub fn write_agents<W: Write>(agents: &[AgentFinal], out: W) -> csv::Result<W> {
    let rows = agents.iter().map(|a| AgentRow {
        pc: &a.pc,
        group: &a.group,
        state: &a.state,
        reason: a.reason.as_deref().map(redact_urls).unwrap_or_default(),
        connects: a.connects,
        last_splay_ms: a
            .last_resync
            .map(|(s, _)| format!("{:.3}", s.as_secs_f64() * 1e3)),
        last_resync_wait_ms: a
            .last_resync
            .map(|(_, w)| format!("{:.3}", w.as_secs_f64() * 1e3)),
    });
    write_csv(out, &AGENTS_COLUMNS, rows)
}

/// `steps.csv`: one row per step that ran; broker columns empty when not sampled.
pub fn write_steps<W: Write>(steps: &[StepRecord], out: W) -> csv::Result<W> {
    let rows = steps.iter().map(|s| {
        let sampled = |v: u64| s.broker_sampled.then_some(v);
        StepRow {
            step: &s.label,
            began_secs: format!("{:.3}", s.began_secs),
            ended_secs: format!("{:.3}", s.ended_secs),
            agents_ready: s.agents_ready,
            agents_failed: s.agents_failed,
            broker_connections: sampled(s.broker.connections),
            broker_consumers: sampled(s.broker.consumers),
            broker_consumers_long_lived: s.broker.consumers_long_lived.filter(|_| s.broker_sampled),
            broker_api_total: sampled(s.broker.api_total),
            broker_api_errors: sampled(s.broker.api_errors),
        }
    });
    write_csv(out, &STEPS_COLUMNS, rows)
}

/// Writes one `.hgrm` per histogram; returns the file names in snapshot order.
fn write_hgrm_files(dir: &Path, record: &RunRecord) -> Result<Vec<String>, ResultsError> {
    let mut names = Vec::with_capacity(record.snapshot.histograms.len());
    let mut taken = HashSet::new();
    for h in &record.snapshot.histograms {
        let name = unique_name(&mut taken, &hgrm_stem(h.phase, &h.metric), "hgrm");
        let path = dir.join(&name);
        let mut out = create(&path)?;
        write_percentile_distribution(
            &h.histogram,
            TICKS_PER_HALF_DISTANCE,
            MICROS_PER_MS,
            &mut out,
        )
        .and_then(|()| out.flush())
        .map_err(ResultsError::io(&path))?;
        names.push(name);
    }
    Ok(names)
}

/// `<phase index>-<metric>`, metric dots kept (`1-consumer_create.jobs`); anything that
/// is not safe in a file name (a `/`, a leading `.`) becomes `_`.
fn hgrm_stem(phase: usize, metric: &str) -> String {
    let metric: String = metric
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let safe = c.is_ascii_alphanumeric() || c == '_' || c == '-' || (c == '.' && i > 0);
            if safe { c } else { '_' }
        })
        .collect();
    format!("{phase}-{metric}")
}

/// `stem.ext`, or `stem~2.ext`, ... if two metrics sanitized to the same name.
fn unique_name(taken: &mut HashSet<String>, stem: &str, ext: &str) -> String {
    let mut name = format!("{stem}.{ext}");
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{stem}~{n}.{ext}");
        n += 1;
    }
    name
}

/// Assembles the manifest, every string from the scenario or the broker redacted.
fn build_manifest(
    record: &RunRecord,
    files: Vec<String>,
    host: ManifestHost,
) -> serde_json::Result<Manifest> {
    let mut settings = serde_json::to_value(record.plan)?;
    redact_json(&mut settings);
    let broker = match &record.broker {
        Some(info) => {
            let mut value = serde_json::to_value(info)?;
            redact_json(&mut value);
            Some(value)
        }
        None => None,
    };
    let duration = record
        .ended_at
        .duration_since(record.started_at)
        .unwrap_or_default();
    Ok(Manifest {
        fleetsim_version: env!("CARGO_PKG_VERSION").to_string(),
        async_nats_version: ASYNC_NATS_VERSION.to_string(),
        scenario: ManifestScenario {
            name: redact_urls(&record.plan.name),
            path: record
                .scenario_path
                .map(|p| redact_urls(&p.display().to_string())),
            text: redact_scenario_text(record.scenario_text),
        },
        settings,
        seed: record.plan.seed,
        broker,
        host,
        started_at: rfc3339(record.started_at),
        ended_at: rfc3339(record.ended_at),
        duration_secs: (duration.as_secs_f64() * 1000.0).round() / 1000.0,
        status: record.outcome.status,
        reasons: record
            .outcome
            .reasons
            .iter()
            .map(|r| redact_urls(r))
            .collect(),
        fleet: record.fleet,
        process: record.process,
        phases: record.phases.clone(),
        files,
    })
}

/// A latency in ms with 1-3 decimals: three below 10 ms, two below 100 ms, one above,
/// so a column stays readable from sub-millisecond gets to multi-second herds.
fn short_ms(micros: u64) -> String {
    let v = micros as f64 / MICROS_PER_MS;
    if v < 10.0 {
        format!("{v:.3}")
    } else if v < 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

/// The table printed at the end of a run: latencies per (metric, phase), errors by kind,
/// agent figures and the status with its reasons. The files hold everything; this is
/// what a person reads in a terminal or a CI log to know whether to open them.
pub fn render_summary(record: &RunRecord) -> String {
    let mut out = String::new();
    let header = ["metric", "phase", "count", "p50 ms", "p99 ms", "max ms"];
    let rows: Vec<[String; 6]> = record
        .snapshot
        .histograms
        .iter()
        .map(|h| {
            let hist = &h.histogram;
            [
                h.metric.clone(),
                phase_label(&record.phases, h.phase),
                hist.len().to_string(),
                short_ms(hist.value_at_quantile(0.5)),
                short_ms(hist.value_at_quantile(0.99)),
                short_ms(hist.max()),
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("no latencies recorded\n");
    } else {
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let mut line = |cells: [&str; 6]| {
            let mut text = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                // Names left-aligned, numbers right-aligned.
                if i < 2 {
                    text.push_str(&format!("{cell:<w$}"));
                } else {
                    text.push_str(&format!("{cell:>w$}"));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(header);
        for row in &rows {
            line(row.each_ref().map(String::as_str));
        }
    }

    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for e in &record.snapshot.errors {
        *by_kind.entry(e.kind.to_string()).or_default() += e.count;
    }
    let total: u64 = by_kind.values().sum();
    if total == 0 {
        out.push_str("errors: none\n");
    } else {
        let mut kinds: Vec<(String, u64)> = by_kind.into_iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let parts: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        out.push_str(&format!("errors: {total} ({})\n", parts.join(", ")));
    }

    let f = &record.fleet;
    out.push_str(&format!(
        "agents: {} started, {} ready, {} failed, {} unfinished\n",
        f.started, f.ready, f.failed, f.unfinished
    ));
    let secs = record
        .ended_at
        .duration_since(record.started_at)
        .unwrap_or_default()
        .as_secs_f64();
    out.push_str(&format!(
        "status: {} after {secs:.1} s",
        record.outcome.status
    ));
    if !record.outcome.reasons.is_empty() {
        let reasons: Vec<String> = record
            .outcome
            .reasons
            .iter()
            .map(|r| redact_urls(r))
            .collect();
        out.push_str(&format!(": {}", reasons.join("; ")));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::{Duration, UNIX_EPOCH};

    use hdrhistogram::Histogram;

    use super::*;
    use crate::metrics::{ErrorSnapshot, HistogramSnapshot};
    use crate::nats_failure::FailureKind;
    use crate::plan::{
        BrokerPlan, ConsumerKind, ConsumerSpec, FleetPlan, Profile, StartPacing, Step, StepAction,
    };

    const SCENARIO: &str = r#"name = "herd test"
[broker]
url = "nats://alice:s3cret@broker:4222"
token = "tok-123"
"#;

    fn plan() -> Plan {
        Plan {
            name: "herd test".to_string(),
            description: "see nats://bob:hunter2@docs:4222".to_string(),
            seed: 42,
            broker: BrokerPlan {
                url: Some("nats://alice:s3cret@broker:4222".to_string()),
                monitor_url: Some("http://broker:8222".to_string()),
                max_connections: 1000,
                request_queue_limit: 10_000,
                default_max_consumers: -1,
                reset: false,
                lame_duck_duration: Duration::from_secs(30),
                lame_duck_grace_period: Duration::from_secs(1),
                system_url: Some("nats://sys:sysp4ss@broker:4222".to_string()),
            },
            fleet: FleetPlan {
                agents: 2,
                groups: 1,
                profile: "kanade".to_string(),
                catalog_entries: 5,
                connect_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(5),
                setup_retries: 3,
                reconnect: crate::plan::Backoff::AsyncNatsDefault,
                splay: None,
                proxy: crate::plan::ProxyMode::Off,
                read_buffer_capacity: 8192,
                exec_ack_wait: None,
            },
            profile: Profile {
                name: "kanade".to_string(),
                consumers: vec![ConsumerSpec {
                    name: "exec_replay".to_string(),
                    kind: ConsumerKind::ExecReplay,
                }],
                sync: vec![],
            },
            steps: vec![
                Step {
                    index: 1,
                    action: StepAction::Start {
                        pacing: StartPacing::AllAtOnce,
                    },
                },
                Step {
                    index: 2,
                    action: StepAction::WaitReady {
                        timeout: Duration::from_secs(60),
                    },
                },
            ],
            variants: Vec::new(),
            repeat: 1,
            thresholds: Default::default(),
        }
    }

    fn histogram(micros: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        for v in micros {
            h.record(v).expect("record");
        }
        h
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            histograms: vec![
                HistogramSnapshot {
                    metric: "ready".to_string(),
                    phase: 1,
                    histogram: histogram((1..=100).map(|ms| ms * 1000)),
                },
                HistogramSnapshot {
                    metric: "consumer_create.jobs".to_string(),
                    phase: 1,
                    histogram: histogram([250, 1500]),
                },
            ],
            errors: vec![ErrorSnapshot {
                phase: 1,
                operation: "consumer_create.jobs".to_string(),
                kind: FailureKind::JetStream(10026),
                count: 3,
                example: "maximum consumers limit reached, server nats://u:pw@h:4222".to_string(),
            }],
        }
    }

    fn record(plan: &Plan) -> RunRecord<'_> {
        let started_at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        RunRecord {
            plan,
            scenario_path: Some(Path::new("scenarios/herd.toml")),
            scenario_text: SCENARIO,
            broker: Some(BrokerInfo {
                kind: "external",
                url: "nats://alice:s3cret@broker:4222".to_string(),
                monitor_url: Some("http://broker:8222".to_string()),
                version: Some("2.15.0".to_string()),
                limits: Default::default(),
                api_limit_reached_counted: false,
            }),
            started_at,
            ended_at: started_at + Duration::from_millis(12_345),
            outcome: Outcome {
                status: RunStatus::Failed,
                reasons: vec!["1 of 2 agents failed".to_string()],
            },
            phases: vec![
                "0:setup".to_string(),
                "1:start".to_string(),
                "2:wait_ready".to_string(),
            ],
            agents: vec![
                AgentFinal {
                    pc: "pc-00000".to_string(),
                    group: "g-000".to_string(),
                    state: "ready".to_string(),
                    reason: None,
                    connects: 1,
                    last_resync: None,
                },
                AgentFinal {
                    pc: "pc-00001".to_string(),
                    group: "g-000".to_string(),
                    state: "failed".to_string(),
                    reason: Some("consumer_create.jobs: error code 10026".to_string()),
                    connects: 2,
                    last_resync: Some((Duration::from_millis(1234), Duration::from_millis(1240))),
                },
            ],
            snapshot: snapshot(),
            fleet: FleetFigures {
                started: 2,
                ready: 1,
                failed: 1,
                unfinished: 0,
            },
            steps: vec![
                StepRecord {
                    label: "1:start".to_string(),
                    began_secs: 0.0,
                    ended_secs: 0.5,
                    agents_ready: 0,
                    agents_failed: 0,
                    broker: BrokerCounts::default(),
                    broker_sampled: false,
                },
                StepRecord {
                    label: "2:wait_ready".to_string(),
                    began_secs: 0.5,
                    ended_secs: 12.0,
                    agents_ready: 1,
                    agents_failed: 1,
                    broker: BrokerCounts {
                        connections: 2,
                        consumers: 7,
                        consumers_long_lived: Some(7),
                        api_total: 40,
                        api_errors: 3,
                    },
                    broker_sampled: true,
                },
            ],
            process: ProcessUsage {
                cpu_user_secs: 1.5,
                cpu_system_secs: 0.5,
                max_rss_kib: 20_480,
            },
            timeseries: Vec::new(),
            herds: Vec::new(),
            writes: Vec::new(),
            broker_samples: Vec::new(),
        }
    }

    /// How a reader (a script, a later fleetsim) reads `summary.csv`: unknown or missing
    /// columns are an error, not a silent zero.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct SummaryIn {
        phase: String,
        metric: String,
        unit: String,
        count: u64,
        min: f64,
        p50: f64,
        p90: f64,
        p99: f64,
        p999: f64,
        max: f64,
        mean: f64,
    }

    #[test]
    fn summary_csv_columns_are_pinned() {
        let csv_bytes =
            write_summary(&snapshot(), &record(&plan()).phases, Vec::new()).expect("write");
        let text = String::from_utf8(csv_bytes).expect("utf-8");
        assert_eq!(
            text.lines().next(),
            Some("phase,metric,unit,count,min,p50,p90,p99,p999,max,mean"),
            "changing summary.csv's columns breaks every script and baseline that reads it"
        );
        let rows: Vec<SummaryIn> = csv::Reader::from_reader(text.as_bytes())
            .deserialize()
            .collect::<Result<_, _>>()
            .expect("rows deserialize with deny_unknown_fields");
        assert_eq!(rows.len(), 2);
        let ready = &rows[0];
        assert_eq!(
            (
                ready.phase.as_str(),
                ready.metric.as_str(),
                ready.unit.as_str()
            ),
            ("1:start", "ready", "ms")
        );
        assert_eq!(ready.count, 100);
        // HdrHistogram reports the highest value equivalent to the recorded one at 3
        // significant digits: 50 ms reads 50.015 ms, 100 ms reads 100.031 ms.
        assert_eq!((ready.min, ready.p50, ready.max), (1.0, 50.015, 100.031));
        // Three decimals, written from integer µs.
        assert!(
            text.contains(
                "1:start,consumer_create.jobs,ms,2,0.250,0.250,1.500,1.500,1.500,1.500,0.875"
            ),
            "{text}"
        );
    }

    #[test]
    fn row_structs_serialize_in_column_order() {
        // The header is written from the constants; the rows from the structs. Pin that
        // they agree, field for field.
        fn header_of<R: Serialize>(row: R) -> String {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.serialize(row).expect("serialize");
            let text = String::from_utf8(w.into_inner().expect("flush")).expect("utf-8");
            text.lines().next().expect("header").to_string()
        }
        let snap = snapshot();
        let h = &snap.histograms[0];
        let summary = SummaryRow {
            phase: String::new(),
            metric: &h.metric,
            unit: "ms",
            count: 0,
            min: String::new(),
            p50: String::new(),
            p90: String::new(),
            p99: String::new(),
            p999: String::new(),
            max: String::new(),
            mean: String::new(),
        };
        assert_eq!(header_of(summary), SUMMARY_COLUMNS.join(","));
        let error = ErrorRow {
            phase: String::new(),
            operation: String::new(),
            kind: "",
            code: None,
            count: 0,
            example: String::new(),
        };
        assert_eq!(header_of(error), ERRORS_COLUMNS.join(","));
        let agent = AgentRow {
            pc: "",
            group: "",
            state: "",
            reason: String::new(),
            connects: 0,
            last_splay_ms: None,
            last_resync_wait_ms: None,
        };
        assert_eq!(header_of(agent), AGENTS_COLUMNS.join(","));
        let step = StepRow {
            step: "",
            began_secs: String::new(),
            ended_secs: String::new(),
            agents_ready: 0,
            agents_failed: 0,
            broker_connections: None,
            broker_consumers: None,
            broker_consumers_long_lived: None,
            broker_api_total: None,
            broker_api_errors: None,
        };
        assert_eq!(header_of(step), STEPS_COLUMNS.join(","));
    }

    #[test]
    fn errors_csv_is_written_even_when_nothing_failed() {
        let empty = write_errors(&Snapshot::default(), &[], Vec::new()).expect("write");
        assert_eq!(
            String::from_utf8(empty).expect("utf-8"),
            "phase,operation,kind,code,count,example\n"
        );
        let some = write_errors(&snapshot(), &record(&plan()).phases, Vec::new()).expect("write");
        let text = String::from_utf8(some).expect("utf-8");
        assert!(
            text.contains("1:start,consumer_create.jobs,jetstream,10026,3,"),
            "{text}"
        );
        assert!(!text.contains("pw@"), "{text}");
    }

    #[test]
    fn a_run_directory_holds_every_file_and_a_pinned_manifest() {
        let out = tempfile::tempdir().expect("tempdir");
        let plan = plan();
        let record = record(&plan);
        let dir = create_run_dir(out.path(), &plan.name, record.started_at).expect("run dir");
        assert_eq!(
            dir.file_name().and_then(|n| n.to_str()),
            Some("20231114T221320Z-herd_test")
        );
        write_run(&dir, &record).expect("write run");

        let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).expect("manifest");
        let raw: serde_json::Value = serde_json::from_str(&text).expect("json");
        let keys: BTreeSet<&str> = raw
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        let expected: BTreeSet<&str> = [
            "fleetsim_version",
            "async_nats_version",
            "scenario",
            "settings",
            "seed",
            "broker",
            "host",
            "started_at",
            "ended_at",
            "duration_secs",
            "status",
            "reasons",
            "fleet",
            "process",
            "phases",
            "files",
        ]
        .into_iter()
        .collect();
        assert_eq!(
            keys, expected,
            "manifest.json's top-level keys are a contract"
        );

        let manifest: Manifest =
            serde_json::from_str(&text).expect("manifest deserializes with deny_unknown_fields");
        assert_eq!(manifest.fleetsim_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(manifest.async_nats_version, "0.51");
        assert_eq!(manifest.scenario.name, "herd test");
        assert_eq!(
            manifest.scenario.path.as_deref(),
            Some("scenarios/herd.toml")
        );
        assert_eq!(manifest.seed, 42);
        assert_eq!(manifest.started_at, "2023-11-14T22:13:20.000Z");
        assert_eq!(manifest.ended_at, "2023-11-14T22:13:32.345Z");
        assert_eq!(manifest.duration_secs, 12.345);
        assert_eq!(manifest.status, RunStatus::Failed);
        assert_eq!(raw["status"], "failed");
        assert_eq!(manifest.reasons, ["1 of 2 agents failed"]);
        assert_eq!(manifest.fleet, record.fleet);
        assert_eq!(manifest.phases, record.phases);
        assert!(manifest.host.cores >= 1);
        assert_eq!(manifest.settings["fleet"]["agents"], 2);
        assert_eq!(manifest.settings["broker"]["url"], "nats://***@broker:4222");
        assert_eq!(
            manifest.broker.as_ref().expect("broker")["url"],
            "nats://***@broker:4222"
        );
        assert!(
            manifest.scenario.text.contains(r#"token = "***""#),
            "{}",
            manifest.scenario.text
        );

        // The files list is exactly what is in the directory.
        let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        let listed: BTreeSet<String> = manifest.files.iter().cloned().collect();
        assert_eq!(listed, on_disk);
        assert!(
            on_disk.contains("1-ready.hgrm") && on_disk.contains("1-consumer_create.jobs.hgrm"),
            "{on_disk:?}"
        );

        // No secret anywhere in the directory.
        for name in &on_disk {
            let content = std::fs::read_to_string(dir.join(name)).expect("file");
            for secret in ["s3cret", "tok-123", "hunter2", ":pw@", "alice", "sysp4ss"] {
                assert!(
                    !content.contains(secret),
                    "{secret} leaked into {name}:\n{content}"
                );
            }
        }

        let steps = std::fs::read_to_string(dir.join(STEPS_FILE)).expect("steps.csv");
        assert_eq!(
            steps.lines().collect::<Vec<_>>(),
            [
                STEPS_COLUMNS.join(",").as_str(),
                "1:start,0.000,0.500,0,0,,,,,",
                "2:wait_ready,0.500,12.000,1,1,2,7,7,40,3",
            ]
        );
        let agents = std::fs::read_to_string(dir.join(AGENTS_FILE)).expect("agents.csv");
        assert!(
            agents.starts_with(
                "pc,group,state,reason,connects,last_splay_ms,last_resync_wait_ms\n\
                 pc-00000,g-000,ready,,1,,\n"
            ),
            "{agents}"
        );
        assert!(agents.contains(",2,1234.000,1240.000\n"), "{agents}");
    }

    #[test]
    fn hgrm_file_ends_at_the_max_with_the_total_count() {
        let out = tempfile::tempdir().expect("tempdir");
        let plan = plan();
        let record = record(&plan);
        write_run(out.path(), &record).expect("write run");
        let text = std::fs::read_to_string(out.path().join("1-ready.hgrm")).expect("hgrm");
        let rows: Vec<&str> = text
            .lines()
            .skip(2)
            .take_while(|l| !l.starts_with('#'))
            .collect();
        let last: Vec<&str> = rows.last().expect("rows").split_whitespace().collect();
        let max = record.snapshot.histograms[0].histogram.max();
        assert_eq!(
            last,
            [
                format!("{:.3}", max as f64 / 1000.0).as_str(),
                "1.000000000000",
                "100"
            ]
        );
        assert!(text.contains("Total count    =          100]"), "{text}");
    }

    #[test]
    fn create_run_dir_never_overwrites() {
        let out = tempfile::tempdir().expect("tempdir");
        let base = out.path().join("nested/results");
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let first = create_run_dir(&base, "a/b c", now).expect("first");
        std::fs::write(first.join("marker"), "first run").expect("marker");
        let second = create_run_dir(&base, "a/b c", now).expect("second");
        let third = create_run_dir(&base, "a/b c", now).expect("third");
        assert_eq!(
            first.file_name().and_then(|n| n.to_str()),
            Some("20231114T221320Z-a_b_c")
        );
        assert_eq!(
            second.file_name().and_then(|n| n.to_str()),
            Some("20231114T221320Z-a_b_c-2")
        );
        assert_eq!(
            third.file_name().and_then(|n| n.to_str()),
            Some("20231114T221320Z-a_b_c-3")
        );
        assert_eq!(
            std::fs::read_to_string(first.join("marker")).expect("marker"),
            "first run"
        );
    }

    #[test]
    fn summary_text_has_latencies_errors_and_status() {
        let plan = plan();
        let text = render_summary(&record(&plan));
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("metric") && lines[0].ends_with("max ms"),
            "{text}"
        );
        let ready = lines
            .iter()
            .find(|l| l.starts_with("ready "))
            .expect("ready row");
        assert_eq!(
            ready.split_whitespace().collect::<Vec<_>>(),
            ["ready", "1:start", "100", "50.02", "99.01", "100.0"]
        );
        assert!(text.contains("errors: 3 (jetstream 10026: 3)"), "{text}");
        assert!(
            text.contains("agents: 2 started, 1 ready, 1 failed, 0 unfinished"),
            "{text}"
        );
        assert!(
            text.contains("status: failed after 12.3 s: 1 of 2 agents failed"),
            "{text}"
        );
    }

    #[test]
    fn meminfo_total_is_read_in_bytes() {
        let meminfo = "MemTotal:       16318412 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total_bytes(meminfo), Some(16_318_412 * 1024));
        assert_eq!(mem_total_bytes("nothing"), None);
    }
}
