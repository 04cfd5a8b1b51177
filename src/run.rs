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

use tokio::sync::watch;
use tracing::{info, warn};

use crate::broker::monitor;
use crate::broker::sampler::BrokerSampler;
use crate::broker::{
    BrokerError, BrokerInfo, Credentials, EmbeddedBroker, EmbeddedOptions, redact_url,
};
use crate::fleet::agent::AgentContext;
use crate::fleet::{AgentState, Fleet};
use crate::herd::ProbePlan;
use crate::host;
use crate::metrics::{Metrics, Snapshot};
use crate::plan::ProxyMode;
use crate::plan::{Plan, StepAction, StopSignal, Trigger, WriteLoad};
use crate::progress::Progress;
use crate::provision::{self, group_id, pc_id};
use crate::proxy::in_process::FaultProxy;
use crate::proxy::process::{ProxyChild, upstream_of};
use crate::results::{
    self, AgentFinal, FleetFigures, HerdRecord, Outcome, RunRecord, RunStatus, StepRecord,
    Unrecovered,
};
use crate::timeseries::{ApiTap, Sampler};
use crate::writes::{Target, WriteJob, WriteRecord};

/// One socket per agent.
const FDS_PER_AGENT: u64 = 1;
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
    pub thresholds: Vec<crate::thresholds::Outcome>,
    /// The `fleetsim proxy` child's process id, with `[fleet] proxy = "process"`; it has
    /// exited and been waited for when the run returns.
    pub proxy_pid: Option<u32>,
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
    /// Ctrl-C (the `shutdown` future) before the broker was up: nothing was measured.
    #[error("interrupted while starting the broker: nothing was measured")]
    Interrupted,
}

/// The broker a run talks to.
enum Broker {
    Embedded(Box<EmbeddedBroker>),
    External {
        url: String,
        monitor: Option<String>,
        /// `$FLEETSIM_SYSTEM_URL`, with its credentials.
        system_url: Option<String>,
    },
}

impl Broker {
    async fn start(plan: &Plan) -> Result<Broker, BrokerError> {
        match &plan.broker.url {
            Some(url) => Ok(Broker::External {
                url: url.clone(),
                monitor: plan.broker.monitor_url.clone(),
                system_url: plan.broker.system_url.clone(),
            }),
            None => Ok(Broker::Embedded(Box::new(
                EmbeddedBroker::start(EmbeddedOptions {
                    max_connections: plan.broker.max_connections,
                    request_queue_limit: plan.broker.request_queue_limit,
                    default_max_consumers: plan.broker.default_max_consumers,
                    lame_duck_duration: plan.broker.lame_duck_duration,
                    lame_duck_grace_period: plan.broker.lame_duck_grace_period,
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

    /// A connection to the system account, where the API queue's LIMIT_REACHED
    /// advisory is published: the embedded broker's own system user (fleetsim wrote its
    /// config), or for an external broker the user of `$FLEETSIM_SYSTEM_URL`. Without
    /// one that advisory is not counted, and the log says so.
    async fn system_client(&self) -> Option<async_nats::Client> {
        let (options, url) = match self {
            Broker::Embedded(b) => {
                let (user, password) = b.system_user();
                (
                    async_nats::ConnectOptions::with_user_and_password(
                        user.to_string(),
                        password.to_string(),
                    ),
                    b.url(),
                )
            }
            Broker::External {
                system_url: Some(url),
                ..
            } => (
                Credentials::of_url(url).apply(async_nats::ConnectOptions::new()),
                url.clone(),
            ),
            Broker::External {
                system_url: None, ..
            } => {
                info!(
                    "API.LIMIT_REACHED advisories are not counted (api_limit_reached stays 0): \
                     set FLEETSIM_SYSTEM_URL=nats://<user>:<password>@<host>:<port> to a \
                     system-account user of the broker to count them"
                );
                return None;
            }
        };
        match options
            .name("fleetsim-system")
            .connect(Credentials::strip(&url))
            .await
        {
            Ok(client) => Some(client),
            Err(e) => {
                // async-nats may quote the URL it was given: never its credentials.
                let error = crate::results::redact_urls(&e.to_string());
                warn!(
                    %error,
                    url = %redact_url(&url),
                    "cannot connect to the system account: api_limit_reached stays 0"
                );
                None
            }
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
            Broker::External { url, monitor, .. } => BrokerInfo {
                kind: "external",
                url: redact_url(url),
                monitor_url: monitor.clone(),
                version: Some(client.server_info().version),
                limits: match monitor {
                    Some(m) => external_limits(m).await,
                    None => Default::default(),
                },
                api_limit_reached_counted: false,
            },
        }
    }

    fn embedded(&mut self) -> Option<&mut EmbeddedBroker> {
        match self {
            Broker::Embedded(b) => Some(b),
            Broker::External { .. } => None,
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
    // Listened to from the first instant (polled first below): a signal listener
    // registered later never sees an earlier signal, so a Ctrl-C while the broker starts
    // would be swallowed. One during provisioning is then seen when the steps begin.
    tokio::pin!(shutdown);
    let started_at = SystemTime::now();
    // Before the broker starts: a fleet that cannot fit is refused before anything runs.
    let local_addresses = check_host(&plan)?;
    // An interrupted start drops the half-started broker, which kills its process.
    let mut broker = tokio::select! {
        biased;
        () = &mut shutdown => return Err(RunError::Interrupted),
        broker = Broker::start(&plan) => broker?,
    };
    let outcome = drive(
        &plan,
        &options,
        &mut broker,
        started_at,
        local_addresses,
        shutdown,
    )
    .await;
    broker.stop().await;
    outcome
}

/// Everything between "broker up" and "broker down".
async fn drive(
    plan: &Plan,
    options: &RunOptions,
    broker: &mut Broker,
    started_at: SystemTime,
    local_addresses: u8,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, RunError> {
    let url = broker.url();
    info!(broker = %redact_url(&url), agents = plan.fleet.agents, profile = %plan.profile.name, "run starting");
    let control = Credentials::of_url(&url)
        .apply(async_nats::ConnectOptions::new())
        .name("fleetsim-control")
        .request_timeout(Some(Duration::from_secs(30)))
        // The advisory tap gets one message per API request of the whole fleet.
        .subscription_capacity(1 << 20)
        .connect(Credentials::strip(&url))
        .await
        .map_err(|e| BrokerError::Connect {
            url: redact_url(&url),
            message: e.to_string(),
        })?;
    let mut broker_info = broker.info(&control).await;
    let js = async_nats::jetstream::new(control.clone());
    let provisioned = provision::provision(&js, plan).await?;
    info!(
        keys = provisioned.keys_seeded,
        secs = format!("{:.2}", provisioned.seconds),
        "provisioned"
    );
    let consumers_at_start = match broker.monitor_url() {
        Some(m) => monitor::broker_counts(&m).await.ok().map(|c| c.consumers),
        None => None,
    };
    let tap = match ApiTap::start(&control).await {
        Ok(tap) => Some(tap),
        Err(e) => {
            warn!(error = %e, "cannot subscribe to JetStream advisories: API columns of timeseries.csv stay 0");
            None
        }
    };
    let system = match (&tap, broker.system_client().await) {
        (Some(tap), Some(client)) => match tap.listen_system(&client).await {
            Ok(listener) => Some((client, listener)),
            Err(e) => {
                warn!(error = %e, "cannot subscribe to API.LIMIT_REACHED: api_limit_reached stays 0");
                None
            }
        },
        _ => None,
    };
    broker_info.api_limit_reached_counted = system.is_some();
    let proxy = AgentProxy::start(plan, &url, options).await?;
    let proxy_pid = proxy.as_ref().and_then(AgentProxy::pid);
    let agent_url = proxy.as_ref().map_or_else(|| url.clone(), AgentProxy::url);

    let metrics = Arc::new(Metrics::new());
    let mut ctx = AgentContext::new(
        // Dialled without userinfo: the credentials go as options (`credentials`).
        Credentials::strip(&agent_url),
        plan.fleet.clone(),
        plan.profile.clone(),
        plan.seed,
        metrics.clone(),
    );
    ctx.local_addresses = local_addresses;
    ctx.credentials = Credentials::of_url(&url);
    let ctx = Arc::new(ctx);
    let mut fleet = Fleet::new(ctx.clone());
    let run_start = Instant::now();
    let (step_tx, step_rx) = watch::channel("0:setup".to_string());
    let broker_sampler = broker
        .monitor_url()
        .map(|m| BrokerSampler::start(m, step_rx.clone(), run_start));
    let progress = Progress::start(ctx.clone(), step_rx.clone());
    let sampler = Sampler::start(ctx.clone(), tap, step_rx, run_start);
    let mut runner = StepRunner {
        plan,
        fleet: &mut fleet,
        metrics: &metrics,
        broker,
        js: &js,
        proxy: proxy.as_ref(),
        step_tx,
        run_start,
        done: Vec::new(),
        reasons: Vec::new(),
        herds: Vec::new(),
        next_write_id: 1,
        background: tokio::task::JoinSet::new(),
        writes: Vec::new(),
    };

    let interrupted = {
        let steps = runner.run_all();
        tokio::pin!(steps);
        tokio::pin!(shutdown);
        tokio::select! {
            _ = &mut steps => false,
            _ = &mut shutdown => true,
        }
    };
    let StepRunner {
        done: steps_done,
        mut reasons,
        herds,
        writes,
        ..
    } = runner;
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
                last_resync: cell.last_resync(),
            }
        })
        .collect();
    progress.finish().await;
    let timeseries = sampler.finish().await;
    let broker_samples = match broker_sampler {
        Some(s) => s.finish().await,
        None => Vec::new(),
    };
    fleet.shutdown(FLEET_STOP_WITHIN).await;
    if let Some(proxy) = proxy {
        proxy.stop().await;
    }
    if let Some((_client, listener)) = system {
        listener.abort();
    }
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
    let dir = match &options.run_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(results::ResultsError::io(dir))?;
            dir.clone()
        }
        None => results::create_run_dir(&options.results_base, &plan.name, started_at)?,
    };
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
        phases: phases.clone(),
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
        timeseries,
        herds,
        writes,
        broker_samples,
    };
    results::write_run(&dir, &record)?;
    let mut summary = results::render_summary(&record);
    // Thresholds read the files just written, so they judge exactly what the directory
    // shows; thresholds.csv comes after the manifest.
    let thresholds = if plan.thresholds.checks.is_empty() {
        Vec::new()
    } else {
        let outcomes = crate::thresholds::evaluate(&dir, &plan.thresholds.checks);
        crate::thresholds::write_file(&dir, &outcomes)?;
        summary.push_str(&crate::thresholds::render(&outcomes));
        outcomes
    };
    // The page is a view of the files: a report that cannot be drawn loses nothing
    // measured, so it is a warning, not a failed run.
    match crate::report::write_report(&dir) {
        Ok(path) => {
            if !summary.is_empty() && !summary.ends_with('\n') {
                summary.push('\n');
            }
            summary.push_str(&format!("report: {}\n", path.display()));
        }
        Err(e) => warn!(error = %e, "report.html not written"),
    }
    Ok(RunReport {
        dir,
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

/// The fault proxy the agents connect through: inside this process or a child process.
enum AgentProxy {
    InProcess(FaultProxy),
    Process(Box<ProxyChild>),
}

impl AgentProxy {
    /// Starts the proxy `plan.fleet.proxy` asks for, in front of the broker at `url`.
    async fn start(
        plan: &Plan,
        url: &str,
        options: &RunOptions,
    ) -> Result<Option<AgentProxy>, RunError> {
        let upstream = upstream_of(url);
        let proxy = match plan.fleet.proxy {
            ProxyMode::Off => return Ok(None),
            ProxyMode::InProcess => {
                let listen = "127.0.0.1:0".parse().expect("literal address");
                let proxy = FaultProxy::start(listen, &upstream).await.map_err(|e| {
                    RunError::Environment(format!("cannot start the fault proxy: {e}"))
                })?;
                info!(listen = %proxy.addr(), %upstream, "agents connect through the fault proxy");
                AgentProxy::InProcess(proxy)
            }
            ProxyMode::Process => {
                let program = match &options.proxy_program {
                    Some(program) => program.clone(),
                    None => std::env::current_exe().map_err(|e| {
                        RunError::Environment(format!(
                            "cannot find fleetsim's own executable to start `fleetsim proxy`: {e}"
                        ))
                    })?,
                };
                let child = ProxyChild::spawn(&program, &upstream)
                    .await
                    .map_err(RunError::Environment)?;
                // The child raised its own limit; refuse a fleet it cannot hold.
                let nofile = child.ready().nofile;
                if let Err(e) = host::check_proxied_fd_budget(plan.fleet.agents, true, nofile) {
                    let _ = child.stop().await;
                    return Err(RunError::Environment(e));
                }
                info!(pid = child.pid(), listen = %child.ready().listen, %upstream, nofile, "agents connect through the fault proxy process");
                AgentProxy::Process(Box::new(child))
            }
        };
        Ok(Some(proxy))
    }

    fn url(&self) -> String {
        match self {
            AgentProxy::InProcess(p) => p.url(),
            AgentProxy::Process(p) => p.url(),
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            AgentProxy::InProcess(_) => None,
            AgentProxy::Process(p) => Some(p.pid()),
        }
    }

    /// Drops every agent connection, refuses new ones for `refuse_for`, and returns once
    /// the proxy accepts again, with how many connections it dropped.
    async fn cut(&self, refuse_for: Duration) -> Result<u64, String> {
        match self {
            AgentProxy::InProcess(p) => p.cut(refuse_for).await.map_err(|e| e.to_string()),
            AgentProxy::Process(p) => p.cut(refuse_for).await,
        }
    }

    /// Stops the proxy; a child process is waited for (killed if it does not quit).
    async fn stop(self) {
        match self {
            AgentProxy::InProcess(p) => drop(p),
            AgentProxy::Process(p) => {
                let pid = p.pid();
                match (*p).stop().await {
                    Ok(status) => info!(pid, %status, "fault proxy process stopped"),
                    Err(e) => warn!(pid, error = %e, "stopping the fault proxy process"),
                }
            }
        }
    }
}

/// Raises the open-files limit and refuses, before any agent connects, a fleet that
/// cannot fit in it. Returns over how many loopback source addresses (127.0.0.1,
/// 127.0.0.2, ...) the agents spread their connections: one address has only the
/// ephemeral port range toward one broker port (~28k on Linux).
fn check_host(plan: &Plan) -> Result<u8, RunError> {
    let (soft, hard) = host::raise_nofile_limit()
        .map_err(|e| RunError::Environment(format!("reading the open-files limit failed: {e}")))?;
    if soft < hard {
        warn!(
            soft,
            hard, "could not raise the open-files soft limit to the hard limit"
        );
    }
    match plan.fleet.proxy {
        ProxyMode::Off => host::check_fd_budget(plan.fleet.agents, FDS_PER_AGENT, soft),
        ProxyMode::InProcess => host::check_proxied_fd_budget(plan.fleet.agents, false, soft),
        // Checked here against this process's limit, which the child inherits; the child
        // reports the limit it raised to and is checked again when it starts.
        ProxyMode::Process => host::check_proxied_fd_budget(plan.fleet.agents, true, soft),
    }
    .map_err(RunError::Environment)?;
    let loopback = plan.broker.url.as_deref().is_none_or(host::is_loopback_url);
    host::source_addresses(plan.fleet.agents, host::ephemeral_ports(), loopback)
        .map_err(RunError::Environment)
}

/// The steps of one run and what they recorded.
struct StepRunner<'a> {
    plan: &'a Plan,
    fleet: &'a mut Fleet,
    metrics: &'a Metrics,
    broker: &'a mut Broker,
    js: &'a async_nats::jetstream::Context,
    proxy: Option<&'a AgentProxy>,
    /// The running step's label, for the time series.
    step_tx: watch::Sender<String>,
    run_start: Instant,
    done: Vec<StepRecord>,
    reasons: Vec<String>,
    herds: Vec<HerdRecord>,
    /// Id of the next write a `write`/`exec` step sends (ids never repeat in a run).
    next_write_id: u64,
    /// Write steps running in the background (`background = true`).
    background: tokio::task::JoinSet<WriteRecord>,
    writes: Vec<WriteRecord>,
}

impl StepRunner<'_> {
    /// Runs the steps in order, recording each one's timing and the broker's counts after it.
    async fn run_all(&mut self) {
        let mut start_began: Option<Instant> = None;
        for step in &self.plan.steps {
            let label = step.label();
            let began = Instant::now();
            let _ = self.step_tx.send(label.clone());
            info!(step = %label, "step begins");
            match &step.action {
                StepAction::Start { pacing } => {
                    self.metrics.set_phase(step.index);
                    start_began = Some(began);
                    self.fleet.start(pacing).await;
                }
                StepAction::WaitReady { timeout } => {
                    let deadline = began + *timeout;
                    let settled = self.fleet.roster().wait_settled(deadline).await.1;
                    let counts = self.fleet.roster().counts();
                    if !settled {
                        let stuck = counts.started() - counts.settled();
                        self.reasons.push(format!(
                            "step {label}: {stuck} agents not ready within {timeout:?}"
                        ));
                    } else if counts.failed == 0
                        && let Some(t0) = start_began.take()
                    {
                        let all_ready = self.metrics.metric("fleet.all_ready");
                        self.metrics.record(0, all_ready, t0.elapsed());
                    }
                }
                StepAction::Hold { duration } => {
                    tokio::time::sleep_until((began + *duration).into()).await;
                }
                StepAction::Write { target, load } => {
                    self.metrics.set_phase(step.index);
                    self.write(&label, step.index, Target::Kv(target.clone()), *load)
                        .await;
                }
                StepAction::Exec { target, load } => {
                    self.metrics.set_phase(step.index);
                    self.write(&label, step.index, Target::Exec(*target), *load)
                        .await;
                }
                StepAction::DropConsumer { agent, consumer } => {
                    let slot = self
                        .plan
                        .profile
                        .consumers
                        .iter()
                        .position(|c| &c.name == consumer)
                        .expect("the scenario parser checks consumer names");
                    let _ = self
                        .fleet
                        .context()
                        .drop_consumer
                        .send(Some((*agent, slot)));
                }
                StepAction::Herd {
                    trigger,
                    recover_timeout,
                } => {
                    self.metrics.set_phase(step.index);
                    let record = self.herd(&label, trigger, *recover_timeout).await;
                    self.herds.push(record);
                }
            }
            let broker = match self.broker.monitor_url() {
                Some(m) => match monitor::broker_counts(&m).await {
                    Ok(c) => Some(c),
                    Err(e) => {
                        warn!(error = %e, "broker sample after step failed");
                        None
                    }
                },
                None => None,
            };
            let counts = self.fleet.roster().counts();
            self.done.push(StepRecord {
                label: label.clone(),
                began_secs: (began - self.run_start).as_secs_f64(),
                ended_secs: self.run_start.elapsed().as_secs_f64(),
                agents_ready: counts.ready,
                agents_failed: counts.failed,
                broker: broker.unwrap_or_default(),
                broker_sampled: broker.is_some(),
            });
            info!(step = %label, ready = counts.ready, failed = counts.failed, secs = format!("{:.2}", began.elapsed().as_secs_f64()), "step ends");
        }
        while let Some(done) = self.background.join_next().await {
            match done {
                Ok(record) => self.finish_write(record),
                Err(e) => self
                    .reasons
                    .push(format!("a background write step failed: {e}")),
            }
        }
        let _ = self.step_tx.send("end".to_string());
    }

    /// Runs a `write` or `exec` step, or starts it in the background.
    async fn write(&mut self, label: &str, index: usize, target: Target, load: WriteLoad) {
        let roster = self.fleet.roster();
        let agents: Vec<usize> = (0..roster.len())
            .filter(|&a| {
                let s = roster.cell(a).state();
                s != AgentState::Failed && s != AgentState::Pending
            })
            .collect();
        let job = WriteJob {
            label: label.to_string(),
            js: self.js.clone(),
            ctx: self.fleet.context().clone(),
            target,
            load,
            first_id: self.next_write_id,
            seed: self.plan.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            agents,
        };
        self.next_write_id += load.count;
        info!(step = %label, writes = load.count, rate = load.rate, background = load.background, "writes begin");
        if load.background {
            self.background.spawn(job.run());
        } else {
            let record = job.run().await;
            self.finish_write(record);
        }
    }

    fn finish_write(&mut self, record: WriteRecord) {
        let r = &record.reconciliation;
        let missed = r.missed();
        info!(
            step = %record.label,
            target = %record.target,
            writes = record.writes,
            acked = record.acked,
            missed,
            "writes reconciled"
        );
        if record.acked < record.writes {
            self.reasons.push(format!(
                "step {}: {} of {} writes not acknowledged",
                record.label,
                record.writes - record.acked,
                record.writes
            ));
        }
        if missed > 0 {
            let agents = r.per_agent.iter().filter(|a| a.missed > 0).count();
            self.reasons.push(format!(
                "step {}: {missed} deliveries missed by {agents} agents (see reconcile.csv)",
                record.label
            ));
        }
        self.writes.push(record);
    }

    /// Fires `trigger`, writes the probes as soon as the broker takes writes, and waits
    /// until every agent that was not failed has recovered (or `recover_timeout`).
    async fn herd(
        &mut self,
        label: &str,
        trigger: &Trigger,
        recover_timeout: Duration,
    ) -> HerdRecord {
        let ctx = self.fleet.context().clone();
        let roster = self.fleet.roster();
        let expected: Vec<usize> = (0..roster.len())
            .filter(|&a| {
                let s = roster.cell(a).state();
                s != AgentState::Failed && s != AgentState::Pending
            })
            .collect();
        let connects_before: Vec<u64> = expected
            .iter()
            .map(|&a| roster.cell(a).connects())
            .collect();
        let probes = ProbePlan::for_profile(
            &self.plan.profile,
            self.plan.fleet.agents,
            self.plan.fleet.groups,
        );
        let (generation, reprobes) = ctx.herd.begin();
        let fired = Instant::now();
        let deadline = fired + recover_timeout;
        let all_recovered = ctx.herd.wait_recovered(expected.len(), deadline);
        let probing = probes.run(self.js, generation, reprobes, deadline, all_recovered);
        info!(step = %label, agents = expected.len(), "herd trigger fires");

        let mut trigger_error = None;
        let outcome = match trigger {
            Trigger::NetworkCut { refuse_for } => {
                // The control connection does not go through the proxy: the broker takes
                // the probes while the agents are cut off.
                let proxy = self
                    .proxy
                    .expect("the scenario parser requires a proxy for network_cut");
                let (cut, outcome) = tokio::join!(proxy.cut(*refuse_for), probing);
                match cut {
                    Ok(dropped) => info!(step = %label, dropped, "network cut"),
                    Err(e) => trigger_error = Some(format!("fault proxy: {e}")),
                }
                outcome
            }
            other => {
                if let Err(e) = self.fire(other).await {
                    warn!(step = %label, error = %e, "herd trigger failed");
                    trigger_error = Some(e);
                }
                if matches!(other, Trigger::ClientReconnect) {
                    // The old connections would deliver the probes before they close:
                    // write them only once every agent has reconnected.
                    let roster = self.fleet.roster();
                    while Instant::now() < deadline
                        && expected.iter().zip(&connects_before).any(|(&a, &before)| {
                            roster.cell(a).connects() <= before
                                && roster.cell(a).state() != AgentState::Failed
                        })
                    {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                probing.await
            }
        };
        // Recovery is the probes; the step ends when the fleet is also settled: every
        // agent's re-sync done (Ready) or failed. A re-sync runs on after the probes
        // arrive (its gets and walks, and a splay before them), and the next step, or
        // the end of the run, must not cut it short and find the agent mid-recovery.
        // (Only a Ready agent turns Recovering, so the roster's count is the expected
        // agents' count.)
        let (counts, _) = self
            .fleet
            .roster()
            .wait_until(deadline, |c| c.recovering == 0)
            .await;
        let resyncing = counts.recovering;
        let first_probe_ack = outcome.first_ack.map(|t| t - fired);
        let recovered = ctx.herd.recovered() >= expected.len();
        if recovered && resyncing > 0 {
            self.reasons.push(format!(
                "step {label}: {resyncing} of {} agents delivered the probe but were still \
                 re-syncing after {recover_timeout:?}",
                expected.len()
            ));
        }
        let roster = self.fleet.roster();
        let unrecovered: Vec<Unrecovered> = expected
            .iter()
            .filter(|&&a| !ctx.herd.is_recovered(a))
            .map(|&a| Unrecovered {
                pc: pc_id(a),
                state: roster.cell(a).state().name().to_string(),
                connected: roster.cell(a).is_connected(),
            })
            .collect();
        if !recovered {
            self.reasons.push(format!(
                "step {label}: {} of {} agents not recovered within {recover_timeout:?}",
                unrecovered.len(),
                expected.len()
            ));
        }
        if let Some(e) = &trigger_error {
            self.reasons
                .push(format!("step {label}: trigger failed: {e}"));
        }
        let record = HerdRecord {
            label: label.to_string(),
            trigger: trigger.kind().to_string(),
            trigger_secs: (fired - self.run_start).as_secs_f64(),
            agents: expected.len(),
            recovery_times: ctx.herd.recovery_times(),
            probe_writes: outcome.writes,
            probe_writes_acked: outcome.acked,
            first_probe_ack,
            unrecovered,
            trigger_error,
        };
        info!(
            step = %label,
            recovered = record.recovery_times.len(),
            of = record.agents,
            p50 = ?record.time_to(0.5),
            p100 = ?record.time_to(1.0),
            "herd recovery"
        );
        record
    }

    /// Fires a trigger other than `network_cut`; returns why it failed, if it did.
    async fn fire(&mut self, trigger: &Trigger) -> Result<(), String> {
        match trigger {
            Trigger::BrokerRestart { signal, downtime } => {
                let broker = self
                    .broker
                    .embedded()
                    .ok_or("broker_restart needs the embedded broker")?;
                broker
                    .stop(*signal == StopSignal::Kill)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::time::sleep(*downtime).await;
                broker.start_again().await.map_err(|e| e.to_string())
            }
            Trigger::LameDuck => {
                let broker = self
                    .broker
                    .embedded()
                    .ok_or("lame_duck needs the embedded broker")?;
                broker.lame_duck().await.map_err(|e| e.to_string())?;
                broker.start_again().await.map_err(|e| e.to_string())
            }
            Trigger::ClientReconnect => {
                self.fleet
                    .context()
                    .reconnect_all
                    .send_modify(|generation| *generation += 1);
                Ok(())
            }
            Trigger::Command { command, timeout } => run_command(command, *timeout).await,
            Trigger::NetworkCut { .. } => unreachable!("network_cut is fired with its probes"),
        }
    }
}

/// Runs `command` with `sh -c`, logging its output; fails on a non-zero exit or timeout.
async fn run_command(command: &str, timeout: Duration) -> Result<(), String> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(timeout, child).await {
        Err(_) => return Err(format!("command did not finish within {timeout:?}")),
        Ok(Err(e)) => return Err(format!("command could not be started: {e}")),
        Ok(Ok(output)) => output,
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        info!(target: "fleetsim::command", "{line}");
    }
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        warn!(target: "fleetsim::command", "{line}");
    }
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("command exited with {}", output.status))
    }
}

/// Default results directory: `results/` under the working directory.
pub fn default_results_base() -> PathBuf {
    Path::new("results").to_path_buf()
}
