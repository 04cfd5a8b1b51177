//! Churn: single agents losing the network at random, at a steady rate, with no herd.
//!
//! A fleet's everyday life is one laptop's Wi-Fi flap here, a VPN drop there: each flap
//! costs that one agent a reconnect (and, with a startup splay, the splay), and the
//! broker never sees a herd. Seed 000 calls a splay "a net cost unless a herd actually
//! stresses the broker"; churn is where that cost is paid, so it is measured here.
//!
//! Flaps arrive as a Poisson process (exponential gaps at the step's rate, drawn with the
//! run's seed, so a rerun flaps the same agents at the same offsets). Each picks an agent
//! not already flapping and cuts it at the fault proxy for `downtime`:
//! - `reset`: its connection is dropped, and its new connections are held (a blackhole of
//!   that one agent) until the downtime is over: it notices at once and reconnects when
//!   the network is back.
//! - `blackhole`: its connection is held open and silent for the downtime, then resumes:
//!   it notices only if the downtime outlasts its keepalive.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rand::{RngExt, SeedableRng};
use tracing::{info, warn};

use crate::plan::{AgentSet, ChurnMode, Held, Hits};
use crate::proxy::{AgentProxy, CutError};
use crate::step::StepEnv;

/// What one churn step did.
#[derive(Debug, Clone, Default)]
pub struct ChurnRecord {
    /// `"3:churn"`.
    pub label: String,
    /// Flaps the schedule asked for, and those made (an arrival finding every live agent
    /// already flapping is skipped).
    pub scheduled: usize,
    pub flaps: usize,
    /// Distinct agents flapped.
    pub agents_flapped: usize,
    /// Why a flap failed at the proxy, if one did.
    pub error: Option<String>,
}

/// Blackhole ids of churn's flaps start here (a herd's hole is 0).
const FIRST_HOLE: u64 = 1 << 32;

/// The flap offsets from the step's start: a Poisson process of `per_sec` over
/// `duration`, from `seed`.
pub fn schedule(per_sec: f64, duration: Duration, seed: u64) -> Vec<Duration> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut at = 0.0f64;
    let mut out = Vec::new();
    if per_sec <= 0.0 {
        return out;
    }
    loop {
        // Exponential gap: -ln(U) / rate, U in (0, 1].
        let unit: f64 = 1.0 - rng.random::<f64>();
        at += -unit.ln() / per_sec;
        if at >= duration.as_secs_f64() {
            return out;
        }
        out.push(Duration::from_secs_f64(at));
    }
}

/// Runs a churn step: flaps at `per_sec` for `duration`, each `downtime` long, then waits
/// for the last flap to end.
pub async fn run_step(
    env: &mut StepEnv<'_>,
    proxy: &AgentProxy,
    index: usize,
    (per_sec, duration, downtime, mode): (f64, Duration, Duration, ChurnMode),
) -> ChurnRecord {
    let label = env.label(index);
    let began = Instant::now();
    let offsets = schedule(per_sec, duration, env.plan.seed ^ ((index as u64) << 8));
    let mut rng = rand::rngs::SmallRng::seed_from_u64(env.plan.seed ^ index as u64);
    let mut record = ChurnRecord {
        label: label.clone(),
        scheduled: offsets.len(),
        ..ChurnRecord::default()
    };
    info!(step = %label, flaps = offsets.len(), ?duration, ?downtime, ?mode, "churn begins");
    let mut flapping: HashSet<usize> = HashSet::new();
    let mut flapped: HashSet<usize> = HashSet::new();
    let mut running = FuturesUnordered::new();
    for (n, offset) in offsets.into_iter().enumerate() {
        // Flaps that ended meanwhile free their agents.
        let due = tokio::time::sleep_until((began + offset).into());
        tokio::pin!(due);
        loop {
            tokio::select! {
                () = &mut due => break,
                Some((agent, result)) = running.next(), if !running.is_empty() => {
                    flapping.remove(&agent);
                    note(&mut record, result);
                }
            }
        }
        let live = env.roster.live_agents();
        let free: Vec<usize> = live.into_iter().filter(|a| !flapping.contains(a)).collect();
        if free.is_empty() {
            continue;
        }
        let agent = free[rng.random_range(0..free.len())];
        flapping.insert(agent);
        flapped.insert(agent);
        record.flaps += 1;
        running.push(flap(proxy, FIRST_HOLE + n as u64, agent, downtime, mode));
    }
    while let Some((_, result)) = running.next().await {
        note(&mut record, result);
    }
    record.agents_flapped = flapped.len();
    if let Some(e) = &record.error {
        env.reasons.push(format!(
            "step {label}: a churn flap failed at the fault proxy: {e}"
        ));
    }
    info!(step = %label, flaps = record.flaps, agents = record.agents_flapped, "churn ends");
    record
}

fn note(record: &mut ChurnRecord, result: Result<(), CutError>) {
    if let Err(e) = result {
        warn!(error = %e, "churn flap failed");
        record.error.get_or_insert_with(|| e.to_string());
    }
}

/// One agent's flap: held (and, for `reset`, dropped) for `downtime`, then let go.
async fn flap(
    proxy: &AgentProxy,
    hole: u64,
    agent: usize,
    downtime: Duration,
    mode: ChurnMode,
) -> (usize, Result<(), CutError>) {
    let hits = Hits::Agents(AgentSet::from_indices([agent]));
    let result = async {
        // The hole first: a reset agent's reconnect must find the network still down.
        proxy.blackhole(hole, &hits, Held::Both).await?;
        if mode == ChurnMode::Reset {
            proxy.cut(Duration::ZERO, &hits, || {}).await?;
        }
        tokio::time::sleep(downtime).await;
        Ok(())
    }
    .await;
    // Never leave an agent in a hole because a flap failed halfway.
    let lifted = proxy.resume(hole).await;
    (agent, result.and(lifted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_a_seeded_poisson_process_at_the_rate() {
        let a = schedule(2.0, Duration::from_secs(500), 9);
        assert_eq!(a, schedule(2.0, Duration::from_secs(500), 9), "seeded");
        assert!(a.windows(2).all(|w| w[0] <= w[1]), "in order");
        // 1,000 expected; a Poisson count's sd is ~32.
        assert!((900..1100).contains(&a.len()), "{} flaps", a.len());
        assert!(schedule(0.0, Duration::from_secs(10), 1).is_empty());
    }
}
