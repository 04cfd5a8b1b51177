//! Fleet-size sweeps: the same scenario at several fleet sizes, each on a fresh broker,
//! one row per size in `sweep.csv`, the knee, and a sizing table (`sizing.md`).
//!
//! Every size is an ordinary [`run::run`] into `runs/<agents>/`, and its row is read
//! back from that run's files, so a sweep reports exactly what the single runs say.
//! The **knee** is the smallest size whose run did not pass: agents failed, a herd did
//! not recover, or a threshold of the scenario failed. Sizes run smallest first and the
//! sweep goes on past the knee (the sizes after it show how it degrades) unless
//! `stop_at_knee` is set.
//!
//! The sizing table fits a line `a + b x agents` (least squares) through each measured
//! column and extrapolates it to the seeds' fleet tiers, marking every figure that was
//! not measured. Linear is what the broker's costs are per agent (consumers, memory,
//! API requests per herd); recovery time is not linear past the knee, which is why
//! extrapolated rows say so. The broker's bandwidth (from `broker.csv`'s `/varz`
//! rates) gets a table of its own in Mbps, beside seed 001's "Network" figure for the
//! same tier, so that figure can be checked against a measurement.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use futures::FutureExt;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::plan::{ConsumerKind, Plan, Profile, StepAction};
use crate::results::rows::{
    BrokerRow, CsvFile, ErrorRow, RecoveryRow, StepRow, SummaryRow, TimeseriesRow,
};
use crate::results::{
    self, RUNS_DIR, ReadError, ResultsError, RunDir, RunStatus, SIZING_FILE, SWEEP_COLUMNS,
    SWEEP_FILE,
};
use crate::run::{self, RunError, RunOptions};

/// The fleet tiers of seeds 000/001, always in the sizing table.
pub const TIERS: [usize; 4] = [500, 3_000, 10_000, 50_000];

/// One fleet size's measurements, read from its run directory.
///
/// A figure the run did not measure (the broker could not be sampled) is empty, never
/// a zero that reads like a measurement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepRow {
    pub agents: usize,
    pub status: String,
    /// Long-lived consumers on the broker at the end of the run (the steady state).
    pub consumers: Option<u64>,
    pub consumers_per_agent: Option<f64>,
    pub connections: Option<u64>,
    /// Peak broker RSS (MiB) and CPU (% of one core) from `/varz`.
    pub broker_mem_mib: Option<f64>,
    pub broker_cpu_percent: Option<f64>,
    pub broker_mem_kib_per_consumer: Option<f64>,
    /// The broker's traffic in Mbps (10^6 bits of message headers + payload per second,
    /// `/varz`), in and out: the mean over the scenario's `hold` steps (its steady
    /// state; empty without one) and the busiest single `broker.csv` interval of the
    /// run (1 s, 250 ms in herd steps).
    pub broker_in_mbps_hold: Option<f64>,
    pub broker_out_mbps_hold: Option<f64>,
    pub broker_in_mbps_peak: Option<f64>,
    pub broker_out_mbps_peak: Option<f64>,
    /// JetStream API requests (from advisories) per agent during the start steps.
    pub api_per_agent_cold_start: f64,
    /// JetStream API requests per agent during herd steps (empty without a herd).
    pub api_per_agent_herd: Option<f64>,
    pub recovery_p99_s: Option<f64>,
    pub recovery_p100_s: Option<f64>,
    pub ready_p99_ms: Option<f64>,
    pub errors_total: u64,
    /// `kind:count` pairs, `;`-separated.
    pub errors_by_kind: String,
    /// Why the run did not pass (`;`-separated), empty when it passed.
    pub reasons: String,
}

/// What a sweep produced.
#[derive(Debug)]
pub struct SweepReport {
    pub dir: PathBuf,
    pub rows: Vec<SweepRow>,
    /// The smallest size that did not pass, if any.
    pub knee: Option<usize>,
    pub summary: String,
}

/// Runs `plan` at each of `sizes` (sorted ascending, duplicates dropped).
pub async fn sweep(
    plan: Plan,
    sizes: &[usize],
    options: RunOptions,
    stop_at_knee: bool,
    shutdown: impl Future<Output = ()>,
) -> Result<SweepReport, RunError> {
    let mut sizes = sizes.to_vec();
    sizes.sort_unstable();
    sizes.dedup();
    let dir = results::open_run_dir(
        options.run_dir.as_deref(),
        &options.results_base,
        &format!("{}-sweep", plan.name),
        SystemTime::now(),
    )?;
    let shutdown = shutdown.boxed_local().shared();
    let mut rows = Vec::new();
    let mut knee = None;
    for &n in &sizes {
        info!(agents = n, "sweep: next fleet size");
        let mut sized = plan.clone();
        sized.fleet.agents = n;
        let run_dir = dir.join(RUNS_DIR).join(n.to_string());
        let sub = RunOptions {
            scenario_path: options.scenario_path.clone(),
            scenario_text: options.scenario_text.clone(),
            results_base: dir.join(RUNS_DIR),
            run_dir: Some(run_dir.clone()),
            proxy_program: options.proxy_program.clone(),
        };
        let report = match run::run(sized, sub, shutdown.clone()).await {
            Ok(report) => report,
            // Interrupted while this size's broker was starting: the sizes before it
            // are measured and still written; with none, there is nothing to write.
            Err(e) if e.is_interrupted() && !rows.is_empty() => {
                tracing::warn!(
                    agents = n,
                    "sweep interrupted before this size ran; the sizes measured are written"
                );
                break;
            }
            Err(e) => return Err(e),
        };
        let mut row = measure(&run_dir, n).unwrap_or_else(|e| SweepRow {
            agents: n,
            reasons: format!("cannot read the run's results: {e}"),
            ..SweepRow::default()
        });
        // A run that finished but broke one of the scenario's thresholds is past the
        // knee just like one whose agents failed.
        let failed_checks: Vec<String> = report
            .thresholds
            .iter()
            .filter(|t| !t.passed)
            .map(|t| t.describe())
            .collect();
        let passed = report.status == RunStatus::Ok && failed_checks.is_empty();
        row.status = if report.status == RunStatus::Ok && !passed {
            "threshold_failed".to_string()
        } else {
            report.status.to_string()
        };
        row.reasons = report
            .reasons
            .iter()
            .cloned()
            .chain(failed_checks)
            .collect::<Vec<_>>()
            .join("; ");
        if !passed && knee.is_none() {
            knee = Some(n);
        }
        rows.push(row);
        if report.status == RunStatus::Partial || (!passed && stop_at_knee) {
            break;
        }
    }
    write_sweep_csv(&dir.join(SWEEP_FILE), &rows)?;
    let sizing = sizing_markdown(&plan, &rows, knee);
    let path = dir.join(SIZING_FILE);
    std::fs::write(&path, &sizing).map_err(ResultsError::io(&path))?;
    let mut summary = render_summary(&dir, &rows, knee);
    crate::report::write_report_line(&dir, &mut summary);
    Ok(SweepReport {
        dir,
        rows,
        knee,
        summary,
    })
}

impl CsvFile for SweepRow {
    const FILE: &'static str = SWEEP_FILE;
    const COLUMNS: &'static [&'static str] = &SWEEP_COLUMNS;
}

/// Reads one size's row from its run directory: every file it needs must be there and
/// parse (the error names the file and line); `recovery.csv` only when a herd ran.
pub fn measure(dir: &Path, agents: usize) -> Result<SweepRow, ReadError> {
    let run = RunDir::new(dir);
    let steps: Vec<StepRow> = run.rows()?;
    let broker: Vec<BrokerRow> = run.rows()?;
    let timeseries: Vec<TimeseriesRow> = run.rows()?;
    let summary: Vec<SummaryRow> = run.rows()?;
    let recovery: Vec<RecoveryRow> = run.rows_if_present()?.unwrap_or_default();
    let errors: Vec<ErrorRow> = run.rows()?;

    let last = steps.last();
    // Long-lived only: a sync's keys() walks leave short-lived consumers the server
    // reaps ~30 s later, which are not the fleet's steady state.
    let consumers = last.and_then(|s| s.broker_consumers_long_lived.or(s.broker_consumers));
    let peak = |figure: fn(&BrokerRow) -> Option<f64>| {
        broker
            .iter()
            .filter(|r| r.ok)
            .filter_map(figure)
            .reduce(f64::max)
    };
    let broker_mem_mib = peak(|r| r.mem_bytes.map(|b| b as f64)).map(|b| b / 1_048_576.0);
    let herd_steps: Vec<&str> = recovery.iter().map(|r| r.step.as_str()).collect();
    let is_start = |step: &str| step.ends_with(":start") || step.ends_with(":wait_ready");
    let cold: u64 = timeseries
        .iter()
        .take_while(|r| !herd_steps.contains(&r.step.as_str()))
        .filter(|r| is_start(&r.step))
        .map(TimeseriesRow::api_requests)
        .sum();
    let herd: u64 = timeseries
        .iter()
        .filter(|r| herd_steps.contains(&r.step.as_str()))
        .map(TimeseriesRow::api_requests)
        .sum();
    // The slowest herd; none when one never got every agent back.
    let worst = |pct: u32| {
        recovery
            .iter()
            .map(|r| r.recovered_secs(pct).flatten())
            .try_fold(0.0f64, |acc, v| v.map(|v| acc.max(v)))
    };
    let ready_p99 = summary
        .iter()
        .filter(|r| r.metric == "ready")
        .map(|r| r.p99.0)
        .reduce(f64::max);
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for e in &errors {
        *by_kind.entry(e.kind.clone()).or_default() += e.count;
    }
    let n = agents.max(1) as f64;
    let herded = !recovery.is_empty();
    let bandwidth = Bandwidth::of(&broker);
    Ok(SweepRow {
        agents,
        status: String::new(),
        consumers,
        consumers_per_agent: consumers.map(|c| round(c as f64 / n, 2)),
        connections: last.and_then(|s| s.broker_connections),
        broker_mem_mib: broker_mem_mib.map(|m| round(m, 1)),
        broker_cpu_percent: peak(|r| r.cpu_percent).map(|c| round(c, 1)),
        broker_mem_kib_per_consumer: match (broker_mem_mib, consumers) {
            (Some(mem), Some(c)) if c > 0 => Some(round(mem * 1024.0 / c as f64, 2)),
            _ => None,
        },
        broker_in_mbps_hold: bandwidth.in_hold,
        broker_out_mbps_hold: bandwidth.out_hold,
        broker_in_mbps_peak: bandwidth.in_peak,
        broker_out_mbps_peak: bandwidth.out_peak,
        api_per_agent_cold_start: round(cold as f64 / n, 2),
        api_per_agent_herd: herded.then(|| round(herd as f64 / n, 2)),
        recovery_p99_s: if herded { worst(99) } else { None },
        recovery_p100_s: if herded { worst(100) } else { None },
        ready_p99_ms: ready_p99,
        errors_total: by_kind.values().sum(),
        errors_by_kind: by_kind
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(";"),
        reasons: String::new(),
    })
}

/// The broker's bandwidth over one run, in Mbps, from `broker.csv`; every figure empty
/// when no row has a rate (no monitoring port, or a run directory from before fleetsim
/// wrote them), the hold figures also without a `hold` step.
#[derive(Debug, Default, PartialEq)]
struct Bandwidth {
    in_hold: Option<f64>,
    out_hold: Option<f64>,
    in_peak: Option<f64>,
    out_peak: Option<f64>,
}

impl Bandwidth {
    fn of(broker: &[BrokerRow]) -> Bandwidth {
        let mbps = |bytes_per_sec: f64| round(bytes_per_sec * 8.0 / 1e6, 3);
        // (interval, bytes in per second, bytes out per second, inside a hold step)
        let rated: Vec<(f64, f64, f64, bool)> = broker
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                // A step's first row closes an interval that began in the step before.
                let inside = i > 0 && broker[i - 1].step == r.step;
                let hold = inside && r.step.ends_with(":hold");
                Some((
                    r.interval_secs?,
                    r.in_bytes_per_sec?,
                    r.out_bytes_per_sec?,
                    hold,
                ))
            })
            .collect();
        let held: Vec<_> = rated.iter().filter(|r| r.3).collect();
        let secs: f64 = held.iter().map(|r| r.0).sum();
        // Bytes over seconds: rate × interval is each interval's byte count.
        let hold = |rate: fn(&(f64, f64, f64, bool)) -> f64| {
            (secs > 0.0).then(|| mbps(held.iter().map(|r| rate(r) * r.0).sum::<f64>() / secs))
        };
        let peak = |rate: fn(&(f64, f64, f64, bool)) -> f64| {
            rated.iter().map(rate).reduce(f64::max).map(mbps)
        };
        Bandwidth {
            in_hold: hold(|r| r.1),
            out_hold: hold(|r| r.2),
            in_peak: peak(|r| r.1),
            out_peak: peak(|r| r.2),
        }
    }
}

/// Seed 001's "Network" figure (its Resource Sizing table, "Master Resources") for a
/// fleet of `agents`; a range's lower bound belongs to it (1,000 is "1,000–10,000").
pub fn seed_001_network(agents: usize) -> &'static str {
    match agents {
        0..100 => "1 Mbps (< 100)",
        100..1_000 => "10 Mbps (100–1,000)",
        1_000..10_000 => "100 Mbps (1,000–10,000)",
        10_000..50_000 => "500 Mbps (10,000–50,000)",
        50_000..100_000 => "1 Gbps (50,000–100,000)",
        _ => "1+ Gbps (100,000+)",
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn write_sweep_csv(path: &Path, rows: &[SweepRow]) -> Result<(), ResultsError> {
    let mut out = csv::Writer::from_path(path).map_err(ResultsError::csv(path))?;
    for row in rows {
        out.serialize(row).map_err(ResultsError::csv(path))?;
    }
    if rows.is_empty() {
        out.write_record(["agents"])
            .map_err(ResultsError::csv(path))?;
    }
    out.flush().map_err(ResultsError::io(path))
}

/// Least-squares `(intercept, slope)` of `ys` over `xs`; `None` with fewer than two
/// distinct x.
pub fn fit_line(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    Some((my - slope * mx, slope))
}

/// Consumers one agent of `profile` holds at most on each stream (`KV_<bucket>`,
/// `EXEC`): its long-lived ones and, at cold start, its walks' keys() consumers.
pub fn consumers_per_stream(profile: &Profile) -> BTreeMap<String, usize> {
    let mut per = BTreeMap::new();
    for c in &profile.consumers {
        let stream = match &c.kind {
            ConsumerKind::Watch { bucket, .. }
            | ConsumerKind::WatchMany { bucket, .. }
            | ConsumerKind::WatchAll { bucket } => format!("KV_{bucket}"),
            ConsumerKind::ExecReplay => "EXEC".to_string(),
        };
        *per.entry(stream).or_default() += 1;
    }
    // Every walk of the cold start opens a keys() consumer that the server holds until
    // its inactivity threshold: at a synchronised start they all stand at once beside
    // the long-lived ones, so a stream's limit must hold them too.
    for task in &profile.cold_start {
        for call in &task.calls {
            if let crate::plan::Call::Walk { bucket } = call {
                *per.entry(format!("KV_{bucket}")).or_default() += 1;
            }
        }
    }
    per
}

/// The broker limits a fleet of `agents` running `profile` needs.
pub struct Limits {
    pub max_connections: usize,
    /// The most consumers one stream holds: `default_max_consumers` must be above it.
    pub max_consumers_per_stream: usize,
    pub busiest_stream: String,
    /// Every consumer create of a synchronised herd fits in the API queue.
    pub request_queue_limit: usize,
}

pub fn limits_for(profile: &Profile, agents: usize) -> Limits {
    let per = consumers_per_stream(profile);
    let (busiest, most) = per
        .iter()
        .max_by_key(|(_, n)| **n)
        .map_or((String::new(), 0), |(s, n)| (s.clone(), *n));
    Limits {
        // fleetsim's or an operator's own connections on top, and 10 % headroom.
        max_connections: agents + agents / 10 + 10,
        max_consumers_per_stream: agents * most,
        busiest_stream: busiest,
        // A herd re-creates every consumer within moments; the server drops the
        // whole queue when it overflows, so it must hold one full herd.
        request_queue_limit: (agents * profile.consumers.len()).max(10_000),
    }
}

fn fmt_opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
}

/// `sizing.md`: measured rows, the fitted per-agent costs, the seeds' tiers with
/// extrapolations marked, and the limits each tier needs.
pub fn sizing_markdown(plan: &Plan, rows: &[SweepRow], knee: Option<usize>) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Sizing: {} (profile {})\n",
        plan.name, plan.profile.name
    );
    let _ = writeln!(
        md,
        "Measured by `fleetsim sweep` on this host: one run per fleet size, each on a fresh broker. \
         Rows marked *extrapolated* come from the fitted line, not a run.\n"
    );
    match knee {
        Some(k) => {
            let why = rows
                .iter()
                .find(|r| r.agents == k)
                .map_or(String::new(), |r| r.reasons.clone());
            let _ = writeln!(
                md,
                "**Knee: {k} agents**, the smallest size that did not pass ({why}).\n"
            );
        }
        None => {
            let _ = writeln!(md, "No knee: every measured size passed.\n");
        }
    }
    let _ = writeln!(
        md,
        "| agents | source | consumers | broker RAM MiB | API req/agent per herd | recovery p100 s | status |\n|---:|---|---:|---:|---:|---:|---|"
    );
    let fit = |f: &dyn Fn(&SweepRow) -> Option<f64>| {
        let points: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.status == "ok")
            .filter_map(|r| f(r).map(|y| (r.agents as f64, y)))
            .collect();
        fit_line(&points)
    };
    let consumers = fit(&|r| r.consumers.map(|c| c as f64));
    let mem = fit(&|r| r.broker_mem_mib);
    let api = fit(&|r| r.api_per_agent_herd.map(|a| a * r.agents as f64));
    let recovery = fit(&|r| r.recovery_p100_s);
    let mut sizes: Vec<usize> = rows.iter().map(|r| r.agents).collect();
    sizes.extend(TIERS);
    sizes.sort_unstable();
    sizes.dedup();
    let at = |line: Option<(f64, f64)>, n: usize| line.map(|(a, b)| (a + b * n as f64).max(0.0));
    for n in sizes {
        match rows.iter().find(|r| r.agents == n) {
            Some(r) => {
                let _ = writeln!(
                    md,
                    "| {n} | measured | {} | {} | {} | {} | {} |",
                    fmt_opt(r.consumers.map(|c| c as f64), 0),
                    fmt_opt(r.broker_mem_mib, 1),
                    fmt_opt(r.api_per_agent_herd.map(|a| a * n as f64), 0),
                    fmt_opt(r.recovery_p100_s, 1),
                    r.status
                );
            }
            None => {
                let _ = writeln!(
                    md,
                    "| {n} | *extrapolated* | {} | {} | {} | {} | - |",
                    fmt_opt(at(consumers, n), 0),
                    fmt_opt(at(mem, n), 1),
                    fmt_opt(at(api, n), 0),
                    fmt_opt(at(recovery, n), 1),
                );
            }
        }
    }
    let _ = writeln!(
        md,
        "\nFitted per-agent costs (least squares over the passing sizes):\n"
    );
    for (what, line, unit) in [
        ("consumers", consumers, "consumers"),
        ("broker RAM", mem, "MiB"),
        ("API requests per herd", api, "requests"),
        ("herd recovery p100", recovery, "s"),
    ] {
        let _ = match line {
            Some((a, b)) => writeln!(md, "- {what}: {a:.3} + {b:.5} {unit} per agent"),
            None => writeln!(md, "- {what}: not enough passing sizes to fit"),
        };
    }
    if knee.is_some() {
        let _ = writeln!(
            md,
            "\nExtrapolations beyond the knee are lines through the sizes that passed: the broker does not degrade linearly past it."
        );
    }
    bandwidth_markdown(&mut md, rows);
    let _ = writeln!(
        md,
        "\n## Broker limits per tier (from the profile: {} consumers per agent)\n",
        plan.profile.consumers.len()
    );
    let _ = writeln!(
        md,
        "| agents | max_connections | default_max_consumers (busiest stream) | jetstream request_queue_limit |\n|---:|---:|---:|---:|"
    );
    for n in TIERS {
        let l = limits_for(&plan.profile, n);
        let _ = writeln!(
            md,
            "| {n} | {} | > {} ({}) | {} |",
            l.max_connections, l.max_consumers_per_stream, l.busiest_stream, l.request_queue_limit
        );
    }
    let _ = writeln!(
        md,
        "\nnats-server 2.15 defaults to 1,000 consumers per stream: a stream holding more than one consumer per agent fails at fleet sizes above 1,000 / (its consumers per agent). \
         request_queue_limit defaults to 10,000, and an overflow drops the whole queue."
    );
    let herd_steps = plan
        .steps
        .iter()
        .filter(|s| matches!(s.action, StepAction::Herd { .. }))
        .count();
    if herd_steps == 0 {
        let _ = writeln!(
            md,
            "\n(The scenario has no herd step: API requests per herd and recovery are not measured.)"
        );
    }
    md
}

/// The bandwidth section of `sizing.md`: per measured size and per tier, the broker's
/// Mbps in and out during `hold` steps and at peak, extrapolated where not measured,
/// beside seed 001's figure for the tier.
fn bandwidth_markdown(md: &mut String, rows: &[SweepRow]) {
    let _ = writeln!(md, "\n## Broker bandwidth per tier (Mbps)\n");
    let _ = writeln!(
        md,
        "| agents | source | in, hold | out, hold | in, peak | out, peak | seed 001 \"Network\" |\n|---:|---|---:|---:|---:|---:|---|"
    );
    let fit = |f: fn(&SweepRow) -> Option<f64>| {
        let points: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.status == "ok")
            .filter_map(|r| f(r).map(|y| (r.agents as f64, y)))
            .collect();
        fit_line(&points)
    };
    let figures: [fn(&SweepRow) -> Option<f64>; 4] = [
        |r| r.broker_in_mbps_hold,
        |r| r.broker_out_mbps_hold,
        |r| r.broker_in_mbps_peak,
        |r| r.broker_out_mbps_peak,
    ];
    let lines = figures.map(fit);
    let mut sizes: Vec<usize> = rows.iter().map(|r| r.agents).collect();
    sizes.extend(TIERS);
    sizes.sort_unstable();
    sizes.dedup();
    for n in sizes {
        let (source, cells) = match rows.iter().find(|r| r.agents == n) {
            Some(r) => ("measured", figures.map(|f| f(r))),
            None => (
                "*extrapolated*",
                lines.map(|l| l.map(|(a, b)| (a + b * n as f64).max(0.0))),
            ),
        };
        let [a, b, c, d] = cells.map(|x| fmt_opt(x, 3));
        let _ = writeln!(
            md,
            "| {n} | {source} | {a} | {b} | {c} | {d} | {} |",
            seed_001_network(n)
        );
    }
    let _ = writeln!(
        md,
        "\nMbps is 10^6 bits per second of message bytes (headers + payload) as nats-server counts them in `/varz` \
         (`in_bytes`, `out_bytes`): protocol lines, TCP/IP and TLS come on top, most for small messages. \
         *Hold* is the mean over the scenario's `hold` steps (its steady state; `-` without one), \
         *peak* the run's busiest `broker.csv` interval (1 s; 250 ms in herd steps); \
         `broker.csv` and `timeseries.csv` have the messages and bytes per second over time. \
         The traffic is what the scenario made: the agents' consumer deliveries and idle heartbeats, the writes and their fan-out, \
         the herds' re-syncs; fleetsim's agents publish no heartbeats or facts of their own. \
         Compare with seed 001's Resource Sizing table (its \"Network\" column, the last column above) and its \
         \"Network Bandwidth Estimates\" table (per operation: heartbeat ~100 B/s per agent, fact sync, state apply, settings push)."
    );
}

fn render_summary(dir: &Path, rows: &[SweepRow], knee: Option<usize>) -> String {
    let mut out = format!("sweep: {}\n", dir.display());
    let _ = writeln!(
        out,
        "{:>7}  {:<7} {:>9} {:>9} {:>12} {:>10} {:>7}",
        "agents", "status", "consumers", "broker MiB", "api/agent herd", "recov p100", "errors"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:>7}  {:<7} {:>9} {:>10} {:>14} {:>10} {:>7}",
            r.agents,
            r.status,
            fmt_opt(r.consumers.map(|c| c as f64), 0),
            fmt_opt(r.broker_mem_mib, 1),
            fmt_opt(r.api_per_agent_herd, 1),
            fmt_opt(r.recovery_p100_s, 1),
            r.errors_total
        );
    }
    let _ = match knee {
        Some(k) => writeln!(
            out,
            "knee: {k} agents (the smallest size that did not pass)"
        ),
        None => writeln!(out, "no knee: every size passed"),
    };
    out.push_str("sizing table: sizing.md");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_run_did_not_measure_stays_empty_and_a_missing_file_is_named() {
        fn empty<R: CsvFile>(dir: &Path) {
            let file = std::fs::File::create(dir.join(R::FILE)).expect("create");
            results::write_rows::<_, R>(file, []).expect("write");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        empty::<StepRow>(dir.path());
        empty::<BrokerRow>(dir.path());
        empty::<TimeseriesRow>(dir.path());
        empty::<SummaryRow>(dir.path());
        let e = measure(dir.path(), 10).expect_err("no errors.csv");
        assert!(e.to_string().contains("errors.csv"), "{e}");
        empty::<ErrorRow>(dir.path());
        let row = measure(dir.path(), 10).expect("measured");
        // The broker was never sampled: no consumer count, not zero consumers.
        assert_eq!(
            (row.consumers, row.connections, row.broker_mem_mib),
            (None, None, None)
        );
        assert_eq!((row.api_per_agent_herd, row.recovery_p100_s), (None, None));
        let mut out = csv::Writer::from_writer(Vec::new());
        out.serialize(&row).expect("row");
        let text = String::from_utf8(out.into_inner().expect("flush")).expect("utf-8");
        assert_eq!(text.lines().next(), Some(SWEEP_COLUMNS.join(",").as_str()));
        assert!(text.contains("\n10,,,,,,,,,,,,0.0,,,,,0,,\n"), "{text}");
        assert_eq!(
            (row.broker_in_mbps_hold, row.broker_out_mbps_peak),
            (None, None)
        );
    }

    #[test]
    fn bandwidth_holds_are_weighed_by_interval_and_peaks_span_the_run() {
        let row = |step: &str, interval: Option<f64>, bytes_in: f64, bytes_out: f64| BrokerRow {
            ok: true,
            step: step.to_string(),
            interval_secs: interval,
            in_bytes_per_sec: interval.map(|_| bytes_in),
            out_bytes_per_sec: interval.map(|_| bytes_out),
            ..BrokerRow::default()
        };
        let rows = [
            // The first row has no rate.
            row("1:start", None, 0.0, 0.0),
            row("1:start", Some(1.0), 2_500_000.0, 0.0),
            // The hold's first row closes an interval that began in the start step.
            row("2:hold", Some(1.0), 5_000_000.0, 5_000_000.0),
            row("2:hold", Some(1.0), 125_000.0, 250_000.0),
            row("2:hold", Some(0.25), 1_250_000.0, 0.0),
            // A restart: no rate across it.
            row("2:hold", None, 0.0, 0.0),
            row("2:hold", Some(0.75), 0.0, 500_000.0),
            row("3:write", Some(1.0), 3_000_000.0, 0.0),
        ];
        // Hold in: 125,000 + 312,500 + 0 bytes over 2 s = 218,750 B/s = 1.75 Mbps.
        // Hold out: 250,000 + 0 + 375,000 bytes over 2 s = 312,500 B/s = 2.5 Mbps.
        assert_eq!(
            Bandwidth::of(&rows),
            Bandwidth {
                in_hold: Some(1.75),
                out_hold: Some(2.5),
                in_peak: Some(40.0),
                out_peak: Some(40.0),
            }
        );
        // Without a hold step only the peaks.
        assert_eq!(
            Bandwidth::of(&rows[..2]),
            Bandwidth {
                in_peak: Some(20.0),
                out_peak: Some(0.0),
                ..Bandwidth::default()
            }
        );
        assert_eq!(Bandwidth::of(&rows[..1]), Bandwidth::default());
    }

    #[test]
    fn sizing_has_a_bandwidth_line_per_tier_beside_the_seeds_figure() {
        let plan = crate::scenario::parse_str(
            "[fleet]\nagents = 5\n\n[[steps]]\nkind = \"start\"\n",
            "t.toml",
        )
        .expect("plan");
        let measured = |agents: usize, mean: f64| SweepRow {
            agents,
            status: "ok".to_string(),
            broker_in_mbps_hold: Some(mean),
            broker_out_mbps_hold: Some(2.0 * mean),
            broker_in_mbps_peak: Some(10.0 * mean),
            broker_out_mbps_peak: None,
            ..SweepRow::default()
        };
        let md = sizing_markdown(&plan, &[measured(100, 0.1), measured(200, 0.2)], None);
        assert!(md.contains("## Broker bandwidth per tier (Mbps)"), "{md}");
        assert!(
            md.contains("| 100 | measured | 0.100 | 0.200 | 1.000 | - | 10 Mbps (100–1,000) |"),
            "{md}"
        );
        // 0.001 Mbps per agent: 3 Mbps in at 3,000 agents.
        assert!(
            md.contains(
                "| 3000 | *extrapolated* | 3.000 | 6.000 | 30.000 | - | 100 Mbps (1,000–10,000) |"
            ),
            "{md}"
        );
        for tier in TIERS {
            assert!(
                md.contains(&format!("| {tier} | *extrapolated* |")),
                "{tier}: {md}"
            );
        }
        assert!(md.contains("Network Bandwidth Estimates"), "{md}");
        assert_eq!(seed_001_network(10_000), "500 Mbps (10,000–50,000)");
        assert_eq!(seed_001_network(50_000), "1 Gbps (50,000–100,000)");
    }

    #[test]
    fn a_line_through_exact_points_is_recovered() {
        let (a, b) = fit_line(&[(100.0, 712.0), (200.0, 1412.0), (400.0, 2812.0)]).expect("fit");
        assert!((a - 12.0).abs() < 1e-9 && (b - 7.0).abs() < 1e-9, "{a} {b}");
        assert_eq!(fit_line(&[(1.0, 1.0)]), None);
        assert_eq!(fit_line(&[(5.0, 1.0), (5.0, 2.0)]), None);
    }

    #[test]
    fn kanade_limits_follow_its_consumers_per_stream() {
        let plan = crate::scenario::parse_str(
            "[fleet]\nagents = 5\n\n[[steps]]\nkind = \"start\"\n",
            "t.toml",
        )
        .expect("plan");
        let per = consumers_per_stream(&plan.profile);
        // 7 long-lived consumers and 3 walks (jobs, schedules, schedules again when the
        // membership arrives).
        assert_eq!(
            per.values().sum::<usize>(),
            plan.profile.consumers.len() + 3
        );
        assert_eq!(per.get("KV_agent_groups"), Some(&2));
        // schedules: its watch and two walks' keys() consumers, the stream that hits
        // the cap first at a synchronised cold start.
        assert_eq!(per.get("KV_schedules"), Some(&3));
        let l = limits_for(&plan.profile, 3_000);
        assert_eq!(
            (l.max_consumers_per_stream, l.busiest_stream.as_str()),
            (9_000, "KV_schedules")
        );
        assert_eq!(l.request_queue_limit, 21_000);
        let md = sizing_markdown(&plan, &[], None);
        assert!(md.contains("| 50000 | *extrapolated*"), "{md}");
    }
}
