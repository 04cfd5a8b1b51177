//! What a profile expects on the broker and how its agents connect: `[client]`,
//! `[[buckets]]` and `[[streams]]`.

use toml::de::DeValue;

use super::{check_subject, is_name, items, overlap, template_list};
use crate::plan::{AsyncNats, Backoff, BucketSpec, ClientOptions, StreamSpec, kanade_buckets};
use crate::scenario::fleet::read_backoff;
use crate::scenario::walk::{Ctx, Node, describe};

const CLIENT_KEYS: [&str; 6] = [
    "connect_timeout",
    "request_timeout",
    "read_buffer_capacity",
    "ping_interval",
    "reconnect",
    "async_nats",
];
const BUCKET_KEYS: [&str; 5] = ["name", "history", "ttl", "seed", "value_size"];
const STREAM_KEYS: [&str; 3] = ["name", "subjects", "max_age"];
/// Seed keys may also number catalog entries.
const SEED_PLACEHOLDERS: [&str; 3] = ["{pc}", "{group}", "{n}"];
/// nats-server's `max_history_per_key` limit.
const MAX_HISTORY: i128 = 64;
/// 1 MiB: nats-server's default max_payload.
const MAX_VALUE_SIZE: i128 = 1_048_576;
/// The stream provisioning always creates, and its subjects.
pub(super) const EXEC: (&str, &str) = ("EXEC", "commands.>");

/// `[client]`: the connection options the agent ships with; every key optional.
pub(super) fn read_client(ctx: &mut Ctx<'_>, node: &Node<'_, '_>) -> ClientOptions {
    let mut client = ClientOptions::default();
    let Some(table) = node.table(ctx, "client", "a table ([client])") else {
        return client;
    };
    table.check_keys(ctx, &CLIENT_KEYS);
    client.connect_timeout = table.positive_duration(ctx, "connect_timeout", "");
    client.request_timeout = table.positive_duration(ctx, "request_timeout", "");
    client.ping_interval = table.positive_duration(ctx, "ping_interval", "");
    let bytes = "a whole number of bytes from 512 to 65535 (async-nats' default)";
    client.read_buffer_capacity = table
        .whole(ctx, "read_buffer_capacity", bytes, 512, 65535)
        .map(|(n, _)| n as u16);
    client.reconnect = read_reconnect(ctx, &table);
    client.async_nats = table
        .choice(ctx, "async_nats", "async-nats version", &AsyncNats::ALL)
        .map(|(v, _)| v);
    client
}

/// `reconnect`: `"async_nats_default"` or a table of `base`, `cap`, `jitter`, read as
/// `[fleet]`'s `reconnect_base`, `reconnect_cap`, `reconnect_jitter` are.
fn read_reconnect(ctx: &mut Ctx<'_>, client: &Node<'_, '_>) -> Option<Backoff> {
    let value = client.get("reconnect")?;
    match value.get_ref() {
        DeValue::String(s) if s == "async_nats_default" => Some(Backoff::AsyncNatsDefault),
        DeValue::Table(_) => {
            let table = client.table(ctx, "reconnect", "a table")?;
            table.check_keys(ctx, &["base", "cap", "jitter"]);
            Some(read_backoff(ctx, &table, "").unwrap_or(Backoff::AsyncNatsDefault))
        }
        other => {
            let message = format!(
                "expected \"async_nats_default\" or a table such as {{ base = \"100ms\", cap = \"4s\", jitter = 0.25 }}, got {}",
                describe(other)
            );
            ctx.report(&value.span(), client.key("reconnect"), message);
            None
        }
    }
}

/// `[[buckets]]`; none written is the kanade set. Also returns the names written, also
/// those of buckets with other problems (`None`: no `[[buckets]]`).
pub(super) fn read_buckets(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
) -> (Vec<BucketSpec>, Option<Vec<String>>) {
    if node.get("buckets").is_none() {
        return (kanade_buckets(), None);
    }
    let mut buckets: Vec<BucketSpec> = Vec::new();
    let mut names: Vec<(String, usize)> = Vec::new();
    for (index, item) in items(ctx, node, "buckets") {
        let Some(item) = item else { continue };
        item.check_keys(ctx, &BUCKET_KEYS);
        let name = unique_name(ctx, &item, index, &mut names, "bucket", "buckets");
        let history = item
            .whole(
                ctx,
                "history",
                "a whole number from 1 to 64",
                1,
                MAX_HISTORY,
            )
            .map_or(1, |(n, _)| n as i64);
        let ttl = item.positive_duration(ctx, "ttl", " (leave it out to keep entries for ever)");
        let seed = match item.array(ctx, "seed", "an array of key strings") {
            Some((array, _)) => {
                template_list(ctx, item.key("seed"), array, false, &SEED_PLACEHOLDERS)
            }
            None => Some(Vec::new()),
        };
        let value_size = item
            .whole(
                ctx,
                "value_size",
                "a whole number of bytes up to 1 MiB (1048576)",
                0,
                MAX_VALUE_SIZE,
            )
            .map_or(0, |(n, _)| n as usize);
        if let (Some(name), Some(seed)) = (name, seed) {
            buckets.push(BucketSpec {
                name,
                history,
                ttl,
                seed,
                value_size,
            });
        }
    }
    (buckets, Some(names.into_iter().map(|(n, _)| n).collect()))
}

/// `[[streams]]`, besides EXEC; also the names written, also those of streams with
/// other problems.
pub(super) fn read_streams(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
) -> (Vec<StreamSpec>, Vec<String>) {
    let mut streams: Vec<StreamSpec> = Vec::new();
    let mut names: Vec<(String, usize)> = Vec::new();
    // Every subject so far, with its owner, to find two streams that share one.
    let mut taken: Vec<(String, String)> = vec![(EXEC.1.to_string(), EXEC.0.to_string())];
    for (index, item) in items(ctx, node, "streams") {
        let Some(item) = item else { continue };
        item.check_keys(ctx, &STREAM_KEYS);
        let mut name = unique_name(ctx, &item, index, &mut names, "stream", "streams");
        if let Some(n) = &name {
            let reserved = if n == EXEC.0 {
                Some("EXEC is always created (commands.>); leave it out of [[streams]]")
            } else if n.starts_with("KV_") || n.starts_with("OBJ_") {
                Some(
                    "KV_ and OBJ_ name the streams of KV buckets and object stores; declare a bucket with [[buckets]] or choose another name",
                )
            } else {
                None
            };
            if let Some(message) = reserved {
                item.report_at(ctx, "name", message);
                name = None;
            }
        }
        let owner = name.clone().unwrap_or_else(|| format!("streams[{index}]"));
        let subjects = read_subjects(ctx, &item, &owner, &mut taken);
        let max_age = item.positive_duration(
            ctx,
            "max_age",
            " (leave it out to keep messages until the stream is full)",
        );
        if let (Some(name), Some(subjects)) = (name, subjects) {
            streams.push(StreamSpec {
                name,
                subjects,
                max_age,
            });
        }
    }
    let names = names
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n != EXEC.0)
        .collect();
    (streams, names)
}

/// A stream's `subjects`: required, non-empty, none shared with another stream.
fn read_subjects(
    ctx: &mut Ctx<'_>,
    item: &Node<'_, '_>,
    owner: &str,
    taken: &mut Vec<(String, String)>,
) -> Option<Vec<String>> {
    let Some((array, span)) = item.array(ctx, "subjects", "an array of subjects") else {
        if item.get("subjects").is_none() {
            item.missing(
                ctx,
                "subjects",
                None,
                "required: the subjects the stream captures, e.g. [\"obs.>\"]",
            );
        }
        return None;
    };
    if array.is_empty() {
        ctx.report(
            &span,
            item.key("subjects"),
            "needs at least one subject, e.g. [\"obs.>\"]",
        );
        return None;
    }
    let mut subjects = Vec::new();
    let mut ok = true;
    for (i, value) in array.iter().enumerate() {
        let path = format!("{}[{}]", item.key("subjects"), i + 1);
        let DeValue::String(text) = value.get_ref() else {
            let message = format!(
                "expected a subject string, got {}",
                describe(value.get_ref())
            );
            ctx.report(&value.span(), path, message);
            ok = false;
            continue;
        };
        if let Err(message) = check_subject(text, true, &[]) {
            ctx.report(&value.span(), path, message);
            ok = false;
            continue;
        }
        if let Some((other, by)) = taken.iter().find(|(s, _)| overlap(s, text)) {
            let message = format!(
                "subject {text:?} overlaps {other:?} of stream {by}; nats-server refuses two streams that share a subject: narrow one of them"
            );
            ctx.report(&value.span(), path, message);
            ok = false;
            continue;
        }
        taken.push((text.to_string(), owner.to_string()));
        subjects.push(text.to_string());
    }
    ok.then_some(subjects)
}

/// A table's required `name`: letters, digits, `_`, `-`, unique in its list (`list`).
pub(super) fn unique_name(
    ctx: &mut Ctx<'_>,
    item: &Node<'_, '_>,
    index: usize,
    names: &mut Vec<(String, usize)>,
    what: &str,
    list: &str,
) -> Option<String> {
    let Some((name, span)) = item.string(ctx, "name") else {
        if item.get("name").is_none() {
            item.missing(ctx, "name", None, &format!("required: the {what}'s name"));
        }
        return None;
    };
    if !is_name(name) {
        let message = format!("{what} names use letters, digits, _ and -");
        ctx.report(&span, item.key("name"), message);
        return None;
    }
    if let Some((_, first)) = names.iter().find(|(n, _)| n == name) {
        let message = format!("duplicate {what} name {name:?}; {list}[{first}] already uses it");
        ctx.report(&span, item.key("name"), message);
        return None;
    }
    names.push((name.to_string(), index));
    Some(name.to_string())
}
