//! Typed reads of a parsed TOML table that record a [`Problem`] instead of stopping.
//!
//! Every getter returns `None` both when the key is absent and when its value is wrong; in
//! the second case it has already recorded a problem at the value's line. Callers apply
//! defaults to `None` and carry on, so one pass over a file finds every problem in it.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::{Problem, parse_duration};

/// A value with its byte span in the source text.
pub(super) type Value<'i> = Spanned<DeValue<'i>>;

/// The file being read, its text (for byte offset to line), and the problems found so far.
pub(super) struct Ctx<'s> {
    file: String,
    text: &'s str,
    problems: Vec<Problem>,
}

impl<'s> Ctx<'s> {
    pub(super) fn new(file: &str, text: &'s str) -> Self {
        Ctx {
            file: file.to_string(),
            text,
            problems: Vec::new(),
        }
    }

    /// 1-based line of a byte offset.
    pub(super) fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// Records a problem at the line where `span` starts.
    pub(super) fn report(
        &mut self,
        span: &Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let line = self.line_of(span.start);
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            key: key.into(),
            message: message.into(),
        });
    }

    /// An empty problem list for the same file, to read a variation of it (an A/B
    /// variant) whose problems are merged back with [`Ctx::extend`].
    pub(super) fn fork(&self) -> Ctx<'s> {
        Ctx::new(&self.file, self.text)
    }

    /// The problems recorded so far.
    pub(super) fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Adds problems found in another file (a built-in profile).
    pub(super) fn extend(&mut self, problems: Vec<Problem>) {
        self.problems.extend(problems);
    }

    /// The problems, this file's in line order, then any from other files.
    pub(super) fn into_problems(self) -> Vec<Problem> {
        let mut problems = self.problems;
        let file = self.file;
        problems.sort_by_key(|p| (p.file != file, p.line));
        problems
    }
}

/// `path.key`, quoting `key` when it is not a bare TOML key.
pub(super) fn join(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// The names of `choices`, comma-separated, for messages.
pub(super) fn names<T>(choices: &[(&str, T)]) -> String {
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

/// How a value reads in a message: integers bare (`-5`), everything else with its type.
pub(super) fn describe(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("string {s:?}"),
        DeValue::Integer(i) => i.to_string(),
        DeValue::Float(f) => format!("float {f}"),
        DeValue::Boolean(b) => format!("boolean {b}"),
        DeValue::Datetime(d) => format!("datetime {d}"),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}

/// A table being read: its dotted path for messages (`""` for the document root,
/// `fleet`, `steps[2]`), its entries, and the span of its header or opening brace.
pub(super) struct Node<'t, 'i> {
    pub(super) path: String,
    pub(super) table: &'t DeTable<'i>,
    pub(super) span: Range<usize>,
}

impl<'t, 'i> Node<'t, 'i> {
    pub(super) fn new(path: String, table: &'t DeTable<'i>, span: Range<usize>) -> Self {
        Node { path, table, span }
    }

    /// The table in `value`, or a problem saying what `value` is instead.
    pub(super) fn of(
        ctx: &mut Ctx<'_>,
        path: String,
        value: &'t Value<'i>,
        expected: &str,
    ) -> Option<Self> {
        match value.get_ref() {
            DeValue::Table(table) => Some(Node::new(path, table, value.span())),
            other => {
                ctx.report(
                    &value.span(),
                    path,
                    format!("expected {expected}, got {}", describe(other)),
                );
                None
            }
        }
    }

    /// Dotted path of one of this table's keys.
    pub(super) fn key(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub(super) fn get(&self, key: &str) -> Option<&'t Value<'i>> {
        self.table.get(key)
    }

    /// Records an "unknown key" problem for every key not in `allowed` (listed in that order).
    pub(super) fn check_keys(&self, ctx: &mut Ctx<'_>, allowed: &[&str]) {
        for (key, _) in self.table.iter() {
            let name: &str = key.get_ref();
            if !allowed.contains(&name) {
                let message = if allowed.is_empty() {
                    "unknown key; this table takes no keys".to_string()
                } else {
                    format!("unknown key; allowed: {}", allowed.join(", "))
                };
                ctx.report(&key.span(), self.key(name), message);
            }
        }
    }

    /// Records a problem at `key`'s value.
    pub(super) fn report_at(&self, ctx: &mut Ctx<'_>, key: &str, message: impl Into<String>) {
        let span = self
            .get(key)
            .map_or_else(|| self.span.clone(), |v| v.span());
        ctx.report(&span, self.key(key), message);
    }

    /// Records "required" for a missing key, at `span` (what requires it) or the table.
    pub(super) fn missing(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        span: Option<Range<usize>>,
        message: &str,
    ) {
        let span = span.unwrap_or_else(|| self.span.clone());
        ctx.report(&span, self.key(key), message);
    }

    pub(super) fn table(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        expected: &str,
    ) -> Option<Node<'t, 'i>> {
        Node::of(ctx, self.key(key), self.get(key)?, expected)
    }

    pub(super) fn string(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<(&'t str, Range<usize>)> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some((s.as_ref(), value.span())),
            other => {
                let message = format!("expected a string, got {}", describe(other));
                ctx.report(&value.span(), self.key(key), message);
                None
            }
        }
    }

    /// A string naming one of `choices`; any other name is "unknown `what` "name"; use
    /// one of ...", the names listed in the order of `choices`.
    pub(super) fn choice<T: Clone>(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        what: &str,
        choices: &[(&str, T)],
    ) -> Option<(T, Range<usize>)> {
        let (name, span) = self.string(ctx, key)?;
        match choices.iter().find(|(n, _)| *n == name) {
            Some((_, value)) => Some((value.clone(), span)),
            None => {
                let message = format!("unknown {what} {name:?}; use one of {}", names(choices));
                ctx.report(&span, self.key(key), message);
                None
            }
        }
    }

    pub(super) fn boolean(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<bool> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                let message = format!("expected true or false, got {}", describe(other));
                ctx.report(&value.span(), self.key(key), message);
                None
            }
        }
    }

    /// A whole number in `min..=max`; otherwise "must be `what`, got ...".
    pub(super) fn whole(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        what: &str,
        min: i128,
        max: i128,
    ) -> Option<(i128, Range<usize>)> {
        let value = self.get(key)?;
        let parsed = match value.get_ref() {
            DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        let message = match parsed {
            Some(n) if (min..=max).contains(&n) => return Some((n, value.span())),
            Some(n) if n > max => format!("must be at most {max}, got {n}"),
            _ => format!("must be {what}, got {}", describe(value.get_ref())),
        };
        ctx.report(&value.span(), self.key(key), message);
        None
    }

    /// A number, float or integer; otherwise "must be `what`, got ...". The caller checks
    /// its range.
    pub(super) fn number(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        what: &str,
    ) -> Option<(f64, Range<usize>)> {
        let value = self.get(key)?;
        let parsed = match value.get_ref() {
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            _ => None,
        };
        match parsed {
            Some(n) => Some((n, value.span())),
            None => {
                let message = format!("must be {what}, got {}", describe(value.get_ref()));
                ctx.report(&value.span(), self.key(key), message);
                None
            }
        }
    }

    /// A duration string (`"10s"`), see [`parse_duration`].
    pub(super) fn duration(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
    ) -> Option<(Duration, Range<usize>)> {
        let value = self.get(key)?;
        let result = match value.get_ref() {
            DeValue::String(s) => parse_duration(s),
            other => Err(format!(
                "expected a duration such as \"10s\", got {}",
                describe(other)
            )),
        };
        match result {
            Ok(d) => Some((d, value.span())),
            Err(message) => {
                ctx.report(&value.span(), self.key(key), message);
                None
            }
        }
    }

    /// A duration that must be longer than zero.
    pub(super) fn positive_duration(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        hint: &str,
    ) -> Option<Duration> {
        let (d, span) = self.duration(ctx, key)?;
        if d.is_zero() {
            ctx.report(
                &span,
                self.key(key),
                format!("must be longer than 0s{hint}"),
            );
            return None;
        }
        Some(d)
    }

    pub(super) fn array(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        expected: &str,
    ) -> Option<(&'t DeArray<'i>, Range<usize>)> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Array(items) => Some((items, value.span())),
            other => {
                let message = format!("expected {expected}, got {}", describe(other));
                ctx.report(&value.span(), self.key(key), message);
                None
            }
        }
    }
}
