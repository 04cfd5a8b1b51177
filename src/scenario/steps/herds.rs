//! The herd kinds: a trigger that drops the fleet's connections (`broker_restart`,
//! `network_cut`, `lame_duck`, `client_reconnect`, `command`) and the wait for it to
//! recover; and what each needs from the rest of the file (the embedded broker, the proxy).

use std::ops::Range;
use std::time::Duration;

use super::Setup;
use crate::plan::{StepAction, StopSignal, Trigger};
use crate::scenario::walk::{Ctx, Node};

const DEFAULT_RECOVER_TIMEOUT: Duration = Duration::from_secs(120);
const DEFAULT_DOWNTIME: Duration = Duration::from_secs(1);
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A herd step: its trigger, `recover_timeout`, and whether it can run in this file.
pub(super) fn read_herd(
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
