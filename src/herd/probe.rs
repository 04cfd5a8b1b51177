//! The probes of a herd: the fewest writes that reach every consumer of every agent,
//! written as soon as the broker takes writes and again for agents that ask.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::plan::{ConsumerKind, KeyTemplate, Profile};
use crate::provision::{group_id, pc_id};

/// Key written into a bucket that an agent watches whole (`watch_all`).
pub const WATCH_ALL_PROBE_KEY: &str = "fleetsim.probe";
/// Subject of the EXEC probe: one command every agent's durable consumer receives.
pub const EXEC_PROBE_SUBJECT: &str = "commands.all";
/// Probe puts in flight at once.
const PROBE_IN_FLIGHT: usize = 1024;

/// The value of a probe of `generation`.
pub fn probe_value(generation: u64) -> Bytes {
    Bytes::from(format!("probe:{generation}"))
}

/// The probe generation a delivered value carries, if it is a probe.
pub fn parse_probe(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value.strip_prefix(b"probe:")?)
        .ok()?
        .parse()
        .ok()
}

/// One probe write.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum ProbeWrite {
    /// A KV put of `key` into `bucket`.
    Kv { bucket: String, key: String },
    /// A publish into the EXEC stream.
    Exec { subject: String },
}

/// Every write a herd's probe makes for a fleet and profile.
#[derive(Debug, Clone, Serialize)]
pub struct ProbePlan {
    /// Writes that reach every agent (`global`, `freeze`, a catalog key, `commands.all`).
    pub shared: Vec<ProbeWrite>,
    /// Per agent, the writes only it (or its group) needs (its `agent_groups` key).
    pub per_agent: Vec<Vec<ProbeWrite>>,
}

impl ProbePlan {
    /// The fewest writes that reach every consumer of every agent: per consumer, a key
    /// without placeholders if it has one (shared by the fleet), else a `{group}` key
    /// (one per group), else a `{pc}` key (one per agent). Duplicates are written once.
    pub fn for_profile(profile: &Profile, agents: usize, groups: usize) -> ProbePlan {
        let mut shared = BTreeSet::new();
        let mut per_agent: Vec<BTreeSet<ProbeWrite>> = vec![BTreeSet::new(); agents];
        let mut exec = false;
        let mut add = |bucket: &str, key: &KeyTemplate| {
            if key.0.contains("{pc}") || key.0.contains("{group}") {
                for (agent, writes) in per_agent.iter_mut().enumerate() {
                    writes.insert(ProbeWrite::Kv {
                        bucket: bucket.to_string(),
                        key: key.render(&pc_id(agent), &group_id(agent, groups)),
                    });
                }
            } else {
                shared.insert(ProbeWrite::Kv {
                    bucket: bucket.to_string(),
                    key: key.0.clone(),
                });
            }
        };
        for consumer in &profile.consumers {
            match &consumer.kind {
                ConsumerKind::Watch { bucket, key } => add(bucket, key),
                ConsumerKind::WatchMany { bucket, keys } => {
                    let rank = |k: &KeyTemplate| {
                        if k.0.contains("{pc}") {
                            2
                        } else if k.0.contains("{group}") {
                            1
                        } else {
                            0
                        }
                    };
                    if let Some(key) = keys.iter().min_by_key(|k| rank(k)) {
                        add(bucket, key);
                    }
                }
                ConsumerKind::WatchAll { bucket } => {
                    add(bucket, &KeyTemplate(WATCH_ALL_PROBE_KEY.to_string()));
                }
                ConsumerKind::ExecReplay => exec = true,
            }
        }
        if exec {
            shared.insert(ProbeWrite::Exec {
                subject: EXEC_PROBE_SUBJECT.to_string(),
            });
        }
        ProbePlan {
            shared: shared.into_iter().collect(),
            per_agent: per_agent
                .into_iter()
                .map(|w| w.into_iter().collect())
                .collect(),
        }
    }

    /// The distinct writes that reach `agents` (all of them: the whole fleet).
    pub fn writes_for(&self, agents: &[usize]) -> Vec<ProbeWrite> {
        let mut writes: BTreeSet<ProbeWrite> = self.shared.iter().cloned().collect();
        for &a in agents {
            writes.extend(self.per_agent[a].iter().cloned());
        }
        writes.into_iter().collect()
    }

    /// Writes the probes of `generation` for the whole fleet, then, until `done` or
    /// `deadline`, again for agents that ask (they opened new watches after the first
    /// write), batched every 100 ms. Each write is retried until acknowledged or
    /// `deadline` (the broker may still be coming back).
    pub async fn run(
        &self,
        js: &jetstream::Context,
        generation: u64,
        mut reprobes: mpsc::UnboundedReceiver<usize>,
        deadline: Instant,
        done: impl std::future::Future,
    ) -> ProbesWritten {
        let all: Vec<usize> = (0..self.per_agent.len()).collect();
        let mut written = write_batch(js, &self.writes_for(&all), generation, deadline).await;
        tokio::pin!(done);
        let mut pending: BTreeSet<usize> = BTreeSet::new();
        loop {
            tokio::select! {
                _ = &mut done => break,
                _ = tokio::time::sleep_until(deadline.into()) => break,
                agent = reprobes.recv() => match agent {
                    Some(a) => { pending.insert(a); }
                    None => break,
                },
                _ = tokio::time::sleep(Duration::from_millis(100)), if !pending.is_empty() => {
                    let agents: Vec<usize> = std::mem::take(&mut pending).into_iter().collect();
                    let more = write_batch(js, &self.writes_for(&agents), generation, deadline).await;
                    written.writes += more.writes;
                    written.acked += more.acked;
                }
            }
        }
        written
    }
}

async fn write_batch(
    js: &jetstream::Context,
    writes: &[ProbeWrite],
    generation: u64,
    deadline: Instant,
) -> ProbesWritten {
    let value = probe_value(generation);
    let first_ack: Mutex<Option<Instant>> = Mutex::new(None);
    let acked = futures::stream::iter(writes.iter())
        .map(|write| {
            let value = value.clone();
            let first_ack = &first_ack;
            async move {
                let ok = write_one(js, write, value, deadline).await;
                if ok {
                    first_ack
                        .lock()
                        .expect("probe lock")
                        .get_or_insert_with(Instant::now);
                }
                ok
            }
        })
        .buffer_unordered(PROBE_IN_FLIGHT)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    ProbesWritten {
        writes: writes.len(),
        acked,
        first_ack: first_ack.into_inner().expect("probe lock"),
    }
}

/// What [`ProbePlan::run`] wrote.
#[derive(Debug, Clone, Copy)]
pub struct ProbesWritten {
    /// Writes made (the first round, then re-probes).
    pub writes: usize,
    pub acked: usize,
    pub first_ack: Option<Instant>,
}

/// One probe write, retried every 100 ms until acknowledged or `deadline`.
async fn write_one(
    js: &jetstream::Context,
    write: &ProbeWrite,
    value: Bytes,
    deadline: Instant,
) -> bool {
    let (subject, payload) = match write {
        ProbeWrite::Kv { bucket, key } => (format!("$KV.{bucket}.{key}"), value),
        ProbeWrite::Exec { subject } => (subject.clone(), value),
    };
    loop {
        let attempt = async {
            let ack = js.publish(subject.clone(), payload.clone()).await.ok()?;
            ack.await.ok()
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if let Ok(Some(_)) = tokio::time::timeout(left.min(Duration::from_secs(5)), attempt).await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str) -> Profile {
        crate::scenario::parse_str(
            &format!("[fleet]\nagents = 1\nprofile = \"{name}\"\n[[steps]]\nkind = \"start\"\n"),
            "t.toml",
        )
        .expect("valid")
        .profile
    }

    #[test]
    fn kanade_probes_write_shared_keys_once_and_membership_per_agent() {
        let plan = ProbePlan::for_profile(&profile("kanade"), 10, 3);
        let kv = |b: &str, k: &str| ProbeWrite::Kv {
            bucket: b.to_string(),
            key: k.to_string(),
        };
        let all = plan.writes_for(&(0..10).collect::<Vec<_>>());
        assert!(all.contains(&kv("agent_config", "global")));
        assert!(all.contains(&kv("fleet_config", "freeze")));
        assert!(all.contains(&kv("jobs", WATCH_ALL_PROBE_KEY)));
        assert!(all.contains(&kv("schedules", WATCH_ALL_PROBE_KEY)));
        assert!(all.contains(&kv("agent_groups", "pc-00009")));
        // global, freeze, jobs, schedules, one EXEC command, and 10 membership keys
        // (groups_config and groups_subs watch the same key).
        assert_eq!(all.len(), 5 + 10);
        // A re-probe for one agent: the shared writes and its own key only.
        assert_eq!(plan.writes_for(&[3]).len(), 5 + 1);
        assert!(
            plan.writes_for(&[3])
                .contains(&kv("agent_groups", "pc-00003"))
        );
    }

    #[test]
    fn probe_values_round_trip() {
        assert_eq!(parse_probe(&probe_value(7)), Some(7));
        assert_eq!(parse_probe(b"{\"seed\":0}"), None);
        assert_eq!(parse_probe(b"probe:x"), None);
    }
}
