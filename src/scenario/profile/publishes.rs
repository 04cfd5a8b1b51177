//! `[[publishes]]`: what an agent publishes on a timer (heartbeats, perf samples, events).

use super::buckets::{EXEC, unique_name};
use super::{AGENT_PLACEHOLDERS, check_subject, covers, items};
use crate::plan::{KeyTemplate, PublishSpec, StreamSpec};
use crate::scenario::walk::{Ctx, Node};

const PUBLISH_KEYS: [&str; 7] = ["name", "subject", "every", "jitter", "size", "ack", "first"];
const FIRSTS: [(&str, bool); 2] = [("at_start", true), ("after_period", false)];
/// 1 MiB: nats-server's default max_payload.
const MAX_SIZE: i128 = 1_048_576;

/// Reads `[[publishes]]`; an acked one needs a stream (of `streams`, EXEC, or the
/// `KV_<bucket>` stream of one of `buckets`, which captures `$KV.<bucket>.>`) that
/// captures its subject, or its publish would wait for an ack that never comes. An acked
/// publish to `$KV.<bucket>.<key>` is what a KV `put` sends: how a profile models an
/// agent that writes its own key on a timer (zester's fact sync).
pub(super) fn read_publishes(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    streams: &[StreamSpec],
    buckets: &[String],
) -> Vec<PublishSpec> {
    let mut publishes = Vec::new();
    let mut names: Vec<(String, usize)> = Vec::new();
    for (index, item) in items(ctx, node, "publishes") {
        let Some(item) = item else { continue };
        item.check_keys(ctx, &PUBLISH_KEYS);
        let name = unique_name(ctx, &item, index, &mut names, "publish", "publishes");
        let subject = match item.string(ctx, "subject") {
            Some((text, span)) => match check_subject(text, false, &AGENT_PLACEHOLDERS) {
                Ok(()) => Some((text, span)),
                Err(message) => {
                    ctx.report(&span, item.key("subject"), message);
                    None
                }
            },
            None => {
                if item.get("subject").is_none() {
                    item.missing(
                        ctx,
                        "subject",
                        None,
                        "required: the subject to publish on, e.g. \"heartbeat.{pc}\"",
                    );
                }
                None
            }
        };
        let every = match item.get("every") {
            None => {
                item.missing(
                    ctx,
                    "every",
                    None,
                    "required: the time between two publishes of one agent, e.g. \"30s\"",
                );
                None
            }
            Some(_) => item.positive_duration(ctx, "every", ""),
        };
        let what = "a fraction from 0 to 1, e.g. 0.1 for ±10 %";
        let jitter = match item.number(ctx, "jitter", what) {
            Some((j, _)) if (0.0..=1.0).contains(&j) => Some(j),
            Some((j, span)) => {
                ctx.report(
                    &span,
                    item.key("jitter"),
                    format!("must be {what}, got {j}"),
                );
                None
            }
            None => item.get("jitter").is_none().then_some(0.0),
        };
        let size = item
            .whole(
                ctx,
                "size",
                "a whole number of bytes up to 1 MiB (1048576)",
                0,
                MAX_SIZE,
            )
            .map_or(0, |(n, _)| n as usize);
        let ack = item.boolean(ctx, "ack").unwrap_or(false);
        let at_start = match item.get("first") {
            None => Some(true),
            Some(_) => item.choice(ctx, "first", "first", &FIRSTS).map(|(f, _)| f),
        };
        if ack && let Some((text, span)) = &subject {
            check_captured(ctx, span, item.key("subject"), text, streams, buckets);
        }
        if let (Some(name), Some((subject, _)), Some(every), Some(jitter), Some(at_start)) =
            (name, subject, every, jitter, at_start)
        {
            publishes.push(PublishSpec {
                name,
                subject: KeyTemplate(subject.to_string()),
                every,
                jitter,
                size,
                ack,
                at_start,
            });
        }
    }
    publishes
}

/// An acked publish on `subject` needs a stream that captures it (of `streams`, EXEC, or
/// the `KV_<bucket>` stream of one of `buckets`); otherwise a problem at `span`.
pub(super) fn check_captured(
    ctx: &mut Ctx<'_>,
    span: &std::ops::Range<usize>,
    path: String,
    subject: &str,
    streams: &[StreamSpec],
    buckets: &[String],
) {
    let exec = (EXEC.0.to_string(), vec![EXEC.1.to_string()]);
    let captured = streams
        .iter()
        .map(|s| (s.name.clone(), s.subjects.clone()))
        .chain([exec])
        .chain(
            buckets
                .iter()
                .map(|b| (format!("KV_{b}"), vec![format!("$KV.{b}.>")])),
        )
        .any(|(_, subjects)| subjects.iter().any(|p| covers(p, subject)));
    if !captured {
        let message = format!(
            "ack = true but no stream captures {subject:?}: declare a [[streams]] table whose subjects cover it (e.g. subjects = [\"{}.>\"]) or publish to a declared bucket's $KV.<bucket>.<key>, or set ack = false for a core publish",
            subject.split('.').next().unwrap_or(subject)
        );
        ctx.report(span, path, message);
    }
}
