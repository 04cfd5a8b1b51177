//! A `write` or `exec` step: its writes sent at their intended times, its deliveries
//! drained, its reconciliation; in the foreground or, with `background = true`, while
//! the next steps run.
//!
//! Each job has its own [`Ledger`] covering its write ids, and measures in the phase of
//! the step that issued it: a background job's acks and deliveries stay that step's
//! however many steps run before they arrive.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rand::{RngExt, SeedableRng};
use tokio::task::JoinSet;
use tracing::info;

use super::{
    Ledger, Ledgers, Recipients, Reconciliation, SentWrite, classify_kv, key_of, kind_index,
    write_value,
};
use crate::fleet::pacing::paced;
use crate::metrics::Metrics;
use crate::plan::{
    ConsumerKind, ExecTarget, FleetPlan, KeyTemplate, WriteLoad, WriteRetry, WriteTarget,
};
use crate::provision::{group_id, pc_id};
use crate::step::StepEnv;

/// A `write` step's KV target or an `exec` step's subject.
#[derive(Debug, Clone)]
pub enum Target {
    Kv(WriteTarget),
    Exec(ExecTarget),
}

/// What a write step measured.
#[derive(Debug, Clone)]
pub struct WriteRecord {
    pub label: String,
    pub target: String,
    pub writes: u64,
    pub acked: u64,
    /// Publishes beyond each write's first (`retry = "until_acked"`; 0 otherwise).
    pub retries: u64,
    /// Whether a write left unacknowledged fails the run (`retry = "never"`, the
    /// default) or is only counted, for `[thresholds]` to judge (`"until_acked"`).
    pub unacked_fails_run: bool,
    /// Deliveries still outstanding when the drain timeout passed.
    pub drained: bool,
    pub reconciliation: Reconciliation,
}

impl WriteRecord {
    /// Why this step failed the run, if it did.
    fn reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.acked < self.writes && self.unacked_fails_run {
            reasons.push(format!(
                "step {}: {} of {} writes not acknowledged",
                self.label,
                self.writes - self.acked,
                self.writes
            ));
        }
        let missed = self.reconciliation.missed();
        if missed > 0 {
            let agents = self
                .reconciliation
                .per_agent
                .iter()
                .filter(|a| a.missed > 0)
                .count();
            reasons.push(format!(
                "step {}: {missed} deliveries missed by {agents} agents (see reconcile.csv)",
                self.label
            ));
        }
        reasons
    }
}

/// The write steps of one run: the ids they send, the jobs still running in the
/// background, and what the finished ones measured.
pub struct WriteSteps {
    ledgers: Arc<Ledgers>,
    /// Id of the next write a step sends (ids never repeat in a run).
    next_id: u64,
    background: JoinSet<WriteRecord>,
    done: Vec<WriteRecord>,
}

impl WriteSteps {
    /// The write steps of a fleet whose agents report deliveries to `ledgers`.
    pub fn new(ledgers: Arc<Ledgers>) -> Self {
        WriteSteps {
            ledgers,
            next_id: 1,
            background: JoinSet::new(),
            done: Vec::new(),
        }
    }

    /// Waits for the background jobs to reconcile.
    pub async fn finish(&mut self, reasons: &mut Vec<String>) {
        while let Some(done) = self.background.join_next().await {
            match done {
                Ok(record) => finish_one(record, &mut self.done, reasons),
                Err(e) => reasons.push(format!("a background write step failed: {e}")),
            }
        }
    }

    /// Every finished step's record, in the order they finished: background jobs that
    /// finished but were not yet collected (an interrupted run) included, so their
    /// writes.csv and reconcile.csv rows are not lost; jobs still running are stopped,
    /// each with a reason.
    pub fn into_done(mut self, reasons: &mut Vec<String>) -> Vec<WriteRecord> {
        while let Some(done) = self.background.try_join_next() {
            match done {
                Ok(record) => finish_one(record, &mut self.done, reasons),
                Err(e) => reasons.push(format!("a background write step failed: {e}")),
            }
        }
        if !self.background.is_empty() {
            reasons.push(format!(
                "{} background write step(s) still running when the run ended: not reconciled",
                self.background.len()
            ));
        }
        self.done
    }
}

/// Runs a `write` or `exec` step to its reconciliation, or starts it in the background.
pub async fn run_step(
    env: &mut StepEnv<'_>,
    steps: &mut WriteSteps,
    index: usize,
    target: Target,
    load: WriteLoad,
) {
    let label = env.label(index);
    let first_id = steps.next_id;
    steps.next_id += load.count;
    let agents = env.roster.live_agents();
    let ledger = Arc::new(Ledger::new(
        env.plan.fleet.agents,
        first_id..first_id + load.count,
        index,
    ));
    steps.ledgers.open(ledger.clone());
    let job = WriteJob {
        label: label.clone(),
        js: env.js.clone(),
        metrics: env.metrics.clone(),
        ledgers: steps.ledgers.clone(),
        ledger,
        fleet: env.plan.fleet.clone(),
        watched_whole: env
            .plan
            .profile
            .consumers
            .iter()
            .filter_map(|c| match &c.kind {
                ConsumerKind::WatchAll { bucket } => Some(format!("$KV.{bucket}.")),
                _ => None,
            })
            .collect(),
        histories: env
            .plan
            .profile
            .buckets
            .iter()
            .map(|b| (format!("$KV.{}.", b.name), b.history.max(1) as u64))
            .collect(),
        target,
        load,
        first_id,
        phase: index,
        seed: env.plan.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        agents,
    };
    info!(step = %label, writes = load.count, rate = load.rate, background = load.background, "writes begin");
    if load.background {
        steps.background.spawn(job.run());
    } else {
        let record = job.run().await;
        finish_one(record, &mut steps.done, &mut env.reasons);
    }
}

fn finish_one(record: WriteRecord, done: &mut Vec<WriteRecord>, reasons: &mut Vec<String>) {
    info!(
        step = %record.label,
        target = %record.target,
        writes = record.writes,
        acked = record.acked,
        missed = record.reconciliation.missed(),
        "writes reconciled"
    );
    reasons.extend(record.reasons());
    done.push(record);
}

/// `retry = "until_acked"`: the wait before a write's first retry, doubled after each
/// failed one up to [`RETRY_MAX_WAIT`] (a backend's client retrying a KV put).
const RETRY_FIRST_WAIT: Duration = Duration::from_millis(100);
const RETRY_MAX_WAIT: Duration = Duration::from_secs(2);

/// `retry = "until_acked"`: how long one attempt waits for its ack.
const RETRY_ACK_WAIT: Duration = Duration::from_secs(5);

/// Calls `publish` until it reports an ack, waiting [`RETRY_FIRST_WAIT`] doubling to
/// [`RETRY_MAX_WAIT`] between attempts, while the next attempt would still begin before
/// `give_up`; counts each attempt after the first in `retries`. Whether the write was
/// acknowledged.
async fn until_acked<F, Fut>(
    give_up: tokio::time::Instant,
    mut publish: F,
    retries: &AtomicU64,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut wait = RETRY_FIRST_WAIT;
    loop {
        if publish().await {
            return true;
        }
        if tokio::time::Instant::now() + wait > give_up {
            return false;
        }
        retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MAX_WAIT);
    }
}

/// What one `write` or `exec` step sends: owned, so the step can run in the background.
struct WriteJob {
    label: String,
    js: async_nats::jetstream::Context,
    metrics: Arc<Metrics>,
    ledgers: Arc<Ledgers>,
    /// This job's ledger, open in `ledgers` until the job has reconciled.
    ledger: Arc<Ledger>,
    fleet: FleetPlan,
    /// `$KV.<bucket>.` of every bucket the profile watches whole: its agents receive
    /// every write to it.
    watched_whole: Vec<String>,
    /// `$KV.<bucket>.` and its `history` (values kept per key) for every bucket of the
    /// profile: a write is superseded only once the bucket no longer keeps it.
    histories: Vec<(String, u64)>,
    target: Target,
    load: WriteLoad,
    first_id: u64,
    /// The step that issued the job: its samples are measured in that phase.
    phase: usize,
    seed: u64,
    /// Agents expected to receive (started and not failed when the step began).
    agents: Vec<usize>,
}

impl WriteJob {
    /// The subject, recipients and kind of write `i`.
    fn plan_write(&self, i: u64, rng: &mut rand::rngs::SmallRng) -> (String, Recipients, usize) {
        let fleet = &self.fleet;
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
            Target::Kv(WriteTarget::Key { bucket, key }) => key_write(bucket, key, i, n, groups),
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
    async fn run(self) -> WriteRecord {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(self.seed);
        let planned: Vec<(String, Recipients, usize)> = (0..self.load.count)
            .map(|i| self.plan_write(i, &mut rng))
            .collect();
        let ledger = &self.ledger;
        let metrics = &self.metrics;
        let ack_metric = metrics.metric(&format!("write_ack.{}", self.target_name()));
        let start = tokio::time::Instant::now();
        let start_wall = SystemTime::now();
        let size = self.load.value_size;
        let (retry, drain_timeout) = (self.load.retry, self.load.drain_timeout);
        let retries = Arc::new(AtomicU64::new(0));
        let latencies = paced(start, self.load.rate, self.load.count, |i, at| {
            let (subject, _, _) = &planned[i as usize];
            let value = write_value(self.first_id + i, start_wall + (at - start), size);
            let js = self.js.clone();
            let subject = subject.clone();
            let retries = retries.clone();
            // The same value every time: a retried write is the same write, and one
            // whose first ack was lost rather than refused arrives twice (counted as a
            // duplicate by the reconciliation).
            let publish = move || {
                let (js, subject, value) = (js.clone(), subject.clone(), value.clone());
                async move {
                    let acked = async {
                        match js.publish(subject, value).await {
                            Ok(ack) => ack.await.is_ok(),
                            Err(_) => false,
                        }
                    };
                    match retry {
                        WriteRetry::Never => acked.await,
                        // A write retried is not left waiting on the control
                        // connection's 30 s request timeout.
                        WriteRetry::UntilAcked => tokio::time::timeout(RETRY_ACK_WAIT, acked)
                            .await
                            .unwrap_or(false),
                    }
                }
            };
            async move {
                match retry {
                    WriteRetry::Never => publish().await,
                    WriteRetry::UntilAcked => {
                        until_acked(at + drain_timeout, publish, &retries).await
                    }
                }
            }
        })
        .await;
        // Agents whose profile watches a whole bucket receive every write to it: the
        // drain waits for those unintended deliveries too, or the fan-out is undercounted.
        let watched_whole = &self.watched_whole;
        let mut sent = Vec::with_capacity(planned.len());
        let is_kv = matches!(self.target, Target::Kv(_));
        // How many values of a key a write's bucket keeps (1 if the bucket is unknown:
        // the strictest reading, a write superseded by any newer one).
        let history = |subject: &str| {
            self.histories
                .iter()
                .find(|(prefix, _)| subject.starts_with(prefix.as_str()))
                .map_or(1, |(_, h)| *h)
        };
        for (i, ((subject, recipients, kind), latency)) in
            planned.iter().zip(&latencies).enumerate()
        {
            if let Some(l) = latency {
                metrics.record_in(self.phase, i, ack_metric, *l);
            }
            sent.push(SentWrite {
                id: self.first_id + i as u64,
                kind: *kind,
                recipients: *recipients,
                acked: latency.is_some(),
                key: is_kv.then(|| (key_of(subject), history(subject))),
            });
        }
        // Wait until every expected delivery arrived, or the drain timeout.
        let groups = self.fleet.groups.max(1);
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
        self.ledgers.close(ledger);
        let target = self.target_name().to_string();
        WriteRecord {
            label: self.label,
            target,
            writes: sent.len() as u64,
            acked: sent.iter().filter(|w| w.acked).count() as u64,
            retries: retries.load(Ordering::Relaxed),
            unacked_fails_run: retry == WriteRetry::Never,
            drained,
            reconciliation,
        }
    }
}

/// Write `i` of a `target = "key"` step to `bucket` in a fleet of `agents` in `groups`:
/// a `{pc}` key is each agent's in turn, a `{group}` key each group's in turn, a key
/// without placeholders every agent's. Its kind is the one the agents classify it as.
fn key_write(
    bucket: &str,
    key: &KeyTemplate,
    i: u64,
    agents: usize,
    groups: usize,
) -> (String, Recipients, usize) {
    let (pc, group, recipients) = if key.0.contains("{pc}") {
        let a = i as usize % agents;
        (pc_id(a), group_id(a, groups), Recipients::Agent(a))
    } else if key.0.contains("{group}") {
        let g = i as usize % groups.min(agents);
        (String::new(), group_id(g, groups), Recipients::Group(g))
    } else {
        (String::new(), String::new(), Recipients::All)
    };
    let key = key.render(&pc, &group);
    let kind = classify_kv(bucket, &key, "", "").0;
    (format!("$KV.{bucket}.{key}"), recipients, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_writes_go_to_each_agent_or_group_in_turn_or_to_all() {
        let key = |k: &str| KeyTemplate(k.to_string());
        let kind = kind_index("key");
        assert_eq!(
            key_write("settings-files", &key("{pc}"), 7, 5, 2),
            (
                "$KV.settings-files.pc-00002".to_string(),
                Recipients::Agent(2),
                kind
            )
        );
        assert_eq!(
            key_write("state-files", &key("groups.{group}"), 3, 5, 2),
            (
                "$KV.state-files.groups.g-001".to_string(),
                Recipients::Group(1),
                kind
            )
        );
        assert_eq!(
            key_write("basket", &key("all"), 0, 5, 2),
            ("$KV.basket.all".to_string(), Recipients::All, kind)
        );
        // A kanade bucket keeps its own kind, as the agents classify it.
        assert_eq!(
            key_write("jobs", &key("job-0001"), 0, 5, 2).2,
            kind_index("jobs")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_is_published_again_until_acked_within_its_deadline() {
        let retries = AtomicU64::new(0);
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        // Refused three times, then acknowledged.
        let acked = until_acked(
            start + Duration::from_secs(10),
            || async { attempts.fetch_add(1, Ordering::Relaxed) >= 3 },
            &retries,
        )
        .await;
        assert!(acked);
        assert_eq!(retries.load(Ordering::Relaxed), 3);
        // Waits of 100, 200 and 400 ms between the four attempts.
        assert_eq!(start.elapsed(), Duration::from_millis(700));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_never_acked_gives_up_at_its_deadline_and_says_so() {
        let retries = AtomicU64::new(0);
        let start = tokio::time::Instant::now();
        let acked = until_acked(start + Duration::from_secs(5), || async { false }, &retries).await;
        assert!(!acked);
        // 0.1 + 0.2 + 0.4 + 0.8 + 1.6 = 3.1 s; the next wait (2 s) would pass 5 s.
        assert_eq!(retries.load(Ordering::Relaxed), 5);
        assert!(start.elapsed() <= Duration::from_secs(5));
    }
}
