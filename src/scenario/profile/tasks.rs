//! `[[cold_start]]` and `[[on_reconnect]]`: the tasks an agent runs, each a list of calls.
//!
//! Each call is read on its own (names checked against the profile's buckets, streams
//! and consumers), then the lists are checked as a whole: every consumer is opened
//! exactly once, at cold start; every `wait` has a `signal` that can come.

use std::ops::Range;
use std::time::Duration;

use toml::de::DeValue;

use super::buckets::EXEC;
use super::{AGENT_PLACEHOLDERS, Declared, ReadConsumer, check_subject, is_name, items, one_of};
use crate::plan::{Call, ConsumerKind, KeyTemplate, Task};
use crate::scenario::walk::{Ctx, Node, describe};

const TASK_KEYS: [&str; 3] = ["task", "blocking", "calls"];
const CALL_KINDS: [&str; 11] = [
    "bind",
    "stream_info",
    "get",
    "walk",
    "open",
    "subscribe",
    "flush",
    "publish",
    "signal",
    "wait",
    "wait_delivery",
];
/// How long a reconnect task waits for a watch's replay by default.
const DEFAULT_WITHIN: Duration = Duration::from_secs(30);

/// Which list a task is in: some calls belong to one only.
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    ColdStart,
    OnReconnect,
    OnCommand,
}

impl Phase {
    fn key(self) -> &'static str {
        match self {
            Phase::ColdStart => "cold_start",
            Phase::OnReconnect => "on_reconnect",
            Phase::OnCommand => "on_command",
        }
    }
}

/// `[on_command]`: `calls`, run for every command an agent receives; optional.
pub(super) fn read_on_command(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    declared: &Declared,
    consumers: &[ReadConsumer],
) -> Vec<Call> {
    if node.get("on_command").is_none() {
        return Vec::new();
    }
    let Some(table) = node.table(ctx, "on_command", "a table ([on_command]) with calls") else {
        return Vec::new();
    };
    table.check_keys(ctx, &["calls"]);
    read_calls(ctx, &table, Phase::OnCommand, declared, consumers)
        .into_iter()
        .map(|c| c.call)
        .collect()
}

/// A call as read, with where it is written (for the checks across tasks).
struct ReadCall {
    call: Call,
    span: Range<usize>,
    path: String,
}

struct ReadTask {
    name: String,
    blocking: bool,
    calls: Vec<ReadCall>,
}

impl ReadTask {
    fn task(self) -> Task {
        Task {
            name: self.name,
            blocking: self.blocking,
            calls: self.calls.into_iter().map(|c| c.call).collect(),
        }
    }
}

/// Reads both lists and checks them together: `(cold_start, on_reconnect)`.
pub(super) fn read_tasks(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    declared: &Declared,
    consumers: &[ReadConsumer],
) -> (Vec<Task>, Vec<Task>) {
    let cold = read_list(ctx, node, Phase::ColdStart, declared, consumers);
    let reconnect = read_list(ctx, node, Phase::OnReconnect, declared, consumers);
    let alone = "[[on_reconnect]] without [[cold_start]]: add [[cold_start]] tasks (they open the consumers), or write the simple form ([[consumers]] and [[sync]]) instead";
    let empty = "needs at least one task: the cold start opens the consumers; add a [[cold_start]] table with task = and calls =";
    match node.get("cold_start").map(|v| v.get_ref()) {
        None => node.report_at(ctx, "on_reconnect", alone),
        Some(DeValue::Array(a)) if a.is_empty() => node.report_at(ctx, "cold_start", empty),
        Some(DeValue::Array(_)) => check_opens(ctx, &cold, consumers),
        // Not an array: already a problem, and the opens are unknown.
        Some(_) => {}
    }
    check_waits(ctx, &cold);
    check_waits(ctx, &reconnect);
    (
        cold.into_iter().map(ReadTask::task).collect(),
        reconnect.into_iter().map(ReadTask::task).collect(),
    )
}

fn read_list(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    phase: Phase,
    declared: &Declared,
    consumers: &[ReadConsumer],
) -> Vec<ReadTask> {
    let list = phase.key();
    let mut tasks = Vec::new();
    let mut names: Vec<(String, usize)> = Vec::new();
    for (index, item) in items(ctx, node, list) {
        let Some(item) = item else { continue };
        item.check_keys(ctx, &TASK_KEYS);
        let name = match item.string(ctx, "task") {
            Some((name, span)) if !is_name(name) => {
                let message = "task names use letters, digits, _ and -";
                ctx.report(&span, item.key("task"), message);
                None
            }
            Some((name, span)) => match names.iter().find(|(n, _)| n == name) {
                Some((_, first)) => {
                    let message = format!(
                        "duplicate task name {name:?}; {list}[{first}] already uses it: task names are unique within {list}"
                    );
                    ctx.report(&span, item.key("task"), message);
                    None
                }
                None => {
                    names.push((name.to_string(), index));
                    Some(name.to_string())
                }
            },
            None => {
                if item.get("task").is_none() {
                    let message = "required: the task's name, e.g. \"config_supervisor\" (its label in metrics)";
                    item.missing(ctx, "task", None, message);
                }
                None
            }
        };
        let blocking = item.boolean(ctx, "blocking").unwrap_or(false);
        let calls = read_calls(ctx, &item, phase, declared, consumers);
        // A task with problems is kept for the checks across tasks (its opens and
        // signals still count); the problems already reject the profile.
        tasks.push(ReadTask {
            name: name.unwrap_or_default(),
            blocking,
            calls,
        });
    }
    tasks
}

/// `calls`: required, non-empty; the calls read without a problem.
fn read_calls(
    ctx: &mut Ctx<'_>,
    task: &Node<'_, '_>,
    phase: Phase,
    declared: &Declared,
    consumers: &[ReadConsumer],
) -> Vec<ReadCall> {
    let example = "e.g. calls = [{ bind = \"agent_config\" }, { open = \"agent_config\" }]";
    match task.get("calls") {
        None => {
            task.missing(
                ctx,
                "calls",
                None,
                &format!("required: the task's calls in order, {example}"),
            );
            return Vec::new();
        }
        Some(value) if matches!(value.get_ref(), DeValue::Array(a) if a.is_empty()) => {
            task.report_at(ctx, "calls", format!("needs at least one call, {example}"));
            return Vec::new();
        }
        Some(_) => {}
    }
    let mut calls = Vec::new();
    for (_, item) in items(ctx, task, "calls") {
        let Some(item) = item else {
            continue;
        };
        item.check_keys(ctx, &CALL_KINDS);
        let call = one_of(ctx, &item, &CALL_KINDS, |ctx, item, key| {
            read_call(ctx, item, key, phase, declared, consumers)
        });
        if let Some(call) = call {
            calls.push(ReadCall {
                call,
                span: item.span.clone(),
                path: item.path.clone(),
            });
        }
    }
    calls
}

fn read_call(
    ctx: &mut Ctx<'_>,
    item: &Node<'_, '_>,
    key: &str,
    phase: Phase,
    declared: &Declared,
    consumers: &[ReadConsumer],
) -> Option<Call> {
    let path = item.key(key);
    if phase == Phase::OnCommand
        && matches!(
            key,
            "open" | "subscribe" | "signal" | "wait" | "wait_delivery"
        )
    {
        let home = if key == "wait_delivery" {
            "an [[on_reconnect]] task"
        } else {
            "a [[cold_start]] task"
        };
        let message = format!(
            "{key} in [on_command]: a command's calls are reads and publishes (bind, stream_info, get, walk, publish, flush); {key} belongs in {home}"
        );
        item.report_at(ctx, key, message);
        return None;
    }
    match key {
        "publish" => {
            let spec = item.table(
                ctx,
                key,
                "a table such as { subject = \"results.{pc}\", size = 512, ack = true }",
            )?;
            spec.check_keys(ctx, &["subject", "size", "ack"]);
            let (text, span) = match spec.string(ctx, "subject") {
                Some(found) => found,
                None => {
                    if spec.get("subject").is_none() {
                        spec.missing(
                            ctx,
                            "subject",
                            None,
                            "required: the subject, e.g. \"results.{pc}\"",
                        );
                    }
                    return None;
                }
            };
            if let Err(message) = check_subject(text, false, &AGENT_PLACEHOLDERS) {
                ctx.report(&span, spec.key("subject"), message);
                return None;
            }
            let size = spec
                .whole(
                    ctx,
                    "size",
                    "a whole number of bytes up to 1 MiB (1048576)",
                    0,
                    1_048_576,
                )
                .map_or(0, |(n, _)| n as usize);
            let ack = spec.boolean(ctx, "ack").unwrap_or(false);
            if ack {
                super::publishes::check_captured(
                    ctx,
                    &span,
                    spec.key("subject"),
                    text,
                    &declared.streams,
                    &declared.buckets,
                );
            }
            Some(Call::Publish {
                subject: KeyTemplate(text.to_string()),
                size,
                ack,
            })
        }
        "bind" | "walk" => {
            let (name, span) = item.string(ctx, key)?;
            let bucket = declared.bucket(ctx, &span, path, name)?;
            Some(if key == "bind" {
                Call::Bind { bucket }
            } else {
                Call::Walk { bucket }
            })
        }
        "stream_info" => {
            let (name, span) = item.string(ctx, key)?;
            if name != EXEC.0 && !declared.stream_names.iter().any(|s| s == name) {
                let mut known: Vec<&str> = vec![EXEC.0];
                known.extend(declared.stream_names.iter().map(String::as_str));
                let message = format!(
                    "unknown stream {name:?}; use one of {} or declare it with [[streams]] (for a bucket's stream, use bind = \"<bucket>\")",
                    known.join(", ")
                );
                ctx.report(&span, path, message);
                return None;
            }
            Some(Call::StreamInfo {
                stream: name.to_string(),
            })
        }
        "get" => {
            let (bucket, keys) = super::read_get(ctx, item, declared)?;
            Some(Call::Get { bucket, keys })
        }
        "open" => {
            let (name, span) = item.string(ctx, key)?;
            let slot = consumer_slot(ctx, &span, path.clone(), name, consumers)?;
            if phase == Phase::OnReconnect {
                let message = format!(
                    "open in [[on_reconnect]]: async-nats recreates the watches by itself after a reconnect (and the EXEC durable survives); open {name:?} once, in a [[cold_start]] task"
                );
                ctx.report(&span, path, message);
                return None;
            }
            Some(Call::Open { slot })
        }
        "subscribe" => {
            let (text, span) = item.string(ctx, key)?;
            if let Err(message) = check_subject(text, true, &AGENT_PLACEHOLDERS) {
                ctx.report(&span, path, message);
                return None;
            }
            Some(Call::Subscribe {
                subject: KeyTemplate(text.to_string()),
            })
        }
        "flush" => {
            let value = item.get(key)?;
            match value.get_ref() {
                DeValue::Boolean(true) => Some(Call::Flush),
                DeValue::Table(t) if t.is_empty() => Some(Call::Flush),
                other => {
                    let message = format!(
                        "expected flush = {{}} (or flush = true), got {}",
                        describe(other)
                    );
                    ctx.report(&value.span(), path, message);
                    None
                }
            }
        }
        "signal" | "wait" => {
            let (name, span) = item.string(ctx, key)?;
            if !is_name(name) {
                let message = "signal names use letters, digits, _ and -, e.g. \"membership\"";
                ctx.report(&span, path, message);
                return None;
            }
            let name = name.to_string();
            Some(if key == "signal" {
                Call::Signal { name }
            } else {
                Call::Wait { name }
            })
        }
        _ => read_wait_delivery(ctx, item, phase, consumers),
    }
}

/// `wait_delivery = "<consumer>"` or `{ consumer = "...", within = "30s" }`.
fn read_wait_delivery(
    ctx: &mut Ctx<'_>,
    item: &Node<'_, '_>,
    phase: Phase,
    consumers: &[ReadConsumer],
) -> Option<Call> {
    let key = "wait_delivery";
    let value = item.get(key)?;
    let (name, span, path, within) = match value.get_ref() {
        DeValue::String(_) => {
            let (name, span) = item.string(ctx, key)?;
            (name, span, item.key(key), Some(DEFAULT_WITHIN))
        }
        DeValue::Table(_) => {
            let spec = item.table(ctx, key, "a table")?;
            spec.check_keys(ctx, &["consumer", "within"]);
            let within = match spec.get("within") {
                None => Some(DEFAULT_WITHIN),
                Some(_) => spec.positive_duration(ctx, "within", ""),
            };
            let Some((name, span)) = spec.string(ctx, "consumer") else {
                if spec.get("consumer").is_none() {
                    let message = "required: the watch whose replay the task waits for";
                    spec.missing(ctx, "consumer", None, message);
                }
                return None;
            };
            (name, span, spec.key("consumer"), within)
        }
        other => {
            let message = format!(
                "expected a consumer name or a table such as {{ consumer = \"groups_subs\", within = \"30s\" }}, got {}",
                describe(other)
            );
            ctx.report(&value.span(), item.key(key), message);
            return None;
        }
    };
    let slot = consumer_slot(ctx, &span, path.clone(), name, consumers)?;
    if phase == Phase::ColdStart {
        let message = "wait_delivery only applies in [[on_reconnect]]: it waits for a recreated watch's replay; between cold-start tasks use signal and wait";
        item.report_at(ctx, key, message);
        return None;
    }
    if consumers[slot].spec.kind == ConsumerKind::ExecReplay {
        let message = format!(
            "consumer {name:?} is the EXEC durable, which survives a reconnect and replays nothing; wait_delivery needs a watch (watch, watch_many or watch_all)"
        );
        ctx.report(&span, path, message);
        return None;
    }
    Some(Call::WaitDelivery {
        slot,
        within: within?,
    })
}

/// The slot of consumer `name`, or a problem listing the profile's consumers.
fn consumer_slot(
    ctx: &mut Ctx<'_>,
    span: &Range<usize>,
    path: String,
    name: &str,
    consumers: &[ReadConsumer],
) -> Option<usize> {
    if let Some(slot) = consumers.iter().position(|c| c.spec.name == name) {
        return Some(slot);
    }
    let message = if consumers.is_empty() {
        format!("unknown consumer {name:?}; the profile has no [[consumers]]: declare it there")
    } else {
        let names: Vec<&str> = consumers.iter().map(|c| c.spec.name.as_str()).collect();
        format!(
            "unknown consumer {name:?}; use one of {} or declare it in [[consumers]]",
            names.join(", ")
        )
    };
    ctx.report(span, path, message);
    None
}

/// Every consumer is opened by exactly one `open` of the cold start.
fn check_opens(ctx: &mut Ctx<'_>, cold: &[ReadTask], consumers: &[ReadConsumer]) {
    let mut opened: Vec<Option<&str>> = vec![None; consumers.len()];
    for call in cold.iter().flat_map(|t| &t.calls) {
        let Call::Open { slot } = call.call else {
            continue;
        };
        match opened[slot] {
            Some(first) => {
                let message = format!(
                    "consumer {:?} is already opened by {first}; each consumer is opened exactly once: remove one of the opens",
                    consumers[slot].spec.name
                );
                ctx.report(&call.span, call.path.clone(), message);
            }
            None => opened[slot] = Some(&call.path),
        }
    }
    for (consumer, opened) in consumers.iter().zip(&opened) {
        if opened.is_none() {
            let name = &consumer.spec.name;
            let message = format!(
                "consumer {name:?} is never opened; add {{ open = {name:?} }} to the calls of a [[cold_start]] task"
            );
            ctx.report(&consumer.span, consumer.path.clone(), message);
        }
    }
}

/// Every `wait` of a list has a `signal` of its name that can come: in another task
/// that runs alongside, or earlier in its own task. A signal later in the same task, or
/// only in tasks that start after a blocking waiter ends, never wakes it.
fn check_waits(ctx: &mut Ctx<'_>, tasks: &[ReadTask]) {
    let signals: Vec<(&str, usize, usize)> = tasks
        .iter()
        .enumerate()
        .flat_map(|(t, task)| {
            task.calls
                .iter()
                .enumerate()
                .filter_map(move |(c, call)| match &call.call {
                    Call::Signal { name } => Some((name.as_str(), t, c)),
                    _ => None,
                })
        })
        .collect();
    for (t, task) in tasks.iter().enumerate() {
        for (c, call) in task.calls.iter().enumerate() {
            let Call::Wait { name } = &call.call else {
                continue;
            };
            let mut named = signals.iter().filter(|(n, _, _)| n == name).peekable();
            if named.peek().is_none() {
                let message = format!(
                    "no task of this list signals {name:?}: add {{ signal = {name:?} }} to another task's calls, or remove the wait"
                );
                ctx.report(&call.span, call.path.clone(), message);
                continue;
            }
            // A signal after a `wait_delivery` in its task may never be sent: without a
            // replay the rest of that task is skipped.
            let behind_a_replay = |st: usize, sc: usize| {
                tasks[st].calls[..sc]
                    .iter()
                    .any(|c| matches!(c.call, Call::WaitDelivery { .. }))
            };
            let can_come = named.any(|&(_, st, sc)| {
                let same_task_after = st == t && sc > c;
                let starts_after_blocking = task.blocking && st > t;
                !same_task_after && !starts_after_blocking && !behind_a_replay(st, sc)
            });
            if !can_come {
                let message = format!(
                    "waits for {name:?}, which is signalled only after this wait (later in this task, by a task that starts when this blocking one ends, or behind a wait_delivery whose replay may never come): it would wait for ever; signal it from a task that runs alongside, before the wait"
                );
                ctx.report(&call.span, call.path.clone(), message);
            }
        }
    }
}
