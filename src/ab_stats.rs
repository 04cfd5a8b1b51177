//! Comparing the variants of an A/B run: each variant's percentiles, the ratio to the
//! first variant (A), and a bootstrap confidence interval on the difference.
//!
//! # Why a bootstrap, and on what
//!
//! The question is "did B change the p99", and a p99 has no textbook standard error.
//! The percentile bootstrap needs no distribution assumption: resample, take the
//! quantile of each side, and keep the middle 95 % of the differences.
//!
//! The resampling has two levels, because the agents of one run are not independent:
//! they live through the same herd, on the same broker, at the same moment, and a whole
//! run can come out fast or slow. So each resample first draws a variant's runs with
//! replacement, then that many per-agent samples from the drawn runs' pooled samples.
//! Resampling agents alone would measure one run's noise and call a lucky run a
//! difference. Repeats are interleaved A B A B ... so a machine that slows down
//! mid-run slows both sides. With fewer than [`MIN_REPEAT_FOR_CI`] runs per variant
//! there is no interval: too few runs to say how much runs vary.
//!
//! Samples come back out of the HdrHistograms (value and count per bucket), so they
//! carry the histograms' 3 significant digits, far finer than any difference worth a
//! verdict.

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::metrics::Snapshot;
pub use crate::results::COMPARE_COLUMNS;
use crate::results::{COMPARE_FILE, CsvFile};

/// Repeats per variant below which no confidence interval is computed.
pub const MIN_REPEAT_FOR_CI: usize = 3;
/// Bootstrap resamples per interval.
const RESAMPLES: usize = 1000;
/// Beyond this many samples a variant's samples are thinned (every k-th of the sorted
/// samples) before resampling, which keeps the interval's cost bounded and changes
/// quantiles by less than the histogram's own precision.
const MAX_SAMPLES: usize = 20_000;

/// Metrics that get a verdict line: the ones an operator's question is about.
pub fn is_key_metric(metric: &str) -> bool {
    matches!(metric, "ready" | "recovery" | "resync" | "reconnect")
        || metric.starts_with("delivery.")
}

/// One variant's measurements: its name and each of its runs' snapshot (phases are
/// step indexes, identical across variants of one scenario).
pub struct VariantMeasurements {
    pub name: String,
    pub runs: Vec<Snapshot>,
}

impl VariantMeasurements {
    /// Every run's samples of (metric, phase), merged.
    fn pooled(&self, metric: &str, phase: usize) -> Option<Histogram<u64>> {
        let mut merged: Option<Histogram<u64>> = None;
        for h in self.runs.iter().filter_map(|s| s.histogram(metric, phase)) {
            match &mut merged {
                None => merged = Some(h.clone()),
                Some(m) => {
                    let _ = m.add(h);
                }
            }
        }
        merged
    }

    /// Each run's samples of (metric, phase); runs without any are left out.
    fn per_run(&self, metric: &str, phase: usize) -> Vec<Vec<u64>> {
        self.runs
            .iter()
            .filter_map(|s| s.histogram(metric, phase))
            .map(samples)
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// One row of `compare.csv`, written by the A/B run and read back by `fleetsim compare`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareRow {
    pub phase: String,
    pub metric: String,
    pub variant: String,
    pub runs: usize,
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    /// This variant's p50 over the first variant's; empty for the first variant.
    pub p50_ratio: Option<f64>,
    pub p99_ratio: Option<f64>,
    /// 95 % interval of (this variant's p50 - the first variant's p50), ms.
    pub p50_diff_ci_low: Option<f64>,
    pub p50_diff_ci_high: Option<f64>,
    pub p99_diff_ci_low: Option<f64>,
    pub p99_diff_ci_high: Option<f64>,
    /// Plain words for key metrics (see [`is_key_metric`]); empty otherwise.
    pub verdict: String,
}

impl CsvFile for CompareRow {
    const FILE: &'static str = COMPARE_FILE;
    const COLUMNS: &'static [&'static str] = &COMPARE_COLUMNS;
}

/// Compares every (phase, metric) the variants measured; `phases` maps phase indexes
/// to labels. Rows are grouped per metric, the first variant first.
pub fn compare(variants: &[VariantMeasurements], phases: &[String], seed: u64) -> Vec<CompareRow> {
    let Some(first) = variants.first() else {
        return Vec::new();
    };
    let mut keys: Vec<(usize, String)> = Vec::new();
    for v in variants {
        for h in v.runs.iter().flat_map(|s| &s.histograms) {
            if !keys.iter().any(|(p, m)| *p == h.phase && *m == h.metric) {
                keys.push((h.phase, h.metric.clone()));
            }
        }
    }
    keys.sort();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut rows = Vec::new();
    for (phase, metric) in keys {
        let label = phases
            .get(phase)
            .cloned()
            .unwrap_or_else(|| phase.to_string());
        let base = first.pooled(&metric, phase);
        let base_runs = first.per_run(&metric, phase);
        for (i, v) in variants.iter().enumerate() {
            let Some(hist) = v.pooled(&metric, phase) else {
                continue;
            };
            let hist = &hist;
            let mut row = CompareRow {
                phase: label.clone(),
                metric: metric.clone(),
                variant: v.name.clone(),
                runs: v.runs.len(),
                count: hist.len(),
                p50: ms(hist.value_at_quantile(0.5)),
                p99: ms(hist.value_at_quantile(0.99)),
                max: ms(hist.max()),
                p50_ratio: None,
                p99_ratio: None,
                p50_diff_ci_low: None,
                p50_diff_ci_high: None,
                p99_diff_ci_low: None,
                p99_diff_ci_high: None,
                verdict: String::new(),
            };
            if i > 0
                && let Some(base) = &base
            {
                let (a50, a99) = (
                    ms(base.value_at_quantile(0.5)),
                    ms(base.value_at_quantile(0.99)),
                );
                row.p50_ratio = ratio(row.p50, a50);
                row.p99_ratio = ratio(row.p99, a99);
                let mine = v.per_run(&metric, phase);
                if mine.len() >= MIN_REPEAT_FOR_CI && base_runs.len() >= MIN_REPEAT_FOR_CI {
                    let (lo, hi) = diff_ci(&base_runs, &mine, 0.5, &mut rng);
                    row.p50_diff_ci_low = Some(lo);
                    row.p50_diff_ci_high = Some(hi);
                    let (lo, hi) = diff_ci(&base_runs, &mine, 0.99, &mut rng);
                    row.p99_diff_ci_low = Some(lo);
                    row.p99_diff_ci_high = Some(hi);
                }
                if is_key_metric(&metric) {
                    row.verdict = verdict(&label, &metric, &first.name, a99, &row);
                }
            }
            rows.push(row);
        }
    }
    rows
}

/// "variant B: recovery p99 (3:broker_restart) from 8.1 s to 3.2 s (A: off); CI excludes
/// zero", or "no difference shown" when the interval includes zero, or a note that
/// there are too few repeats for an interval.
fn verdict(phase: &str, metric: &str, base_name: &str, base_p99: f64, row: &CompareRow) -> String {
    let what = format!(
        "{}: {metric} p99 ({phase}) {} -> {} vs {base_name}",
        row.variant,
        secs(base_p99),
        secs(row.p99)
    );
    match (row.p99_diff_ci_low, row.p99_diff_ci_high) {
        (Some(lo), Some(hi)) if lo > 0.0 || hi < 0.0 => format!(
            "{what}: {} by {}..{}; 95% CI excludes zero",
            if hi < 0.0 { "lower" } else { "higher" },
            secs(lo.abs().min(hi.abs())),
            secs(lo.abs().max(hi.abs()))
        ),
        (Some(lo), Some(hi)) => format!(
            "{what}: no difference shown (95% CI of the difference {}..{} includes zero)",
            signed_secs(lo),
            signed_secs(hi)
        ),
        _ => format!("{what}: no verdict, fewer than {MIN_REPEAT_FOR_CI} repeats per variant"),
    }
}

/// The 95 % two-level percentile-bootstrap interval of `quantile(b) - quantile(a)` in
/// ms; `a` and `b` hold each run's per-agent samples (µs).
pub fn diff_ci(a: &[Vec<u64>], b: &[Vec<u64>], q: f64, rng: &mut SmallRng) -> (f64, f64) {
    let a: Vec<Vec<u64>> = a.iter().map(|run| thin(run)).collect();
    let b: Vec<Vec<u64>> = b.iter().map(|run| thin(run)).collect();
    let mut pool = Vec::new();
    let mut scratch = Vec::new();
    let mut diffs: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let qa = resampled_quantile(&a, &mut pool, &mut scratch, q, rng);
            let qb = resampled_quantile(&b, &mut pool, &mut scratch, q, rng);
            ms(qb) - ms(qa)
        })
        .collect();
    diffs.sort_by(f64::total_cmp);
    let at = |p: f64| diffs[((p * RESAMPLES as f64) as usize).min(RESAMPLES - 1)];
    (at(0.025), at(0.975))
}

/// Draws `runs.len()` runs with replacement, pools their samples, draws as many
/// samples from the pool with replacement, and returns their quantile `q`.
fn resampled_quantile(
    runs: &[Vec<u64>],
    pool: &mut Vec<u64>,
    scratch: &mut Vec<u64>,
    q: f64,
    rng: &mut SmallRng,
) -> u64 {
    pool.clear();
    for _ in 0..runs.len() {
        pool.extend_from_slice(&runs[rng.random_range(0..runs.len())]);
    }
    scratch.clear();
    scratch.extend((0..pool.len()).map(|_| pool[rng.random_range(0..pool.len())]));
    let rank = nearest_rank(scratch.len(), q);
    *scratch.select_nth_unstable(rank).1
}

/// 0-based index of the nearest-rank quantile `q` of `n` sorted values.
fn nearest_rank(n: usize, q: f64) -> usize {
    ((q * n as f64).ceil() as usize).clamp(1, n) - 1
}

/// Every recorded value, once per count (microseconds).
pub fn samples(hist: &Histogram<u64>) -> Vec<u64> {
    let mut out = Vec::with_capacity(hist.len() as usize);
    for v in hist.iter_recorded() {
        let value = hist.highest_equivalent(v.value_iterated_to());
        out.extend(std::iter::repeat_n(value, v.count_at_value() as usize));
    }
    out
}

fn thin(samples: &[u64]) -> Vec<u64> {
    if samples.len() <= MAX_SAMPLES {
        return samples.to_vec();
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let step = sorted.len().div_ceil(MAX_SAMPLES);
    sorted.into_iter().step_by(step).collect()
}

fn ratio(b: f64, a: f64) -> Option<f64> {
    (a > 0.0).then(|| (b / a * 1000.0).round() / 1000.0)
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn secs(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

fn signed_secs(ms: f64) -> String {
    if ms < 0.0 {
        format!("-{}", secs(-ms))
    } else {
        format!("+{}", secs(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::HistogramSnapshot;

    fn hist(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
        for v in values {
            h.record(v).expect("in range");
        }
        h
    }

    /// A variant of `runs.len()` runs, each recording its samples (µs) as `recovery`.
    fn variant(name: &str, runs: Vec<Vec<u64>>) -> VariantMeasurements {
        VariantMeasurements {
            name: name.to_string(),
            runs: runs
                .into_iter()
                .map(|run| Snapshot {
                    histograms: vec![HistogramSnapshot {
                        metric: "recovery".to_string(),
                        phase: 3,
                        histogram: hist(run),
                    }],
                    errors: Vec::new(),
                })
                .collect(),
        }
    }

    /// `n` runs of `per_run` samples around `center_ms`, each run shifted by its own
    /// offset (`run_spread_ms` apart): runs differ as a whole, as herds do.
    fn runs(center_ms: u64, n: u64, per_run: u64, run_spread_ms: u64, seed: u64) -> Vec<Vec<u64>> {
        (0..n)
            .map(|r| spread(center_ms + r * run_spread_ms, per_run, seed * 100 + r))
            .collect()
    }

    /// Deterministic "noise": a spread of values around `center` (ms), in µs.
    fn spread(center_ms: u64, n: u64, seed: u64) -> Vec<u64> {
        let mut rng = SmallRng::seed_from_u64(seed);
        (0..n)
            .map(|_| center_ms * 1000 + rng.random_range(0..2_000_000u64))
            .collect()
    }

    fn phases() -> Vec<String> {
        ["0:setup", "1:start", "2:wait_ready", "3:broker_restart"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn a_known_difference_has_an_interval_around_it_that_excludes_zero() {
        // B is A shifted by +3 s, run by run: every quantile moves by exactly 3 s.
        let a = runs(5_000, 3, 200, 100, 1);
        let b: Vec<Vec<u64>> = a
            .iter()
            .map(|run| run.iter().map(|v| v + 3_000_000).collect())
            .collect();
        let rows = compare(&[variant("off", a), variant("on", b)], &phases(), 7);
        let on = &rows[1];
        assert_eq!(on.variant, "on");
        let (lo, hi) = (on.p50_diff_ci_low.unwrap(), on.p50_diff_ci_high.unwrap());
        assert!(
            lo > 2_500.0 && hi < 3_500.0 && lo <= 3_000.0 && hi >= 3_000.0,
            "{lo}..{hi}"
        );
        let (lo, hi) = (on.p99_diff_ci_low.unwrap(), on.p99_diff_ci_high.unwrap());
        assert!(lo > 0.0 && lo <= 3_000.0 && hi >= 3_000.0, "{lo}..{hi}");
        assert!(on.verdict.contains("higher"), "{}", on.verdict);
        assert!(on.verdict.contains("CI excludes zero"), "{}", on.verdict);
        assert_eq!(on.p50_ratio.map(|r| r > 1.3), Some(true));
    }

    #[test]
    fn samples_from_one_distribution_show_no_difference() {
        // Two independent draws of the same distribution.
        let a = runs(5_000, 3, 200, 100, 1);
        let b = runs(5_000, 3, 200, 100, 2);
        let rows = compare(&[variant("off", a), variant("on", b)], &phases(), 7);
        let on = &rows[1];
        let (lo, hi) = (on.p50_diff_ci_low.unwrap(), on.p50_diff_ci_high.unwrap());
        assert!(lo < 0.0 && hi > 0.0, "{lo}..{hi}");
        assert!(on.verdict.contains("no difference shown"), "{}", on.verdict);
    }

    #[test]
    fn fewer_than_three_repeats_give_ratios_but_no_interval() {
        let rows = compare(
            &[
                variant("off", runs(5_000, 2, 100, 0, 1)),
                variant("on", runs(9_000, 2, 100, 0, 2)),
            ],
            &phases(),
            7,
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].p50_ratio, None);
        assert!(rows[1].p50_ratio.unwrap() > 1.4);
        assert_eq!(rows[1].p50_diff_ci_low, None);
        assert!(
            rows[1].verdict.contains("no verdict"),
            "{}",
            rows[1].verdict
        );
        assert_eq!(rows[1].phase, "3:broker_restart");
    }

    #[test]
    fn a_difference_smaller_than_how_much_runs_vary_is_not_a_verdict() {
        // B is 300 ms slower per agent, but whole runs vary by 1 s: three runs per side
        // cannot tell. Agent-level resampling alone would call this a difference.
        let a = runs(5_000, 3, 300, 1_000, 1);
        let b: Vec<Vec<u64>> = a
            .iter()
            .rev()
            .map(|run| run.iter().map(|v| v + 300_000).collect())
            .collect();
        let b = vec![b[1].clone(), b[0].clone(), b[2].clone()];
        let rows = compare(&[variant("off", a), variant("on", b)], &phases(), 7);
        let on = &rows[1];
        let (lo, hi) = (on.p50_diff_ci_low.unwrap(), on.p50_diff_ci_high.unwrap());
        assert!(lo < 0.0 && hi > 0.0, "{lo}..{hi}");
        assert!(on.verdict.contains("no difference shown"), "{}", on.verdict);
    }

    #[test]
    fn samples_round_trip_a_histogram() {
        let h = hist([1_000, 1_000, 2_000, 5_000]);
        let s = samples(&h);
        assert_eq!(s.len(), 4);
        assert_eq!(nearest_rank(4, 0.5), 1);
        assert_eq!(nearest_rank(4, 0.99), 3);
        assert_eq!(nearest_rank(1, 0.01), 0);
    }
}
