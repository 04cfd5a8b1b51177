//! `[[steps]]`: the timeline of a scenario.

use std::time::Duration;

use super::walk::{Ctx, Node};
use crate::plan::{StartPacing, Step, StepAction};

const STEP_KEYS: [&str; 6] = ["kind", "mode", "rate", "over", "timeout", "duration"];
const KINDS: &str = "start, wait_ready, hold";
const DEFAULT_WAIT_READY: Duration = Duration::from_secs(120);

/// Reads every step; a step with problems is left out (its problems are recorded).
pub(super) fn read_steps(ctx: &mut Ctx<'_>, root: &Node<'_, '_>) -> Vec<Step> {
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
        if let Some(action) = read_step(ctx, &node, index, &mut first_start) {
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
) -> Option<StepAction> {
    node.check_keys(ctx, &STEP_KEYS);
    let Some((kind, kind_span)) = node.string(ctx, "kind") else {
        if node.get("kind").is_none() {
            node.missing(ctx, "kind", None, &format!("required; one of {KINDS}"));
        }
        return None;
    };
    if !matches!(kind, "start" | "wait_ready" | "hold") {
        let message = format!("unknown step kind {kind:?}; use one of {KINDS}");
        ctx.report(&kind_span, node.key("kind"), message);
        return None;
    }
    // Keys that belong to another kind.
    for (key, owner) in [
        ("mode", "start"),
        ("rate", "start"),
        ("over", "start"),
        ("timeout", "wait_ready"),
        ("duration", "hold"),
    ] {
        if owner != kind && node.get(key).is_some() {
            node.report_at(
                ctx,
                key,
                format!("{key} only applies to kind = \"{owner}\""),
            );
        }
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
