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
pub const LATENCY_METRICS: [&str; 10] = [
    "connect",
    "connect_attempt_at",
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
pub const WRITES_FIELDS: [&str; 5] = [
    "missed",
    "duplicates",
    "stale_replays",
    "redelivered",
    "unacked",
];
/// Counters of `broker.csv` (their increase over the run) and gauges (their maximum).
pub const BROKER_COUNTERS: [&str; 3] = ["api_errors", "api_total", "slow_consumers"];
pub const BROKER_GAUGES: [&str; 3] = ["connections", "consumers", "api_inflight"];
/// Advisories counted in `timeseries.csv`: `api_limit_reached`, the JetStream API queue
/// overflowing (nats-server dropped queued requests). Measured only where the run
/// listened in the system account (`manifest.json`: `broker.api_limit_reached_counted`).
pub const BROKER_ADVISORIES: [&str; 1] = ["api_limit_reached"];
pub const AGENTS_FIELDS: [&str; 3] = ["failed", "ready", "unrecovered"];

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
        "unknown metric {metric:?}; use a latency metric ({}, {}), or errors, fanout.<kind>, writes, broker, agents",
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
mod tests {
    use super::*;

    fn known() -> Known {
        Known {
            consumers: vec!["agent_config".to_string(), "jobs".to_string()],
            phases: [
                "0:setup",
                "1:start",
                "2:wait_ready",
                "3:write",
                "4:broker_restart",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    fn parse(text: &str) -> Check {
        parse_check(text, &known()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn problem(text: &str) -> String {
        match parse_check(text, &known()) {
            Ok(c) => panic!("{text} parsed: {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn latency_checks_take_durations_in_ms() {
        let c = parse("ready.p99 < 5s");
        assert_eq!(
            c.source,
            Source::Latency {
                metric: "ready".into(),
                stat: "p99".into()
            }
        );
        assert_eq!((c.op, c.limit, c.phase.as_deref()), (Op::Lt, 5000.0, None));
        assert_eq!(parse("delivery.pc.p50<=250ms").limit, 250.0);
        assert_eq!(parse("fleet.all_ready.max <= 1.5m").limit, 90_000.0);
        assert_eq!(
            parse("consumer_create.jobs[1:start].p999 < 2 s").limit,
            2000.0
        );
        assert_eq!(parse("ready.count >= 300").unit(), Unit::Count);
        let c = parse("consumer_create.jobs[start].max < 1h");
        assert_eq!(c.phase.as_deref(), Some("start"));
        assert_eq!(c.limit, 3_600_000.0);
    }

    #[test]
    fn recovery_percentiles_come_from_recovery_csv_and_the_rest_from_summary() {
        assert_eq!(
            parse("recovery.p100 < 30s").source,
            Source::Recovery { pct: 100 }
        );
        assert_eq!(
            parse("recovery[4].p99 < 30s").source,
            Source::Recovery { pct: 99 }
        );
        assert_eq!(
            parse("recovery.max < 30s").source,
            Source::Latency {
                metric: "recovery".into(),
                stat: "max".into()
            }
        );
    }

    #[test]
    fn counts_ratios_and_families() {
        assert_eq!(
            parse("errors.total == 0").source,
            Source::Errors {
                kind: "total".into(),
                code: None
            }
        );
        assert_eq!(
            parse("errors[broker_restart].jetstream_10026 == 0").source,
            Source::Errors {
                kind: "jetstream".into(),
                code: Some(10026)
            }
        );
        let c = parse("fanout.pc.ratio <= 100%");
        assert_eq!((c.unit(), c.limit), (Unit::Ratio, 1.0));
        assert_eq!(parse("fanout.jobs.intended >= 0.99").limit, 0.99);
        assert_eq!(parse("fanout.pc.unintended == 0").unit(), Unit::Count);
        assert_eq!(parse("writes.missed == 0").op, Op::Eq);
        assert_eq!(parse("broker.api_errors != 5").op, Op::Ne);
        assert_eq!(
            parse("broker[1:start].api_errors == 0").phase.as_deref(),
            Some("1:start")
        );
        assert_eq!(parse("agents.failed > 0").op, Op::Gt);
    }

    #[test]
    fn malformed_checks_say_what_is_wrong() {
        let cases = [
            ("ready.p99 5s", "no comparison"),
            ("ready.p99 = 5s", "no comparison"),
            ("ready < 5s", "names no stat"),
            ("< 5s", "nothing before"),
            ("ready.p99 <", "no limit"),
            ("ready.p99 < 5", "give the limit a unit"),
            ("ready.p99 < 5 parsecs", "unknown unit"),
            ("ready.p99 < -5s", "bad limit"),
            ("ready.p99 < fast", "bad limit"),
            ("ready.p98 < 5s", "unknown stat \"p98\""),
            ("ready.p100 < 5s", "p100 is recovery's only"),
            ("raedy.p99 < 5s", "unknown metric \"raedy\""),
            (
                "consumer_create.nope.p99 < 5s",
                "consumer of the fleet's profile: agent_config, jobs",
            ),
            ("delivery.nope.p99 < 5s", "a write kind"),
            ("errors.total == 0s", "is a count"),
            ("errors.timeouts == 0", "unknown errors field"),
            ("errors.jetstream_x == 0", "error code"),
            ("fanout.nope.ratio <= 1", "unknown write kind"),
            ("fanout.pc.ratio <= 1s", "is a ratio"),
            ("fanout.pc.rate <= 1", "unknown fanout field"),
            ("writes.lost == 0", "unknown writes field"),
            ("broker.cpu < 5", "unknown broker field"),
            ("agents[1].failed == 0", "drop [1]"),
            ("ready[9].p99 < 5s", "no phase \"9\""),
            ("ready[].p99 < 5s", "empty []"),
            ("ready[1.p99 < 5s", "unclosed ["),
            ("ready[1]p99 < 5s", "expected .<stat>"),
            ("ready:1.p99 < 5s", "in brackets"),
            ("ready.p99 (x) < 5s", "unexpected ' '"),
        ];
        for (text, expected) in cases {
            let e = problem(text);
            assert!(e.contains(expected), "{text}: {e}");
        }
    }

    #[test]
    fn operators_compare_with_a_tolerance_for_decimal_text() {
        assert!(Op::Lt.holds(4.999, 5.0));
        assert!(!Op::Lt.holds(5.0, 5.0));
        assert!(Op::Le.holds(5.0, 5.0));
        assert!(Op::Eq.holds(0.1 + 0.2, 0.3));
        assert!(Op::Ne.holds(1.0, 0.0));
        assert!(Op::Ge.holds(1.0, 1.0));
        assert!(!Op::Gt.holds(1.0, 1.0));
        assert!(!Op::Lt.holds(f64::INFINITY, 30_000.0));
    }

    #[test]
    fn phase_selectors() {
        assert!(phase_matches("4:broker_restart", "4:broker_restart"));
        assert!(phase_matches("4", "4:broker_restart"));
        assert!(phase_matches("broker_restart", "4:broker_restart"));
        assert!(!phase_matches("broker", "4:broker_restart"));
        assert!(!phase_matches("14", "4:broker_restart"));
    }

    #[test]
    fn percentages() {
        assert_eq!(parse_percent("10%"), Ok(0.1));
        assert_eq!(parse_percent(" 25.5 % "), Ok(0.255));
        assert!(parse_percent("10").is_err());
        assert!(parse_percent("-5%").is_err());
    }
}
