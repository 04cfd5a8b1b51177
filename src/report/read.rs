//! Loading a run directory's files for the report: CSVs as strings (tables are shown as
//! written), numeric columns parsed on demand, `.hgrm` percentile distributions, the
//! manifest as plain JSON (single and A/B manifests differ, and the report must read
//! both), and which runs an A/B directory's charts are drawn from.
//!
//! Every optional file may be missing (`Ok(None)`); a file that exists but cannot be
//! parsed is an error naming the file and line, never a panic. The files are read
//! through the run directory's one reader ([`crate::results::RunDir`]); what is here
//! is the report's view of them.

use std::path::{Path, PathBuf};

use super::ReportError;
use crate::results::{self, ReadError, RunDir, RunEntry};

impl From<ReadError> for ReportError {
    fn from(e: ReadError) -> ReportError {
        match e {
            ReadError::Malformed {
                path,
                line,
                message,
            } => ReportError::Parse {
                path,
                line: line as usize,
                message,
            },
            ReadError::Io { path, source } => ReportError::Io { path, source },
            ReadError::Missing { path } => ReportError::Io {
                path,
                source: std::io::ErrorKind::NotFound.into(),
            },
        }
    }
}

/// One CSV file, header and rows, as written.
#[derive(Debug, Clone)]
pub struct Table {
    pub path: PathBuf,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    fn column(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }

    /// The cell of `row` in column `name`; `None` if either is missing.
    pub fn get(&self, row: usize, name: &str) -> Option<&str> {
        let col = self.column(name)?;
        self.rows.get(row)?.get(col).map(String::as_str)
    }

    /// Column `name` as numbers, `None` for an empty cell; a missing column is all
    /// `None` (older files lack newer columns), text that is not a finite number is an
    /// error.
    pub fn floats(&self, name: &str) -> Result<Vec<Option<f64>>, ReportError> {
        let Some(col) = self.column(name) else {
            return Ok(vec![None; self.rows.len()]);
        };
        self.rows
            .iter()
            .enumerate()
            .map(|(i, row)| match row.get(col).map(|c| c.trim()) {
                None | Some("") => Ok(None),
                Some(text) => match text.parse::<f64>() {
                    Ok(v) if v.is_finite() => Ok(Some(v)),
                    _ => Err(ReportError::Parse {
                        path: self.path.clone(),
                        // Line 1 is the header.
                        line: i + 2,
                        message: format!("{name} = {text:?} is not a finite number"),
                    }),
                },
            })
            .collect()
    }

    /// `y` over `t_secs` as line segments: a row whose `ok` column (if any) is `false`, or
    /// whose value is empty, ends the current segment, so a gap is drawn as nothing.
    /// `y` may name several columns, which are summed.
    pub fn segments(&self, y: &[&str]) -> Result<Vec<Vec<(f64, f64)>>, ReportError> {
        let t = self.floats("t_secs")?;
        let columns = y
            .iter()
            .map(|name| self.floats(name))
            .collect::<Result<Vec<_>, _>>()?;
        let mut segments = Vec::new();
        let mut current = Vec::new();
        for (i, t) in t.iter().enumerate() {
            let value: Option<f64> = columns.iter().map(|c| c[i]).sum();
            match (t, value) {
                (Some(t), Some(v)) if self.get(i, "ok") != Some("false") => current.push((*t, v)),
                _ if !current.is_empty() => segments.push(std::mem::take(&mut current)),
                _ => {}
            }
        }
        if !current.is_empty() {
            segments.push(current);
        }
        Ok(segments)
    }

    /// Time spans of consecutive `ok = false` rows: from the first such row to the next
    /// row that answered (or the last row).
    pub fn gaps(&self) -> Result<Vec<(f64, f64)>, ReportError> {
        let t = self.floats("t_secs")?;
        let mut gaps = Vec::new();
        let mut open: Option<f64> = None;
        for (i, t) in t.iter().enumerate() {
            let Some(t) = *t else { continue };
            match (self.get(i, "ok") == Some("false"), open) {
                (true, None) => open = Some(t),
                (false, Some(start)) => {
                    gaps.push((start, t));
                    open = None;
                }
                _ => {}
            }
        }
        if let (Some(start), Some(Some(end))) = (open, t.last()) {
            gaps.push((start, end.max(start)));
        }
        Ok(gaps)
    }
}

/// Reads `dir/name`; `Ok(None)` when the file does not exist.
pub fn csv(dir: &Path, name: &str) -> Result<Option<Table>, ReportError> {
    Ok(RunDir::new(dir).raw_csv(name)?.map(|raw| Table {
        path: raw.path,
        headers: raw.headers,
        rows: raw.rows,
    }))
}

/// `dir/manifest.json` as JSON, single or A/B alike; `Ok(None)` when missing (a sub-run
/// that never finished).
pub fn manifest(dir: &Path) -> Result<Option<serde_json::Value>, ReportError> {
    Ok(RunDir::new(dir).manifest_json()?)
}

/// A `.hgrm` file of a run: `<phase index>-<metric>.hgrm`.
#[derive(Debug, Clone)]
pub struct HgrmFile {
    pub phase: usize,
    pub metric: String,
    pub path: PathBuf,
}

/// The files in `dir` (not recursive) whose names end with `suffix` (`.svg`), sorted;
/// none when `dir` does not exist.
pub fn files_ending(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>, ReportError> {
    let extension = suffix.strip_prefix('.').unwrap_or(suffix);
    Ok(results::read::files_ending(dir, extension)?)
}

/// Every `.hgrm` file in `dir`, sorted by phase then metric.
pub fn hgrm_files(dir: &Path) -> Result<Vec<HgrmFile>, ReportError> {
    Ok(RunDir::new(dir)
        .hgrm_files()?
        .into_iter()
        .map(|(phase, metric, path)| HgrmFile {
            phase,
            metric,
            path,
        })
        .collect())
}

/// The (percentile in [0, 1], value in ms, total count so far) rows of a
/// percentile-distribution file; the header and the `#[...]` footer are skipped.
pub fn hgrm(path: &Path) -> Result<Vec<(f64, f64, f64)>, ReportError> {
    Ok(results::read::hgrm(path)?)
}

/// A run the charts are drawn from: the directory itself for a single run, one sub-run
/// per variant for an A/B run.
#[derive(Debug, Clone)]
pub struct ChartRun {
    /// The variant's name; empty for a single run.
    pub variant: String,
    pub dir: PathBuf,
    /// The run's own `manifest.json` (`None` if it has none: a run that never finished).
    pub manifest: Option<serde_json::Value>,
}

/// The runs to chart. An A/B directory (it has `runs.csv`) is charted from each
/// variant's first repeat (the lowest `repeat` listed): percentile tables of several
/// repeats cannot be merged exactly, and one run per variant keeps the timelines on one
/// run's clock. `compare.csv` pools every repeat.
pub fn chart_runs(dir: &Path) -> Result<Vec<ChartRun>, ReportError> {
    let Some(runs) = RunDir::new(dir).rows_if_present::<RunEntry>()? else {
        return Ok(vec![ChartRun {
            variant: String::new(),
            dir: dir.to_path_buf(),
            manifest: manifest(dir)?,
        }]);
    };
    let mut chosen: Vec<&RunEntry> = Vec::new();
    for run in &runs {
        match chosen.iter_mut().find(|c| c.variant == run.variant) {
            Some(c) if run.repeat < c.repeat => *c = run,
            Some(_) => {}
            None => chosen.push(run),
        }
    }
    chosen
        .into_iter()
        .map(|run| {
            let dir = dir.join(&run.dir);
            Ok(ChartRun {
                variant: run.variant.clone(),
                manifest: manifest(&dir)?,
                dir,
            })
        })
        .collect()
}
