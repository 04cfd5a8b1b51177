//! The broker's own view of a run: its monitoring endpoints sampled on the run's clock.
//!
//! Every second (every 250 ms while a herd step runs, when things move fast) the sampler
//! reads `/healthz`, `/varz` and `/jsz` and keeps one row for `broker.csv`. A broker that
//! does not answer (it is restarting, or too busy) is a recorded gap, a row with
//! `ok = false` and the error, never a failed run: the gap is itself a finding.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::monitor::get_json;
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
            _ => None,
        }
    }
}

/// A sampler running in the background; [`BrokerSampler::finish`] returns the rows.
pub struct BrokerSampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<Vec<BrokerSample>>,
    /// The index of the step whose sample began last.
    sampled: watch::Receiver<usize>,
}

impl BrokerSampler {
    pub fn start(monitor: String, step: watch::Receiver<StepInfo>, run_start: Instant) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let (sampled, sampled_rx) = watch::channel(0);
        let mut step = step;
        let task = tokio::spawn(async move {
            let mut rows = Vec::new();
            loop {
                let info = *step.borrow_and_update();
                let _ = sampled.send(info.index);
                rows.push(sample(&monitor, &info.label(), run_start).await);
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
        }
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

async fn sample(monitor: &str, step: &str, run_start: Instant) -> BrokerSample {
    let t_secs = (run_start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    let (healthz, varz, jsz) = tokio::join!(
        get_json(monitor, "/healthz", ANSWER_WITHIN),
        get_json(monitor, "/varz", ANSWER_WITHIN),
        get_json(monitor, "/jsz", ANSWER_WITHIN),
    );
    let mut row = BrokerSample {
        t_secs,
        step: step.to_string(),
        ..Default::default()
    };
    let mut errors = Vec::new();
    match healthz {
        Ok(h) => {
            row.healthz = h
                .get("error")
                .or_else(|| h.get("status"))
                .and_then(|s| s.as_str())
                .unwrap_or_default()
                .to_string();
        }
        Err(e) => errors.push(e.to_string()),
    }
    let u = |v: &serde_json::Value, ptr: &str| v.pointer(ptr).and_then(|x| x.as_u64());
    match varz {
        Ok(v) => {
            row.connections = u(&v, "/connections");
            row.total_connections = u(&v, "/total_connections");
            row.slow_consumers = u(&v, "/slow_consumers");
            row.mem_bytes = u(&v, "/mem");
            row.cpu_percent = v.pointer("/cpu").and_then(|x| x.as_f64());
        }
        Err(e) => errors.push(e.to_string()),
    }
    match jsz {
        Ok(j) => {
            row.streams = u(&j, "/streams");
            row.consumers = u(&j, "/consumers");
            row.api_total = u(&j, "/api/total");
            row.api_errors = u(&j, "/api/errors");
            row.api_inflight = Some(u(&j, "/api/inflight").unwrap_or(0));
        }
        Err(e) => errors.push(e.to_string()),
    }
    row.ok = errors.is_empty();
    row.error = errors.join("; ");
    row
}
