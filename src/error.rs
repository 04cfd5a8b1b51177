//! Why a run stopped short of its results, typed the async-nats way: one error type with
//! a small kind enum ([`RunErrorKind`]), the cause kept as its source, and the one place
//! the kind becomes the exit code the README documents.
//!
//! | kind | exit | examples |
//! |---|---|---|
//! | [`Input`](RunErrorKind::Input) | 2 | a plan the run cannot execute as given |
//! | [`Environment`](RunErrorKind::Environment) | 3 | nats-server missing or not starting, broker unreachable, open-files limit, results not writable |
//! | [`Interrupted`](RunErrorKind::Interrupted) | 1 | Ctrl-C before anything was measured |
//! | [`Failed`](RunErrorKind::Failed) | 1 | the run itself could not go on |
//!
//! A run that reaches its results is not an error: its status (`ok`, `failed`,
//! `partial`) is in the report.

use std::fmt;

use crate::broker::BrokerError;
use crate::host::HostLimit;
use crate::provision::ProvisionError;
use crate::proxy::ProxyStartError;
use crate::results::ResultsError;

/// What kind of failure stopped a run; it decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunErrorKind {
    /// Bad input: the scenario or the arguments.
    Input,
    /// The broker or the host: nothing wrong with the scenario, the run could not happen.
    Environment,
    /// The operator stopped the run before anything was measured.
    Interrupted,
    /// The run failed.
    Failed,
}

impl RunErrorKind {
    /// The process exit code of this kind, as the README's "Exit codes" table says.
    pub fn exit_code(self) -> u8 {
        match self {
            RunErrorKind::Input => 2,
            RunErrorKind::Environment => 3,
            RunErrorKind::Interrupted | RunErrorKind::Failed => 1,
        }
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A run that did not reach its results: the kind, and what went wrong.
#[derive(Debug)]
pub struct RunError {
    kind: RunErrorKind,
    source: Source,
}

impl RunError {
    pub fn new(kind: RunErrorKind, source: impl Into<Source>) -> Self {
        RunError {
            kind,
            source: source.into(),
        }
    }

    /// Ctrl-C (the run's `shutdown` future) before the broker was up.
    pub fn interrupted() -> Self {
        RunError::new(
            RunErrorKind::Interrupted,
            "interrupted while starting the broker: nothing was measured",
        )
    }

    pub fn kind(&self) -> RunErrorKind {
        self.kind
    }

    /// The exit code the binary ends with.
    pub fn exit_code(&self) -> u8 {
        self.kind.exit_code()
    }

    pub fn is_interrupted(&self) -> bool {
        self.kind == RunErrorKind::Interrupted
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
    }
}

impl From<BrokerError> for RunError {
    fn from(e: BrokerError) -> Self {
        RunError::new(RunErrorKind::Environment, e)
    }
}

impl From<crate::broker::audit::AuditError> for RunError {
    fn from(e: crate::broker::audit::AuditError) -> Self {
        RunError::new(RunErrorKind::Environment, e)
    }
}

impl From<HostLimit> for RunError {
    fn from(e: HostLimit) -> Self {
        RunError::new(RunErrorKind::Environment, e)
    }
}

impl From<ProxyStartError> for RunError {
    fn from(e: ProxyStartError) -> Self {
        RunError::new(RunErrorKind::Environment, e)
    }
}

/// Wraps a cause with the words that say which part of the run it stopped.
#[derive(Debug, thiserror::Error)]
enum Stage {
    #[error("provisioning the broker failed: {0}")]
    Provision(#[source] ProvisionError),
    #[error("writing results failed: {0}")]
    Results(#[source] ResultsError),
}

impl From<ProvisionError> for RunError {
    fn from(e: ProvisionError) -> Self {
        RunError::new(RunErrorKind::Environment, Stage::Provision(e))
    }
}

impl From<ResultsError> for RunError {
    fn from(e: ResultsError) -> Self {
        RunError::new(RunErrorKind::Environment, Stage::Results(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_the_documented_exit_codes() {
        assert_eq!(RunError::interrupted().exit_code(), 1);
        let e = RunError::from(HostLimit("too many agents".to_string()));
        assert_eq!(
            (e.exit_code(), e.to_string().as_str()),
            (3, "too many agents")
        );
        assert_eq!(RunError::new(RunErrorKind::Input, "bad").exit_code(), 2);
        assert_eq!(RunError::new(RunErrorKind::Failed, "x").exit_code(), 1);
        let e = RunError::from(BrokerError::BinaryNotFound);
        assert_eq!((e.kind(), e.exit_code()), (RunErrorKind::Environment, 3));
        assert!(e.to_string().starts_with("nats-server not found"));
    }
}
