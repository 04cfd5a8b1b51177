//! The end of every run, on every path out: what ran beside the steps stopped, each
//! agent's final state, and the run directory written (then the thresholds and the
//! report over it). Also the run directory itself, claimed before anything runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::RunOptions;
use crate::broker::Broker;
use crate::broker::sampler::{BrokerSample, BrokerSampler, FleetOnBroker};
use crate::error::RunError;
use crate::fleet::{Fleet, Roster};
use crate::plan::{Observe, Plan};
use crate::progress::Progress;
use crate::provision::{group_id, pc_id};
use crate::results::{self, AgentFinal, RunRecord};
use crate::step::StepInfo;
use crate::thresholds;
use crate::timeseries::{ApiTap, FleetGauges, Sample, Sampler};

/// The run directory, claimed before the broker starts: a results directory that
/// cannot be written stops the run before anything is measured and lost.
pub(super) struct ClaimedDir {
    pub path: PathBuf,
    /// This run made it (so may remove it again when nothing was measured).
    created: bool,
}

impl ClaimedDir {
    pub fn claim(
        plan: &Plan,
        options: &RunOptions,
        started_at: SystemTime,
    ) -> Result<Self, RunError> {
        let explicit = options.run_dir.as_deref();
        let created = explicit.is_none_or(|dir| !dir.exists());
        let path = results::open_run_dir(explicit, &options.results_base, &plan.name, started_at)?;
        Ok(ClaimedDir { path, created })
    }

    /// Nothing was measured: the directory this run made goes again, if still empty.
    pub fn discard(self) {
        if self.created {
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

/// What watches the run beside the steps: the progress line, the time series, the
/// broker's monitoring samples, and the system-account listener.
/// The API tap and the system-account listener ([`ApiTap::listen`]), if any.
pub(super) type ApiListeners = (
    Option<Arc<ApiTap>>,
    Option<(async_nats::Client, JoinHandle<()>)>,
);

pub(super) struct Observers {
    progress: Option<Progress>,
    sampler: Option<Sampler>,
    broker_sampler: Option<BrokerSampler>,
    system: Option<(async_nats::Client, JoinHandle<()>)>,
}

impl Observers {
    /// Starts watching `fleet` (and the broker, when it has a monitoring endpoint)
    /// through the step broadcast `step`, on the run's clock `run_start`.
    pub fn start(
        fleet: &Fleet,
        broker: &Broker,
        fleet_on_broker: Option<FleetOnBroker>,
        step: watch::Receiver<StepInfo>,
        (tap, system): ApiListeners,
        run_start: Instant,
        observe: &Observe,
    ) -> Self {
        let gauges = FleetGauges {
            roster: fleet.roster().clone(),
            herd: fleet.herd().clone(),
            creates: fleet.creates().clone(),
            metrics: fleet.metrics().clone(),
        };
        let broker_sampler = broker.monitor_url().filter(|_| observe.broker).map(|m| {
            BrokerSampler::start(
                m,
                broker.process(),
                fleet_on_broker,
                step.clone(),
                run_start,
            )
        });
        let overlap = broker_sampler.as_ref().map(BrokerSampler::overlap);
        Observers {
            progress: observe
                .progress
                .then(|| Progress::start(fleet.roster().clone(), step.clone())),
            sampler: observe.timeseries.then(|| {
                Sampler::start(gauges, tap, broker.monitor_url(), overlap, step, run_start)
            }),
            broker_sampler,
            system,
        }
    }

    /// What the step runner waits on so every step gets a broker sample
    /// ([`crate::broker::sampler::wait_sampled`]); `None` without a monitoring endpoint.
    pub fn broker_sampled(&self) -> Option<watch::Receiver<usize>> {
        self.broker_sampler.as_ref().map(BrokerSampler::sampled)
    }

    /// Stops every observer; returns the time series and the broker's samples.
    pub async fn stop(self) -> (Vec<Sample>, Vec<BrokerSample>) {
        if let Some(progress) = self.progress {
            progress.finish().await;
        }
        let timeseries = match self.sampler {
            Some(sampler) => sampler.finish().await,
            None => Vec::new(),
        };
        let broker_samples = match self.broker_sampler {
            Some(s) => s.finish().await,
            None => Vec::new(),
        };
        if let Some((_client, listener)) = self.system {
            listener.abort();
        }
        (timeseries, broker_samples)
    }
}

/// Every agent's final state (the epilogue has settled them: ready or failed).
pub(super) fn agent_finals(plan: &Plan, roster: &Roster) -> Vec<AgentFinal> {
    (0..plan.fleet.agents)
        .map(|i| {
            let cell = roster.cell(i);
            AgentFinal {
                pc: pc_id(i),
                group: group_id(i, plan.fleet.groups),
                state: cell.state().name().to_string(),
                reason: cell.reason(),
                connects: cell.connects(),
                last_resync: cell.last_resync(),
                core_received: cell.core_received(),
                published: cell.published(),
            }
        })
        .collect()
}

/// Writes the run directory, then the thresholds and the report over it. Returns the
/// summary to print and the thresholds' outcomes.
pub(super) fn write_results(
    dir: &Path,
    record: &RunRecord,
) -> Result<(String, Vec<thresholds::CheckOutcome>), RunError> {
    results::write_run(dir, record)?;
    let mut summary = results::render_summary(record);
    // Thresholds read the files just written, so they judge exactly what the directory
    // shows; thresholds.csv comes after the manifest.
    let checks = &record.plan.thresholds.checks;
    let outcomes = if checks.is_empty() {
        Vec::new()
    } else {
        let outcomes = thresholds::evaluate(dir, checks);
        thresholds::write_file(dir, &outcomes)?;
        summary.push_str(&thresholds::render(&outcomes));
        outcomes
    };
    crate::report::write_report_line(dir, &mut summary);
    Ok((summary, outcomes))
}
