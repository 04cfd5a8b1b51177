//! The threshold grammar: `<metric>[<phase>].<stat> <op> <limit>`, checked against what a
//! scenario can measure.
//!
//! ```text
//! check    = path op limit
//! path     = metric [ "[" phase "]" ] "." stat
//! op       = "<" | "<=" | ">" | ">=" | "==" | "!="
//! limit    = number [ unit ]        unit: ms s m h (latencies), % (ratios)
//! ```
//!
//! Without `[phase]` the path is split at its last dot (`delivery.pc.p99` is metric
//! `delivery.pc`, stat `p99`). Which stats a metric has, and which unit its limit takes,
//! depend on its family (see [`Source`]); everything is checked here, before a run starts,
//! so a typo fails `fleetsim validate` instead of a CI job an hour later.

use serde::Serialize;

use crate::writes::KINDS as WRITE_KINDS;

/// Latency metrics every run may record, by exact name (`summary.csv`'s `metric` column).
/// A metric added to the fleet must be added here to be usable in a threshold.
pub const LATENCY_METRICS: [&str; 12] = [
    "connect",
    "connect_attempt_at",
    "fire_skew",
    "fire_skew_early",
    "kv_bind",
    "sync",
    "ready",
    "fleet.all_ready",
    "reconnect",
    "resync",
    "resync_after_splay",
    "recovery",
];
/// Latency metric families: `consumer_create.<consumer of the profile>`,
/// `delivery.<write kind>`, `write_ack.<write kind>`.
pub const LATENCY_FAMILIES: [&str; 3] = ["consumer_create", "delivery", "write_ack"];
/// Stats of a latency metric (`summary.csv` columns).
pub const LATENCY_STATS: [&str; 8] = ["count", "min", "p50", "p90", "p99", "p999", "max", "mean"];
/// Stats of `recovery` read from `recovery.csv`: the time until that share of the agents
/// expected to recover had recovered (never reached: the check fails).
pub const RECOVERY_STATS: [&str; 4] = ["p50", "p90", "p99", "p100"];
/// Error kinds of `errors.csv`, plus `total` and `jetstream_<code>`.
pub const ERROR_FIELDS: [&str; 6] = [
    "total",
    "timeout",
    "no_responders",
    "jetstream",
    "connection_refused",
    "other",
];
pub const FANOUT_FIELDS: [&str; 3] = ["ratio", "intended", "unintended"];
pub const WRITES_FIELDS: [&str; 7] = [
    "missed",
    "superseded",
    "duplicates",
    "stale_replays",
    "redelivered",
    "unacked",
    "retries",
];
/// Counters of `broker.csv` (their increase over the run) and gauges (their maximum).
pub const BROKER_COUNTERS: [&str; 3] = ["api_errors", "api_total", "slow_consumers"];
pub const BROKER_GAUGES: [&str; 5] = [
    "connections",
    "consumers",
    "api_inflight",
    "stale_connections",
    "double_held_consumers",
];
/// Advisories counted in `timeseries.csv`: `api_limit_reached`, the JetStream API queue
/// overflowing (nats-server dropped queued requests). Measured only where the run
/// listened in the system account (`manifest.json`: `broker.api_limit_reached_counted`).
pub const BROKER_ADVISORIES: [&str; 1] = ["api_limit_reached"];
pub const AGENTS_FIELDS: [&str; 3] = ["failed", "ready", "unrecovered"];
/// Figures of `counts.csv` by exact name; `api.<request kind>_per_agent` (any kind the
/// audit records, `api.consumer_create_per_agent`) and `deliveries.<write
/// kind>_per_write` are families.
pub const COUNT_FIGURES: [&str; 12] = [
    "consumers.long_lived_per_agent",
    "consumers.transient_per_agent",
    "consumers.created_per_agent",
    "consumers.walks_per_agent",
    "msgs.in_per_agent",
    "msgs.out_per_agent",
    "bytes.in_per_agent",
    "bytes.out_per_agent",
    "reconnects_per_agent",
    "broker.cpu_ms_per_agent",
    "fleetsim.cpu_ms_per_agent",
    "api.rate_per_sec",
];
/// The phase of `counts.csv` that covers the whole run.
pub const COUNT_RUN_PHASE: &str = crate::results::counts::RUN_PHASE;

/// What a scenario can measure, for checking names: its profile's consumers (every
/// variant's) and its phase labels (`0:setup`, `1:start`, ...).
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub consumers: Vec<String>,
    pub phases: Vec<String>,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    /// `value <op> limit`; equality within a millionth (values come from decimal text).
    pub fn holds(self, value: f64, limit: f64) -> bool {
        let equal = (value - limit).abs() <= 1e-6 * limit.abs().max(1.0);
        match self {
            Op::Lt => value < limit && !equal,
            Op::Le => value <= limit || equal,
            Op::Gt => value > limit && !equal,
            Op::Ge => value >= limit || equal,
            Op::Eq => equal,
            Op::Ne => !equal,
        }
    }
}

/// The unit of a value and its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Milliseconds (limits are written with a duration unit).
    Ms,
    /// A plain count.
    Count,
    /// A plain ratio (`1`, or `100%`).
    Ratio,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::Count => "count",
            Unit::Ratio => "ratio",
        }
    }

    /// A value for people: `491.0 ms`, `9.27 s`, `12`, `1.000`.
    pub fn show(self, value: f64) -> String {
        match self {
            Unit::Ms if value.is_infinite() => "never".to_string(),
            Unit::Ms if value >= 1000.0 => format!("{:.2} s", value / 1000.0),
            Unit::Ms => format!("{value:.1} ms"),
            Unit::Count => format!("{value}"),
            Unit::Ratio => format!("{value:.3}"),
        }
    }

    /// A value for files: ms and ratios with 3 decimals, counts as they are.
    pub fn cell(self, value: f64) -> String {
        match self {
            Unit::Ms | Unit::Ratio => format!("{value:.3}"),
            Unit::Count => format!("{value}"),
        }
    }
}

/// Where a check's value comes from in a run directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum Source {
    /// A `summary.csv` stat of a latency metric; one value per phase.
    Latency { metric: String, stat: String },
    /// `recovery.csv`'s `recovered_<pct>_secs`; one value per herd step.
    Recovery { pct: u32 },
    /// `errors.csv` counts summed: all (`total`), one kind, or `jetstream` with a code.
    Errors { kind: String, code: Option<u64> },
    /// `writes.csv` rows of one write kind: `fanout_total` (`ratio`), `fanout_intended`
    /// (`intended`) per step, or `unintended` summed.
    Fanout { kind: String, field: String },
    /// `writes.csv` reconciliation totals (`unacked` is writes - acked), summed.
    Writes { field: String },
    /// `broker.csv`: a counter's increase (restarts detected when it goes down), or a
    /// gauge's maximum.
    Broker { field: String },
    /// `agents.csv` states counted (`failed`, `ready`), or `recovery.csv`'s
    /// `not_recovered` summed (`unrecovered`).
    Agents { field: String },
    /// A figure of `counts.csv` (`api.consumer_create_per_agent`): one value per phase,
    /// or the whole run's (`run`).
    Count { figure: String },
}

impl Source {
    pub fn unit(&self) -> Unit {
        match self {
            Source::Latency { stat, .. } if stat == "count" => Unit::Count,
            Source::Latency { .. } | Source::Recovery { .. } => Unit::Ms,
            Source::Fanout { field, .. } if field != "unintended" => Unit::Ratio,
            _ => Unit::Count,
        }
    }
}

/// One threshold, parsed and checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// As written in the scenario.
    pub text: String,
    /// 1-based line in the scenario file (0 when not from a file).
    pub line: usize,
    pub source: Source,
    /// `[phase]`: a phase label (`4:broker_restart`), a step index (`4`) or a step kind
    /// (`broker_restart`, every step of that kind).
    pub phase: Option<String>,
    pub op: Op,
    /// In the unit of [`Source::unit`] (ms for latencies, a fraction for `%`).
    pub limit: f64,
}

impl Check {
    pub fn unit(&self) -> Unit {
        self.source.unit()
    }

    /// The limit for people: `5.00 s`, `0`, `1.000`.
    pub fn limit_shown(&self) -> String {
        self.unit().show(self.limit)
    }
}

/// Does `label` (`4:broker_restart`) belong to the selector (`4:broker_restart`, `4`,
/// `broker_restart`)?
pub fn phase_matches(selector: &str, label: &str) -> bool {
    if selector == label {
        return true;
    }
    match label.split_once(':') {
        Some((index, kind)) => selector == index || selector == kind,
        None => false,
    }
}

/// Parses one check and checks its names against `known`; the error is one message
/// that says what is wrong and what would be right.
pub fn parse_check(text: &str, known: &Known) -> Result<Check, String> {
    let example = "write <metric>.<stat> <op> <limit>, e.g. \"ready.p99 < 5s\"";
    let trimmed = text.trim();
    let (at, op, op_len) = find_op(trimmed)
        .ok_or_else(|| format!("no comparison (<, <=, >, >=, ==, !=) in {text:?}; {example}"))?;
    let path = trimmed[..at].trim();
    let limit_text = trimmed[at + op_len..].trim();
    if path.is_empty() {
        return Err(format!(
            "nothing before {:?} in {text:?}; {example}",
            op.symbol()
        ));
    }
    if limit_text.is_empty() {
        return Err(format!(
            "no limit after {:?} in {text:?}; {example}",
            op.symbol()
        ));
    }
    let (metric, phase, stat) = split_path(path, example)?;
    let source = resolve(metric, stat, known)?;
    if let Some(phase) = &phase {
        check_phase(phase, &source, known)?;
    }
    let limit = parse_limit(limit_text, &source, path)?;
    Ok(Check {
        text: trimmed.to_string(),
        line: 0,
        source,
        phase,
        op,
        limit,
    })
}

/// Parses a figure of `fleetsim gate` (`[gate] figures`): a threshold's left-hand side
/// that names a latency's p50 or p99 (`ready[3:start].p50`) or a `counts.csv` figure
/// (`count[1:start].broker.cpu_ms_per_agent`), checked against `known`. Returns the
/// source and the phase selector, if any.
pub fn parse_figure(text: &str, known: &Known) -> Result<(Source, Option<String>), String> {
    let example = "e.g. \"ready[3:start].p50\" or \"count[1:start].broker.cpu_ms_per_agent\"";
    let (metric, phase, stat) = split_path(text.trim(), example)?;
    let source = match resolve(metric, stat, known)? {
        // `recovery.p50` in a threshold reads recovery.csv's recovered_50_secs; the gate
        // compares the `recovery` latency histograms instead (their bootstrap interval).
        Source::Recovery { pct } if pct == 50 || pct == 99 => Source::Latency {
            metric: "recovery".to_string(),
            stat: format!("p{pct}"),
        },
        source => source,
    };
    match &source {
        Source::Latency { stat, .. } if !matches!(stat.as_str(), "p50" | "p99") => {
            return Err(format!(
                "the gate compares a latency's p50 or p99 (their intervals come from the A/B \
                 bootstrap), not {stat:?}; {example}"
            ));
        }
        Source::Latency { .. } | Source::Count { .. } => {}
        _ => {
            return Err(format!(
                "the gate compares latencies (p50, p99) and counts.csv figures, not {text:?}; \
                 {example}; keep limits on the rest in [thresholds] checks"
            ));
        }
    }
    if let Some(phase) = &phase {
        check_phase(phase, &source, known)?;
    }
    Ok((source, phase))
}

/// The first operator in `text`: (byte offset, op, its length).
fn find_op(text: &str) -> Option<(usize, Op, usize)> {
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let next = bytes.get(i + 1).copied();
        let found = match (b, next) {
            (b'<', Some(b'=')) => Some((Op::Le, 2)),
            (b'>', Some(b'=')) => Some((Op::Ge, 2)),
            (b'=', Some(b'=')) => Some((Op::Eq, 2)),
            (b'!', Some(b'=')) => Some((Op::Ne, 2)),
            (b'<', _) => Some((Op::Lt, 1)),
            (b'>', _) => Some((Op::Gt, 1)),
            (b'=', _) => return None,
            _ => None,
        };
        if let Some((op, len)) = found {
            return Some((i, op, len));
        }
    }
    None
}

/// `metric[phase].stat` or `metric.stat` into its parts.
fn split_path<'t>(
    path: &'t str,
    example: &str,
) -> Result<(&'t str, Option<String>, &'t str), String> {
    let bad_char = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']' | ':')));
    if let Some(c) = bad_char {
        return Err(format!("unexpected {c:?} in {path:?}; {example}"));
    }
    if let Some(count) = split_count_path(path)? {
        return Ok(count);
    }
    if let Some(open) = path.find('[') {
        let close = path[open..]
            .find(']')
            .map(|c| open + c)
            .ok_or_else(|| format!("unclosed [ in {path:?}; write metric[phase].stat, e.g. \"recovery[4:broker_restart].p100\""))?;
        let metric = &path[..open];
        let phase = &path[open + 1..close];
        let rest = &path[close + 1..];
        let Some(stat) = rest
            .strip_prefix('.')
            .filter(|s| !s.is_empty() && !s.contains(['.', '[', ']']))
        else {
            return Err(format!(
                "expected .<stat> after [{phase}] in {path:?}, e.g. \"recovery[4:broker_restart].p100\""
            ));
        };
        if phase.is_empty() {
            return Err(format!(
                "empty [] in {path:?}: name a phase (4:broker_restart), a step index (4) or a step kind (broker_restart)"
            ));
        }
        if metric.is_empty() || metric.contains(['[', ']']) {
            return Err(format!("no metric before [ in {path:?}; {example}"));
        }
        return Ok((metric, Some(phase.to_string()), stat));
    }
    if path.contains(']') {
        return Err(format!("] without [ in {path:?}"));
    }
    if path.contains(':') {
        return Err(format!(
            "a phase goes in brackets before the stat: metric[phase].stat, e.g. \"ready[1:start].p99\"; got {path:?}"
        ));
    }
    match path.rsplit_once('.') {
        Some((metric, stat)) if !metric.is_empty() && !stat.is_empty() => Ok((metric, None, stat)),
        _ => Err(format!("{path:?} names no stat; {example}")),
    }
}

/// A path's metric, phase and stat.
type PathParts<'t> = (&'t str, Option<String>, &'t str);

/// `count[phase].<figure>` or `count.<figure>`, whose figure has dots of its own
/// (`count[3:broker_restart].api.consumer_create_per_agent`); `None` for another metric.
fn split_count_path(path: &str) -> Result<Option<PathParts<'_>>, String> {
    let example = "e.g. \"count[3:broker_restart].api.consumer_create_per_agent <= 7\"";
    let Some(rest) = path.strip_prefix("count") else {
        return Ok(None);
    };
    let (phase, rest) = match rest.strip_prefix('[') {
        Some(inner) => {
            let close = inner
                .find(']')
                .ok_or_else(|| format!("unclosed [ in {path:?}; {example}"))?;
            let phase = &inner[..close];
            if phase.is_empty() {
                return Err(format!(
                    "empty [] in {path:?}: name a phase (3:broker_restart), a step index, a step kind or run"
                ));
            }
            (Some(phase.to_string()), &inner[close + 1..])
        }
        None => (None, rest),
    };
    let Some(figure) = rest.strip_prefix('.') else {
        if phase.is_some() || rest.is_empty() {
            return Err(format!(
                "expected .<figure> after count in {path:?}; {example}"
            ));
        }
        // `counts.x`, `counter.x`: not this family; resolve() says what is known.
        return Ok(None);
    };
    if figure.is_empty() || figure.contains(['[', ']', ':']) {
        return Err(format!(
            "expected .<figure> after count in {path:?}; {example}"
        ));
    }
    Ok(Some(("count", phase, figure)))
}

/// A figure `counts.csv` can hold: one of [`COUNT_FIGURES`], `api.<kind>_per_agent`
/// or `deliveries.<write kind>_per_write`.
fn check_count_figure(figure: &str) -> Result<(), String> {
    if COUNT_FIGURES.contains(&figure) {
        return Ok(());
    }
    let word = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    if let Some(kind) = figure
        .strip_prefix("api.")
        .and_then(|f| f.strip_suffix("_per_agent"))
        && word(kind)
    {
        return Ok(());
    }
    if let Some(kind) = figure
        .strip_prefix("deliveries.")
        .and_then(|f| f.strip_suffix("_per_write"))
    {
        if WRITE_KINDS.contains(&kind) {
            return Ok(());
        }
        return Err(format!(
            "unknown write kind {kind:?} in count.{figure}; use one of {}",
            WRITE_KINDS.join(", ")
        ));
    }
    Err(format!(
        "unknown count {figure:?}; use one of {}, api.<request kind>_per_agent (api.total_per_agent, api.consumer_create_per_agent, api.stream_info_per_agent, ...) or deliveries.<write kind>_per_write",
        COUNT_FIGURES.join(", ")
    ))
}

/// Which family `metric` belongs to and whether it has `stat`.
fn resolve(metric: &str, stat: &str, known: &Known) -> Result<Source, String> {
    let one_of = |list: &[&str]| list.join(", ");
    let field_of = |family: &str, list: &[&str], extra: &str| -> Result<String, String> {
        if list.contains(&stat) {
            Ok(stat.to_string())
        } else {
            Err(format!(
                "unknown {family} field {stat:?}; use one of {}{extra}",
                one_of(list)
            ))
        }
    };
    match metric {
        "errors" => {
            if let Some(code) = stat.strip_prefix("jetstream_") {
                let code: u64 = code.parse().map_err(|_| {
                    format!("errors.{stat}: jetstream_ takes a JetStream error code, e.g. errors.jetstream_10026")
                })?;
                return Ok(Source::Errors {
                    kind: "jetstream".to_string(),
                    code: Some(code),
                });
            }
            let kind = field_of("errors", &ERROR_FIELDS, ", or jetstream_<code>")?;
            Ok(Source::Errors { kind, code: None })
        }
        "writes" => Ok(Source::Writes {
            field: field_of("writes", &WRITES_FIELDS, "")?,
        }),
        "broker" => {
            let all: Vec<&str> = BROKER_COUNTERS
                .iter()
                .chain(&BROKER_GAUGES)
                .chain(&BROKER_ADVISORIES)
                .copied()
                .collect();
            Ok(Source::Broker {
                field: field_of("broker", &all, "")?,
            })
        }
        "agents" => Ok(Source::Agents {
            field: field_of("agents", &AGENTS_FIELDS, "")?,
        }),
        "count" => {
            check_count_figure(stat)?;
            Ok(Source::Count {
                figure: stat.to_string(),
            })
        }
        _ if metric == "fanout" || metric.starts_with("fanout.") => {
            let kind = metric.strip_prefix("fanout.").unwrap_or("");
            if !WRITE_KINDS.contains(&kind) {
                return Err(format!(
                    "unknown write kind {kind:?} in {metric}.{stat}; write fanout.<kind>.<field> with a kind of {}",
                    one_of(&WRITE_KINDS)
                ));
            }
            Ok(Source::Fanout {
                kind: kind.to_string(),
                field: field_of("fanout", &FANOUT_FIELDS, "")?,
            })
        }
        _ => {
            check_latency_metric(metric, known)?;
            if metric == "recovery" && RECOVERY_STATS.contains(&stat) {
                let pct = stat[1..].parse().expect("p50, p90, p99, p100");
                return Ok(Source::Recovery { pct });
            }
            if stat == "p100" {
                return Err(format!(
                    "{metric}.p100: p100 is recovery's only (time until every agent recovered); use {metric}.max"
                ));
            }
            if !LATENCY_STATS.contains(&stat) {
                let extra = if metric == "recovery" { ", p100" } else { "" };
                return Err(format!(
                    "unknown stat {stat:?} of {metric}; use one of {}{extra}",
                    one_of(&LATENCY_STATS)
                ));
            }
            Ok(Source::Latency {
                metric: metric.to_string(),
                stat: stat.to_string(),
            })
        }
    }
}

/// A latency metric name: one of [`LATENCY_METRICS`], or a family member whose suffix
/// is a consumer of the profile or a write kind.
pub fn check_latency_metric(metric: &str, known: &Known) -> Result<(), String> {
    if LATENCY_METRICS.contains(&metric) {
        return Ok(());
    }
    if let Some((family, name)) = metric.split_once('.')
        && LATENCY_FAMILIES.contains(&family)
    {
        let (allowed, what): (Vec<&str>, &str) = if family == "consumer_create" {
            (
                known.consumers.iter().map(String::as_str).collect(),
                "a consumer of the fleet's profile",
            )
        } else {
            (WRITE_KINDS.to_vec(), "a write kind")
        };
        if allowed.contains(&name) {
            return Ok(());
        }
        return Err(format!(
            "unknown metric {metric:?}: {family}.<name> takes {what}: {}",
            allowed.join(", ")
        ));
    }
    Err(format!(
        "unknown metric {metric:?}; use a latency metric ({}, {}), or errors, fanout.<kind>, writes, broker, agents, count",
        LATENCY_METRICS.join(", "),
        LATENCY_FAMILIES.map(|f| format!("{f}.<name>")).join(", ")
    ))
}

fn check_phase(phase: &str, source: &Source, known: &Known) -> Result<(), String> {
    if matches!(source, Source::Agents { .. }) {
        return Err(format!("agents.* counts the whole run; drop [{phase}]"));
    }
    if known.phases.iter().any(|label| phase_matches(phase, label)) {
        return Ok(());
    }
    if matches!(source, Source::Count { .. }) && phase == COUNT_RUN_PHASE {
        return Ok(());
    }
    Err(format!(
        "no phase {phase:?} in this scenario; use a label ({}), a step index or a step kind",
        known.phases.join(", ")
    ))
}

/// The limit in the source's unit: a duration for latencies, a plain number for counts,
/// a number or percentage for ratios.
fn parse_limit(text: &str, source: &Source, path: &str) -> Result<f64, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim());
    let valid_number = !number.is_empty()
        && !number.starts_with('.')
        && !number.ends_with('.')
        && number.matches('.').count() <= 1;
    let value: f64 = match number.parse() {
        Ok(v) if valid_number => v,
        _ => {
            return Err(format!(
                "bad limit {text:?}: use a non-negative number, with a unit for latencies (500ms, 5s, 2m)"
            ));
        }
    };
    match (source.unit(), unit) {
        (Unit::Ms, "ms") => Ok(value),
        (Unit::Ms, "s") => Ok(value * 1000.0),
        (Unit::Ms, "m") => Ok(value * 60_000.0),
        (Unit::Ms, "h") => Ok(value * 3_600_000.0),
        (Unit::Ms, "") => Err(format!(
            "{path} is a latency: give the limit a unit, e.g. {number}ms or {number}s"
        )),
        (Unit::Ms, other) => Err(format!(
            "unknown unit {other:?} in {text:?}; a latency takes ms, s, m or h"
        )),
        (Unit::Count, "") | (Unit::Ratio, "") => Ok(value),
        (Unit::Ratio, "%") => Ok(value / 100.0),
        (Unit::Count, _) => Err(format!(
            "{path} is a count: write a plain number, got {text:?}"
        )),
        (Unit::Ratio, _) => Err(format!(
            "{path} is a ratio: write a plain number (1) or a percentage (100%), got {text:?}"
        )),
    }
}

/// `"10%"` as 0.1; used for `fleetsim compare` tolerances.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let bad = || format!("bad percentage {text:?}; write a number and %, e.g. \"10%\"");
    let number = text.trim().strip_suffix('%').ok_or_else(bad)?.trim();
    let value: f64 = number.parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 || number.starts_with(['+', '-']) {
        return Err(bad());
    }
    Ok(value / 100.0)
}

#[cfg(test)]
mod tests;
