//! fleetsim: one process, N simulated NATS JetStream agents, real connections, real numbers.
//!
//! # Layout
//!
//! The modules follow the data flow of a run; a newcomer reads them in this order.
//!
//! **Input**
//! - [`scenario`]: reads a TOML scenario file, reports every problem with file:line.
//! - [`plan`]: the validated, resolved scenario the rest of the crate executes; what one
//!   agent does is its `Profile` (`plan::profile`: cold-start and reconnect tasks of
//!   calls, per-command calls, periodic publishes, buckets, streams, client options).
//!
//! **The system under test**
//! - [`broker`]: the nats-server under test: an embedded one fleetsim starts and owns, or an
//!   external one it is pointed at (`Broker`), with TLS and auth when asked; its
//!   monitoring endpoints and sampler; the credentials every connection presents
//!   (`broker::url`); the API audit that records every JetStream API request
//!   (`broker::audit`, `api.csv`); the embedded broker's CPU time from `/proc`
//!   (`broker::cpu`) and its CPU quota cgroup (`broker::cgroup`).
//! - [`provision`]: creates the profile's buckets and streams and EXEC, and seeds keys.
//! - [`proxy`]: the fault proxy between agents and broker that cuts (resets or
//!   blackholes) every connection at once, or only some agents' (`proxy::fault`: the
//!   faults and which agent a connection carries), in this process or as its own
//!   (`fleetsim proxy`), and `AgentProxy`, the one a run puts in front of its broker;
//!   `proxy::link` shapes what it forwards (latency).
//!
//! **The fleet and its steps**
//! - `fleet`: the simulated agents (`fleet::agent`: what they share; `fleet::agent::sim`:
//!   the agent itself, its connection, tasks, calls and publishes, compiled once per
//!   async-nats version a scenario may choose), the roster of their states, intended-time pacing for the start and for writes
//!   (`fleet::pacing`), the splay (`fleet::splay`).
//! - `herd`: herd steps: the trigger, the probes, the recovery tracker the agents report
//!   to, and `HerdRecord`.
//! - `churn`: `churn` steps: single agents flapping at random at a rate, no herd.
//! - `writes`: `write`/`exec` steps: paced writes, one ledger per write job, the
//!   reconciliation, and `WriteRecord`.
//! - `step`: what a step runner is handed (`StepEnv`) and the typed step the samplers
//!   see (`StepInfo`).
//! - [`run`]: sequences a run: run directory, broker, provisioning, fleet, steps, epilogue.
//!   Its errors are typed (`run::RunError`, with the exit code).
//!
//! **Measurements**
//! - [`metrics`]: HdrHistograms and error counters, sharded so agents never contend, each
//!   sample tagged with the step that caused it.
//! - `nats_failure`: classifies async-nats failures into the kinds the results count.
//! - `timeseries`: the 100 ms timeline of fleet and broker activity (`timeseries.csv`).
//! - `progress`: the live progress line (or periodic log line) of a running run.
//! - [`host`]: open-file limits and this process's own CPU and memory use.
//!
//! **The run directory and what reads it**
//! - [`results`]: the run directory, both ways: file names, typed rows and manifest, the
//!   writer and the one reader (`results::RunDir`); the exact per-agent counts
//!   (`counts.csv`) the gate compares with zero tolerance.
//! - [`report`]: `report.html` of a run directory: timelines, percentile curves, tables.
//!
//! **The gate**
//! - [`gate`]: what decides pass or fail: [`thresholds`] (`[thresholds]` checks,
//!   `thresholds.csv`), [`gate::compare`] (`fleetsim compare`: a run against a baseline,
//!   ratio by ratio), [`gate::same_runner`] (`fleetsim gate`: a reference and a
//!   candidate interleaved on one runner, judged figure by figure, `gate.csv`), [`junit`]
//!   (JUnit XML for CI systems), and a run's outcome as a CI gate reads it.
//!
//! **Experiments**
//! - [`ab`]: runs an A/B scenario's variants interleaved into one directory.
//! - [`ab_stats`]: per-variant percentiles, ratios and bootstrap intervals (`compare.csv`).
//! - [`sweep`]: one scenario at several fleet sizes: `sweep.csv`, the knee, `sizing.md`.
//!
//! Modules without a link are internal to the crate (`pub(crate)`).

// Input.
pub mod plan;
pub mod scenario;
// The system under test.
pub mod broker;
pub mod provision;
pub mod proxy;
// The fleet and its steps.
pub(crate) mod churn;
pub(crate) mod error;
pub(crate) mod fleet;
pub(crate) mod herd;
pub mod run;
pub(crate) mod step;
pub(crate) mod writes;
// Measurements.
pub mod host;
pub mod metrics;
pub(crate) mod nats_failure;
pub(crate) mod progress;
pub(crate) mod timeseries;
// The run directory and what reads it.
pub mod report;
pub mod results;
// The gate.
pub mod gate;
// Experiments.
pub mod ab;
pub mod ab_stats;
pub mod sweep;

/// The gate's checks and JUnit output keep their short paths (`crate::thresholds`, used
/// by the scenario reader, the plan and the runner).
pub use gate::{junit, thresholds};

/// The splay's delay function, public for the tests that check each agent waited its own
/// (the `fleet` module itself is internal).
pub use fleet::splay;

/// With the cargo feature `mimalloc`: mimalloc is the global allocator of every binary
/// linking this library (fleetsim and examples/bare_agents.rs alike), for the allocator
/// lever of scripts/bench-levers.sh.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
