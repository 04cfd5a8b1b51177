//! The NATS calls an agent makes, as the real agent makes them: binding buckets,
//! opening its consumers (watches and the durable EXEC consumer), the sync reads, each
//! retried like the real agent's `nats_retry`.

use super::nats;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use nats::jetstream::{self, consumer, kv};
use rand::{RngExt, SeedableRng};

use super::{Agent, AgentFailure, Delivery, Item};
use crate::herd::parse_probe;
use crate::nats_failure::FailureKind;
use crate::plan::{ConsumerKind, KeyTemplate};
use crate::writes::{Seen, classify_exec, classify_kv, parse_write};

/// The buckets one task has bound, by name. A `kv::Store` carries its stream's whole
/// info (~1.4 KiB inline), so the stores sit in a small vector (a task binds a few
/// buckets) instead of a hash table that keeps empty slots of that size.
#[derive(Clone, Default)]
pub(super) struct Stores(Vec<(String, kv::Store)>);

impl Stores {
    fn get(&self, bucket: &str) -> Option<&kv::Store> {
        self.0.iter().find(|(b, _)| b == bucket).map(|(_, s)| s)
    }

    fn insert(&mut self, bucket: &str, store: kv::Store) {
        match self.0.iter_mut().find(|(b, _)| b == bucket) {
            Some(slot) => slot.1 = store,
            None => self.0.push((bucket.to_string(), store)),
        }
    }
}

impl Agent<'_> {
    pub(super) async fn store(
        &self,
        js: &jetstream::Context,
        stores: &mut Stores,
        bucket: &str,
    ) -> Result<kv::Store, AgentFailure> {
        if let Some(store) = stores.get(bucket) {
            return Ok(store.clone());
        }
        self.bind(js, stores, bucket).await
    }

    /// `js.get_key_value(bucket)`: one `STREAM.INFO KV_<bucket>`, sent every time, as
    /// the real agent binds again in each of its tasks.
    pub(super) async fn bind(
        &self,
        js: &jetstream::Context,
        stores: &mut Stores,
        bucket: &str,
    ) -> Result<kv::Store, AgentFailure> {
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

    pub(super) async fn open(
        &self,
        js: &jetstream::Context,
        stores: &mut Stores,
        kind: &ConsumerKind,
        slot: usize,
    ) -> Result<BoxStream<'static, Delivery>, AgentFailure> {
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
    ) -> Result<BoxStream<'static, Delivery>, AgentFailure> {
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

    /// Direct `get`s of `keys` (templates), in order.
    pub(super) async fn get(
        &self,
        js: &jetstream::Context,
        stores: &mut Stores,
        bucket: &str,
        keys: &[KeyTemplate],
    ) -> Result<(), AgentFailure> {
        let store = self.store(js, stores, bucket).await?;
        let name = format!("get.{bucket}");
        for key in keys {
            let key = key.render(&self.pc, &self.group);
            self.retry(&name, || store.get(key.clone())).await?;
        }
        Ok(())
    }

    /// `keys()` (one short-lived ordered consumer), then a `get` per key.
    pub(super) async fn walk(
        &self,
        js: &jetstream::Context,
        stores: &mut Stores,
        bucket: &str,
    ) -> Result<(), AgentFailure> {
        let store = self.store(js, stores, bucket).await?;
        let name = format!("walk.{bucket}");
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
        Ok(())
    }

    /// `js.get_stream(name)`: one `STREAM.INFO <name>`.
    pub(super) async fn stream_info(
        &self,
        js: &jetstream::Context,
        stream: &str,
    ) -> Result<(), AgentFailure> {
        let name = format!("stream_info.{stream}");
        self.retry(&name, || js.get_stream(stream)).await?;
        Ok(())
    }

    /// Runs `call`, retrying failures like the real agent's `nats_retry` (1 s doubling,
    /// ±25 % jitter) up to `setup_retries` times. Every failure is counted; the last one
    /// becomes the agent's failure reason.
    pub(super) async fn retry<T, E, F, Fut>(
        &self,
        operation: &str,
        mut call: F,
    ) -> Result<T, AgentFailure>
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
                        FailureKind::classify(&e),
                        &message,
                    );
                    if attempt >= self.ctx.fleet.setup_retries {
                        return Err(AgentFailure {
                            operation: operation.to_string(),
                            message,
                        });
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
/// Its `source` is the original, so [`FailureKind::classify`] still sees it.
#[derive(Debug)]
pub(super) struct BoxedError(Box<dyn std::error::Error + Send + Sync>);

impl BoxedError {
    pub(super) fn from<E: std::error::Error + Send + Sync + 'static>(e: E) -> Self {
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
