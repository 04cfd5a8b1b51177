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

use crate::plan::{
    Backoff, BrokerPlan, FleetPlan, Plan, Profile, ProxyMode, Splay, SplayPlacement,
};
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
        if self.key.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file, self.line, self.key, self.message
            )
        }
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
    let problems = ctx.into_problems();
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(ScenarioError::Invalid(problems))
    }
}

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

const ROOT_KEYS: [&str; 10] = [
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
];
const BROKER_KEYS: [&str; 8] = [
    "url",
    "monitor",
    "max_connections",
    "request_queue_limit",
    "default_max_consumers",
    "reset",
    "lame_duck_duration",
    "lame_duck_grace_period",
];
/// Broker keys that configure the embedded broker only.
const EMBEDDED_ONLY: [&str; 5] = [
    "max_connections",
    "request_queue_limit",
    "default_max_consumers",
    "lame_duck_duration",
    "lame_duck_grace_period",
];
const FLEET_KEYS: [&str; 16] = [
    "agents",
    "groups",
    "profile",
    "catalog_entries",
    "connect_timeout",
    "request_timeout",
    "setup_retries",
    "reconnect_base",
    "reconnect_cap",
    "reconnect_jitter",
    "splay",
    "splay_placement",
    "splay_on_start",
    "proxy",
    "read_buffer_capacity",
    "exec_ack_wait",
];

/// `[fleet] read_buffer_capacity` default, bytes (async-nats' own is 65535).
pub const DEFAULT_READ_BUFFER_CAPACITY: u16 = 8192;

/// nats-server refuses a config file with a shorter `lame_duck_duration` ("minimum is
/// 30 seconds"), so this is both the floor and the default.
const MIN_LAME_DUCK_DURATION: Duration = Duration::from_secs(30);
const DEFAULT_RECONNECT_BASE: Duration = Duration::from_millis(100);
const DEFAULT_RECONNECT_CAP: Duration = Duration::from_secs(4);
/// The longest splay window: the splay spreads a fleet's re-sync over a few seconds.
const MAX_SPLAY: Duration = Duration::from_secs(300);
const SPLAY_PLACEMENTS: &str = "before_gets, reopen_watches, reconnect_delay";

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

    let broker = read_broker(ctx, root);
    let (fleet, profile_ref) = read_fleet(ctx, root);
    let profiles = profile::read_profiles(ctx, root);
    let profile = resolve_profile(ctx, &fleet.profile, profile_ref, &profiles);
    // Steps name agents by index and consumers by name, so they are read after the
    // fleet and its profile; an unknown profile is already a problem, not a list to check.
    let profile_known =
        profile::is_builtin(&fleet.profile) || profiles.contains_key(&fleet.profile);
    let setup = steps::Setup {
        external_broker: broker.url.is_some() || writes_url(root),
        proxy: fleet.proxy.is_on() || asks_for_proxy(root),
        agents: (fleet.agents > 0).then_some(fleet.agents),
        profile: fleet.profile.clone(),
        consumers: profile_known
            .then(|| profile.consumers.iter().map(|c| c.name.clone()).collect()),
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
    }
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

fn read_broker(ctx: &mut Ctx<'_>, root: &Node<'_, '_>) -> BrokerPlan {
    let mut broker = BrokerPlan {
        url: None,
        monitor_url: None,
        max_connections: 65_536,
        request_queue_limit: 10_000,
        default_max_consumers: -1,
        reset: true,
        lame_duck_duration: Duration::from_secs(30),
        lame_duck_grace_period: Duration::from_secs(1),
        system_url: None,
    };
    let Some(node) = root.table(ctx, "broker", "a table ([broker])") else {
        return broker;
    };
    node.check_keys(ctx, &BROKER_KEYS);
    if let Some((url, span)) = node.string(ctx, "url") {
        if has_scheme(url, &["nats://", "tls://"]) {
            broker.url = Some(url.to_string());
        } else {
            ctx.report(
                &span,
                node.key("url"),
                format!("must start with nats:// or tls://, got {url:?}"),
            );
        }
    }
    if let Some((monitor, span)) = node.string(ctx, "monitor") {
        if !has_scheme(monitor, &["http://", "https://"]) {
            let message = format!("must start with http:// or https://, got {monitor:?}");
            ctx.report(&span, node.key("monitor"), message);
        } else if node.get("url").is_none() {
            let message = "monitor only applies with url (an external broker); the embedded broker's is known";
            ctx.report(&span, node.key("monitor"), message);
        } else {
            broker.monitor_url = Some(monitor.to_string());
        }
    }
    if node.get("url").is_some() {
        for key in EMBEDDED_ONLY {
            if node.get(key).is_some() {
                let message = format!("{key} only applies to the embedded broker (no url)");
                node.report_at(ctx, key, message);
            }
        }
    }
    if let Some((n, _)) = node.whole(ctx, "max_connections", POSITIVE, 1, u64::MAX.into()) {
        broker.max_connections = n as u64;
    }
    if let Some((n, _)) = node.whole(ctx, "request_queue_limit", POSITIVE, 1, u64::MAX.into()) {
        broker.request_queue_limit = n as u64;
    }
    let what = "-1 (unlimited) or a positive whole number";
    if let Some((n, span)) = node.whole(ctx, "default_max_consumers", what, -1, i64::MAX.into()) {
        if n == 0 {
            ctx.report(
                &span,
                node.key("default_max_consumers"),
                format!("must be {what}, got 0"),
            );
        } else {
            broker.default_max_consumers = n as i64;
        }
    }
    if let Some(reset) = node.boolean(ctx, "reset") {
        broker.reset = reset;
    }
    if let Some((d, span)) = node.duration(ctx, "lame_duck_duration") {
        if d < MIN_LAME_DUCK_DURATION {
            let message = format!(
                "must be at least 30s (nats-server refuses a shorter lame_duck_duration), got {d:?}"
            );
            ctx.report(&span, node.key("lame_duck_duration"), message);
        } else {
            broker.lame_duck_duration = d;
        }
    }
    if let Some((d, _)) = node.duration(ctx, "lame_duck_grace_period") {
        broker.lame_duck_grace_period = d;
    }
    broker
}

/// `url` starts with one of `schemes` and has something after it.
fn has_scheme(url: &str, schemes: &[&str]) -> bool {
    schemes
        .iter()
        .any(|s| url.len() > s.len() && url.starts_with(s))
}

/// Reads `[fleet]`; also returns the span of `fleet.profile` for resolving it later.
fn read_fleet(
    ctx: &mut Ctx<'_>,
    root: &Node<'_, '_>,
) -> (FleetPlan, Option<std::ops::Range<usize>>) {
    let mut fleet = FleetPlan {
        agents: 0,
        groups: 4,
        profile: "kanade".to_string(),
        catalog_entries: 20,
        connect_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(10),
        setup_retries: 3,
        reconnect: Backoff::AsyncNatsDefault,
        splay: None,
        proxy: ProxyMode::Off,
        read_buffer_capacity: DEFAULT_READ_BUFFER_CAPACITY,
        exec_ack_wait: None,
    };
    let required = "required: the number of agents, a positive whole number";
    let Some(node) = root.table(ctx, "fleet", "a table ([fleet])") else {
        if root.get("fleet").is_none() {
            ctx.report(&root.span, "fleet.agents", required);
        }
        return (fleet, None);
    };
    node.check_keys(ctx, &FLEET_KEYS);
    let usize_max = usize::MAX as i128;
    match node.whole(ctx, "agents", POSITIVE, 1, usize_max) {
        Some((n, _)) => fleet.agents = n as usize,
        None if node.get("agents").is_none() => node.missing(ctx, "agents", None, required),
        None => {}
    }
    if let Some((n, _)) = node.whole(ctx, "groups", POSITIVE, 1, usize_max) {
        fleet.groups = n as usize;
    }
    let mut profile_span = None;
    if let Some((name, span)) = node.string(ctx, "profile") {
        fleet.profile = name.to_string();
        profile_span = Some(span);
    }
    if let Some((n, _)) = node.whole(ctx, "catalog_entries", NON_NEGATIVE, 0, usize_max) {
        fleet.catalog_entries = n as usize;
    }
    if let Some(d) = node.positive_duration(ctx, "connect_timeout", "") {
        fleet.connect_timeout = d;
    }
    if let Some(d) = node.positive_duration(ctx, "request_timeout", "") {
        fleet.request_timeout = d;
    }
    if let Some(d) = node.positive_duration(
        ctx,
        "exec_ack_wait",
        " (leave it out for the server's default, 30s)",
    ) {
        fleet.exec_ack_wait = Some(d);
    }
    if let Some((n, _)) = node.whole(ctx, "setup_retries", NON_NEGATIVE, 0, u32::MAX.into()) {
        fleet.setup_retries = n as u32;
    }
    fleet.reconnect = read_backoff(ctx, &node);
    fleet.splay = read_splay(ctx, &node);
    if let Some(proxy) = read_proxy(ctx, &node) {
        fleet.proxy = proxy;
    }
    let bytes = "a whole number of bytes from 512 to 65535 (async-nats' default)";
    if let Some((n, _)) = node.whole(ctx, "read_buffer_capacity", bytes, 512, 65535) {
        fleet.read_buffer_capacity = n as u16;
    }
    (fleet, profile_span)
}

/// `proxy`: `false`, `true` (the proxy inside fleetsim's process, as before there was a
/// choice), or a string naming where the proxy runs.
fn read_proxy(ctx: &mut Ctx<'_>, node: &Node<'_, '_>) -> Option<ProxyMode> {
    let value = node.get("proxy")?;
    let mode = match value.get_ref() {
        DeValue::Boolean(false) => Some(ProxyMode::Off),
        DeValue::Boolean(true) => Some(ProxyMode::InProcess),
        DeValue::String(s) if s == "in_process" => Some(ProxyMode::InProcess),
        DeValue::String(s) if s == "process" => Some(ProxyMode::Process),
        _ => None,
    };
    if mode.is_none() {
        let message = format!(
            "expected true (the proxy inside fleetsim's process, also \"in_process\"), \
             \"process\" (the proxy as its own process, for bigger fleets) or false, got {}",
            walk::describe(value.get_ref())
        );
        ctx.report(&value.span(), node.key("proxy"), message);
    }
    mode
}

/// `reconnect_base`, `reconnect_cap`, `reconnect_jitter`: none written is async-nats'
/// own backoff; any written is an exponential one with defaults for the others.
fn read_backoff(ctx: &mut Ctx<'_>, node: &Node<'_, '_>) -> Backoff {
    let keys = ["reconnect_base", "reconnect_cap", "reconnect_jitter"];
    if keys.iter().all(|k| node.get(k).is_none()) {
        return Backoff::AsyncNatsDefault;
    }
    // `None` when the written base is wrong: the cap is then not compared with it.
    let base = match node.get("reconnect_base") {
        None => Some(DEFAULT_RECONNECT_BASE),
        Some(_) => node.positive_duration(ctx, "reconnect_base", ""),
    };
    let mut cap = DEFAULT_RECONNECT_CAP.max(base.unwrap_or(DEFAULT_RECONNECT_BASE));
    if let Some((d, span)) = node.duration(ctx, "reconnect_cap") {
        match base {
            Some(base) if d < base => {
                let message = format!(
                    "must be at least reconnect_base ({base:?}): the cap is the longest wait, got {d:?}"
                );
                ctx.report(&span, node.key("reconnect_cap"), message);
            }
            _ => cap = d,
        }
    }
    let what = "a fraction in [0, 1), e.g. 0.25 for ±25 %";
    let jitter = node
        .number(ctx, "reconnect_jitter", what)
        .and_then(|(j, span)| {
            if (0.0..1.0).contains(&j) {
                Some(j.abs())
            } else {
                let message = format!("must be {what}, got {j}");
                ctx.report(&span, node.key("reconnect_jitter"), message);
                None
            }
        })
        .unwrap_or(0.0);
    Backoff::Exponential {
        base: base.unwrap_or(DEFAULT_RECONNECT_BASE),
        cap,
        jitter,
    }
}

/// `splay` and the keys that only apply with it: `splay_placement`, `splay_on_start`.
fn read_splay(ctx: &mut Ctx<'_>, node: &Node<'_, '_>) -> Option<Splay> {
    // `off`: no splay written, or "0s". A wrong value is neither (and already a problem).
    let (window, off) = match node.duration(ctx, "splay") {
        Some((d, span)) if d > MAX_SPLAY => {
            let message = format!(
                "must be at most 5m, got {d:?}; the splay spreads a fleet's re-sync over a few seconds (\"0s\" is off)"
            );
            ctx.report(&span, node.key("splay"), message);
            (None, false)
        }
        Some((d, _)) if d.is_zero() => (None, true),
        Some((d, _)) => (Some(d), false),
        None => (None, node.get("splay").is_none()),
    };
    let placement = match node.string(ctx, "splay_placement") {
        None => Some(SplayPlacement::BeforeGets),
        Some((name, span)) => {
            let placement = match name {
                "before_gets" => Some(SplayPlacement::BeforeGets),
                "reopen_watches" => Some(SplayPlacement::ReopenWatches),
                "reconnect_delay" => Some(SplayPlacement::ReconnectDelay),
                _ => None,
            };
            if placement.is_none() {
                let message =
                    format!("unknown splay_placement {name:?}; use one of {SPLAY_PLACEMENTS}");
                ctx.report(&span, node.key("splay_placement"), message);
            }
            placement
        }
    };
    let on_start = node.boolean(ctx, "splay_on_start");
    if off {
        for key in ["splay_placement", "splay_on_start"] {
            if node.get(key).is_some() {
                let message = format!("{key} only applies with splay > 0 (e.g. splay = \"5s\")");
                node.report_at(ctx, key, message);
            }
        }
    }
    Some(Splay {
        window: window?,
        placement: placement?,
        on_start: on_start.unwrap_or(false),
    })
}

/// The profile `fleet.profile` names: a built-in or one of the file's `[profiles]`.
fn resolve_profile(
    ctx: &mut Ctx<'_>,
    name: &str,
    span: Option<std::ops::Range<usize>>,
    custom: &std::collections::BTreeMap<String, Profile>,
) -> Profile {
    let empty = Profile {
        name: name.to_string(),
        consumers: Vec::new(),
        sync: Vec::new(),
    };
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
    let message = if custom.is_empty() {
        format!("unknown profile {name:?}; use kanade or legacy, or define [profiles.{name}]")
    } else {
        let names: Vec<&str> = custom.keys().map(String::as_str).collect();
        format!(
            "unknown profile {name:?}; use kanade, legacy, or one of this file's [profiles]: {}",
            names.join(", ")
        )
    };
    ctx.report(&span, "fleet.profile", message);
    empty
}
