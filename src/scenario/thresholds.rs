//! `[thresholds]`: the checks evaluated at the end of a run, and the settings of
//! `fleetsim compare`; and a `[[variants]]` table's own `thresholds = [...]`.
//!
//! Each check string is parsed and checked against what this scenario can measure (its
//! profiles' consumers, its steps), and a bad one is reported at its own line.

use toml::de::DeValue;

use super::walk::{Ctx, Node, describe};
use crate::plan::Plan;
use crate::thresholds::{
    BaselineSettings, Check, Known, Thresholds, check_latency_metric, parse_check, parse_percent,
};

const THRESHOLD_KEYS: [&str; 5] = ["checks", "tolerance", "tolerances", "floor", "compare"];
const COMPARED_STATS: [&str; 2] = ["p50", "p99"];

/// What the checks of `plan` and its variants may name: the consumers of every profile
/// the file runs, and the phases of its steps.
pub(super) fn known(plan: &Plan) -> Known {
    let mut consumers: Vec<String> = Vec::new();
    let profiles =
        std::iter::once(&plan.profile).chain(plan.variants.iter().map(|v| &v.plan.profile));
    for profile in profiles {
        for c in &profile.consumers {
            if !consumers.contains(&c.name) {
                consumers.push(c.name.clone());
            }
        }
    }
    Known {
        consumers,
        phases: phases(plan),
    }
}

/// `0:setup` and one label per step.
pub(super) fn phases(plan: &Plan) -> Vec<String> {
    std::iter::once("0:setup".to_string())
        .chain(plan.steps.iter().map(|s| s.label()))
        .collect()
}

/// Reads `[thresholds]`.
pub(super) fn read_thresholds(ctx: &mut Ctx<'_>, root: &Node<'_, '_>, known: &Known) -> Thresholds {
    let mut thresholds = Thresholds::default();
    let Some(node) = root.table(ctx, "thresholds", "a table ([thresholds])") else {
        return thresholds;
    };
    for (key, _) in node.table.iter() {
        let name: &str = key.get_ref();
        if !THRESHOLD_KEYS.contains(&name) {
            let message = format!(
                "unknown key; allowed: {}. Checks go in one list: checks = [\"{name}.p99 < 5s\"]",
                THRESHOLD_KEYS.join(", ")
            );
            ctx.report(&key.span(), node.key(name), message);
        }
    }
    thresholds.checks = read_checks(ctx, &node, "checks", known);
    thresholds.baseline = read_baseline(ctx, &node, known);
    thresholds
}

/// Reads an array of check strings at `node.key`.
pub(super) fn read_checks(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    key: &str,
    known: &Known,
) -> Vec<Check> {
    let expected = "an array of checks, e.g. [\"ready.p99 < 5s\", \"errors.total == 0\"]";
    let Some((items, _)) = node.array(ctx, key, expected) else {
        return Vec::new();
    };
    let mut checks = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{}]", node.key(key), i + 1);
        let DeValue::String(text) = item.get_ref() else {
            let message = format!(
                "expected a check string such as \"ready.p99 < 5s\", got {}",
                describe(item.get_ref())
            );
            ctx.report(&item.span(), path, message);
            continue;
        };
        match parse_check(text, known) {
            Ok(mut check) => {
                check.line = ctx.line_of(item.span().start);
                checks.push(check);
            }
            Err(message) => ctx.report(&item.span(), path, message),
        }
    }
    checks
}

fn read_baseline(ctx: &mut Ctx<'_>, node: &Node<'_, '_>, known: &Known) -> BaselineSettings {
    let mut settings = BaselineSettings::default();
    if let Some((text, span)) = node.string(ctx, "tolerance") {
        match parse_percent(text) {
            Ok(t) => settings.tolerance = Some(t),
            Err(message) => ctx.report(&span, node.key("tolerance"), message),
        }
    }
    if let Some(table) = node.table(
        ctx,
        "tolerances",
        "a table of metric = \"N%\", e.g. { \"recovery.p99\" = \"25%\" }",
    ) {
        for (key, value) in table.table.iter() {
            let name: &str = key.get_ref();
            let path = table.key(name);
            if let Err(message) = check_pattern(name, known) {
                ctx.report(&key.span(), path.clone(), message);
                continue;
            }
            let parsed = match value.get_ref() {
                DeValue::String(s) => parse_percent(s),
                other => Err(format!(
                    "expected a percentage such as \"25%\", got {}",
                    describe(other)
                )),
            };
            match parsed {
                Ok(t) => settings.tolerances.push((name.to_string(), t)),
                Err(message) => ctx.report(&value.span(), path, message),
            }
        }
    }
    if let Some((d, _)) = node.duration(ctx, "floor") {
        settings.floor_ms = Some(d.as_secs_f64() * 1000.0);
    }
    let expected =
        "an array of metric names, e.g. [\"ready\", \"recovery\", \"consumer_create.*\"]";
    if let Some((items, _)) = node.array(ctx, "compare", expected) {
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{}]", node.key("compare"), i + 1);
            match item.get_ref() {
                DeValue::String(name) => match check_pattern(name, known) {
                    Ok(()) => settings.metrics.push(name.to_string()),
                    Err(message) => ctx.report(&item.span(), path, message),
                },
                other => ctx.report(
                    &item.span(),
                    path,
                    format!("expected a metric name, got {}", describe(other)),
                ),
            }
        }
    }
    settings
}

/// A `tolerances` key or `compare` entry: a latency metric, `metric.p50`/`metric.p99`, or
/// a family with `.*` (`consumer_create.*`).
fn check_pattern(pattern: &str, known: &Known) -> Result<(), String> {
    if let Some(family) = pattern.strip_suffix(".*") {
        return if ["consumer_create", "delivery", "write_ack"].contains(&family) {
            Ok(())
        } else {
            Err(format!(
                "{pattern:?}: .* covers a metric family: consumer_create.*, delivery.* or write_ack.*"
            ))
        };
    }
    if check_latency_metric(pattern, known).is_ok() {
        return Ok(());
    }
    if let Some((metric, stat)) = pattern.rsplit_once('.')
        && COMPARED_STATS.contains(&stat)
    {
        return check_latency_metric(metric, known);
    }
    check_latency_metric(pattern, known).map_err(|e| {
        format!("{e} (fleetsim compare compares the p50 and p99 of summary.csv's metrics)")
    })
}
