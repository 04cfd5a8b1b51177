//! Executes a plan: broker up, buckets provisioned, fleet started, steps run in order,
//! results written, broker down.
//!
//! The run owns every resource it starts and releases them on every path out: a failing
//! step, an interrupted run (the `shutdown` future, Ctrl-C in the binary) or an error all
//! end in the same epilogue, which settles every agent (ready or failed with a reason),
//! stops the fleet and the embedded broker, and writes what was measured, marked
//! `partial` when the run did not reach its end.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

use crate::agent::AgentContext;
use crate::broker::monitor;
use crate::broker::{BrokerError, BrokerInfo, EmbeddedBroker, EmbeddedOptions, redact_url};
use crate::fleet::Fleet;
use crate::host;
use crate::metrics::Metrics;
use crate::plan::{Plan, StepAction};
use crate::provision::{self, group_id, pc_id};
use crate::results::{self, AgentFinal, FleetFigures, Outcome, RunRecord, RunStatus, StepRecord};

/// How often a long wait logs where the fleet is.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How long stopping the fleet may take before its tasks are aborted.
/// One socket per agent (the fault proxy, when in-process, adds two more per agent).
const FDS_PER_AGENT: u64 = 1;
const FLEET_STOP_WITHIN: Duration = Duration::from_secs(30);

/// Where a run reads its scenario from and writes its results to.
pub struct RunOptions {
    pub scenario_path: Option<PathBuf>,
    pub scenario_text: String,
    /// Parent of the run directory (`results/` by default).
    pub results_base: PathBuf,
}

/// What a finished run produced.
#[derive(Debug)]
pub struct RunReport {
    pub dir: PathBuf,
    pub status: RunStatus,
    pub reasons: Vec<String>,
    pub summary: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("provisioning the broker failed: {0}")]
    Provision(#[from] provision::ProvisionError),
    /// The host cannot hold the fleet (open files, ports): nothing was connected.
    #[error("{0}")]
    Environment(String),
    #[error("writing results failed: {0}")]
    Results(#[from] results::ResultsError),
}

/// The broker a run talks to.
enum Broker {
    Embedded(Box<EmbeddedBroker>),
    External {
        url: String,
        monitor: Option<String>,
    },
}

impl Broker {
    async fn start(plan: &Plan) -> Result<Broker, BrokerError> {
        match &plan.broker.url {
            Some(url) => Ok(Broker::External {
                url: url.clone(),
                monitor: plan.broker.monitor_url.clone(),
            }),
            None => Ok(Broker::Embedded(Box::new(
                EmbeddedBroker::start(EmbeddedOptions {
                    max_connections: plan.broker.max_connections,
                    request_queue_limit: plan.broker.request_queue_limit,
                    default_max_consumers: plan.broker.default_max_consumers,
                })
                .await?,
            ))),
        }
    }

    fn url(&self) -> String {
        match self {
            Broker::Embedded(b) => b.url(),
            Broker::External { url, .. } => url.clone(),
        }
    }

    fn monitor_url(&self) -> Option<String> {
        match self {
            Broker::Embedded(b) => Some(b.monitor_url()),
            Broker::External { monitor, .. } => monitor.clone(),
        }
    }

    async fn info(&self, client: &async_nats::Client) -> BrokerInfo {
        match self {
            Broker::Embedded(b) => b.info(),
            Broker::External { url, monitor } => BrokerInfo {
                kind: "external",
                url: redact_url(url),
                monitor_url: monitor.clone(),
                version: Some(client.server_info().version),
                limits: match monitor {
                    Some(m) => external_limits(m).await,
                    None => Default::default(),
                },
            },
        }
    }

    async fn stop(&mut self) {
        if let Broker::Embedded(b) = self
            && let Err(e) = b.stop(false).await
        {
            warn!(error = %e, "stopping the embedded broker");
        }
    }
}

async fn external_limits(monitor: &str) -> crate::broker::BrokerLimits {
    let Ok(varz) = monitor::get_json(monitor, "/varz", Duration::from_secs(5)).await else {
        return Default::default();
    };
    crate::broker::BrokerLimits {
        max_connections: varz.get("max_connections").and_then(|v| v.as_u64()),
        request_queue_limit: None,
        default_max_consumers: varz
            .pointer("/jetstream/limits/default_max_consumers")
            .and_then(|v| v.as_i64()),
    }
}

/// Runs `plan` to the end, or until `shutdown` resolves (then the results are `partial`).
pub async fn run(
    plan: Plan,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, RunError> {
    let started_at = SystemTime::now();
    let mut broker = Broker::start(&plan).await?;
    let outcome = drive(&plan, &options, &mut broker, started_at, shutdown).await;
    broker.stop().await;
    outcome
}

/// Everything between "broker up" and "broker down".
async fn drive(
    plan: &Plan,
    options: &RunOptions,
    broker: &mut Broker,
    started_at: SystemTime,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, RunError> {
    let url = broker.url();
    info!(broker = %redact_url(&url), agents = plan.fleet.agents, profile = %plan.profile.name, "run starting");
    let control = async_nats::ConnectOptions::new()
        .name("fleetsim-control")
        .request_timeout(Some(Duration::from_secs(30)))
        .connect(url.as_str())
        .await
        .map_err(|e| BrokerError::Connect {
            url: redact_url(&url),
            message: e.to_string(),
        })?;
    let broker_info = broker.info(&control).await;
    let js = async_nats::jetstream::new(control.clone());
    let provisioned = provision::provision(&js, plan).await?;
    info!(
        keys = provisioned.keys_seeded,
        secs = format!("{:.2}", provisioned.seconds),
        "provisioned"
    );

    check_host(plan)?;
    let metrics = Arc::new(Metrics::new());
    let ctx = Arc::new(AgentContext::new(
        url,
        plan.fleet.clone(),
        plan.profile.clone(),
        plan.seed,
        metrics.clone(),
    ));
    let mut fleet = Fleet::new(ctx.clone());
    let mut steps_done = Vec::new();
    let mut reasons = Vec::new();
    let monitor_url = broker.monitor_url();

    let interrupted = {
        let steps = run_steps(
            plan,
            &mut fleet,
            &metrics,
            monitor_url.as_deref(),
            &mut steps_done,
            &mut reasons,
        );
        tokio::pin!(steps);
        tokio::pin!(shutdown);
        tokio::select! {
            _ = &mut steps => false,
            _ = &mut shutdown => true,
        }
    };
    if interrupted {
        warn!("run interrupted: stopping the fleet and writing what was measured");
        reasons.push("interrupted before the last step finished".to_string());
    }

    // Epilogue: every agent ends ready or failed, then the fleet stops.
    let why = if interrupted {
        "run interrupted"
    } else {
        "run ended"
    };
    let unfinished = fleet.roster().fail_unsettled(why);
    let counts = fleet.roster().counts();
    let agents: Vec<AgentFinal> = (0..plan.fleet.agents)
        .map(|i| {
            let cell = fleet.roster().cell(i);
            AgentFinal {
                pc: pc_id(i),
                group: group_id(i, plan.fleet.groups),
                state: cell.state().name().to_string(),
                reason: cell.reason(),
                connects: cell.connects(),
            }
        })
        .collect();
    fleet.shutdown(FLEET_STOP_WITHIN).await;
    if counts.failed > 0 && !interrupted {
        reasons.push(format!(
            "{} of {} agents failed",
            counts.failed, plan.fleet.agents
        ));
    }
    let status = if interrupted {
        RunStatus::Partial
    } else if reasons.is_empty() {
        RunStatus::Ok
    } else {
        RunStatus::Failed
    };

    let mut phases = vec!["0:setup".to_string()];
    phases.extend(plan.steps.iter().map(|s| s.label()));
    let dir = results::create_run_dir(&options.results_base, &plan.name, started_at)?;
    let record = RunRecord {
        plan,
        scenario_path: options.scenario_path.as_deref(),
        scenario_text: &options.scenario_text,
        broker: Some(broker_info),
        started_at,
        ended_at: SystemTime::now(),
        outcome: Outcome {
            status,
            reasons: reasons.clone(),
        },
        phases,
        agents,
        snapshot: metrics.snapshot(),
        fleet: FleetFigures {
            started: counts.started(),
            ready: counts.ready,
            failed: counts.failed,
            unfinished,
        },
        steps: steps_done,
        process: crate::host::process_usage(),
    };
    results::write_run(&dir, &record)?;
    let summary = results::render_summary(&record);
    Ok(RunReport {
        dir,
        status,
        reasons,
        summary,
    })
}

/// Raises the open-files limit and refuses, before any agent connects, a fleet that
/// cannot fit in it.
fn check_host(plan: &Plan) -> Result<(), RunError> {
    let (soft, hard) = host::raise_nofile_limit()
        .map_err(|e| RunError::Environment(format!("reading the open-files limit failed: {e}")))?;
    if soft < hard {
        warn!(
            soft,
            hard, "could not raise the open-files soft limit to the hard limit"
        );
    }
    host::check_fd_budget(plan.fleet.agents, FDS_PER_AGENT, soft).map_err(RunError::Environment)
}

/// Runs the steps in order, recording each one's timing and the broker's counts after it.
async fn run_steps(
    plan: &Plan,
    fleet: &mut Fleet,
    metrics: &Metrics,
    monitor_url: Option<&str>,
    done: &mut Vec<StepRecord>,
    reasons: &mut Vec<String>,
) {
    let run_start = Instant::now();
    let mut start_began: Option<Instant> = None;
    for step in &plan.steps {
        let label = step.label();
        let began = Instant::now();
        info!(step = %label, "step begins");
        match &step.action {
            StepAction::Start { pacing } => {
                metrics.set_phase(step.index);
                start_began = Some(began);
                fleet.start(pacing).await;
            }
            StepAction::WaitReady { timeout } => {
                let deadline = began + *timeout;
                let settled = wait_with_progress(fleet, &label, deadline).await;
                let counts = fleet.roster().counts();
                if !settled {
                    let stuck = counts.started() - counts.settled();
                    reasons.push(format!(
                        "step {label}: {stuck} agents not ready within {timeout:?}"
                    ));
                } else if counts.failed == 0
                    && let Some(t0) = start_began
                {
                    let all_ready = metrics.metric("fleet.all_ready");
                    metrics.record(0, all_ready, t0.elapsed());
                }
            }
            StepAction::Herd { .. } => todo!("herd steps"),
            StepAction::Hold { duration } => {
                let until = began + *duration;
                while Instant::now() < until {
                    let next = (Instant::now() + PROGRESS_EVERY).min(until);
                    tokio::time::sleep_until(next.into()).await;
                    log_progress(fleet, &label, began);
                }
            }
        }
        let broker = match monitor_url {
            Some(m) => match monitor::broker_counts(m).await {
                Ok(c) => Some(c),
                Err(e) => {
                    warn!(error = %e, "broker sample after step failed");
                    None
                }
            },
            None => None,
        };
        let counts = fleet.roster().counts();
        done.push(StepRecord {
            label: label.clone(),
            began_secs: (began - run_start).as_secs_f64(),
            ended_secs: run_start.elapsed().as_secs_f64(),
            agents_ready: counts.ready,
            agents_failed: counts.failed,
            broker: broker.unwrap_or_default(),
            broker_sampled: broker.is_some(),
        });
        info!(step = %label, ready = counts.ready, failed = counts.failed, secs = format!("{:.2}", began.elapsed().as_secs_f64()), "step ends");
    }
}

async fn wait_with_progress(fleet: &Fleet, label: &str, deadline: Instant) -> bool {
    let began = Instant::now();
    loop {
        let slice = (Instant::now() + PROGRESS_EVERY).min(deadline);
        let (_, settled) = fleet.roster().wait_settled(slice).await;
        if settled {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        log_progress(fleet, label, began);
    }
}

fn log_progress(fleet: &Fleet, label: &str, began: Instant) {
    let c = fleet.roster().counts();
    info!(
        step = %label,
        ready = c.ready,
        failed = c.failed,
        on_the_way = c.connecting + c.opening + c.syncing,
        pending = c.pending,
        elapsed = format!("{:.1}s", began.elapsed().as_secs_f64()),
        "progress"
    );
}

/// Default results directory: `results/` under the working directory.
pub fn default_results_base() -> PathBuf {
    Path::new("results").to_path_buf()
}
