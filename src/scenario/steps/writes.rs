//! The kinds that put messages on the broker: `write` (KV writes, reconciled against
//! deliveries), `exec` (EXEC commands) and `drop_consumer` (one agent's consumer stops).

use std::ops::Range;
use std::time::Duration;

use super::Setup;
use crate::plan::{ExecTarget, KeyTemplate, StepAction, WriteLoad, WriteRetry, WriteTarget};
use crate::scenario::profile::template;
use crate::scenario::walk::{Ctx, Node, Value, describe, join, names};

const WRITE_TARGETS: [(&str, WriteTarget); 9] = [
    ("pc", WriteTarget::Pc),
    ("pc_each", WriteTarget::PcEach),
    ("pcs", WriteTarget::Pcs { agents: Vec::new() }),
    ("group", WriteTarget::Group),
    ("global", WriteTarget::Global),
    ("jobs", WriteTarget::Jobs),
    ("schedules", WriteTarget::Schedules),
    ("freeze", WriteTarget::Freeze),
    (
        "key",
        WriteTarget::Key {
            bucket: String::new(),
            key: KeyTemplate(String::new()),
        },
    ),
];
const EXEC_TARGETS: [(&str, ExecTarget); 3] = [
    ("pc", ExecTarget::Pc),
    ("group", ExecTarget::Group),
    ("all", ExecTarget::All),
];
/// Writes (or commands) per second of a `write` or `exec` step.
const DEFAULT_WRITE_RATE: f64 = 10.0;
/// Writes of a `write` or `exec` step that gives neither `count` nor `duration`.
const DEFAULT_WRITE_COUNT: u64 = 10;
const DEFAULT_VALUE_SIZE: usize = 64;
/// The smallest value that holds a write's id and intended send time.
const MIN_VALUE_SIZE: usize = 32;
/// 1 MiB: nats-server's default max_payload.
const MAX_VALUE_SIZE: usize = 1_048_576;
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// `write`: `target` (and `agents` with `target = "pcs"`) and the load.
pub(super) fn read_write(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    kind_span: &Range<usize>,
    setup: &Setup,
) -> Option<StepAction> {
    let target = target(ctx, node, kind_span, "write", &WRITE_TARGETS);
    if let Some((target, span)) = &target
        && !matches!(target, WriteTarget::Key { .. })
    {
        check_bucket(ctx, node, span, target, setup);
    }
    // `bucket` and `key` belong to target = "key" only.
    let is_key = matches!(&target, Some((WriteTarget::Key { .. }, _)));
    if !is_key {
        for k in ["bucket", "key"] {
            if node.get(k).is_some() && target.is_some() {
                node.report_at(ctx, k, format!("{k} only applies to target = \"key\""));
            }
        }
    }
    // `agents` is read against a known target only: with a wrong one it is unclear.
    let target = match target {
        Some((WriteTarget::Pcs { .. }, span)) => {
            if node.get("agents").is_none() {
                let message = "required with target = \"pcs\": the 0-based indexes of the \
                               agents to write to, such as [0, 3]";
                node.missing(ctx, "agents", Some(span), message);
                None
            } else {
                read_agents(ctx, node, setup).map(|agents| WriteTarget::Pcs { agents })
            }
        }
        Some((WriteTarget::Key { .. }, span)) => {
            if node.get("agents").is_some() {
                let message = "agents only applies to target = \"pcs\"";
                node.report_at(ctx, "agents", message);
            }
            read_key_target(ctx, node, &span, setup)
        }
        Some((target, _)) => {
            if node.get("agents").is_some() {
                let message = "agents only applies to target = \"pcs\"";
                node.report_at(ctx, "agents", message);
            }
            Some(target)
        }
        None => None,
    };
    let load = read_load(ctx, node, "writes per second");
    Some(StepAction::Write {
        target: target?,
        load: load?,
    })
}

/// `target = "key"`: `bucket`, one of the profile's, and `key`, a template without
/// wildcards (`{pc}`: each agent's key in turn; `{group}`: each group's; neither: one key
/// every agent needs).
fn read_key_target(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    target_span: &Range<usize>,
    setup: &Setup,
) -> Option<WriteTarget> {
    let bucket = match node.string(ctx, "bucket") {
        None => {
            if node.get("bucket").is_none() {
                let message = "required with target = \"key\": the name of one of the profile's buckets, such as \"settings-files\"";
                node.missing(ctx, "bucket", Some(target_span.clone()), message);
            }
            None
        }
        Some((name, span)) => match &setup.buckets {
            Some(buckets) if !buckets.iter().any(|b| b == name) => {
                let profile = join("", &setup.profile);
                let message = format!(
                    "profile {profile} has no bucket {name:?}; its buckets are {}: use one of them, or add a [[buckets]] table with name = {name:?} to the profile",
                    buckets.join(", ")
                );
                ctx.report(&span, node.key("bucket"), message);
                None
            }
            _ => Some(name.to_string()),
        },
    };
    let key = match node.get("key") {
        None => {
            let message = "required with target = \"key\": the key to write, such as \"{pc}\" (each agent's in turn), \"{group}\" or a fixed key";
            node.missing(ctx, "key", Some(target_span.clone()), message);
            None
        }
        Some(value) => template(ctx, node.key("key"), value, false),
    };
    Some(WriteTarget::Key {
        bucket: bucket?,
        key: key?,
    })
}

/// The bucket a write target puts to must be one the profile declares (provisioning
/// creates only those). `exec` needs nothing: EXEC always exists.
fn check_bucket(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    span: &Range<usize>,
    target: &WriteTarget,
    setup: &Setup,
) {
    let Some(buckets) = &setup.buckets else {
        return;
    };
    let bucket = target_bucket(target);
    if buckets.iter().any(|b| b == bucket) {
        return;
    }
    let profile = join("", &setup.profile);
    let name = WRITE_TARGETS
        .iter()
        .find(|(_, t)| std::mem::discriminant(t) == std::mem::discriminant(target))
        .map_or("", |(n, _)| *n);
    let message = format!(
        "profile {profile} has no bucket {bucket}, which target = \"{name}\" writes to; add a [[buckets]] table with name = \"{bucket}\" to the profile, or use another target"
    );
    ctx.report(span, node.key("target"), message);
}

/// The kanade bucket a write target puts to.
fn target_bucket(target: &WriteTarget) -> &'static str {
    match target {
        WriteTarget::Pc
        | WriteTarget::PcEach
        | WriteTarget::Pcs { .. }
        | WriteTarget::Group
        | WriteTarget::Global => "agent_config",
        WriteTarget::Jobs => "jobs",
        WriteTarget::Schedules => "schedules",
        WriteTarget::Freeze => "fleet_config",
        WriteTarget::Key { .. } => "",
    }
}

/// `exec`: `target` and the load.
pub(super) fn read_exec(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    kind_span: &Range<usize>,
) -> Option<StepAction> {
    let target = target(ctx, node, kind_span, "exec", &EXEC_TARGETS).map(|(t, _)| t);
    let load = read_load(ctx, node, "commands per second");
    Some(StepAction::Exec {
        target: target?,
        load: load?,
    })
}

/// `target`, required for `kind`: one of `targets`.
fn target<T: Clone>(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    kind_span: &Range<usize>,
    kind: &str,
    targets: &[(&str, T)],
) -> Option<(T, Range<usize>)> {
    if node.get("target").is_none() {
        let message = format!("required for kind = \"{kind}\": one of {}", names(targets));
        node.missing(ctx, "target", Some(kind_span.clone()), &message);
        return None;
    }
    node.choice(ctx, "target", &format!("{kind} target"), targets)
}

/// `retry`'s values.
const RETRIES: [(&str, WriteRetry); 2] = [
    ("never", WriteRetry::Never),
    ("until_acked", WriteRetry::UntilAcked),
];

/// `rate`, `count` or `duration`, `value_size`, `drain_timeout`, `background`, `retry`; `unit` says
/// what `rate` counts.
fn read_load(ctx: &mut Ctx<'_>, node: &Node<'_, '_>, unit: &str) -> Option<WriteLoad> {
    let what = format!("a positive number ({unit})");
    let rate = match node.number(ctx, "rate", &what) {
        None if node.get("rate").is_some() => None,
        None => Some(DEFAULT_WRITE_RATE),
        Some((rate, _)) if rate > 0.0 && rate.is_finite() => Some(rate),
        Some((rate, span)) => {
            ctx.report(
                &span,
                node.key("rate"),
                format!("must be {what}, got {rate}"),
            );
            None
        }
    };
    let count = match (node.get("count"), node.get("duration")) {
        (Some(_), Some(_)) => {
            let message = "count and duration are alternatives; give count (the number of \
                           writes) or duration (count = rate × duration), not both";
            node.report_at(ctx, "duration", message);
            None
        }
        (Some(_), None) => node
            .whole(
                ctx,
                "count",
                "a positive whole number (the number of writes)",
                1,
                u64::MAX.into(),
            )
            .map(|(n, _)| n as u64),
        (None, Some(_)) => {
            let duration = node.positive_duration(ctx, "duration", "");
            duration.zip(rate).map(|(d, rate)| count_over(rate, d))
        }
        (None, None) => Some(DEFAULT_WRITE_COUNT),
    };
    let what = format!("a whole number of bytes from {MIN_VALUE_SIZE} to {MAX_VALUE_SIZE}");
    let value_size = match node.get("value_size") {
        None => Some(DEFAULT_VALUE_SIZE),
        Some(_) => node
            .whole(
                ctx,
                "value_size",
                &what,
                MIN_VALUE_SIZE as i128,
                MAX_VALUE_SIZE as i128,
            )
            .map(|(n, _)| n as usize),
    };
    let drain_timeout = match node.get("drain_timeout") {
        None => Some(DEFAULT_DRAIN_TIMEOUT),
        Some(_) => node.positive_duration(ctx, "drain_timeout", ""),
    };
    let background = match node.get("background") {
        None => Some(false),
        Some(_) => node.boolean(ctx, "background"),
    };
    let retry = match node.get("retry") {
        None => Some(WriteRetry::Never),
        Some(_) => node
            .choice(ctx, "retry", "write retry", &RETRIES)
            .map(|(r, _)| r),
    };
    Some(WriteLoad {
        rate: rate?,
        count: count?,
        value_size: value_size?,
        drain_timeout: drain_timeout?,
        background: background?,
        retry: retry?,
    })
}

/// The writes `rate` sends in `duration`: `ceil(rate × secs)`, at least one. A product
/// within rounding error of a whole number is that number (0.1/s for 30 s is 3, not 4).
fn count_over(rate: f64, duration: Duration) -> u64 {
    let exact = rate * duration.as_secs_f64();
    let nearest = exact.round();
    let count = if (exact - nearest).abs() <= 1e-9 * nearest.max(1.0) {
        nearest
    } else {
        exact.ceil()
    };
    // `as` saturates: a count past u64::MAX is not a run anyone waits for.
    (count as u64).max(1)
}

/// `agents` of a `target = "pcs"` write or a network step: a non-empty array of agent
/// indexes.
pub(super) fn read_agents(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    setup: &Setup,
) -> Option<Vec<usize>> {
    let (items, span) = node.array(
        ctx,
        "agents",
        "an array of 0-based agent indexes, such as [0, 3]",
    )?;
    if items.is_empty() {
        let message = "must not be empty; list the 0-based indexes of the agents, such as [0, 3]";
        ctx.report(&span, node.key("agents"), message);
        return None;
    }
    let path = node.key("agents");
    let agents: Vec<Option<usize>> = items
        .iter()
        .enumerate()
        .map(|(i, value)| agent_index(ctx, value, format!("{path}[{}]", i + 1), setup.agents))
        .collect();
    agents.into_iter().collect()
}

/// A 0-based agent index below `fleet.agents` (when that is known).
fn agent_index(
    ctx: &mut Ctx<'_>,
    value: &Value<'_>,
    path: String,
    fleet: Option<usize>,
) -> Option<usize> {
    let parsed = match value.get_ref() {
        toml::de::DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix()).ok(),
        _ => None,
    };
    let message = match (parsed, fleet) {
        (Some(n), Some(agents)) if n >= 0 && n >= agents as i128 => format!(
            "agent index {n} is out of range; fleet.agents is {agents}, so indexes run from 0 to {}",
            agents - 1
        ),
        (Some(n), _) if n >= 0 => return usize::try_from(n).ok(),
        _ => format!(
            "must be a 0-based agent index (a whole number), got {}",
            describe(value.get_ref())
        ),
    };
    ctx.report(&value.span(), path, message);
    None
}

/// `drop_consumer`: `agent` and `consumer`, both required.
pub(super) fn read_drop_consumer(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    kind_span: &Range<usize>,
    setup: &Setup,
) -> Option<StepAction> {
    let agent = match node.get("agent") {
        None => {
            let message = "required for kind = \"drop_consumer\": the 0-based index of the \
                           agent whose consumer stops";
            node.missing(ctx, "agent", Some(kind_span.clone()), message);
            None
        }
        Some(value) => agent_index(ctx, value, node.key("agent"), setup.agents),
    };
    let profile = join("", &setup.profile);
    let allowed = setup.consumers.as_ref().map(|names| {
        if names.is_empty() {
            format!("profile {profile} has no consumers")
        } else {
            let names: Vec<String> = names.iter().map(|n| join("", n)).collect();
            format!("profile {profile} has: {}", names.join(", "))
        }
    });
    let consumer = match node.string(ctx, "consumer") {
        None if node.get("consumer").is_some() => None,
        None => {
            let mut message =
                "required for kind = \"drop_consumer\": the name of a consumer of the profile"
                    .to_string();
            if let Some(allowed) = &allowed {
                message = format!("{message}; {allowed}");
            }
            node.missing(ctx, "consumer", Some(kind_span.clone()), &message);
            None
        }
        Some((name, span)) => match &setup.consumers {
            Some(names) if !names.iter().any(|n| n == name) => {
                let allowed = allowed.unwrap_or_default();
                let message = format!("unknown consumer {name:?}; {allowed}");
                ctx.report(&span, node.key("consumer"), message);
                None
            }
            _ => Some(name.to_string()),
        },
    };
    Some(StepAction::DropConsumer {
        agent: agent?,
        consumer: consumer?,
    })
}
