//! Writing the files of a run directory: [`write_run`] writes them all, `manifest.json`
//! last; the per-file writers take any `io::Write` so a unit test writes into a
//! `Vec<u8>` and pins the header.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::Serialize;

use super::files::*;
use super::manifest::{ManifestHost, build_manifest};
use super::rows::{AgentRow, CsvFile, ErrorRow, Fixed3, StepRow, SummaryRow};
use super::{
    AgentFinal, MICROS_PER_MS, ResultsError, RunRecord, StepRecord, TICKS_PER_HALF_DISTANCE,
    counts, herd, phase_label, redact_urls, write_percentile_distribution, writes,
};
use crate::metrics::Snapshot;

/// Writes every file of a run into `dir` (see the module docs), `manifest.json` last.
///
/// Stops at the first file that cannot be written: a partial directory without a
/// manifest is recognisable as incomplete.
pub fn write_run(dir: &Path, record: &RunRecord) -> Result<(), ResultsError> {
    let mut files = Vec::new();
    let mut csv =
        |name: &str, write: &dyn Fn(Out) -> csv::Result<Out>| -> Result<(), ResultsError> {
            let path = dir.join(name);
            let mut out = write(create(&path)?).map_err(ResultsError::csv(&path))?;
            out.flush().map_err(ResultsError::io(&path))?;
            files.push(name.to_string());
            Ok(())
        };
    csv(SUMMARY_FILE, &|out| {
        write_summary(&record.snapshot, &record.phases, out)
    })?;
    let hgrm = write_hgrm_files(dir, record)?;
    csv(ERRORS_FILE, &|out| {
        write_errors(&record.snapshot, &record.phases, out)
    })?;
    csv(AGENTS_FILE, &|out| write_agents(&record.agents, out))?;
    csv(STEPS_FILE, &|out| write_steps(&record.steps, out))?;
    csv(TIMESERIES_FILE, &|out| {
        herd::write_timeseries(&record.timeseries, out)
    })?;
    csv(RECOVERY_FILE, &|out| {
        herd::write_recovery(&record.herds, out)
    })?;
    csv(UNRECOVERED_FILE, &|out| {
        herd::write_unrecovered(&record.herds, out)
    })?;
    csv(WRITES_FILE, &|out| {
        writes::write_fanout(&record.writes, out)
    })?;
    if let Some(api) = &record.api {
        csv(API_FILE, &|out| write_rows(out, api.iter().cloned()))?;
    }
    csv(BROKER_FILE, &|out| {
        write_csv(out, &BROKER_COLUMNS, &record.broker_samples)
    })?;
    csv(RECONCILE_FILE, &|out| {
        writes::write_reconcile(&record.writes, out)
    })?;
    csv(COUNTS_FILE, &|out| {
        write_rows(out, counts::count_rows(record))
    })?;
    // The manifest lists the files in the order they were written.
    files.splice(1..1, hgrm);
    files.push(MANIFEST_FILE.to_string());

    let path = dir.join(MANIFEST_FILE);
    let json = |source| ResultsError::Json {
        path: path.clone(),
        source,
    };
    let manifest = build_manifest(record, files, ManifestHost::current()).map_err(json)?;
    let mut out = create(&path)?;
    serde_json::to_writer_pretty(&mut out, &manifest).map_err(json)?;
    out.write_all(b"\n").map_err(ResultsError::io(&path))?;
    out.flush().map_err(ResultsError::io(&path))?;
    Ok(())
}

type Out = BufWriter<File>;

fn create(path: &Path) -> Result<Out, ResultsError> {
    File::create(path)
        .map(BufWriter::new)
        .map_err(ResultsError::io(path))
}

/// Writes a header (always, so an empty table is still a valid CSV with known columns)
/// and the rows, and hands the underlying writer back.
pub(crate) fn write_csv<W: Write, R: Serialize>(
    out: W,
    columns: &[&str],
    rows: impl IntoIterator<Item = R>,
) -> csv::Result<W> {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(out);
    writer.write_record(columns)?;
    for row in rows {
        writer.serialize(row)?;
    }
    writer.flush()?;
    writer
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))
}

/// Writes `R`'s file: its header, then `rows`.
pub fn write_rows<W: Write, R: CsvFile>(
    out: W,
    rows: impl IntoIterator<Item = R>,
) -> csv::Result<W> {
    write_csv(out, R::COLUMNS, rows)
}

/// Writes `dir/<R's file>`: its header, then `rows`.
pub fn write_file<R: CsvFile>(dir: &Path, rows: &[R]) -> Result<(), ResultsError> {
    let path = dir.join(R::FILE);
    let mut out = write_csv(create(&path)?, R::COLUMNS, rows).map_err(ResultsError::csv(&path))?;
    out.flush().map_err(ResultsError::io(&path))
}

/// `summary.csv`: one row per (metric, phase) of `snapshot`, in the snapshot's order.
pub fn write_summary<W: Write>(snapshot: &Snapshot, phases: &[String], out: W) -> csv::Result<W> {
    let rows = snapshot.histograms.iter().map(|h| {
        let hist = &h.histogram;
        let at = |q| Fixed3::ms_from_micros(hist.value_at_quantile(q));
        SummaryRow {
            phase: phase_label(phases, h.phase),
            metric: h.metric.clone(),
            unit: "ms".to_string(),
            count: hist.len(),
            min: Fixed3::ms_from_micros(hist.min()),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max: Fixed3::ms_from_micros(hist.max()),
            mean: Fixed3(hist.mean() / MICROS_PER_MS),
        }
    });
    write_rows(out, rows)
}

/// `errors.csv`: failures by (phase, operation, kind), with one example message each.
pub fn write_errors<W: Write>(snapshot: &Snapshot, phases: &[String], out: W) -> csv::Result<W> {
    let rows = snapshot.errors.iter().map(|e| {
        let (kind, code) = e.kind.columns();
        ErrorRow {
            phase: phase_label(phases, e.phase),
            operation: redact_urls(&e.operation),
            kind: kind.to_string(),
            code,
            count: e.count,
            example: redact_urls(&e.example),
        }
    });
    write_rows(out, rows)
}

/// `agents.csv`: one row per agent, in fleet order.
pub fn write_agents<W: Write>(agents: &[AgentFinal], out: W) -> csv::Result<W> {
    let ms = |d: std::time::Duration| Fixed3(d.as_secs_f64() * 1e3);
    let rows = agents.iter().map(|a| AgentRow {
        pc: a.pc.clone(),
        group: a.group.clone(),
        state: a.state.clone(),
        reason: a.reason.as_deref().map(redact_urls).unwrap_or_default(),
        connects: a.connects,
        last_splay_ms: a.last_resync.map(|(s, _)| ms(s)),
        last_resync_wait_ms: a.last_resync.map(|(_, w)| ms(w)),
        core_received: a.core_received,
        published: a.published,
    });
    write_rows(out, rows)
}

/// `steps.csv`: one row per step that ran; broker columns empty when not sampled.
pub fn write_steps<W: Write>(steps: &[StepRecord], out: W) -> csv::Result<W> {
    let rows = steps.iter().map(|s| {
        let sampled = |v: u64| s.broker_sampled.then_some(v);
        StepRow {
            step: s.label.clone(),
            began_secs: Fixed3(s.began_secs),
            ended_secs: Fixed3(s.ended_secs),
            agents_ready: s.agents_ready,
            agents_failed: s.agents_failed,
            broker_connections: sampled(s.broker.connections),
            broker_consumers: sampled(s.broker.consumers),
            broker_consumers_long_lived: s.broker.consumers_long_lived.filter(|_| s.broker_sampled),
            broker_api_total: sampled(s.broker.api_total),
            broker_api_errors: sampled(s.broker.api_errors),
        }
    });
    write_rows(out, rows)
}

/// Writes one `.hgrm` per histogram; returns the file names in snapshot order.
fn write_hgrm_files(dir: &Path, record: &RunRecord) -> Result<Vec<String>, ResultsError> {
    let mut names = Vec::with_capacity(record.snapshot.histograms.len());
    let mut taken = HashSet::new();
    for h in &record.snapshot.histograms {
        let name = unique_name(&mut taken, &hgrm_stem(h.phase, &h.metric), HGRM_EXTENSION);
        let path = dir.join(&name);
        let mut out = create(&path)?;
        write_percentile_distribution(
            &h.histogram,
            TICKS_PER_HALF_DISTANCE,
            MICROS_PER_MS,
            &mut out,
        )
        .and_then(|()| out.flush())
        .map_err(ResultsError::io(&path))?;
        names.push(name);
    }
    Ok(names)
}

/// `<phase index>-<metric>`, metric dots kept (`1-consumer_create.jobs`); anything that
/// is not safe in a file name (a `/`, a leading `.`) becomes `_`.
fn hgrm_stem(phase: usize, metric: &str) -> String {
    let metric: String = metric
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let safe = c.is_ascii_alphanumeric() || c == '_' || c == '-' || (c == '.' && i > 0);
            if safe { c } else { '_' }
        })
        .collect();
    format!("{phase}-{metric}")
}

/// `stem.ext`, or `stem~2.ext`, ... if two metrics sanitized to the same name.
fn unique_name(taken: &mut HashSet<String>, stem: &str, ext: &str) -> String {
    let mut name = format!("{stem}.{ext}");
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{stem}~{n}.{ext}");
        n += 1;
    }
    name
}
