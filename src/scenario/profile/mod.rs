//! Profiles: the built-in files in `src/profiles/` and a scenario's `[profiles.<name>]`
//! tables, read by the same code.
//!
//! A profile table is read in dependency order: `[client]`, `[[buckets]]` and
//! `[[streams]]` first ([`buckets`]), since consumers, calls and acked publishes name
//! them; then `[[consumers]]` (this file), `[[publishes]]` ([`publishes`]), and either the
//! simple form's `[[sync]]` (this file) or the tasks, `[[cold_start]]` and
//! `[[on_reconnect]]` ([`tasks`]), which name consumers and buckets and are checked as a
//! whole (every consumer opened once, every `wait` signalled).

mod buckets;
mod keys;
mod publishes;
mod tasks;

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::DeTable;

use super::walk::{Ctx, Node};
use super::{Problem, syntax_problem};
use crate::plan::{BUCKETS, ConsumerKind, ConsumerSpec, Profile, StreamSpec, SyncOp};
pub(super) use keys::{
    check_subject, covers, is_name, overlap, template, template_list, templates,
};

/// Built-in profiles: name, path shown in messages, text.
const BUILTINS: [(&str, &str, &str); 3] = [
    (
        "kanade",
        "src/profiles/kanade.toml",
        include_str!("../../profiles/kanade.toml"),
    ),
    (
        "legacy",
        "src/profiles/legacy.toml",
        include_str!("../../profiles/legacy.toml"),
    ),
    (
        "zester",
        "src/profiles/zester.toml",
        include_str!("../../profiles/zester.toml"),
    ),
];

const PROFILE_KEYS: [&str; 9] = [
    "client",
    "on_command",
    "buckets",
    "streams",
    "consumers",
    "publishes",
    "cold_start",
    "on_reconnect",
    "sync",
];
const CONSUMER_KEYS: [&str; 5] = ["name", "watch", "watch_many", "watch_all", "exec_replay"];
const CONSUMER_KINDS: [&str; 4] = ["watch", "watch_many", "watch_all", "exec_replay"];
const SYNC_KINDS: [&str; 2] = ["get", "walk"];
/// Placeholders of keys and subjects an agent uses.
const AGENT_PLACEHOLDERS: [&str; 2] = ["{pc}", "{group}"];

/// The built-ins' names, for messages: `kanade, legacy, zester`.
pub(super) fn builtin_names() -> String {
    let names: Vec<&str> = BUILTINS.iter().map(|(n, _, _)| *n).collect();
    names.join(", ")
}

pub(super) fn is_builtin(name: &str) -> bool {
    BUILTINS.iter().any(|(n, _, _)| *n == name)
}

/// A built-in profile by name; `Err` holds its problems (a bug in a shipped file).
pub(super) fn builtin(name: &str) -> Option<Result<Profile, Vec<Problem>>> {
    let (_, file, text) = BUILTINS.iter().find(|(n, _, _)| *n == name)?;
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => return Some(Err(vec![syntax_problem(file, text, &e)])),
    };
    let mut ctx = Ctx::new(file, text);
    let root = Node::new(String::new(), doc.get_ref(), doc.span());
    let profile = read_profile(&mut ctx, &root, name);
    let problems = ctx.into_problems();
    Some(if problems.is_empty() {
        Ok(profile)
    } else {
        Err(problems)
    })
}

/// Reads `[profiles]`: every profile is checked, used or not. Returns the well-named ones.
pub(super) fn read_profiles(ctx: &mut Ctx<'_>, root: &Node<'_, '_>) -> BTreeMap<String, Profile> {
    let mut profiles = BTreeMap::new();
    let Some(table) = root.table(ctx, "profiles", "a table of profiles ([profiles.<name>])") else {
        return profiles;
    };
    for (key, value) in table.table.iter() {
        let name: &str = key.get_ref();
        let path = table.key(name);
        if is_builtin(name) {
            ctx.report(
                &key.span(),
                path.clone(),
                "built-in profile name; choose another name",
            );
        } else if !is_name(name) {
            ctx.report(
                &key.span(),
                path.clone(),
                "profile names use letters, digits, _ and -",
            );
        }
        let Some(node) = Node::of(ctx, path, value, "a table with consumers and sync") else {
            continue;
        };
        let profile = read_profile(ctx, &node, name);
        profiles.insert(name.to_string(), profile);
    }
    profiles
}

/// What a profile declares, for checking the names its consumers, calls and publishes use.
pub(super) struct Declared {
    /// The `[[buckets]]` names, or the kanade set when none is declared.
    buckets: Vec<String>,
    /// `[[buckets]]` is written (the messages differ).
    explicit: bool,
    streams: Vec<StreamSpec>,
    /// Every stream named in `[[streams]]`, also one with other problems (so a call
    /// naming it gets no second problem).
    stream_names: Vec<String>,
}

impl Declared {
    /// `name` if it is a bucket of the profile; otherwise a problem saying what to declare.
    pub(super) fn bucket(
        &self,
        ctx: &mut Ctx<'_>,
        span: &Range<usize>,
        path: String,
        name: &str,
    ) -> Option<String> {
        if self.buckets.iter().any(|b| b == name) {
            return Some(name.to_string());
        }
        let message = if self.explicit && self.buckets.is_empty() {
            format!(
                "unknown bucket {name:?}; this profile's [[buckets]] name none: add a [[buckets]] table with name = {name:?}"
            )
        } else if self.explicit {
            format!(
                "unknown bucket {name:?}; this profile's [[buckets]] are {}: use one of them or add a [[buckets]] table with name = {name:?}",
                self.buckets.join(", ")
            )
        } else {
            format!(
                "unknown bucket {name:?}; allowed: {} (the kanade buckets, used when the profile declares none), or declare the profile's own with [[buckets]]",
                BUCKETS.join(", ")
            )
        };
        ctx.report(span, path, message);
        None
    }

    /// The required string `key` of `spec`, a bucket of the profile.
    fn bucket_key(&self, ctx: &mut Ctx<'_>, spec: &Node<'_, '_>, key: &str) -> Option<String> {
        let Some((name, span)) = spec.string(ctx, key) else {
            if spec.get(key).is_none() {
                spec.missing(
                    ctx,
                    key,
                    None,
                    "required: the name of one of the profile's buckets",
                );
            }
            return None;
        };
        self.bucket(ctx, &span, spec.key(key), name)
    }
}

/// A consumer as read, with the span of its name (where "never opened" points).
pub(super) struct ReadConsumer {
    spec: ConsumerSpec,
    span: Range<usize>,
    path: String,
}

/// Reads one profile table: a built-in file's root or a `[profiles.<name>]` table.
pub(super) fn read_profile(ctx: &mut Ctx<'_>, node: &Node<'_, '_>, name: &str) -> Profile {
    node.check_keys(ctx, &PROFILE_KEYS);
    let client = buckets::read_client(ctx, node);
    let (buckets, bucket_names) = buckets::read_buckets(ctx, node);
    let (streams, stream_names) = buckets::read_streams(ctx, node);
    let declared = Declared {
        explicit: bucket_names.is_some(),
        buckets: bucket_names.unwrap_or_else(|| buckets.iter().map(|b| b.name.clone()).collect()),
        streams,
        stream_names,
    };
    let consumers = read_consumers(ctx, node, &declared);
    let publishes = publishes::read_publishes(ctx, node, &declared.streams, &declared.buckets);
    let on_command = tasks::read_on_command(ctx, node, &declared, &consumers);
    let tasks = node.get("cold_start").is_some() || node.get("on_reconnect").is_some();
    if !tasks {
        let sync = read_sync(ctx, node, &declared);
        let specs = consumers.into_iter().map(|c| c.spec).collect();
        return Profile {
            on_command,
            publishes,
            buckets,
            streams: declared.streams,
            client,
            ..Profile::simple(name, specs, sync)
        };
    }
    if node.get("sync").is_some() {
        node.report_at(
            ctx,
            "sync",
            "use [[sync]] (the simple form) or [[cold_start]]/[[on_reconnect]] (tasks), not both; with tasks, put the reads in a task's calls",
        );
        // Read for its own problems all the same.
        read_sync(ctx, node, &declared);
    }
    let (cold_start, on_reconnect) = tasks::read_tasks(ctx, node, &declared, &consumers);
    Profile {
        name: name.to_string(),
        consumers: consumers.into_iter().map(|c| c.spec).collect(),
        cold_start,
        on_reconnect,
        on_command,
        publishes,
        buckets,
        streams: declared.streams,
        client,
    }
}

/// `[[consumers]]`: each a name and exactly one kind.
fn read_consumers(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    declared: &Declared,
) -> Vec<ReadConsumer> {
    let mut consumers: Vec<ReadConsumer> = Vec::new();
    let mut names: Vec<(String, usize)> = Vec::new();
    let mut exec_replay: Option<usize> = None;
    for (index, item) in items(ctx, node, "consumers") {
        let Some(item) = item else { continue };
        item.check_keys(ctx, &CONSUMER_KEYS);
        let consumer_name = item.string(ctx, "name");
        if let Some((consumer_name, span)) = consumer_name.clone() {
            if !is_name(consumer_name) {
                ctx.report(
                    &span,
                    item.key("name"),
                    "consumer names use letters, digits, _ and -",
                );
            } else if let Some((_, first)) = names.iter().find(|(n, _)| n == consumer_name) {
                let message = format!(
                    "duplicate consumer name {consumer_name:?}; consumers[{first}] already uses it"
                );
                ctx.report(&span, item.key("name"), message);
            } else {
                names.push((consumer_name.to_string(), index));
            }
        } else if item.get("name").is_none() {
            item.missing(
                ctx,
                "name",
                None,
                "required: the consumer's label in metrics",
            );
        }
        let Some(kind) = one_of(ctx, &item, &CONSUMER_KINDS, |ctx, item, key| {
            consumer_kind(ctx, item, key, declared)
        }) else {
            continue;
        };
        if kind == ConsumerKind::ExecReplay {
            if let Some(first) = exec_replay {
                let message = format!(
                    "consumers[{first}] is already exec_replay; a profile has at most one (both would be the durable agent_replay_<pc>)"
                );
                item.report_at(ctx, "exec_replay", message);
                continue;
            }
            exec_replay = Some(index);
        }
        if let Some((consumer_name, span)) = consumer_name {
            consumers.push(ReadConsumer {
                spec: ConsumerSpec {
                    name: consumer_name.to_string(),
                    kind,
                },
                span,
                path: item.key("name"),
            });
        }
    }
    consumers
}

/// `[[sync]]`: the simple form's reads, each a `get` or a `walk`.
fn read_sync(ctx: &mut Ctx<'_>, node: &Node<'_, '_>, declared: &Declared) -> Vec<SyncOp> {
    let mut sync = Vec::new();
    for (_, item) in items(ctx, node, "sync") {
        let Some(item) = item else { continue };
        item.check_keys(ctx, &SYNC_KINDS);
        if let Some(op) = one_of(ctx, &item, &SYNC_KINDS, |ctx, item, key| {
            sync_op(ctx, item, key, declared)
        }) {
            sync.push(op);
        }
    }
    sync
}

/// The tables of the array at `key`, with 1-based indexes; `None` for an item that is not
/// a table (already reported).
pub(super) fn items<'t, 'i>(
    ctx: &mut Ctx<'_>,
    node: &Node<'t, 'i>,
    key: &str,
) -> Vec<(usize, Option<Node<'t, 'i>>)> {
    let Some((array, _)) = node.array(ctx, key, "an array of tables") else {
        return Vec::new();
    };
    let path = node.key(key);
    array
        .iter()
        .enumerate()
        .map(|(i, value)| {
            (
                i + 1,
                Node::of(ctx, format!("{path}[{}]", i + 1), value, "a table"),
            )
        })
        .collect()
}

/// Reads whichever of `kinds` the table has; exactly one is allowed. Every present kind is
/// checked, so a table with two still gets both read for problems.
pub(super) fn one_of<T>(
    ctx: &mut Ctx<'_>,
    item: &Node<'_, '_>,
    kinds: &[&str],
    read: impl Fn(&mut Ctx<'_>, &Node<'_, '_>, &str) -> Option<T>,
) -> Option<T> {
    let present: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| item.get(k).is_some())
        .collect();
    let values: Vec<Option<T>> = present.iter().map(|k| read(ctx, item, k)).collect();
    match present.len() {
        0 => {
            let message = format!("needs exactly one of {}", kinds.join(", "));
            ctx.report(&item.span, item.path.clone(), message);
            None
        }
        1 => values.into_iter().next().flatten(),
        _ => {
            let message = format!(
                "has {}; use exactly one of {}",
                present.join(" and "),
                kinds.join(", ")
            );
            ctx.report(&item.span, item.path.clone(), message);
            None
        }
    }
}

fn consumer_kind(
    ctx: &mut Ctx<'_>,
    item: &Node<'_, '_>,
    key: &str,
    declared: &Declared,
) -> Option<ConsumerKind> {
    let expected = match key {
        "exec_replay" => "a table (exec_replay = {})",
        "watch" => "a table such as { bucket = \"jobs\", key = \"{pc}\" }",
        "watch_many" => "a table such as { bucket = \"agent_config\", keys = [\"global\"] }",
        _ => "a table such as { bucket = \"jobs\" }",
    };
    let spec = item.table(ctx, key, expected)?;
    match key {
        "watch" => {
            spec.check_keys(ctx, &["bucket", "key"]);
            let bucket = declared.bucket_key(ctx, &spec, "bucket");
            let key = match spec.get("key") {
                Some(value) => template(ctx, spec.key("key"), value, true),
                None => {
                    spec.missing(
                        ctx,
                        "key",
                        None,
                        "required: the key to watch, e.g. \"{pc}\"",
                    );
                    None
                }
            };
            Some(ConsumerKind::Watch {
                bucket: bucket?,
                key: key?,
            })
        }
        "watch_many" => {
            spec.check_keys(ctx, &["bucket", "keys"]);
            let bucket = declared.bucket_key(ctx, &spec, "bucket");
            let keys = templates(ctx, &spec, true);
            Some(ConsumerKind::WatchMany {
                bucket: bucket?,
                keys: keys?,
            })
        }
        "watch_all" => {
            spec.check_keys(ctx, &["bucket"]);
            Some(ConsumerKind::WatchAll {
                bucket: declared.bucket_key(ctx, &spec, "bucket")?,
            })
        }
        _ => {
            spec.check_keys(ctx, &[]);
            Some(ConsumerKind::ExecReplay)
        }
    }
}

/// `get = { bucket = "…", keys = […] }`, as `[[sync]]` and a task's calls both write it.
pub(super) fn read_get(
    ctx: &mut Ctx<'_>,
    item: &Node<'_, '_>,
    declared: &Declared,
) -> Option<(String, Vec<crate::plan::KeyTemplate>)> {
    let spec = item.table(
        ctx,
        "get",
        "a table such as { bucket = \"agent_config\", keys = [\"global\"] }",
    )?;
    spec.check_keys(ctx, &["bucket", "keys"]);
    let bucket = declared.bucket_key(ctx, &spec, "bucket");
    let keys = templates(ctx, &spec, false);
    Some((bucket?, keys?))
}

fn sync_op(
    ctx: &mut Ctx<'_>,
    item: &Node<'_, '_>,
    key: &str,
    declared: &Declared,
) -> Option<SyncOp> {
    if key == "get" {
        let (bucket, keys) = read_get(ctx, item, declared)?;
        Some(SyncOp::Get { bucket, keys })
    } else {
        let spec = item.table(ctx, key, "a table such as { bucket = \"schedules\" }")?;
        spec.check_keys(ctx, &["bucket"]);
        Some(SyncOp::Walk {
            bucket: declared.bucket_key(ctx, &spec, "bucket")?,
        })
    }
}
