//! Profiles: the built-in files in `src/profiles/` and a scenario's `[profiles.<name>]`
//! tables, read by the same code.

use std::collections::BTreeMap;

use toml::de::{DeTable, DeValue};

use super::walk::{Ctx, Node, describe};
use super::{Problem, syntax_problem};
use crate::plan::{BUCKETS, ConsumerKind, ConsumerSpec, KeyTemplate, Profile, SyncOp};

/// Built-in profiles: name, path shown in messages, text.
const BUILTINS: [(&str, &str, &str); 2] = [
    (
        "kanade",
        "src/profiles/kanade.toml",
        include_str!("../profiles/kanade.toml"),
    ),
    (
        "legacy",
        "src/profiles/legacy.toml",
        include_str!("../profiles/legacy.toml"),
    ),
];

const PROFILE_KEYS: [&str; 2] = ["consumers", "sync"];
const CONSUMER_KEYS: [&str; 5] = ["name", "watch", "watch_many", "watch_all", "exec_replay"];
const CONSUMER_KINDS: [&str; 4] = ["watch", "watch_many", "watch_all", "exec_replay"];
const SYNC_KINDS: [&str; 2] = ["get", "walk"];

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

/// Reads one profile table: a built-in file's root or a `[profiles.<name>]` table.
pub(super) fn read_profile(ctx: &mut Ctx<'_>, node: &Node<'_, '_>, name: &str) -> Profile {
    node.check_keys(ctx, &PROFILE_KEYS);
    let mut consumers: Vec<ConsumerSpec> = Vec::new();
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
            consumer_kind(ctx, item, key)
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
        if let Some((consumer_name, _)) = consumer_name {
            consumers.push(ConsumerSpec {
                name: consumer_name.to_string(),
                kind,
            });
        }
    }
    let mut sync = Vec::new();
    for (_, item) in items(ctx, node, "sync") {
        let Some(item) = item else { continue };
        item.check_keys(ctx, &SYNC_KINDS);
        if let Some(op) = one_of(ctx, &item, &SYNC_KINDS, |ctx, item, key| {
            sync_op(ctx, item, key)
        }) {
            sync.push(op);
        }
    }
    Profile::simple(name, consumers, sync)
}

/// The tables of the array at `key`, with 1-based indexes; `None` for an item that is not
/// a table (already reported).
fn items<'t, 'i>(
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
fn one_of<T>(
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
            let message = format!("needs one of {}", kinds.join(", "));
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

fn consumer_kind(ctx: &mut Ctx<'_>, item: &Node<'_, '_>, key: &str) -> Option<ConsumerKind> {
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
            let bucket = bucket(ctx, &spec);
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
            let bucket = bucket(ctx, &spec);
            let keys = templates(ctx, &spec, true);
            Some(ConsumerKind::WatchMany {
                bucket: bucket?,
                keys: keys?,
            })
        }
        "watch_all" => {
            spec.check_keys(ctx, &["bucket"]);
            Some(ConsumerKind::WatchAll {
                bucket: bucket(ctx, &spec)?,
            })
        }
        _ => {
            spec.check_keys(ctx, &[]);
            Some(ConsumerKind::ExecReplay)
        }
    }
}

fn sync_op(ctx: &mut Ctx<'_>, item: &Node<'_, '_>, key: &str) -> Option<SyncOp> {
    if key == "get" {
        let spec = item.table(
            ctx,
            key,
            "a table such as { bucket = \"agent_config\", keys = [\"global\"] }",
        )?;
        spec.check_keys(ctx, &["bucket", "keys"]);
        let bucket = bucket(ctx, &spec);
        let keys = templates(ctx, &spec, false);
        Some(SyncOp::Get {
            bucket: bucket?,
            keys: keys?,
        })
    } else {
        let spec = item.table(ctx, key, "a table such as { bucket = \"schedules\" }")?;
        spec.check_keys(ctx, &["bucket"]);
        Some(SyncOp::Walk {
            bucket: bucket(ctx, &spec)?,
        })
    }
}

/// `bucket`: required, one of [`BUCKETS`].
fn bucket(ctx: &mut Ctx<'_>, spec: &Node<'_, '_>) -> Option<String> {
    let allowed = BUCKETS.join(", ");
    let Some((name, span)) = spec.string(ctx, "bucket") else {
        if spec.get("bucket").is_none() {
            spec.missing(ctx, "bucket", None, &format!("required; one of {allowed}"));
        }
        return None;
    };
    if !BUCKETS.contains(&name) {
        ctx.report(
            &span,
            spec.key("bucket"),
            format!("unknown bucket {name:?}; allowed: {allowed}"),
        );
        return None;
    }
    Some(name.to_string())
}

/// `keys`: a non-empty array of key templates without duplicates.
fn templates(ctx: &mut Ctx<'_>, spec: &Node<'_, '_>, wildcards: bool) -> Option<Vec<KeyTemplate>> {
    let Some((array, span)) = spec.array(ctx, "keys", "an array of key strings") else {
        if spec.get("keys").is_none() {
            spec.missing(
                ctx,
                "keys",
                None,
                "required: an array of keys, e.g. [\"global\", \"pcs.{pc}\"]",
            );
        }
        return None;
    };
    if array.is_empty() {
        ctx.report(&span, spec.key("keys"), "needs at least one key");
        return None;
    }
    let path = spec.key("keys");
    let mut keys: Vec<KeyTemplate> = Vec::new();
    let mut ok = true;
    for (i, value) in array.iter().enumerate() {
        let item_path = format!("{path}[{}]", i + 1);
        match template(ctx, item_path.clone(), value, wildcards) {
            Some(key) if keys.contains(&key) => {
                ctx.report(
                    &value.span(),
                    item_path,
                    format!("duplicate key {:?}", key.0),
                );
                ok = false;
            }
            Some(key) => keys.push(key),
            None => ok = false,
        }
    }
    ok.then_some(keys)
}

/// One key template: NATS KV key characters plus the placeholders `{pc}` and `{group}`;
/// watches may also use the wildcards `*` and `>`.
fn template(
    ctx: &mut Ctx<'_>,
    path: String,
    value: &super::walk::Value<'_>,
    wildcards: bool,
) -> Option<KeyTemplate> {
    let span = value.span();
    let DeValue::String(text) = value.get_ref() else {
        ctx.report(
            &span,
            path,
            format!("expected a key string, got {}", describe(value.get_ref())),
        );
        return None;
    };
    match check_template(text, wildcards) {
        Ok(()) => Some(KeyTemplate(text.to_string())),
        Err(message) => {
            ctx.report(&span, path, message);
            None
        }
    }
}

fn check_template(text: &str, wildcards: bool) -> Result<(), String> {
    if text.is_empty() {
        return Err("empty key".to_string());
    }
    if text.starts_with('.') || text.ends_with('.') || text.contains("..") {
        return Err(format!(
            "key {text:?}: a key cannot start or end with \".\" or contain \"..\""
        ));
    }
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '{' {
            let Some(end) = rest.find('}') else {
                return Err(format!(
                    "key {text:?}: unclosed \"{{\"; the placeholders are {{pc}} and {{group}}"
                ));
            };
            let placeholder = &rest[..=end];
            if placeholder != "{pc}" && placeholder != "{group}" {
                return Err(format!(
                    "key {text:?}: unknown placeholder {placeholder}; only {{pc}} and {{group}} are allowed"
                ));
            }
            rest = &rest[end + 1..];
            continue;
        }
        let allowed = c.is_ascii_alphanumeric()
            || "-/_=.".contains(c)
            || (wildcards && (c == '*' || c == '>'));
        if !allowed {
            let also = if wildcards {
                ", or the wildcards * and >"
            } else {
                ""
            };
            return Err(format!(
                "key {text:?}: character {c:?} is not allowed; use letters, digits, - / _ = . and the placeholders {{pc}} and {{group}}{also}"
            ));
        }
        rest = &rest[c.len_utf8()..];
    }
    Ok(())
}

/// Consumer and profile names: non-empty, letters, digits, `_` and `-`.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
