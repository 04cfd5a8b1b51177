//! `[[steps]]`: the timeline of a scenario.

use std::time::Duration;

use std::ops::Range;

use super::walk::{Ctx, Node};
use crate::plan::{StartPacing, Step, StepAction, StopSignal, Trigger};

const STEP_KEYS: [&str; 12] = [
    "kind",
    "mode",
    "rate",
    "over",
    "timeout",
    "duration",
    "recover_timeout",
    "signal",
    "downtime",
    "refuse_for",
    "command",
    "command_timeout",
];
const KINDS: &str =
    "start, wait_ready, hold, broker_restart, network_cut, lame_duck, client_reconnect, command";
/// The kinds that trigger a reconnect herd and wait for the fleet to recover.
const HERD_KINDS: [&str; 5] = [
    "broker_restart",
    "network_cut",
    "lame_duck",
    "client_reconnect",
    "command",
];
/// Keys that belong to some kinds only, and the kinds they belong to.
const OWNERS: [(&str, &[&str]); 11] = [
    ("mode", &["start"]),
    ("rate", &["start"]),
    ("over", &["start"]),
    ("timeout", &["wait_ready"]),
    ("duration", &["hold"]),
    ("recover_timeout", &HERD_KINDS),
    ("signal", &["broker_restart"]),
    ("downtime", &["broker_restart"]),
    ("refuse_for", &["network_cut"]),
    ("command", &["command"]),
    ("command_timeout", &["command"]),
];
const DEFAULT_WAIT_READY: Duration = Duration::from_secs(120);
const DEFAULT_RECOVER_TIMEOUT: Duration = Duration::from_secs(120);
const DEFAULT_DOWNTIME: Duration = Duration::from_secs(1);
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What the rest of the file decides about which steps can run.
pub(super) struct Setup {
    /// `[broker] url` is written: fleetsim does not own the broker.
    pub(super) external_broker: bool,
    /// `[fleet] proxy = true`: agents connect through the fault proxy.
    pub(super) proxy: bool,
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
    if !matches!(kind, "start" | "wait_ready" | "hold") && !HERD_KINDS.contains(&kind) {
        let message = format!("unknown step kind {kind:?}; use one of {KINDS}");
        ctx.report(&kind_span, node.key("kind"), message);
        return None;
    }
    // Keys that belong to another kind.
    for (key, owners) in OWNERS {
        if !owners.contains(&kind) && node.get(key).is_some() {
            let message = match owners {
                [owner] => format!("{key} only applies to kind = \"{owner}\""),
                _ => format!(
                    "{key} only applies to the herd kinds: {}",
                    owners.join(", ")
                ),
            };
            node.report_at(ctx, key, message);
        }
    }
    if HERD_KINDS.contains(&kind) {
        return read_herd(ctx, node, kind, kind_span, first_start.is_some(), setup);
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
            "network_cut needs the fault proxy between agents and broker; set proxy = true in [fleet]"
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
