//! Measurements: latency histograms and error counters, kept off the hot path.
//!
//! Thousands of agents record into a handful of shards (agent index modulo the shard
//! count), each a mutex over plain maps. A record is an uncontended lock, a hash lookup
//! and a counter bump; nothing is sent over a channel per sample and no agent owns a
//! histogram of its own (a 3-significant-digit HdrHistogram is tens of KiB, more than an
//! agent's whole memory budget). Shards are merged once, when results are written.
//!
//! Every sample is tagged with the *phase*: the index of the step that caused it (the
//! `start` step for a cold start, later the herd trigger), so `summary.csv` has one row
//! per metric and phase. Phase 0 is setup (provisioning), before any step runs. What an
//! agent does on its own is caused by the step running (the current phase, set by the
//! runner); a sample of a step that may still be running when later steps begin (a
//! background write's acks and deliveries) names its step with [`Metrics::record_in`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::nats_failure::FailureKind;

/// Number of shards; a few per core is plenty.
const SHARDS: usize = 8;
/// Significant digits kept by every histogram (HdrHistogram's customary 3).
const SIGFIGS: u8 = 3;

/// A registered metric name. Cheap to copy into agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricId(u32);

#[derive(Default)]
struct Shard {
    /// `u32` counts: a shard's histogram auto-resizes to its largest value (~14,000
    /// counters to reach a 5 s latency in µs at 3 significant digits), and with one per
    /// metric, phase and shard the `u64` counts were ~10 MiB of a 1,000-agent run. No
    /// shard sees 4 billion samples of one value; the merged snapshot counts in `u64`.
    histograms: HashMap<(MetricId, usize), Histogram<u32>>,
    errors: HashMap<ErrorKey, ErrorCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ErrorKey {
    phase: usize,
    operation: String,
    kind: FailureKind,
}

#[derive(Debug, Clone)]
struct ErrorCount {
    count: u64,
    example: String,
}

/// The fleet-wide recorder every agent shares.
pub struct Metrics {
    names: Mutex<Vec<String>>,
    shards: Vec<Mutex<Shard>>,
    phase: AtomicUsize,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            names: Mutex::new(Vec::new()),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            phase: AtomicUsize::new(0),
        }
    }

    /// Returns the id for `name`, registering it on first use. Call at setup, not per sample.
    pub fn metric(&self, name: &str) -> MetricId {
        let mut names = self.names.lock().expect("metrics names lock");
        if let Some(i) = names.iter().position(|n| n == name) {
            return MetricId(i as u32);
        }
        names.push(name.to_string());
        MetricId(names.len() as u32 - 1)
    }

    /// Sets the phase later samples are tagged with (the current action step's index).
    pub fn set_phase(&self, phase: usize) {
        self.phase.store(phase, Ordering::Relaxed);
    }

    pub fn phase(&self) -> usize {
        self.phase.load(Ordering::Relaxed)
    }

    /// Records a duration (as µs) for agent `agent` (which picks the shard).
    pub fn record(&self, agent: usize, metric: MetricId, value: Duration) {
        self.record_micros(
            agent,
            metric,
            value.as_micros().min(u64::MAX as u128) as u64,
        );
    }

    /// Records a duration caused by step `phase`, whichever step runs now.
    pub fn record_in(&self, phase: usize, agent: usize, metric: MetricId, value: Duration) {
        self.record_micros_in(
            phase,
            agent,
            metric,
            value.as_micros().min(u64::MAX as u128) as u64,
        );
    }

    pub fn record_micros(&self, agent: usize, metric: MetricId, micros: u64) {
        self.record_micros_in(self.phase(), agent, metric, micros);
    }

    fn record_micros_in(&self, phase: usize, agent: usize, metric: MetricId, micros: u64) {
        let mut shard = self.shards[agent % SHARDS]
            .lock()
            .expect("metrics shard lock");
        let hist = shard
            .histograms
            .entry((metric, phase))
            .or_insert_with(new_histogram::<u32>);
        let value = micros.max(1);
        if value > hist.high() {
            grow_exactly(hist, value);
        }
        // `record` grows an auto-resizing histogram to fit the value (when `grow_exactly`
        // could not); `saturating_record` would clamp it to the current top bucket instead
        // (2 ms for a fresh histogram).
        if hist.record(value).is_err() {
            hist.saturating_record(micros);
        }
    }

    /// Counts one failure of `operation` (e.g. `consumer_create.jobs`) for agent `agent`.
    pub fn error(&self, agent: usize, operation: &str, kind: FailureKind, message: &str) {
        let key = ErrorKey {
            phase: self.phase(),
            operation: operation.to_string(),
            kind,
        };
        let mut shard = self.shards[agent % SHARDS]
            .lock()
            .expect("metrics shard lock");
        shard
            .errors
            .entry(key)
            .or_insert_with(|| ErrorCount {
                count: 0,
                example: message.to_string(),
            })
            .count += 1;
    }

    /// Failures counted so far by kind, in the order of
    /// `FailureKind::column`: timeout, no responders, JetStream, refused, other.
    pub fn errors_by_kind(&self) -> [u64; 5] {
        let mut out = [0; 5];
        for shard in &self.shards {
            for (key, e) in &shard.lock().expect("metrics shard lock").errors {
                out[key.kind.column()] += e.count;
            }
        }
        out
    }

    /// Merges the shards into one sorted snapshot.
    pub fn snapshot(&self) -> Snapshot {
        let names = self.names.lock().expect("metrics names lock").clone();
        let mut histograms: HashMap<(MetricId, usize), Histogram<u64>> = HashMap::new();
        let mut errors: HashMap<ErrorKey, ErrorCount> = HashMap::new();
        for shard in &self.shards {
            let shard = shard.lock().expect("metrics shard lock");
            for (key, h) in &shard.histograms {
                let merged = histograms.entry(*key).or_insert_with(new_histogram::<u64>);
                // Bucket by bucket: `add` needs the same counter type. The value each
                // bucket is iterated to lands in that same bucket of `merged`.
                for bucket in h.iter_recorded() {
                    merged
                        .record_n(
                            bucket.value_iterated_to(),
                            u64::from(bucket.count_at_value()),
                        )
                        .expect("auto-resizing histograms always merge");
                }
            }
            for (key, e) in &shard.errors {
                errors
                    .entry(key.clone())
                    .and_modify(|acc| acc.count += e.count)
                    .or_insert_with(|| e.clone());
            }
        }
        let mut histograms: Vec<HistogramSnapshot> = histograms
            .into_iter()
            .map(|((id, phase), histogram)| HistogramSnapshot {
                metric: names[id.0 as usize].clone(),
                phase,
                histogram,
            })
            .collect();
        histograms.sort_by(|a, b| (a.phase, &a.metric).cmp(&(b.phase, &b.metric)));
        let mut errors: Vec<ErrorSnapshot> = errors
            .into_iter()
            .map(|(k, e)| ErrorSnapshot {
                phase: k.phase,
                operation: k.operation,
                kind: k.kind,
                count: e.count,
                example: e.example,
            })
            .collect();
        errors
            .sort_by(|a, b| (a.phase, &a.operation, a.kind).cmp(&(b.phase, &b.operation, b.kind)));
        Snapshot { histograms, errors }
    }
}

fn new_histogram<T: hdrhistogram::Counter>() -> Histogram<T> {
    Histogram::new(SIGFIGS).expect("3 significant digits is a valid histogram")
}

/// Replaces `hist` by a copy whose counts are allocated for `value` exactly, up to the top
/// of `value`'s power of two (so the next values of that range need no copy).
///
/// hdrhistogram's own auto-resize grows its counts with `Vec::resize`, which at least
/// doubles the capacity: a histogram grown a bucket at a time kept up to half of its
/// memory unused. With one per metric, phase and shard, a 200-agent cold start's
/// histograms held 12.9 MiB at all-ready, 8.0 MiB grown exactly (`scripts/bench-heap.sh`,
/// results/bench/heap.md). A copy is made at most once per power
/// of two a histogram's maximum crosses. Left as it is when the copy cannot be made
/// (`value` above what a histogram tracks): `record` then resizes the old way.
fn grow_exactly(hist: &mut Histogram<u32>, value: u64) {
    let high = (u64::MAX >> value.leading_zeros()).max(2);
    let Ok(mut grown) = Histogram::<u32>::new_with_bounds(1, high, SIGFIGS) else {
        return;
    };
    grown.auto(true);
    if grown.add(&*hist).is_ok() {
        *hist = grown;
    }
}

/// Everything measured, merged: input to the results writer.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub histograms: Vec<HistogramSnapshot>,
    pub errors: Vec<ErrorSnapshot>,
}

impl Snapshot {
    pub fn histogram(&self, metric: &str, phase: usize) -> Option<&Histogram<u64>> {
        self.histograms
            .iter()
            .find(|h| h.metric == metric && h.phase == phase)
            .map(|h| &h.histogram)
    }

    pub fn error_total(&self) -> u64 {
        self.errors.iter().map(|e| e.count).sum()
    }
}

/// One metric in one phase; values are microseconds.
#[derive(Debug, Clone)]
pub struct HistogramSnapshot {
    pub metric: String,
    pub phase: usize,
    pub histogram: Histogram<u64>,
}

#[derive(Debug, Clone)]
pub struct ErrorSnapshot {
    pub phase: usize,
    pub operation: String,
    pub kind: FailureKind,
    pub count: u64,
    /// The first message seen for this (phase, operation, kind).
    pub example: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_from_many_agents_merge_into_one_histogram_per_phase() {
        let m = Metrics::new();
        let ready = m.metric("ready");
        assert_eq!(
            m.metric("ready"),
            ready,
            "registering twice returns the same id"
        );
        m.set_phase(1);
        for agent in 0..100 {
            m.record(agent, ready, Duration::from_millis(agent as u64 + 1));
        }
        m.set_phase(2);
        m.record(0, ready, Duration::from_secs(3));
        m.record_in(1, 0, ready, Duration::from_secs(4));
        let snap = m.snapshot();
        let p1 = snap.histogram("ready", 1).expect("phase 1 recorded");
        assert_eq!(p1.len(), 101, "record_in tags its own phase");
        assert_eq!(p1.max(), p1.highest_equivalent(4_000_000));
        assert_eq!(snap.histogram("ready", 2).expect("phase 2").len(), 1);
    }

    #[test]
    fn histograms_grown_past_many_powers_of_two_keep_every_sample() {
        let m = Metrics::new();
        let ready = m.metric("ready");
        m.set_phase(1);
        // Rising values, as an all-at-once start's ready times are: every power of two
        // from 1 µs to ~17 min is crossed, each crossing copies the histogram.
        let values: Vec<u64> = (0..40).map(|i| (1u64 << i) + i).collect();
        let mut expected = Histogram::<u64>::new(SIGFIGS).expect("histogram");
        for (i, &v) in values.iter().enumerate() {
            // One agent, so every sample lands in the same shard's histogram.
            m.record_micros(0, ready, v);
            expected.record(v.max(1)).expect("auto-resizing");
            if i == 20 {
                m.record_micros(0, ready, 3);
                expected.record(3).expect("auto-resizing");
            }
        }
        let snap = m.snapshot();
        let got = snap.histogram("ready", 1).expect("recorded");
        assert_eq!(got.len(), expected.len(), "no sample lost in a copy");
        assert_eq!((got.min(), got.max()), (expected.min(), expected.max()));
        for q in [0.1, 0.5, 0.9, 0.99] {
            assert_eq!(
                got.value_at_quantile(q),
                expected.value_at_quantile(q),
                "quantile {q}"
            );
        }
    }

    #[test]
    fn a_value_beyond_any_histogram_is_still_counted() {
        let m = Metrics::new();
        let id = m.metric("huge");
        m.record_micros(0, id, u64::MAX);
        m.record_micros(0, id, 5);
        assert_eq!(
            m.snapshot().histogram("huge", 0).expect("recorded").len(),
            2
        );
    }

    #[test]
    fn errors_are_counted_by_phase_operation_and_kind() {
        let m = Metrics::new();
        m.set_phase(1);
        for agent in 0..10 {
            m.error(
                agent,
                "consumer_create.jobs",
                FailureKind::JetStream(10026),
                "limit",
            );
        }
        m.error(3, "connect", FailureKind::Timeout, "timed out");
        let snap = m.snapshot();
        assert_eq!(snap.error_total(), 11);
        let js = snap
            .errors
            .iter()
            .find(|e| e.kind == FailureKind::JetStream(10026))
            .expect("jetstream row");
        assert_eq!((js.phase, js.count, js.example.as_str()), (1, 10, "limit"));
    }
}
