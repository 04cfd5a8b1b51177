//! A/B variants: `[[variants]]` tables that override `[fleet]` and `[broker]` settings,
//! and `repeat`, how many times each variant runs.
//!
//! A variant is read by overlaying its `fleet` and `broker` keys on the file's own tables
//! and reading the merged document with the same code as the file itself, so every
//! setting a variant can change is checked exactly as if it were written in `[fleet]`
//! (steps too: a variant that switches profile has its `drop_consumer` names checked
//! against that profile). The overlaid values keep their spans in the file, so a bad
//! value in a variant is reported at its own line.

use std::borrow::Cow;
use std::collections::HashSet;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::thresholds;
use super::walk::{Ctx, Node};
use super::{POSITIVE, Problem, read_plan};
use crate::plan::{Plan, Variant};

const VARIANT_KEYS: [&str; 4] = ["name", "fleet", "broker", "thresholds"];
/// The tables a variant may override.
const OVERRIDABLE: [&str; 2] = ["fleet", "broker"];
/// At most this many runs in one invocation (variants x repeat): a typo like
/// `repeat = 1000` should be an error, not a week-long run.
const MAX_RUNS: usize = 100;

/// Reads `repeat` and `[[variants]]` and resolves each variant to a full plan.
///
/// `base` is the plan read from the file without variants. With no variants and
/// `repeat = 1` the result is empty; `repeat > 1` without variants repeats the file as
/// one variant named `default`.
pub(super) fn read_variants(
    ctx: &mut Ctx<'_>,
    root: &Node<'_, '_>,
    origin: &str,
    base: &Plan,
) -> (Vec<Variant>, usize) {
    let repeat = root
        .whole(ctx, "repeat", POSITIVE, 1, MAX_RUNS as i128)
        .map_or(1, |(n, _)| n as usize);
    let Some((items, span)) = root.array(ctx, "variants", "an array of tables ([[variants]])")
    else {
        let variants = if repeat > 1 {
            vec![Variant {
                name: "default".to_string(),
                plan: base.clone(),
            }]
        } else {
            Vec::new()
        };
        return (variants, repeat);
    };
    if items.len() < 2 {
        ctx.report(
            &span,
            "variants",
            format!(
                "an A/B run needs at least two variants, got {}; add another [[variants]] \
                 table or remove the one there is",
                items.len()
            ),
        );
    }
    if items.len() * repeat > MAX_RUNS {
        ctx.report(
            &span,
            "variants",
            format!(
                "{} variants x repeat {repeat} is {} runs; at most {MAX_RUNS} are allowed",
                items.len(),
                items.len() * repeat
            ),
        );
    }
    let mut names = HashSet::new();
    let mut variants = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("variants[{}]", i + 1);
        let Some(node) = Node::of(ctx, path, item, "a table ([[variants]])") else {
            continue;
        };
        node.check_keys(ctx, &VARIANT_KEYS);
        let name = match node.string(ctx, "name") {
            Some((name, span)) if !is_variant_name(name) => {
                let message = format!(
                    "bad variant name {name:?}: use letters, digits, '-' and '_' (it names \
                     result directories and CSV cells)"
                );
                ctx.report(&span, node.key("name"), message);
                None
            }
            Some((name, span)) if !names.insert(name.to_string()) => {
                let message = format!("variant name {name:?} is used twice; names must differ");
                ctx.report(&span, node.key("name"), message);
                None
            }
            Some((name, _)) => Some(name.to_string()),
            None => {
                if node.get("name").is_none() {
                    node.missing(
                        ctx,
                        "name",
                        None,
                        "required: the variant's name, e.g. \"splay-on\"",
                    );
                }
                None
            }
        };
        let mut merged: DeTable<'_> = root.table.clone();
        merged.remove("variants");
        for table in OVERRIDABLE {
            let Some(overrides) = node.table(ctx, table, &format!("a table ([variants.{table}])"))
            else {
                continue;
            };
            let mut combined = match root.table.get(table).map(|v| v.get_ref()) {
                Some(DeValue::Table(base_table)) => base_table.clone(),
                _ => DeTable::new(),
            };
            for (key, value) in overrides.table.iter() {
                combined.insert(key.clone(), value.clone());
            }
            let span = root
                .table
                .get(table)
                .map_or_else(|| overrides.span.clone(), |v| v.span());
            merged.insert(
                Spanned::new(span.clone(), Cow::Borrowed(table)),
                Spanned::new(span, DeValue::Table(combined)),
            );
        }
        let mut plan = read_merged(ctx, root, &merged, origin, &node);
        // This variant's own checks, named against its own profile; the file's
        // `[thresholds]` are added in front of them once they are read.
        plan.thresholds.checks =
            thresholds::read_checks(ctx, &node, "thresholds", &thresholds::known(&plan));
        if let Some(name) = name {
            plan.name = base.name.clone();
            variants.push(Variant { name, plan });
        }
    }
    (variants, repeat)
}

/// Reads the merged document with its own problem list and keeps the problems the base
/// reading has not already reported (the file's own mistakes show up in every variant).
/// A problem in one of the variant's own values is named by its path in the file
/// (`variants[2].fleet.splay`); any other (a base value that this variant's settings
/// make wrong) says which variant.
fn read_merged(
    ctx: &mut Ctx<'_>,
    root: &Node<'_, '_>,
    merged: &DeTable<'_>,
    origin: &str,
    variant: &Node<'_, '_>,
) -> Plan {
    let mut inner = ctx.fork();
    let node = Node::new(String::new(), merged, root.span.clone());
    let plan = read_plan(&mut inner, &node, origin);
    let own_lines: HashSet<usize> = OVERRIDABLE
        .iter()
        .filter_map(|t| match variant.get(t).map(|v| v.get_ref()) {
            Some(DeValue::Table(table)) => Some(table),
            _ => None,
        })
        .flat_map(|table| table.iter())
        .flat_map(|(k, v)| [ctx.line_of(k.span().start), ctx.line_of(v.span().start)])
        .collect();
    let seen: HashSet<Problem> = ctx.problems().iter().cloned().collect();
    let fresh: Vec<Problem> = inner
        .into_problems()
        .into_iter()
        .filter(|p| !seen.contains(p))
        .map(|mut p| {
            if own_lines.contains(&p.line) {
                p.key = format!("{}.{}", variant.path, p.key);
            } else {
                p.message = format!("{} (with {}'s settings)", p.message, variant.path);
            }
            p
        })
        .collect();
    ctx.extend(fresh);
    plan
}

fn is_variant_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
