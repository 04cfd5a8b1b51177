//! The strings a profile writes: key templates (`pcs.{pc}`), subject templates and
//! patterns (`heartbeat.{pc}`, `obs.>`), and names; how NATS subjects match.

use toml::de::DeValue;

use super::AGENT_PLACEHOLDERS;
use crate::plan::KeyTemplate;
use crate::scenario::walk::{Ctx, Node, Value, describe};

/// `keys`: a non-empty array of key templates without duplicates.
pub(in crate::scenario) fn templates(
    ctx: &mut Ctx<'_>,
    spec: &Node<'_, '_>,
    wildcards: bool,
) -> Option<Vec<KeyTemplate>> {
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
    template_list(ctx, spec.key("keys"), array, wildcards, &AGENT_PLACEHOLDERS)
}

/// Every item of `array` a key template, without duplicates.
pub(in crate::scenario) fn template_list(
    ctx: &mut Ctx<'_>,
    path: String,
    array: &toml::de::DeArray<'_>,
    wildcards: bool,
    placeholders: &[&str],
) -> Option<Vec<KeyTemplate>> {
    let mut keys: Vec<KeyTemplate> = Vec::new();
    let mut ok = true;
    for (i, value) in array.iter().enumerate() {
        let item_path = format!("{path}[{}]", i + 1);
        match template_with(ctx, item_path.clone(), value, wildcards, placeholders) {
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
pub(in crate::scenario) fn template(
    ctx: &mut Ctx<'_>,
    path: String,
    value: &Value<'_>,
    wildcards: bool,
) -> Option<KeyTemplate> {
    template_with(ctx, path, value, wildcards, &AGENT_PLACEHOLDERS)
}

fn template_with(
    ctx: &mut Ctx<'_>,
    path: String,
    value: &Value<'_>,
    wildcards: bool,
    placeholders: &[&str],
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
    match check_template(text, wildcards, placeholders) {
        Ok(()) => Some(KeyTemplate(text.to_string())),
        Err(message) => {
            ctx.report(&span, path, message);
            None
        }
    }
}

/// `{pc} and {group}`, `{pc}, {group} and {n}`.
fn listed(placeholders: &[&str]) -> String {
    match placeholders {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The placeholder at the start of `rest` (which starts with `{`): its length, or why it
/// is not one of `placeholders`.
fn placeholder_at(text: &str, rest: &str, placeholders: &[&str]) -> Result<usize, String> {
    let Some(end) = rest.find('}') else {
        return Err(format!(
            "{text:?}: unclosed \"{{\"; the placeholders are {}",
            listed(placeholders)
        ));
    };
    let placeholder = &rest[..=end];
    if !placeholders.contains(&placeholder) {
        return Err(format!(
            "{text:?}: unknown placeholder {placeholder}; only {} are allowed",
            listed(placeholders)
        ));
    }
    Ok(end + 1)
}

fn check_template(text: &str, wildcards: bool, placeholders: &[&str]) -> Result<(), String> {
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
            let len = placeholder_at(text, rest, placeholders).map_err(|m| format!("key {m}"))?;
            rest = &rest[len..];
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
                "key {text:?}: character {c:?} is not allowed; use letters, digits, - / _ = . and the placeholders {}{also}",
                listed(placeholders)
            ));
        }
        rest = &rest[c.len_utf8()..];
    }
    Ok(())
}

/// A NATS subject template: `.`-separated non-empty tokens of printable characters
/// without spaces, the placeholders `{pc}` and `{group}` when `placeholders` allows them,
/// and (when `wildcards`) `*` as a whole token or `>` as the last one.
pub(in crate::scenario) fn check_subject(
    text: &str,
    wildcards: bool,
    placeholders: &[&str],
) -> Result<(), String> {
    if text.is_empty() {
        return Err("empty subject".to_string());
    }
    let tokens: Vec<&str> = text.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err(format!(
                "subject {text:?}: a subject cannot start or end with \".\" or contain \"..\""
            ));
        }
        if *token == "*" || *token == ">" {
            if !wildcards {
                return Err(format!(
                    "subject {text:?}: wildcards (* and >) are not allowed here; name one subject"
                ));
            }
            if *token == ">" && i + 1 < tokens.len() {
                return Err(format!("subject {text:?}: \">\" must be the last token"));
            }
            continue;
        }
        let mut rest = *token;
        while let Some(c) = rest.chars().next() {
            if c == '{' && !placeholders.is_empty() {
                let len =
                    placeholder_at(text, rest, placeholders).map_err(|m| format!("subject {m}"))?;
                rest = &rest[len..];
                continue;
            }
            if !c.is_ascii_graphic() || "*>{}".contains(c) {
                let wild = if wildcards {
                    "; * and > are wildcards only as a whole token"
                } else {
                    ""
                };
                let with = if placeholders.is_empty() {
                    String::new()
                } else {
                    format!(" and the placeholders {}", listed(placeholders))
                };
                return Err(format!(
                    "subject {text:?}: character {c:?} is not allowed; use printable ASCII without spaces, separated by \".\"{with}{wild}"
                ));
            }
            rest = &rest[c.len_utf8()..];
        }
    }
    Ok(())
}

/// Whether the subject pattern `pattern` (NATS wildcards) matches every subject the
/// template `subject` renders to: a placeholder token stands for any one token, so only
/// `*` or `>` in `pattern` matches it.
pub(in crate::scenario) fn covers(pattern: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for p in pattern.split('.') {
        if p == ">" {
            return subject.next().is_some();
        }
        match subject.next() {
            None => return false,
            Some(s) if p == "*" || (p == s && !s.contains('{')) => {}
            Some(_) => return false,
        }
    }
    subject.next().is_none()
}

/// Whether two subject patterns can match one subject (nats-server refuses two streams
/// that share one).
pub(in crate::scenario) fn overlap(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('.'), b.split('.'));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == "*" || y == "*" || x == y => {}
            _ => return false,
        }
    }
}

/// Consumer, task, publish, bucket and profile names: non-empty, letters, digits, `_`
/// and `-`.
pub(in crate::scenario) fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
