//! The short summary printed at the end of a run: latencies per (metric, phase), errors
//! by kind, the fleet's figures and the status. The files hold everything; this is what
//! a person reads in a terminal or a CI log to know whether to open them.

use std::collections::BTreeMap;

use super::{MICROS_PER_MS, RunRecord, phase_label, redact_urls};

/// A latency in ms with 1-3 decimals: three below 10 ms, two below 100 ms, one above,
/// so a column stays readable from sub-millisecond gets to multi-second herds.
fn short_ms(micros: u64) -> String {
    let v = micros as f64 / MICROS_PER_MS;
    if v < 10.0 {
        format!("{v:.3}")
    } else if v < 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

/// The table printed at the end of a run: latencies per (metric, phase), errors by kind,
/// agent figures and the status with its reasons. The files hold everything; this is
/// what a person reads in a terminal or a CI log to know whether to open them.
/// Columns padded to their widest cell, two spaces apart, trailing blanks trimmed;
/// column `i` right-aligned where `right(i)`. The terminal tables of a run and of
/// `fleetsim compare`.
pub fn text_table<const N: usize>(
    header: [&str; N],
    rows: &[[String; N]],
    right: impl Fn(usize) -> bool,
) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; N]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            if right(i) {
                text.push_str(&format!("{cell:>w$}"));
            } else {
                text.push_str(&format!("{cell:<w$}"));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for row in rows {
        line(row.each_ref().map(String::as_str));
    }
    out
}

pub fn render_summary(record: &RunRecord) -> String {
    let mut out = String::new();
    let header = ["metric", "phase", "count", "p50 ms", "p99 ms", "max ms"];
    let rows: Vec<[String; 6]> = record
        .snapshot
        .histograms
        .iter()
        .map(|h| {
            let hist = &h.histogram;
            [
                h.metric.clone(),
                phase_label(&record.phases, h.phase),
                hist.len().to_string(),
                short_ms(hist.value_at_quantile(0.5)),
                short_ms(hist.value_at_quantile(0.99)),
                short_ms(hist.max()),
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("no latencies recorded\n");
    } else {
        // Names left-aligned, numbers right-aligned.
        out.push_str(&text_table(header, &rows, |i| i >= 2));
    }

    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for e in &record.snapshot.errors {
        *by_kind.entry(e.kind.to_string()).or_default() += e.count;
    }
    let total: u64 = by_kind.values().sum();
    if total == 0 {
        out.push_str("errors: none\n");
    } else {
        let mut kinds: Vec<(String, u64)> = by_kind.into_iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let parts: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        out.push_str(&format!("errors: {total} ({})\n", parts.join(", ")));
    }

    let f = &record.fleet;
    out.push_str(&format!(
        "agents: {} started, {} ready, {} failed, {} unfinished\n",
        f.started, f.ready, f.failed, f.unfinished
    ));
    let secs = record
        .ended_at
        .duration_since(record.started_at)
        .unwrap_or_default()
        .as_secs_f64();
    out.push_str(&format!(
        "status: {} after {secs:.1} s",
        record.outcome.status
    ));
    if !record.outcome.reasons.is_empty() {
        let reasons: Vec<String> = record
            .outcome
            .reasons
            .iter()
            .map(|r| redact_urls(r))
            .collect();
        out.push_str(&format!(": {}", reasons.join("; ")));
    }
    out.push('\n');
    out
}
