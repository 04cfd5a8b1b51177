//! Write fan-out: paced writes, what each agent received, and the reconciliation that
//! says what was missed, duplicated or replayed.
//!
//! Every write's value is `w:<id>:<intended send time, unix µs>:` padded to the value
//! size. The sender paces writes by their *intended* time (`start + i / rate`) and never
//! waits for one write's ack before the next is due, so a slow broker shows up as latency
//! instead of as fewer writes (no coordinated omission). Agents record the delivery
//! latency from the intended time, and whether the write was meant for them: a
//! `pcs.<other>` entry reaching a `watch_all` is an *unintended* delivery, the cost of
//! the fan-out seed 000 describes.
//!
//! At the end of the step (after the drain timeout) every agent's expected writes are
//! compared with what it received: missed, duplicates, and stale replays (an older
//! write delivered again after a newer one on the same key, the `watch()` replay of
//! nats-facts §0.3). Nothing is dropped silently: each count is reported per agent.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

/// The delivery kinds latency and fan-out are reported by (metric `delivery.<kind>`).
pub const KINDS: [&str; 9] = [
    "pc",
    "group",
    "global",
    "jobs",
    "schedules",
    "freeze",
    "exec_pc",
    "exec_group",
    "exec_all",
];

pub fn kind_index(kind: &str) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(0)
}

/// The value of write `id` intended at `intended`, padded to `size` bytes.
pub fn write_value(id: u64, intended: SystemTime, size: usize) -> Bytes {
    let us = intended
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    let mut v = format!("w:{id}:{us}:").into_bytes();
    if v.len() < size {
        v.resize(size, b'.');
    }
    Bytes::from(v)
}

/// (id, intended send time) of a write value.
pub fn parse_write(value: &[u8]) -> Option<(u64, SystemTime)> {
    let rest = value.strip_prefix(b"w:")?;
    let mut parts = rest.splitn(3, |b| *b == b':');
    let id = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let us: u64 = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    Some((id, UNIX_EPOCH + Duration::from_micros(us)))
}

/// Which delivery kind a KV entry is, and whether agent `pc` of `group` needs it.
pub fn classify_kv(bucket: &str, key: &str, pc: &str, group: &str) -> (usize, bool) {
    match bucket {
        "agent_config" => {
            if let Some(target) = key.strip_prefix("pcs.") {
                (kind_index("pc"), target == pc)
            } else if let Some(target) = key.strip_prefix("groups.") {
                (kind_index("group"), target == group)
            } else {
                (kind_index("global"), true)
            }
        }
        "jobs" => (kind_index("jobs"), true),
        "schedules" => (kind_index("schedules"), true),
        _ => (kind_index("freeze"), true),
    }
}

/// Which delivery kind an EXEC command is, and whether agent `pc` of `group` needs it.
pub fn classify_exec(subject: &str, pc: &str, group: &str) -> (usize, bool) {
    if let Some(target) = subject.strip_prefix("commands.pc.") {
        (kind_index("exec_pc"), target == pc)
    } else if let Some(target) = subject.strip_prefix("commands.group.") {
        (kind_index("exec_group"), target == group)
    } else {
        (kind_index("exec_all"), true)
    }
}

/// Who a write is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipients {
    Agent(usize),
    Group(usize),
    All,
}

/// One write as sent.
#[derive(Debug, Clone)]
pub struct SentWrite {
    pub id: u64,
    pub kind: usize,
    pub recipients: Recipients,
    pub acked: bool,
}

/// One write as an agent saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub id: u64,
    pub intended: SystemTime,
    pub kind: usize,
    pub for_me: bool,
    /// The key (KV) or subject (EXEC) it arrived on: replays are judged per key.
    pub key: String,
    /// JetStream redelivered it (EXEC: `delivered > 1`).
    pub redelivered: bool,
}

/// What agents received during the current write step.
pub struct Ledger {
    /// Writes with an id below this belong to earlier steps and are not reconciled.
    first_id: AtomicU64,
    agents: Vec<Mutex<AgentLedger>>,
    /// Deliveries to agents that did not need them, by kind.
    unintended: Vec<AtomicU64>,
    /// Intended deliveries (first of each id per agent), by kind.
    delivered: Vec<AtomicU64>,
}

#[derive(Default)]
struct AgentLedger {
    /// Times each write id was delivered.
    counts: HashMap<u64, u32>,
    /// Newest write id seen per key.
    newest: HashMap<String, u64>,
    duplicates: u64,
    stale: u64,
    redelivered: u64,
    unintended: u64,
}

impl Ledger {
    pub fn new(agents: usize) -> Self {
        Ledger {
            first_id: AtomicU64::new(u64::MAX),
            agents: (0..agents).map(|_| Mutex::default()).collect(),
            unintended: KINDS.iter().map(|_| AtomicU64::new(0)).collect(),
            delivered: KINDS.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Starts a write step whose first write id is `first_id`: earlier records are cleared.
    pub fn begin(&self, first_id: u64) {
        for a in &self.agents {
            *a.lock().expect("ledger lock") = AgentLedger::default();
        }
        for c in self.unintended.iter().chain(&self.delivered) {
            c.store(0, Ordering::Relaxed);
        }
        self.first_id.store(first_id, Ordering::Release);
    }

    /// Records a delivery to `agent`. Returns true when it is an intended first delivery
    /// (whose latency the agent should record).
    pub fn record(&self, agent: usize, seen: &Seen) -> bool {
        if seen.id < self.first_id.load(Ordering::Acquire) {
            return false;
        }
        let mut a = self.agents[agent].lock().expect("ledger lock");
        if !seen.for_me {
            a.unintended += 1;
            self.unintended[seen.kind].fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if seen.redelivered {
            a.redelivered += 1;
        }
        let newest = a.newest.entry(seen.key.clone()).or_insert(seen.id);
        let is_stale = seen.id < *newest;
        *newest = (*newest).max(seen.id);
        let count = a.counts.entry(seen.id).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.delivered[seen.kind].fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if is_stale {
            a.stale += 1;
        } else {
            a.duplicates += 1;
        }
        false
    }

    pub fn unintended_total(&self) -> u64 {
        self.unintended
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub fn delivered_total(&self) -> u64 {
        self.delivered
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Compares what each agent should have received with what it did.
    pub fn reconcile(
        &self,
        writes: &[SentWrite],
        agents: &[usize],
        group_of: impl Fn(usize) -> usize,
    ) -> Reconciliation {
        let mut per_agent = Vec::new();
        for &agent in agents {
            let a = self.agents[agent].lock().expect("ledger lock");
            let group = group_of(agent);
            let expected: Vec<&SentWrite> = writes
                .iter()
                .filter(|w| {
                    w.acked
                        && match w.recipients {
                            Recipients::Agent(x) => x == agent,
                            Recipients::Group(g) => g == group,
                            Recipients::All => true,
                        }
                })
                .collect();
            let missed = expected
                .iter()
                .filter(|w| !a.counts.contains_key(&w.id))
                .count() as u64;
            per_agent.push(AgentReconciliation {
                agent,
                expected: expected.len() as u64,
                received: expected.len() as u64 - missed,
                missed,
                duplicates: a.duplicates,
                stale_replays: a.stale,
                redelivered: a.redelivered,
                unintended: a.unintended,
            });
        }
        let by_kind = KINDS
            .iter()
            .enumerate()
            .filter_map(|(k, name)| {
                let sent: Vec<&SentWrite> = writes.iter().filter(|w| w.kind == k).collect();
                (!sent.is_empty()).then(|| KindFanout {
                    kind: name,
                    writes: sent.len() as u64,
                    acked: sent.iter().filter(|w| w.acked).count() as u64,
                    delivered: self.delivered[k].load(Ordering::Relaxed),
                    unintended: self.unintended[k].load(Ordering::Relaxed),
                })
            })
            .collect();
        Reconciliation { per_agent, by_kind }
    }
}

/// The reconciliation of one write step.
#[derive(Debug, Clone, Default)]
pub struct Reconciliation {
    pub per_agent: Vec<AgentReconciliation>,
    pub by_kind: Vec<KindFanout>,
}

impl Reconciliation {
    pub fn missed(&self) -> u64 {
        self.per_agent.iter().map(|a| a.missed).sum()
    }
}

#[derive(Debug, Clone)]
pub struct AgentReconciliation {
    pub agent: usize,
    pub expected: u64,
    pub received: u64,
    pub missed: u64,
    pub duplicates: u64,
    pub stale_replays: u64,
    pub redelivered: u64,
    pub unintended: u64,
}

/// Fan-out of one kind of write: deliveries per acknowledged write.
#[derive(Debug, Clone)]
pub struct KindFanout {
    pub kind: &'static str,
    pub writes: u64,
    pub acked: u64,
    /// Intended deliveries (first per agent and write).
    pub delivered: u64,
    /// Deliveries to agents that did not need them.
    pub unintended: u64,
}

impl KindFanout {
    pub fn intended_ratio(&self) -> f64 {
        self.delivered as f64 / self.acked.max(1) as f64
    }

    pub fn total_ratio(&self) -> f64 {
        (self.delivered + self.unintended) as f64 / self.acked.max(1) as f64
    }
}

/// Sends `count` writes paced by intended time (`start + i / rate`) and returns, per
/// write, the time from its *intended* send time to its ack (`None`: not acked). A write
/// sent late (the sender or the runtime was busy) is charged its wait; sends overlap, so
/// one slow ack never delays the next write.
pub async fn paced<F, Fut>(
    start: tokio::time::Instant,
    rate: f64,
    count: u64,
    send: F,
) -> Vec<Option<Duration>>
where
    F: Fn(u64, tokio::time::Instant) -> Fut,
    Fut: Future<Output = bool>,
{
    let intended = |i: u64| start + Duration::from_secs_f64(i as f64 / rate);
    let mut results = vec![None; count as usize];
    let mut in_flight = FuturesUnordered::new();
    let mut next = 0u64;
    while next < count || !in_flight.is_empty() {
        let due = (next < count).then(|| intended(next));
        tokio::select! {
            _ = async { tokio::time::sleep_until(due.expect("guarded")).await }, if due.is_some() => {
                let i = next;
                let at = intended(i);
                let send = send(i, at);
                in_flight.push(async move { (i, send.await.then(|| at.elapsed())) });
                next += 1;
            }
            Some((i, latency)) = in_flight.next(), if !in_flight.is_empty() => {
                results[i as usize] = latency;
            }
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_values_round_trip_and_pad() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let v = write_value(42, t, 64);
        assert_eq!(v.len(), 64);
        assert_eq!(parse_write(&v), Some((42, t)));
        assert_eq!(parse_write(b"probe:1"), None);
    }

    #[test]
    fn a_pcs_write_is_only_for_its_agent() {
        assert_eq!(
            classify_kv("agent_config", "pcs.pc-00001", "pc-00001", "g-001"),
            (0, true)
        );
        assert_eq!(
            classify_kv("agent_config", "pcs.pc-00002", "pc-00001", "g-001"),
            (0, false)
        );
        assert!(classify_kv("agent_config", "global", "pc-00001", "g-001").1);
        assert!(!classify_exec("commands.group.g-002", "pc-00001", "g-001").1);
    }

    #[test]
    fn the_ledger_tells_duplicates_from_stale_replays_and_counts_misses() {
        let ledger = Ledger::new(2);
        ledger.begin(10);
        let seen = |id, key: &str| Seen {
            id,
            intended: SystemTime::now(),
            kind: 4,
            for_me: true,
            key: key.into(),
            redelivered: false,
        };
        assert!(ledger.record(0, &seen(10, "jobs.a")));
        assert!(ledger.record(0, &seen(11, "jobs.a")));
        assert!(
            !ledger.record(0, &seen(10, "jobs.a")),
            "older write replayed"
        );
        assert!(!ledger.record(0, &seen(11, "jobs.a")), "same write twice");
        assert!(
            !ledger.record(0, &seen(3, "jobs.a")),
            "an earlier step's write"
        );
        let writes: Vec<SentWrite> = (10..13)
            .map(|id| SentWrite {
                id,
                kind: 4,
                recipients: Recipients::All,
                acked: true,
            })
            .collect();
        let r = ledger.reconcile(&writes, &[0, 1], |_| 0);
        let a0 = &r.per_agent[0];
        assert_eq!((a0.expected, a0.received, a0.missed), (3, 2, 1));
        assert_eq!((a0.duplicates, a0.stale_replays), (1, 1));
        assert_eq!(r.per_agent[1].missed, 3);
        assert_eq!(r.missed(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_send_is_charged_its_waiting_time() {
        // The sender starts 1 s behind schedule: writes 0..9 were due before it ran.
        let start = tokio::time::Instant::now() - Duration::from_secs(1);
        let latencies = paced(start, 10.0, 20, |_, _| async { true }).await;
        let ms: Vec<u128> = latencies
            .iter()
            .map(|l| l.expect("acked").as_millis())
            .collect();
        assert!(
            ms[0] >= 1000,
            "write 0 was due 1 s before it was sent: {ms:?}"
        );
        assert!(ms[5] >= 500, "{ms:?}");
        assert!(
            ms[15] < 10,
            "writes due after the sender caught up are on time: {ms:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_ack_does_not_delay_the_next_write() {
        let start = tokio::time::Instant::now();
        let latencies = paced(start, 10.0, 3, |i, _| async move {
            if i == 0 {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            true
        })
        .await;
        assert!(latencies[0].expect("acked") >= Duration::from_secs(2));
        assert!(latencies[1].expect("acked") < Duration::from_millis(10));
    }
}

/// What one `write` or `exec` step sends: owned, so the step can run in the background.
pub struct WriteJob {
    pub label: String,
    pub js: async_nats::jetstream::Context,
    pub ctx: std::sync::Arc<crate::fleet::agent::AgentContext>,
    pub target: Target,
    pub load: crate::plan::WriteLoad,
    pub first_id: u64,
    pub seed: u64,
    /// Agents expected to receive (started and not failed when the step began).
    pub agents: Vec<usize>,
}

/// A `write` step's KV target or an `exec` step's subject.
#[derive(Debug, Clone)]
pub enum Target {
    Kv(crate::plan::WriteTarget),
    Exec(crate::plan::ExecTarget),
}

/// What a write step measured.
#[derive(Debug, Clone)]
pub struct WriteRecord {
    pub label: String,
    pub target: String,
    pub writes: u64,
    pub acked: u64,
    /// Deliveries still outstanding when the drain timeout passed.
    pub drained: bool,
    pub reconciliation: Reconciliation,
}

impl WriteJob {
    /// The subject, recipients and kind of write `i`.
    fn plan_write(&self, i: u64, rng: &mut rand::rngs::SmallRng) -> (String, Recipients, usize) {
        use crate::plan::{ExecTarget, WriteTarget};
        use crate::provision::{group_id, pc_id};
        use rand::RngExt;
        let fleet = &self.ctx.fleet;
        let (n, groups) = (fleet.agents, fleet.groups.max(1));
        let catalog = fleet.catalog_entries.max(1);
        let random_agent = |rng: &mut rand::rngs::SmallRng| rng.random_range(0..n);
        let random_group = |rng: &mut rand::rngs::SmallRng| rng.random_range(0..groups.min(n));
        let pc_write = |a: usize| {
            (
                format!("$KV.agent_config.pcs.{}", pc_id(a)),
                Recipients::Agent(a),
                kind_index("pc"),
            )
        };
        match &self.target {
            Target::Kv(WriteTarget::Pc) => pc_write(random_agent(rng)),
            Target::Kv(WriteTarget::PcEach) => pc_write(i as usize % n),
            Target::Kv(WriteTarget::Pcs { agents }) => pc_write(agents[i as usize % agents.len()]),
            Target::Kv(WriteTarget::Group) => {
                let g = random_group(rng);
                (
                    format!("$KV.agent_config.groups.{}", group_id(g, groups)),
                    Recipients::Group(g),
                    kind_index("group"),
                )
            }
            Target::Kv(WriteTarget::Global) => (
                "$KV.agent_config.global".to_string(),
                Recipients::All,
                kind_index("global"),
            ),
            Target::Kv(WriteTarget::Jobs) => (
                format!("$KV.jobs.job-{:04}", rng.random_range(0..catalog)),
                Recipients::All,
                kind_index("jobs"),
            ),
            Target::Kv(WriteTarget::Schedules) => (
                format!("$KV.schedules.sched-{:04}", rng.random_range(0..catalog)),
                Recipients::All,
                kind_index("schedules"),
            ),
            Target::Kv(WriteTarget::Freeze) => (
                "$KV.fleet_config.freeze".to_string(),
                Recipients::All,
                kind_index("freeze"),
            ),
            Target::Exec(ExecTarget::Pc) => {
                let a = random_agent(rng);
                (
                    format!("commands.pc.{}", pc_id(a)),
                    Recipients::Agent(a),
                    kind_index("exec_pc"),
                )
            }
            Target::Exec(ExecTarget::Group) => {
                let g = random_group(rng);
                (
                    format!("commands.group.{}", group_id(g, groups)),
                    Recipients::Group(g),
                    kind_index("exec_group"),
                )
            }
            Target::Exec(ExecTarget::All) => (
                "commands.all".to_string(),
                Recipients::All,
                kind_index("exec_all"),
            ),
        }
    }

    fn target_name(&self) -> &'static str {
        match &self.target {
            Target::Kv(t) => t.name(),
            Target::Exec(t) => t.name(),
        }
    }

    /// Sends the writes, waits for the deliveries (up to the drain timeout), reconciles.
    pub async fn run(self) -> WriteRecord {
        use rand::SeedableRng;
        let mut rng = rand::rngs::SmallRng::seed_from_u64(self.seed);
        let planned: Vec<(String, Recipients, usize)> = (0..self.load.count)
            .map(|i| self.plan_write(i, &mut rng))
            .collect();
        let ledger = &self.ctx.ledger;
        ledger.begin(self.first_id);
        let metrics = &self.ctx.metrics;
        let ack_metric = metrics.metric(&format!("write_ack.{}", self.target_name()));
        let start = tokio::time::Instant::now();
        let start_wall = SystemTime::now();
        let size = self.load.value_size;
        let latencies = paced(start, self.load.rate, self.load.count, |i, at| {
            let (subject, _, _) = &planned[i as usize];
            let value = write_value(self.first_id + i, start_wall + (at - start), size);
            let js = self.js.clone();
            let subject = subject.clone();
            async move {
                match js.publish(subject, value).await {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
        // Agents whose profile watches a whole bucket receive every write to it: the
        // drain waits for those unintended deliveries too, or the fan-out is undercounted.
        let watched_whole: Vec<String> = self
            .ctx
            .profile
            .consumers
            .iter()
            .filter_map(|c| match &c.kind {
                crate::plan::ConsumerKind::WatchAll { bucket } => Some(format!("$KV.{bucket}.")),
                _ => None,
            })
            .collect();
        let mut sent = Vec::with_capacity(planned.len());
        for (i, ((_, recipients, kind), latency)) in planned.iter().zip(&latencies).enumerate() {
            if let Some(l) = latency {
                metrics.record(i, ack_metric, *l);
            }
            sent.push(SentWrite {
                id: self.first_id + i as u64,
                kind: *kind,
                recipients: *recipients,
                acked: latency.is_some(),
            });
        }
        // Wait until every expected delivery arrived, or the drain timeout.
        let groups = self.ctx.fleet.groups.max(1);
        let intended_of = |w: &SentWrite| match w.recipients {
            Recipients::Agent(a) => u64::from(self.agents.contains(&a)),
            Recipients::Group(g) => self.agents.iter().filter(|&&a| a % groups == g).count() as u64,
            Recipients::All => self.agents.len() as u64,
        };
        let (mut expected, mut expected_unintended) = (0u64, 0u64);
        for ((subject, _, _), w) in planned.iter().zip(&sent).filter(|(_, w)| w.acked) {
            let intended = intended_of(w);
            expected += intended;
            if watched_whole
                .iter()
                .any(|prefix| subject.starts_with(prefix))
            {
                expected_unintended += self.agents.len() as u64 - intended;
            }
        }
        let deadline = tokio::time::Instant::now() + self.load.drain_timeout;
        let arrived = || {
            ledger.delivered_total() >= expected && ledger.unintended_total() >= expected_unintended
        };
        while !arrived() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let drained = arrived();
        let reconciliation = ledger.reconcile(&sent, &self.agents, |a| a % groups);
        let target = self.target_name().to_string();
        WriteRecord {
            label: self.label,
            target,
            writes: sent.len() as u64,
            acked: sent.iter().filter(|w| w.acked).count() as u64,
            drained,
            reconciliation,
        }
    }
}
