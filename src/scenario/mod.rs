//! Scenario files: TOML text in, a validated [`Plan`] out, or every problem in the file.
//!
//! This module owns the scenario format: which keys exist, their types, defaults and
//! rules (see the README's "Scenario files"), and the built-in profiles in
//! `src/profiles/`, which are TOML parsed by the same code as a scenario's
//! `[profiles.<name>]` tables. Nothing after it re-checks input: a [`Plan`] is correct by
//! construction.
//!
//! # Why the table is walked by hand
//!
//! Deriving `Deserialize` would stop at the first problem and say little about where it
//! is. A scenario is written by hand and run from a terminal, so `fleetsim validate`
//! should list every problem at once, each with the line it is on:
//!
//! ```text
//! quick.toml:4: fleet.agents: must be a positive whole number, got -5
//! quick.toml:7: fleet.agnets: unknown key; allowed: agents, groups, profile, ...
//! quick.toml:9: steps[2].duration: bad duration "5 parsecs"; use a number with a unit: 500ms, 10s, 2m, 1h
//! ```
//!
//! So the text is parsed into toml's spanned document ([`toml::de::DeTable`]), and the
//! readers in `walk` take each value they need, record a [`Problem`] (with the line of
//! its span) for anything wrong, and fall back to the default so reading goes on. The
//! plan is returned only if no problem was recorded. A TOML syntax error stops reading:
//! it is reported as the one problem of the file.
//!
//! Problems point at the offending key (unknown keys) or value (wrong type or value); a
//! missing key points at what requires it (the table's header, or the `kind`/`mode` that
//! needs it), and a missing table at line 1.
//!
//! # Layout
//!
//! This file reads the root table and puts the plan together; each table has its own
//! reader: `broker` (`[broker]`), `fleet` (`[fleet]`, and which connection options win
//! over the profile's `[client]`), `profile` (`[profiles.*]` and the built-ins, one room
//! per part of a profile: buckets and client, tasks, publishes, key and subject strings),
//! `steps` (`[[steps]]`, one room per family of step kinds), `thresholds`,
//! `variants` (`[[variants]]`, `repeat`); `walk` holds the typed reads they share. Their
//! tests are in `tests/`, one file per reader, and the rejected files are data under
//! `tests/scenarios/invalid/<reader>/`.

mod broker;
mod fleet;
mod gate;
mod profile;
mod steps;
mod thresholds;
mod variants;
mod walk;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use crate::plan::{Plan, Profile};
use walk::{Ctx, Node};

/// Why a scenario could not be turned into a [`Plan`].
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Every problem in the file, one per line when displayed.
    #[error("{}", render(.0))]
    Invalid(Vec<Problem>),
}

/// One thing wrong in a scenario file. Displays as `<file>:<line>: <key>: <message>`
/// (without `<key>: ` for a TOML syntax error, which belongs to no key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Problem {
    /// The scenario's origin, or `src/profiles/<name>.toml` for a built-in profile.
    pub file: String,
    /// 1-based line of the offending key or value.
    pub line: usize,
    /// Dotted path of the key: `fleet.agents`, `steps[2].duration` (indexes are 1-based).
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        // One problem, one line: messages quote what the file says, but a control
        // character that slipped through unquoted is shown escaped, not acted on.
        for c in self.message.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Problems one per line.
fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads and checks a scenario file; messages name the file as `path` is written.
pub fn parse_file(path: &Path) -> Result<Plan, ScenarioError> {
    let bytes = std::fs::read(path).map_err(|source| ScenarioError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_bytes(&bytes, &path.display().to_string())
}

/// Checks the bytes of a scenario file, as [`parse_file`] does once it has read them:
/// text that is not UTF-8 (TOML's only encoding) is one problem at the line of the
/// first bad byte, like a syntax error. This is the entry point the fuzzer drives.
pub fn parse_bytes(bytes: &[u8], origin: &str) -> Result<Plan, ScenarioError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_str(text, origin),
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            Err(ScenarioError::Invalid(vec![Problem {
                file: origin.to_string(),
                line,
                key: String::new(),
                message: format!(
                    "invalid TOML: not UTF-8 (byte {:#04x} at offset {}); save the file as UTF-8",
                    bytes[e.valid_up_to()],
                    e.valid_up_to()
                ),
            }]))
        }
    }
}

/// Checks scenario text; `origin` is the file name used in messages, and its stem is the
/// scenario's default name.
pub fn parse_str(text: &str, origin: &str) -> Result<Plan, ScenarioError> {
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            return Err(ScenarioError::Invalid(vec![syntax_problem(
                origin, text, &e,
            )]));
        }
    };
    let mut ctx = Ctx::new(origin, text);
    let root = Node::new(String::new(), doc.get_ref(), doc.span());
    let mut plan = read_plan(&mut ctx, &root, origin);
    let (variants, repeat) = variants::read_variants(&mut ctx, &root, origin, &plan);
    plan.variants = variants;
    plan.repeat = repeat;
    // Checks may name the consumers of any variant's profile, so they are read last.
    let base = thresholds::read_thresholds(&mut ctx, &root, &thresholds::known(&plan));
    for variant in &mut plan.variants {
        // A variant holds its own `thresholds = [...]` so far; the file's come first.
        let own = std::mem::take(&mut variant.plan.thresholds.checks);
        variant.plan.thresholds = base.clone();
        variant.plan.thresholds.checks.extend(own);
    }
    plan.thresholds = base;
    plan.gate = gate::read_gate(&mut ctx, &root, &thresholds::known(&plan));
    let problems = ctx.into_problems();
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(ScenarioError::Invalid(problems))
    }
}

pub use fleet::parse_bandwidth;

/// Parses `"500ms"`, `"10s"`, `"1.5s"`, `"2m"`, `"1h"`, `"0s"`: a non-negative decimal
/// number and one of the units `ms`, `s`, `m`, `h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {s:?}; use a number with a unit: 500ms, 10s, 2m, 1h");
    let text = s.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let unit_nanos: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(bad()),
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) if !f.is_empty() && !f.contains('.') => (w, f),
        Some(_) => return Err(bad()),
        None => (number, ""),
    };
    if whole.is_empty() {
        return Err(bad());
    }
    let too_long = || format!("duration {s:?} is too long");
    let whole: u128 = whole.parse().map_err(|_| too_long())?;
    let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(too_long)?;
    // Digits past the 18th are below a nanosecond for every unit.
    let fraction = &fraction[..fraction.len().min(18)];
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().map_err(|_| bad())?;
        nanos += digits * unit_nanos / 10u128.pow(fraction.len() as u32);
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// A TOML syntax error as the one problem of `file`.
fn syntax_problem(file: &str, text: &str, error: &toml::de::Error) -> Problem {
    let offset = error.span().map_or(0, |s| s.start);
    Problem {
        file: file.to_string(),
        line: Ctx::new(file, text).line_of(offset),
        key: String::new(),
        message: format!("invalid TOML: {}", error.message()),
    }
}

const ROOT_KEYS: [&str; 12] = [
    "name",
    "description",
    "seed",
    "broker",
    "fleet",
    "profiles",
    "steps",
    "variants",
    "repeat",
    "thresholds",
    "gate",
    "observe",
];
const POSITIVE: &str = "a positive whole number";
const NON_NEGATIVE: &str = "zero or a positive whole number";

fn read_plan(ctx: &mut Ctx<'_>, root: &Node<'_, '_>, origin: &str) -> Plan {
    root.check_keys(ctx, &ROOT_KEYS);
    let name = match root.string(ctx, "name") {
        Some(("", span)) => {
            ctx.report(&span, "name", "must not be empty");
            None
        }
        Some((name, _)) => Some(name.to_string()),
        None => None,
    };
    let name = name.unwrap_or_else(|| default_name(origin));
    let description = root
        .string(ctx, "description")
        .map_or_else(String::new, |(d, _)| d.to_string());
    let seed = root.whole(ctx, "seed", NON_NEGATIVE, 0, u64::MAX.into());
    let seed = seed.map_or(1, |(n, _)| n as u64);

    let broker = broker::read_broker(ctx, root);
    let fleet::ReadFleet {
        mut fleet,
        profile_span,
        client,
    } = fleet::read_fleet(ctx, root);
    let profiles = profile::read_profiles(ctx, root);
    let profile = resolve_profile(ctx, &fleet.profile, profile_span, &profiles);
    fleet::resolve_client(&mut fleet, &client, &profile);
    // Steps name agents by index and consumers by name, so they are read after the
    // fleet and its profile; an unknown profile is already a problem, not a list to check.
    let profile_known =
        profile::is_builtin(&fleet.profile) || profiles.contains_key(&fleet.profile);
    let setup = steps::Setup {
        external_broker: broker.url.is_some() || writes_url(root),
        proxy: fleet.proxy.is_on() || asks_for_proxy(root),
        agents: (fleet.agents > 0).then_some(fleet.agents),
        groups: (fleet.groups > 0).then_some(fleet.groups),
        tls: broker.tls
            || broker
                .url
                .as_deref()
                .is_some_and(|u| u.starts_with("tls://")),
        profile: fleet.profile.clone(),
        consumers: profile_known
            .then(|| profile.consumers.iter().map(|c| c.name.clone()).collect()),
        buckets: profile_known.then(|| profile.buckets.iter().map(|b| b.name.clone()).collect()),
    };
    let steps = steps::read_steps(ctx, root, &setup);
    Plan {
        name,
        description,
        seed,
        broker,
        fleet,
        profile,
        steps,
        variants: Vec::new(),
        repeat: 1,
        thresholds: Default::default(),
        gate: crate::gate::same_runner::GateSettings::default(),
        observe: read_observe(ctx, root),
    }
}

/// `[observe]`: each observer on unless set to false.
fn read_observe(ctx: &mut Ctx<'_>, root: &Node<'_, '_>) -> crate::plan::Observe {
    let mut observe = crate::plan::Observe::default();
    let Some(node) = root.table(ctx, "observe", "a table ([observe])") else {
        return observe;
    };
    node.check_keys(ctx, &["api_tap", "broker", "timeseries", "progress"]);
    for (key, field) in [
        ("api_tap", &mut observe.api_tap),
        ("broker", &mut observe.broker),
        ("timeseries", &mut observe.timeseries),
        ("progress", &mut observe.progress),
    ] {
        if let Some(on) = node.boolean(ctx, key) {
            *field = on;
        }
    }
    observe
}

/// `[broker] url` is written, valid or not (an invalid one is already a problem, and the
/// steps that need the embedded broker are checked against what the file asks for).
fn writes_url(root: &Node<'_, '_>) -> bool {
    match root.get("broker").map(|b| b.get_ref()) {
        Some(DeValue::Table(broker)) => broker.get("url").is_some(),
        _ => false,
    }
}

/// `[fleet] proxy` is written as anything but `false`: a wrong value is already a
/// problem, and `network_cut` is checked against what the file asks for.
fn asks_for_proxy(root: &Node<'_, '_>) -> bool {
    match root.get("fleet").map(|f| f.get_ref()) {
        Some(DeValue::Table(fleet)) => fleet
            .get("proxy")
            .is_some_and(|p| !matches!(p.get_ref(), DeValue::Boolean(false))),
        _ => false,
    }
}

/// The file stem of `origin` (`scenarios/quick.toml` -> `quick`).
fn default_name(origin: &str) -> String {
    Path::new(origin)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "scenario".to_string())
}

/// The profile `fleet.profile` names: a built-in or one of the file's `[profiles]`.
fn resolve_profile(
    ctx: &mut Ctx<'_>,
    name: &str,
    span: Option<std::ops::Range<usize>>,
    custom: &std::collections::BTreeMap<String, Profile>,
) -> Profile {
    let empty = Profile::simple(name, Vec::new(), Vec::new());
    if let Some(builtin) = profile::builtin(name) {
        return builtin.unwrap_or_else(|problems| {
            ctx.extend(problems);
            empty
        });
    }
    if let Some(profile) = custom.get(name) {
        return profile.clone();
    }
    // Only a name written in the file can be unknown: the default is a built-in.
    let span = span.unwrap_or(0..0);
    // Names as TOML writes them: quoted unless bare, so a message stays on one line.
    let message = if custom.is_empty() {
        let table = walk::join("profiles", name);
        let builtins = profile::builtin_names();
        format!("unknown profile {name:?}; use a built-in ({builtins}) or define [{table}]")
    } else {
        let names: Vec<String> = custom.keys().map(|n| walk::join("", n)).collect();
        format!(
            "unknown profile {name:?}; use a built-in ({}) or one of this file's [profiles]: {}",
            profile::builtin_names(),
            names.join(", ")
        )
    };
    ctx.report(&span, "fleet.profile", message);
    empty
}
