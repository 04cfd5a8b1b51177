//! `counts.csv`: the figures of a run that do not depend on timing, per phase: what each
//! agent asked of the broker and held on it, so a gate can compare them exactly.
//!
//! A latency swings 2× from run to run on a shared machine; how many consumers an agent
//! creates, or how many JetStream API requests it makes across a broker restart, does
//! not. One more consumer or one more request per agent changes these figures on any
//! runner, every time, so `fleetsim compare` and `[thresholds]` can treat them with zero
//! tolerance.
//!
//! # Phases
//!
//! A count's phase is a step together with the `wait_ready` steps right after it: a
//! `wait_ready` only lets the previous step's work finish, and whether one of those
//! requests reaches the broker before or after the `wait_ready` began is timing (the
//! same run's `1:start` holds 0 or 30 of the cold start's requests). The phase is named
//! after its first step (`1:start` covers `1:start` and `2:wait_ready`; `covers` lists
//! them). The phase `run` is the whole run, setup included.
//!
//! # Exact or not
//!
//! `exact = true` for a figure counted one by one from a record that loses nothing: the
//! broker's API audit (`api.csv`), the reconciliation of writes, the agents' own
//! reconnect count, the broker's consumer listing at the end of a settled phase.
//! `exact = false` for figures that depend on when they were sampled: traffic counters
//! read every second (idle heartbeats flow with time, and the traffic between the last
//! sample and a broker kill is lost with the broker's counters), the short-lived
//! `keys()` consumers still listed (the server reaps them ~30 s after use), and the API
//! requests of the live tap (`timeseries.csv`), which misses requests while its own
//! client reconnects; the latter stand in for the audit only when the run did not
//! record it (`[broker] record_api`), and are marked so. The agents' direct gets of a
//! herd's `fleetsim.probe` key are fleetsim's doing and timing: a `keys()` walk after a
//! reconnect lists the probe key only if the herd wrote it before the walk (of 300
//! agents, 292 in one run, 295 in the next), so they are left out of the API figures
//! and counted apart (`api.probe_get_per_agent`, not exact).

use std::collections::BTreeMap;

use super::RunRecord;
use super::rows::CountRow;
use crate::broker::sampler::BrokerSample;
use crate::herd::WATCH_ALL_PROBE_KEY;

/// The phase of the whole run.
pub const RUN_PHASE: &str = "run";

/// Units of the figures.
const PER_AGENT: &str = "count/agent";
const PER_WRITE: &str = "count/write";
const CPU_MS_PER_AGENT: &str = "cpu_ms/agent";
const PER_SEC: &str = "count/s";

/// The counts of one run, in phase order, each phase's figures in a fixed order.
pub fn count_rows(record: &RunRecord) -> Vec<CountRow> {
    let agents = record.plan.fleet.agents.max(1) as f64;
    let phases = segments(record);
    let mut rows = Vec::new();
    for phase in &phases {
        rows.extend(phase_counts(record, phase, agents));
    }
    rows.extend(run_counts(record, &phases, agents));
    rows
}

/// A phase of the counts: a step and the `wait_ready` steps right after it.
struct Segment {
    /// The first step's label (`3:broker_restart`).
    label: String,
    /// Every step's label, in order.
    steps: Vec<String>,
    /// Phase indexes (of `record.phases`) it covers.
    indexes: Vec<usize>,
}

impl Segment {
    fn covers(&self) -> String {
        self.steps.join(" ")
    }
}

/// The steps that ran, grouped into [`Segment`]s.
fn segments(record: &RunRecord) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for step in &record.steps {
        let index = record
            .phases
            .iter()
            .position(|p| *p == step.label)
            .unwrap_or(0);
        let absorbed = step.label.ends_with(":wait_ready") && !out.is_empty();
        if absorbed {
            let last = out.last_mut().expect("not empty");
            last.steps.push(step.label.clone());
            last.indexes.push(index);
        } else {
            out.push(Segment {
                label: step.label.clone(),
                steps: vec![step.label.clone()],
                indexes: vec![index],
            });
        }
    }
    out
}

/// Appends one figure's row.
struct Out<'a> {
    rows: Vec<CountRow>,
    phase: &'a str,
    covers: String,
    /// The phase has a herd and the agents run async-nats 0.50: its watch recreations
    /// send a `CONSUMER.CREATE` per attempt, and how many attempts an outage takes
    /// depends on timing (docs/herds.md), so the consumer and API figures are not exact.
    recreation_varies: bool,
}

impl Out<'_> {
    fn push(&mut self, figure: &str, value: f64, total: Option<u64>, unit: &str, exact: bool) {
        let exact = exact
            && !(self.recreation_varies
                && (figure.starts_with("consumers.") || figure.starts_with("api.")));
        self.rows.push(CountRow {
            phase: self.phase.to_string(),
            covers: self.covers.clone(),
            figure: figure.to_string(),
            value: round(value),
            total,
            unit: unit.to_string(),
            exact,
        });
    }

    /// `total / agents`, with the total kept.
    fn per_agent(&mut self, figure: &str, total: u64, agents: f64, exact: bool) {
        self.push(figure, total as f64 / agents, Some(total), PER_AGENT, exact);
    }
}

/// Six decimals: per-agent quotients of whole counts print the same every time.
fn round(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

fn phase_counts(record: &RunRecord, phase: &Segment, agents: f64) -> Vec<CountRow> {
    let labels: Vec<&str> = phase.steps.iter().map(String::as_str).collect();
    let herd = record.plan.steps.iter().any(|s| {
        matches!(s.action, crate::plan::StepAction::Herd { .. })
            && labels.contains(&s.label().as_str())
    });
    let mut out = Out {
        rows: Vec::new(),
        phase: &phase.label,
        covers: phase.covers(),
        recreation_varies: herd && record.plan.fleet.async_nats == crate::plan::AsyncNats::V0_50,
    };

    // The broker's consumers at the end of the phase (its last step's sample).
    if let Some(last) = record
        .steps
        .iter()
        .rev()
        .find(|s| labels.contains(&s.label.as_str()))
        .filter(|s| s.broker_sampled)
        && let Some(long_lived) = last.broker.consumers_long_lived
    {
        out.per_agent("consumers.long_lived_per_agent", long_lived, agents, true);
        let transient = last.broker.consumers.saturating_sub(long_lived);
        out.per_agent("consumers.transient_per_agent", transient, agents, false);
    }

    api_counts(record, &labels, agents, &mut out);

    // Broker traffic: the counters' increase over the phase's samples.
    let traffic = traffic(record, &labels);
    for (figure, total) in [
        ("msgs.in_per_agent", traffic[0]),
        ("msgs.out_per_agent", traffic[1]),
        ("bytes.in_per_agent", traffic[2]),
        ("bytes.out_per_agent", traffic[3]),
    ] {
        if let Some(total) = total {
            out.per_agent(figure, total, agents, false);
        }
    }

    broker_cpu(record, &labels, agents, &mut out);
    fleetsim_cpu(record, &labels, agents, &mut out);

    // Deliveries per write, by kind, of the phase's write and exec steps.
    for w in record
        .writes
        .iter()
        .filter(|w| labels.contains(&w.label.as_str()))
    {
        for k in &w.reconciliation.by_kind {
            let deliveries = k.delivered + k.unintended;
            let figure = format!("deliveries.{}_per_write", k.kind);
            let value = deliveries as f64 / k.acked.max(1) as f64;
            out.push(&figure, value, Some(deliveries), PER_WRITE, true);
        }
    }

    // Reconnects: one `reconnect` latency per reconnect an agent made.
    let reconnects: u64 = record
        .snapshot
        .histograms
        .iter()
        .filter(|h| h.metric == "reconnect" && phase.indexes.contains(&h.phase))
        .map(|h| h.histogram.len())
        .sum();
    out.per_agent("reconnects_per_agent", reconnects, agents, true);

    // Churn: the flaps its schedule made (a flap whose downtime is shorter than the
    // keepalive, in blackhole mode, costs no reconnect).
    for c in record
        .churns
        .iter()
        .filter(|c| labels.contains(&c.label.as_str()))
    {
        out.per_agent("churn.flaps_per_agent", c.flaps as u64, agents, true);
        out.per_agent(
            "churn.agents_flapped_per_agent",
            c.agents_flapped as u64,
            agents,
            true,
        );
    }
    out.rows
}

/// The whole run: API requests and the agents' own connection counts.
fn run_counts(record: &RunRecord, phases: &[Segment], agents: f64) -> Vec<CountRow> {
    let mut out = Out {
        rows: Vec::new(),
        phase: RUN_PHASE,
        covers: phases
            .iter()
            .map(Segment::covers)
            .collect::<Vec<_>>()
            .join(" "),
        // The whole run holds its herds.
        recreation_varies: record.plan.fleet.async_nats == crate::plan::AsyncNats::V0_50
            && !record.herds.is_empty(),
    };
    let all_labels: Vec<&str> = record.phases.iter().map(String::as_str).collect();
    api_counts(record, &all_labels, agents, &mut out);
    broker_cpu(record, &all_labels, agents, &mut out);
    fleetsim_cpu(record, &all_labels, agents, &mut out);
    let reconnects: u64 = record
        .agents
        .iter()
        .map(|a| a.connects.saturating_sub(1))
        .sum();
    out.per_agent("reconnects_per_agent", reconnects, agents, true);
    out.rows
}

/// The agents' JetStream API requests in `labels`: from the audit when the run recorded
/// it (exact), else from the live tap's per-100 ms counts (not exact: it counts every
/// client's requests, fleetsim's own included, and misses those sent while its own
/// connection was down).
fn api_counts(record: &RunRecord, labels: &[&str], agents: f64, out: &mut Out) {
    let phase_of = |label: &str| labels.contains(&label);
    if let Some(api) = &record.api {
        let agent_ids: std::collections::HashSet<&str> =
            record.agents.iter().map(|a| a.pc.as_str()).collect();
        // Direct gets carry no client: the agents are the only ones making them.
        let by_agent = api.iter().filter(|r| {
            phase_of(&r.phase)
                && (agent_ids.contains(r.client.as_str())
                    || (r.client.is_empty() && r.request == "DIRECT.GET"))
        });
        let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
        let (mut total, mut errors, mut created, mut walks, mut probes) = (0, 0, 0, 0, 0);
        for r in by_agent {
            if r.request == "DIRECT.GET" && r.detail.ends_with(&format!(".{WATCH_ALL_PROBE_KEY}")) {
                probes += 1;
                continue;
            }
            total += 1;
            errors += u64::from(r.error.is_some());
            *kinds.entry(kind_name(&r.request)).or_default() += 1;
            if r.request.starts_with("CONSUMER.") && r.request.ends_with("CREATE") {
                if r.detail.split(' ').any(|w| w == "headers_only") {
                    walks += 1;
                } else {
                    created += 1;
                }
            }
        }
        out.per_agent("consumers.created_per_agent", created, agents, true);
        out.per_agent("consumers.walks_per_agent", walks, agents, true);
        out.per_agent("api.total_per_agent", total, agents, true);
        out.per_agent("api.errors_per_agent", errors, agents, true);
        api_rate(record, labels, total, out);
        for (kind, n) in kinds {
            out.per_agent(&format!("api.{kind}_per_agent"), n, agents, true);
        }
        if probes > 0 {
            out.per_agent("api.probe_get_per_agent", probes, agents, false);
        }
        return;
    }
    let samples: Vec<_> = record
        .timeseries
        .iter()
        .filter(|s| phase_of(&s.step))
        .collect();
    if samples.is_empty() {
        return;
    }
    let sum = |f: fn(&crate::timeseries::Sample) -> u64| samples.iter().map(|s| f(s)).sum();
    let total: u64 = sum(crate::timeseries::Sample::api_requests);
    out.per_agent("api.total_per_agent", total, agents, false);
    api_rate(record, labels, total, out);
    for (kind, n) in [
        ("consumer_create", sum(|s| s.api_consumer_create)),
        ("consumer_delete", sum(|s| s.api_consumer_delete)),
        ("stream_info", sum(|s| s.api_stream_info)),
        ("other", sum(|s| s.api_other)),
    ] {
        out.per_agent(&format!("api.{kind}_per_agent"), n, agents, false);
    }
}

/// `broker.cpu_ms_per_agent`: the embedded broker's CPU time over the phase, per agent:
/// what the phase cost the broker.
fn broker_cpu(record: &RunRecord, labels: &[&str], agents: f64, out: &mut Out) {
    // A new pid is a restart: the new process counts from zero, even where its startup
    // (JetStream recovery) already used more CPU than the old process had.
    let read = |s: &BrokerSample| Some([s.cpu_secs?]);
    let same_process = |a: &BrokerSample, b: &BrokerSample| a.pid == b.pid;
    if let Some([cpu_secs]) = increase(record, labels, read, same_process) {
        let value = cpu_secs * 1000.0 / agents;
        out.push(
            "broker.cpu_ms_per_agent",
            value,
            None,
            CPU_MS_PER_AGENT,
            false,
        );
    }
}

/// `fleetsim.cpu_ms_per_agent`: fleetsim's own CPU time over the phase, per agent:
/// the load generator's cost (its agents, their async-nats clients and its observers).
fn fleetsim_cpu(record: &RunRecord, labels: &[&str], agents: f64, out: &mut Out) {
    let read = |s: &BrokerSample| Some([s.fleetsim_cpu_secs?]);
    if let Some([cpu_secs]) = increase(record, labels, read, |_, _| true) {
        let value = cpu_secs * 1000.0 / agents;
        out.push(
            "fleetsim.cpu_ms_per_agent",
            value,
            None,
            CPU_MS_PER_AGENT,
            false,
        );
    }
}

/// `api.rate_per_sec`: the phase's API requests over its wall time. In a phase where
/// the fleet asks as fast as the broker answers (an all-at-once start until every agent
/// is ready) that is the throughput the broker sustained: a capacity figure, which a
/// slower broker lowers. Not exact: the wall time is timing.
fn api_rate(record: &RunRecord, labels: &[&str], total: u64, out: &mut Out) {
    let secs: f64 = record
        .steps
        .iter()
        .filter(|s| labels.contains(&s.label.as_str()))
        .map(|s| s.ended_secs - s.began_secs)
        .sum();
    if secs > 0.0 && total > 0 {
        out.push(
            "api.rate_per_sec",
            total as f64 / secs,
            Some(total),
            PER_SEC,
            false,
        );
    }
}

/// `CONSUMER.DURABLE.CREATE` → `consumer_durable_create`.
pub fn kind_name(request: &str) -> String {
    request
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The increase of `/varz` in_msgs, out_msgs, in_bytes, out_bytes over the phase
/// `labels` (see [`increase`]).
fn traffic(record: &RunRecord, labels: &[&str]) -> [Option<u64>; 4] {
    let counters = |s: &BrokerSample| {
        Some([s.in_msgs?, s.out_msgs?, s.in_bytes?, s.out_bytes?].map(|v| v as f64))
    };
    // nats-server's counters restart with it; a restart shows as a counter going down.
    match increase(record, labels, counters, |_, _| true) {
        Some(sums) => sums.map(|v| Some(v as u64)),
        None => [None; 4],
    }
}

/// The increase of counters read from each broker sample over the intervals between
/// samples that begin in `labels` (every step gets a sample as it begins, so a phase's
/// intervals run from its first sample to the next phase's first): across a restart (a
/// counter that went down, or two samples `same_process` says are not of one process)
/// the later counter counts from zero. `None` when no such interval had counters at both
/// ends.
fn increase<const N: usize>(
    record: &RunRecord,
    labels: &[&str],
    read: impl Fn(&BrokerSample) -> Option<[f64; N]>,
    same_process: impl Fn(&BrokerSample, &BrokerSample) -> bool,
) -> Option<[f64; N]> {
    let mut previous: Option<(&BrokerSample, [f64; N])> = None;
    let mut sums: Option<[f64; N]> = None;
    for s in &record.broker_samples {
        let Some(now) = read(s) else { continue };
        if let Some((earlier, before)) = previous
            && labels.contains(&earlier.step.as_str())
        {
            let restarted = !same_process(earlier, s);
            let sums = sums.get_or_insert([0.0; N]);
            for i in 0..N {
                sums[i] += if !restarted && now[i] >= before[i] {
                    now[i] - before[i]
                } else {
                    now[i]
                };
            }
        }
        previous = Some((s, now));
    }
    sums
}
