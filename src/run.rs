//! Executes a plan: the run directory claimed, broker up, buckets provisioned, fleet
//! started, steps run in order, results written, broker down.
//!
//! This file only sequences; every part is owned elsewhere: the broker kinds in
//! [`crate::broker`], the fault proxy in [`crate::proxy`], the fleet in `fleet`, each
//! step kind by its room (`herd::run_step`, `writes::run_step`), the files in
//! [`crate::results`], the end of every run in `run/epilogue.rs`.
//!
//! The run owns every resource it starts and releases them on every path out: a failing
//! step, an interrupted run (the `shutdown` future, Ctrl-C in the binary) or an error all
//! end in the same epilogue, which settles every agent (ready or failed with a reason),
//! stops the fleet and the embedded broker, and writes what was measured, marked
//! `partial` when the run did not reach its end. The run directory is created before
//! the broker starts, so one that cannot be written stops the run before anything runs.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::broker::audit::{ApiAudit, ApiRequest};
use crate::broker::monitor;
use crate::broker::sampler::FleetOnBroker;
use crate::broker::{Broker, Credentials, redact_url};
use crate::churn::{self, ChurnRecord};
use crate::fleet::agent::Connection;
use crate::fleet::{self, Fleet};
use crate::herd::{self, HerdRecord, Triggers};
use crate::metrics::{Metrics, Snapshot};
use crate::plan::{Plan, StepAction};
use crate::provision;
use crate::proxy::AgentProxy;
use crate::results::rows::ApiRow;
use crate::results::{Fixed3, FleetFigures, RunOutcome, RunRecord, RunStatus, StepRecord};
use crate::step::{StepEnv, StepInfo};
use crate::timeseries::ApiTap;
use crate::writes::{self, Target, WriteSteps};

pub use crate::error::{RunError, RunErrorKind};

mod epilogue;

use epilogue::{ClaimedDir, Observers};

/// How long stopping the fleet may take before its tasks are aborted.
const FLEET_STOP_WITHIN: Duration = Duration::from_secs(30);

/// Where a run reads its scenario from and writes its results to.
pub struct RunOptions {
    pub scenario_path: Option<PathBuf>,
    pub scenario_text: String,
    /// Parent of the run directory (`results/` by default).
    pub results_base: PathBuf,
    /// Write into exactly this directory (created if missing) instead of a new
    /// timestamped one under `results_base`: an A/B run places each of its runs.
    pub run_dir: Option<PathBuf>,
    /// The fleetsim executable started as `fleetsim proxy` with `[fleet] proxy =
    /// "process"`; `None`: this process's own executable (a test binary passes the
    /// fleetsim binary).
    pub proxy_program: Option<PathBuf>,
}

/// What a finished run produced.
#[derive(Debug)]
pub struct RunReport {
    pub dir: PathBuf,
    pub status: RunStatus,
    pub reasons: Vec<String>,
    pub summary: String,
    /// Everything measured, for pooling across the repeats of an A/B variant.
    pub snapshot: Snapshot,
    /// Phase labels of the snapshot (`0:setup`, then one per step).
    pub phases: Vec<String>,
    /// Consumers on the broker after provisioning, before any agent started: 0 when the
    /// run began from a fresh broker state (`None`: no monitoring endpoint).
    pub consumers_at_start: Option<u64>,
    /// The plan's `[thresholds]` checks, evaluated on the results (also in
    /// `thresholds.csv`); empty when the scenario has none.
    pub thresholds: Vec<crate::thresholds::CheckOutcome>,
    /// The `fleetsim proxy` child's process id, with `[fleet] proxy = "process"`; it has
    /// exited and been waited for when the run returns.
    pub proxy_pid: Option<u32>,
}

/// Runs `plan` to the end, or until `shutdown` resolves (then the results are `partial`).
pub async fn run(
    plan: Plan,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, RunError> {
    // Listened to from the first instant (polled first below): a signal listener
    // registered later never sees an earlier signal, so a Ctrl-C while the broker starts
    // would be swallowed. One during provisioning is then seen when the steps begin.
    tokio::pin!(shutdown);
    let started_at = SystemTime::now();
    // Before anything runs: results that cannot be written would lose the whole run.
    let dir = ClaimedDir::claim(&plan, &options, started_at)?;
    let outcome = async {
        // A fleet that cannot fit is refused before the broker starts.
        let local_addresses = crate::host::check_fleet_fits(&plan)?;
        // An interrupted start drops the half-started broker, which kills its process.
        let mut broker = tokio::select! {
            biased;
            () = &mut shutdown => return Err(RunError::interrupted()),
            broker = Broker::start(&plan) => broker?,
        };
        let outcome = drive(
            &plan,
            &options,
            &mut broker,
            &dir.path,
            started_at,
            local_addresses,
            &mut shutdown,
        )
        .await;
        broker.stop().await;
        outcome
    }
    .await;
    if outcome.is_err() {
        dir.discard();
    }
    outcome
}

/// Everything between "broker up" and "broker down".
async fn drive(
    plan: &Plan,
    options: &RunOptions,
    broker: &mut Broker,
    dir: &Path,
    started_at: SystemTime,
    local_addresses: u8,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, RunError> {
    let url = broker.url();
    info!(broker = %redact_url(&url), agents = plan.fleet.agents, profile = %plan.profile.name, "run starting");
    let control = broker.control_client().await?;
    let mut broker_info = broker.info(&control).await;
    let js = async_nats::jetstream::new(control.clone());
    let provisioned = provision::provision(&js, plan).await?;
    info!(
        keys = provisioned.keys_seeded,
        secs = format!("{:.2}", provisioned.seconds),
        "provisioned"
    );
    let consumers_at_start = broker.consumers().await;
    // The API tap's subscriptions are an observer too (`[observe] api_tap`).
    let listeners = if plan.observe.api_tap {
        ApiTap::listen(&control, broker.system_client().await).await
    } else {
        (None, None)
    };
    broker_info.api_limit_reached_counted = listeners.1.is_some();
    let proxy = AgentProxy::start(plan, &url, options.proxy_program.as_deref()).await?;
    let proxy_pid = proxy.as_ref().and_then(AgentProxy::pid);
    // After everything that can fail before the fleet: a capture left on an external
    // broker would keep recording its account's requests.
    let audit = if plan.broker.record_api {
        Some(ApiAudit::start(&js).await?)
    } else {
        None
    };
    let agent_url = proxy.as_ref().map_or_else(|| url.clone(), AgentProxy::url);

    let metrics = Arc::new(Metrics::new());
    let connection = Connection {
        // Dialled without userinfo: the credentials go as options.
        url: Credentials::strip(&agent_url),
        credentials: broker.credentials(),
        local_addresses,
    };
    let mut fleet = Fleet::new(plan, connection, metrics.clone());
    let roster = fleet.roster().clone();
    // What the broker holds before any agent connects, so its samples can say what it
    // holds that no agent does (stale connections, double-held consumers). Its consumers
    // are still those counted after provisioning: nothing since (the advisory tap's
    // subscriptions, the proxy, the audit's capture stream) makes one.
    let fleet_on_broker = if plan.observe.broker {
        match (broker.connections().await, consumers_at_start) {
            (Some(connections_before), Some(consumers_before)) => Some(FleetOnBroker {
                roster: roster.clone(),
                connections_before,
                consumers_expected: consumers_before
                    + (plan.fleet.agents * plan.profile.consumers.len()) as u64,
            }),
            _ => None,
        }
    } else {
        None
    };
    let run_start = Instant::now();
    let run_start_wall = SystemTime::now();
    let (step_tx, step_rx) = watch::channel(StepInfo::SETUP);
    let observers = Observers::start(
        &fleet,
        broker,
        fleet_on_broker,
        step_rx,
        listeners,
        run_start,
        &plan.observe,
    );
    let mut env = StepEnv {
        plan,
        js: &js,
        metrics: &metrics,
        roster: &roster,
        run_start,
        reasons: Vec::new(),
    };
    let mut records = Records {
        steps: Vec::new(),
        herds: Vec::new(),
        churns: Vec::new(),
        writes: WriteSteps::new(fleet.ledgers().clone()),
    };
    let interrupted = {
        let steps = run_steps(
            &mut env,
            &mut records,
            &mut fleet,
            broker,
            proxy.as_ref(),
            &step_tx,
            observers.broker_sampled(),
        );
        tokio::pin!(steps);
        tokio::pin!(shutdown);
        tokio::select! {
            _ = &mut steps => false,
            _ = &mut shutdown => true,
        }
    };
    let mut reasons = std::mem::take(&mut env.reasons);
    if interrupted {
        warn!("run interrupted: stopping the fleet and writing what was measured");
        reasons.push("interrupted before the last step finished".to_string());
    }
    // Before the fleet stops: a background write that finished keeps its records.
    let writes = records.writes.into_done(&mut reasons);

    // Epilogue: every agent ends ready or failed, then the fleet stops.
    let why = if interrupted {
        "run interrupted"
    } else {
        "run ended"
    };
    let unfinished = roster.fail_unsettled(why);
    let mut phases = vec![StepInfo::SETUP.label()];
    phases.extend(plan.steps.iter().map(|s| s.label()));
    let counts = roster.counts();
    let agents = epilogue::agent_finals(plan, &roster);
    let (timeseries, broker_samples) = observers.stop().await;
    fleet.shutdown(FLEET_STOP_WITHIN).await;
    // The agents have stopped: the capture holds every request they made.
    let api = match audit {
        Some(audit) => match audit.collect().await {
            Ok(requests) => Some(api_rows(&requests, run_start_wall, &records.steps, &phases)),
            Err(e) => {
                warn!("{e}: api.csv not written");
                reasons.push(format!("{e}: api.csv not written"));
                None
            }
        },
        None => None,
    };
    if let Some(proxy) = proxy {
        proxy.stop().await;
    }
    if counts.failed > 0 && !interrupted {
        reasons.push(format!(
            "{} of {} agents failed",
            counts.failed, plan.fleet.agents
        ));
    }
    let status = RunStatus::of(interrupted, &reasons);

    let record = RunRecord {
        plan,
        scenario_path: options.scenario_path.as_deref(),
        scenario_text: &options.scenario_text,
        broker: Some(broker_info),
        started_at,
        ended_at: SystemTime::now(),
        outcome: RunOutcome {
            status,
            reasons: reasons.clone(),
        },
        phases: phases.clone(),
        agents,
        snapshot: metrics.snapshot(),
        fleet: FleetFigures {
            started: counts.started(),
            ready: counts.ready,
            failed: counts.failed,
            unfinished,
        },
        steps: records.steps,
        process: crate::host::process_usage(),
        timeseries,
        herds: records.herds,
        churns: records.churns,
        writes,
        broker_samples,
        api,
    };
    let (summary, thresholds) = epilogue::write_results(dir, &record)?;
    Ok(RunReport {
        dir: dir.to_path_buf(),
        status,
        reasons,
        summary,
        snapshot: record.snapshot,
        phases,
        consumers_at_start,
        thresholds,
        proxy_pid,
    })
}

/// What the steps recorded, kept when the run is interrupted midway.
struct Records {
    steps: Vec<StepRecord>,
    herds: Vec<HerdRecord>,
    churns: Vec<ChurnRecord>,
    writes: WriteSteps,
}

/// Runs the steps in order, each by the room that owns its kind, recording each one's
/// timing and the broker's counts after it.
async fn run_steps(
    env: &mut StepEnv<'_>,
    records: &mut Records,
    fleet: &mut Fleet,
    broker: &mut Broker,
    proxy: Option<&AgentProxy>,
    step_tx: &watch::Sender<StepInfo>,
    mut broker_sampled: Option<watch::Receiver<usize>>,
) {
    let mut start_began: Option<Instant> = None;
    let mut step_counts = monitor::StepCounts::default();
    for step in &env.plan.steps {
        let label = step.label();
        let _ = step_tx.send(StepInfo::of(step));
        // Every step gets a broker sample, however short it is (thresholds such as
        // `broker[start].api_errors` read them); at most one sample's answer time.
        if let Some(sampled) = broker_sampled.as_mut() {
            crate::broker::sampler::wait_sampled(sampled, step.index).await;
        }
        let began = Instant::now();
        info!(step = %label, "step begins");
        match &step.action {
            StepAction::Start { pacing } => {
                env.metrics.set_phase(step.index);
                start_began = Some(began);
                fleet.start(pacing).await;
            }
            StepAction::WaitReady { timeout } => {
                let deadline = began + *timeout;
                let all_ready = &mut start_began;
                if let Some(stuck) =
                    fleet::wait_ready(env.roster, env.metrics, deadline, all_ready).await
                {
                    env.reasons.push(format!(
                        "step {label}: {stuck} agents not ready within {timeout:?}"
                    ));
                }
            }
            StepAction::Hold { duration } => {
                tokio::time::sleep_until((began + *duration).into()).await;
            }
            StepAction::Write { target, load } => {
                env.metrics.set_phase(step.index);
                let target = Target::Kv(target.clone());
                writes::run_step(env, &mut records.writes, step.index, target, *load).await;
            }
            StepAction::Exec { target, load } => {
                env.metrics.set_phase(step.index);
                let target = Target::Exec(*target);
                writes::run_step(env, &mut records.writes, step.index, target, *load).await;
            }
            StepAction::DropConsumer { agent, consumer } => {
                let consumers = &env.plan.profile.consumers;
                let slot = consumers
                    .iter()
                    .position(|c| &c.name == consumer)
                    .expect("the scenario parser checks consumer names");
                fleet.control().drop_consumer(*agent, slot);
            }
            StepAction::Churn {
                duration,
                percent_per_min,
                downtime,
                mode,
            } => {
                env.metrics.set_phase(step.index);
                let proxy = proxy.expect("the scenario parser requires a proxy for churn");
                let per_sec = percent_per_min / 100.0 * env.plan.fleet.agents as f64 / 60.0;
                let shape = (per_sec, *duration, *downtime, *mode);
                let record = churn::run_step(env, proxy, step.index, shape).await;
                records.churns.push(record);
            }
            StepAction::Herd {
                trigger,
                recover_timeout,
            } => {
                env.metrics.set_phase(step.index);
                let triggers = Triggers {
                    broker: &mut *broker,
                    proxy,
                    control: fleet.control(),
                };
                let herd = fleet.herd().clone();
                let record =
                    herd::run_step(env, &herd, triggers, step.index, trigger, *recover_timeout)
                        .await;
                records.herds.push(record);
            }
        }
        records
            .steps
            .push(step_record(env, broker, &mut step_counts, label, began).await);
    }
    records.writes.finish(&mut env.reasons).await;
    let _ = step_tx.send(StepInfo::END);
}

/// A step's row of `steps.csv`: its timing, the fleet's counts and the broker's after it.
async fn step_record(
    env: &StepEnv<'_>,
    broker: &Broker,
    step_counts: &mut monitor::StepCounts,
    label: String,
    began: Instant,
) -> StepRecord {
    let sampled = match broker.monitor_url() {
        Some(m) => match step_counts.read(&m).await {
            Ok(c) => Some(c),
            Err(e) => {
                warn!(error = %e, "broker sample after step failed");
                None
            }
        },
        None => None,
    };
    let counts = env.roster.counts();
    info!(step = %label, ready = counts.ready, failed = counts.failed, secs = format!("{:.2}", began.elapsed().as_secs_f64()), "step ends");
    StepRecord {
        label,
        began_secs: (began - env.run_start).as_secs_f64(),
        ended_secs: env.run_start.elapsed().as_secs_f64(),
        agents_ready: counts.ready,
        agents_failed: counts.failed,
        broker: sampled.unwrap_or_default(),
        broker_sampled: sampled.is_some(),
    }
}

/// Default results directory: `results/` under the working directory.
pub fn default_results_base() -> PathBuf {
    Path::new("results").to_path_buf()
}

/// `api.csv`'s rows: each captured request on the run's clock, in the step that was
/// running when the broker stored it.
fn api_rows(
    requests: &[ApiRequest],
    run_start_wall: SystemTime,
    steps: &[StepRecord],
    phases: &[String],
) -> Vec<ApiRow> {
    requests
        .iter()
        .map(|r| {
            let t = match r.at.duration_since(run_start_wall) {
                Ok(after) => after.as_secs_f64(),
                Err(before) => -before.duration().as_secs_f64(),
            };
            let phase = steps
                .iter()
                .rev()
                .find(|s| s.began_secs <= t)
                .map_or_else(|| phases[0].clone(), |s| s.label.clone());
            ApiRow {
                t_secs: Fixed3(t),
                phase,
                request: r.request.clone(),
                stream: r.target.clone(),
                client: r.client.clone(),
                error: r.error,
                detail: r.detail.clone(),
            }
        })
        .collect()
}
