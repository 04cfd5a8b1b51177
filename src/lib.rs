//! fleetsim: one process, N simulated NATS JetStream agents, real connections, real numbers.
//!
//! # Layout
//!
//! The modules follow the data flow of a run:
//!
//! - [`scenario`]: reads a TOML scenario file, reports every problem with file:line.
//! - [`plan`]: the validated, resolved scenario the rest of the crate executes.
//! - [`broker`]: the nats-server under test: an embedded one fleetsim starts and owns, or an
//!   external one it is pointed at; plus its monitoring endpoints.
//! - [`provision`]: creates the kanade buckets and the EXEC stream and seeds their keys.
//! - [`agent`]: one simulated agent: its own connection, its consumers, its sync.
//! - [`fleet`]: spawns and paces agents, tracks every agent's state.
//! - [`metrics`]: HdrHistograms and error counters, sharded so agents never contend.
//! - [`fault_proxy`]: a TCP proxy between agents and broker that cuts every connection at once.
//! - [`proxy_process`]: that proxy as its own process (`fleetsim proxy`), its control
//!   protocol, and the child a run starts with `[fleet] proxy = "process"`.
//! - [`errors`]: classifies async-nats failures into the kinds the results count.
//! - [`host`]: open-file limits and this process's own CPU and memory use.
//! - [`run`]: executes a plan's steps against a broker and a fleet.
//! - [`results`]: writes a run directory (summary.csv, .hgrm, errors.csv, manifest.json).
//! - [`report`]: `report.html` of a run directory: timelines, percentile curves, tables.
//! - [`ab`]: runs an A/B scenario's variants interleaved into one directory.
//! - [`ab_stats`]: per-variant percentiles, ratios and bootstrap intervals (`compare.csv`).
//! - [`gate`]: what decides pass or fail: [`thresholds`] (`[thresholds]` checks,
//!   `thresholds.csv`), [`gate::compare`] (`fleetsim compare`: a run against a baseline,
//!   ratio by ratio), [`junit`] (JUnit XML for CI systems), and a run's outcome as a CI
//!   gate reads it.
//! - [`sweep`]: one scenario at several fleet sizes: `sweep.csv`, the knee, `sizing.md`.

pub mod ab;
pub mod ab_stats;
pub mod agent;
pub mod broker;
pub mod errors;
pub mod fault_proxy;
pub mod fleet;
pub mod gate;
pub mod herd;
pub mod host;
pub mod metrics;
pub mod plan;
pub mod progress;
pub mod provision;
pub mod proxy_process;
pub mod report;
pub mod results;
pub mod run;
pub mod scenario;
pub mod splay;
pub mod sweep;
pub mod timeseries;
pub mod writes;
/// The gate's checks and JUnit output keep their short paths (`crate::thresholds`, used
/// by the scenario reader, the plan and the runner).
pub use gate::{junit, thresholds};
