//! The broker's own view of a run: its monitoring endpoints sampled on the run's clock.
//!
//! Every second (every 250 ms while a herd step runs, when things move fast) the sampler
//! reads `/healthz`, `/varz` and `/jsz` and keeps one row for `broker.csv`. A broker that
//! does not answer (it is restarting, or too busy) is a recorded gap, a row with
//! `ok = false` and the error, never a failed run: the gap is itself a finding.
//!
//! Each row also carries the broker's traffic counters (`/varz` messages and bytes in
//! and out) and the rates since the previous row that had them: the counters'
//! difference divided by the time between the two `/varz` answers, measured on the
//! run's monotonic clock when each answer arrived (nats-server reads its counters just
//! before it writes the answer, so the arrival is closer to the reading than the
//! request's departure, which may wait behind a busy server). That time is written as
//! `interval_secs`, so `rate × interval_secs` gives the difference back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::cpu::BrokerProcess;
use super::monitor::{Healthz, Jsz, Rates, Traffic, Varz, get_as};
use crate::fleet::Roster;
use crate::step::StepInfo;

/// Sampling interval outside herd steps.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Sampling interval while a herd step runs.
pub const HERD_INTERVAL: Duration = Duration::from_millis(250);
/// How long one endpoint may take to answer before the sample is a gap.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// One row of `broker.csv`, written and read back (`results::rows::BrokerRow`); the
/// figures are empty when the broker did not answer (`ok = false`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSample {
    /// Seconds since the first step began (the clock of `timeseries.csv`).
    pub t_secs: f64,
    pub step: String,
    /// All three endpoints answered.
    pub ok: bool,
    pub error: String,
    /// `/healthz` status (`ok`, or the error it reports).
    pub healthz: String,
    pub connections: Option<u64>,
    pub total_connections: Option<u64>,
    pub slow_consumers: Option<u64>,
    pub mem_bytes: Option<u64>,
    pub cpu_percent: Option<f64>,
    pub streams: Option<u64>,
    pub consumers: Option<u64>,
    pub api_total: Option<u64>,
    pub api_errors: Option<u64>,
    /// JetStream API requests being processed (nats-server leaves it out when 0).
    pub api_inflight: Option<u64>,
    /// `/varz` cumulative counters (since the server started): messages and bytes
    /// (headers + payload) in and out.
    pub in_msgs: Option<u64>,
    pub out_msgs: Option<u64>,
    pub in_bytes: Option<u64>,
    pub out_bytes: Option<u64>,
    /// Seconds from the previous row with counters to this one (between the two `/varz`
    /// answers, on the run's monotonic clock, rounded to µs); the rates below divide
    /// by it. Empty on the first such row and across a broker restart.
    pub interval_secs: Option<f64>,
    pub in_msgs_per_sec: Option<f64>,
    pub out_msgs_per_sec: Option<f64>,
    pub in_bytes_per_sec: Option<f64>,
    pub out_bytes_per_sec: Option<f64>,
    /// CPU seconds the broker's process has used since it started (user + system, read
    /// from `/proc` as the sample began: see [`super::cpu`]); empty for an external
    /// broker and while the process is down. It starts again from zero after a restart.
    pub cpu_secs: Option<f64>,
    /// The embedded broker's process id when `cpu_secs` was read: a new one is a
    /// restart, whose CPU counts from zero.
    pub pid: Option<u32>,
    /// CPU seconds fleetsim's own process has used since it started, read beside
    /// `cpu_secs`: the load generator's cost on the same machine.
    pub fleetsim_cpu_secs: Option<f64>,
    /// Agents whose client believed itself connected (its last connection event was
    /// Connected), read as `/varz` answered. Empty when the sample has no fleet to
    /// read (see [`FleetOnBroker`]).
    #[serde(default)]
    pub agents_connected: Option<u64>,
    /// Client connections the broker holds that no agent believes it has: `connections`
    /// minus the connections it held before the fleet started (fleetsim's own) minus
    /// `agents_connected`, floored at 0. After a silent cut, the connections the server
    /// has not yet found dead (its pings unanswered) beside the agents' new ones; in a
    /// start or a reconnect herd also the new connections still in their handshake.
    #[serde(default)]
    pub stale_connections: Option<u64>,
    /// Consumers the broker holds above the fleet's footprint (those it held before the
    /// fleet started plus every agent's long-lived ones), floored at 0: after a cut, the
    /// old ephemeral consumers not yet reaped beside the ones the agents recreated on
    /// their new connections. It also counts the short-lived consumers of a profile's
    /// key walks (`keys()`) while they live, and agents that never set up make the
    /// footprint smaller than counted.
    #[serde(default)]
    pub double_held_consumers: Option<u64>,
}

impl BrokerSample {
    /// A numeric column by name (`api_errors`, `mem_bytes`); `None` when empty or not
    /// a figure.
    pub fn figure(&self, name: &str) -> Option<f64> {
        let count = |v: Option<u64>| v.map(|v| v as f64);
        match name {
            "connections" => count(self.connections),
            "total_connections" => count(self.total_connections),
            "slow_consumers" => count(self.slow_consumers),
            "mem_bytes" => count(self.mem_bytes),
            "cpu_percent" => self.cpu_percent,
            "streams" => count(self.streams),
            "consumers" => count(self.consumers),
            "api_total" => count(self.api_total),
            "api_errors" => count(self.api_errors),
            "api_inflight" => count(self.api_inflight),
            "in_msgs" => count(self.in_msgs),
            "out_msgs" => count(self.out_msgs),
            "in_bytes" => count(self.in_bytes),
            "out_bytes" => count(self.out_bytes),
            "interval_secs" => self.interval_secs,
            "in_msgs_per_sec" => self.in_msgs_per_sec,
            "out_msgs_per_sec" => self.out_msgs_per_sec,
            "in_bytes_per_sec" => self.in_bytes_per_sec,
            "out_bytes_per_sec" => self.out_bytes_per_sec,
            "cpu_secs" => self.cpu_secs,
            "fleetsim_cpu_secs" => self.fleetsim_cpu_secs,
            "agents_connected" => count(self.agents_connected),
            "stale_connections" => count(self.stale_connections),
            "double_held_consumers" => count(self.double_held_consumers),
            _ => None,
        }
    }

    /// Fills the traffic columns: this row's counters and the rates since `earlier`.
    fn set_traffic(&mut self, now: &Traffic, rates: Option<Rates>) {
        self.in_msgs = Some(now.in_msgs);
        self.out_msgs = Some(now.out_msgs);
        self.in_bytes = Some(now.in_bytes);
        self.out_bytes = Some(now.out_bytes);
        if let Some(r) = rates {
            self.interval_secs = Some(r.interval_secs);
            self.in_msgs_per_sec = Some(r.in_msgs_per_sec);
            self.out_msgs_per_sec = Some(r.out_msgs_per_sec);
            self.in_bytes_per_sec = Some(r.in_bytes_per_sec);
            self.out_bytes_per_sec = Some(r.out_bytes_per_sec);
        }
    }
}

/// What the broker's counts are held against to find what it holds that no agent
/// does: the fleet's own view of its connections, and the broker's counts before it.
#[derive(Clone)]
pub struct FleetOnBroker {
    pub roster: Arc<Roster>,
    /// Client connections the broker held before any agent connected: fleetsim's own
    /// (control, system account) and, on an external broker, anyone else's.
    pub connections_before: u64,
    /// The consumers the broker holds with every agent set up: those it held before
    /// the fleet started plus each agent's long-lived ones (the profile's consumers).
    pub consumers_expected: u64,
}

impl FleetOnBroker {
    /// Fills `agents_connected` (`connected`, read as `/varz` answered),
    /// `stale_connections` and `double_held_consumers` of `row` from the broker's counts
    /// it carries.
    fn fill(&self, row: &mut BrokerSample, connected: u64) {
        row.agents_connected = Some(connected);
        row.stale_connections = row.connections.map(|c| {
            c.saturating_sub(self.connections_before)
                .saturating_sub(connected)
        });
        row.double_held_consumers = row
            .consumers
            .map(|c| c.saturating_sub(self.consumers_expected));
    }
}

/// The figures of the broker's last sample that the time series repeats on its rows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Overlap {
    pub stale_connections: Option<u64>,
    pub double_held_consumers: Option<u64>,
}

/// A sampler running in the background; [`BrokerSampler::finish`] returns the rows.
pub struct BrokerSampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<Vec<BrokerSample>>,
    /// The index of the step whose sample began last.
    sampled: watch::Receiver<usize>,
    /// The last sample's overlap figures.
    overlap: watch::Receiver<Overlap>,
}

impl BrokerSampler {
    /// Samples `monitor` (and `process`'s CPU time, for an embedded broker) on the run's
    /// clock `run_start`, following the steps announced on `step`; with `fleet`, each
    /// row also says what the broker holds that no agent does.
    pub fn start(
        monitor: String,
        process: Option<BrokerProcess>,
        fleet: Option<FleetOnBroker>,
        step: watch::Receiver<StepInfo>,
        run_start: Instant,
    ) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let (sampled, sampled_rx) = watch::channel(0);
        let (overlap, overlap_rx) = watch::channel(Overlap::default());
        let mut step = step;
        let task = tokio::spawn(async move {
            let mut rows = Vec::new();
            // The last `/varz` counters read, and when their answer arrived.
            let mut last: Option<(Instant, Traffic)> = None;
            loop {
                let info = *step.borrow_and_update();
                let _ = sampled.send(info.index);
                // Read as the sample begins, when the step-change wait put it at the
                // step's boundary (the HTTP answers may take longer).
                let cpu = process.as_ref().and_then(BrokerProcess::cpu_secs);
                let own_cpu = super::cpu::process_cpu_secs(std::process::id());
                let roster = fleet.as_ref().map(|f| f.roster.as_ref());
                let (mut row, traffic, connected) =
                    sample(&monitor, &info.label(), run_start, roster).await;
                if let Some(fleet) = &fleet {
                    fleet.fill(&mut row, connected);
                    let _ = overlap.send(Overlap {
                        stale_connections: row.stale_connections,
                        double_held_consumers: row.double_held_consumers,
                    });
                }
                row.cpu_secs = cpu.map(|(_, s)| (s * 1000.0).round() / 1000.0);
                row.pid = cpu.map(|(pid, _)| pid);
                row.fleetsim_cpu_secs = own_cpu.map(|s| (s * 1000.0).round() / 1000.0);
                if let Some((at, now)) = traffic {
                    let rates = last.as_ref().and_then(|(then, earlier)| {
                        now.rates_since(earlier, at.duration_since(*then).as_secs_f64())
                    });
                    row.set_traffic(&now, rates);
                    last = Some((at, now));
                }
                rows.push(row);
                let wait = if info.is_herd {
                    HERD_INTERVAL
                } else {
                    INTERVAL
                };
                // A new step is sampled at once: a herd's first instants matter most.
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    changed = step.changed() => {
                        // The runner is gone: no more step changes to wait for.
                        if changed.is_err() {
                            tokio::select! {
                                _ = tokio::time::sleep(wait) => {}
                                _ = stopped.changed() => break,
                            }
                        }
                    }
                    _ = stopped.changed() => break,
                }
            }
            rows
        });
        BrokerSampler {
            stop,
            task,
            sampled: sampled_rx,
            overlap: overlap_rx,
        }
    }

    /// The last sample's stale connections and double-held consumers, for the time
    /// series' rows.
    pub fn overlap(&self) -> watch::Receiver<Overlap> {
        self.overlap.clone()
    }

    /// Told the index of each step as its first sample begins: the runner waits for it
    /// (see [`wait_sampled`]), so a step shorter than one sample (an all-at-once `start`
    /// lasts microseconds) still gets its sample instead of being skipped while the
    /// previous step's sample is in flight.
    pub fn sampled(&self) -> watch::Receiver<usize> {
        self.sampled.clone()
    }

    pub async fn finish(self) -> Vec<BrokerSample> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// Waits until the broker sampler has begun a sample of step `index` (or a later one),
/// for at most a little over one sample's answer time, so a broker that does not answer
/// delays a step by that much at most.
pub async fn wait_sampled(sampled: &mut watch::Receiver<usize>, index: usize) {
    let within = ANSWER_WITHIN + Duration::from_millis(500);
    let _ = tokio::time::timeout(within, sampled.wait_for(|&i| i >= index)).await;
}

/// One row, and the traffic counters it read with the instant their answer arrived
/// (`None` when `/varz` did not answer or lacked them), and the agents `roster` had
/// connected at that instant (0 without one).
async fn sample(
    monitor: &str,
    step: &str,
    run_start: Instant,
    roster: Option<&Roster>,
) -> (BrokerSample, Option<(Instant, Traffic)>, u64) {
    let t_secs = (run_start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    // Each answer is parsed into the few figures the row keeps (serde skips the rest
    // without building it): a sample allocates its row and nothing else of note.
    let (healthz, (varz, varz_at, connected), jsz) = tokio::join!(
        get_as::<Healthz>(monitor, "/healthz", ANSWER_WITHIN),
        async {
            let varz = get_as::<Varz>(monitor, "/varz", ANSWER_WITHIN).await;
            // The agents' side of `stale_connections`, read beside the broker's count.
            let connected = roster.map_or(0, |r| r.connected() as u64);
            (varz, Instant::now(), connected)
        },
        get_as::<Jsz>(monitor, "/jsz", ANSWER_WITHIN),
    );
    let mut traffic = None;
    let mut row = BrokerSample {
        t_secs,
        step: step.to_string(),
        ..Default::default()
    };
    let mut errors = Vec::new();
    match healthz {
        Ok(h) => row.healthz = h.error.or(h.status).unwrap_or_default(),
        Err(e) => errors.push(e.to_string()),
    }
    match varz {
        Ok(v) => {
            traffic = v.traffic().map(|t| (varz_at, t));
            row.connections = v.connections;
            row.total_connections = v.total_connections;
            row.slow_consumers = v.slow_consumers;
            row.mem_bytes = v.mem;
            row.cpu_percent = v.cpu;
        }
        Err(e) => errors.push(e.to_string()),
    }
    match jsz {
        Ok(j) => {
            row.streams = j.streams;
            row.consumers = j.consumers;
            row.api_total = j.api.total;
            row.api_errors = j.api.errors;
            row.api_inflight = Some(j.api.inflight.unwrap_or(0));
        }
        Err(e) => errors.push(e.to_string()),
    }
    row.ok = errors.is_empty();
    row.error = errors.join("; ");
    (row, traffic, connected)
}
