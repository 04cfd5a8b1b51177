//! The fleet: the simulated agents, the roster of their states, and how they are
//! released and spread.
//!
//! - [`agent`]: one agent: its connection, consumers, sync, and re-sync after a reconnect.
//! - [`roster`](Roster): every agent's state in one table, with the counts steps wait on.
//! - [`pacing`]: intended-time pacing, for the start and for writes.
//! - [`splay`]: each agent's deterministic splay delay.
//!
//! [`Fleet::new`] builds everything the agents share, complete, before the first agent
//! starts; steps and samplers get narrow handles ([`Fleet::roster`], [`Fleet::herd`],
//! [`Fleet::ledgers`], [`Fleet::creates`], [`Fleet::control`]), never the agents' own
//! environment.

pub mod agent;
pub mod pacing;
mod roster;
pub mod splay;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::herd::Herd;
use crate::metrics::Metrics;
use crate::plan::{Plan, StartPacing};
use crate::writes::Ledgers;
use agent::{AgentEnv, Connection, CreateCounters, MetricIds};

pub use roster::*;

/// The signals steps send to every agent at once.
pub struct Control {
    /// Bumped by a `client_reconnect` step: every agent calls `force_reconnect()`.
    reconnect_all: watch::Sender<u64>,
    /// Set by a `drop_consumer` step: (agent, consumer slot).
    drop_consumer: watch::Sender<Option<(usize, usize)>>,
}

impl Control {
    fn new() -> Self {
        Control {
            reconnect_all: watch::channel(0).0,
            drop_consumer: watch::channel(None).0,
        }
    }

    /// `client_reconnect`: every agent reconnects now.
    pub fn reconnect_all(&self) {
        self.reconnect_all
            .send_modify(|generation| *generation += 1);
    }

    /// `drop_consumer`: agent `agent` discards what its consumer `slot` delivers.
    pub fn drop_consumer(&self, agent: usize, slot: usize) {
        let _ = self.drop_consumer.send(Some((agent, slot)));
    }

    fn subscribe_reconnect(&self) -> watch::Receiver<u64> {
        self.reconnect_all.subscribe()
    }

    fn subscribe_drop(&self) -> watch::Receiver<Option<(usize, usize)>> {
        self.drop_consumer.subscribe()
    }
}

/// A `wait_ready` step: waits until every started agent is ready or failed, or until
/// `deadline`. Returns how many agents were still on their way then (`None`: all
/// settled). The first time the whole fleet is ready after a start (`start_began`,
/// taken), records `fleet.all_ready`, the time from that start.
pub async fn wait_ready(
    roster: &Roster,
    metrics: &Metrics,
    deadline: Instant,
    start_began: &mut Option<Instant>,
) -> Option<usize> {
    let settled = roster.wait_settled(deadline).await.1;
    let counts = roster.counts();
    if !settled {
        return Some(counts.started() - counts.settled());
    }
    if counts.failed == 0
        && let Some(t0) = start_began.take()
    {
        let all_ready = metrics.metric("fleet.all_ready");
        metrics.record(0, all_ready, t0.elapsed());
    }
    None
}

/// When an agent of a `start` step makes its first connect attempt.
pub(crate) enum Release {
    /// At once: the fleet spawned it at its intended instant (a paced start).
    At(Instant),
    /// When the gate opens; the intended instant is the gate's.
    Gate(Arc<StartGate>),
}

impl Release {
    /// Waits until the agent may connect; returns the instant it was meant to.
    pub(crate) async fn wait(&self) -> Instant {
        match self {
            Release::At(intended) => *intended,
            Release::Gate(gate) => gate.pass().await,
        }
    }
}

/// The shared instant an all-at-once start releases its agents from: every agent says
/// it is prepared, the last one wakes the fleet, and the fleet opens the gate with one
/// send that wakes every agent.
pub(crate) struct StartGate {
    expected: usize,
    prepared: std::sync::atomic::AtomicUsize,
    all_prepared: tokio::sync::Notify,
    open: watch::Sender<Option<Instant>>,
}

impl StartGate {
    fn new(expected: usize) -> Self {
        StartGate {
            expected,
            prepared: Default::default(),
            all_prepared: tokio::sync::Notify::new(),
            open: watch::channel(None).0,
        }
    }

    /// An agent is prepared: waits for the gate to open, returns the instant it opened.
    async fn pass(&self) -> Instant {
        let mut open = self.open.subscribe();
        let prepared = self.prepared.fetch_add(1, Ordering::AcqRel) + 1;
        if prepared == self.expected {
            // notify_one keeps a permit: the fleet may not be waiting yet.
            self.all_prepared.notify_one();
        }
        let opened = open.wait_for(Option::is_some).await;
        // The sender lives in the gate, which this agent holds: the wait cannot fail.
        opened.map_or_else(|_| Instant::now(), |at| at.expect("waited for Some"))
    }

    /// Waits until every agent is prepared, then opens the gate now.
    ///
    /// The gate is opened from a thread outside the runtime's workers, so every agent
    /// it wakes goes to the runtime's global queue, which the runtime polls before its
    /// workers' local queues (`global_queue_interval(1)` in src/cli/mod.rs): every agent's
    /// first attempt runs before the early agents' handshakes, which would otherwise
    /// take the local queues first and spread the herd.
    async fn open_when_prepared(self: &Arc<Self>) {
        if self.expected > 0 {
            self.all_prepared.notified().await;
        }
        let gate = self.clone();
        let opened =
            tokio::task::spawn_blocking(move || gate.open.send_replace(Some(Instant::now())));
        if opened.await.is_err() {
            // No blocking thread: open it here.
            self.open.send_replace(Some(Instant::now()));
        }
    }
}

/// The running fleet: the agents' tasks, the signal that stops them, and the handles
/// the rest of the run reads them through.
pub struct Fleet {
    env: Arc<AgentEnv>,
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
    next: usize,
}

impl Fleet {
    /// The fleet of `plan`, connecting as `connection` says, recording into `metrics`.
    /// No agent runs until [`Fleet::start`].
    pub fn new(plan: &Plan, connection: Connection, metrics: Arc<Metrics>) -> Self {
        let agents = plan.fleet.agents;
        let env = AgentEnv {
            connection,
            fleet: plan.fleet.clone(),
            profile: plan.profile.clone(),
            seed: plan.seed,
            roster: Arc::new(Roster::new(agents)),
            herd: Arc::new(Herd::new(agents)),
            ledgers: Arc::new(Ledgers::default()),
            creates: Arc::new(CreateCounters::default()),
            control: Arc::new(Control::new()),
            ids: MetricIds::register(&metrics, &plan.profile),
            metrics,
            epoch: Instant::now(),
        };
        Fleet {
            env: Arc::new(env),
            tasks: JoinSet::new(),
            stop: watch::channel(false).0,
            next: 0,
        }
    }

    pub fn roster(&self) -> &Arc<Roster> {
        &self.env.roster
    }

    /// The recovery tracker of the current herd, which the agents report to.
    pub fn herd(&self) -> &Arc<Herd> {
        &self.env.herd
    }

    /// The ledgers of the write jobs running, which the agents report deliveries to.
    pub fn ledgers(&self) -> &Arc<Ledgers> {
        &self.env.ledgers
    }

    /// Where the agents record their latencies and errors.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.env.metrics
    }

    pub fn creates(&self) -> &Arc<CreateCounters> {
        &self.env.creates
    }

    pub fn control(&self) -> &Control {
        &self.env.control
    }

    /// Starts the agents not started yet, paced as asked (intended-time pacing, see
    /// [`pacing`]). Returns once every agent has been released (not once they are ready).
    ///
    /// All at once, every agent is spawned and prepares first (its task, its connect
    /// options), then all are released from one shared instant ([`StartGate`]): spawning
    /// and preparing 3,000 agents one after the other spread their first attempts over a
    /// quarter of a second. A paced start spawns agent `i` at `start + i / rate`. Either
    /// way each agent records `fire_skew`, its first connect attempt minus that intended
    /// instant, in this step's phase.
    pub async fn start(&mut self, how: &StartPacing) {
        let first = self.next;
        let count = (self.env.roster.len() - first) as u64;
        let phase = self.env.metrics.phase();
        let rate = match how {
            StartPacing::AllAtOnce => None,
            StartPacing::Rate { per_second } => Some(f64::from((*per_second).max(1))),
            StartPacing::Spread { over } => {
                Some(count.max(1) as f64 / over.as_secs_f64().max(f64::MIN_POSITIVE))
            }
        };
        match rate {
            None => {
                let gate = Arc::new(StartGate::new(count as usize));
                for i in 0..count {
                    let release = Release::Gate(gate.clone());
                    self.spawn(first + i as usize, phase, release);
                }
                gate.open_when_prepared().await;
            }
            Some(rate) => {
                let start = tokio::time::Instant::now();
                pacing::release(start, rate, count, |i| {
                    let intended = pacing::due(start, rate, i).into_std();
                    self.spawn(first + i as usize, phase, Release::At(intended));
                })
                .await;
            }
        }
    }

    fn spawn(&mut self, agent: usize, phase: usize, release: Release) {
        self.next = self.next.max(agent + 1);
        self.env.roster.set(agent, AgentState::Connecting, None);
        let env = self.env.clone();
        let stop = self.stop.subscribe();
        let start = agent::Start { phase, release };
        self.tasks.spawn(agent::run(env, agent, stop, start));
    }

    /// Tells every agent to stop and waits for their tasks (bounded by `within`).
    pub async fn shutdown(mut self, within: Duration) {
        let _ = self.stop.send(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(within, all).await.is_err() {
            self.tasks.abort_all();
        }
    }
}
