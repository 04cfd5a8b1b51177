//! The floor fleetsim's own cost is measured against: N agents that make only the bare
//! async-nats calls of a kanade agent (connect, the 7 consumers, the sync's gets and
//! catalog walks, then poll their watches), all released at once against the embedded
//! broker, with none of fleetsim's machinery: no histograms, no roster, no connection
//! events, no write reconciliation, no progress.
//!
//! Issue "fleetsim core" asks that fleetsim's CPU and RSS per agent stay close to what
//! the bare calls cost. `scripts/bench.sh` runs this next to `fleetsim run` at the same
//! fleet sizes and in the same way (the same scenario file, connection options and
//! provisioning in this process, the broker a separate process), so the difference
//! between the two rows is what fleetsim itself adds.
//!
//! ```text
//! cargo run --release --example bare_agents -- scenarios/bench-cold-start.toml 1000
//! ```
//!
//! Prints one line of `key=value` pairs (see `main`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::watch;

use fleetsim::broker::embedded::{EmbeddedBroker, EmbeddedOptions};
use fleetsim::plan::FleetPlan;
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
    fleetsim::host::raise_nofile_limit().context("raising the open-files limit")?;

    let broker = EmbeddedBroker::start(EmbeddedOptions {
        max_connections: plan.broker.max_connections,
        request_queue_limit: plan.broker.request_queue_limit,
        default_max_consumers: plan.broker.default_max_consumers,
        lame_duck_duration: plan.broker.lame_duck_duration,
        lame_duck_grace_period: plan.broker.lame_duck_grace_period,
    })
    .await?;
    let url = broker.url();
    let admin = async_nats::connect(&url).await?;
    provision(&jetstream::new(admin.clone()), &plan).await?;

    let fleet = Arc::new(plan.fleet.clone());
    let errors = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(agents);
    for index in 0..agents {
        let (fleet, errors, url) = (fleet.clone(), errors.clone(), url.clone());
        let (mut stop, ready) = (stop_rx.clone(), ready_tx.clone());
        tasks.push(tokio::spawn(async move {
            let Some(mut watches) = setup(&fleet, &url, index, &errors).await else {
                return;
            };
            let _ = ready.send(started.elapsed());
            // Keep consuming until the end, as a real agent (and fleetsim's) does.
            loop {
                tokio::select! {
                    item = watches.next() => if item.is_none() { break },
                    _ = stop.changed() => break,
                }
            }
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

/// Connects, opens the kanade profile's 7 consumers and runs its sync; returns the
/// watches merged into one stream.
async fn setup(
    fleet: &FleetPlan,
    url: &str,
    index: usize,
    errors: &AtomicU64,
) -> Option<BoxStream<'static, ()>> {
    let pc = pc_id(index);
    let group = group_id(index, fleet.groups);
    let options = || {
        async_nats::ConnectOptions::new()
            .name(&pc)
            .connection_timeout(fleet.connect_timeout)
            .read_buffer_capacity(fleet.read_buffer_capacity)
            .request_timeout(Some(fleet.request_timeout))
    };
    let client = retry!(errors, options().connect(url));
    let js = jetstream::new(client);
    let config = retry!(errors, js.get_key_value("agent_config"));
    let groups = retry!(errors, js.get_key_value("agent_groups"));
    let schedules = retry!(errors, js.get_key_value("schedules"));
    let jobs = retry!(errors, js.get_key_value("jobs"));
    let fleet_config = retry!(errors, js.get_key_value("fleet_config"));

    let own_keys = vec![
        "global".to_string(),
        format!("pcs.{pc}"),
        format!("groups.{group}"),
    ];
    let mut watches: Vec<BoxStream<'static, ()>> = Vec::with_capacity(7);
    let kv = |w: async_nats::jetstream::kv::Watch| w.map(|_| ()).boxed();
    watches.push(kv(retry!(errors, config.watch_many(own_keys.clone()))));
    watches.push(kv(retry!(errors, groups.watch(&pc))));
    watches.push(kv(retry!(errors, groups.watch(&pc))));
    watches.push(kv(retry!(errors, schedules.watch_all())));
    watches.push(kv(retry!(errors, jobs.watch_all())));
    watches.push(kv(retry!(errors, fleet_config.watch("freeze"))));
    let exec = consumer::pull::Config {
        durable_name: Some(format!("agent_replay_{pc}")),
        filter_subjects: vec![
            "commands.all".to_string(),
            format!("commands.pc.{pc}"),
            format!("commands.group.{group}"),
        ],
        ack_policy: consumer::AckPolicy::Explicit,
        deliver_policy: consumer::DeliverPolicy::LastPerSubject,
        ..Default::default()
    };
    let replay: consumer::PullConsumer =
        retry!(errors, js.create_consumer_on_stream(exec.clone(), "EXEC"));
    let messages = retry!(errors, replay.messages());
    watches.push(
        messages
            .then(|m| async move {
                if let Ok(m) = m {
                    let _ = m.ack().await;
                }
            })
            .boxed(),
    );

    for key in &own_keys {
        retry!(errors, config.get(key.clone()));
    }
    retry!(errors, groups.get(pc.clone()));
    retry!(errors, fleet_config.get("freeze"));
    for catalog in [&schedules, &jobs] {
        let keys: Vec<String> = loop {
            match catalog.keys().await {
                Ok(keys) => match keys.collect::<Vec<_>>().await.into_iter().collect() {
                    Ok(keys) => break keys,
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                },
                Err(_) => errors.fetch_add(1, Ordering::Relaxed),
            };
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        for key in keys {
            retry!(errors, catalog.get(key.clone()));
        }
    }
    Some(futures::stream::select_all(watches).boxed())
}
