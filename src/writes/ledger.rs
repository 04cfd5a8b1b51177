//! What agents received from one write job, and its reconciliation.
//!
//! Every `write`/`exec` step has a ledger of its own, covering exactly the write ids it
//! sends: a background step and the steps that run while it does never share one, so
//! none can clear another's records. [`Ledgers`] holds the ledgers of the jobs running
//! now; an agent hands it each write it receives, and the id picks the ledger.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::{KINDS, Recipients, Seen, SentWrite};

/// What agents received from one write job.
pub struct Ledger {
    /// The ids the job sends; other ids belong to other jobs.
    ids: Range<u64>,
    /// The step that issued the job: its deliveries are measured in that step's phase.
    phase: usize,
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
    /// The ledger of a job of step `phase` sending the write ids `ids` to a fleet of
    /// `agents`.
    pub fn new(agents: usize, ids: Range<u64>, phase: usize) -> Self {
        Ledger {
            ids,
            phase,
            agents: (0..agents).map(|_| Mutex::default()).collect(),
            unintended: KINDS.iter().map(|_| AtomicU64::new(0)).collect(),
            delivered: KINDS.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Records a delivery to `agent`. Returns true when it is an intended first delivery
    /// (whose latency the agent should record); a write of another job is not recorded.
    pub fn record(&self, agent: usize, seen: &Seen) -> bool {
        if !self.ids.contains(&seen.id) {
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
            // Newest first: a write not received is superseded when its bucket no longer
            // keeps it (at least `history` newer writes to its key were acknowledged, so
            // a watch resuming from the stream cannot be handed it) and a newer value of
            // its key did reach the agent; else it is missed. Newer is by write id, the
            // order writes were sent: with `retry = "until_acked"` a retried write can
            // land in the stream after a newer one, which this does not see.
            let (mut missed, mut superseded) = (0u64, 0u64);
            let mut newer_received: HashSet<u64> = HashSet::new();
            let mut newer_acked: HashMap<u64, u64> = HashMap::new();
            for w in expected.iter().rev() {
                let received = a.counts.contains_key(&w.id);
                match w.key {
                    Some((key, history)) if !received => {
                        let dropped = newer_acked.get(&key).copied().unwrap_or(0) >= history;
                        if dropped && newer_received.contains(&key) {
                            superseded += 1;
                        } else {
                            missed += 1;
                        }
                    }
                    None if !received => missed += 1,
                    _ => {}
                }
                if let Some((key, _)) = w.key {
                    *newer_acked.entry(key).or_default() += 1;
                    if received {
                        newer_received.insert(key);
                    }
                }
            }
            per_agent.push(AgentReconciliation {
                agent,
                expected: expected.len() as u64,
                received: expected.len() as u64 - missed - superseded,
                missed,
                superseded,
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

/// The ledgers of the write jobs running now. A delivery that arrives after its job
/// closed its ledger (past the drain timeout) is in no ledger: it was counted missed.
#[derive(Default)]
pub struct Ledgers {
    open: RwLock<Vec<Arc<Ledger>>>,
}

impl Ledgers {
    /// A job begins: deliveries of its ids go to `ledger` from now on.
    pub fn open(&self, ledger: Arc<Ledger>) {
        self.open.write().expect("ledgers lock").push(ledger);
    }

    /// The job has reconciled: its ledger takes no more deliveries.
    pub fn close(&self, ledger: &Arc<Ledger>) {
        self.open
            .write()
            .expect("ledgers lock")
            .retain(|l| !Arc::ptr_eq(l, ledger));
    }

    /// Records a delivery to `agent` in the ledger of the job that sent it. Returns the
    /// phase to measure its latency in when it is an intended first delivery.
    pub fn record(&self, agent: usize, seen: &Seen) -> Option<usize> {
        let open = self.open.read().expect("ledgers lock");
        let ledger = open.iter().find(|l| l.ids.contains(&seen.id))?;
        ledger.record(agent, seen).then_some(ledger.phase)
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
    /// Expected, not received, and no newer value of its key received either.
    pub missed: u64,
    /// Expected and not received, but no longer in its bucket (at least `history` newer
    /// writes to its key were acknowledged) and a newer value of its key was received:
    /// after a gap (a reconnect, a stall) a watch resumes from the stream, and the
    /// bucket no longer has the older values.
    pub superseded: u64,
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

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn seen(id: u64, key: &str) -> Seen {
        Seen {
            id,
            intended: SystemTime::now(),
            kind: 4,
            for_me: true,
            key: key.into(),
            redelivered: false,
        }
    }

    #[test]
    fn the_ledger_tells_duplicates_from_stale_replays_and_counts_misses() {
        let ledger = Ledger::new(2, 10..13, 3);
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
                key: Some((id, 1)),
            })
            .collect();
        let r = ledger.reconcile(&writes, &[0, 1], |_| 0);
        let a0 = &r.per_agent[0];
        assert_eq!((a0.expected, a0.received, a0.missed), (3, 2, 1));
        assert_eq!((a0.duplicates, a0.stale_replays), (1, 1));
        assert_eq!(r.per_agent[1].missed, 3);
        assert_eq!(r.missed(), 4);
    }

    #[test]
    fn each_delivery_goes_to_the_ledger_of_the_job_that_sent_it() {
        let ledgers = Ledgers::default();
        let background = Arc::new(Ledger::new(1, 1..21, 3));
        let next = Arc::new(Ledger::new(1, 21..26, 4));
        ledgers.open(background.clone());
        ledgers.open(next.clone());
        assert_eq!(ledgers.record(0, &seen(5, "pcs.a")), Some(3));
        assert_eq!(ledgers.record(0, &seen(22, "jobs.a")), Some(4));
        assert_eq!(ledgers.record(0, &seen(5, "pcs.a")), None, "a duplicate");
        assert_eq!(
            (background.delivered_total(), next.delivered_total()),
            (1, 1)
        );
        ledgers.close(&next);
        assert_eq!(ledgers.record(0, &seen(23, "jobs.a")), None, "closed");
        assert_eq!(ledgers.record(0, &seen(6, "pcs.a")), Some(3));
    }

    #[test]
    fn a_missed_write_whose_key_got_a_newer_value_that_arrived_is_superseded() {
        let ledger = Ledger::new(1, 1..6, 3);
        let key = crate::writes::key_of("$KV.agent_config.pcs.pc-00000");
        let write = |id: u64, key: Option<(u64, u64)>| SentWrite {
            id,
            kind: 0,
            recipients: Recipients::Agent(0),
            acked: true,
            key,
        };
        // Writes 1-4 to one key of a bucket keeping 2 values, 5 an exec command; the
        // agent got only 4.
        let writes: Vec<SentWrite> = (1..5)
            .map(|id| write(id, Some((key, 2))))
            .chain([write(5, None)])
            .collect();
        assert!(ledger.record(0, &seen(4, "pcs.pc-00000")));
        let r = ledger.reconcile(&writes, &[0], |_| 0);
        let a = &r.per_agent[0];
        assert_eq!((a.expected, a.received), (5, 1));
        assert_eq!(
            a.superseded, 2,
            "1 and 2 are out of the bucket, and 4 arrived"
        );
        assert_eq!(
            a.missed, 2,
            "3 was still in the bucket; the command has no newer value to stand for it"
        );
    }
}
