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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, kv};
use futures::StreamExt;
use futures::stream::{BoxStream, SelectAll};
use rand::{RngExt, SeedableRng};
use tokio::sync::{mpsc, watch};

use crate::errors::ErrorKind;
use crate::fleet::{AgentState, Roster};
use crate::metrics::{MetricId, Metrics};
use crate::plan::{ConsumerKind, FleetPlan, Profile, SyncOp};
use crate::provision::{group_id, pc_id};

/// What every agent shares: where to connect, what to open, where to record.
pub struct AgentContext {
    pub url: String,
    pub fleet: FleetPlan,
    pub profile: Profile,
    pub seed: u64,
    pub roster: Arc<Roster>,
    pub metrics: Arc<Metrics>,
    pub ids: MetricIds,
    /// Deliveries seen, per consumer of the profile (same order).
    pub deliveries: Vec<AtomicU64>,
}

/// Metric ids agents record into, registered once per run.
pub struct MetricIds {
    pub connect: MetricId,
    pub kv_bind: MetricId,
    pub consumer_create: Vec<MetricId>,
    pub sync: MetricId,
    pub ready: MetricId,
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
            connect: metrics.metric("connect"),
            kv_bind: metrics.metric("kv_bind"),
            consumer_create: profile
                .consumers
                .iter()
                .map(|c| metrics.metric(&format!("consumer_create.{}", c.name)))
                .collect(),
            sync: metrics.metric("sync"),
            ready: metrics.metric("ready"),
        };
        let deliveries = profile
            .consumers
            .iter()
            .map(|_| AtomicU64::new(0))
            .collect();
        AgentContext {
            roster: Arc::new(Roster::new(fleet.agents)),
            url,
            fleet,
            profile,
            seed,
            metrics,
            ids,
            deliveries,
        }
    }

    pub fn deliveries(&self) -> Vec<u64> {
        self.deliveries
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .collect()
    }
}

/// What a polled consumer yields: which consumer, and a failure if the item was one.
type Delivery = (usize, Result<(), String>);

/// Runs agent `index` until `stop` turns true.
pub async fn run(ctx: Arc<AgentContext>, index: usize, mut stop: watch::Receiver<bool>) {
    let agent = Agent::new(&ctx, index);
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel();
    let setup = agent.setup(opened_tx);
    tokio::pin!(setup);
    let mut setup_done = false;
    let mut consumers: SelectAll<BoxStream<'static, Delivery>> = SelectAll::new();
    // Keeps the client alive for as long as the agent polls.
    let mut _client = None;
    loop {
        tokio::select! {
            result = &mut setup, if !setup_done => {
                setup_done = true;
                match result {
                    Ok(client) => {
                        _client = Some(client);
                        ctx.roster.set(index, AgentState::Ready, None);
                    }
                    Err(reason) => ctx.roster.set(index, AgentState::Failed, Some(reason)),
                }
            }
            Some(stream) = opened_rx.recv() => consumers.push(stream),
            Some((consumer, outcome)) = consumers.next(), if !consumers.is_empty() => {
                agent.on_delivery(consumer, outcome);
            }
            _ = stop.changed() => break,
        }
    }
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

    fn on_delivery(&self, consumer: usize, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                self.ctx.deliveries[consumer].fetch_add(1, Ordering::Relaxed);
            }
            Err(message) => {
                let op = format!("watch.{}", self.ctx.profile.consumers[consumer].name);
                self.ctx.metrics.error(
                    self.index,
                    &op,
                    ErrorKind::classify_text(&message),
                    &message,
                );
            }
        }
    }

    /// Connect, open every consumer, sync. Returns the client (to keep the connection),
    /// or the reason the agent failed.
    async fn setup(
        &self,
        opened: mpsc::UnboundedSender<BoxStream<'static, Delivery>>,
    ) -> Result<async_nats::Client, String> {
        let started = Instant::now();
        let metrics = &self.ctx.metrics;
        let client = self.connect().await;
        metrics.record(self.index, self.ctx.ids.connect, started.elapsed());

        self.ctx.roster.set(self.index, AgentState::Opening, None);
        let js = jetstream::new(client.clone());
        let mut stores: HashMap<String, kv::Store> = HashMap::new();
        for (i, spec) in self.ctx.profile.consumers.iter().enumerate() {
            let t = Instant::now();
            let stream = self.open(&js, &mut stores, &spec.kind, i).await?;
            metrics.record(self.index, self.ctx.ids.consumer_create[i], t.elapsed());
            // The receiver lives as long as the agent's loop; a send error means it is stopping.
            let _ = opened.send(stream);
        }

        self.ctx.roster.set(self.index, AgentState::Syncing, None);
        let t = Instant::now();
        for op in &self.ctx.profile.sync {
            self.sync(&js, &mut stores, op).await?;
        }
        metrics.record(self.index, self.ctx.ids.sync, t.elapsed());
        metrics.record(self.index, self.ctx.ids.ready, started.elapsed());
        Ok(client)
    }

    /// Connects, retrying like async-nats' default reconnect policy (0 ms, then 2, 4, 8 …
    /// ms capped at 4 s, no jitter) until it succeeds or the run stops the agent.
    async fn connect(&self) -> async_nats::Client {
        let mut attempt: u32 = 0;
        loop {
            match self.connect_options().connect(self.ctx.url.as_str()).await {
                Ok(client) => return client,
                Err(e) => {
                    let message = e.to_string();
                    self.ctx.metrics.error(
                        self.index,
                        "connect",
                        ErrorKind::classify(&e),
                        &message,
                    );
                    tokio::time::sleep(default_reconnect_delay(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    fn connect_options(&self) -> async_nats::ConnectOptions {
        let roster = self.ctx.roster.clone();
        let index = self.index;
        async_nats::ConnectOptions::new()
            .name(&self.pc)
            .connection_timeout(self.ctx.fleet.connect_timeout)
            .request_timeout(Some(self.ctx.fleet.request_timeout))
            .event_callback(move |event| {
                let roster = roster.clone();
                async move {
                    // Trivial on purpose: async-nats drops events when a callback is slow.
                    match event {
                        async_nats::Event::Connected => roster.on_connected(index),
                        async_nats::Event::Disconnected => roster.on_disconnected(index),
                        _ => {}
                    }
                }
            })
    }

    async fn store(
        &self,
        js: &jetstream::Context,
        stores: &mut HashMap<String, kv::Store>,
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
        stores.insert(bucket.to_string(), store.clone());
        Ok(store)
    }

    async fn open(
        &self,
        js: &jetstream::Context,
        stores: &mut HashMap<String, kv::Store>,
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
        Ok(watch
            .map(move |item| (slot, item.map(|_| ()).map_err(|e| e.to_string())))
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
            ..Default::default()
        };
        let consumer: consumer::PullConsumer = self
            .retry(op, || js.create_consumer_on_stream(config.clone(), "EXEC"))
            .await?;
        let messages = self.retry(op, || consumer.messages()).await?;
        Ok(messages
            .then(move |item| async move {
                match item {
                    Ok(message) => (slot, message.ack().await.map_err(|e| e.to_string())),
                    Err(e) => (slot, Err(e.to_string())),
                }
            })
            .boxed())
    }

    async fn sync(
        &self,
        js: &jetstream::Context,
        stores: &mut HashMap<String, kv::Store>,
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

/// async-nats' default reconnect delay: 0 ms for the first retry, then 2^n ms capped at 4 s.
pub fn default_reconnect_delay(attempt: u32) -> Duration {
    if attempt == 0 {
        Duration::ZERO
    } else {
        Duration::from_millis(2u64.saturating_pow(attempt.min(12))).min(Duration::from_secs(4))
    }
}

#[cfg(test)]
mod tests {
    use super::default_reconnect_delay;
    use std::time::Duration;

    #[test]
    fn default_reconnect_delay_matches_async_nats() {
        let ms: Vec<u128> = (0..15)
            .map(|a| default_reconnect_delay(a).as_millis())
            .collect();
        assert_eq!(&ms[..6], &[0, 2, 4, 8, 16, 32]);
        assert_eq!(default_reconnect_delay(14), Duration::from_secs(4));
    }
}
