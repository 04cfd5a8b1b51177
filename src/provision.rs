//! Broker state the fleet needs: the kanade buckets, the EXEC stream, and seeded keys.
//!
//! Mirrors kanade's bootstrap (seed `000_*`, nats-facts §6): `agent_config`,
//! `agent_groups`, `schedules` and `jobs` keep 5 revisions, `fleet_config` one; `EXEC`
//! holds the last command per subject for a week. Every agent gets `pcs.<pc>` and a
//! membership entry, every group `groups.<g>`; the catalogs get `catalog_entries` each.
//!
//! Seeding is pipelined (many puts in flight on one connection) because a fleet of
//! 10,000 agents means 20,000+ puts: one at a time that is minutes, pipelined seconds.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::plan::Plan;

/// Puts in flight at once while seeding.
const SEED_IN_FLIGHT: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("cannot create bucket {bucket}: {message}")]
    Bucket { bucket: String, message: String },
    #[error("cannot create stream EXEC: {0}")]
    Stream(String),
    #[error("seeding {bucket} failed at key {key}: {message}")]
    Seed {
        bucket: String,
        key: String,
        message: String,
    },
}

/// The id of agent `index` (0-based), e.g. `pc-00042`.
pub fn pc_id(index: usize) -> String {
    format!("pc-{index:05}")
}

/// The group agent `index` belongs to, e.g. `g-003`.
pub fn group_id(index: usize, groups: usize) -> String {
    format!("g-{:03}", index % groups.max(1))
}

/// What provisioning did, for logs and the manifest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Provisioned {
    pub keys_seeded: usize,
    pub seconds: f64,
}

/// Creates (or with `plan.broker.reset`, recreates) buckets and stream, then seeds keys.
pub async fn provision(
    js: &jetstream::Context,
    plan: &Plan,
) -> Result<Provisioned, ProvisionError> {
    let started = Instant::now();
    let reset = plan.broker.reset;
    let config = bucket(js, "agent_config", 5, reset).await?;
    let groups = bucket(js, "agent_groups", 5, reset).await?;
    let schedules = bucket(js, "schedules", 5, reset).await?;
    let jobs = bucket(js, "jobs", 5, reset).await?;
    let fleet_config = bucket(js, "fleet_config", 1, reset).await?;
    exec_stream(js, reset).await?;

    let n = plan.fleet.agents;
    let g = plan.fleet.groups;
    let mut seeded = 0;
    seeded += seed(
        &config,
        "agent_config",
        std::iter::once("global".to_string()),
    )
    .await?;
    seeded += seed(
        &config,
        "agent_config",
        (0..g).map(|i| format!("groups.{}", group_id(i, g))),
    )
    .await?;
    seeded += seed(
        &config,
        "agent_config",
        (0..n).map(|i| format!("pcs.{}", pc_id(i))),
    )
    .await?;
    seeded += seed(&groups, "agent_groups", (0..n).map(pc_id)).await?;
    let entries = plan.fleet.catalog_entries;
    seeded += seed(
        &schedules,
        "schedules",
        (0..entries).map(|i| format!("sched-{i:04}")),
    )
    .await?;
    seeded += seed(&jobs, "jobs", (0..entries).map(|i| format!("job-{i:04}"))).await?;
    seeded += seed(
        &fleet_config,
        "fleet_config",
        std::iter::once("freeze".to_string()),
    )
    .await?;
    Ok(Provisioned {
        keys_seeded: seeded,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn bucket(
    js: &jetstream::Context,
    name: &str,
    history: i64,
    reset: bool,
) -> Result<kv::Store, ProvisionError> {
    let fail = |message: String| ProvisionError::Bucket {
        bucket: name.to_string(),
        message,
    };
    if reset {
        // A missing bucket is the normal case on a fresh broker.
        let _ = js.delete_key_value(name).await;
    }
    let config = kv::Config {
        bucket: name.to_string(),
        history,
        ..Default::default()
    };
    js.create_or_update_key_value(config)
        .await
        .map_err(|e| fail(format!("{e:#}")))
}

async fn exec_stream(js: &jetstream::Context, reset: bool) -> Result<(), ProvisionError> {
    if reset {
        let _ = js.delete_stream("EXEC").await;
    }
    js.create_or_update_stream(stream::Config {
        name: "EXEC".to_string(),
        subjects: vec!["commands.>".to_string()],
        max_messages_per_subject: 1,
        max_age: Duration::from_secs(7 * 24 * 3600),
        max_bytes: 64 * 1024 * 1024,
        ..Default::default()
    })
    .await
    .map(|_| ())
    .map_err(|e| ProvisionError::Stream(format!("{e:#}")))
}

/// Puts `seed-0` under every key, many in flight at once; returns how many were put.
async fn seed(
    store: &kv::Store,
    bucket: &str,
    keys: impl Iterator<Item = String>,
) -> Result<usize, ProvisionError> {
    let value = Bytes::from_static(b"{\"seed\":0}");
    futures::stream::iter(keys)
        .map(|key| {
            let value = value.clone();
            async move {
                store
                    .put(&key, value)
                    .await
                    .map(|_| 1)
                    .map_err(|e| ProvisionError::Seed {
                        bucket: bucket.to_string(),
                        key,
                        message: format!("{e:#}"),
                    })
            }
        })
        .buffer_unordered(SEED_IN_FLIGHT)
        .try_fold(0, |acc, n| async move { Ok(acc + n) })
        .await
}
