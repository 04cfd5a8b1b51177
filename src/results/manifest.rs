//! `manifest.json`, typed both ways: what ran, against what, on what, and how it ended.
//!
//! A single run's [`Manifest`] and an A/B run's [`AbManifest`] are written from these
//! types and read back into them ([`super::read::RunDir::manifest`],
//! [`super::read::RunDir::any_manifest`]) with `deny_unknown_fields`, so a reader built
//! for this layout fails loudly on keys it does not know. Only the resolved settings and
//! an A/B run's variants stay plain JSON: `Plan` is not deserializable, and they are
//! kept to be read by people and to rerun the scenario.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::RunRecord;
use super::redact::{redact_json, redact_scenario_text, redact_urls};
use super::rows::RunEntry;
use super::time::rfc3339;
use crate::host::ProcessUsage;

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
    /// How a run (or an A/B run) ended: `partial` if it was interrupted, else `failed`
    /// when there is any reason to say so, else `ok`.
    pub fn of(interrupted: bool, reasons: &[String]) -> RunStatus {
        if interrupted {
            RunStatus::Partial
        } else if reasons.is_empty() {
            RunStatus::Ok
        } else {
            RunStatus::Failed
        }
    }

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

/// `manifest.json` of a single run. Enough to rerun the scenario (its text and resolved
/// settings, the seed) and to judge whether two runs are comparable (versions, broker
/// limits, host).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub fleetsim_version: String,
    /// The async-nats release line the agents ran (`[fleet] async_nats`), recorded
    /// because connection and consumer behaviour under a herd depends on the client as
    /// much as on the server.
    pub async_nats_version: String,
    pub scenario: ManifestScenario,
    /// The resolved [`crate::plan::Plan`] (defaults applied, command-line overrides
    /// included), redacted. Kept as JSON so the manifest does not need `Plan` to be
    /// deserializable.
    pub settings: serde_json::Value,
    pub seed: u64,
    /// The broker's kind, URL (redacted), version and limits; null when it never came up.
    pub broker: Option<ManifestBroker>,
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

/// The broker as the manifest records it: [`crate::broker::BrokerInfo`], redacted. The
/// fields are in `BrokerInfo`'s order, so the manifest reads as before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestBroker {
    /// `embedded` or `external`.
    pub kind: String,
    pub url: String,
    pub monitor_url: Option<String>,
    pub version: Option<String>,
    pub limits: ManifestBrokerLimits,
    /// Whether the run listened in the broker's system account; absent in manifests
    /// written before it was recorded (which never listened).
    #[serde(default)]
    pub api_limit_reached_counted: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestBrokerLimits {
    pub max_connections: Option<u64>,
    pub request_queue_limit: Option<u64>,
    pub default_max_consumers: Option<i64>,
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
pub(super) fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut fields = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// Assembles the manifest, every string from the scenario or the broker redacted.
pub(super) fn build_manifest(
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
            Some(serde_json::from_value(value)?)
        }
        None => None,
    };
    let duration = record
        .ended_at
        .duration_since(record.started_at)
        .unwrap_or_default();
    Ok(Manifest {
        fleetsim_version: env!("CARGO_PKG_VERSION").to_string(),
        async_nats_version: record.plan.fleet.async_nats.name().to_string(),
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

/// `manifest.json` of an A/B directory: the scenario, its variants (redacted), every
/// run in the order it ran, and how the whole ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbManifest {
    /// Always [`AbManifest::KIND`]: what tells it from a single run's manifest.
    pub kind: String,
    pub fleetsim_version: String,
    pub scenario: String,
    pub scenario_file: Option<String>,
    pub scenario_text: String,
    pub repeat: usize,
    /// `{name, fleet, broker, profile}` per variant, redacted.
    pub variants: Vec<serde_json::Value>,
    pub runs: Vec<RunEntry>,
    pub started_at: String,
    pub ended_at: String,
    pub status: RunStatus,
    pub reasons: Vec<String>,
}

impl AbManifest {
    pub const KIND: &'static str = "ab";
}
