//! `[gate]`: how `fleetsim gate` judges a candidate against its reference (runs per
//! side, the figures judged and their effect sizes, the latency floor). See
//! [`crate::gate::same_runner`] for what the settings mean.

use toml::de::DeValue;

use super::POSITIVE;
use super::walk::{Ctx, Node, describe};
use crate::gate::same_runner::{DEFAULT_EFFECT, DEFAULT_FLOOR_MS, GateFigure, GateSettings};
use crate::thresholds::{Known, parse_percent};

const GATE_KEYS: [&str; 5] = ["repeat", "effect", "effects", "figures", "floor"];
/// At most this many runs per side: `fleetsim gate` is a CI job.
const MAX_REPEAT: usize = 50;

/// Reads `[gate]`; without it, the defaults ([`GateSettings::defaults`]).
pub(super) fn read_gate(ctx: &mut Ctx<'_>, root: &Node<'_, '_>, known: &Known) -> GateSettings {
    let mut settings = GateSettings::defaults(known);
    let Some(node) = root.table(ctx, "gate", "a table ([gate])") else {
        return settings;
    };
    node.check_keys(ctx, &GATE_KEYS);
    if let Some((n, _)) = node.whole(ctx, "repeat", POSITIVE, 1, MAX_REPEAT as i128) {
        settings.repeat = n as usize;
    }
    let mut effect = DEFAULT_EFFECT;
    if let Some((text, span)) = node.string(ctx, "effect") {
        match parse_percent(text) {
            Ok(e) => effect = e,
            Err(message) => ctx.report(&span, node.key("effect"), message),
        }
    }
    settings.floor_ms = node
        .duration(ctx, "floor")
        .map_or(DEFAULT_FLOOR_MS, |(d, _)| d.as_secs_f64() * 1000.0);
    let expected = "an array of figures, e.g. [\"ready[3:start].p50\", \
                    \"count[1:start].broker.cpu_ms_per_agent\"]";
    if let Some((items, _)) = node.array(ctx, "figures", expected) {
        settings.figures.clear();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{}]", node.key("figures"), i + 1);
            let DeValue::String(text) = item.get_ref() else {
                let message = format!("expected a figure string, got {}", describe(item.get_ref()));
                ctx.report(&item.span(), path, message);
                continue;
            };
            match GateFigure::parse(text, effect, known) {
                Ok(figure) => settings.figures.push(figure),
                Err(message) => ctx.report(&item.span(), path, message),
            }
        }
    } else {
        for figure in &mut settings.figures {
            figure.effect = effect;
        }
    }
    if let Some(table) = node.table(
        ctx,
        "effects",
        "a table of figure = \"N%\", e.g. { \"ready[3:start].p50\" = \"40%\" }",
    ) {
        for (key, value) in table.table.iter() {
            let name: &str = key.get_ref();
            let path = table.key(name);
            let parsed = match value.get_ref() {
                DeValue::String(s) => parse_percent(s),
                other => Err(format!(
                    "expected a percentage such as \"40%\", got {}",
                    describe(other)
                )),
            };
            let parsed = match parsed {
                Ok(e) => e,
                Err(message) => {
                    ctx.report(&value.span(), path, message);
                    continue;
                }
            };
            let mut found = false;
            for figure in settings
                .figures
                .iter_mut()
                .filter(|f| f.text == name.trim())
            {
                figure.effect = parsed;
                found = true;
            }
            if !found {
                let mut listed: Vec<&str> =
                    settings.figures.iter().map(|f| f.text.as_str()).collect();
                if listed.is_empty() {
                    listed.push("(none)");
                }
                let message = format!(
                    "no such figure in [gate] figures; effects apply to the figures listed \
                     there: {}",
                    listed.join(", ")
                );
                ctx.report(&key.span(), path, message);
            }
        }
    }
    settings
}
