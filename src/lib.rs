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
//! - [`compare`]: per-variant percentiles, ratios and bootstrap intervals (`compare.csv`).
//! - [`thresholds`]: `[thresholds]` checks over a run's results (`thresholds.csv`).
//! - [`baseline`]: `fleetsim compare`: a run against a baseline run, ratio by ratio.
//! - [`junit`]: JUnit XML of thresholds and comparisons, for CI systems.
//! - [`gate`]: a run's outcome as a CI gate reads it: status, thresholds, key latencies.
//! - [`sweep`]: one scenario at several fleet sizes: `sweep.csv`, the knee, `sizing.md`.

pub mod ab;
pub mod baseline;
pub mod broker;
pub mod compare;
pub mod error;
pub mod fleet;
pub mod gate;
pub mod herd;
pub mod host;
pub mod junit;
pub mod metrics;
pub mod nats_failure;
pub mod plan;
pub mod progress;
pub mod provision;
pub mod proxy;
pub mod report;
pub mod results;
pub mod run;
pub mod scenario;
pub mod step;
pub mod sweep;
pub mod thresholds;
pub mod timeseries;
pub mod writes;

// Paths kept for callers outside this branch's files (main.rs, tests/): the lead
// rewrites them to `proxy::process` and `fleet::splay` at merge and drops these.
pub use fleet::splay;
pub use proxy::process as proxy_process;
