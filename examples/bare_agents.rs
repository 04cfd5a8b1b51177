//! The floor fleetsim's own cost is measured against: N agents that make only the bare
//! async-nats calls of the scenario's profile (connect, then its `[[cold_start]]` tasks
//! and `[[publishes]]`, then poll what they opened), all released at once against the
//! embedded broker, with none of fleetsim's machinery: no histograms, no roster, no
//! connection events, no write reconciliation, no progress, no reconnect tasks.
//!
//! Issue "fleetsim core" asks that fleetsim's CPU and RSS per agent stay close to what
//! the bare calls cost. `scripts/bench.sh` runs this next to `fleetsim run` at the same
//! fleet sizes and in the same way (the same scenario file, connection options and
//! provisioning in this process, the broker a separate process), so the difference
//! between the two rows is what fleetsim itself adds.
//!
//! It interprets the profile as fleetsim does (src/fleet/agent/sim/tasks.rs): the
//! cold-start tasks run concurrently, each task's calls in order, and a `blocking` task
//! finishes before the tasks after it start; every `bind` sends its `STREAM.INFO`; an
//! `open` is polled from the moment it is opened, and so is a `subscribe`. The publishes
//! start with the cold start: the first at once where `at_start` (else one period
//! later), then every period (no jitter). A failed call is retried every second and
//! counted. Only async-nats 0.51 is linked here: a scenario whose agents would run 0.50
//! (the `kanade` profile's `[client]`) is refused; `scripts/bench.sh` runs both this and
//! fleetsim with `[fleet] async_nats = "0.51"`.
//!
//! ```text
//! cargo run --release --example bare_agents -- scenarios/bench-cold-start-051.toml 1000
//! ```
//!
//! Prints one line of `key=value` pairs (see `main`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::jetstream::{self, consumer, kv};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{BoxStream, FuturesUnordered, SelectAll};
use tokio::sync::{Notify, mpsc, watch};

use fleetsim::broker::embedded::{EmbeddedBroker, EmbeddedOptions};
use fleetsim::plan::{AsyncNats, Call, ConsumerKind, FleetPlan, Profile, PublishSpec, Task};
use fleetsim::provision::{group_id, pc_id, provision};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(scenario), Some(agents)) = (args.next(), args.next()) else {
        bail!("usage: bare_agents SCENARIO AGENTS");
    };
    let agents: usize = agents.parse().context("AGENTS must be a whole number")?;
    let mut plan = fleetsim::scenario::parse_file(scenario.as_ref())?;
    plan.fleet.agents = agents;
    if plan.fleet.async_nats != AsyncNats::V0_51 {
        bail!(
            "{scenario}: the agents would run async-nats {}, bare_agents links only 0.51: \
             add `async_nats = \"0.51\"` to its [fleet]",
            plan.fleet.async_nats.name()
        );
    }
    fleetsim::host::raise_nofile_limit().context("raising the open-files limit")?;

    let broker = EmbeddedBroker::start(EmbeddedOptions {
        max_connections: plan.broker.max_connections,
        request_queue_limit: plan.broker.request_queue_limit,
        default_max_consumers: plan.broker.default_max_consumers,
        lame_duck_duration: plan.broker.lame_duck_duration,
        lame_duck_grace_period: plan.broker.lame_duck_grace_period,
        keepalive: plan.broker.keepalive,
    })
    .await?;
    let url = broker.url();
    let admin = async_nats::connect(&url).await?;
    provision(&jetstream::new(admin.clone()), &plan).await?;

    let fleet = Arc::new(plan.fleet.clone());
    let profile = Arc::new(plan.profile.clone());
    let errors = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Duration>();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(agents);
    for index in 0..agents {
        let agent = Agent {
            fleet: fleet.clone(),
            profile: profile.clone(),
            errors: errors.clone(),
            pc: pc_id(index),
            group: group_id(index, fleet.groups),
        };
        let (url, stop, ready) = (url.clone(), stop_rx.clone(), ready_tx.clone());
        tasks.push(tokio::spawn(async move {
            agent.run(&url, stop, ready, started).await;
        }));
    }
    drop(ready_tx);
    let mut ready = Vec::with_capacity(agents);
    while ready.len() < agents {
        match tokio::time::timeout(Duration::from_secs(300), ready_rx.recv()).await {
            Ok(Some(t)) => ready.push(t),
            _ => break,
        }
    }
    let all_ready = started.elapsed();
    // The benchmark scenario ends at all-ready too; fleetsim reads its usage after
    // stopping the agents, and so does this.
    let _ = stop_tx.send(true);
    for task in tasks {
        // An agent still retrying its setup never sees the stop: end it.
        task.abort();
        let _ = task.await;
    }
    let usage = fleetsim::host::process_usage();
    drop(broker);

    ready.sort();
    let pct = |p: f64| {
        ready
            .get(((ready.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    let cpu = usage.cpu_user_secs + usage.cpu_system_secs;
    println!(
        "agents={agents} ready={} wall_all_ready_s={:.3} ready_p50_ms={:.1} ready_p99_ms={:.1} \
         errors={} cpu_s={cpu:.2} peak_rss_kib={}",
        ready.len(),
        all_ready.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        errors.load(Ordering::Relaxed),
        usage.max_rss_kib,
    );
    if ready.len() < agents {
        bail!("only {} of {agents} agents became ready", ready.len());
    }
    Ok(())
}

/// Retries `call` every second until it succeeds, counting failures: under a herd the
/// bare agent meets the same timeouts fleetsim's does and must survive them alike.
macro_rules! retry {
    ($errors:expr, $call:expr) => {
        loop {
            match $call.await {
                Ok(value) => break value,
                Err(_) => {
                    $errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    };
}

/// One bare agent: its identity and the plan it reads.
struct Agent {
    fleet: Arc<FleetPlan>,
    profile: Arc<Profile>,
    errors: Arc<AtomicU64>,
    pc: String,
    group: String,
}

/// What a task opened (a watch, the EXEC consumer's messages, a core subscription),
/// handed to the agent's loop so it is polled from the moment it exists.
type Opened = BoxStream<'static, ()>;

/// A task's `signal`s, for the `wait`s of the agent's other tasks.
#[derive(Default)]
struct Signals {
    raised: Mutex<Vec<String>>,
    notify: Notify,
}

impl Signals {
    fn raise(&self, name: &str) {
        self.raised.lock().expect("signals").push(name.to_string());
        self.notify.notify_waiters();
    }

    async fn wait(&self, name: &str) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a raise between the two is not missed.
            notified.as_mut().enable();
            if self
                .raised
                .lock()
                .expect("signals")
                .iter()
                .any(|n| n == name)
            {
                return;
            }
            notified.await;
        }
    }
}

impl Agent {
    /// Connects, starts the publishes, runs the cold start, reports ready and polls
    /// everything it opened until the stop.
    async fn run(
        &self,
        url: &str,
        mut stop: watch::Receiver<bool>,
        ready: mpsc::UnboundedSender<Duration>,
        started: Instant,
    ) {
        let options = || {
            async_nats::ConnectOptions::new()
                .name(&self.pc)
                .connection_timeout(self.fleet.connect_timeout)
                .read_buffer_capacity(self.fleet.read_buffer_capacity)
                .request_timeout(Some(self.fleet.request_timeout))
                .ping_interval(self.fleet.ping_interval)
        };
        let client = retry!(self.errors, options().connect(url));
        let js = jetstream::new(client.clone());
        let mut publishes: SelectAll<BoxStream<'static, ()>> = self
            .profile
            .publishes
            .iter()
            .map(|spec| self.publish_loop(spec, &client, &js))
            .collect();
        let (opened_tx, mut opened_rx) = mpsc::unbounded_channel::<Opened>();
        let mut opened: SelectAll<Opened> = SelectAll::new();
        let signals = Signals::default();
        let cold_start =
            self.run_tasks(&self.profile.cold_start, &client, &js, &opened_tx, &signals);
        tokio::pin!(cold_start);
        let mut setting_up = true;
        loop {
            tokio::select! {
                () = &mut cold_start, if setting_up => {
                    setting_up = false;
                    let _ = ready.send(started.elapsed());
                }
                Some(stream) = opened_rx.recv() => opened.push(stream),
                Some(()) = opened.next(), if !opened.is_empty() => {}
                Some(()) = publishes.next(), if !publishes.is_empty() => {}
                _ = stop.changed() => break,
            }
        }
    }

    /// The tasks concurrently; a `blocking` one finishes before the later ones start.
    async fn run_tasks(
        &self,
        tasks: &[Task],
        client: &async_nats::Client,
        js: &jetstream::Context,
        opened: &mpsc::UnboundedSender<Opened>,
        signals: &Signals,
    ) {
        let mut running = FuturesUnordered::new();
        for (i, task) in tasks.iter().enumerate() {
            running.push(async move {
                Box::pin(self.run_task(task, client, js, opened, signals)).await;
                i
            });
            if task.blocking {
                while let Some(done) = running.next().await {
                    if done == i {
                        break;
                    }
                }
            }
        }
        while running.next().await.is_some() {}
    }

    /// One task's calls in order, with the buckets it bound itself.
    async fn run_task(
        &self,
        task: &Task,
        client: &async_nats::Client,
        js: &jetstream::Context,
        opened: &mpsc::UnboundedSender<Opened>,
        signals: &Signals,
    ) {
        let mut stores: Vec<(String, kv::Store)> = Vec::new();
        for call in &task.calls {
            if !self
                .call(call, &mut stores, client, js, opened, signals)
                .await
            {
                break;
            }
        }
    }

    /// One call of a task; false ends the task.
    async fn call(
        &self,
        call: &Call,
        stores: &mut Vec<(String, kv::Store)>,
        client: &async_nats::Client,
        js: &jetstream::Context,
        opened: &mpsc::UnboundedSender<Opened>,
        signals: &Signals,
    ) -> bool {
        let errors = &self.errors;
        match call {
            Call::Bind { bucket } => {
                self.bind(js, stores, bucket).await;
            }
            Call::StreamInfo { stream } => {
                retry!(errors, js.get_stream(stream));
            }
            // The get, walk and open arms are boxed, as fleetsim boxes them: their
            // futures are the large ones (an open's ~17 KiB), and inline they would
            // size every task's future for its whole life (150 KiB per agent).
            Call::Get { bucket, keys } => {
                Box::pin(async {
                    let store = self.store(js, stores, bucket).await;
                    for key in keys {
                        let key = key.render(&self.pc, &self.group);
                        retry!(errors, store.get(key.clone()));
                    }
                })
                .await
            }
            Call::Walk { bucket } => {
                Box::pin(async {
                    let store = self.store(js, stores, bucket).await;
                    let keys: Vec<String> = loop {
                        match store.keys().await {
                            Ok(keys) => {
                                match keys.collect::<Vec<_>>().await.into_iter().collect() {
                                    Ok(keys) => break keys,
                                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                                }
                            }
                            Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                        };
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    };
                    for key in keys {
                        retry!(errors, store.get(key.clone()));
                    }
                })
                .await
            }
            Call::Open { slot } => {
                let stream = Box::pin(self.open(js, stores, *slot)).await;
                let _ = opened.send(stream);
            }
            Call::Subscribe { subject } => {
                let subject = subject.render(&self.pc, &self.group);
                let subscriber = retry!(errors, client.subscribe(subject.clone()));
                let _ = opened.send(subscriber.map(|_| ()).boxed());
            }
            Call::Flush => retry!(errors, client.flush()),
            Call::Publish { subject, size, ack } => {
                let subject = subject.render(&self.pc, &self.group);
                let payload = Bytes::from(vec![0u8; *size]);
                if *ack {
                    let pending = retry!(errors, js.publish(subject.clone(), payload.clone()));
                    if pending.await.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    retry!(errors, client.publish(subject.clone(), payload.clone()));
                }
            }
            Call::Signal { name } => signals.raise(name),
            Call::Wait { name } => signals.wait(name).await,
            // A reconnect-only call: bare agents run no reconnect tasks.
            Call::WaitDelivery { .. } => return false,
        }
        true
    }

    /// `js.get_key_value(bucket)`, sent every time, as the real agent binds again in
    /// each task.
    async fn bind(
        &self,
        js: &jetstream::Context,
        stores: &mut Vec<(String, kv::Store)>,
        bucket: &str,
    ) -> kv::Store {
        let store = retry!(self.errors, js.get_key_value(bucket));
        match stores.iter_mut().find(|(b, _)| b == bucket) {
            Some(slot) => slot.1 = store.clone(),
            None => stores.push((bucket.to_string(), store.clone())),
        }
        store
    }

    /// The task's store of `bucket`, bound first if the task has not bound it.
    async fn store(
        &self,
        js: &jetstream::Context,
        stores: &mut Vec<(String, kv::Store)>,
        bucket: &str,
    ) -> kv::Store {
        match stores.iter().find(|(b, _)| b == bucket) {
            Some((_, store)) => store.clone(),
            None => self.bind(js, stores, bucket).await,
        }
    }

    /// Opens consumer `slot` of the profile, as src/fleet/agent/sim/calls.rs does.
    async fn open(
        &self,
        js: &jetstream::Context,
        stores: &mut Vec<(String, kv::Store)>,
        slot: usize,
    ) -> Opened {
        let errors = &self.errors;
        let kv = |w: kv::Watch| w.map(|_| ()).boxed();
        match &self.profile.consumers[slot].kind {
            ConsumerKind::Watch { bucket, key } => {
                let store = self.store(js, stores, bucket).await;
                let key = key.render(&self.pc, &self.group);
                kv(retry!(errors, store.watch(&key)))
            }
            ConsumerKind::WatchMany { bucket, keys } => {
                let store = self.store(js, stores, bucket).await;
                let keys: Vec<String> = keys
                    .iter()
                    .map(|k| k.render(&self.pc, &self.group))
                    .collect();
                kv(retry!(errors, store.watch_many(keys.clone())))
            }
            ConsumerKind::WatchAll { bucket } => {
                let store = self.store(js, stores, bucket).await;
                kv(retry!(errors, store.watch_all()))
            }
            ConsumerKind::ExecReplay => {
                let config = consumer::pull::Config {
                    durable_name: Some(format!("agent_replay_{}", self.pc)),
                    filter_subjects: vec![
                        "commands.all".to_string(),
                        format!("commands.pc.{}", self.pc),
                        format!("commands.group.{}", self.group),
                    ],
                    ack_policy: consumer::AckPolicy::Explicit,
                    deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                    ack_wait: self.fleet.exec_ack_wait.unwrap_or_default(),
                    ..Default::default()
                };
                let replay: consumer::PullConsumer =
                    retry!(errors, js.create_consumer_on_stream(config.clone(), "EXEC"));
                let messages = retry!(errors, replay.messages());
                messages
                    .then(|m| async move {
                        if let Ok(m) = m {
                            let _ = m.ack().await;
                        }
                    })
                    .boxed()
            }
        }
    }

    /// One of the profile's publishes, repeated every period (no jitter); failures are
    /// counted, not retried: the next period publishes again.
    fn publish_loop(
        &self,
        spec: &PublishSpec,
        client: &async_nats::Client,
        js: &jetstream::Context,
    ) -> BoxStream<'static, ()> {
        let subject = spec.subject.render(&self.pc, &self.group);
        let payload = Bytes::from(vec![0u8; spec.size]);
        let (client, js, errors) = (client.clone(), js.clone(), self.errors.clone());
        let (every, ack) = (spec.every, spec.ack);
        let first =
            tokio::time::Instant::now() + if spec.at_start { Duration::ZERO } else { every };
        futures::stream::unfold(first, move |next_at| {
            let (client, js, errors) = (client.clone(), js.clone(), errors.clone());
            let (subject, payload) = (subject.clone(), payload.clone());
            async move {
                tokio::time::sleep_until(next_at).await;
                let ok = if ack {
                    match js.publish(subject, payload).await {
                        Ok(ack) => ack.await.is_ok(),
                        Err(_) => false,
                    }
                } else {
                    client.publish(subject, payload).await.is_ok()
                };
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                Some(((), next_at + every))
            }
        })
        .boxed()
    }
}
