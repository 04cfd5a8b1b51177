//! Tests of the scenario parser, one file per submodule it tests ([`root`] for
//! `mod.rs`), and the invalid scenarios as data, one folder per submodule.
//!
//! # Invalid scenarios are data
//!
//! Each file `tests/scenarios/invalid/<area>/NAME.toml` is a scenario that must be
//! rejected; `NAME.expected` beside it lists its problems in order, one per line, as
//! `fleetsim validate` prints them without the leading file name (`4: fleet.agents: must
//! be ...`). A line ending in ` ...` matches any problem that starts with the text before
//! it (for messages quoted from the toml crate). [`invalid_scenarios`] checks every case in
//! one loop and lists every mismatch; `FLEETSIM_BLESS=1` rewrites the `.expected` files
//! that no longer match from what the parser says (review the diff). A new case is two new files, no code.

mod broker;
mod fleet;
mod profile;
mod root;
mod steps;
mod thresholds;
mod variants;
mod walk;

use std::path::{Path, PathBuf};

use super::*;
use crate::plan::KeyTemplate;

/// Cases under `tests/scenarios/invalid` when the split was made: a floor, so a loop that
/// silently found no files fails.
const INVALID_CASES_AT_LEAST: usize = 68;

pub(super) fn plan(text: &str) -> Plan {
    parse_str(text, "quick.toml").unwrap_or_else(|e| panic!("expected a plan, got:\n{e}"))
}

pub(super) fn key(k: &str) -> KeyTemplate {
    KeyTemplate(k.to_string())
}

pub(super) const MINIMAL: &str = "[fleet]\nagents = 5\n\n[[steps]]\nkind = \"start\"\n";

/// The entries of `dir`, sorted, so failures list in a stable order.
fn sorted(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    paths.sort();
    paths
}

/// The problems `parse_bytes` finds in `bytes`, each without its leading `origin:`.
fn found_problems(bytes: &[u8], origin: &str) -> Vec<String> {
    let prefix = format!("{origin}:");
    match parse_bytes(bytes, origin) {
        Ok(_) => vec!["(no problem: the scenario parses)".to_string()],
        Err(ScenarioError::Invalid(problems)) => problems
            .iter()
            .map(|p| {
                let shown = p.to_string();
                shown
                    .strip_prefix(&prefix)
                    .map_or(shown.clone(), str::to_string)
            })
            .collect(),
        Err(e) => vec![format!("(not a list of problems) {e}")],
    }
}

fn matches(found: &[String], expected: &[&str]) -> bool {
    found.len() == expected.len()
        && found
            .iter()
            .zip(expected)
            .all(|(f, e)| match e.strip_suffix(" ...") {
                Some(start) => f.starts_with(start),
                None => f == e,
            })
}

#[test]
fn invalid_scenarios() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/invalid");
    let bless = std::env::var_os("FLEETSIM_BLESS").is_some();
    let (mut cases, mut failures) = (0, Vec::new());
    for area in sorted(&base).into_iter().filter(|p| p.is_dir()) {
        for path in sorted(&area) {
            let shown = path
                .strip_prefix(&base)
                .unwrap_or(&path)
                .display()
                .to_string();
            let expected_path = path.with_extension("expected");
            match path.extension().and_then(|e| e.to_str()) {
                Some("toml") => {}
                Some("expected") if !path.with_extension("toml").exists() => {
                    failures.push(format!("{shown}: no scenario beside it"));
                    continue;
                }
                _ => continue,
            }
            cases += 1;
            let origin = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap();
            let found = found_problems(&bytes, &origin);
            let expected_text = std::fs::read_to_string(&expected_path).ok();
            let expected: Vec<&str> = expected_text.iter().flat_map(|t| t.lines()).collect();
            if bless && !matches(&found, &expected) {
                std::fs::write(&expected_path, found.join("\n") + "\n").unwrap();
                continue;
            }
            if expected_text.is_none() {
                failures.push(format!("{shown}: no .expected file beside it"));
                continue;
            }
            if !matches(&found, &expected) {
                failures.push(format!(
                    "{shown}:\n  expected:\n    {}\n  found:\n    {}",
                    expected.join("\n    "),
                    found.join("\n    ")
                ));
            }
        }
    }
    assert!(
        cases >= INVALID_CASES_AT_LEAST,
        "only {cases} cases under {}",
        base.display()
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} invalid scenarios:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
