//! One simulated agent: its own connection, the consumers of its profile, its tasks.
//!
//! Fidelity first: an agent makes the same async-nats calls the real kanade agent makes
//! (`get_key_value`, `watch_many`, `watch`, `watch_all`, a durable pull consumer on EXEC,
//! direct `get`s, a `keys()` walk), so the broker sees the same requests. Its watches are
//! polled from the moment each is opened until the run ends, because async-nats only
//! recreates an ordered consumer while its watch is polled and a watch left unpolled for
//! 10 s reports a missed heartbeat.
//!
//! One tokio task per agent, no threads. The task runs the setup (connect, cold-start
//! tasks) or a re-sync and the polling of everything opened so far in one `select!`
//! loop; opened consumers reach the loop through a channel.
//!
//! This code is compiled once per async-nats version (`super` is `v051` or `v050`): it
//! names the client only as `nats`.

mod calls;
mod connect;
mod streams;
mod tasks;
mod traffic;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use futures::stream::{BoxStream, FuturesUnordered};
use nats::jetstream;
use tokio::sync::{mpsc, watch};

use super::nats;
use crate::fleet::agent::{AgentEnv, Start};
use crate::fleet::{AgentState, splay};
use crate::nats_failure::FailureKind;
use crate::plan::{ConsumerKind, SplayPlacement};
use crate::provision::{group_id, pc_id};
use crate::writes::Seen;
use calls::Stores;
use streams::Streams;
use tasks::{DeliveryBoard, Signals, TaskEnv};
use traffic::Published;

/// Why an agent failed: the operation and the last error of its retries. Its text is
/// the agent's `reason` in `agents.csv`.
#[derive(Debug)]
struct AgentFailure {
    operation: String,
    message: String,
}

impl std::fmt::Display for AgentFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.operation, self.message)
    }
}

/// What a polled consumer yields: which consumer (its slot in the profile), and either
/// what the delivered value was or a failure.
type Delivery = (usize, Result<Item, String>);

/// A delivered value, as far as the measurements care: a herd probe, a write of a
/// `write`/`exec` step, or anything else (both `None`).
#[derive(Default)]
struct Item {
    probe: Option<u64>,
    write: Option<Seen>,
}
type DeliveryStream = BoxStream<'static, Delivery>;

/// What a setup or re-sync hands to the agent's polling loop.
enum Handed {
    /// A consumer. Ordered watches are closed and reopened by the `reopen_watches`
    /// splay; the durable EXEC consumer survives reconnects on its own.
    Consumer {
        stream: DeliveryStream,
        is_watch: bool,
    },
    /// A core subscription: one item per message, true for a command.
    Core(BoxStream<'static, bool>),
    /// The periodic publishes, started when the cold start starts.
    Publishes(BoxStream<'static, Published>),
}

/// Connection events the agent's loop acts on (the roster counts them separately).
#[derive(Debug, Clone, Copy)]
enum ConnEvent {
    Connected,
    Disconnected,
    /// async-nats gave up reconnecting (`[fleet] max_reconnects`) and closed the client.
    GaveUp,
}

/// What a finished setup leaves the agent: the connection and its handles.
struct Session {
    client: nats::Client,
    js: jetstream::Context,
}

/// Runs agent `index` until `stop` turns true.
///
/// One `select!` loop polls everything the agent has: the cold-start setup or a re-sync
/// (at most one at a time), the consumers opened so far, connection events, the fleet's
/// `client_reconnect` signal and the stop signal.
pub(crate) async fn run(
    ctx: Arc<AgentEnv>,
    index: usize,
    mut stop: watch::Receiver<bool>,
    start: Start,
) {
    let agent = Agent::new(&ctx, index);
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel::<Handed>();
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<ConnEvent>();
    let mut reconnect_rx = ctx.control.subscribe_reconnect();
    let mut watches: Streams<DeliveryStream> = Streams::new();
    let mut durables: Streams<DeliveryStream> = Streams::new();
    let mut core: Streams<BoxStream<'static, bool>> = Streams::new();
    let mut publishes: Streams<BoxStream<'static, Published>> = Streams::new();
    let board = DeliveryBoard::new(ctx.profile.consumers.len());
    // The `[on_command]` calls of the commands received, running beside everything else,
    // and the buckets they have bound.
    // Declared after what they borrow, so they are dropped first.
    let command_stores = tokio::sync::Mutex::new(Stores::default());
    let mut commands: FuturesUnordered<futures::future::BoxFuture<'_, ()>> =
        FuturesUnordered::new();
    let mut probes = ProbeProgress::default();
    let mut drop_rx = ctx.control.subscribe_drop();
    // Consumers a `drop_consumer` step told this agent to drop: their deliveries are
    // discarded unseen, as if the consumer were gone.
    let mut dropped: u64 = 0;

    let mut setup = Some(Box::pin(agent.setup(
        opened_tx.clone(),
        events_tx,
        &board,
        start,
    )));
    let mut resync: Option<futures::future::BoxFuture<'_, Result<(), AgentFailure>>> = None;
    let mut session: Option<Session> = None;
    let mut disconnected_at: Option<Instant> = None;
    loop {
        tokio::select! {
            result = async { setup.as_mut().expect("guarded").await }, if setup.is_some() => {
                setup = None;
                match result {
                    Ok(s) => {
                        session = Some(s);
                        // A disconnect during the setup left the agent in the loop below.
                        if ctx.roster.cell(index).state() != AgentState::Failed {
                            ctx.roster.set(index, AgentState::Ready, None);
                        }
                    }
                    Err(failure) => ctx.roster.set(index, AgentState::Failed, Some(failure.to_string())),
                }
            }
            result = async { resync.as_mut().expect("guarded").await }, if resync.is_some() => {
                resync = None;
                match result {
                    Ok(()) => ctx.roster.set(index, AgentState::Ready, None),
                    Err(failure) => ctx.roster.set(index, AgentState::Failed, Some(failure.to_string())),
                }
            }
            Some(event) = events_rx.recv() => {
                if let ConnEvent::GaveUp = event {
                    // The client is closed for good: nothing the agent does can work
                    // again, so it ends here, in a known state.
                    setup = None;
                    resync = None;
                    let reason = format!(
                        "gave up reconnecting: {} attempts failed ([fleet] max_reconnects), async-nats closed the client; raise max_reconnects, or leave it out to retry forever as the real agent does",
                        ctx.fleet.max_reconnects.unwrap_or(0)
                    );
                    ctx.roster.set(index, AgentState::Failed, Some(reason));
                    continue;
                }
                let Some(s) = session.as_ref() else { continue };
                match event {
                    ConnEvent::Disconnected => {
                        disconnected_at.get_or_insert_with(Instant::now);
                        board.disconnected();
                        resync = None;
                        if ctx.roster.cell(index).state() == AgentState::Ready {
                            ctx.roster.set(index, AgentState::Recovering, None);
                        }
                        if agent.placement() == Some(SplayPlacement::ReopenWatches) {
                            watches = Streams::new();
                        }
                    }
                    ConnEvent::GaveUp => {}
                    ConnEvent::Connected => {
                        let Some(lost) = disconnected_at.take() else { continue };
                        let metrics = &ctx.metrics;
                        metrics.record(index, ctx.ids.reconnect, lost.elapsed());
                        if ctx.roster.cell(index).state() == AgentState::Failed {
                            continue;
                        }
                        let reopen = agent.placement() == Some(SplayPlacement::ReopenWatches);
                        resync = Some(Box::pin(agent.resync(
                            s.client.clone(),
                            s.js.clone(),
                            opened_tx.clone(),
                            reopen,
                            &board,
                        )));
                    }
                }
            }
            Some(handed) = opened_rx.recv() => match handed {
                Handed::Consumer { stream, is_watch: true } => watches.push(stream),
                Handed::Consumer { stream, is_watch: false } => durables.push(stream),
                Handed::Core(stream) => core.push(stream),
                Handed::Publishes(stream) => publishes.push(stream),
            },
            Some((slot, outcome)) = watches.next(), if !watches.is_empty() => {
                if dropped & (1 << slot) == 0 {
                    board.delivered(slot);
                    agent.on_delivery(&mut probes, slot, outcome);
                }
            }
            Some((slot, outcome)) = durables.next(), if !durables.is_empty() => {
                if dropped & (1 << slot) == 0 {
                    board.delivered(slot);
                    agent.on_delivery(&mut probes, slot, outcome);
                }
            }
            Some(is_command) = core.next(), if !core.is_empty() => {
                ctx.roster.cell(index).count_core_received();
                if is_command
                    && !ctx.profile.on_command.is_empty()
                    && let Some(s) = session.as_ref()
                {
                    let (client, js, handed) = (s.client.clone(), s.js.clone(), opened_tx.clone());
                    let (agent, board, stores) = (&agent, &board, &command_stores);
                    commands.push(Box::pin(async move {
                        let signals = Signals::default();
                        let env = TaskEnv { client: &client, js: &js, handed: &handed, signals: &signals, board };
                        agent.on_command(&env, stores).await;
                    }));
                }
            }
            Some(()) = commands.next(), if !commands.is_empty() => {}
            Some((slot, outcome)) = publishes.next(), if !publishes.is_empty() => {
                agent.on_published(slot, outcome);
            }
            Ok(()) = drop_rx.changed() => {
                if let Some((a, slot)) = *drop_rx.borrow_and_update()
                    && a == index
                {
                    dropped |= 1 << slot;
                }
            }
            Ok(()) = reconnect_rx.changed() => {
                if let Some(s) = session.as_ref() {
                    let client = s.client.clone();
                    // force_reconnect waits for the connection handler; the loop must not.
                    tokio::spawn(async move { let _ = client.force_reconnect().await; });
                }
            }
            _ = stop.changed() => break,
        }
    }
    // Commands already received are answered before the agent stops (their calls are
    // what the run measured as sent to it); the fleet's stop deadline bounds the wait.
    while commands.next().await.is_some() {}
}

/// Which consumers have delivered the current herd's probe.
#[derive(Default)]
struct ProbeProgress {
    generation: u64,
    seen: u64,
}

struct Agent<'a> {
    ctx: &'a AgentEnv,
    index: usize,
    pc: String,
    group: String,
}

impl<'a> Agent<'a> {
    fn new(ctx: &'a AgentEnv, index: usize) -> Self {
        Agent {
            ctx,
            index,
            pc: pc_id(index),
            group: group_id(index, ctx.fleet.groups),
        }
    }

    fn placement(&self) -> Option<SplayPlacement> {
        self.ctx.fleet.splay.map(|s| s.placement)
    }

    /// This agent's splay delay (zero without a splay).
    fn splay(&self) -> Duration {
        self.ctx
            .fleet
            .splay
            .map_or(Duration::ZERO, |s| splay::delay(&self.pc, s.window))
    }

    fn on_delivery(&self, probes: &mut ProbeProgress, slot: usize, outcome: Result<Item, String>) {
        match outcome {
            Ok(item) => {
                if let Some(seen) = item.write
                    && let Some(phase) = self.ctx.ledgers.record(self.index, &seen)
                {
                    // Measured in the phase of the step that sent the write.
                    let latency = SystemTime::now()
                        .duration_since(seen.intended)
                        .unwrap_or_default();
                    self.ctx.metrics.record_in(
                        phase,
                        self.index,
                        self.ctx.ids.delivery[seen.kind],
                        latency,
                    );
                }
                let Some(generation) = item.probe else { return };
                if generation > probes.generation {
                    *probes = ProbeProgress {
                        generation,
                        seen: 0,
                    };
                }
                if generation == probes.generation {
                    probes.seen |= 1 << slot;
                    let all = (1u64 << self.ctx.profile.consumers.len()) - 1;
                    if probes.seen == all
                        && let Some((t, hit)) =
                            self.ctx.herd.agent_recovered(self.index, generation)
                    {
                        // An agent a partial cut spared reports apart: its probe's
                        // latency is what the rest of the fleet saw during the event.
                        let ids = &self.ctx.ids;
                        let metric = if hit {
                            ids.recovery
                        } else {
                            ids.recovery_spared
                        };
                        self.ctx.metrics.record(self.index, metric, t);
                    }
                }
            }
            Err(message) => {
                let op = format!("watch.{}", self.ctx.profile.consumers[slot].name);
                self.ctx.metrics.error(
                    self.index,
                    &op,
                    FailureKind::classify_text(&message),
                    &message,
                );
            }
        }
    }

    /// Connect, then the profile's cold-start tasks (consumers, reads, subscriptions)
    /// and its periodic publishes. Returns the session, or the reason the agent failed.
    ///
    /// The connect options are built before the agent waits for its release, so that
    /// between the release and the first attempt nothing runs but async-nats' connect.
    async fn setup(
        &self,
        handed: mpsc::UnboundedSender<Handed>,
        events: mpsc::UnboundedSender<ConnEvent>,
        board: &DeliveryBoard,
        start: Start,
    ) -> Result<Session, AgentFailure> {
        let metrics = &self.ctx.metrics;
        let cold_splay = self
            .ctx
            .fleet
            .splay
            .filter(|s| s.on_start)
            .map(|s| (s.placement, self.splay()));
        let prepared = self.connect_options(events.clone());
        let intended = start.release.wait().await;
        let started = Instant::now();
        if let Some((SplayPlacement::ReconnectDelay, delay)) = cold_splay {
            tokio::time::sleep(delay).await;
        }
        let first = connect::FirstAttempt {
            phase: start.phase,
            intended,
        };
        // Each step's future is boxed while it runs: the setup future itself would
        // otherwise be as large as the largest of them for the agent's whole setup.
        let client = Box::pin(self.connect(events, prepared, first)).await;
        metrics.record(self.index, self.ctx.ids.connect, started.elapsed());
        if let Some((SplayPlacement::ReopenWatches | SplayPlacement::BeforeGets, delay)) =
            cold_splay
        {
            tokio::time::sleep(delay).await;
        }

        self.ctx.roster.set(self.index, AgentState::Opening, None);
        let js = jetstream::new(client.clone());
        if !self.ctx.profile.publishes.is_empty() {
            let _ = handed.send(Handed::Publishes(self.publishes(&client, &js)));
        }
        let t = Instant::now();
        let signals = Signals::default();
        let env = TaskEnv {
            client: &client,
            js: &js,
            handed: &handed,
            signals: &signals,
            board,
        };
        Box::pin(self.run_tasks(&self.ctx.profile.cold_start, &self.ctx.ids.cold_start, &env))
            .await?;
        metrics.record(self.index, self.ctx.ids.sync, t.elapsed());
        metrics.record(self.index, self.ctx.ids.ready, started.elapsed());
        Ok(Session { client, js })
    }

    /// Opens consumer `slot` of the profile and hands it to the polling loop, recording
    /// the create's latency.
    async fn open_one(
        &self,
        js: &jetstream::Context,
        stores: &mut Stores,
        slot: usize,
        handed: &mpsc::UnboundedSender<Handed>,
    ) -> Result<(), AgentFailure> {
        let spec = &self.ctx.profile.consumers[slot];
        let is_watch = !matches!(spec.kind, ConsumerKind::ExecReplay);
        let t = Instant::now();
        self.ctx.creates.started.fetch_add(1, Ordering::Relaxed);
        let result = Box::pin(self.open(js, stores, &spec.kind, slot)).await;
        self.ctx.creates.completed.fetch_add(1, Ordering::Relaxed);
        let stream = result?;
        self.ctx
            .metrics
            .record(self.index, self.ctx.ids.consumer_create[slot], t.elapsed());
        // The receiver lives as long as the agent's loop; a send error means it is stopping.
        let _ = handed.send(Handed::Consumer { stream, is_watch });
        Ok(())
    }

    /// After a Disconnected → Connected transition: the splay (where the scenario puts
    /// it), reopening the watches (`reopen_watches`), then the profile's reconnect
    /// tasks. async-nats itself recreates the watches and re-sends the subscriptions.
    async fn resync(
        &self,
        client: nats::Client,
        js: jetstream::Context,
        handed: mpsc::UnboundedSender<Handed>,
        reopen: bool,
        board: &DeliveryBoard,
    ) -> Result<(), AgentFailure> {
        let connected = Instant::now();
        let splay = match self.placement() {
            Some(SplayPlacement::BeforeGets | SplayPlacement::ReopenWatches) => self.splay(),
            _ => Duration::ZERO,
        };
        tokio::time::sleep(splay).await;
        self.ctx
            .roster
            .cell(self.index)
            .set_last_resync(splay, connected.elapsed());
        let after_splay = Instant::now();
        if reopen {
            let mut stores = Stores::default();
            for (slot, spec) in self.ctx.profile.consumers.iter().enumerate() {
                if !matches!(spec.kind, ConsumerKind::ExecReplay) {
                    Box::pin(self.open_one(&js, &mut stores, slot, &handed)).await?;
                }
            }
            // A new watch() delivers only later writes: ask for the probe again.
            self.ctx.herd.request_reprobe(self.index);
        }
        let signals = Signals::default();
        let env = TaskEnv {
            client: &client,
            js: &js,
            handed: &handed,
            signals: &signals,
            board,
        };
        Box::pin(self.run_tasks(
            &self.ctx.profile.on_reconnect,
            &self.ctx.ids.on_reconnect,
            &env,
        ))
        .await?;
        let metrics = &self.ctx.metrics;
        metrics.record(self.index, self.ctx.ids.resync, connected.elapsed());
        metrics.record(
            self.index,
            self.ctx.ids.resync_after_splay,
            after_splay.elapsed(),
        );
        Ok(())
    }

    fn on_published(&self, slot: usize, outcome: Result<Duration, String>) {
        match outcome {
            Ok(took) => {
                self.ctx.roster.cell(self.index).count_published();
                self.ctx
                    .metrics
                    .record(self.index, self.ctx.ids.publish[slot], took);
            }
            Err(message) => {
                let op = format!("publish.{}", self.ctx.profile.publishes[slot].name);
                self.ctx.metrics.error(
                    self.index,
                    &op,
                    FailureKind::classify_text(&message),
                    &message,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The setup future lives (boxed) from an agent's spawn until it is ready; its own
    /// steps (connect, the cold-start tasks) are boxed inside it while they run.
    /// `cargo test --lib agent_futures -- --nocapture` prints the size.
    #[test]
    fn agent_futures_setup_stays_small() {
        let env = crate::fleet::agent::test_env(crate::plan::AsyncNats::default());
        let agent = Agent::new(&env, 0);
        let (handed, _) = mpsc::unbounded_channel();
        let (events, _) = mpsc::unbounded_channel();
        let board = DeliveryBoard::new(env.profile.consumers.len());
        let start = Start {
            phase: 0,
            release: crate::fleet::Release::At(Instant::now()),
        };
        let setup = agent.setup(handed, events, &board, start);
        let size = std::mem::size_of_val(&setup);
        println!(
            "{}: an agent's setup future is {size} bytes",
            module_path!()
        );
        assert!(size <= 2048, "{size} bytes");
    }
}
