//! Arbitrary bytes into the scenario parser and validator, through the entry point
//! `fleetsim run`, `sweep` and `validate` use on a file's contents
//! ([`fleetsim::scenario::parse_bytes`]).
//!
//! What must hold for every input: no panic, no hang (libFuzzer's `-timeout`), and every
//! rejection is a list of at least one problem, each rendered as `<file>:<line>: ...`
//! with a line inside the text. A problem belongs either to the file itself or to a
//! built-in profile (`src/profiles/<name>.toml`). The only error without a line is
//! `ScenarioError::Read` (the file cannot be read at all), which bytes already in
//! memory cannot produce: it fails the target too.
//!
//! An accepted plan goes on as `fleetsim run` takes it: the command line's overrides
//! apply or are refused without a panic, and the plan serializes to JSON (the run's
//! manifest.json holds it).
#![no_main]

use fleetsim::plan::{Overrides, Plan};
use fleetsim::scenario::{self, ScenarioError};
use libfuzzer_sys::fuzz_target;

const ORIGIN: &str = "fuzz.toml";

fuzz_target!(|data: &[u8]| {
    let problems = match scenario::parse_bytes(data, ORIGIN) {
        Ok(plan) => return accepted(plan, data),
        Err(ScenarioError::Invalid(problems)) => problems,
        Err(e) => panic!("a rejection without a location: {e}"),
    };
    assert!(!problems.is_empty(), "rejected with no problem listed");
    // Lines of the text: a problem may point at most one past the last newline.
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    for problem in &problems {
        let builtin = problem.file.starts_with("src/profiles/");
        assert!(
            problem.file == ORIGIN || builtin,
            "a problem in an unexpected file: {problem}"
        );
        assert!(problem.line >= 1, "line 0: {problem}");
        assert!(
            builtin || problem.line <= lines,
            "line {} past the end ({lines} lines): {problem}",
            problem.line
        );
        let rendered = problem.to_string();
        let location = format!("{}:{}: ", problem.file, problem.line);
        assert!(
            rendered.starts_with(&location) && rendered.len() > location.len(),
            "rendered without its location or message: {rendered:?}"
        );
    }
    // The error as `fleetsim validate` prints it: one located problem per line.
    let text = ScenarioError::Invalid(problems).to_string();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (file, number) = (parts.next(), parts.next());
        assert!(
            file.is_some_and(|f| !f.is_empty())
                && number.is_some_and(|n| n.parse::<usize>().is_ok()),
            "a printed line without file:line: {line:?}"
        );
    }
});

/// The second stage of the input: overrides chosen from the input's length, then the
/// manifest's JSON.
fn accepted(mut plan: Plan, data: &[u8]) {
    let overrides = Overrides {
        agents: Some(data.len() % 7),
        server: (data.len() % 2 == 0).then(|| "nats://127.0.0.1:4222".to_string()),
        herd_command: (data.len() % 3 == 0).then(|| "true".to_string()),
        ..Overrides::default()
    };
    let _ = overrides.apply(&mut plan);
    serde_json::to_value(&plan).expect("an accepted plan serializes to JSON");
}
