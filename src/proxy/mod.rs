//! The fault proxy between the agents and the broker: in fleetsim's own process
//! ([`in_process`]) or as a child process driven over a control connection ([`process`]);
//! [`AgentProxy`] is the one a run puts in front of its broker, whichever it is; both
//! shape the link as the plan's [`crate::plan::LinkShape`] says ([`link`]).

pub mod fault;
pub mod in_process;
pub mod link;
pub mod process;

use std::path::Path;
use std::time::Duration;

use tracing::{info, warn};

use crate::host::{self, HostLimit};
use crate::plan::{Held, Hits, Plan, ProxyMode};
use in_process::FaultProxy;
use process::{ProxyChild, ProxyChildError, upstream_of};

/// The fault proxy the agents connect through: inside this process or a child process.
pub enum AgentProxy {
    InProcess(FaultProxy),
    Process(Box<ProxyChild>),
}

impl AgentProxy {
    /// Starts the proxy `plan.fleet.proxy` asks for, in front of the broker at `url`.
    /// `program` is the fleetsim executable started as `fleetsim proxy` (`None`: this
    /// process's own).
    pub async fn start(
        plan: &Plan,
        url: &str,
        program: Option<&Path>,
    ) -> Result<Option<AgentProxy>, ProxyStartError> {
        let upstream = upstream_of(url);
        let proxy = match plan.fleet.proxy {
            ProxyMode::Off => return Ok(None),
            ProxyMode::InProcess => {
                let listen = "127.0.0.1:0".parse().expect("literal address");
                let proxy = FaultProxy::start(listen, &upstream, plan.fleet.link)
                    .await
                    .map_err(ProxyStartError::InProcess)?;
                info!(listen = %proxy.addr(), %upstream, link = ?plan.fleet.link, "agents connect through the fault proxy");
                AgentProxy::InProcess(proxy)
            }
            ProxyMode::Process => {
                let program = match program {
                    Some(program) => program.to_path_buf(),
                    None => std::env::current_exe().map_err(ProxyStartError::OwnExecutable)?,
                };
                let child = ProxyChild::spawn(&program, &upstream, plan.fleet.link).await?;
                // The child raised its own limit; refuse a fleet it cannot hold.
                let nofile = child.ready().nofile;
                if let Err(e) = host::check_proxied_fd_budget(plan.fleet.agents, true, nofile) {
                    let _ = child.stop().await;
                    return Err(e.into());
                }
                info!(pid = child.pid(), listen = %child.ready().listen, %upstream, nofile, link = ?plan.fleet.link, "agents connect through the fault proxy process");
                AgentProxy::Process(Box::new(child))
            }
        };
        Ok(Some(proxy))
    }

    pub fn url(&self) -> String {
        match self {
            AgentProxy::InProcess(p) => p.url(),
            AgentProxy::Process(p) => p.url(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match self {
            AgentProxy::InProcess(_) => None,
            AgentProxy::Process(p) => Some(p.pid()),
        }
    }

    /// Drops every agent connection `hits` names, refuses new ones for `refuse_for`, and
    /// returns once the proxy accepts again, with how many connections it dropped.
    /// `closed` is called as soon as every such connection is closed, before the refusal.
    pub async fn cut(
        &self,
        refuse_for: Duration,
        hits: &Hits,
        closed: impl FnOnce(),
    ) -> Result<u64, CutError> {
        match self {
            AgentProxy::InProcess(p) => {
                let cut = p.begin_cut(!refuse_for.is_zero(), hits).await;
                let dropped = cut.dropped;
                closed();
                tokio::time::sleep(refuse_for).await;
                cut.end()?;
                Ok(dropped)
            }
            AgentProxy::Process(p) => Ok(p.cut(refuse_for, hits, closed).await?),
        }
    }

    /// Holds every agent connection `hits` names, open and silent, until
    /// [`AgentProxy::resume`] of the same `hole` id.
    pub async fn blackhole(&self, hole: u64, hits: &Hits, held: Held) -> Result<(), CutError> {
        match self {
            AgentProxy::InProcess(p) => {
                p.blackhole(hole, hits, held);
                Ok(())
            }
            AgentProxy::Process(p) => Ok(p.blackhole(hole, hits, held).await?),
        }
    }

    /// Lifts blackhole `hole`.
    pub async fn resume(&self, hole: u64) -> Result<(), CutError> {
        match self {
            AgentProxy::InProcess(p) => {
                p.resume(hole);
                Ok(())
            }
            AgentProxy::Process(p) => Ok(p.resume(hole).await?),
        }
    }

    /// Stops the proxy; a child process is waited for (killed if it does not quit).
    pub async fn stop(self) {
        match self {
            AgentProxy::InProcess(p) => drop(p),
            AgentProxy::Process(p) => {
                let pid = p.pid();
                match (*p).stop().await {
                    Ok(status) => info!(pid, %status, "fault proxy process stopped"),
                    Err(e) => warn!(pid, error = %e, "stopping the fault proxy process"),
                }
            }
        }
    }
}

/// Why a `network_cut` failed at the proxy.
#[derive(Debug, thiserror::Error)]
pub enum CutError {
    #[error(transparent)]
    InProcess(#[from] std::io::Error),
    #[error(transparent)]
    Process(#[from] ProxyChildError),
}

/// Why the fault proxy a run asked for could not start (an environment failure).
#[derive(Debug, thiserror::Error)]
pub enum ProxyStartError {
    #[error("cannot start the fault proxy: {0}")]
    InProcess(std::io::Error),
    #[error("cannot find fleetsim's own executable to start `fleetsim proxy`: {0}")]
    OwnExecutable(std::io::Error),
    #[error(transparent)]
    Child(#[from] ProxyChildError),
    #[error(transparent)]
    Limit(#[from] HostLimit),
}
