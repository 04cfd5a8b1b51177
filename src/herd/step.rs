//! A herd step: fire the trigger, write the probes as soon as the broker takes writes,
//! wait until every agent that was not failed has recovered (or the timeout), and
//! record who recovered when ([`HerdRecord`], written to `recovery.csv` and
//! `unrecovered.csv` by the results).

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{Herd, ProbePlan};
use crate::broker::{Broker, BrokerError};
use crate::fleet::agent::{FIRE_SKEW, FIRE_SKEW_EARLY};
use crate::fleet::{AgentState, Control};
use crate::plan::{AfterBlackhole, CutMode, Hits, StopSignal, Trigger};
use crate::provision::pc_id;
use crate::proxy::{AgentProxy, CutError};
use crate::step::StepEnv;

/// What one herd step measured.
#[derive(Debug, Clone)]
pub struct HerdRecord {
    /// `"4:broker_restart"`.
    pub label: String,
    pub trigger: String,
    /// When the trigger fired, on the run's clock.
    pub trigger_secs: f64,
    /// Agents expected to recover: every agent the trigger hit that was not already
    /// failed when it fired.
    pub agents: usize,
    /// Each recovered agent's time from the trigger to its last consumer's probe, sorted.
    pub recovery_times: Vec<Duration>,
    /// Agents a partial network cut spared (not failed when it fired), and their probe
    /// latencies, sorted: what the rest of the fleet saw during the event.
    pub spared: usize,
    pub spared_times: Vec<Duration>,
    /// Hit agents whose client noticed the fault (a Disconnected event after it fired):
    /// a blackhole shorter than the keepalive goes unnoticed.
    pub detected: usize,
    pub probe_writes: usize,
    pub probe_writes_acked: usize,
    /// Trigger → the broker acknowledged the first probe write (it accepts writes again).
    pub first_probe_ack: Option<Duration>,
    pub unrecovered: Vec<Unrecovered>,
    /// Why the trigger itself failed (a command's exit status, a broker that did not
    /// come back), if it did.
    pub trigger_error: Option<String>,
}

impl HerdRecord {
    /// Time from the trigger until `fraction` of [`HerdRecord::agents`] had recovered;
    /// `None` if that many never did.
    pub fn time_to(&self, fraction: f64) -> Option<Duration> {
        time_to_share(&self.recovery_times, self.agents, fraction)
    }

    /// The same for the agents a partial cut spared.
    pub fn spared_time_to(&self, fraction: f64) -> Option<Duration> {
        time_to_share(&self.spared_times, self.spared, fraction)
    }
}

/// The time by which `fraction` of `of` agents had recovered, from their sorted `times`;
/// `None` if that many never did (or there were none).
fn time_to_share(times: &[Duration], of: usize, fraction: f64) -> Option<Duration> {
    if of == 0 {
        return None;
    }
    let needed = ((of as f64) * fraction).ceil().max(1.0) as usize;
    times.get(needed - 1).copied()
}

/// An agent that had not recovered when the herd step's timeout passed.
#[derive(Debug, Clone)]
pub struct Unrecovered {
    pub pc: String,
    pub state: String,
    pub connected: bool,
}

/// What a trigger can act on.
pub struct Triggers<'a> {
    /// `broker_restart` and `lame_duck` stop and start the embedded broker.
    pub broker: &'a mut Broker,
    /// `network_cut` cuts every agent connection at the proxy.
    pub proxy: Option<&'a AgentProxy>,
    /// `client_reconnect` tells every agent to reconnect.
    pub control: &'a Control,
}

/// Fires `trigger`, writes the probes as soon as the broker takes writes, and waits
/// until every agent that was not failed has recovered (or `recover_timeout`).
pub async fn run_step(
    env: &mut StepEnv<'_>,
    herd: &Herd,
    triggers: Triggers<'_>,
    index: usize,
    trigger: &Trigger,
    recover_timeout: Duration,
) -> HerdRecord {
    let label = &env.label(index);
    let roster = env.roster;
    let live = roster.live_agents();
    let hits = match trigger {
        Trigger::NetworkCut { target, .. } => target.resolve(
            env.plan.fleet.agents,
            env.plan.fleet.groups,
            env.plan.seed ^ index as u64,
        ),
        _ => Hits::All,
    };
    let (expected, spared): (Vec<usize>, Vec<usize>) =
        live.iter().partition(|&&a| hits.hits_agent(a));
    let everyone = &live;
    let connects_before: Vec<u64> = expected
        .iter()
        .map(|&a| roster.cell(a).connects())
        .collect();
    let probes = ProbePlan::for_profile(
        &env.plan.profile,
        env.plan.fleet.agents,
        env.plan.fleet.groups,
    );
    let (generation, reprobes) = herd.begin(hits.clone());
    let fired = Instant::now();
    let deadline = fired + recover_timeout;
    let all_recovered = herd.wait_recovered(everyone.len(), deadline);
    let probing = probes.run(env.js, generation, reprobes, deadline, all_recovered);
    info!(step = %label, agents = expected.len(), spared = spared.len(), "herd trigger fires");

    let mut trigger_error = None;
    // The instant the agents can reach the broker again: their reconnects' `fire_skew`
    // counts from it (docs/measurements.md).
    let mut reachable: Option<Instant> = None;
    let probes_written = match trigger {
        Trigger::NetworkCut {
            refuse_for,
            mode: CutMode::Reset,
            ..
        } => {
            // The control connection does not go through the proxy: the broker takes
            // the probes while the agents are cut off. They go out once the cut has
            // closed every agent connection: a probe written earlier can still reach
            // an agent through a connection not closed yet, and that agent would
            // "recover" without reconnecting.
            let proxy = triggers
                .proxy
                .expect("the scenario parser requires a proxy for network_cut");
            let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
            let cutting = async {
                let cut = proxy
                    .cut(*refuse_for, &hits, move || {
                        let _ = closed_tx.send(());
                    })
                    .await;
                // The proxy accepts again.
                (cut, Instant::now())
            };
            let probing = async move {
                // A cut that failed before closing anything drops the sender: the
                // probes go out all the same.
                let _ = closed_rx.await;
                probing.await
            };
            let ((cut, cut_ended), written) = tokio::join!(cutting, probing);
            reachable = Some(cut_ended);
            match cut {
                Ok(dropped) => info!(step = %label, dropped, "network cut"),
                Err(e) => trigger_error = Some(TriggerError::from(e)),
            }
            written
        }
        Trigger::NetworkCut {
            mode:
                CutMode::Blackhole {
                    downtime,
                    after,
                    held,
                },
            ..
        } => {
            // Nothing gets through from now on, so the probes go out at once: an agent
            // whose connection outlives the hole gets them late through it, one that
            // noticed gets them after it reconnects.
            let proxy = triggers
                .proxy
                .expect("the scenario parser requires a proxy for network_cut");
            let holding = async {
                proxy.blackhole(HERD_HOLE, &hits, *held).await?;
                info!(step = %label, ?downtime, ?after, ?held, "blackhole: nothing gets through");
                tokio::time::sleep(*downtime).await;
                if *after == AfterBlackhole::Reset {
                    let dropped = proxy.cut(Duration::ZERO, &hits, || {}).await?;
                    info!(step = %label, dropped, "blackhole ends in a reset");
                }
                proxy.resume(HERD_HOLE).await?;
                Ok::<_, CutError>(Instant::now())
            };
            let (held, written) = tokio::join!(holding, probing);
            match held {
                Ok(lifted) => reachable = Some(lifted),
                Err(e) => {
                    // Never leave the fleet in a hole because a step failed.
                    let _ = proxy.resume(HERD_HOLE).await;
                    trigger_error = Some(TriggerError::from(e));
                }
            }
            written
        }
        other => {
            if let Err(e) = fire(triggers.broker, triggers.control, other, &mut reachable).await {
                warn!(step = %label, error = %e, "herd trigger failed");
                trigger_error = Some(e);
            }
            if matches!(other, Trigger::ClientReconnect) {
                // The old connections would deliver the probes before they close:
                // write them only once every agent has reconnected.
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
    let (counts, _) = roster.wait_until(deadline, |c| c.recovering == 0).await;
    let resyncing = counts.recovering;
    if let Some(intended) = reachable {
        record_fire_skew(env, herd, index, &expected, intended);
    }
    let detections = herd.detections(&expected);
    let detect = env.metrics.metric(DETECT);
    for &(agent, took) in &detections {
        env.metrics.record_in(index, agent, detect, took);
    }
    let first_probe_ack = probes_written.first_ack.map(|t| t - fired);
    let recovered = herd.recovered() >= everyone.len();
    if recovered && resyncing > 0 {
        env.reasons.push(format!(
            "step {label}: {resyncing} of {} agents delivered the probe but were still \
                 re-syncing after {recover_timeout:?}",
            everyone.len()
        ));
    }
    let unrecovered: Vec<Unrecovered> = everyone
        .iter()
        .filter(|&&a| !herd.is_recovered(a))
        .map(|&a| Unrecovered {
            pc: pc_id(a),
            state: roster.cell(a).state().name().to_string(),
            connected: roster.cell(a).is_connected(),
        })
        .collect();
    if !recovered {
        env.reasons.push(format!(
            "step {label}: {} of {} agents not recovered within {recover_timeout:?}",
            unrecovered.len(),
            everyone.len()
        ));
    }
    if let Some(e) = &trigger_error {
        env.reasons
            .push(format!("step {label}: trigger failed: {e}"));
    }
    let record = HerdRecord {
        label: label.clone(),
        trigger: trigger.kind().to_string(),
        trigger_secs: (fired - env.run_start).as_secs_f64(),
        agents: expected.len(),
        recovery_times: herd.recovery_times(&expected),
        spared: spared.len(),
        spared_times: herd.recovery_times(&spared),
        detected: detections.len(),
        probe_writes: probes_written.writes,
        probe_writes_acked: probes_written.acked,
        first_probe_ack,
        unrecovered,
        trigger_error: trigger_error.map(|e| e.to_string()),
    };
    info!(
        step = %label,
        recovered = record.recovery_times.len(),
        of = record.agents,
        p50 = ?record.time_to(0.5),
        p100 = ?record.time_to(1.0),
        detected = record.detected,
        spared = record.spared,
        "herd recovery"
    );
    record
}

/// The id of a herd's blackhole at the proxy (churn's flaps use their own).
const HERD_HOLE: u64 = 0;

/// The metric of how long a herd's hit agents took to notice the fault: the trigger to
/// their client's first Disconnected event (docs/measurements.md).
pub const DETECT: &str = "detect";

/// Records the herd's `fire_skew` in its phase: each agent's first reconnect attempt at
/// or after `intended` minus `intended`, and for an agent whose attempts all came
/// before it, `fire_skew_early` (how early its last one was).
fn record_fire_skew(
    env: &StepEnv<'_>,
    herd: &Herd,
    phase: usize,
    agents: &[usize],
    intended: Instant,
) {
    let skews = herd.fire_skews(agents, intended);
    let metrics = env.metrics;
    let (late, early) = (metrics.metric(FIRE_SKEW), metrics.metric(FIRE_SKEW_EARLY));
    for &(agent, skew) in &skews.on_time_or_late {
        metrics.record_in(phase, agent, late, skew);
    }
    for &(agent, before) in &skews.early {
        metrics.record_in(phase, agent, early, before);
    }
    if !skews.early.is_empty() {
        info!(
            step = %env.label(phase),
            early = skews.early.len(),
            "agents reconnected before the broker was reachable again (fire_skew_early)"
        );
    }
}

/// Why a herd trigger failed (written to `recovery.csv`'s `trigger_error`).
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("{0} needs the embedded broker")]
    NeedsEmbeddedBroker(&'static str),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("fault proxy: {0}")]
    Proxy(#[from] CutError),
    #[error("command did not finish within {0:?}")]
    CommandTimedOut(Duration),
    #[error("command could not be started: {0}")]
    CommandNotStarted(std::io::Error),
    #[error("command exited with {0}")]
    CommandFailed(std::process::ExitStatus),
}

/// Fires a trigger other than `network_cut`; returns why it failed, if it did. Sets
/// `reachable` to the instant the agents' reconnects are meant for: the restarted
/// broker's start (`broker_restart`, `lame_duck`), the signal (`client_reconnect`), the
/// command's exit (`command`).
async fn fire(
    broker: &mut Broker,
    control: &Control,
    trigger: &Trigger,
    reachable: &mut Option<Instant>,
) -> Result<(), TriggerError> {
    match trigger {
        Trigger::BrokerRestart { signal, downtime } => {
            let broker = broker
                .embedded()
                .ok_or(TriggerError::NeedsEmbeddedBroker("broker_restart"))?;
            broker.stop(*signal == StopSignal::Kill).await?;
            tokio::time::sleep(*downtime).await;
            *reachable = Some(Instant::now());
            Ok(broker.start_again().await?)
        }
        Trigger::LameDuck => {
            let broker = broker
                .embedded()
                .ok_or(TriggerError::NeedsEmbeddedBroker("lame_duck"))?;
            broker.lame_duck().await?;
            *reachable = Some(Instant::now());
            Ok(broker.start_again().await?)
        }
        Trigger::ClientReconnect => {
            *reachable = Some(Instant::now());
            control.reconnect_all();
            Ok(())
        }
        Trigger::Command { command, timeout } => {
            let result = run_command(command, *timeout).await;
            *reachable = Some(Instant::now());
            result
        }
        Trigger::NetworkCut { .. } => unreachable!("network_cut is fired with its probes"),
    }
}

/// Runs `command` with `sh -c`, logging its output; fails on a non-zero exit or timeout.
async fn run_command(command: &str, timeout: Duration) -> Result<(), TriggerError> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(timeout, child).await {
        Err(_) => return Err(TriggerError::CommandTimedOut(timeout)),
        Ok(Err(e)) => return Err(TriggerError::CommandNotStarted(e)),
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
        Err(TriggerError::CommandFailed(output.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_percentiles_count_unrecovered_agents_as_not_there_yet() {
        let herd = HerdRecord {
            label: "3:broker_restart".into(),
            trigger: "broker_restart".into(),
            trigger_secs: 1.0,
            agents: 4,
            recovery_times: vec![1, 2, 3].into_iter().map(Duration::from_secs).collect(),
            spared: 0,
            spared_times: vec![],
            detected: 4,
            probe_writes: 9,
            probe_writes_acked: 9,
            first_probe_ack: Some(Duration::from_millis(500)),
            unrecovered: vec![],
            trigger_error: None,
        };
        assert_eq!(herd.time_to(0.5), Some(Duration::from_secs(2)));
        assert_eq!(herd.time_to(0.75), Some(Duration::from_secs(3)));
        assert_eq!(herd.time_to(0.99), None, "the 4th agent never recovered");
        assert_eq!(herd.time_to(1.0), None);
    }
}
