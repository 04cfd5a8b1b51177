//! Failure kinds: what the results count when a NATS call fails.
//!
//! async-nats reports failures as `Error<Kind>` with one kind enum per call, and a
//! JetStream API error is folded into the kind's text ("... (code 400, error code 10026)")
//! rather than kept as a typed source. Classifying by the rendered chain is the one way
//! that works uniformly for every call an agent makes, so that is what we do.

use std::fmt;

use serde::Serialize;

/// The kinds of failure counted in `errors.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum FailureKind {
    /// A request got no reply in time (includes JetStream API requests the server's
    /// full API queue dropped without replying).
    Timeout,
    /// Nobody subscribed to the request subject (JetStream off, or not ready yet).
    NoResponders,
    /// The JetStream API answered with an error; the field is the server's `err_code`.
    JetStream(u64),
    /// The TCP connection was refused.
    ConnectionRefused,
    /// Anything else.
    Other,
}

impl FailureKind {
    /// The column this kind is counted in, by index into `Metrics::errors_by_kind` (and
    /// the `errors_*` columns of `timeseries.csv`): timeout, no responders, JetStream,
    /// refused, other.
    pub fn column(self) -> usize {
        match self {
            FailureKind::Timeout => 0,
            FailureKind::NoResponders => 1,
            FailureKind::JetStream(_) => 2,
            FailureKind::ConnectionRefused => 3,
            FailureKind::Other => 4,
        }
    }

    /// Classifies an error by walking its source chain.
    pub fn classify(err: &(dyn std::error::Error + 'static)) -> FailureKind {
        let mut text = String::new();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = cur {
            if let Some(js) = e.downcast_ref::<async_nats::jetstream::Error>() {
                return FailureKind::JetStream(js.error_code().0);
            }
            // An agent on `async_nats = "0.50"`.
            if let Some(js) = e.downcast_ref::<async_nats_050::jetstream::Error>() {
                return FailureKind::JetStream(js.error_code().0);
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::ConnectionRefused
            {
                return FailureKind::ConnectionRefused;
            }
            text.push_str(&e.to_string());
            text.push('\n');
            cur = e.source();
        }
        Self::classify_text(&text)
    }

    /// Classifies rendered error text (used where only the message survives).
    pub fn classify_text(text: &str) -> FailureKind {
        let lower = text.to_ascii_lowercase();
        if let Some(code) = jetstream_code(&lower) {
            return FailureKind::JetStream(code);
        }
        if lower.contains("timed out") || lower.contains("timeout") || lower.contains("deadline") {
            FailureKind::Timeout
        } else if lower.contains("no responders") {
            FailureKind::NoResponders
        } else if lower.contains("connection refused") {
            FailureKind::ConnectionRefused
        } else {
            FailureKind::Other
        }
    }

    /// Column values for `errors.csv`: (kind, code).
    pub fn columns(&self) -> (&'static str, Option<u64>) {
        match self {
            FailureKind::Timeout => ("timeout", None),
            FailureKind::NoResponders => ("no_responders", None),
            FailureKind::JetStream(code) => ("jetstream", Some(*code)),
            FailureKind::ConnectionRefused => ("connection_refused", None),
            FailureKind::Other => ("other", None),
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::JetStream(code) => write!(f, "jetstream {code}"),
            other => f.write_str(other.columns().0),
        }
    }
}

/// Finds "error code NNNN" in async-nats' rendering of a JetStream API error.
fn jetstream_code(lower: &str) -> Option<u64> {
    let at = lower.find("error code ")?;
    let digits: String = lower[at + "error code ".len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jetstream_code_is_read_from_the_rendered_api_error() {
        let text = "failed to create consumer: jetstream error: maximum consumers limit reached (code 400, error code 10026)";
        assert_eq!(
            FailureKind::classify_text(text),
            FailureKind::JetStream(10026)
        );
    }

    #[test]
    fn plain_kinds_are_recognised() {
        assert_eq!(
            FailureKind::classify_text("request: timed out"),
            FailureKind::Timeout
        );
        assert_eq!(
            FailureKind::classify_text("no responders"),
            FailureKind::NoResponders
        );
        assert_eq!(
            FailureKind::classify_text("io error: Connection refused (os error 111)"),
            FailureKind::ConnectionRefused
        );
        assert_eq!(
            FailureKind::classify_text("something odd"),
            FailureKind::Other
        );
    }

    #[test]
    fn io_refusal_in_the_chain_is_a_connection_refusal() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(FailureKind::classify(&io), FailureKind::ConnectionRefused);
    }
}
