//! Recovery after a herd trigger, measured end to end with probes.
//!
//! async-nats recreates an agent's ordered consumers inside its `Watch`es with no event
//! (nats-facts §1), so no returned call proves a consumer is live again. After a trigger
//! fleetsim writes a *probe* value (`probe:<generation>`) that reaches every consumer of
//! every agent, and an agent counts as recovered when each of its consumers has delivered
//! the current generation's probe.
//!
//! The probe load is kept small and honest: one write per shared key (one `global` write
//! reaches every agent's agent_config watch, one `commands.all` command every EXEC
//! consumer), and per-agent (or per-group) writes only for consumers that no shared key
//! reaches. [`ProbePlan::for_profile`] derives the writes from the profile's consumers,
//! so a custom profile is probed the same way.
//!
//! The room holds the herd whole: the fleet-wide recovery tracker the agents report to
//! (this file), the probe writes ([`probe`]), and the step that fires a trigger and
//! measures the recovery ([`step`], with its [`HerdRecord`]).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};

use crate::plan::Hits;

mod probe;
mod step;

pub use probe::{ProbePlan, WATCH_ALL_PROBE_KEY, parse_probe};
pub use step::{HerdRecord, Triggers, Unrecovered, run_step};

/// Fleet-wide recovery state of the current herd, shared by the agents and the runner.
pub struct Herd {
    /// Generation of the current herd's probe; 0 before the first herd.
    generation: AtomicU64,
    trigger_at: Mutex<Option<Instant>>,
    recovered: AtomicUsize,
    /// Per agent, the last generation it recovered from, and after how long (µs).
    recovered_gen: Vec<AtomicU64>,
    recovered_after_us: Vec<AtomicU64>,
    changed: Notify,
    /// Agents that opened new watches after the probe was written ask for it again: a
    /// `watch()` delivers only writes made after it opened.
    reprobe: Mutex<Option<mpsc::UnboundedSender<usize>>>,
    /// Per agent, when its reconnect attempts since the herd began started (the last
    /// [`ATTEMPTS_KEPT`]): the herd's `fire_skew` is read from them once the step knows
    /// when the broker was reachable again.
    attempts: Vec<Mutex<VecDeque<Instant>>>,
    /// Which agents the current herd's fault hit (a partial network cut spares some).
    hits: Mutex<Hits>,
    /// Origin of the µs counts below.
    epoch: Instant,
    /// When the current herd began, µs since `epoch`.
    began_us: AtomicU64,
    /// Per agent, its client's first Disconnected event since the herd began (µs since
    /// `epoch`; [`NOT_YET`] until then): how long the fault took to be noticed.
    disconnected_us: Vec<AtomicU64>,
}

/// No Disconnected event yet in this herd.
const NOT_YET: u64 = u64::MAX;

/// Reconnect attempts kept per agent and herd. Only the first at or after the instant
/// the broker was back matters, and an outage long enough to overflow this (at
/// async-nats' 4 s backoff cap, minutes) drops the earliest, which came before it.
const ATTEMPTS_KEPT: usize = 64;

/// How sharply a herd's agents fired their reconnects, against the instant the broker
/// was reachable again (`intended`).
#[derive(Debug, Default, PartialEq)]
pub struct FireSkews {
    /// Agent, first reconnect attempt at or after `intended` minus `intended`.
    pub on_time_or_late: Vec<(usize, Duration)>,
    /// Agent whose attempts all came before `intended`, and how long before its last one
    /// did (it reconnected early, or never tried again).
    pub early: Vec<(usize, Duration)>,
}

impl Herd {
    pub fn new(agents: usize) -> Self {
        Herd {
            generation: AtomicU64::new(0),
            trigger_at: Mutex::new(None),
            recovered: AtomicUsize::new(0),
            recovered_gen: (0..agents).map(|_| AtomicU64::new(0)).collect(),
            recovered_after_us: (0..agents).map(|_| AtomicU64::new(0)).collect(),
            changed: Notify::new(),
            reprobe: Mutex::new(None),
            attempts: (0..agents).map(|_| Mutex::new(VecDeque::new())).collect(),
            hits: Mutex::new(Hits::All),
            epoch: Instant::now(),
            began_us: AtomicU64::new(0),
            disconnected_us: (0..agents).map(|_| AtomicU64::new(NOT_YET)).collect(),
        }
    }

    /// Agent `agent`'s reconnect attempt begins at `at` (async-nats' reconnect delay
    /// callback: now plus the delay it returns).
    pub fn reconnect_attempt(&self, agent: usize, at: Instant) {
        let Some(attempts) = self.attempts.get(agent) else {
            return;
        };
        let mut attempts = attempts.lock().expect("herd attempts lock");
        if attempts.len() >= ATTEMPTS_KEPT {
            attempts.pop_front();
        }
        attempts.push_back(at);
    }

    /// Each of `agents`' first reconnect attempt since the herd began that came at or
    /// after `intended`, or (none did) its last one before.
    pub fn fire_skews(&self, agents: &[usize], intended: Instant) -> FireSkews {
        let mut skews = FireSkews::default();
        for &agent in agents {
            let attempts = self.attempts[agent].lock().expect("herd attempts lock");
            if let Some(at) = attempts.iter().filter(|&&at| at >= intended).min() {
                skews.on_time_or_late.push((agent, *at - intended));
            } else if let Some(at) = attempts.iter().max() {
                skews.early.push((agent, intended - *at));
            }
        }
        skews
    }

    /// Agent `agent`'s client reported its connection lost (async-nats' Disconnected
    /// event): the first time in a herd is when it noticed the fault.
    pub fn on_disconnected(&self, agent: usize) {
        if let Some(at) = self.disconnected_us.get(agent) {
            let now = self.epoch.elapsed().as_micros() as u64;
            let _ = at.compare_exchange(NOT_YET, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// How long after the herd began each of `agents` noticed it (its first Disconnected
    /// event since), for those that did.
    pub fn detections(&self, agents: &[usize]) -> Vec<(usize, Duration)> {
        let began = self.began_us.load(Ordering::Acquire);
        agents
            .iter()
            .filter_map(|&a| match self.disconnected_us[a].load(Ordering::Acquire) {
                NOT_YET => None,
                at => Some((a, Duration::from_micros(at.saturating_sub(began)))),
            })
            .collect()
    }

    /// Starts a new herd whose fault hits `hits`: the trigger fires now. Returns its
    /// probe generation, and the receiver of re-probe requests for this herd.
    pub fn begin(&self, hits: Hits) -> (u64, mpsc::UnboundedReceiver<usize>) {
        let mut trigger_at = self.trigger_at.lock().expect("herd lock");
        *self.hits.lock().expect("herd lock") = hits;
        for at in &self.disconnected_us {
            at.store(NOT_YET, Ordering::Release);
        }
        self.began_us
            .store(self.epoch.elapsed().as_micros() as u64, Ordering::Release);
        *trigger_at = Some(Instant::now());
        self.recovered.store(0, Ordering::Release);
        let (tx, rx) = mpsc::unbounded_channel();
        *self.reprobe.lock().expect("herd lock") = Some(tx);
        for attempts in &self.attempts {
            attempts.lock().expect("herd attempts lock").clear();
        }
        (self.generation.fetch_add(1, Ordering::AcqRel) + 1, rx)
    }

    /// Agent `agent` has opened new watches: write its probes again.
    pub fn request_reprobe(&self, agent: usize) {
        if let Some(tx) = self.reprobe.lock().expect("herd lock").as_ref() {
            let _ = tx.send(agent);
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Agent `agent` has seen the probe of `generation` on every consumer. Returns the time
    /// since the trigger the first time it is called for this agent and generation, and
    /// whether the herd's fault hit it (a partial cut's spared agents report their probe
    /// latency apart).
    pub fn agent_recovered(&self, agent: usize, generation: u64) -> Option<(Duration, bool)> {
        // Held across the check so a concurrent `begin` cannot slip between it and the
        // count (this runs once per agent per herd: no contention worth avoiding).
        let trigger_at = self.trigger_at.lock().expect("herd lock");
        if generation != self.generation()
            || self.recovered_gen[agent].load(Ordering::Acquire) == generation
        {
            return None;
        }
        // The time is stored before the generation: a reader that sees one sees both.
        let after = trigger_at.map(|t| t.elapsed())?;
        self.recovered_after_us[agent].store(after.as_micros() as u64, Ordering::Release);
        self.recovered_gen[agent].store(generation, Ordering::Release);
        self.recovered.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
        let hit = self.hits.lock().expect("herd lock").hits_agent(agent);
        Some((after, hit))
    }

    /// Recovery times of `agents` that recovered from the current herd, sorted.
    pub fn recovery_times(&self, agents: &[usize]) -> Vec<Duration> {
        let g = self.generation();
        let mut times: Vec<Duration> = agents
            .iter()
            .copied()
            .filter(|&a| g > 0 && self.recovered_gen[a].load(Ordering::Acquire) == g)
            .map(|a| Duration::from_micros(self.recovered_after_us[a].load(Ordering::Acquire)))
            .collect();
        times.sort();
        times
    }

    pub fn recovered(&self) -> usize {
        self.recovered.load(Ordering::Acquire)
    }

    pub fn is_recovered(&self, agent: usize) -> bool {
        let g = self.generation();
        g > 0 && self.recovered_gen[agent].load(Ordering::Acquire) == g
    }

    /// Waits until `target` agents have recovered or `deadline` passes.
    pub async fn wait_recovered(&self, target: usize, deadline: Instant) -> bool {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.recovered() >= target {
                return true;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline.into()) => return self.recovered() >= target,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_recovers_once_per_generation() {
        let herd = Herd::new(2);
        assert_eq!(herd.agent_recovered(0, 1), None, "no herd yet");
        let (g, _) = herd.begin(Hits::All);
        assert!(herd.agent_recovered(0, g).is_some());
        assert!(herd.agent_recovered(0, g).is_none(), "counted once");
        assert_eq!(herd.recovered(), 1);
        assert!(herd.is_recovered(0) && !herd.is_recovered(1));
        let (g2, _) = herd.begin(Hits::All);
        assert_eq!(herd.recovered(), 0);
        assert!(!herd.is_recovered(0));
        assert!(
            herd.agent_recovered(1, g).is_none(),
            "a stale probe does not count"
        );
        assert!(herd.agent_recovered(1, g2).is_some());
    }

    #[test]
    fn fire_skew_is_the_first_attempt_from_the_intended_instant() {
        let herd = Herd::new(3);
        let _ = herd.begin(Hits::All);
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Agent 0 tried while the broker was down, then 30 ms after it was back.
        for d in [0, 2, 6, 130, 500] {
            herd.reconnect_attempt(0, t0 + ms(d));
        }
        // Agent 1 tried only before; agent 2 never.
        herd.reconnect_attempt(1, t0 + ms(10));
        let skews = herd.fire_skews(&[0, 1, 2], t0 + ms(100));
        assert_eq!(skews.on_time_or_late, [(0, ms(30))]);
        assert_eq!(skews.early, [(1, ms(90))]);
        let _ = herd.begin(Hits::All);
        assert_eq!(
            herd.fire_skews(&[0, 1], t0),
            FireSkews::default(),
            "a new herd forgets the attempts of the last"
        );
    }
}
