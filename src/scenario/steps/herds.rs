//! The herd kinds: a trigger that drops the fleet's connections (`broker_restart`,
//! `network_cut`, `lame_duck`, `client_reconnect`, `command`) and the wait for it to
//! recover; and what each needs from the rest of the file (the embedded broker, the proxy).

use std::ops::Range;
use std::time::Duration;

use super::Setup;
use super::read_agents;
use crate::plan::{
    AfterBlackhole, ChurnMode, CutMode, FaultTarget, Held, StepAction, StopSignal, Trigger,
};
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
        "network_cut" => read_network_cut(ctx, node, &kind_span, setup),
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
    let (trigger, recover_timeout) = (trigger?, recover_timeout?);
    if let Trigger::NetworkCut {
        mode: CutMode::Blackhole { downtime, .. },
        ..
    } = &trigger
        && *downtime >= recover_timeout
    {
        let message = format!(
            "the blackhole ({downtime:?}) outlasts the step's recover_timeout \
             ({recover_timeout:?}): no agent could recover in time; make recover_timeout \
             longer than downtime plus the agents' keepalive detection"
        );
        node.report_at(ctx, "downtime", message);
        return None;
    }
    Some(StepAction::Herd {
        trigger,
        recover_timeout,
    })
}

/// `churn`: `rate` (`"2%/min"`, required), `duration` (required), `downtime` (`"5s"`),
/// `mode` (reset, blackhole); needs the proxy and a start before it.
pub(crate) fn read_churn(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    kind_span: &Range<usize>,
    started: bool,
    setup: &Setup,
) -> Option<StepAction> {
    let rate = match node.get("rate") {
        None => {
            let message = "required for kind = \"churn\": the share of the fleet that flaps \
                           per minute, such as \"1%/min\"";
            node.missing(ctx, "rate", Some(kind_span.clone()), message);
            None
        }
        Some(_) => {
            let (text, span) = node.string(ctx, "rate")?;
            match parse_churn_rate(text) {
                Ok(pct) => Some(pct),
                Err(message) => {
                    ctx.report(&span, node.key("rate"), message);
                    None
                }
            }
        }
    };
    let duration = match node.get("duration") {
        None => {
            let message = "required for kind = \"churn\": how long agents flap, such as \"60s\"";
            node.missing(ctx, "duration", Some(kind_span.clone()), message);
            None
        }
        Some(_) => node.positive_duration(ctx, "duration", ""),
    };
    let downtime = match node.get("downtime") {
        None => Some(Duration::from_secs(5)),
        Some(_) => node.positive_duration(ctx, "downtime", ": a flap of no time is no flap"),
    };
    const MODES: [(&str, ChurnMode); 2] = [
        ("reset", ChurnMode::Reset),
        ("blackhole", ChurnMode::Blackhole),
    ];
    let mode = match node.get("mode") {
        None => Some(ChurnMode::Reset),
        Some(_) => node.choice(ctx, "mode", "mode", &MODES).map(|(m, _)| m),
    };
    let needs = if !started {
        Some("churn before any start step; put a step with kind = \"start\" first")
    } else if !setup.proxy {
        Some(
            "churn needs the fault proxy between agents and broker; set proxy = true \
             (inside fleetsim's process) or proxy = \"process\" (its own process) in [fleet]",
        )
    } else {
        None
    };
    if let Some(message) = needs {
        ctx.report(kind_span, node.key("kind"), message);
        return None;
    }
    Some(StepAction::Churn {
        duration: duration?,
        percent_per_min: rate?,
        downtime: downtime?,
        mode: mode?,
    })
}

/// `"1%/min"` (or `"/h"`, `"/s"`) as percent of the fleet per minute.
fn parse_churn_rate(text: &str) -> Result<f64, String> {
    let bad = || {
        format!(
            "expected a share of the fleet per time such as \"1%/min\", \"5%/h\" or \"0.5%/s\", got {text:?}"
        )
    };
    let (pct, per) = text.trim().split_once("%/").ok_or_else(bad)?;
    let pct: f64 = pct.trim().parse().map_err(|_| bad())?;
    let per_min = match per.trim() {
        "s" => 60.0,
        "min" => 1.0,
        "h" => 1.0 / 60.0,
        _ => return Err(bad()),
    };
    if !(pct.is_finite() && pct > 0.0) {
        return Err(format!("must be above 0%, got {text:?}"));
    }
    Ok(pct * per_min)
}

/// `network_cut`: `mode` (reset, blackhole, stop_reading), `refuse_for` (reset), `downtime`
/// and `after` (blackhole, stop_reading), and which agents it hits (`fraction`, `groups`
/// or `agents`).
fn read_network_cut(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    kind_span: &Range<usize>,
    setup: &Setup,
) -> Option<Trigger> {
    // The blackhole modes, with what they hold; `None` is a reset.
    const BLACKHOLE_MODES: &str = "blackhole\" or \"stop_reading";
    const MODES: [(&str, Option<Held>); 3] = [
        ("reset", None),
        ("blackhole", Some(Held::Both)),
        ("stop_reading", Some(Held::ToAgent)),
    ];
    let held = match node.get("mode") {
        None => Some(None),
        Some(_) => node.choice(ctx, "mode", "mode", &MODES).map(|(h, _)| h),
    };
    let target = read_fault_target(ctx, node, setup);
    let held = held?;
    let only = |ctx: &mut Ctx<'_>, key: &str, mode: &str| {
        if node.get(key).is_some() {
            let message = format!("{key} only applies to mode = \"{mode}\"");
            node.report_at(ctx, key, message);
            true
        } else {
            false
        }
    };
    let mut misplaced = false;
    let mode = if let Some(held) = held {
        misplaced |= only(ctx, "refuse_for", "reset");
        let downtime = match node.get("downtime") {
            None => {
                let message = "required with mode = \"blackhole\" or \"stop_reading\": how \
                               long nothing gets through, such as \"30s\"";
                node.missing(ctx, "downtime", Some(kind_span.clone()), message);
                None
            }
            Some(_) => {
                node.positive_duration(ctx, "downtime", ": a blackhole of no time is no fault")
            }
        };
        const AFTER: [(&str, AfterBlackhole); 2] = [
            ("resume", AfterBlackhole::Resume),
            ("reset", AfterBlackhole::Reset),
        ];
        let after = match node.get("after") {
            None => Some(AfterBlackhole::Resume),
            Some(_) => node.choice(ctx, "after", "after", &AFTER).map(|(a, _)| a),
        };
        CutMode::Blackhole {
            downtime: downtime?,
            after: after?,
            held,
        }
    } else {
        misplaced |= only(ctx, "downtime", BLACKHOLE_MODES) | only(ctx, "after", BLACKHOLE_MODES);
        CutMode::Reset
    };
    if misplaced {
        return None;
    }
    let refuse_for = match node.get("refuse_for") {
        None => Some(Duration::ZERO),
        Some(_) => node.duration(ctx, "refuse_for").map(|(d, _)| d),
    };
    Some(Trigger::NetworkCut {
        refuse_for: refuse_for?,
        mode,
        target: target?,
    })
}

/// Which agents a network step hits: `fraction` (0, 1], `groups` or `agents`, at most
/// one of them; none: every agent.
fn read_fault_target(ctx: &mut Ctx<'_>, node: &Node<'_, '_>, setup: &Setup) -> Option<FaultTarget> {
    let given: Vec<&str> = ["fraction", "groups", "agents"]
        .into_iter()
        .filter(|key| node.get(key).is_some())
        .collect();
    if given.len() > 1 {
        let message = format!(
            "{} name the agents hit twice; keep one of fraction, groups or agents",
            given.join(" and ")
        );
        node.report_at(ctx, given[1], message);
        return None;
    }
    if let Some(key) = given.first()
        && setup.tls
    {
        let message = format!(
            "{key} needs plain connections: the fault proxy reads each connection's agent \
             from its CONNECT, which TLS encrypts; cut the whole fleet (no {key}) or run \
             without TLS"
        );
        node.report_at(ctx, key, message);
        return None;
    }
    match given.first() {
        None => Some(FaultTarget::All),
        Some(&"fraction") => {
            let (share, span) = node.number(ctx, "fraction", "a share of the fleet such as 0.3")?;
            if !(share > 0.0 && share <= 1.0) {
                let message = format!(
                    "must be above 0 and at most 1 (a share of the fleet, such as 0.3), got {share}"
                );
                ctx.report(&span, node.key("fraction"), message);
                return None;
            }
            Some(FaultTarget::Fraction(share))
        }
        Some(&"groups") => read_groups(ctx, node, setup).map(FaultTarget::Groups),
        Some(_) => read_agents(ctx, node, setup).map(FaultTarget::Agents),
    }
}

/// `groups`: a non-empty array of group numbers below `[fleet] groups`.
fn read_groups(ctx: &mut Ctx<'_>, node: &Node<'_, '_>, setup: &Setup) -> Option<Vec<usize>> {
    let (items, span) = node.array(ctx, "groups", "an array of group numbers, such as [0, 2]")?;
    if items.is_empty() {
        let message = "must not be empty; list the group numbers, such as [0, 2]";
        ctx.report(&span, node.key("groups"), message);
        return None;
    }
    let mut groups = Vec::new();
    for (i, value) in items.iter().enumerate() {
        let parsed = match value.get_ref() {
            toml::de::DeValue::Integer(n) => i128::from_str_radix(n.as_str(), n.radix()).ok(),
            _ => None,
        };
        let path = format!("{}[{}]", node.key("groups"), i + 1);
        match (parsed, setup.groups) {
            (Some(n), Some(count)) if n >= 0 && n >= count as i128 => {
                let message = format!(
                    "group {n} does not exist; fleet.groups is {count}, so groups run from 0 to {}",
                    count - 1
                );
                ctx.report(&value.span(), path, message);
                return None;
            }
            (Some(n), _) if n >= 0 => groups.push(n as usize),
            _ => {
                let message = format!(
                    "must be a group number (0 or more), got {}",
                    crate::scenario::walk::describe(value.get_ref())
                );
                ctx.report(&value.span(), path, message);
                return None;
            }
        }
    }
    Some(groups)
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
