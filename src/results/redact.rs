//! Keeping secrets out of results.
//!
//! A run directory is meant to be attached to tickets, committed as a baseline and
//! shared, so nothing that can authenticate to a broker may reach it. Two shapes of
//! secret can occur in what fleetsim writes:
//!
//! - credentials inside URLs, `scheme://user:pass@host` and `scheme://token@host`, in any
//!   text (a scenario file, a setting, an error message a client library rendered);
//! - values of keys named like a secret (`token`, `password`, `user`, `creds`, `nkey`, or
//!   a name ending in `_token`, `_password`, ...) in the scenario TOML or in serialized
//!   settings.
//!
//! Redaction errs on the side of removing too much: a URL's userinfo is everything
//! between `://` and its last `@`, and a secret key is recognised even inside a comment
//! (a commented-out token is still a token).

use serde_json::Value;

use crate::broker::redact_url;

/// What a redacted value is replaced by.
pub const MASK: &str = "***";

/// Key names whose values are secrets, wherever they appear.
const SECRET_KEYS: [&str; 5] = ["token", "password", "user", "creds", "nkey"];

/// Is `key` (one key segment, without quotes) the name of a secret?
///
/// Matches `token`, `password`, `user`, `creds` and `nkey` case-insensitively, alone or
/// as the last word of a longer name (`auth_token`, `user-password`), because scenario
/// authors name things.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|s| {
        key == *s
            || key
                .strip_suffix(s)
                .is_some_and(|head| head.ends_with('_') || head.ends_with('-'))
    })
}

/// Removes credentials from every URL inside `text` (not just a text that *is* a URL).
///
/// A URL starts at its scheme (`nats://`, `tls://`, ...) and runs to the next whitespace,
/// unescaped quote or angle bracket, or to the start of the next URL (so a
/// comma-separated server list keeps its hosts). Each one goes through
/// [`crate::broker::redact_url`], the same rule the rest of the crate logs with.
pub fn redact_urls(text: &str) -> String {
    let starts = url_starts(text);
    let Some(&first) = starts.first() else {
        return text.to_string();
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..first]);
    for (i, &start) in starts.iter().enumerate() {
        let limit = starts.get(i + 1).copied().unwrap_or(text.len());
        let end = url_end(text, start, limit);
        out.push_str(&redact_url(&text[start..end]));
        out.push_str(&text[end..limit]);
    }
    out
}

/// Redacts a scenario file: secret-named keys' values become `"***"` (the text stays valid
/// TOML), then credentials are removed from every URL.
pub fn redact_scenario_text(toml: &str) -> String {
    redact_urls(&redact_secret_values(toml, false))
}

/// Redacts a serialized value in place: secret-named keys' values (unless null) become
/// `"***"`, and every string has the credentials removed from its URLs.
pub fn redact_json(value: &mut Value) {
    match value {
        Value::String(s) => {
            let redacted = redact_urls(s);
            *s = redacted;
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_secret_key(key) && !v.is_null() {
                    *v = Value::String(MASK.to_string());
                } else {
                    redact_json(v);
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn is_scheme_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

/// Byte offsets at which a URL (its scheme) starts, ascending.
fn url_starts(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut starts = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let sep = from + found;
        let mut start = sep;
        while start > from && is_scheme_byte(bytes[start - 1]) {
            start -= 1;
        }
        starts.push(start);
        from = sep + 3;
    }
    starts
}

/// Where the URL starting at `start` ends, at the latest at `limit`.
fn url_end(text: &str, start: usize, limit: usize) -> usize {
    let bytes = text.as_bytes();
    let mut i = start;
    while i < limit {
        let b = bytes[i];
        let escaped = i > start && bytes[i - 1] == b'\\';
        let quote = matches!(b, b'"' | b'\'' | b'`') && !escaped;
        if b.is_ascii_whitespace() || quote || matches!(b, b'<' | b'>') {
            return i;
        }
        i += 1;
    }
    limit
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Replaces the value of every secret-named key in TOML text by `"***"`.
///
/// A lexer just good enough for the job: outside comments, string literals are skipped
/// whole (a `token = x` inside a description is not a key), quoted keys are recognised,
/// and a comment's text is scanned loosely (`in_comment`: every `key = value` counts).
/// Values may be strings of any of the four kinds, arrays, inline tables or bare words.
fn redact_secret_values(text: &str, in_comment: bool) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut pos = 0;
    // Every offset below is at an ASCII byte or the end, so slicing `text` is safe.
    let mask = |out: &mut String, copied: &mut usize, start: usize, end: usize| {
        out.push_str(&text[*copied..start]);
        out.push('"');
        out.push_str(MASK);
        out.push('"');
        *copied = end;
    };
    while pos < b.len() {
        let c = b[pos];
        if !in_comment && c == b'#' {
            let eol = line_end(b, pos);
            out.push_str(&text[copied..=pos]);
            out.push_str(&redact_secret_values(&text[pos + 1..eol], true));
            copied = eol;
            pos = eol;
        } else if !in_comment && (c == b'"' || c == b'\'') {
            let end = string_end(b, pos);
            let single_line_key = end - pos >= 2
                && b[end - 1] == c
                && !text[pos..end].starts_with("\"\"\"")
                && !text[pos..end].starts_with("'''");
            if single_line_key
                && is_secret_key(&text[pos + 1..end - 1])
                && let Some(value) = assigned_value(b, end)
            {
                let value_end = value_end(b, value);
                if value_end > value {
                    mask(&mut out, &mut copied, value, value_end);
                }
                pos = value_end.max(value);
            } else {
                pos = end;
            }
        } else if is_key_byte(c) && (pos == 0 || !is_key_byte(b[pos - 1])) {
            let word_end = pos + b[pos..].iter().take_while(|&&x| is_key_byte(x)).count();
            // In a comment quotes are not lexed: `"token" = ...` reaches here as a word
            // followed by its closing quote.
            let after = if in_comment && matches!(b.get(word_end), Some(b'"' | b'\'')) {
                word_end + 1
            } else {
                word_end
            };
            if is_secret_key(&text[pos..word_end])
                && let Some(value) = assigned_value(b, after)
            {
                let value_end = value_end(b, value);
                if value_end > value {
                    mask(&mut out, &mut copied, value, value_end);
                }
                pos = value_end.max(value);
            } else {
                pos = word_end;
            }
        } else {
            pos += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// If `=` (not `==`) follows `from` on the same line, the offset of the value after it.
fn assigned_value(b: &[u8], from: usize) -> Option<usize> {
    let mut i = skip_blanks(b, from);
    if b.get(i) != Some(&b'=') || b.get(i + 1) == Some(&b'=') {
        return None;
    }
    i = skip_blanks(b, i + 1);
    Some(i)
}

fn skip_blanks(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

fn line_end(b: &[u8], from: usize) -> usize {
    b[from..]
        .iter()
        .position(|&x| x == b'\n')
        .map_or(b.len(), |p| from + p)
}

/// End (exclusive) of the value starting at `start`; `start` itself when there is none.
fn value_end(b: &[u8], start: usize) -> usize {
    match b.get(start) {
        None | Some(b'\n' | b'\r') => start,
        Some(b'"' | b'\'') => string_end(b, start),
        Some(b'[' | b'{') => bracket_end(b, start),
        Some(_) => {
            let mut i = start;
            while i < b.len()
                && !b[i].is_ascii_whitespace()
                && !matches!(b[i], b',' | b']' | b'}' | b'#')
            {
                i += 1;
            }
            i
        }
    }
}

/// End (exclusive) of the string literal opening at `start`. Single-line strings also end
/// at the end of the line, so a stray quote cannot swallow the rest of a file.
fn string_end(b: &[u8], start: usize) -> usize {
    let quote = b[start];
    let basic = quote == b'"';
    if b[start..].starts_with(&[quote; 3]) {
        let mut i = start + 3;
        while i < b.len() {
            if basic && b[i] == b'\\' {
                i += 2;
                continue;
            }
            if b[i..].starts_with(&[quote; 3]) {
                // Up to two more quotes may belong to the content (`""""` ends with one).
                let mut end = i + 3;
                while end < b.len() && end < i + 5 && b[end] == quote {
                    end += 1;
                }
                return end;
            }
            i += 1;
        }
        return b.len();
    }
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' if basic => i += 2,
            b'\n' => return i,
            x if x == quote => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// End (exclusive) of the array or inline table opening at `start`, strings and comments
/// inside it skipped.
fn bracket_end(b: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'[' | b'{' => depth += 1,
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            b'"' | b'\'' => {
                i = string_end(b, i);
                continue;
            }
            b'#' => {
                i = line_end(b, i);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_removed_from_every_url_in_a_text() {
        let text =
            "connect to nats://alice:s3cret@h1:4222, then tls://t0ken@h2:4443/x and http://h3:8222";
        assert_eq!(
            redact_urls(text),
            "connect to nats://***@h1:4222, then tls://***@h2:4443/x and http://h3:8222"
        );
        // A server list without spaces keeps every host.
        assert_eq!(
            redact_urls("nats://a:b@h1:4222,nats://c:d@h2:4222"),
            "nats://***@h1:4222,nats://***@h2:4222"
        );
        // Passwords containing '@' or an escaped quote do not leak a suffix.
        assert_eq!(
            redact_urls(r#"url = "nats://u:p@ss@h""#),
            r#"url = "nats://***@h""#
        );
        assert_eq!(
            redact_urls(r#"url = "nats://u:p\"w@h""#),
            r#"url = "nats://***@h""#
        );
        // Non-ASCII around URLs survives, and plain text is untouched.
        assert_eq!(redact_urls("é nats://x@h é"), "é nats://***@h é");
        assert_eq!(redact_urls("no urls here @ all"), "no urls here @ all");
    }

    #[test]
    fn secret_keys_are_masked_in_toml_and_the_text_stays_toml() {
        let scenario = r#"
name = "herd"
description = "the token = 5 in prose is not a key; user@example is not a url"
[broker]
url = "nats://alice:pw@broker:4222"
token = "s3cr3t-token"
"password" = 'lit-pass'
auth = { user = "bob", nkey = "SUAXYZ", port = 4222 }
creds = """
-----BEGIN NATS USER JWT-----
eyJ0eXAi
------END NATS USER JWT------
"""
api_token = ["t1", "t2"] # trailing comment
Token=bare_value
# token = "commented-out-secret"
user_count = 3
"#;
        let out = redact_scenario_text(scenario);
        out.parse::<toml::Table>()
            .unwrap_or_else(|e| panic!("redacted scenario is no longer TOML: {e}\n{out}"));
        for secret in [
            "alice",
            ":pw@",
            "s3cr3t-token",
            "lit-pass",
            "bob",
            "SUAXYZ",
            "eyJ0eXAi",
            "t1",
            "t2",
            "bare_value",
            "commented-out-secret",
        ] {
            assert!(!out.contains(secret), "{secret} survived:\n{out}");
        }
        assert!(
            out.contains(
                r#"description = "the token = 5 in prose is not a key; user@example is not a url""#
            ),
            "{out}"
        );
        assert!(out.contains(r#"url = "nats://***@broker:4222""#), "{out}");
        assert!(out.contains(r#"token = "***""#), "{out}");
        assert!(out.contains(r#""password" = "***""#), "{out}");
        assert!(
            out.contains(r#"auth = { user = "***", nkey = "***", port = 4222 }"#),
            "{out}"
        );
        assert!(
            out.contains("api_token = \"***\" # trailing comment"),
            "{out}"
        );
        assert!(out.contains("Token=\"***\""), "{out}");
        assert!(out.contains("# token = \"***\""), "{out}");
        assert!(out.contains("user_count = 3"), "not a secret name: {out}");
    }

    #[test]
    fn serialized_settings_lose_url_credentials_and_secret_keys() {
        let mut v = serde_json::json!({
            "broker": { "url": "nats://u:p@h:4222", "token": "abc", "creds": null },
            "servers": ["nats://tok@h1", "nats://h2"],
            "max_connections": 10,
        });
        redact_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({
                "broker": { "url": "nats://***@h:4222", "token": "***", "creds": null },
                "servers": ["nats://***@h1", "nats://h2"],
                "max_connections": 10,
            })
        );
    }

    #[test]
    fn secret_key_names() {
        for k in [
            "token",
            "Password",
            "user",
            "creds",
            "nkey",
            "auth_token",
            "user-password",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["tokens", "username_hint", "user_count", "mytoken", "url"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }
}
