//! Reading a run directory back: the one reader of every file the writers leave, with
//! one error policy.
//!
//! - A file that is required and missing is [`ReadError::Missing`], naming it.
//! - A file that may legitimately be absent (a run with no herd has an empty
//!   `recovery.csv`, an older run none at all) is read with [`RunDir::rows_if_present`]:
//!   `Ok(None)` says "not measured", for the caller to state.
//! - A file that exists but does not parse as its typed rows (an unknown or missing
//!   column, a cell that is not a number) is [`ReadError::Malformed`], naming the file
//!   and the line. Never a silent zero, never a panic.
//!
//! The gate (`thresholds`), the sweep, `fleetsim compare`, the report and the tests all
//! read through here; the rows are the writers' own types ([`super::rows`]).

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::files::{HGRM_EXTENSION, MANIFEST_FILE};
use super::manifest::{AbManifest, Manifest};
use super::rows::{CsvFile, Merged};

/// Why a file of a run directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}: no such file", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `line` is 1-based (line 1 of a CSV is its header); 0 when the parser did not say.
    #[error("{}: line {line}: {message}", path.display())]
    Malformed {
        path: PathBuf,
        line: u64,
        message: String,
    },
}

impl ReadError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ReadError::Missing { path }
            | ReadError::Io { path, .. }
            | ReadError::Malformed { path, .. } => path,
        }
    }

    fn io(path: &Path, source: io::Error) -> ReadError {
        if source.kind() == io::ErrorKind::NotFound {
            ReadError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            ReadError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    fn csv(path: &Path, e: csv::Error) -> ReadError {
        let line = e.position().map_or(0, csv::Position::line);
        let message = match e.kind() {
            csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
            csv::ErrorKind::Io(_) => {
                return match e.into_kind() {
                    csv::ErrorKind::Io(source) => ReadError::io(path, source),
                    _ => unreachable!("matched above"),
                };
            }
            _ => e.to_string(),
        };
        ReadError::Malformed {
            path: path.to_path_buf(),
            line,
            message,
        }
    }

    fn json(path: &Path, e: serde_json::Error) -> ReadError {
        ReadError::Malformed {
            path: path.to_path_buf(),
            line: e.line() as u64,
            message: e.to_string(),
        }
    }
}

/// A run directory (single run, A/B or sweep) to read files from.
#[derive(Debug, Clone)]
pub struct RunDir {
    dir: PathBuf,
}

/// A CSV file as written: header and cells as text, for showing it as a table.
#[derive(Debug, Clone)]
pub struct RawCsv {
    pub path: PathBuf,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// The manifest of a single run or of an A/B run.
#[derive(Debug, Clone)]
pub enum AnyManifest {
    Run(Box<Manifest>),
    Ab(Box<AbManifest>),
}

impl AnyManifest {
    /// The fleet size the run had (an A/B run's first variant's).
    pub fn agents(&self) -> Option<u64> {
        match self {
            AnyManifest::Run(m) => m.settings.pointer("/fleet/agents")?.as_u64(),
            AnyManifest::Ab(m) => m.variants.first()?.pointer("/fleet/agents")?.as_u64(),
        }
    }

    /// The scenario text the manifest keeps (redacted).
    pub fn scenario_text(&self) -> &str {
        match self {
            AnyManifest::Run(m) => &m.scenario.text,
            AnyManifest::Ab(m) => &m.scenario_text,
        }
    }
}

impl RunDir {
    pub fn new(dir: impl Into<PathBuf>) -> RunDir {
        RunDir { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of `name` in this directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Whether the directory holds the file `name`.
    pub fn has(&self, name: &str) -> bool {
        self.path(name).is_file()
    }

    /// Every row of `R`'s file; a missing file is an error.
    pub fn rows<R: CsvFile>(&self) -> Result<Vec<R>, ReadError> {
        read_csv(&self.path(R::FILE))
    }

    /// Every row of `R`'s file, or `None` when the run did not write it ("not
    /// measured").
    pub fn rows_if_present<R: CsvFile>(&self) -> Result<Option<Vec<R>>, ReadError> {
        absent_is_none(self.rows())
    }

    /// The rows of `R`'s file where an A/B run may have merged it from its runs: with
    /// leading `variant,repeat` columns, or without (a single run's file).
    pub fn merged_rows<R: CsvFile>(&self) -> Result<Vec<Merged<R>>, ReadError> {
        read_merged(&self.path(R::FILE))
    }

    /// `manifest.json` of a single run; missing is an error.
    pub fn manifest(&self) -> Result<Manifest, ReadError> {
        read_json(&self.path(MANIFEST_FILE))
    }

    /// `manifest.json`, single or A/B; `None` when there is none (a run that never
    /// finished, a sweep).
    pub fn any_manifest(&self) -> Result<Option<AnyManifest>, ReadError> {
        let path = self.path(MANIFEST_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ReadError::io(&path, e)),
        };
        #[derive(serde::Deserialize)]
        struct Kind {
            kind: Option<String>,
        }
        let kind: Kind = serde_json::from_str(&text).map_err(|e| ReadError::json(&path, e))?;
        let manifest = if kind.kind.as_deref() == Some(AbManifest::KIND) {
            AnyManifest::Ab(Box::new(parse_json(&path, &text)?))
        } else {
            AnyManifest::Run(Box::new(parse_json(&path, &text)?))
        };
        Ok(Some(manifest))
    }

    /// `manifest.json` as plain JSON, to show as it is; `None` when missing.
    pub fn manifest_json(&self) -> Result<Option<serde_json::Value>, ReadError> {
        absent_is_none(read_json(&self.path(MANIFEST_FILE)))
    }

    /// The CSV file `name` as text cells, ragged rows allowed; `None` when missing.
    pub fn raw_csv(&self, name: &str) -> Result<Option<RawCsv>, ReadError> {
        let path = self.path(name);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ReadError::io(&path, e)),
        };
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(file);
        let headers = reader
            .headers()
            .map_err(|e| ReadError::csv(&path, e))?
            .iter()
            .map(String::from)
            .collect();
        let rows = reader
            .records()
            .map(|r| r.map(|r| r.iter().map(String::from).collect()))
            .collect::<Result<_, _>>()
            .map_err(|e| ReadError::csv(&path, e))?;
        Ok(Some(RawCsv {
            path,
            headers,
            rows,
        }))
    }

    /// The `.hgrm` files: (phase index, metric, path), sorted by phase then metric.
    pub fn hgrm_files(&self) -> Result<Vec<(usize, String, PathBuf)>, ReadError> {
        let mut files: Vec<(usize, String, PathBuf)> = files_ending(&self.dir, HGRM_EXTENSION)?
            .into_iter()
            .filter_map(|path| {
                let name = path.file_name()?.to_string_lossy().into_owned();
                let stem = name.strip_suffix(HGRM_EXTENSION)?.strip_suffix('.')?;
                let (phase, metric) = stem.split_once('-')?;
                Some((phase.parse().ok()?, metric.to_string(), path.clone()))
            })
            .collect();
        files.sort();
        Ok(files)
    }
}

/// `Ok(None)` for a missing file, the rest as it is.
fn absent_is_none<T>(read: Result<T, ReadError>) -> Result<Option<T>, ReadError> {
    match read {
        Ok(value) => Ok(Some(value)),
        Err(ReadError::Missing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every row of the CSV file at `path`.
pub fn read_csv<R: DeserializeOwned>(path: &Path) -> Result<Vec<R>, ReadError> {
    let file = std::fs::File::open(path).map_err(|e| ReadError::io(path, e))?;
    parse_csv(file, path)
}

/// Every row of CSV text from `reader`; `path` names it in errors (tests need no file).
pub fn parse_csv<R: DeserializeOwned>(reader: impl Read, path: &Path) -> Result<Vec<R>, ReadError> {
    csv::Reader::from_reader(reader)
        .deserialize()
        .collect::<Result<_, _>>()
        .map_err(|e| ReadError::csv(path, e))
}

/// Rows of a CSV file that may carry leading `variant,repeat` columns.
pub fn read_merged<R: DeserializeOwned>(path: &Path) -> Result<Vec<Merged<R>>, ReadError> {
    let file = std::fs::File::open(path).map_err(|e| ReadError::io(path, e))?;
    let mut reader = csv::Reader::from_reader(file);
    let headers = reader
        .headers()
        .map_err(|e| ReadError::csv(path, e))?
        .clone();
    let merged = headers.get(0) == Some("variant") && headers.get(1) == Some("repeat");
    let skip = if merged { 2 } else { 0 };
    let own: csv::StringRecord = headers.iter().skip(skip).collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| ReadError::csv(path, e))?;
        let line = record.position().map_or(0, csv::Position::line);
        let malformed = |message: String| ReadError::Malformed {
            path: path.to_path_buf(),
            line,
            message,
        };
        let rest: csv::StringRecord = record.iter().skip(skip).collect();
        let row = rest
            .deserialize(Some(&own))
            .map_err(|e| malformed(e.to_string()))?;
        let (variant, repeat) = if merged {
            let repeat = record[1]
                .parse()
                .map_err(|_| malformed(format!("repeat = {:?} is not a number", &record[1])))?;
            (Some(record[0].to_string()), Some(repeat))
        } else {
            (None, None)
        };
        rows.push(Merged {
            variant,
            repeat,
            row,
        });
    }
    Ok(rows)
}

/// A JSON file as `T`.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ReadError> {
    let text = std::fs::read_to_string(path).map_err(|e| ReadError::io(path, e))?;
    parse_json(path, &text)
}

fn parse_json<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ReadError> {
    serde_json::from_str(text).map_err(|e| ReadError::json(path, e))
}

/// The files in `dir` (not recursive) whose names end with `.<extension>`, sorted; none
/// when `dir` does not exist.
pub fn files_ending(dir: &Path, extension: &str) -> Result<Vec<PathBuf>, ReadError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ReadError::io(dir, e)),
    };
    let suffix = format!(".{extension}");
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(&suffix))
        .collect();
    files.sort();
    Ok(files)
}

/// The (percentile in [0, 1], value in ms, total count so far) rows of a `.hgrm`
/// percentile-distribution file; the header and the `#[...]` footer are skipped.
pub fn hgrm(path: &Path) -> Result<Vec<(f64, f64, f64)>, ReadError> {
    let text = std::fs::read_to_string(path).map_err(|e| ReadError::io(path, e))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') || line.trim_start().starts_with("Value")
        {
            continue;
        }
        let fields: Vec<Option<f64>> = line
            .split_whitespace()
            .take(3)
            .map(|f| f.parse::<f64>().ok().filter(|v| v.is_finite()))
            .collect();
        match fields[..] {
            [Some(value), Some(p), Some(count)] if (0.0..=1.0).contains(&p) => {
                rows.push((p, value, count))
            }
            _ => {
                return Err(ReadError::Malformed {
                    path: path.to_path_buf(),
                    line: i as u64 + 1,
                    message: format!("not a percentile-distribution row: {line:?}"),
                });
            }
        }
    }
    Ok(rows)
}
