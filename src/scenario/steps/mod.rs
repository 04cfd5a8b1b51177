//! `[[steps]]`: the timeline of a scenario.
//!
//! This file reads the list, the keys every step shares (`kind`, and which keys belong
//! to which kinds), and the fleet's own steps (`start`, `wait_ready`, `hold`). Each other
//! family of kinds is read in its own room: [`writes`] (`write`, `exec`,
//! `drop_consumer`) and [`herds`] (the kinds that trigger a reconnect herd). A new step
//! kind is a name in [`KINDS`] and [`STEP_KEYS`]/[`OWNERS`] for its keys, and one reader.

mod herds;
mod writes;

use std::time::Duration;

use super::walk::{Ctx, Node};
use crate::plan::{StartPacing, Step, StepAction};
use herds::{read_churn, read_herd};
use writes::{read_agents, read_drop_consumer, read_exec, read_write};

const STEP_KEYS: [&str; 26] = [
    "kind",
    "mode",
    "rate",
    "over",
    "timeout",
    "duration",
    "target",
    "agents",
    "bucket",
    "key",
    "count",
    "value_size",
    "drain_timeout",
    "background",
    "retry",
    "agent",
    "consumer",
    "recover_timeout",
    "signal",
    "downtime",
    "refuse_for",
    "command",
    "command_timeout",
    "after",
    "fraction",
    "groups",
];
const KINDS: &str = "start, wait_ready, hold, write, exec, drop_consumer, broker_restart, \
     network_cut, lame_duck, client_reconnect, command, churn";
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
const OWNERS: [(&str, &[&str]); 25] = [
    ("mode", &["start", "network_cut", "churn"]),
    ("rate", &["start", "write", "exec", "churn"]),
    ("over", &["start"]),
    ("timeout", &["wait_ready"]),
    ("duration", &["hold", "write", "exec", "churn"]),
    ("target", &WRITE_KINDS),
    ("agents", &["write", "network_cut"]),
    ("bucket", &["write"]),
    ("key", &["write"]),
    ("count", &WRITE_KINDS),
    ("value_size", &WRITE_KINDS),
    ("drain_timeout", &WRITE_KINDS),
    ("background", &WRITE_KINDS),
    ("retry", &WRITE_KINDS),
    ("agent", &["drop_consumer"]),
    ("consumer", &["drop_consumer"]),
    ("recover_timeout", &HERD_KINDS),
    ("signal", &["broker_restart"]),
    ("downtime", &["broker_restart", "network_cut", "churn"]),
    ("refuse_for", &["network_cut"]),
    ("command", &["command"]),
    ("command_timeout", &["command"]),
    ("after", &["network_cut"]),
    ("fraction", &["network_cut"]),
    ("groups", &["network_cut"]),
];
const DEFAULT_WAIT_READY: Duration = Duration::from_secs(120);

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
    /// The agents' connections are TLS (`[broker] tls`, or a `tls://` url): the fault
    /// proxy cannot read which agent a connection carries.
    pub(super) tls: bool,
    /// `[fleet] groups`, for a network step's `groups` (agent `i` is in group `i %
    /// groups`); `None` when it is wrong (already a problem).
    pub(super) groups: Option<usize>,
    /// Name of the profile the fleet runs (`fleet.profile`).
    pub(super) profile: String,
    /// That profile's consumer names; `None` when the profile is unknown (already a
    /// problem), so consumer names are not checked against it.
    pub(super) consumers: Option<Vec<String>>,
    /// That profile's bucket names; `None` when the profile is unknown, so write
    /// targets are not checked against it.
    pub(super) buckets: Option<Vec<String>>,
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
    let known = matches!(
        kind,
        "start" | "wait_ready" | "hold" | "drop_consumer" | "churn"
    );
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
    if kind == "churn" {
        return read_churn(ctx, node, &kind_span, started, setup);
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
