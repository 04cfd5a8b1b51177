//! The simulated agents: what they share (where to connect, what to run, where to
//! report) and the agent itself, compiled once per async-nats version a scenario may
//! choose (`[fleet] async_nats`).
//!
//! The agent's code is `sim/`. It names the client only through `nats`, which
//! [`v051`] binds to async-nats 0.51 (fleetsim's own client) and [`v050`] to 0.50 (the
//! version of the real kanade agent's newest lockfile); the two differ in the JetStream
//! API requests an ordered watch's recreation sends (docs/fidelity.md, "The library
//! question"), so a herd's API load depends on which one the agents run.
//!
//! Fidelity first: an agent makes the same async-nats calls the real kanade agent makes
//! (`get_key_value`, `watch_many`, `watch`, `watch_all`, a durable pull consumer on EXEC,
//! direct `get`s, a `keys()` walk), so the broker sees the same requests. Its watches are
//! polled from the moment each is opened until the run ends, because async-nats only
//! recreates an ordered consumer while its watch is polled and a watch left unpolled for
//! 10 s reports a missed heartbeat.
//!
//! One tokio task per agent, no threads. The task runs the setup (connect, open, sync)
//! and the polling of everything opened so far in one `select!` loop; opened consumers
//! reach the loop through a channel.
//!
//! What an agent needs comes in one [`AgentEnv`], built complete by the fleet before the
//! first agent starts; the rest of the crate reaches the agents only through the narrow
//! handles the fleet hands out (the roster, the herd tracker, the write ledgers, the
//! control channels).

mod v050;
mod v051;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use tokio::sync::watch;

use super::{Control, Release, Roster};
use crate::broker::Credentials;
use crate::herd::Herd;
use crate::metrics::{MetricId, Metrics};
use crate::plan::{AsyncNats, FleetPlan, Profile};
use crate::writes::{KINDS, Ledgers};

/// Runs agent `index` until `stop` turns true, on the async-nats version the fleet
/// chose.
pub(super) async fn run(
    ctx: Arc<AgentEnv>,
    index: usize,
    stop: watch::Receiver<bool>,
    start: Start,
) {
    match ctx.fleet.async_nats {
        AsyncNats::V0_51 => v051::sim::run(ctx, index, stop, start).await,
        AsyncNats::V0_50 => v050::sim::run(ctx, index, stop, start).await,
    }
}

/// How an agent's `start` step releases it: when it may connect, and the step whose
/// phase its `connect_attempt_at` and `fire_skew` belong to.
pub(crate) struct Start {
    pub phase: usize,
    pub release: Release,
}

/// Where the agents connect.
pub struct Connection {
    /// What the agents dial: the broker's or the fault proxy's URL, without userinfo.
    pub url: String,
    /// The broker URL's credentials: `url` may be the fault proxy's, which has none,
    /// and async-nats never sends a URL's own.
    pub credentials: Credentials,
    /// Loopback source addresses the agents spread over (agent i binds
    /// 127.0.0.(1 + i mod n)); 1 = let the kernel choose, as a real agent does.
    pub local_addresses: u8,
}

/// What every agent shares: where to connect, what to open, where to report.
pub(super) struct AgentEnv {
    pub connection: Connection,
    pub fleet: FleetPlan,
    pub profile: Profile,
    pub seed: u64,
    pub roster: Arc<Roster>,
    /// Recovery of the current herd, measured with probes.
    pub herd: Arc<Herd>,
    /// The ledgers of the write jobs running: what agents received.
    pub ledgers: Arc<Ledgers>,
    /// Consumer creates the agents themselves issue (not async-nats' hidden recreations).
    pub creates: Arc<CreateCounters>,
    /// The steps' signals to every agent (`client_reconnect`, `drop_consumer`).
    pub control: Arc<Control>,
    pub metrics: Arc<Metrics>,
    pub ids: MetricIds,
    /// When the fleet was made (before any agent): origin of `connect_attempt_at`.
    pub epoch: Instant,
}

/// Consumer creates issued by agents: started and completed (ok or not), for the
/// time series' in-flight and per-interval counts.
#[derive(Default)]
pub struct CreateCounters {
    pub started: AtomicU64,
    pub completed: AtomicU64,
}

/// The metric of how sharply a herd fired: each agent's first connect attempt (of a
/// start, or after a herd trigger) minus the instant it was meant for (docs/measurements.md).
pub const FIRE_SKEW: &str = "fire_skew";
/// A herd's agents whose last reconnect attempt came before the broker was reachable
/// again and none after: how early (an HdrHistogram takes no negative skew).
pub const FIRE_SKEW_EARLY: &str = "fire_skew_early";

/// Metric ids agents record into, registered once per run.
pub(super) struct MetricIds {
    /// When the agent's first connect attempt began, since [`AgentEnv::epoch`]: its
    /// spread (max - min) over an all-at-once start is how sharp a herd fleetsim fires.
    pub connect_attempt_at: MetricId,
    /// The first connect attempt minus the instant the start step meant it for.
    pub fire_skew: MetricId,
    pub connect: MetricId,
    pub kv_bind: MetricId,
    pub consumer_create: Vec<MetricId>,
    /// Connected → every cold-start task done.
    pub sync: MetricId,
    pub ready: MetricId,
    /// Each cold-start task's time, by position (`cold_start.<task>`).
    pub cold_start: Vec<MetricId>,
    /// Each reconnect task's time, by position (`on_reconnect.<task>`).
    pub on_reconnect: Vec<MetricId>,
    /// Each periodic publish (`publish.<name>`): its ack's round trip, or for a core
    /// publish the hand-over to the client.
    pub publish: Vec<MetricId>,
    /// One command's `[on_command]` calls, received → done.
    pub on_command: MetricId,
    /// Disconnected → Connected.
    pub reconnect: MetricId,
    /// Connected → re-synced, splay included.
    pub resync: MetricId,
    /// End of the splay → re-synced.
    pub resync_after_splay: MetricId,
    /// Herd trigger → every consumer delivered the probe.
    pub recovery: MetricId,
    /// The same, for an agent a partial network cut did not hit.
    pub recovery_spared: MetricId,
    /// Intended send time → delivered, per kind of write ([`crate::writes::KINDS`]).
    pub delivery: Vec<MetricId>,
}

impl MetricIds {
    pub fn register(metrics: &Metrics, profile: &Profile) -> Self {
        MetricIds {
            connect_attempt_at: metrics.metric("connect_attempt_at"),
            fire_skew: metrics.metric(FIRE_SKEW),
            connect: metrics.metric("connect"),
            kv_bind: metrics.metric("kv_bind"),
            consumer_create: profile
                .consumers
                .iter()
                .map(|c| metrics.metric(&format!("consumer_create.{}", c.name)))
                .collect(),
            sync: metrics.metric("sync"),
            ready: metrics.metric("ready"),
            cold_start: profile
                .cold_start
                .iter()
                .map(|t| metrics.metric(&format!("cold_start.{}", t.name)))
                .collect(),
            on_reconnect: profile
                .on_reconnect
                .iter()
                .map(|t| metrics.metric(&format!("on_reconnect.{}", t.name)))
                .collect(),
            on_command: metrics.metric("on_command"),
            publish: profile
                .publishes
                .iter()
                .map(|p| metrics.metric(&format!("publish.{}", p.name)))
                .collect(),
            reconnect: metrics.metric("reconnect"),
            resync: metrics.metric("resync"),
            resync_after_splay: metrics.metric("resync_after_splay"),
            recovery: metrics.metric("recovery"),
            recovery_spared: metrics.metric("recovery_spared"),
            delivery: KINDS
                .iter()
                .map(|k| metrics.metric(&format!("delivery.{k}")))
                .collect(),
        }
    }
}

/// An agent environment for tests of the agent's futures (never polled): the fleet of the
/// 1,000-agent benchmark scenario on `version`.
#[cfg(test)]
pub(super) fn test_env(version: AsyncNats) -> Arc<AgentEnv> {
    let mut plan = crate::scenario::parse_str(
        include_str!("../../../scenarios/bench-cold-start-051.toml"),
        "bench-cold-start-051.toml",
    )
    .expect("the benchmark scenario parses");
    plan.fleet.async_nats = version;
    let connection = Connection {
        url: "nats://127.0.0.1:4222".to_string(),
        credentials: Credentials::default(),
        local_addresses: 1,
    };
    super::Fleet::new(&plan, connection, Arc::new(Metrics::new())).env
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every agent's task holds its `run` future for the whole run, so its size is memory
    /// per agent: the large steps inside it (setup, re-sync, opens) are boxed while they
    /// run. `cargo test --lib agent_futures -- --nocapture` prints the sizes.
    #[test]
    fn agent_futures_stay_small() {
        for (name, version) in AsyncNats::ALL {
            let env = test_env(version);
            let (_, stop) = watch::channel(false);
            let start = Start {
                phase: 0,
                release: Release::At(Instant::now()),
            };
            let task = run(env, 0, stop, start);
            let size = std::mem::size_of_val(&task);
            println!("async-nats {name}: an agent's task future is {size} bytes");
            assert!(size <= 2048, "async-nats {name}: {size} bytes");
        }
    }
}
