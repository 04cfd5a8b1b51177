//! Broker state the fleet needs: the profile's buckets and streams, the EXEC stream, and
//! the buckets' seeded keys.
//!
//! The kanade profile mirrors kanade's bootstrap (seed `000_*`, nats-facts §6):
//! `agent_config`, `agent_groups`, `schedules` and `jobs` keep 5 revisions,
//! `fleet_config` one. `EXEC` (always made: the `exec` step and the `exec_replay`
//! consumer use it) holds the last command per subject for a week. What each bucket is
//! seeded with is the profile's (`seed` templates, see [`seed_keys`]).
//!
//! Seeding is pipelined (many puts in flight on one connection) because a fleet of
//! 10,000 agents means 20,000+ puts: one at a time that is minutes, pipelined seconds.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::plan::{BucketSpec, KeyTemplate, Plan, StreamSpec};

/// Puts in flight at once while seeding.
const SEED_IN_FLIGHT: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("cannot create bucket {bucket}: {message}")]
    Bucket { bucket: String, message: String },
    #[error("cannot create stream {stream}: {message}")]
    Stream { stream: String, message: String },
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
    format!("g-{:03}", group_of(index, groups))
}

/// The number of the group agent `index` belongs to.
pub fn group_of(index: usize, groups: usize) -> usize {
    index % groups.max(1)
}

/// What provisioning did, for logs and the manifest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Provisioned {
    pub keys_seeded: usize,
    pub seconds: f64,
}

/// Creates (or with `plan.broker.reset`, recreates) the profile's buckets and streams
/// and `EXEC`, then seeds the buckets' keys.
pub async fn provision(
    js: &jetstream::Context,
    plan: &Plan,
) -> Result<Provisioned, ProvisionError> {
    let started = Instant::now();
    let reset = plan.broker.reset;
    let mut stores = Vec::new();
    for spec in &plan.profile.buckets {
        stores.push((spec, bucket(js, spec, reset).await?));
    }
    exec_stream(js, reset).await?;
    for spec in &plan.profile.streams {
        stream(js, spec, reset).await?;
    }
    let mut seeded = 0;
    for (spec, store) in &stores {
        let value = seed_value(spec.value_size);
        for template in &spec.seed {
            let keys = seed_keys(
                template,
                plan.fleet.agents,
                plan.fleet.groups,
                plan.fleet.catalog_entries,
            );
            seeded += seed(store, &spec.name, keys, value.clone()).await?;
        }
    }
    Ok(Provisioned {
        keys_seeded: seeded,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The keys one seed template stands for: per agent (`{pc}`, with its group), per group
/// (`{group}`), per catalog entry (`{n}`, four digits), or the key itself.
pub fn seed_keys(
    template: &KeyTemplate,
    agents: usize,
    groups: usize,
    catalog_entries: usize,
) -> Box<dyn Iterator<Item = String> + '_> {
    let t = &template.0;
    if t.contains("{pc}") {
        Box::new((0..agents).map(move |i| template.render(&pc_id(i), &group_id(i, groups))))
    } else if t.contains("{group}") {
        Box::new((0..groups.max(1)).map(move |i| template.render("", &group_id(i, groups))))
    } else if t.contains("{n}") {
        Box::new((0..catalog_entries).map(move |i| t.replace("{n}", &format!("{i:04}"))))
    } else {
        Box::new(std::iter::once(t.clone()))
    }
}

/// `{"seed":0}` padded with spaces to `size` bytes (never shorter).
fn seed_value(size: usize) -> Bytes {
    let mut value = b"{\"seed\":0}".to_vec();
    if value.len() < size {
        value.resize(size, b' ');
    }
    Bytes::from(value)
}

async fn bucket(
    js: &jetstream::Context,
    spec: &BucketSpec,
    reset: bool,
) -> Result<kv::Store, ProvisionError> {
    let fail = |message: String| ProvisionError::Bucket {
        bucket: spec.name.clone(),
        message,
    };
    if reset {
        // A missing bucket is the normal case on a fresh broker.
        let _ = js.delete_key_value(&spec.name).await;
    }
    let config = kv::Config {
        bucket: spec.name.clone(),
        history: spec.history,
        max_age: spec.ttl.unwrap_or_default(),
        ..Default::default()
    };
    js.create_or_update_key_value(config)
        .await
        .map_err(|e| fail(format!("{e:#}")))
}

async fn stream(
    js: &jetstream::Context,
    spec: &StreamSpec,
    reset: bool,
) -> Result<(), ProvisionError> {
    if reset {
        let _ = js.delete_stream(&spec.name).await;
    }
    js.create_or_update_stream(stream::Config {
        name: spec.name.clone(),
        subjects: spec.subjects.clone(),
        max_age: spec.max_age.unwrap_or_default(),
        max_bytes: 64 * 1024 * 1024,
        ..Default::default()
    })
    .await
    .map(|_| ())
    .map_err(|e| ProvisionError::Stream {
        stream: spec.name.clone(),
        message: format!("{e:#}"),
    })
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
    .map_err(|e| ProvisionError::Stream {
        stream: "EXEC".to_string(),
        message: format!("{e:#}"),
    })
}

/// Puts `seed-0` under every key, many in flight at once; returns how many were put.
async fn seed(
    store: &kv::Store,
    bucket: &str,
    keys: impl Iterator<Item = String>,
    value: Bytes,
) -> Result<usize, ProvisionError> {
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
