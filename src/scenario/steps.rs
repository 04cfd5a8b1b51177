//! `[[steps]]`: the timeline of a scenario.

use std::time::Duration;

use std::ops::Range;

use super::walk::{Ctx, Node, Value, describe};
use crate::plan::{
    ExecTarget, StartPacing, Step, StepAction, StopSignal, Trigger, WriteLoad, WriteTarget,
};

const STEP_KEYS: [&str; 20] = [
    "kind",
    "mode",
    "rate",
    "over",
    "timeout",
    "duration",
    "target",
    "agents",
    "count",
    "value_size",
    "drain_timeout",
    "background",
    "agent",
    "consumer",
    "recover_timeout",
    "signal",
    "downtime",
    "refuse_for",
    "command",
    "command_timeout",
];
const KINDS: &str = "start, wait_ready, hold, write, exec, drop_consumer, broker_restart, \
     network_cut, lame_duck, client_reconnect, command";
/// The kinds that trigger a reconnect herd and wait for the fleet to recover.
const HERD_KINDS: [&str; 5] = [
    "broker_restart",
    "network_cut",
    "lame_duck",
    "client_reconnect",
    "command",
];
/// The kinds that send paced writes and reconcile their deliveries.
const WRITE_KINDS: [&str; 2] = ["write", "exec"];
/// Keys that belong to some kinds only, and the kinds they belong to.
const OWNERS: [(&str, &[&str]); 19] = [
    ("mode", &["start"]),
    ("rate", &["start", "write", "exec"]),
    ("over", &["start"]),
    ("timeout", &["wait_ready"]),
    ("duration", &["hold", "write", "exec"]),
    ("target", &WRITE_KINDS),
    ("agents", &["write"]),
    ("count", &WRITE_KINDS),
    ("value_size", &WRITE_KINDS),
    ("drain_timeout", &WRITE_KINDS),
    ("background", &WRITE_KINDS),
    ("agent", &["drop_consumer"]),
    ("consumer", &["drop_consumer"]),
    ("recover_timeout", &HERD_KINDS),
    ("signal", &["broker_restart"]),
    ("downtime", &["broker_restart"]),
    ("refuse_for", &["network_cut"]),
    ("command", &["command"]),
    ("command_timeout", &["command"]),
];
const WRITE_TARGETS: &str = "pc, pc_each, pcs, group, global, jobs, schedules, freeze";
const EXEC_TARGETS: &str = "pc, group, all";
const DEFAULT_WAIT_READY: Duration = Duration::from_secs(120);
const DEFAULT_RECOVER_TIMEOUT: Duration = Duration::from_secs(120);
const DEFAULT_DOWNTIME: Duration = Duration::from_secs(1);
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
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

/// What the rest of the file decides about which steps can run.
pub(super) struct Setup {
    /// `[broker] url` is written: fleetsim does not own the broker.
    pub(super) external_broker: bool,
    /// `[fleet] proxy` is on (in-process or its own process): agents connect through the
    /// fault proxy.
    pub(super) proxy: bool,
    /// `[fleet] agents`; `None` when it is missing or wrong (already a problem), so agent
    /// indexes are not checked against it.
    pub(super) agents: Option<usize>,
    /// Name of the profile the fleet runs (`fleet.profile`).
    pub(super) profile: String,
    /// That profile's consumer names; `None` when the profile is unknown (already a
    /// problem), so consumer names are not checked against it.
    pub(super) consumers: Option<Vec<String>>,
}

/// Reads every step; a step with problems is left out (its problems are recorded).
pub(super) fn read_steps(ctx: &mut Ctx<'_>, root: &Node<'_, '_>, setup: &Setup) -> Vec<Step> {
    let required = "at least one step is required; add a [[steps]] table with kind = \"start\"";
    let Some(value) = root.get("steps") else {
        ctx.report(&root.span, "steps", required);
        return Vec::new();
    };
    let Some((array, _)) = root.array(ctx, "steps", "an array of tables ([[steps]])") else {
        return Vec::new();
    };
    if array.is_empty() {
        ctx.report(&value.span(), "steps", required);
        return Vec::new();
    }
    let mut steps = Vec::new();
    let mut first_start: Option<usize> = None;
    for (i, value) in array.iter().enumerate() {
        let index = i + 1;
        let Some(node) = Node::of(ctx, format!("steps[{index}]"), value, "a table ([[steps]])")
        else {
            continue;
        };
        if let Some(action) = read_step(ctx, &node, index, &mut first_start, setup) {
            steps.push(Step { index, action });
        }
    }
    steps
}

fn read_step(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    index: usize,
    first_start: &mut Option<usize>,
    setup: &Setup,
) -> Option<StepAction> {
    node.check_keys(ctx, &STEP_KEYS);
    let Some((kind, kind_span)) = node.string(ctx, "kind") else {
        if node.get("kind").is_none() {
            node.missing(ctx, "kind", None, &format!("required; one of {KINDS}"));
        }
        return None;
    };
    let known = matches!(kind, "start" | "wait_ready" | "hold" | "drop_consumer");
    if !known && !WRITE_KINDS.contains(&kind) && !HERD_KINDS.contains(&kind) {
        let message = format!("unknown step kind {kind:?}; use one of {KINDS}");
        ctx.report(&kind_span, node.key("kind"), message);
        return None;
    }
    // Keys that belong to another kind.
    for (key, owners) in OWNERS {
        if !owners.contains(&kind) && node.get(key).is_some() {
            let message = match owners {
                [owner] => format!("{key} only applies to kind = \"{owner}\""),
                _ if owners == HERD_KINDS => format!(
                    "{key} only applies to the herd kinds: {}",
                    owners.join(", ")
                ),
                _ => format!("{key} only applies to the kinds: {}", owners.join(", ")),
            };
            node.report_at(ctx, key, message);
        }
    }
    let started = first_start.is_some();
    if HERD_KINDS.contains(&kind) {
        return read_herd(ctx, node, kind, kind_span, started, setup);
    }
    if WRITE_KINDS.contains(&kind) || kind == "drop_consumer" {
        let action = match kind {
            "write" => read_write(ctx, node, &kind_span, setup),
            "exec" => read_exec(ctx, node, &kind_span),
            _ => read_drop_consumer(ctx, node, &kind_span, setup),
        };
        if !started {
            let message =
                format!("{kind} before any start step; put a step with kind = \"start\" first");
            ctx.report(&kind_span, node.key("kind"), message);
            return None;
        }
        return action;
    }
    match kind {
        "start" => {
            let pacing = read_pacing(ctx, node);
            match first_start {
                Some(first) => {
                    let message =
                        format!("only one start step: steps[{first}] already starts every agent");
                    ctx.report(&kind_span, node.key("kind"), message);
                    None
                }
                None => {
                    *first_start = Some(index);
                    Some(StepAction::Start { pacing: pacing? })
                }
            }
        }
        "wait_ready" => {
            let timeout = node.positive_duration(ctx, "timeout", "");
            if first_start.is_none() {
                let message =
                    "wait_ready before any start step; put a step with kind = \"start\" first";
                ctx.report(&kind_span, node.key("kind"), message);
                return None;
            }
            let timeout = match node.get("timeout") {
                None => DEFAULT_WAIT_READY,
                Some(_) => timeout?,
            };
            Some(StepAction::WaitReady { timeout })
        }
        _ => {
            // hold
            if node.get("duration").is_none() {
                let message = "required for kind = \"hold\": a duration such as \"5s\"";
                node.missing(ctx, "duration", Some(kind_span), message);
                return None;
            }
            let (duration, _) = node.duration(ctx, "duration")?;
            Some(StepAction::Hold { duration })
        }
    }
}

/// `write`: `target` (and `agents` with `target = "pcs"`) and the load.
fn read_write(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    kind_span: &Range<usize>,
    setup: &Setup,
) -> Option<StepAction> {
    let target = match node.string(ctx, "target") {
        None if node.get("target").is_some() => None,
        None => {
            let message = format!("required for kind = \"write\": one of {WRITE_TARGETS}");
            node.missing(ctx, "target", Some(kind_span.clone()), &message);
            None
        }
        Some((name, span)) => {
            let target = match name {
                "pc" => Some(WriteTarget::Pc),
                "pc_each" => Some(WriteTarget::PcEach),
                "pcs" => Some(WriteTarget::Pcs { agents: Vec::new() }),
                "group" => Some(WriteTarget::Group),
                "global" => Some(WriteTarget::Global),
                "jobs" => Some(WriteTarget::Jobs),
                "schedules" => Some(WriteTarget::Schedules),
                "freeze" => Some(WriteTarget::Freeze),
                _ => None,
            };
            if target.is_none() {
                let message = format!("unknown write target {name:?}; use one of {WRITE_TARGETS}");
                ctx.report(&span, node.key("target"), message);
            }
            target.map(|t| (t, span))
        }
    };
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

/// `exec`: `target` and the load.
fn read_exec(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    kind_span: &Range<usize>,
) -> Option<StepAction> {
    let target = match node.string(ctx, "target") {
        None if node.get("target").is_some() => None,
        None => {
            let message = format!("required for kind = \"exec\": one of {EXEC_TARGETS}");
            node.missing(ctx, "target", Some(kind_span.clone()), &message);
            None
        }
        Some(("pc", _)) => Some(ExecTarget::Pc),
        Some(("group", _)) => Some(ExecTarget::Group),
        Some(("all", _)) => Some(ExecTarget::All),
        Some((name, span)) => {
            let message = format!("unknown exec target {name:?}; use one of {EXEC_TARGETS}");
            ctx.report(&span, node.key("target"), message);
            None
        }
    };
    let load = read_load(ctx, node, "commands per second");
    Some(StepAction::Exec {
        target: target?,
        load: load?,
    })
}

/// `rate`, `count` or `duration`, `value_size`, `drain_timeout`, `background`; `unit` says
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
    Some(WriteLoad {
        rate: rate?,
        count: count?,
        value_size: value_size?,
        drain_timeout: drain_timeout?,
        background: background?,
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

/// `agents` of a `target = "pcs"` write: a non-empty array of agent indexes.
fn read_agents(ctx: &mut Ctx<'_>, node: &Node<'_, '_>, setup: &Setup) -> Option<Vec<usize>> {
    let (items, span) = node.array(
        ctx,
        "agents",
        "an array of 0-based agent indexes, such as [0, 3]",
    )?;
    if items.is_empty() {
        let message =
            "must not be empty; list the 0-based indexes of the agents to write to, such as [0, 3]";
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
fn read_drop_consumer(
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
    let profile = &setup.profile;
    let allowed = setup.consumers.as_ref().map(|names| {
        if names.is_empty() {
            format!("profile {profile} has no consumers")
        } else {
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

/// A herd step: its trigger, `recover_timeout`, and whether it can run in this file.
fn read_herd(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    kind: &str,
    kind_span: Range<usize>,
    started: bool,
    setup: &Setup,
) -> Option<StepAction> {
    let recover_timeout = match node.get("recover_timeout") {
        None => Some(DEFAULT_RECOVER_TIMEOUT),
        Some(_) => node.positive_duration(ctx, "recover_timeout", ""),
    };
    let trigger = match kind {
        "broker_restart" => read_broker_restart(ctx, node),
        "network_cut" => {
            let refuse_for = match node.get("refuse_for") {
                None => Some(Duration::ZERO),
                Some(_) => node.duration(ctx, "refuse_for").map(|(d, _)| d),
            };
            refuse_for.map(|refuse_for| Trigger::NetworkCut { refuse_for })
        }
        "lame_duck" => Some(Trigger::LameDuck),
        "client_reconnect" => Some(Trigger::ClientReconnect),
        _ => read_command(ctx, node, &kind_span),
    };
    // What the rest of the file must provide, reported at the kind.
    let needs = if !started {
        Some(format!(
            "{kind} before any start step; put a step with kind = \"start\" first"
        ))
    } else if setup.external_broker && matches!(kind, "broker_restart" | "lame_duck") {
        Some(format!(
            "{kind} needs the embedded broker, but [broker] url is set: fleetsim can only \
             restart a broker it owns; for an external broker use kind = \"command\" \
             (e.g. docker restart nats)"
        ))
    } else if !setup.proxy && kind == "network_cut" {
        Some(
            "network_cut needs the fault proxy between agents and broker; set proxy = true \
             (inside fleetsim's process) or proxy = \"process\" (its own process) in [fleet]"
                .to_string(),
        )
    } else {
        None
    };
    if let Some(message) = needs {
        ctx.report(&kind_span, node.key("kind"), message);
        return None;
    }
    Some(StepAction::Herd {
        trigger: trigger?,
        recover_timeout: recover_timeout?,
    })
}

/// `signal` ("kill" or "term") and `downtime`.
fn read_broker_restart(ctx: &mut Ctx<'_>, node: &Node<'_, '_>) -> Option<Trigger> {
    let signal = match node.string(ctx, "signal") {
        None if node.get("signal").is_some() => None,
        None => Some(StopSignal::Kill),
        Some(("kill", _)) => Some(StopSignal::Kill),
        Some(("term", _)) => Some(StopSignal::Term),
        Some((other, span)) => {
            let message = format!(
                "unknown signal {other:?}; use kill (SIGKILL: a crash) or term (SIGTERM: a graceful shutdown)"
            );
            ctx.report(&span, node.key("signal"), message);
            None
        }
    };
    let downtime = match node.get("downtime") {
        None => Some(DEFAULT_DOWNTIME),
        Some(_) => node.duration(ctx, "downtime").map(|(d, _)| d),
    };
    Some(Trigger::BrokerRestart {
        signal: signal?,
        downtime: downtime?,
    })
}

/// `command` (required) and `command_timeout`.
fn read_command(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    kind_span: &Range<usize>,
) -> Option<Trigger> {
    let command = match node.string(ctx, "command") {
        None if node.get("command").is_some() => None,
        None => {
            let message = "required for kind = \"command\": the command line to run with sh -c, such as \"docker restart nats\"";
            node.missing(ctx, "command", Some(kind_span.clone()), message);
            None
        }
        Some((command, span)) if command.trim().is_empty() => {
            let message = "must not be empty; the command line to run with sh -c, such as \"docker restart nats\"";
            ctx.report(&span, node.key("command"), message);
            None
        }
        Some((command, _)) => Some(command.to_string()),
    };
    let timeout = match node.get("command_timeout") {
        None => Some(DEFAULT_COMMAND_TIMEOUT),
        Some(_) => node.positive_duration(ctx, "command_timeout", ""),
    };
    Some(Trigger::Command {
        command: command?,
        timeout: timeout?,
    })
}

/// `mode` and the setting it needs: `rate` for `rate`, `over` for `spread`.
fn read_pacing(ctx: &mut Ctx<'_>, node: &Node<'_, '_>) -> Option<StartPacing> {
    let (mode, mode_span) = match node.get("mode") {
        None => ("all_at_once", None),
        Some(_) => {
            let (mode, span) = node.string(ctx, "mode")?;
            (mode, Some(span))
        }
    };
    let mode_ok = matches!(mode, "all_at_once" | "rate" | "spread");
    if !mode_ok {
        let message = format!("unknown mode {mode:?}; use one of all_at_once, rate, spread");
        node.report_at(ctx, "mode", message);
        return None;
    }
    for (key, owner) in [("rate", "rate"), ("over", "spread")] {
        if owner != mode && node.get(key).is_some() {
            node.report_at(
                ctx,
                key,
                format!("{key} only applies to mode = \"{owner}\""),
            );
        }
    }
    match mode {
        "rate" => {
            if node.get("rate").is_none() {
                let message =
                    "required with mode = \"rate\": agents per second, a positive whole number";
                node.missing(ctx, "rate", mode_span, message);
                return None;
            }
            let (rate, _) = node.whole(
                ctx,
                "rate",
                "a positive whole number (agents per second)",
                1,
                u32::MAX.into(),
            )?;
            let per_second = u32::try_from(rate).ok()?;
            Some(StartPacing::Rate { per_second })
        }
        "spread" => {
            if node.get("over").is_none() {
                let message = "required with mode = \"spread\": a duration such as \"10s\"";
                node.missing(ctx, "over", mode_span, message);
                return None;
            }
            let over = node.positive_duration(
                ctx,
                "over",
                "; to start every agent at once use mode = \"all_at_once\"",
            )?;
            Some(StartPacing::Spread { over })
        }
        _ => Some(StartPacing::AllAtOnce),
    }
}
