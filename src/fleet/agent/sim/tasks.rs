//! Running a profile's tasks: the cold start after the first connection and the
//! reconnect tasks after every Disconnected → Connected transition.
//!
//! The real agent spawns one tokio task per responsibility (config supervisor, groups,
//! scheduler, command replay …) and each reads before it watches, so their broker calls
//! interleave. A simulated agent runs the same tasks concurrently, but inside its own
//! single tokio task (a `FuturesUnordered`): thousands of agents stay one task each.

use super::nats;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use nats::jetstream;
use tokio::sync::{Notify, mpsc};

use super::calls::BoxedError;
use super::calls::Stores;
use super::{Agent, AgentFailure, Handed};
use crate::metrics::MetricId;
use crate::plan::{Call, Task};

/// What the tasks of one phase share: the connection, the loop's inbox, the signals.
pub(super) struct TaskEnv<'s> {
    pub client: &'s nats::Client,
    pub js: &'s jetstream::Context,
    /// Consumers and core subscriptions opened by a task go to the agent's polling loop.
    pub handed: &'s mpsc::UnboundedSender<Handed>,
    pub signals: &'s Signals,
    pub board: &'s DeliveryBoard,
}

impl Agent<'_> {
    /// Runs `tasks` concurrently, each task's calls in order; a `blocking` task is
    /// finished before the tasks after it start. The first failure fails them all (the
    /// agent ends `failed` with its reason). `ids[i]` times task `i`.
    pub(super) async fn run_tasks(
        &self,
        tasks: &[Task],
        ids: &[MetricId],
        env: &TaskEnv<'_>,
    ) -> Result<(), AgentFailure> {
        let mut running = FuturesUnordered::new();
        for (i, task) in tasks.iter().enumerate() {
            running.push(async move { (i, Box::pin(self.run_task(task, ids[i], env)).await) });
            if task.blocking {
                while let Some((done, result)) = running.next().await {
                    result?;
                    if done == i {
                        break;
                    }
                }
            }
        }
        while let Some((_, result)) = running.next().await {
            result?;
        }
        Ok(())
    }

    async fn run_task(
        &self,
        task: &Task,
        id: MetricId,
        env: &TaskEnv<'_>,
    ) -> Result<(), AgentFailure> {
        let started = Instant::now();
        // Each task binds its own buckets, as each of the real agent's tasks does.
        let mut stores = Stores::default();
        self.run_calls(&task.calls, &mut stores, env).await?;
        self.ctx.metrics.record(self.index, id, started.elapsed());
        Ok(())
    }

    /// `calls` in order, binding into `stores`. A `wait_delivery` whose replay does not
    /// come ends the list there.
    pub(super) async fn run_calls(
        &self,
        calls: &[Call],
        stores: &mut Stores,
        env: &TaskEnv<'_>,
    ) -> Result<(), AgentFailure> {
        for call in calls {
            match call {
                Call::Bind { bucket } => {
                    self.bind(env.js, stores, bucket).await?;
                }
                Call::StreamInfo { stream } => self.stream_info(env.js, stream).await?,
                Call::Get { bucket, keys } => {
                    Box::pin(self.get(env.js, stores, bucket, keys)).await?
                }
                Call::Walk { bucket } => Box::pin(self.walk(env.js, stores, bucket)).await?,
                Call::Open { slot } => {
                    Box::pin(self.open_one(env.js, stores, *slot, env.handed)).await?
                }
                Call::Subscribe { subject } => {
                    let subject = subject.render(&self.pc, &self.group);
                    let subscriber = self
                        .retry("subscribe", || env.client.subscribe(subject.clone()))
                        .await?;
                    // A command (not a herd's probe) is what `[on_command]` answers.
                    let messages = subscriber.map(|m| {
                        m.subject.as_str().starts_with("commands.")
                            && crate::herd::parse_probe(&m.payload).is_none()
                    });
                    let _ = env.handed.send(Handed::Core(messages.boxed()));
                }
                Call::Publish { subject, size, ack } => {
                    let subject = subject.render(&self.pc, &self.group);
                    Box::pin(self.publish_once(env, subject, *size, *ack)).await?
                }
                Call::Flush => self.retry("flush", || env.client.flush()).await?,
                Call::Signal { name } => env.signals.raise(name),
                Call::Wait { name } => env.signals.wait(name).await,
                Call::WaitDelivery { slot, within } => {
                    if !env.board.redelivered(*slot, *within).await {
                        // No replay came: what it would have triggered does not happen.
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// One publish: acked (retried like the agent's other calls) or core.
    async fn publish_once(
        &self,
        env: &TaskEnv<'_>,
        subject: String,
        size: usize,
        ack: bool,
    ) -> Result<(), AgentFailure> {
        let payload = super::traffic::payload(size);
        let operation = format!("publish.{}", subject.split('.').next().unwrap_or(""));
        if ack {
            self.retry(&operation, || async {
                let pending = env
                    .js
                    .publish(subject.clone(), payload.clone())
                    .await
                    .map_err(BoxedError::from)?;
                pending.await.map_err(BoxedError::from)
            })
            .await?;
        } else {
            self.retry(&operation, || {
                env.client.publish(subject.clone(), payload.clone())
            })
            .await?;
        }
        Ok(())
    }

    /// What the agent does for one command its subscriptions received: the profile's
    /// `[on_command]` calls, one command after the other (the real agent's command loop
    /// handles its commands in turn), on the buckets the agent's earlier commands bound:
    /// the real agent's command loops bound them at cold start, fleetsim binds them once
    /// per agent, at its first command. A failure is counted (in errors.csv) and the
    /// agent carries on, as the real agent logs a failed command and takes the next.
    pub(super) async fn on_command(&self, env: &TaskEnv<'_>, stores: &tokio::sync::Mutex<Stores>) {
        let mut bound = stores.lock().await;
        let started = Instant::now();
        if self
            .run_calls(&self.ctx.profile.on_command, &mut bound, env)
            .await
            .is_ok()
        {
            self.ctx
                .metrics
                .record(self.index, self.ctx.ids.on_command, started.elapsed());
        }
    }
}

/// Named signals between the tasks of one phase (`signal` / `wait` calls).
#[derive(Default)]
pub(super) struct Signals {
    raised: Mutex<Vec<String>>,
    notify: Notify,
}

impl Signals {
    fn raise(&self, name: &str) {
        self.raised.lock().expect("signals").push(name.to_string());
        self.notify.notify_waiters();
    }

    fn is_raised(&self, name: &str) -> bool {
        self.raised
            .lock()
            .expect("signals")
            .iter()
            .any(|n| n == name)
    }

    async fn wait(&self, name: &str) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a raise between the two is not missed.
            notified.as_mut().enable();
            if self.is_raised(name) {
                return;
            }
            notified.await;
        }
    }
}

/// How many items each consumer has delivered, for `wait_delivery`: whether a recreated
/// watch replays (it does only if it had never delivered before the disconnect).
pub(super) struct DeliveryBoard {
    delivered: Vec<AtomicU64>,
    at_disconnect: Vec<AtomicU64>,
    notify: Notify,
}

impl DeliveryBoard {
    pub(super) fn new(consumers: usize) -> Self {
        DeliveryBoard {
            delivered: (0..consumers).map(|_| AtomicU64::new(0)).collect(),
            at_disconnect: (0..consumers).map(|_| AtomicU64::new(0)).collect(),
            notify: Notify::new(),
        }
    }

    pub(super) fn delivered(&self, slot: usize) {
        self.delivered[slot].fetch_add(1, Ordering::Relaxed);
        self.notify.notify_waiters();
    }

    pub(super) fn disconnected(&self) {
        for (now, then) in self.delivered.iter().zip(&self.at_disconnect) {
            then.store(now.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// Whether consumer `slot` delivers again after the last disconnect, within
    /// `within`: false at once if it had delivered before (nothing will be replayed).
    async fn redelivered(&self, slot: usize, within: Duration) -> bool {
        let before = self.at_disconnect[slot].load(Ordering::Relaxed);
        if before > 0 {
            return false;
        }
        let arrived = async {
            loop {
                let notified = self.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.delivered[slot].load(Ordering::Relaxed) > before {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(within, arrived).await.is_ok()
    }
}
