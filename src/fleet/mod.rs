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

    pub fn creates(&self) -> &Arc<CreateCounters> {
        &self.env.creates
    }

    pub fn control(&self) -> &Control {
        &self.env.control
    }

    /// Starts the agents not started yet, paced as asked (intended-time pacing, see
    /// [`pacing`]). Returns once every agent has been released (not once they are ready).
    pub async fn start(&mut self, how: &StartPacing) {
        let first = self.next;
        let count = (self.env.roster.len() - first) as u64;
        let rate = match how {
            StartPacing::AllAtOnce => None,
            StartPacing::Rate { per_second } => Some(f64::from((*per_second).max(1))),
            StartPacing::Spread { over } => {
                Some(count.max(1) as f64 / over.as_secs_f64().max(f64::MIN_POSITIVE))
            }
        };
        match rate {
            None => (0..count).for_each(|i| self.spawn(first + i as usize)),
            Some(rate) => {
                let start = tokio::time::Instant::now();
                pacing::release(start, rate, count, |i| self.spawn(first + i as usize)).await;
            }
        }
    }

    fn spawn(&mut self, agent: usize) {
        self.next = self.next.max(agent + 1);
        self.env.roster.set(agent, AgentState::Connecting, None);
        let env = self.env.clone();
        let stop = self.stop.subscribe();
        self.tasks.spawn(agent::run(env, agent, stop));
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
