//! One simulated agent: its own connection, the consumers of its profile, its sync.
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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, consumer, kv};
use futures::StreamExt;
use futures::stream::{BoxStream, SelectAll};
use rand::{RngExt, SeedableRng};
use tokio::sync::{mpsc, watch};

use crate::fleet::splay;
use crate::fleet::{AgentState, Roster};
use crate::herd::{Herd, parse_probe};
use crate::metrics::{MetricId, Metrics};
use crate::nats_failure::ErrorKind;
use crate::plan::{Backoff, ConsumerKind, FleetPlan, Profile, SplayPlacement, SyncOp};
use crate::provision::{group_id, pc_id};
use crate::writes::{KINDS, Ledger, Seen, classify_exec, classify_kv, parse_write};

/// What every agent shares: where to connect, what to open, where to record.
pub struct AgentContext {
    /// What the agents dial: the broker's or the fault proxy's URL, without userinfo.
    pub url: String,
    /// The broker URL's credentials: `url` may be the fault proxy's, which has none,
    /// and async-nats never sends a URL's own.
    pub credentials: crate::broker::Credentials,
    pub fleet: FleetPlan,
    pub profile: Profile,
    pub seed: u64,
    pub roster: Arc<Roster>,
    pub metrics: Arc<Metrics>,
    pub ids: MetricIds,
    /// Deliveries seen, per consumer of the profile (same order).
    pub deliveries: Vec<AtomicU64>,
    /// Recovery of the current herd, measured with probes.
    pub herd: Herd,
    /// Bumped by a `client_reconnect` step: every agent calls `force_reconnect()`.
    pub reconnect_all: watch::Sender<u64>,
    /// Consumer creates the agents themselves issue (not async-nats' hidden recreations).
    pub creates: CreateCounters,
    /// What agents received during the current write step.
    pub ledger: Ledger,
    /// Set by a `drop_consumer` step: (agent, consumer slot).
    pub drop_consumer: watch::Sender<Option<(usize, usize)>>,
    /// When this context was made (before any agent): origin of `connect_attempt_at`.
    pub epoch: Instant,
    /// Loopback source addresses the agents spread over (agent i binds
    /// 127.0.0.(1 + i mod n)); 1 = let the kernel choose, as a real agent does.
    pub local_addresses: u8,
}

/// Consumer creates issued by agents: started and completed (ok or not), for the
/// time series' in-flight and per-interval counts.
#[derive(Default)]
pub struct CreateCounters {
    pub started: AtomicU64,
    pub completed: AtomicU64,
}

/// Metric ids agents record into, registered once per run.
pub struct MetricIds {
    /// When the agent's first connect attempt began, since [`AgentContext::epoch`]: its
    /// spread (max - min) over an all-at-once start is how sharp a herd fleetsim fires.
    pub connect_attempt_at: MetricId,
    pub connect: MetricId,
    pub kv_bind: MetricId,
    pub consumer_create: Vec<MetricId>,
    pub sync: MetricId,
    pub ready: MetricId,
    /// Disconnected → Connected.
    pub reconnect: MetricId,
    /// Connected → re-synced, splay included.
    pub resync: MetricId,
    /// End of the splay → re-synced.
    pub resync_after_splay: MetricId,
    /// Herd trigger → every consumer delivered the probe.
    pub recovery: MetricId,
    /// Intended send time → delivered, per kind of write ([`crate::writes::KINDS`]).
    pub delivery: Vec<MetricId>,
}

impl AgentContext {
    pub fn new(
        url: String,
        fleet: FleetPlan,
        profile: Profile,
        seed: u64,
        metrics: Arc<Metrics>,
    ) -> Self {
        let ids = MetricIds {
            connect_attempt_at: metrics.metric("connect_attempt_at"),
            connect: metrics.metric("connect"),
            kv_bind: metrics.metric("kv_bind"),
            consumer_create: profile
                .consumers
                .iter()
                .map(|c| metrics.metric(&format!("consumer_create.{}", c.name)))
                .collect(),
            sync: metrics.metric("sync"),
            ready: metrics.metric("ready"),
            reconnect: metrics.metric("reconnect"),
            resync: metrics.metric("resync"),
            resync_after_splay: metrics.metric("resync_after_splay"),
            recovery: metrics.metric("recovery"),
            delivery: KINDS
                .iter()
                .map(|k| metrics.metric(&format!("delivery.{k}")))
                .collect(),
        };
        let deliveries = profile
            .consumers
            .iter()
            .map(|_| AtomicU64::new(0))
            .collect();
        let fleet_agents = fleet.agents;
        AgentContext {
            roster: Arc::new(Roster::new(fleet.agents)),
            url,
            credentials: crate::broker::Credentials::None,
            fleet,
            profile,
            seed,
            metrics,
            ids,
            deliveries,
            herd: Herd::new(fleet_agents),
            reconnect_all: watch::channel(0).0,
            creates: CreateCounters::default(),
            ledger: Ledger::new(fleet_agents),
            drop_consumer: watch::channel(None).0,
            epoch: Instant::now(),
            local_addresses: 1,
        }
    }

    pub fn deliveries(&self) -> Vec<u64> {
        self.deliveries
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .collect()
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

/// A consumer stream handed from a setup or re-sync to the agent's polling loop.
struct Opened {
    stream: DeliveryStream,
    /// Ordered watches are closed and reopened by the `reopen_watches` splay; the durable
    /// EXEC consumer survives reconnects on its own.
    is_watch: bool,
}

/// Connection events the agent's loop acts on (the roster counts them separately).
#[derive(Debug, Clone, Copy)]
enum ConnEvent {
    Connected,
    Disconnected,
}

/// What a finished setup leaves the agent: the connection and its handles.
struct Session {
    client: async_nats::Client,
    js: jetstream::Context,
    stores: Stores,
}

/// The agent's bound buckets, by name. A `kv::Store` carries its stream's whole info
/// (~1.4 KiB inline), so the stores sit in a vector sized once for the profile's buckets
/// instead of a hash table that rehashes and keeps empty slots of that size.
#[derive(Clone)]
struct Stores(Vec<(String, kv::Store)>);

impl Stores {
    fn for_profile(profile: &Profile) -> Self {
        let mut names: Vec<&str> = profile
            .consumers
            .iter()
            .filter_map(|c| match &c.kind {
                ConsumerKind::Watch { bucket, .. }
                | ConsumerKind::WatchMany { bucket, .. }
                | ConsumerKind::WatchAll { bucket } => Some(bucket.as_str()),
                ConsumerKind::ExecReplay => None,
            })
            .chain(profile.sync.iter().map(|op| match op {
                SyncOp::Get { bucket, .. } | SyncOp::Walk { bucket } => bucket.as_str(),
            }))
            .collect();
        names.sort_unstable();
        names.dedup();
        Stores(Vec::with_capacity(names.len()))
    }

    fn get(&self, bucket: &str) -> Option<&kv::Store> {
        self.0.iter().find(|(b, _)| b == bucket).map(|(_, s)| s)
    }

    fn insert(&mut self, bucket: &str, store: kv::Store) {
        self.0.push((bucket.to_string(), store));
    }
}

/// Runs agent `index` until `stop` turns true.
///
/// One `select!` loop polls everything the agent has: the cold-start setup or a re-sync
/// (at most one at a time), the consumers opened so far, connection events, the fleet's
/// `client_reconnect` signal and the stop signal.
pub async fn run(ctx: Arc<AgentContext>, index: usize, mut stop: watch::Receiver<bool>) {
    let agent = Agent::new(&ctx, index);
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel::<Opened>();
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<ConnEvent>();
    let mut reconnect_rx = ctx.reconnect_all.subscribe();
    let mut watches: SelectAll<DeliveryStream> = SelectAll::new();
    let mut durables: SelectAll<DeliveryStream> = SelectAll::new();
    let mut probes = ProbeProgress::default();
    let mut drop_rx = ctx.drop_consumer.subscribe();
    // Consumers a `drop_consumer` step told this agent to drop: their deliveries are
    // discarded unseen, as if the consumer were gone.
    let mut dropped: u64 = 0;

    let mut setup = Some(Box::pin(agent.setup(opened_tx.clone(), events_tx)));
    let mut resync: Option<futures::future::BoxFuture<'_, Result<(), String>>> = None;
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
                    Err(reason) => ctx.roster.set(index, AgentState::Failed, Some(reason)),
                }
            }
            result = async { resync.as_mut().expect("guarded").await }, if resync.is_some() => {
                resync = None;
                match result {
                    Ok(()) => ctx.roster.set(index, AgentState::Ready, None),
                    Err(reason) => ctx.roster.set(index, AgentState::Failed, Some(reason)),
                }
            }
            Some(event) = events_rx.recv() => {
                let Some(s) = session.as_ref() else { continue };
                match event {
                    ConnEvent::Disconnected => {
                        disconnected_at.get_or_insert_with(Instant::now);
                        resync = None;
                        if ctx.roster.cell(index).state() == AgentState::Ready {
                            ctx.roster.set(index, AgentState::Recovering, None);
                        }
                        if agent.placement() == Some(SplayPlacement::ReopenWatches) {
                            watches = SelectAll::new();
                        }
                    }
                    ConnEvent::Connected => {
                        let Some(lost) = disconnected_at.take() else { continue };
                        let metrics = &ctx.metrics;
                        metrics.record(index, ctx.ids.reconnect, lost.elapsed());
                        if ctx.roster.cell(index).state() == AgentState::Failed {
                            continue;
                        }
                        let reopen = agent.placement() == Some(SplayPlacement::ReopenWatches);
                        resync = Some(Box::pin(agent.resync(
                            s.js.clone(),
                            s.stores.clone(),
                            reopen.then(|| opened_tx.clone()),
                        )));
                    }
                }
            }
            Some(opened) = opened_rx.recv() => {
                if opened.is_watch { watches.push(opened.stream) } else { durables.push(opened.stream) }
            }
            Some((slot, outcome)) = watches.next(), if !watches.is_empty() => {
                if dropped & (1 << slot) == 0 { agent.on_delivery(&mut probes, slot, outcome); }
            }
            Some((slot, outcome)) = durables.next(), if !durables.is_empty() => {
                if dropped & (1 << slot) == 0 { agent.on_delivery(&mut probes, slot, outcome); }
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
}

/// Which consumers have delivered the current herd's probe.
#[derive(Default)]
struct ProbeProgress {
    generation: u64,
    seen: u64,
}

struct Agent<'a> {
    ctx: &'a AgentContext,
    index: usize,
    pc: String,
    group: String,
}

impl<'a> Agent<'a> {
    fn new(ctx: &'a AgentContext, index: usize) -> Self {
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
                self.ctx.deliveries[slot].fetch_add(1, Ordering::Relaxed);
                if let Some(seen) = item.write
                    && self.ctx.ledger.record(self.index, &seen)
                {
                    let latency = SystemTime::now()
                        .duration_since(seen.intended)
                        .unwrap_or_default();
                    self.ctx
                        .metrics
                        .record(self.index, self.ctx.ids.delivery[seen.kind], latency);
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
                        && let Some(t) = self.ctx.herd.agent_recovered(self.index, generation)
                    {
                        self.ctx
                            .metrics
                            .record(self.index, self.ctx.ids.recovery, t);
                    }
                }
            }
            Err(message) => {
                let op = format!("watch.{}", self.ctx.profile.consumers[slot].name);
                self.ctx.metrics.error(
                    self.index,
                    &op,
                    ErrorKind::classify_text(&message),
                    &message,
                );
            }
        }
    }

    /// Connect, open every consumer, sync. Returns the session, or the reason the agent
    /// failed.
    async fn setup(
        &self,
        opened: mpsc::UnboundedSender<Opened>,
        events: mpsc::UnboundedSender<ConnEvent>,
    ) -> Result<Session, String> {
        let started = Instant::now();
        let metrics = &self.ctx.metrics;
        let cold_splay = self
            .ctx
            .fleet
            .splay
            .filter(|s| s.on_start)
            .map(|s| (s.placement, self.splay()));
        if let Some((SplayPlacement::ReconnectDelay, delay)) = cold_splay {
            tokio::time::sleep(delay).await;
        }
        if self.ctx.roster.cell(self.index).connects() == 0 {
            metrics.record(
                self.index,
                self.ctx.ids.connect_attempt_at,
                self.ctx.epoch.elapsed(),
            );
        }
        // Each step's future is boxed while it runs: the setup future itself would
        // otherwise be as large as the largest of them for the agent's whole setup.
        let client = Box::pin(self.connect(events)).await;
        metrics.record(self.index, self.ctx.ids.connect, started.elapsed());
        if let Some((SplayPlacement::ReopenWatches, delay)) = cold_splay {
            tokio::time::sleep(delay).await;
        }

        self.ctx.roster.set(self.index, AgentState::Opening, None);
        let js = jetstream::new(client.clone());
        let mut stores = Stores::for_profile(&self.ctx.profile);
        self.open_all(&js, &mut stores, &opened, true).await?;

        if let Some((SplayPlacement::BeforeGets, delay)) = cold_splay {
            tokio::time::sleep(delay).await;
        }
        self.ctx.roster.set(self.index, AgentState::Syncing, None);
        let t = Instant::now();
        for op in &self.ctx.profile.sync {
            Box::pin(self.sync(&js, &mut stores, op)).await?;
        }
        metrics.record(self.index, self.ctx.ids.sync, t.elapsed());
        metrics.record(self.index, self.ctx.ids.ready, started.elapsed());
        Ok(Session { client, js, stores })
    }

    /// Opens the profile's consumers (only the watches when `durables` is false) and
    /// hands each to the polling loop, recording each create's latency.
    async fn open_all(
        &self,
        js: &jetstream::Context,
        stores: &mut Stores,
        opened: &mpsc::UnboundedSender<Opened>,
        durables: bool,
    ) -> Result<(), String> {
        for (i, spec) in self.ctx.profile.consumers.iter().enumerate() {
            let is_watch = !matches!(spec.kind, ConsumerKind::ExecReplay);
            if !is_watch && !durables {
                continue;
            }
            let t = Instant::now();
            self.ctx.creates.started.fetch_add(1, Ordering::Relaxed);
            let result = Box::pin(self.open(js, stores, &spec.kind, i)).await;
            self.ctx.creates.completed.fetch_add(1, Ordering::Relaxed);
            let stream = result?;
            self.ctx
                .metrics
                .record(self.index, self.ctx.ids.consumer_create[i], t.elapsed());
            // The receiver lives as long as the agent's loop; a send error means it is stopping.
            let _ = opened.send(Opened { stream, is_watch });
        }
        Ok(())
    }

    /// The first sync after a Disconnected → Connected transition: the splay (where the
    /// scenario puts it), reopening the watches (`reopen_watches`), then the sync reads.
    async fn resync(
        &self,
        js: jetstream::Context,
        mut stores: Stores,
        reopen: Option<mpsc::UnboundedSender<Opened>>,
    ) -> Result<(), String> {
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
        if let Some(opened) = reopen {
            self.open_all(&js, &mut stores, &opened, false).await?;
            // A new watch() delivers only later writes: ask for the probe again.
            self.ctx.herd.request_reprobe(self.index);
        }
        for op in &self.ctx.profile.sync {
            Box::pin(self.sync(&js, &mut stores, op)).await?;
        }
        let metrics = &self.ctx.metrics;
        metrics.record(self.index, self.ctx.ids.resync, connected.elapsed());
        metrics.record(
            self.index,
            self.ctx.ids.resync_after_splay,
            after_splay.elapsed(),
        );
        Ok(())
    }

    /// Connects, retrying with the fleet's reconnect backoff until it succeeds or the run
    /// stops the agent (the real agent uses `retry_on_initial_connect`).
    async fn connect(&self, events: mpsc::UnboundedSender<ConnEvent>) -> async_nats::Client {
        let mut attempts: usize = 0;
        let delays = ReconnectDelays::new(self.ctx, self.index, Duration::ZERO);
        loop {
            attempts += 1;
            tokio::time::sleep(delays.delay(attempts)).await;
            match self
                .connect_options(events.clone())
                .connect(self.ctx.url.as_str())
                .await
            {
                Ok(client) => return client,
                Err(e) => {
                    let message = e.to_string();
                    self.ctx.metrics.error(
                        self.index,
                        "connect",
                        ErrorKind::classify(&e),
                        &message,
                    );
                }
            }
        }
    }

    fn connect_options(
        &self,
        events: mpsc::UnboundedSender<ConnEvent>,
    ) -> async_nats::ConnectOptions {
        let roster = self.ctx.roster.clone();
        let index = self.index;
        let splay = match self.placement() {
            Some(SplayPlacement::ReconnectDelay) => self.splay(),
            _ => Duration::ZERO,
        };
        let delays = ReconnectDelays::new(self.ctx, index, splay);
        let mut options = self
            .ctx
            .credentials
            .apply(async_nats::ConnectOptions::new());
        if self.ctx.local_addresses > 1 {
            let octet = 1 + (index % usize::from(self.ctx.local_addresses)) as u8;
            options = options.local_address(std::net::SocketAddr::from(([127, 0, 0, octet], 0)));
        }
        options
            .name(&self.pc)
            .connection_timeout(self.ctx.fleet.connect_timeout)
            .read_buffer_capacity(self.ctx.fleet.read_buffer_capacity)
            .request_timeout(Some(self.ctx.fleet.request_timeout))
            .reconnect_delay_callback(move |attempts| delays.delay(attempts))
            .event_callback(move |event| {
                let roster = roster.clone();
                let events = events.clone();
                async move {
                    // Trivial on purpose: async-nats drops events when a callback is slow.
                    match event {
                        async_nats::Event::Connected => {
                            roster.on_connected(index);
                            let _ = events.send(ConnEvent::Connected);
                        }
                        async_nats::Event::Disconnected => {
                            roster.on_disconnected(index);
                            let _ = events.send(ConnEvent::Disconnected);
                        }
                        _ => {}
                    }
                }
            })
    }

    async fn store(
        &self,
        js: &jetstream::Context,
        stores: &mut Stores,
        bucket: &str,
    ) -> Result<kv::Store, String> {
        if let Some(store) = stores.get(bucket) {
            return Ok(store.clone());
        }
        let t = Instant::now();
        let store = self
            .retry(&format!("kv_bind.{bucket}"), || js.get_key_value(bucket))
            .await?;
        self.ctx
            .metrics
            .record(self.index, self.ctx.ids.kv_bind, t.elapsed());
        stores.insert(bucket, store.clone());
        Ok(store)
    }

    async fn open(
        &self,
        js: &jetstream::Context,
        stores: &mut Stores,
        kind: &ConsumerKind,
        slot: usize,
    ) -> Result<BoxStream<'static, Delivery>, String> {
        let op = format!("consumer_create.{}", self.ctx.profile.consumers[slot].name);
        let watch = match kind {
            ConsumerKind::Watch { bucket, key } => {
                let store = self.store(js, stores, bucket).await?;
                let key = key.render(&self.pc, &self.group);
                self.retry(&op, || store.watch(&key)).await?
            }
            ConsumerKind::WatchMany { bucket, keys } => {
                let store = self.store(js, stores, bucket).await?;
                let keys: Vec<String> = keys
                    .iter()
                    .map(|k| k.render(&self.pc, &self.group))
                    .collect();
                self.retry(&op, || store.watch_many(keys.clone())).await?
            }
            ConsumerKind::WatchAll { bucket } => {
                let store = self.store(js, stores, bucket).await?;
                self.retry(&op, || store.watch_all()).await?
            }
            ConsumerKind::ExecReplay => return self.open_exec_replay(js, &op, slot).await,
        };
        let bucket = match kind {
            ConsumerKind::Watch { bucket, .. }
            | ConsumerKind::WatchMany { bucket, .. }
            | ConsumerKind::WatchAll { bucket } => bucket.clone(),
            ConsumerKind::ExecReplay => unreachable!("returned above"),
        };
        let (pc, group) = (self.pc.clone(), self.group.clone());
        Ok(watch
            .map(move |item| match item {
                Ok(entry) => {
                    let write = parse_write(&entry.value).map(|(id, intended)| {
                        let (kind, for_me) = classify_kv(&bucket, &entry.key, &pc, &group);
                        Seen {
                            id,
                            intended,
                            kind,
                            for_me,
                            key: entry.key.clone(),
                            redelivered: false,
                        }
                    });
                    let probe = parse_probe(&entry.value);
                    (slot, Ok(Item { probe, write }))
                }
                Err(e) => (slot, Err(e.to_string())),
            })
            .boxed())
    }

    /// kanade's `command_replay`: durable pull consumer `agent_replay_<pc>` on EXEC,
    /// created with create-or-update, messages acked on receipt.
    async fn open_exec_replay(
        &self,
        js: &jetstream::Context,
        op: &str,
        slot: usize,
    ) -> Result<BoxStream<'static, Delivery>, String> {
        let config = consumer::pull::Config {
            durable_name: Some(format!("agent_replay_{}", self.pc)),
            filter_subjects: vec![
                "commands.all".to_string(),
                format!("commands.pc.{}", self.pc),
                format!("commands.group.{}", self.group),
            ],
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            // Zero is "the server's default" (30 s), what the real agent sends.
            ack_wait: self.ctx.fleet.exec_ack_wait.unwrap_or_default(),
            ..Default::default()
        };
        let consumer: consumer::PullConsumer = self
            .retry(op, || js.create_consumer_on_stream(config.clone(), "EXEC"))
            .await?;
        let messages = self.retry(op, || consumer.messages()).await?;
        let (pc, group) = (self.pc.clone(), self.group.clone());
        Ok(messages
            .then(move |item| {
                let (pc, group) = (pc.clone(), group.clone());
                async move {
                    match item {
                        Ok(message) => {
                            let write = parse_write(&message.payload).map(|(id, intended)| {
                                let (kind, for_me) =
                                    classify_exec(message.subject.as_str(), &pc, &group);
                                Seen {
                                    id,
                                    intended,
                                    kind,
                                    for_me,
                                    key: message.subject.to_string(),
                                    redelivered: message.info().is_ok_and(|i| i.delivered > 1),
                                }
                            });
                            let probe = parse_probe(&message.payload);
                            let acked = message.ack().await;
                            let item = acked.map(|_| Item { probe, write });
                            (slot, item.map_err(|e| e.to_string()))
                        }
                        Err(e) => (slot, Err(e.to_string())),
                    }
                }
            })
            .boxed())
    }

    async fn sync(
        &self,
        js: &jetstream::Context,
        stores: &mut Stores,
        op: &SyncOp,
    ) -> Result<(), String> {
        match op {
            SyncOp::Get { bucket, keys } => {
                let store = self.store(js, stores, bucket).await?;
                let name = format!("sync_get.{bucket}");
                for key in keys {
                    let key = key.render(&self.pc, &self.group);
                    self.retry(&name, || store.get(key.clone())).await?;
                }
            }
            SyncOp::Walk { bucket } => {
                let store = self.store(js, stores, bucket).await?;
                let name = format!("sync_walk.{bucket}");
                let keys: Vec<String> = self
                    .retry(&name, || async {
                        let keys = store.keys().await.map_err(BoxedError::from)?;
                        keys.collect::<Vec<_>>()
                            .await
                            .into_iter()
                            .collect::<Result<Vec<String>, _>>()
                            .map_err(BoxedError::from)
                    })
                    .await?;
                for key in keys {
                    self.retry(&name, || store.get(key.clone())).await?;
                }
            }
        }
        Ok(())
    }

    /// Runs `call`, retrying failures like the real agent's `nats_retry` (1 s doubling,
    /// ±25 % jitter) up to `setup_retries` times. Every failure is counted; the last one
    /// becomes the agent's failure reason.
    async fn retry<T, E, F, Fut>(&self, operation: &str, mut call: F) -> Result<T, String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: std::error::Error + 'static,
    {
        let mut wait = Duration::from_secs(1);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(self.ctx.seed ^ self.index as u64);
        let mut attempt = 0;
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(e) => {
                    let message = e.to_string();
                    self.ctx.metrics.error(
                        self.index,
                        operation,
                        ErrorKind::classify(&e),
                        &message,
                    );
                    if attempt >= self.ctx.fleet.setup_retries {
                        return Err(format!("{operation}: {message}"));
                    }
                    attempt += 1;
                    let jitter = rng.random_range(-0.25..=0.25);
                    tokio::time::sleep(wait.mul_f64(1.0 + jitter)).await;
                    wait *= 2;
                }
            }
        }
    }
}

/// Lets one retried call fail with either of two async-nats error types.
/// Its `source` is the original, so [`ErrorKind::classify`] still sees it.
#[derive(Debug)]
struct BoxedError(Box<dyn std::error::Error + Send + Sync>);

impl BoxedError {
    fn from<E: std::error::Error + Send + Sync + 'static>(e: E) -> Self {
        BoxedError(Box::new(e))
    }
}

impl std::fmt::Display for BoxedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BoxedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

/// The delay before reconnect attempt `attempts` (1-based, as async-nats counts: the
/// counter goes up before each try and resets on success), for `backoff`; `unit` is a
/// uniform random number in [0, 1) for the jitter.
pub fn reconnect_delay(backoff: &Backoff, attempts: usize, unit: f64) -> Duration {
    let exp = |base: Duration, n: usize| base.saturating_mul(1u32 << n.min(30) as u32);
    match *backoff {
        // async-nats' reconnect_delay_callback_default.
        Backoff::AsyncNatsDefault => {
            if attempts <= 1 {
                Duration::ZERO
            } else {
                exp(Duration::from_millis(1), attempts - 1).min(Duration::from_secs(4))
            }
        }
        Backoff::Exponential { base, cap, jitter } => {
            let d = exp(base, attempts.max(1) - 1).min(cap);
            d.mul_f64((1.0 + jitter * (2.0 * unit - 1.0)).max(0.0))
        }
    }
}

/// One agent's reconnect delays: the fleet's backoff plus, with the `reconnect_delay`
/// splay, the splay counted from the first attempt after a disconnect. Attempts that
/// fail inside the splay (the broker still down) do not end it early: every attempt
/// waits at least until the splay is over, so agents stay spread however long the
/// outage. The first connection is not splayed (async-nats consults the same callback
/// for it): the splay belongs to reconnects, the cold start has `splay_on_start`.
struct ReconnectDelays {
    backoff: Backoff,
    splay: Duration,
    /// Whether the agent has been connected yet (its connect count in the roster).
    roster: Arc<crate::fleet::Roster>,
    index: usize,
    splay_until: std::sync::Mutex<Option<Instant>>,
    /// Seeds the jitter: deterministic per run and agent.
    rng: std::sync::Mutex<rand::rngs::SmallRng>,
}

impl ReconnectDelays {
    fn new(ctx: &AgentContext, index: usize, splay: Duration) -> Self {
        ReconnectDelays {
            backoff: ctx.fleet.reconnect,
            splay,
            roster: ctx.roster.clone(),
            index,
            splay_until: std::sync::Mutex::new(None),
            rng: std::sync::Mutex::new(rand::rngs::SmallRng::seed_from_u64(
                ctx.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ index as u64,
            )),
        }
    }

    fn delay(&self, attempts: usize) -> Duration {
        let unit = self.rng.lock().expect("rng lock").random::<f64>();
        let backoff = reconnect_delay(&self.backoff, attempts, unit);
        if self.splay.is_zero() || self.roster.cell(self.index).connects() == 0 {
            return backoff;
        }
        let mut until = self.splay_until.lock().expect("splay lock");
        if attempts <= 1 || until.is_none() {
            *until = Some(Instant::now() + self.splay);
        }
        let left = until.map_or(Duration::ZERO, |u| {
            u.saturating_duration_since(Instant::now())
        });
        backoff.max(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_reconnect_delay_matches_async_nats() {
        let ms: Vec<u128> = (1..16)
            .map(|a| reconnect_delay(&Backoff::AsyncNatsDefault, a, 0.5).as_millis())
            .collect();
        assert_eq!(&ms[..6], &[0, 2, 4, 8, 16, 32]);
        assert_eq!(ms[14], 4000);
    }

    #[test]
    fn exponential_backoff_doubles_to_the_cap_within_the_jitter() {
        let b = Backoff::Exponential {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            jitter: 0.25,
        };
        let at = |attempts, unit| reconnect_delay(&b, attempts, unit).as_millis();
        assert_eq!(at(1, 0.5), 100);
        assert_eq!(at(3, 0.5), 400);
        assert_eq!(at(10, 0.5), 1000, "capped");
        assert_eq!(at(1, 0.0), 75, "-25 %");
        assert_eq!(at(1, 1.0), 125, "+25 %");
    }
}
