//! The roster: every agent's state in one table.
//!
//! Agents update their own cell (an atomic state, a failure reason) and the fleet-wide
//! counts; waiters are woken through a [`Notify`] instead of polling, so `wait_ready`
//! returns the moment the last agent settles. The table is what makes "every agent ends
//! in a known state" checkable: at the end of a run each cell is ready or failed, and the
//! counts reconcile with the number started.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Where an agent is in its life. Stored as a `u8` in its cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum AgentState {
    /// Not started yet.
    Pending = 0,
    /// Opening its TCP connection.
    Connecting = 1,
    /// Binding buckets and creating its consumers.
    Opening = 2,
    /// Reading its initial values (the sync).
    Syncing = 3,
    /// All consumers created and the sync done.
    Ready = 4,
    /// Gave up; the cell holds the reason.
    Failed = 5,
    /// Was ready, lost its connection: reconnecting, then re-syncing.
    Recovering = 6,
}

impl AgentState {
    pub const ALL: [AgentState; 7] = [
        AgentState::Pending,
        AgentState::Connecting,
        AgentState::Opening,
        AgentState::Syncing,
        AgentState::Ready,
        AgentState::Failed,
        AgentState::Recovering,
    ];

    fn from_u8(v: u8) -> AgentState {
        Self::ALL[v as usize]
    }

    pub fn name(self) -> &'static str {
        match self {
            AgentState::Pending => "pending",
            AgentState::Connecting => "connecting",
            AgentState::Opening => "opening",
            AgentState::Syncing => "syncing",
            AgentState::Ready => "ready",
            AgentState::Failed => "failed",
            AgentState::Recovering => "recovering",
        }
    }

    /// Ready and failed are where an agent settles; the others are on the way.
    pub fn is_settled(self) -> bool {
        matches!(self, AgentState::Ready | AgentState::Failed)
    }
}

/// One agent's slot in the roster.
pub struct AgentCell {
    state: AtomicU8,
    /// Set from async-nats' event callback: it must stay an atomic store (the callback
    /// queue drops events when a callback is slow).
    connected: AtomicBool,
    connects: AtomicU64,
    reason: Mutex<Option<String>>,
    /// The last reconnect's splay delay and the time from Connected to the start of the
    /// re-sync (µs; `u64::MAX` until the first reconnect), for checking the splay.
    last_splay_us: AtomicU64,
    last_resync_wait_us: AtomicU64,
    /// Messages its core subscriptions received.
    core_received: AtomicU64,
    /// Periodic publishes it made (acked ones once the ack came).
    published: AtomicU64,
}

impl Default for AgentCell {
    fn default() -> Self {
        AgentCell {
            state: AtomicU8::new(0),
            connected: AtomicBool::new(false),
            connects: AtomicU64::new(0),
            reason: Mutex::new(None),
            last_splay_us: AtomicU64::new(u64::MAX),
            last_resync_wait_us: AtomicU64::new(u64::MAX),
            core_received: AtomicU64::new(0),
            published: AtomicU64::new(0),
        }
    }
}

impl AgentCell {
    pub fn count_core_received(&self) {
        self.core_received.fetch_add(1, Ordering::Relaxed);
    }

    pub fn core_received(&self) -> u64 {
        self.core_received.load(Ordering::Relaxed)
    }

    pub fn count_published(&self) {
        self.published.fetch_add(1, Ordering::Relaxed);
    }

    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    pub fn state(&self) -> AgentState {
        AgentState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    pub fn reason(&self) -> Option<String> {
        self.reason.lock().expect("agent reason lock").clone()
    }

    /// Records when the last re-sync started: `splay` was its delay, `waited` the time
    /// from Connected to the start of the re-sync's reads.
    pub fn set_last_resync(&self, splay: Duration, waited: Duration) {
        let us = |d: Duration| d.as_micros().min(u128::from(u64::MAX - 1)) as u64;
        self.last_splay_us.store(us(splay), Ordering::Relaxed);
        self.last_resync_wait_us
            .store(us(waited), Ordering::Relaxed);
    }

    /// (splay, wait from Connected to the re-sync) of the last reconnect, if any.
    pub fn last_resync(&self) -> Option<(Duration, Duration)> {
        let splay = self.last_splay_us.load(Ordering::Relaxed);
        let waited = self.last_resync_wait_us.load(Ordering::Relaxed);
        (splay != u64::MAX).then(|| (Duration::from_micros(splay), Duration::from_micros(waited)))
    }
}

/// Every agent's cell plus fleet-wide counts by state.
pub struct Roster {
    cells: Vec<AgentCell>,
    counts: [AtomicUsize; 7],
    connected: AtomicUsize,
    changed: Notify,
}

/// Counts of agents by state at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending: usize,
    pub connecting: usize,
    pub opening: usize,
    pub syncing: usize,
    pub ready: usize,
    pub failed: usize,
    pub recovering: usize,
}

impl Counts {
    pub fn started(&self) -> usize {
        self.connecting + self.opening + self.syncing + self.ready + self.failed + self.recovering
    }

    pub fn settled(&self) -> usize {
        self.ready + self.failed
    }
}

impl Roster {
    pub fn new(agents: usize) -> Self {
        let roster = Roster {
            cells: (0..agents).map(|_| AgentCell::default()).collect(),
            counts: Default::default(),
            connected: AtomicUsize::new(0),
            changed: Notify::new(),
        };
        roster.counts[AgentState::Pending as usize].store(agents, Ordering::Relaxed);
        roster
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn cell(&self, agent: usize) -> &AgentCell {
        &self.cells[agent]
    }

    /// Moves an agent to `state` (a failure also stores its reason) and wakes waiters.
    pub fn set(&self, agent: usize, state: AgentState, reason: Option<String>) {
        let cell = &self.cells[agent];
        if let Some(reason) = reason {
            *cell.reason.lock().expect("agent reason lock") = Some(reason);
        }
        let old = cell.state.swap(state as u8, Ordering::AcqRel);
        if old != state as u8 {
            self.counts[old as usize].fetch_sub(1, Ordering::AcqRel);
            self.counts[state as usize].fetch_add(1, Ordering::AcqRel);
            self.changed.notify_waiters();
        }
    }

    /// From the connection event callback: only atomics, nothing that can block.
    pub fn on_connected(&self, agent: usize) {
        let cell = &self.cells[agent];
        if !cell.connected.swap(true, Ordering::AcqRel) {
            self.connected.fetch_add(1, Ordering::AcqRel);
        }
        cell.connects.fetch_add(1, Ordering::Relaxed);
    }

    pub fn on_disconnected(&self, agent: usize) {
        if self.cells[agent].connected.swap(false, Ordering::AcqRel) {
            self.connected.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Agents whose connection is up right now.
    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Acquire)
    }

    pub fn counts(&self) -> Counts {
        let c = |s: AgentState| self.counts[s as usize].load(Ordering::Acquire);
        Counts {
            pending: c(AgentState::Pending),
            connecting: c(AgentState::Connecting),
            opening: c(AgentState::Opening),
            syncing: c(AgentState::Syncing),
            ready: c(AgentState::Ready),
            failed: c(AgentState::Failed),
            recovering: c(AgentState::Recovering),
        }
    }

    /// Waits until every started agent is ready or failed, or until `deadline`.
    /// Returns the counts at that moment and whether everyone settled.
    pub async fn wait_settled(&self, deadline: Instant) -> (Counts, bool) {
        self.wait_until(deadline, |c| c.settled() == c.started())
            .await
    }

    /// Waits until the state counts satisfy `done`, or until `deadline`. Returns the
    /// counts at that moment and whether `done` held.
    pub async fn wait_until(
        &self,
        deadline: Instant,
        done: impl Fn(&Counts) -> bool,
    ) -> (Counts, bool) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Register before checking, so a change between check and await is not lost.
            notified.as_mut().enable();
            let counts = self.counts();
            if done(&counts) {
                return (counts, true);
            }
            let sleep = tokio::time::sleep_until(deadline.into());
            tokio::select! {
                _ = &mut notified => {}
                _ = sleep => {
                    let counts = self.counts();
                    let held = done(&counts);
                    return (counts, held);
                }
            }
        }
    }

    /// The agents a step expects to hear from: started and not failed.
    pub fn live_agents(&self) -> Vec<usize> {
        (0..self.cells.len())
            .filter(|&a| {
                let s = self.cells[a].state();
                s != AgentState::Failed && s != AgentState::Pending
            })
            .collect()
    }

    /// Marks every agent that never settled as failed, naming the state it was stuck in.
    /// Called at the end of a run so each agent ends ready or failed.
    pub fn fail_unsettled(&self, why: &str) -> usize {
        let mut n = 0;
        for agent in 0..self.cells.len() {
            let state = self.cells[agent].state();
            if !state.is_settled() {
                self.set(
                    agent,
                    AgentState::Failed,
                    Some(format!("{why} while {}", state.name())),
                );
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn counts_follow_every_transition() {
        let roster = Roster::new(3);
        assert_eq!(roster.counts().pending, 3);
        roster.set(0, AgentState::Connecting, None);
        roster.set(1, AgentState::Connecting, None);
        roster.set(0, AgentState::Ready, None);
        roster.set(1, AgentState::Failed, Some("boom".into()));
        let c = roster.counts();
        assert_eq!(
            (c.pending, c.ready, c.failed, c.started(), c.settled()),
            (1, 1, 1, 2, 2)
        );
        assert_eq!(roster.cell(1).reason().as_deref(), Some("boom"));
    }

    #[test]
    fn unsettled_agents_end_failed_with_the_state_they_were_stuck_in() {
        let roster = Roster::new(2);
        roster.set(0, AgentState::Syncing, None);
        roster.set(1, AgentState::Ready, None);
        assert_eq!(roster.fail_unsettled("run ended"), 1);
        assert_eq!(
            roster.cell(0).reason().as_deref(),
            Some("run ended while syncing")
        );
        assert_eq!(roster.counts().failed, 1);
    }

    #[tokio::test]
    async fn wait_settled_wakes_on_the_last_transition() {
        let roster = Arc::new(Roster::new(2));
        roster.set(0, AgentState::Connecting, None);
        roster.set(1, AgentState::Connecting, None);
        let r = roster.clone();
        let waiter = tokio::spawn(async move {
            r.wait_settled(Instant::now() + Duration::from_secs(30))
                .await
        });
        roster.set(0, AgentState::Ready, None);
        roster.set(1, AgentState::Failed, Some("x".into()));
        let (counts, settled) = waiter.await.expect("waiter");
        assert!(settled);
        assert_eq!(counts.settled(), 2);
    }
}
